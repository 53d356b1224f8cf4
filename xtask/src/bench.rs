//! `cargo xtask bench`: podlock's data path against a direct, un-proxied run in the same
//! invocation, on the same topology (two nodes; `c` → `s` through both agents over mTLS,
//! `cd` → `sd` not enrolled, so direct). Reported as ratios: these machines are shared and
//! noisy, absolute numbers mean little. Nothing here is asserted.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use podlock_e2e::{traffic::EchoServer, Pod, Testbed};

const THROUGHPUT_BYTES: usize = 256 << 20;
const PING_PONGS: usize = 2000;
const CONNECTIONS: usize = 300;
const IDLE_CONNECTIONS: usize = 400;

pub fn run() -> Result<()> {
    crate::setup::all()?;
    crate::ebpf::build()?;
    crate::run(crate::cargo().args(["build", "--release", "-p", "podlock"]))?;
    let bin = crate::workspace_root().join("target/release/podlock");
    // The harness starts whatever PODLOCK_BIN names: the optimised agent.
    std::env::set_var("PODLOCK_BIN", &bin);

    let mut tb = Testbed::new(&[&["c", "cd"], &["s", "sd"]])?;
    tb.start_agent(0)?;
    tb.start_agent(1)?;
    tb.node(0).agent().enroll(tb.node(0).pod("c"))?;
    tb.node(1).agent().enroll(tb.node(1).pod("s"))?;
    let agents = [tb.node(0).agent().pid(), tb.node(1).agent().pid()];
    let (c, cd) = (tb.node(0).pod("c"), tb.node(0).pod("cd"));
    let (s, sd) = (tb.node(1).pod("s"), tb.node(1).pod("sd"));

    let sink = (Sink::start(s, 5001)?, Sink::start(sd, 5001)?);
    let echo = (
        EchoServer::start(s, 5002, None),
        EchoServer::start(sd, 5002, None),
    );
    // Warm up: certificates, the HBONE pool, mesh discovery.
    throughput(c, sink.0.addr, 1 << 20)?;

    println!("\npodlock bench: {THROUGHPUT_BYTES} B bulk, {PING_PONGS} ping-pongs, {CONNECTIONS} connections, {IDLE_CONNECTIONS} idle");
    println!(
        "{:<34} {:>14} {:>14} {:>8}",
        "metric", "direct", "podlock", "ratio"
    );

    let cpu_before = cpu_seconds(&agents)?;
    let mesh_mbps = throughput(c, sink.0.addr, THROUGHPUT_BYTES)?;
    let cpu = cpu_seconds(&agents)? - cpu_before;
    let direct_mbps = throughput(cd, sink.1.addr, THROUGHPUT_BYTES)?;
    row("throughput (MiB/s, higher better)", direct_mbps, mesh_mbps);

    let (d50, d99) = latency(cd, echo.1.addr)?;
    let (m50, m99) = latency(c, echo.0.addr)?;
    row("latency p50 (µs, lower better)", d50, m50);
    row("latency p99 (µs, lower better)", d99, m99);

    let direct_rate = connection_rate(cd, echo.1.addr)?;
    let mesh_rate = connection_rate(c, echo.0.addr)?;
    row("connections/s (higher better)", direct_rate, mesh_rate);

    let gib = THROUGHPUT_BYTES as f64 / f64::from(1u32 << 30);
    println!(
        "{:<34} {:>14} {:>14.2}",
        "agent CPU s per GiB (both agents)",
        "-",
        cpu / gib
    );

    let rss_before = rss_kib(&agents)?;
    let idle: Vec<TcpStream> = (0..IDLE_CONNECTIONS)
        .map(|_| c.run(|| TcpStream::connect(echo.0.addr)))
        .collect::<std::io::Result<_>>()?;
    std::thread::sleep(Duration::from_millis(500));
    let per_conn = (rss_kib(&agents)? - rss_before) / IDLE_CONNECTIONS as f64;
    println!(
        "{:<34} {:>14} {:>14.1}",
        "agent memory KiB per idle conn", "-", per_conn
    );
    drop(idle);
    Ok(())
}

fn row(name: &str, direct: f64, mesh: f64) {
    println!(
        "{name:<34} {direct:>14.1} {mesh:>14.1} {:>8.2}",
        mesh / direct
    );
}

/// Sends `bytes` and waits for the server to confirm it read them all; MiB/s.
fn throughput(from: &Pod, to: SocketAddr, bytes: usize) -> Result<f64> {
    from.run(|| -> Result<f64> {
        let mut s = TcpStream::connect(to)?;
        let chunk = vec![0x5au8; 256 << 10];
        let start = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            s.write_all(&chunk[..n])?;
            left -= n;
        }
        s.shutdown(std::net::Shutdown::Write)?;
        let mut ack = [0u8; 8];
        s.read_exact(&mut ack)?;
        anyhow::ensure!(
            u64::from_be_bytes(ack) == bytes as u64,
            "sink saw a different length"
        );
        Ok(bytes as f64 / f64::from(1u32 << 20) / start.elapsed().as_secs_f64())
    })
}

/// p50 and p99 round trip of 64 bytes on one connection, in µs.
fn latency(from: &Pod, to: SocketAddr) -> Result<(f64, f64)> {
    from.run(|| -> Result<(f64, f64)> {
        let mut s = TcpStream::connect(to)?;
        s.set_nodelay(true)?;
        let mut buf = [7u8; 64];
        let mut samples = Vec::with_capacity(PING_PONGS);
        for _ in 0..PING_PONGS {
            let start = Instant::now();
            s.write_all(&buf)?;
            s.read_exact(&mut buf)?;
            samples.push(start.elapsed().as_secs_f64() * 1e6);
        }
        samples.sort_by(f64::total_cmp);
        Ok((samples[PING_PONGS / 2], samples[PING_PONGS * 99 / 100]))
    })
}

/// Sequential connect, 1-byte echo, close.
fn connection_rate(from: &Pod, to: SocketAddr) -> Result<f64> {
    from.run(|| -> Result<f64> {
        let start = Instant::now();
        for _ in 0..CONNECTIONS {
            let mut s = TcpStream::connect(to)?;
            s.write_all(b"x")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)?;
        }
        Ok(CONNECTIONS as f64 / start.elapsed().as_secs_f64())
    })
}

fn cpu_seconds(pids: &[u32]) -> Result<f64> {
    let mut total = 0.0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .context("stat")?
            .1
            .split(' ')
            .collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        total += ticks / 100.0;
    }
    Ok(total)
}

fn rss_kib(pids: &[u32]) -> Result<f64> {
    let mut total = 0.0;
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .context("VmRSS")?;
        total += line
            .split_whitespace()
            .nth(1)
            .context("VmRSS value")?
            .parse::<f64>()?;
    }
    Ok(total)
}

/// Reads everything, then answers with the byte count (8 bytes, big-endian).
struct Sink {
    addr: SocketAddr,
}

impl Sink {
    fn start(pod: &Pod, port: u16) -> Result<Self> {
        let addr = SocketAddr::from((pod.ip, port));
        let listener = pod.run(|| TcpListener::bind(addr))?;
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 256 << 10];
                    let mut n = 0u64;
                    while let Ok(read) = s.read(&mut buf) {
                        if read == 0 {
                            break;
                        }
                        n += read as u64;
                    }
                    let _ = s.write_all(&n.to_be_bytes());
                });
            }
        });
        Ok(Self { addr })
    }
}
