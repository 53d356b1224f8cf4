//! Which destinations speak HBONE. A destination is in the mesh when its `:15008` completes
//! the mTLS handshake with a certificate in our trust domain; both answers are cached so a
//! plaintext destination costs one short probe per TTL, not one per connection.
use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How long a destination that answered HBONE is trusted to keep doing so.
pub const MESH_TTL: Duration = Duration::from_secs(60);
/// How long a destination that did not answer is sent plaintext before it is probed again.
pub const NOT_MESH_TTL: Duration = Duration::from_secs(5);

#[derive(Clone, Default)]
pub struct MeshDiscovery {
    seen: Arc<Mutex<HashMap<IpAddr, (bool, Instant)>>>,
}

impl MeshDiscovery {
    /// `Some(true)`: HBONE; `Some(false)`: plaintext; `None`: unknown, probe it.
    pub fn lookup(&self, ip: IpAddr) -> Option<bool> {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        match seen.get(&ip) {
            Some((mesh, until)) if *until > Instant::now() => Some(*mesh),
            Some(_) => {
                seen.remove(&ip);
                None
            }
            None => None,
        }
    }

    /// Forgets what is known about `ip`, so the next connection probes it again (e.g. after
    /// plaintext to it was refused: it may have just joined the mesh).
    pub fn forget(&self, ip: IpAddr) {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&ip);
    }

    pub fn record(&self, ip: IpAddr, mesh: bool) {
        let ttl = if mesh { MESH_TTL } else { NOT_MESH_TTL };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() > 65_536 {
            let now = Instant::now();
            seen.retain(|_, (_, until)| *until > now);
        }
        seen.insert(ip, (mesh, Instant::now() + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_both_answers() {
        let d = MeshDiscovery::default();
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "10.0.0.1".parse().unwrap(),
            "10.0.0.2".parse().unwrap(),
            "10.0.0.3".parse().unwrap(),
        );
        d.record(a, true);
        d.record(b, false);
        assert_eq!(d.lookup(a), Some(true));
        assert_eq!(d.lookup(b), Some(false));
        assert_eq!(d.lookup(c), None);
    }
}
