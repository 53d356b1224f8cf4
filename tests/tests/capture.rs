//! Foundation end to end: two nodes, two pods each, one agent per node, real traffic.
use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr},
};

use podlock_e2e::{
    traffic::{checksum, connect, exchange, pattern, EchoServer},
    Testbed,
};

/// a1, a2 on node 1; b1, b2 on node 2; every pod enrolled with its node's agent.
fn enrolled_testbed() -> Testbed {
    Testbed::new(&[&["a1", "a2"], &["b1", "b2"]])
        .and_then(Testbed::with_agents_enrolling_all)
        .expect("testbed")
}

fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

#[test]
fn cross_node_connection_goes_through_both_agents() {
    let tb = enrolled_testbed();
    let (a1, b1) = (tb.node(0).pod("a1"), tb.node(1).pod("b1"));
    let server = EchoServer::start(b1, 8080, None);
    let stream = connect(a1, server.addr).expect("connect");
    let reply = exchange(stream, b"hello through podlock".to_vec()).expect("exchange");
    assert_eq!(reply, b"hello through podlock");

    let dst = server.addr.to_string();
    let out = tb
        .node(0)
        .agent()
        .wait_connection(|c| str_field(c, "direction") == "outbound" && str_field(c, "dst") == dst)
        .expect("node 1's agent carried the outbound leg");
    assert_eq!(str_field(&out, "pod"), "e2e/a1");
    assert_eq!(out["bytes_sent"], 21);
    let src_ip = a1.ip.to_string();
    let inb = tb
        .node(1)
        .agent()
        .wait_connection(|c| {
            str_field(c, "direction") == "inbound"
                && str_field(c, "dst") == dst
                && str_field(c, "src").starts_with(&format!("{src_ip}:"))
        })
        .expect("node 2's agent carried the inbound leg");
    assert_eq!(str_field(&inb, "pod"), "e2e/b1");
    assert_eq!(inb["bytes_received"], 21);
}

#[test]
fn large_transfer_is_byte_exact_both_ways() {
    let tb = enrolled_testbed();
    let server = EchoServer::start(tb.node(1).pod("b1"), 8081, None);
    let data = pattern(24 << 20, 7);
    let stream = connect(tb.node(0).pod("a1"), server.addr).expect("connect");
    let reply = exchange(stream, data.clone()).expect("exchange");
    assert_eq!(reply.len(), data.len(), "length");
    assert_eq!(checksum(&reply), checksum(&data), "content");
}

#[test]
fn half_close_is_propagated_and_server_can_answer_after_it() {
    let tb = enrolled_testbed();
    let server = EchoServer::start(tb.node(1).pod("b1"), 8082, None);
    let mut stream = connect(tb.node(0).pod("a1"), server.addr).expect("connect");
    stream.write_all(b"first half").expect("write");
    // The server only replies after it sees our FIN, so this proves FIN went across.
    stream.shutdown(Shutdown::Write).expect("shutdown");
    let mut reply = Vec::new();
    stream
        .read_to_end(&mut reply)
        .expect("read until the server's FIN");
    assert_eq!(reply, b"first half");
}

#[test]
fn server_speaks_first() {
    let tb = enrolled_testbed();
    let server = EchoServer::start(tb.node(1).pod("b1"), 2525, Some(b"220 ready\r\n"));
    let mut stream = connect(tb.node(0).pod("a1"), server.addr).expect("connect");
    let mut banner = [0u8; 11];
    stream
        .read_exact(&mut banner)
        .expect("banner before we send anything");
    assert_eq!(&banner, b"220 ready\r\n");
    let reply = exchange(stream, b"EHLO x".to_vec()).expect("exchange");
    assert_eq!(reply, b"EHLO x");
}

#[test]
fn refused_upstream_is_a_reset_not_a_hang() {
    let tb = enrolled_testbed();
    let nobody = SocketAddr::from((tb.node(1).pod("b1").ip, 9));
    let mut stream = connect(tb.node(0).pod("a1"), nobody).expect("local connect is captured");
    let mut buf = [0u8; 1];
    let err = stream
        .read(&mut buf)
        .expect_err("reading from a refused destination must fail");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
        ),
        "expected a reset, got {err:?}"
    );
}

#[test]
fn same_node_pods_are_captured() {
    let tb = enrolled_testbed();
    let server = EchoServer::start(tb.node(0).pod("a2"), 8083, None);
    let stream = connect(tb.node(0).pod("a1"), server.addr).expect("connect");
    assert_eq!(
        exchange(stream, b"neighbour".to_vec()).expect("exchange"),
        b"neighbour"
    );
    let dst = server.addr.to_string();
    let agent = tb.node(0).agent();
    agent
        .wait_connection(|c| str_field(c, "direction") == "outbound" && str_field(c, "dst") == dst)
        .expect("outbound leg");
    agent
        .wait_connection(|c| str_field(c, "direction") == "inbound" && str_field(c, "dst") == dst)
        .expect("inbound leg");
}

