//! IPv6: capture (connect6, getpeername6), the IPv6 listeners, HBONE over IPv6, and STRICT
//! refusing IPv6 plaintext, on dual-stack pods.
use std::{
    io::ErrorKind,
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use podlock_e2e::{
    traffic::{connect, exchange, EchoServer, HANG},
    Testbed,
};

const STRICT_B1: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: b1-strict
  namespace: e2e
spec:
  selector:
    matchLabels:
      app: b1
  mtls:
    mode: STRICT
";

#[test]
fn ipv6_is_captured_tunnelled_and_enforced() {
    let mut tb = Testbed::dual_stack(&[&["a1", "x1"], &["b1"]]).expect("testbed");
    tb.start_agent(0).expect("agent 1");
    tb.start_agent(1).expect("agent 2");
    let (n1, n2) = (tb.node(0), tb.node(1));
    n1.agent().enroll(n1.pod("a1")).expect("enroll a1");
    n2.agent()
        .enroll_with(n2.pod("b1"), "b1", &["app=b1"])
        .expect("enroll b1");

    let b1 = n2.pod("b1");
    let b1_v6 = IpAddr::V6(b1.ip6.expect("dual-stack pod has IPv6"));
    let pods = n2.agent().pods().expect("pods");
    let listed: Vec<&str> = pods[0]["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(listed.contains(&b1_v6.to_string().as_str()), "{listed:?}");

    let server = EchoServer::start_at(b1, SocketAddr::new(b1_v6, 8080), None);
    let stream = connect(n1.pod("a1"), server.addr).expect("connect over IPv6");
    assert_eq!(stream.peer_addr().expect("getpeername6"), server.addr);
    assert_eq!(
        exchange(stream, b"v6 mesh".to_vec()).expect("exchange"),
        b"v6 mesh"
    );
    let dst = server.addr.to_string();
    let inbound = n2
        .agent()
        .wait_connection(|c| c["dst"] == dst && c["direction"] == "inbound")
        .expect("inbound record");
    assert_eq!(inbound["transport"], "hbone", "{inbound}");

    // Plaintext from outside the mesh is steered by sk_lookup over IPv6 too.
    let plain = connect(n1.pod("x1"), server.addr).expect("plaintext connect");
    assert_eq!(
        exchange(plain, b"v6 plain".to_vec()).expect("exchange"),
        b"v6 plain"
    );
    n2.agent()
        .wait_connection(|c| c["dst"] == dst && c["transport"] == "plaintext")
        .expect("plaintext captured");

    n2.agent().apply_policy(STRICT_B1).expect("STRICT");
    let started = Instant::now();
    let refused = connect(n1.pod("x1"), server.addr).and_then(|s| exchange(s, b"x".to_vec()));
    match refused {
        Ok(b) => panic!("IPv6 plaintext reached a STRICT pod: {b:?}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
            ),
            "{e:?}"
        ),
    }
    assert!(started.elapsed() < HANG);
    let again = connect(n1.pod("a1"), server.addr).expect("mesh still works");
    assert_eq!(
        exchange(again, b"still".to_vec()).expect("exchange"),
        b"still"
    );
}
