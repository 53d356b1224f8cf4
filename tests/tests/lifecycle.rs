//! Enrollment, bad input and the agent's lifecycle, end to end.
use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::UnixStream,
    process::Command,
};

use podlock_e2e::{
    traffic::{connect, exchange, EchoServer},
    Testbed,
};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn one_node() -> Testbed {
    let mut tb = Testbed::new(&[&["p1", "p2"]]).expect("testbed");
    tb.start_agent(0).expect("agent");
    tb
}

#[test]
fn enrollment_is_idempotent_and_listed() {
    let tb = one_node();
    let (agent, p1) = (tb.node(0).agent(), tb.node(0).pod("p1"));
    let first = agent.enroll(p1).expect("enroll");
    assert!(first.contains("e2e/p1 enrolled"), "{first}");
    let again = agent.enroll(p1).expect("enroll again");
    assert!(again.contains("already enrolled"), "{again}");
    let pods = agent.pods().expect("pods");
    let pods = pods.as_array().expect("list");
    assert_eq!(pods.len(), 1);
    assert_eq!(pods[0]["name"], "p1");
    assert_eq!(pods[0]["ips"][0], p1.ip.to_string());
    assert_eq!(
        pods[0]["identity"],
        "spiffe://cluster.local/ns/e2e/sa/default"
    );
    assert!(pods[0]["netns_cookie"].as_u64().unwrap_or(0) > 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&agent.socket)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the node API socket is root-only");
    let config: serde_json::Value =
        serde_json::from_str(&agent.cli_ok(&["config"]).expect("config")).expect("JSON");
    assert_eq!(config["trust_domain"], "cluster.local");
    assert_eq!(config["cert_lifetime"], 86400);
    let table = agent.cli_ok(&["pods"]).expect("table");
    assert!(
        table.contains("p1") && table.contains(&p1.ip.to_string()),
        "{table}"
    );
}

