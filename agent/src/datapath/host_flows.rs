//! Connections the node itself opened (kubelet probes), as recorded by sock_ops.
use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use aya::maps::{HashMap as BpfHashMap, MapData};
use podlock_common::FlowKey;

use super::addr::ip_key;

/// Shared handle on the `HOST_FLOWS` map.
#[derive(Clone)]
pub struct HostFlows {
    map: Arc<Mutex<BpfHashMap<MapData, FlowKey, u32>>>,
}

impl HostFlows {
    pub(super) fn new(map: BpfHashMap<MapData, FlowKey, u32>) -> Self {
        Self {
            map: Arc::new(Mutex::new(map)),
        }
    }

    /// Did the node's own network namespace open the connection `src` → `dst`?
    pub fn opened_by_node(&self, src: SocketAddr, dst: SocketAddr) -> bool {
        let key = FlowKey {
            src: ip_key(src.ip()),
            dst: ip_key(dst.ip()),
            sport: u32::from(src.port()),
            dport: u32::from(dst.port()),
        };
        self.map
            .lock()
            .map(|m| m.get(&key, 0).is_ok())
            .unwrap_or(false)
    }
}
