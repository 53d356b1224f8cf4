//! `cargo xtask demo`: one local node with real pods (network namespaces wired by the CNI
//! bridge plugin, processes in their own cgroups), a real agent, real traffic over mTLS,
//! a STRICT PeerAuthentication, and what the operator CLI shows. Everything is torn down
//! at the end, and on Ctrl-C.
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use anyhow::{bail, Result};
use podlock_e2e::{Pod, Testbed};

const STRICT_WEB: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: web-strict
  namespace: e2e
spec:
  selector:
    matchLabels:
      app: web
  mtls:
    mode: STRICT
";

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

/// One line from `from` to `target` with socat (a real process in the pod); the reply, or
/// what went wrong.
fn send(from: &Pod, target: &str, line: &str) -> Result<String> {
    let out = from.exec("socat", &["-t", "2", "-", target], line.as_bytes())?;
    if out.status.success() && !out.stdout.is_empty() {
        Ok(format!(
            "reply: {}",
            String::from_utf8_lossy(&out.stdout).trim_end()
        ))
    } else {
        Ok(format!(
            "refused: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        ))
    }
}

fn demo(interrupted: &AtomicBool) -> Result<()> {
    step(
        interrupted,
        "creating a node with three pods (CNI bridge + host-local IPAM)",
    )?;
    let mut tb = Testbed::new(&[&["web", "client", "outsider"]])?;
    for pod in &tb.node(0).pods {
        println!("    {:<9} {}", pod.name, pod.ip);
    }

    step(
        interrupted,
        "creating a CA (podlock ca init), starting `podlock run`, enrolling web and client",
    )?;
    tb.start_agent(0)?;
    let node = tb.node(0);
    let agent = node.agent();
    print!(
        "    {}",
        agent.enroll_with(node.pod("web"), "web", &["app=web"])?
    );
    print!(
        "    {}",
        agent.enroll_with(node.pod("client"), "client", &[])?
    );
    println!("    (outsider is not enrolled: it plays a workload outside the mesh)");

    step(
        interrupted,
        "web: socat echo server on :8080 (a process in the web pod)",
    )?;
    node.pod("web")
        .spawn("socat", &["TCP-LISTEN:8080,fork,reuseaddr", "EXEC:cat"])?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let target = format!("TCP:{}:8080", node.pod("web").ip);

    step(
        interrupted,
        "PERMISSIVE (the default): client over mTLS, outsider in plaintext",
    )?;
    println!(
        "    client:   {}",
        send(node.pod("client"), &target, "hello over mTLS")?
    );
    println!(
        "    outsider: {}",
        send(node.pod("outsider"), &target, "hello in plaintext")?
    );

    step(interrupted, "podlock policy apply: STRICT for app=web")?;
    let file = tb.dir().join("web-strict.yaml");
    std::fs::write(&file, STRICT_WEB)?;
    print!(
        "    {}",
        agent.cli_ok(&["policy", "apply", "-f", &file.display().to_string()])?
    );
    print!("{}", agent.cli_ok(&["policy"])?);

    step(
        interrupted,
        "STRICT: client still over mTLS, outsider's plaintext reset",
    )?;
    println!(
        "    client:   {}",
        send(node.pod("client"), &target, "still fine")?
    );
    println!(
        "    outsider: {}",
        send(node.pod("outsider"), &target, "let me in")?
    );
    std::thread::sleep(std::time::Duration::from_millis(200));

    step(interrupted, "podlock pods")?;
    print!("{}", agent.cli_ok(&["pods"])?);
    step(interrupted, "podlock connections")?;
    print!("{}", agent.cli_ok(&["connections"])?);
    step(interrupted, "stopping the agent (SIGTERM) and tearing down")?;
    Ok(())
}
