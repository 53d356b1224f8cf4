//! The original destination of captured outbound connections, published by sock_ops.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use podlock_common::{OrigDst, SockKey};

use super::addr::{key_ip, sock_key};

/// Shared handle on the `ESTABLISHED_ORIG` map.
#[derive(Clone)]
pub struct OrigDstTable {
    map: Arc<Mutex<BpfHashMap<MapData, SockKey, OrigDst>>>,
}

impl OrigDstTable {
    pub(super) fn new(map: BpfHashMap<MapData, SockKey, OrigDst>) -> Self {
        Self {
            map: Arc::new(Mutex::new(map)),
        }
    }

    /// Takes the original destination of the connection whose client end is `client` in the
    /// pod netns `cookie`. `None` if the connection was not captured by podlock.
    pub fn take(&self, cookie: u64, client: SocketAddr) -> Option<SocketAddr> {
        let key = sock_key(cookie, client);
        let mut map = self.map.lock().ok()?;
        let orig = map.get(&key, 0).ok()?;
        // sock_ops also deletes it on close; removing now keeps the map small under churn.
        let _ = map.remove(&key);
        Some(SocketAddr::new(key_ip(&orig.ip), orig.port))
    }

    /// Drops every entry that belongs to one pod (called when it is unenrolled).
    pub(super) fn forget_netns(&self, cookie: u64) {
        let Ok(mut map) = self.map.lock() else { return };
        let stale: Vec<SockKey> = map
            .keys()
            .filter_map(Result::ok)
            .filter(|k| k.netns_cookie == cookie)
            .collect();
        for key in stale {
            let _ = map.remove(&key);
        }
    }
}