#[test]
fn bad_enroll_requests_fail_with_a_named_reason_and_disturb_nothing() {
    let tb = one_node();
    let node = tb.node(0);
    let (agent, p1, p2) = (node.agent(), node.pod("p1"), node.pod("p2"));
    agent.enroll(p1).expect("enroll p1");
    agent.enroll(p2).expect("enroll p2");
    // A long-lived connection through the agent that must survive all of the below.
    let server = EchoServer::start(p2, 7000, None);
    let mut live = connect(p1, server.addr).expect("connect");
    live.write_all(b"before ").expect("write");

    let missing = tb.dir().join("no-such-netns");
    let missing = missing.display().to_string();
    let p2_netns = p2.netns_path.display().to_string();
    let enroll = |netns: &str, namespace: &str, name: &str| {
        vec![
            "enroll".to_string(),
            "--netns".into(),
            netns.into(),
            "--namespace".into(),
            namespace.into(),
            "--name".into(),
            name.into(),
        ]
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (enroll(&missing, "e2e", "x"), &missing),
        (
            enroll("/etc/hostname", "e2e", "x"),
            "not a network namespace",
        ),
        (
            enroll(&p2_netns, "e2e", "p1"),
            "already enrolled with netns",
        ),
        (
            enroll(&p2_netns, "e2e", "other"),
            "already belongs to enrolled pod e2e/p2",
        ),
        (
            enroll(&p2_netns, "Bad_NS", "x"),
            "invalid namespace \"Bad_NS\"",
        ),
        (
            ["unenroll", "--namespace", "e2e", "--name", "ghost"]
                .map(String::from)
                .to_vec(),
            "e2e/ghost is not enrolled",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = agent.cli(&args).expect("cli");
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = stderr(&out);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }

    // Garbage and oversized lines on the node API get an error reply, not a dead agent.
    let mut raw = UnixStream::connect(&agent.socket).expect("api socket");
    raw.write_all(b"{not json\n").expect("write");
    let mut reply = String::new();
    BufReader::new(raw.try_clone().unwrap())
        .read_line(&mut reply)
        .expect("reply");
    assert!(reply.contains("malformed request"), "{reply}");
    // The agent may stop reading once the line is too long: a failed write is fine.
    let _ = raw.write_all(&vec![b'x'; 512 * 1024]);
    let mut rest = String::new();
    let _ = raw.read_to_string(&mut rest);
    assert!(rest.contains("longer than"), "{rest}");

    // Nothing above disturbed the pods or the live connection.
    assert_eq!(agent.pods().unwrap().as_array().unwrap().len(), 2);
    let reply = exchange(live.try_clone().unwrap(), b"after".to_vec()).expect("live connection");
    assert_eq!(reply, b"before after");
}

#[test]
fn cli_without_an_agent_says_so() {
    let dir = std::env::temp_dir().join(format!("podlock-nosock-{}", std::process::id()));
    let sock = dir.join("agent.sock");
    let out = Command::new(podlock_e2e_bin())
        .args(["pods", "--socket"])
        .arg(&sock)
        .output()
        .expect("run podlock");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no podlock agent is listening") && err.contains("agent.sock"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

fn podlock_e2e_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/podlock")
}

#[test]
fn unenroll_stops_capture_and_closes_the_pods_connections() {
    let tb = one_node();
    let node = tb.node(0);
    let (agent, p1, p2) = (node.agent(), node.pod("p1"), node.pod("p2"));
    agent.enroll(p1).expect("enroll");
    let server = EchoServer::start(p2, 7001, None);
    let mut held = connect(p1, server.addr).expect("captured connect");
    held.write_all(b"x").expect("write");
    let mut one = [0u8; 1];
    held.read_exact(&mut one).expect("echo");

    agent.unenroll(p1).expect("unenroll");
    assert!(agent.pods().unwrap().as_array().unwrap().is_empty());
    // The captured connection was closed with the pod's listeners.
    let mut rest = Vec::new();
    let closed = held.read_to_end(&mut rest);
    assert!(
        closed.is_err() || rest.is_empty(),
        "connection still carried data"
    );
    // New connections go straight to the server, not through the agent.
    let direct = connect(p1, server.addr).expect("direct connect");
    assert_eq!(exchange(direct, b"direct".to_vec()).unwrap(), b"direct");
    let conns = agent.connections().unwrap();
    assert_eq!(
        conns
            .iter()
            .filter(|c| c["dst"] == server.addr.to_string())
            .count(),
        1,
        "only the connection from before unenroll: {conns:#?}"
    );
}

#[test]
fn sigterm_detaches_everything_and_the_pod_talks_directly_again() {
    let mut tb = one_node();
    let node = tb.node(0);
    node.agent().enroll(node.pod("p1")).expect("enroll");
    let server = EchoServer::start(node.pod("p2"), 7002, None);
    let mut agent = tb.nodes[0].take_agent().expect("agent");
    let socket = agent.socket.clone();
    let status = agent.stop().expect("agent stops");
    assert!(
        status.success(),
        "clean exit: {status}\n{}",
        agent.log_text()
    );
    assert!(!socket.exists(), "socket file removed");
    let log = agent.log_text();
    assert!(log.contains("eBPF programs detached"), "{log}");
    // Were the cgroup programs still attached, this connect would be rewritten to a
    // listener that no longer exists.
    let stream = connect(tb.node(0).pod("p1"), server.addr).expect("direct connect");
    assert_eq!(
        exchange(stream, b"after stop".to_vec()).unwrap(),
        b"after stop"
    );
}

#[test]
fn a_second_agent_on_the_same_socket_is_refused() {
    let tb = one_node();
    let first = tb.node(0).agent();
    let ca = podlock_e2e::ca_dir(tb.dir()).expect("CA");
    let mut second = Command::new(podlock_e2e_bin())
        .args(["run", "--socket"])
        .arg(&first.socket)
        .arg("--ca-dir")
        .arg(&ca)
        .arg("--bpffs-dir")
        .arg(tb.dir().join("second-bpffs"))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start second agent");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while second.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = second.kill();
            panic!("second agent on the same socket kept running");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = second.wait_with_output().expect("output");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already serving"), "{}", stderr(&out));
    // The first agent is unaffected.
    first.pods().expect("first agent still answers");
}

/// `GET path` on the node's own `127.0.0.1:port` (where the agent serves its endpoints).
fn http_get(tb: &Testbed, port: u16, path: &str) -> String {
    tb.node(0).run(|| {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("admin port");
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("reply");
        reply
    })
}

#[test]
fn metrics_and_readiness_are_served_on_the_node() {
    let tb = one_node();
    let node = tb.node(0);
    node.agent().enroll(node.pod("p1")).expect("enroll");
    node.agent().enroll(node.pod("p2")).expect("enroll");
    let ready = http_get(&tb, 15021, "/healthz/ready");
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");

    let server = EchoServer::start(node.pod("p2"), 7003, None);
    let stream = connect(node.pod("p1"), server.addr).expect("connect");
    assert_eq!(exchange(stream, b"count me".to_vec()).unwrap(), b"count me");
    let dst = server.addr.to_string();
    node.agent()
        .wait_connection(|c| {
            c["dst"] == dst && c["direction"] == "inbound" && c["closed_unix_ms"].is_u64()
        })
        .expect("closed");
    node.agent()
        .wait_connection(|c| {
            c["dst"] == dst && c["direction"] == "outbound" && c["closed_unix_ms"].is_u64()
        })
        .expect("closed");
    let metrics = http_get(&tb, 15020, "/metrics");
    for line in [
        r#"podlock_connections_opened_total{direction="outbound",transport="hbone"} 1"#,
        r#"podlock_connections_opened_total{direction="inbound",transport="hbone"} 1"#,
        r#"podlock_sent_bytes_total{direction="outbound",transport="hbone"} 8"#,
        r#"podlock_connections_active{direction="inbound",transport="hbone"} 0"#,
        "podlock_enrolled_pods 2",
    ] {
        assert!(metrics.contains(line), "missing {line}:\n{metrics}");
    }
}
