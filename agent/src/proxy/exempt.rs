//! Destinations a STRICT pod may reach in plaintext: DNS, the API server, and whatever the
//! operator lists (flags, or the `podlock.io/outbound-exempt` policy annotation).
use std::{fmt, net::SocketAddr, str::FromStr};

use ipnet::IpNet;
use serde::{Serialize, Serializer};

/// Policy annotation: comma-separated exemptions, e.g. `10.0.5.0/24:5432, *:8125`.
pub const EXEMPT_ANNOTATION: &str = "podlock.io/outbound-exempt";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exemption {
    /// `None`: any address.
    net: Option<IpNet>,
    /// `None`: any port.
    port: Option<u16>,
}

impl Exemption {
    pub fn port(port: u16) -> Self {
        Self {
            net: None,
            port: Some(port),
        }
    }

    pub fn addr(addr: SocketAddr) -> Self {
        Self {
            net: Some(IpNet::from(addr.ip())),
            port: Some(addr.port()),
        }
    }

    /// `CIDR`, `IP`, `CIDR:PORT`, `IP:PORT`, `[V6]:PORT` or `*:PORT`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = |why: &str| format!("outbound exemption {s:?}: {why}");
        if let Some(port) = s.strip_prefix("*:") {
            let port = port.parse().map_err(|_| bad("port is not a number"))?;
            return Ok(Self::port(port));
        }
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Self::addr(addr));
        }
        let (net, port) = match s.rsplit_once(':') {
            Some((net, port)) if net.contains('/') || net.contains('.') => (
                net,
                Some(port.parse().map_err(|_| bad("port is not a number"))?),
            ),
            _ => (s, None),
        };
        let net = IpNet::from_str(net)
            .or_else(|_| net.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| bad("expected CIDR, IP, CIDR:PORT or *:PORT"))?;
        Ok(Self {
            net: Some(net),
            port,
        })
    }

    /// Every exemption in an annotation value; bad entries are reported, good ones kept.
    pub fn parse_list(value: &str) -> (Vec<Self>, Vec<String>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        for item in value.split(',').filter(|i| !i.trim().is_empty()) {
            match Self::parse(item) {
                Ok(e) => good.push(e),
                Err(e) => bad.push(e),
            }
        }
        (good, bad)
    }

    pub fn matches(&self, dst: SocketAddr) -> bool {
        self.net.is_none_or(|n| n.contains(&dst.ip())) && self.port.is_none_or(|p| p == dst.port())
    }
}

impl fmt::Display for Exemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.net, self.port) {
            (None, Some(p)) => write!(f, "*:{p}"),
            (None, None) => write!(f, "*"),
            (Some(n), Some(p)) => write!(f, "{n}:{p}"),
            (Some(n), None) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Exemption {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dst(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_every_form() {
        let cidr_port = Exemption::parse("10.0.5.0/24:5432").unwrap();
        assert!(cidr_port.matches(dst("10.0.5.9:5432")));
        assert!(!cidr_port.matches(dst("10.0.5.9:5433")));
        assert!(!cidr_port.matches(dst("10.0.6.9:5432")));
        let cidr = Exemption::parse("192.168.0.0/16").unwrap();
        assert!(cidr.matches(dst("192.168.3.4:1")));
        let any_port = Exemption::parse("*:53").unwrap();
        assert!(any_port.matches(dst("8.8.8.8:53")));
        let ip_port = Exemption::parse("10.96.0.1:443").unwrap();
        assert!(ip_port.matches(dst("10.96.0.1:443")));
        assert!(!ip_port.matches(dst("10.96.0.2:443")));
        let v6 = Exemption::parse("[fd00::1]:443").unwrap();
        assert!(v6.matches(dst("[fd00::1]:443")));
        let ip = Exemption::parse("10.1.2.3").unwrap();
        assert!(ip.matches(dst("10.1.2.3:9")));
    }

    #[test]
    fn rejects_garbage_naming_it() {
        let err = Exemption::parse("db.example:5432").unwrap_err();
        assert!(err.contains("db.example:5432"), "{err}");
        assert!(Exemption::parse("*:http").is_err());
    }

    #[test]
    fn annotation_lists_keep_the_good_entries() {
        let (good, bad) = Exemption::parse_list("10.0.0.0/8:5432, nonsense, *:8125");
        assert_eq!(good.len(), 2);
        assert_eq!(bad.len(), 1);
        assert_eq!(good[1].to_string(), "*:8125");
    }
}
