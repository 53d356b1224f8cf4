//! The `INBOUND_MODES` map: what sk_lookup does with plaintext for each pod address/port.
use std::{collections::HashMap, net::IpAddr};

use aya::maps::{HashMap as BpfHashMap, MapData};
use podlock_common::{PortKey, INBOUND_DISABLE, INBOUND_PERMISSIVE, INBOUND_STRICT};

use super::addr::ip_key;

/// Inbound handling of plaintext, as the eBPF program knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundMode {
    Permissive,
    Strict,
    Disable,
}

impl InboundMode {
    fn value(self) -> u32 {
        match self {
            Self::Permissive => INBOUND_PERMISSIVE,
            Self::Strict => INBOUND_STRICT,
            Self::Disable => INBOUND_DISABLE,
        }
    }
}

/// Owns the map and remembers which keys each pod (netns cookie) has, so a new policy
/// replaces the old one exactly.
pub(super) struct InboundModes {
    map: BpfHashMap<MapData, PortKey, u32>,
    keys: HashMap<u64, Vec<PortKey>>,
}

impl InboundModes {
    pub(super) fn new(map: BpfHashMap<MapData, PortKey, u32>) -> Self {
        Self {
            map,
            keys: HashMap::new(),
        }
    }

    /// Sets a pod's default mode and per-port modes on all its addresses.
    pub(super) fn set(
        &mut self,
        cookie: u64,
        ips: &[IpAddr],
        default: InboundMode,
        ports: &[(u16, InboundMode)],
    ) -> Result<(), aya::maps::MapError> {
        let mut wanted = Vec::new();
        for ip in ips {
            let ip = ip_key(*ip);
            wanted.push((PortKey { ip, port: 0 }, default));
            for (port, mode) in ports {
                let port = u32::from(*port);
                wanted.push((PortKey { ip, port }, *mode));
            }
        }
        for (key, mode) in &wanted {
            self.map.insert(key, mode.value(), 0)?;
        }
        let stale: Vec<PortKey> = self
            .keys
            .get(&cookie)
            .map(|old| {
                old.iter()
                    .filter(|k| !wanted.iter().any(|(w, _)| w == *k))
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for key in stale {
            let _ = self.map.remove(&key);
        }
        self.keys
            .insert(cookie, wanted.into_iter().map(|(k, _)| k).collect());
        Ok(())
    }

    pub(super) fn clear(&mut self, cookie: u64) {
        for key in self.keys.remove(&cookie).unwrap_or_default() {
            let _ = self.map.remove(&key);
        }
    }
}
