//! Parsing the CONNECT requests an HBONE server receives.
use std::net::SocketAddr;

use http::{Method, Request};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("method {0} is not CONNECT")]
    Method(String),
    #[error("CONNECT has no :authority")]
    NoAuthority,
    #[error("CONNECT :authority {0:?} is not ip:port")]
    BadAuthority(String),
    #[error("CONNECT must not carry :scheme or :path (got {0:?})")]
    NotAuthorityForm(String),
}

/// The target of an HBONE CONNECT: `:authority` must be a literal `ip:port`
/// (`[v6]:port` for IPv6), never a host name.
pub fn parse_connect<B>(req: &Request<B>) -> Result<SocketAddr, ConnectError> {
    if req.method() != Method::CONNECT {
        return Err(ConnectError::Method(req.method().to_string()));
    }
    let uri = req.uri();
    if uri.scheme().is_some() || uri.path_and_query().is_some_and(|p| !p.as_str().is_empty()) {
        return Err(ConnectError::NotAuthorityForm(uri.to_string()));
    }
    let authority = uri.authority().ok_or(ConnectError::NoAuthority)?;
    authority
        .as_str()
        .parse::<SocketAddr>()
        .map_err(|_| ConnectError::BadAuthority(authority.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(authority: &str) -> Request<()> {
        Request::builder()
            .method(Method::CONNECT)
            .uri(authority)
            .body(())
            .unwrap()
    }

    #[test]
    fn accepts_ip_port() {
        assert_eq!(
            parse_connect(&connect("10.1.2.7:80")),
            Ok("10.1.2.7:80".parse().unwrap())
        );
        assert_eq!(
            parse_connect(&connect("[fd00::7]:8443")),
            Ok("[fd00::7]:8443".parse().unwrap())
        );
    }

    #[test]
    fn rejects_other_methods() {
        let req = Request::builder()
            .method(Method::GET)
            .uri("/")
            .body(())
            .unwrap();
        assert_eq!(parse_connect(&req), Err(ConnectError::Method("GET".into())));
    }

    #[test]
    fn rejects_names_and_missing_ports() {
        for bad in ["example.com:80", "10.1.2.7", "10.1.2.7:http", "[fd00::7]"] {
            assert!(
                matches!(
                    parse_connect(&connect(bad)),
                    Err(ConnectError::BadAuthority(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_absolute_form() {
        let req = Request::builder()
            .method(Method::CONNECT)
            .uri("https://10.1.2.7:80/x")
            .body(())
            .unwrap();
        assert!(matches!(
            parse_connect(&req),
            Err(ConnectError::NotAuthorityForm(_))
        ));
    }
}
