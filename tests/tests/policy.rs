//! PERMISSIVE, STRICT and DISABLE (Istio's PeerAuthentication), end to end, both ways.
use std::{
    io::{ErrorKind, Read, Write},
    net::SocketAddr,
    time::{Duration, Instant},
};

use podlock_e2e::{
    traffic::{connect, exchange, EchoServer, HANG},
    Testbed,
};

/// Node 1: a1 (enrolled, app=a1) and x1 (not in the mesh). Node 2: b1 (enrolled, app=b1)
/// and y1 (not in the mesh). `extra` goes to both agents.
fn bed(extra: &[&str]) -> Testbed {
    let mut tb = Testbed::new(&[&["a1", "x1"], &["b1", "y1"]]).expect("testbed");
    for node in 0..2 {
        tb.start_agent_with(node, extra).expect("agent");
    }
    let (n1, n2) = (tb.node(0), tb.node(1));
    n1.agent()
        .enroll_with(n1.pod("a1"), "a1", &["app=a1"])
        .expect("enroll a1");
    n2.agent()
        .enroll_with(n2.pod("b1"), "b1", &["app=b1"])
        .expect("enroll b1");
    tb
}

fn peer_auth(name: &str, app: Option<&str>, mode: &str, extra: &str) -> String {
    let selector = app
        .map(|a| format!("  selector:\n    matchLabels:\n      app: {a}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: {name}\n  namespace: e2e\n{extra}spec:\n{selector}  mtls:\n    mode: {mode}\n"
    )
}

/// Apply on both agents (each node reads its own policy, as each DaemonSet pod would).
fn apply(tb: &Testbed, yaml: &str) {
    for node in 0..2 {
        tb.node(node)
            .agent()
            .apply_policy(yaml)
            .expect("policy apply");
    }
}

/// The connection is refused or reset quickly (never a timeout or a success).
fn assert_reset(result: std::io::Result<Vec<u8>>, started: Instant, what: &str) {
    match result {
        Ok(bytes) => panic!("{what}: expected a reset, the connection carried {bytes:?}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused | ErrorKind::BrokenPipe
            ),
            "{what}: expected a reset, got {e:?}"
        ),
    }
    assert!(
        started.elapsed() < HANG,
        "{what}: took as long as a timeout"
    );
}

fn try_exchange(from: &podlock_e2e::Pod, to: SocketAddr, data: &[u8]) -> std::io::Result<Vec<u8>> {
    exchange(connect(from, to)?, data.to_vec())
}

/// A kubelet-style probe: a connection from node `node`'s own network namespace.
fn probe_from_node(
    tb: &Testbed,
    node: usize,
    to: SocketAddr,
    data: &[u8],
) -> std::io::Result<Vec<u8>> {
    tb.node(node).run(|| {
        let s = std::net::TcpStream::connect_timeout(&to, HANG)?;
        s.set_read_timeout(Some(HANG))?;
        exchange(s, data.to_vec())
    })
}