#[test]
fn getpeername_shows_the_dialled_address() {
    let tb = enrolled_testbed();
    let server = EchoServer::start(tb.node(1).pod("b1"), 8084, None);
    let stream = connect(tb.node(0).pod("a1"), server.addr).expect("connect");
    assert_eq!(stream.peer_addr().expect("getpeername"), server.addr);
    assert_eq!(exchange(stream, b"x".to_vec()).expect("exchange"), b"x");
}

#[test]
fn v4_mapped_ipv6_socket_is_captured() {
    let tb = enrolled_testbed();
    let b1 = tb.node(1).pod("b1");
    let server = EchoServer::start(b1, 8085, None);
    let mapped: SocketAddr = format!("[::ffff:{}]:8085", b1.ip).parse().unwrap();
    let stream = connect(tb.node(0).pod("a1"), mapped).expect("connect over AF_INET6");
    assert_eq!(stream.peer_addr().expect("getpeername"), mapped);
    assert_eq!(
        exchange(stream, b"java".to_vec()).expect("exchange"),
        b"java"
    );
    let dst = server.addr.to_string();
    tb.node(0)
        .agent()
        .wait_connection(|c| str_field(c, "direction") == "outbound" && str_field(c, "dst") == dst)
        .expect("captured as IPv4");
}

#[test]
fn unenrolled_pods_are_untouched() {
    let mut tb = Testbed::new(&[&["a1", "a3"], &["b1", "b3"]]).expect("testbed");
    tb.start_agent(0).expect("agent 1");
    tb.start_agent(1).expect("agent 2");
    for (node, pod) in [(0, "a1"), (1, "b1")] {
        let n = tb.node(node);
        n.agent().enroll(n.pod(pod)).expect("enroll");
    }
    // a3 -> b3: neither is enrolled.
    let server = EchoServer::start(tb.node(1).pod("b3"), 8086, None);
    let stream = connect(tb.node(0).pod("a3"), server.addr).expect("connect");
    assert_eq!(stream.peer_addr().unwrap(), server.addr);
    assert_eq!(
        exchange(stream, b"plain".to_vec()).expect("exchange"),
        b"plain"
    );
    // Then prove the agents are live by carrying a1 -> b1, and that a3 -> b3 never showed up.
    let live = EchoServer::start(tb.node(1).pod("b1"), 8087, None);
    let stream = connect(tb.node(0).pod("a1"), live.addr).expect("connect");
    assert_eq!(
        exchange(stream, b"mesh".to_vec()).expect("exchange"),
        b"mesh"
    );
    let live_dst = live.addr.to_string();
    tb.node(1)
        .agent()
        .wait_connection(|c| str_field(c, "dst") == live_dst)
        .expect("a1 -> b1 carried");
    let untouched = server.addr.to_string();
    for node in [0, 1] {
        let conns = tb.node(node).agent().connections().expect("connections");
        assert!(
            conns.iter().all(|c| str_field(c, "dst") != untouched),
            "agent {node} touched a3 -> b3: {conns:#?}"
        );
    }
}

#[test]
fn a_real_process_in_the_pods_cgroup_is_captured() {
    let tb = enrolled_testbed();
    let server = EchoServer::start(tb.node(1).pod("b1"), 8088, None);
    let target = format!("TCP:{}", server.addr);
    let out = tb
        .node(0)
        .pod("a1")
        .exec("socat", &["-t", "5", "-", &target], b"from socat")
        .expect("socat runs");
    assert!(
        out.status.success(),
        "socat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"from socat");
    let dst = server.addr.to_string();
    tb.node(0)
        .agent()
        .wait_connection(|c| str_field(c, "direction") == "outbound" && str_field(c, "dst") == dst)
        .expect("socat's connection was captured");
}

#[test]
fn connect_send_close_clients_lose_nothing() {
    let tb = enrolled_testbed();
    let b1 = tb.node(1).pod("b1");
    let addr = SocketAddr::from((b1.ip, 8089));
    let listener = b1.run(|| std::net::TcpListener::bind(addr).expect("bind"));
    const ROUNDS: usize = 20;
    let receiver = std::thread::spawn(move || {
        (0..ROUNDS)
            .map(|_| {
                let (mut s, _) = listener.accept().expect("accept");
                s.set_read_timeout(Some(podlock_e2e::traffic::HANG))
                    .unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).expect("read");
                got.len()
            })
            .collect::<Vec<_>>()
    });
    let payload = pattern(1000, 5);
    for _ in 0..ROUNDS {
        // Fire and forget: write, close, and never read.
        let mut s = connect(tb.node(0).pod("a1"), addr).expect("connect");
        s.write_all(&payload).expect("write");
    }
    let lengths = receiver.join().expect("receiver");
    assert!(lengths.iter().all(|n| *n == 1000), "{lengths:?}");
}
