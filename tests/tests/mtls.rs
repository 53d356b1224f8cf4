//! mTLS between pods, end to end: what crosses the wire, who the agents say is talking,
//! and what the HBONE listener refuses.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use http::StatusCode;
use podlock_e2e::{
    ca_dir,
    capture::Capture,
    hbone_client::connect_status,
    podlock_bin,
    traffic::{checksum, connect, exchange, pattern, EchoServer},
    Testbed,
};

fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// a1 (sa frontend), a2 on node 1; b1 (sa backend), b2 on node 2; all enrolled. x1 on
/// node 1 is not enrolled: it plays clients that speak to `:15008` directly.
fn mesh(extra: &[&str]) -> Testbed {
    let mut tb = Testbed::new(&[&["a1", "a2", "x1"], &["b1", "b2"]]).expect("testbed");
    for node in 0..2 {
        tb.start_agent_with(node, extra).expect("agent");
    }
    let (n1, n2) = (tb.node(0), tb.node(1));
    n1.agent()
        .enroll_as(n1.pod("a1"), "frontend")
        .expect("enroll a1");
    n1.agent().enroll(n1.pod("a2")).expect("enroll a2");
    n2.agent()
        .enroll_as(n2.pod("b1"), "backend")
        .expect("enroll b1");
    n2.agent().enroll(n2.pod("b2")).expect("enroll b2");
    tb
}

/// `podlock ca issue` into `dir/name`; returns that directory.
fn issue(ca: &Path, identity: &str, lifetime: &str, dir: &Path, name: &str) -> PathBuf {
    let out_dir = dir.join(name);
    let out = Command::new(podlock_bin())
        .args(["ca", "issue", "--ca-dir"])
        .arg(ca)
        .args(["--identity", identity, "--lifetime", lifetime, "--out"])
        .arg(&out_dir)
        .output()
        .expect("podlock ca issue");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out_dir
}

#[test]
fn cross_node_traffic_is_mtls_on_the_wire() {
    let tb = mesh(&[]);
    let (a1, b1) = (tb.node(0).pod("a1"), tb.node(1).pod("b1"));
    let server = EchoServer::start(b1, 8080, None);
    let capture = Capture::start(
        &tb.node(0).netns,
        &tb.link_iface(0),
        &tb.dir().join("wire.pcap"),
    )
    .expect("tcpdump");

    let marker = b"PODLOCK-PLAINTEXT-MARKER-7c1e5a";
    let mut data = marker.repeat(64);
    data.extend(pattern(1 << 20, 3));
    data.extend(marker);
    let reply =
        exchange(connect(a1, server.addr).expect("connect"), data.clone()).expect("exchange");
    assert_eq!(
        checksum(&reply),
        checksum(&data),
        "server echoed the exact bytes"
    );

    let dst = server.addr.to_string();
    let inbound = tb
        .node(1)
        .agent()
        .wait_connection(|c| str_field(c, "direction") == "inbound" && str_field(c, "dst") == dst)
        .expect("receiving agent's record");
    let segments = capture.stop().expect("pcap");

    assert_eq!(str_field(&inbound, "transport"), "hbone");
    assert_eq!(
        inbound["peer"]["verified"], "spiffe://cluster.local/ns/e2e/sa/frontend",
        "receiving agent names the client's identity: {inbound}"
    );
    let outbound = tb
        .node(0)
        .agent()
        .wait_connection(|c| str_field(c, "direction") == "outbound" && str_field(c, "dst") == dst)
        .expect("sending agent's record");
    assert_eq!(
        outbound["peer"]["verified"],
        "spiffe://cluster.local/ns/e2e/sa/backend"
    );

    let between_pods: Vec<_> = segments
        .iter()
        .filter(|s| *s.src.ip() == a1.ip && *s.dst.ip() == b1.ip)
        .collect();
    assert!(
        !between_pods.is_empty(),
        "the capture saw the pods' traffic"
    );
    assert!(
        between_pods.iter().all(|s| s.dst.port() == 15008),
        "every segment from a1 to b1 went to the HBONE port"
    );
    assert!(
        between_pods
            .iter()
            .any(|s| s.payload.len() > 5 && s.payload[0] == 0x16 && s.payload[5] == 0x01),
        "a TLS ClientHello crossed the wire"
    );
    let leaked = segments
        .iter()
        .any(|s| s.payload.windows(marker.len()).any(|w| w == marker));
    assert!(!leaked, "the plaintext marker appeared on the wire");
}

#[test]
fn bad_client_certificates_fail_the_handshake() {
    let tb = mesh(&[]);
    let (x1, b1) = (tb.node(0).pod("x1"), tb.node(1).pod("b1"));
    let _app = EchoServer::start(b1, 8080, None);
    let hbone = SocketAddr::from((b1.ip, 15008));
    let target = format!("{}:8080", b1.ip);
    let dir = tb.dir();
    let ca = ca_dir(dir).expect("testbed CA");

    // Positive control: a certificate from the right CA and trust domain is accepted.
    let good = issue(
        &ca,
        "spiffe://cluster.local/ns/e2e/sa/tester",
        "1h",
        dir,
        "good",
    );
    assert_eq!(
        connect_status(x1, hbone, &good, &target).expect("good cert"),
        StatusCode::OK
    );

    let other_ca = dir.join("other-ca");
    let out = Command::new(podlock_bin())
        .args(["ca", "init", "--out"])
        .arg(&other_ca)
        .output()
        .expect("ca init");
    assert!(out.status.success());
    let foreign_ca = issue(
        &other_ca,
        "spiffe://cluster.local/ns/e2e/sa/tester",
        "1h",
        dir,
        "foreign",
    );
    let foreign_td = issue(
        &ca,
        "spiffe://evil.example/ns/e2e/sa/tester",
        "1h",
        dir,
        "td",
    );
    let expired = issue(
        &ca,
        "spiffe://cluster.local/ns/e2e/sa/tester",
        "1s",
        dir,
        "expired",
    );
    std::thread::sleep(Duration::from_millis(2100));
    for (name, cert) in [
        ("foreign CA", &foreign_ca),
        ("foreign trust domain", &foreign_td),
        ("expired", &expired),
    ] {
        let result = connect_status(x1, hbone, cert, &target);
        assert!(
            result.is_err(),
            "{name}: the agent accepted it ({result:?})"
        );
    }
    let log = tb.node(1).agent().log_text();
    assert!(log.contains("HBONE TLS handshake rejected"), "{log}");
    assert!(log.contains("not in trust domain cluster.local"), "{log}");
}