fn transports(tb: &Testbed, node: usize, dst: SocketAddr) -> Vec<String> {
    let conns = tb.node(node).agent().connections().expect("connections");
    conns
        .iter()
        .filter(|c| c["dst"] == dst.to_string())
        .map(|c| c["transport"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn wait_transport(tb: &Testbed, node: usize, dst: SocketAddr, transport: &str) {
    let dst = dst.to_string();
    tb.node(node)
        .agent()
        .wait_connection(|c| {
            c["dst"] == dst && c["direction"] == "inbound" && c["transport"] == transport
        })
        .unwrap_or_else(|e| panic!("no {transport} inbound record: {e}"));
}

#[test]
fn permissive_accepts_mtls_and_plaintext() {
    let tb = bed(&[]);
    let server = EchoServer::start(tb.node(1).pod("b1"), 8080, None);
    assert_eq!(
        try_exchange(tb.node(0).pod("a1"), server.addr, b"mesh").unwrap(),
        b"mesh"
    );
    wait_transport(&tb, 1, server.addr, "hbone");
    assert_eq!(
        try_exchange(tb.node(0).pod("x1"), server.addr, b"plain").unwrap(),
        b"plain"
    );
    wait_transport(&tb, 1, server.addr, "plaintext");
}

#[test]
fn strict_accepts_mtls_and_resets_plaintext() {
    let tb = bed(&[]);
    apply(&tb, &peer_auth("b1-strict", Some("b1"), "STRICT", ""));
    let server = EchoServer::start(tb.node(1).pod("b1"), 8080, None);
    assert_eq!(
        try_exchange(tb.node(0).pod("a1"), server.addr, b"mesh").unwrap(),
        b"mesh"
    );
    wait_transport(&tb, 1, server.addr, "hbone");
    let started = Instant::now();
    assert_reset(
        try_exchange(tb.node(0).pod("x1"), server.addr, b"plain"),
        started,
        "non-mesh -> STRICT",
    );
    let report = tb
        .node(1)
        .agent()
        .cli_ok(&["policy"])
        .expect("podlock policy");
    assert!(
        report.contains("e2e/b1") && report.contains("STRICT") && report.contains("e2e/b1-strict"),
        "{report}"
    );
}

#[test]
fn strict_source_resets_plaintext_to_non_mesh_unless_exempt() {
    let tb = bed(&[]);
    let y1 = tb.node(1).pod("y1");
    let blocked = EchoServer::start(y1, 5432, None);
    let exempt = EchoServer::start(y1, 6379, None);
    let annotation = format!(
        "  annotations:\n    podlock.io/outbound-exempt: \"{}\"\n",
        exempt.addr
    );
    apply(
        &tb,
        &peer_auth("a1-strict", Some("a1"), "STRICT", &annotation),
    );
    let started = Instant::now();
    assert_reset(
        try_exchange(tb.node(0).pod("a1"), blocked.addr, b"leak?"),
        started,
        "STRICT -> non-mesh",
    );
    assert_eq!(
        try_exchange(tb.node(0).pod("a1"), exempt.addr, b"ok").unwrap(),
        b"ok"
    );
    let log = tb.node(0).agent().log_text();
    assert!(
        log.contains("STRICT: destination is not in the mesh"),
        "{log}"
    );
}

#[test]
fn port_level_disable_leaves_one_port_plaintext() {
    let tb = bed(&[]);
    let yaml = format!(
        "{}  portLevelMtls:\n    9090:\n      mode: DISABLE\n",
        peer_auth("b1-ports", Some("b1"), "STRICT", "")
    );
    apply(&tb, &yaml);
    let b1 = tb.node(1).pod("b1");
    let open_port = EchoServer::start(b1, 9090, None);
    let strict_port = EchoServer::start(b1, 8080, None);
    let x1 = tb.node(0).pod("x1");
    assert_eq!(
        try_exchange(x1, open_port.addr, b"disabled").unwrap(),
        b"disabled"
    );
    let started = Instant::now();
    assert_reset(
        try_exchange(x1, strict_port.addr, b"plain"),
        started,
        "plaintext to a STRICT port",
    );
    assert_eq!(
        try_exchange(tb.node(0).pod("a1"), strict_port.addr, b"mesh").unwrap(),
        b"mesh"
    );
    wait_transport(&tb, 1, strict_port.addr, "hbone");
    assert!(
        !transports(&tb, 1, open_port.addr).contains(&"plaintext".to_string()),
        "the DISABLE port was captured"
    );
}

#[test]
fn disable_leaves_inbound_untouched() {
    let tb = bed(&[]);
    apply(&tb, &peer_auth("b1-off", Some("b1"), "DISABLE", ""));
    let server = EchoServer::start(tb.node(1).pod("b1"), 8080, None);
    assert_eq!(
        try_exchange(tb.node(0).pod("x1"), server.addr, b"plain").unwrap(),
        b"plain"
    );
    assert!(
        transports(&tb, 1, server.addr).is_empty(),
        "agent touched DISABLE traffic"
    );
}

#[test]
fn switching_to_strict_closes_live_plaintext_and_back_allows_it() {
    let tb = bed(&[]);
    let server = EchoServer::start(tb.node(1).pod("b1"), 8080, None);
    let mut live = connect(tb.node(0).pod("x1"), server.addr).expect("plaintext connect");
    live.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    live.read_exact(&mut buf).expect("echo before the change");
    tb.node(1)
        .agent()
        .apply_policy(&peer_auth("ns-strict", None, "STRICT", ""))
        .expect("apply");
    let mut rest = Vec::new();
    let ended = live.read_to_end(&mut rest);
    assert!(
        ended.is_err() || rest.is_empty(),
        "live plaintext connection kept flowing"
    );
    let log = tb.node(1).agent().log_text();
    assert!(
        log.contains("closing plaintext connection: policy is now STRICT"),
        "{log}"
    );
    let started = Instant::now();
    assert_reset(
        try_exchange(tb.node(0).pod("x1"), server.addr, b"x"),
        started,
        "new plaintext",
    );
    tb.node(1)
        .agent()
        .cli_ok(&["policy", "delete", "e2e/ns-strict"])
        .expect("delete");
    assert_eq!(
        try_exchange(tb.node(0).pod("x1"), server.addr, b"again").unwrap(),
        b"again"
    );
}

#[test]
fn node_probe_passes_strict_but_the_same_bytes_from_a_pod_do_not() {
    let tb = bed(&[]);
    apply(&tb, &peer_auth("b1-strict", Some("b1"), "STRICT", ""));
    let server = EchoServer::start(tb.node(1).pod("b1"), 8080, None);
    let probe = probe_from_node(&tb, 1, server.addr, b"GET /healthz");
    assert_eq!(
        probe.expect("kubelet-style probe from the node"),
        b"GET /healthz"
    );
    let started = Instant::now();
    assert_reset(
        try_exchange(tb.node(0).pod("x1"), server.addr, b"GET /healthz"),
        started,
        "same bytes from a pod",
    );
    let probe_record = tb
        .node(1)
        .agent()
        .wait_connection(|c| c["dst"] == server.addr.to_string())
        .expect("probe record");
    assert_eq!(probe_record["peer"]["none"], "exempt-probe");
}

#[test]
fn bad_policy_file_keeps_the_last_good_policy() {
    let dir = std::env::temp_dir().join(format!("podlock-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("b1.yaml");
    std::fs::write(&file, peer_auth("b1-strict", Some("b1"), "STRICT", "")).unwrap();
    let dir_arg = dir.display().to_string();
    let tb = bed(&["--policy-dir", &dir_arg]);
    let server = EchoServer::start(tb.node(1).pod("b1"), 8080, None);
    let x1 = tb.node(0).pod("x1");
    let started = Instant::now();
    assert_reset(
        try_exchange(x1, server.addr, b"p"),
        started,
        "STRICT from the file",
    );

    std::fs::write(&file, peer_auth("b1-strict", Some("b1"), "STRICTT", "")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !tb.node(1).agent().log_text().contains("STRICTT") {
        assert!(
            Instant::now() < deadline,
            "bad file not reported: {}",
            tb.node(1).agent().log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = tb.node(1).agent().log_text();
    assert!(
        log.contains("b1.yaml") && log.contains("mode"),
        "error names file and field: {log}"
    );
    let started = Instant::now();
    assert_reset(
        try_exchange(x1, server.addr, b"p"),
        started,
        "last good policy (STRICT) still in force",
    );

    std::fs::write(&file, peer_auth("b1-strict", Some("b1"), "PERMISSIVE", "")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(reply) = try_exchange(x1, server.addr, b"fixed") {
            assert_eq!(reply, b"fixed");
            break;
        }
        assert!(Instant::now() < deadline, "fixed file not applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(tb);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn strict_pod_stays_closed_while_its_agent_restarts() {
    let dir = std::env::temp_dir().join(format!("podlock-failclosed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("b1.yaml"),
        peer_auth("b1-strict", Some("b1"), "STRICT", ""),
    )
    .unwrap();
    let dir_arg = dir.display().to_string();
    let mut tb = bed(&["--policy-dir", &dir_arg]);
    let server = EchoServer::start(tb.node(1).pod("b1"), 8080, None);
    let outside = EchoServer::start(tb.node(1).pod("y1"), 5432, None);
    assert_eq!(
        try_exchange(tb.node(0).pod("a1"), server.addr, b"mesh").unwrap(),
        b"mesh"
    );

    let mut agent = tb.nodes[1].take_agent().expect("agent 2");
    let status = agent.stop().expect("stop");
    assert!(status.success(), "{}", agent.log_text());
    assert!(
        agent.log_text().contains("STRICT pods stay closed"),
        "{}",
        agent.log_text()
    );
    let started = Instant::now();
    assert_reset(
        try_exchange(tb.node(0).pod("x1"), server.addr, b"in"),
        started,
        "inbound plaintext while down",
    );
    let started = Instant::now();
    assert_reset(
        try_exchange(tb.node(1).pod("b1"), outside.addr, b"out"),
        started,
        "outbound plaintext while down",
    );
    let probe = probe_from_node(&tb, 1, server.addr, b"probe");
    assert_eq!(probe.expect("node probe while the agent is down"), b"probe");

    tb.start_agent_with(1, &["--policy-dir", &dir_arg])
        .expect("restart");
    let pods = tb.node(1).agent().pods().expect("pods");
    assert_eq!(
        pods[0]["name"], "b1",
        "b1 restored from the previous run: {pods}"
    );
    let log = tb.node(1).agent().log_text();
    assert!(
        log.contains("released links pinned by an earlier run"),
        "{log}"
    );
    let started = Instant::now();
    assert_reset(
        try_exchange(tb.node(0).pod("x1"), server.addr, b"in"),
        started,
        "inbound plaintext after restart",
    );
    assert_eq!(
        try_exchange(tb.node(0).pod("a1"), server.addr, b"mesh").unwrap(),
        b"mesh"
    );
    drop(tb);
    let _ = std::fs::remove_dir_all(&dir);
}
