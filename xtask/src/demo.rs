//! `cargo xtask demo`: one local node with two real pods (network namespaces wired by the
//! CNI bridge plugin, processes in their own cgroups), a real agent, a real server and
//! client, and what the operator CLI shows. Everything is torn down at the end, and on
//! Ctrl-C.
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use anyhow::{bail, Result};
use podlock_e2e::Testbed;

fn step(interrupted: &AtomicBool, title: &str) -> Result<()> {
    if interrupted.load(Ordering::SeqCst) {
        bail!("interrupted; tearing the demo node down");
    }
    println!("\n==> {title}");
    Ok(())
}

pub fn run() -> Result<()> {
    crate::build_agent()?;
    crate::setup::all()?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    let result = demo(&interrupted);
    println!("\n==> demo node, pods, cgroups and agent removed");
    result
}

fn demo(interrupted: &AtomicBool) -> Result<()> {
    step(
        interrupted,
        "creating a node with two pods (CNI bridge + host-local IPAM)",
    )?;
    let mut tb = Testbed::new(&[&["web", "client"]])?;
    let (web_ip, client_ip) = (tb.node(0).pod("web").ip, tb.node(0).pod("client").ip);
    println!("    web    {web_ip}\n    client {client_ip}");

    step(
        interrupted,
        "starting `podlock run` and enrolling both pods",
    )?;
    tb.start_agent(0)?;
    let node = tb.node(0);
    for pod in &node.pods {
        print!("    {}", node.agent().enroll(pod)?);
    }

    step(
        interrupted,
        "web: socat echo server on :8080 (a process in the web pod)",
    )?;
    node.pod("web")
        .spawn("socat", &["TCP-LISTEN:8080,fork,reuseaddr", "EXEC:cat"])?;
    std::thread::sleep(std::time::Duration::from_millis(300));

    step(
        interrupted,
        &format!("client: sending a line to {web_ip}:8080"),
    )?;
    let target = format!("TCP:{web_ip}:8080");
    let out = node.pod("client").exec(
        "socat",
        &["-t", "2", "-", &target],
        b"hello from the client pod\n",
    )?;
    print!("    reply: {}", String::from_utf8_lossy(&out.stdout));
    if !out.status.success() {
        bail!("client failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));

    step(interrupted, "podlock pods")?;
    print!("{}", node.agent().cli_ok(&["pods"])?);
    step(interrupted, "podlock connections")?;
    print!("{}", node.agent().cli_ok(&["connections"])?);
    step(interrupted, "stopping the agent (SIGTERM) and tearing down")?;
    Ok(())
}