#[test]
fn connect_targets_are_checked() {
    let tb = mesh(&[]);
    let (x1, b1, b2) = (
        tb.node(0).pod("x1"),
        tb.node(1).pod("b1"),
        tb.node(1).pod("b2"),
    );
    let _app = EchoServer::start(b1, 8080, None);
    let _other = EchoServer::start(b2, 8080, None);
    let ca = ca_dir(tb.dir()).expect("CA");
    let cert = issue(
        &ca,
        "spiffe://cluster.local/ns/e2e/sa/tester",
        "1h",
        tb.dir(),
        "c",
    );
    let hbone = SocketAddr::from((b1.ip, 15008));
    let status = |authority: String| connect_status(x1, hbone, &cert, &authority).expect("connect");
    assert_eq!(status(format!("{}:8080", b1.ip)), StatusCode::OK);
    assert_eq!(
        status(format!("{}:8080", b2.ip)),
        StatusCode::BAD_REQUEST,
        "another pod's address"
    );
    assert_eq!(
        status(format!("{}:15001", b1.ip)),
        StatusCode::BAD_REQUEST,
        "an agent port"
    );
    assert_eq!(
        status("b1.example:8080".into()),
        StatusCode::BAD_REQUEST,
        "a host name"
    );
    assert_eq!(
        status(format!("{}:9", b1.ip)),
        StatusCode::SERVICE_UNAVAILABLE,
        "nothing listens"
    );
}

#[test]
fn garbage_on_the_hbone_port_does_not_harm_other_connections() {
    let tb = mesh(&[]);
    let (a1, x1, b1) = (
        tb.node(0).pod("a1"),
        tb.node(0).pod("x1"),
        tb.node(1).pod("b1"),
    );
    let server = EchoServer::start(b1, 8080, None);
    let mut live = connect(a1, server.addr).expect("mesh connection");
    live.write_all(b"one ").expect("write");
    let mut buf = [0u8; 4];
    live.read_exact(&mut buf).expect("echo");

    let hbone = SocketAddr::from((b1.ip, 15008));
    let inputs: [&[u8]; 3] = [
        b"\x00\xffgarbage\x13\x37 not tls at all\r\n",
        b"GET / HTTP/1.1\r\nHost: b1\r\n\r\n",
        b"\x16\x03\x01\x00\x05hello",
    ];
    for input in inputs {
        let closed = x1.run(|| -> std::io::Result<bool> {
            let mut s = TcpStream::connect(hbone)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(input)?;
            let mut sink = Vec::new();
            match s.read_to_end(&mut sink) {
                Ok(_) => Ok(true),
                Err(e) => Ok(e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut),
            }
        });
        assert!(
            closed.expect("connect to 15008"),
            "agent left {input:?} hanging"
        );
    }
    let reply = exchange(live, b"two".to_vec()).expect("live connection still works");
    assert_eq!(reply, b"two");
    let log = tb.node(1).agent().log_text();
    assert!(log.contains("HBONE TLS handshake rejected"), "{log}");
}

#[test]
fn certificates_rotate_under_a_live_connection() {
    let tb = mesh(&["--cert-lifetime", "4s"]);
    let (a1, b1) = (tb.node(0).pod("a1"), tb.node(1).pod("b1"));
    let server = EchoServer::start(b1, 8080, None);
    let serial = |node: usize, pod: &str| -> String {
        let pods = tb.node(node).agent().pods().expect("pods");
        let p = pods
            .as_array()
            .and_then(|a| a.iter().find(|p| p["name"] == pod).cloned())
            .expect("pod listed");
        str_field(&p, "cert_serial").to_string()
    };
    let (first_a1, first_b1) = (serial(0, "a1"), serial(1, "b1"));
    assert!(!first_a1.is_empty());

    let mut live = connect(a1, server.addr).expect("connect");
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(6) {
        let chunk = pattern(4096, sent);
        live.write_all(&chunk).expect("write during rotation");
        let mut echoed = vec![0u8; chunk.len()];
        live.read_exact(&mut echoed).expect("echo during rotation");
        assert_eq!(echoed, chunk);
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_ne!(serial(0, "a1"), first_a1, "a1's certificate rotated");
    assert_ne!(serial(1, "b1"), first_b1, "b1's certificate rotated");
    assert_eq!(exchange(live, b"end".to_vec()).expect("finish"), b"end");
    // New connections handshake with the new certificates.
    let fresh = connect(tb.node(0).pod("a2"), server.addr).expect("new connection");
    assert_eq!(exchange(fresh, b"new".to_vec()).expect("exchange"), b"new");
}
