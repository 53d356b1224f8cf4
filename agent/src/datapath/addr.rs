//! Conversions between std addresses and the eBPF maps' key layout.
use std::net::{IpAddr, SocketAddr};

use podlock_common::{IpKey, SockKey, AF_INET, AF_INET6};

/// An address as the eBPF programs key it; v4-mapped IPv6 becomes IPv4.
pub fn ip_key(ip: IpAddr) -> IpKey {
    match ip {
        IpAddr::V4(v4) => IpKey {
            family: AF_INET,
            addr: [u32::from_ne_bytes(v4.octets()), 0, 0, 0],
        },
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ip_key(IpAddr::V4(v4)),
            None => {
                let o = v6.octets();
                let word = |i: usize| u32::from_ne_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
                IpKey {
                    family: AF_INET6,
                    addr: [word(0), word(4), word(8), word(12)],
                }
            }
        },
    }
}

/// The inverse of [`ip_key`].
pub fn key_ip(key: &IpKey) -> IpAddr {
    if key.family == AF_INET {
        IpAddr::from(key.addr[0].to_ne_bytes())
    } else {
        let mut o = [0u8; 16];
        for (i, w) in key.addr.iter().enumerate() {
            o[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        IpAddr::from(o)
    }
}

/// The key sock_ops publishes a captured connection under: the client's end as seen by the
/// agent's listener after accept().
pub fn sock_key(netns_cookie: u64, client: SocketAddr) -> SockKey {
    SockKey {
        netns_cookie,
        ip: ip_key(client.ip()),
        port: u32::from(client.port()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_round_trips_in_network_order() {
        let ip: IpAddr = "10.1.2.7".parse().unwrap();
        let key = ip_key(ip);
        assert_eq!(key.addr[0].to_ne_bytes(), [10, 1, 2, 7]);
        assert_eq!(key_ip(&key), ip);
    }

    #[test]
    fn v4_mapped_is_ipv4() {
        let mapped: IpAddr = "::ffff:10.1.2.7".parse().unwrap();
        assert_eq!(ip_key(mapped), ip_key("10.1.2.7".parse().unwrap()));
    }

    #[test]
    fn v6_round_trips() {
        let ip: IpAddr = "fd00::1:2".parse().unwrap();
        assert_eq!(key_ip(&ip_key(ip)), ip);
    }
}
