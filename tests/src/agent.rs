//! A real `podlock run` agent for one node, and its CLI.
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::Value;

use crate::pod::Pod;

/// The agent binary: `PODLOCK_BIN`, or the workspace's debug build.
pub fn podlock_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PODLOCK_BIN") {
        return PathBuf::from(p);
    }
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/podlock");
    assert!(
        bin.exists(),
        "{} does not exist: build it with `cargo build -p podlock` (cargo xtask test does)",
        bin.display()
    );
    bin
}

/// The testbed's CA (`DIR/ca`), created with `podlock ca init` on first use: generated at
/// test time, never committed.
pub fn ca_dir(dir: &Path) -> Result<PathBuf> {
    let ca = dir.join("ca");
    if !ca.join("ca-key.pem").exists() {
        let out = Command::new(podlock_bin())
            .args(["ca", "init", "--out"])
            .arg(&ca)
            .output()?;
        if !out.status.success() {
            bail!(
                "podlock ca init failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(ca)
}

/// Where node `index`'s agent pins its links (a bpffs it mounts itself).
pub fn bpffs_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("bpffs-n{}", index + 1))
}

pub struct Agent {
    child: Child,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Agent {
    /// Starts `podlock run` inside the node's netns with its own socket and mark, so several
    /// agents can share this machine, and waits until its node API answers.
    pub fn start(dir: &Path, node_netns: &str, index: usize, extra: &[&str]) -> Result<Self> {
        let ca = ca_dir(dir)?;
        let socket = dir.join(format!("agent-n{}.sock", index + 1));
        let log = dir.join(format!("agent-n{}.log", index + 1));
        let log_file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)?;
        let mark = format!("{}", 0x7000 + index);
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{node_netns}"))
            .arg("--")
            .arg(podlock_bin())
            .args(["run", "--socket"])
            .arg(&socket)
            .args(["--mark", &mark])
            .arg("--ca-dir")
            .arg(&ca)
            .arg("--state-dir")
            .arg(dir.join(format!("state-n{}", index + 1)))
            .arg("--bpffs-dir")
            .arg(bpffs_dir(dir, index))
            .args(extra)
            .env("RUST_LOG", "info,podlock=debug")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("cannot start podlock run")?;
        let mut agent = Self { child, socket, log };
        agent.wait_ready()?;
        Ok(agent)
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "podlock run exited ({status}) before it was ready:\n{}",
                    self.log_text()
                );
            }
            if self
                .cli(&["pods"])
                .map(|o| o.status.success())
                .unwrap_or(false)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "podlock run did not answer within 20 s:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn dump_log(&self) {
        eprintln!("---- {} ----\n{}", self.log.display(), self.log_text());
    }

    /// Runs `podlock ARGS --socket <this agent>`.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        Ok(Command::new(podlock_bin())
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()?)
    }

    /// Like [`Agent::cli`], but a failure is an error with the CLI's stderr.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "podlock {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn enroll(&self, pod: &Pod) -> Result<String> {
        self.enroll_with(pod, "default", &[])
    }

    /// Enrolls with a given service account (and so SPIFFE identity).
    pub fn enroll_as(&self, pod: &Pod, service_account: &str) -> Result<String> {
        self.enroll_with(pod, service_account, &[])
    }

    /// Enrolls with a service account and labels (`key=value`).
    pub fn enroll_with(&self, pod: &Pod, service_account: &str, labels: &[&str]) -> Result<String> {
        let netns = pod.netns_path.display().to_string();
        let mut args = vec![
            "enroll",
            "--netns",
            &netns,
            "--namespace",
            &pod.namespace,
            "--name",
            &pod.name,
            "--service-account",
            service_account,
        ];
        for label in labels {
            args.extend(["--label", label]);
        }
        self.cli_ok(&args)
    }

    /// `podlock policy apply -f` with `yaml` written to a file next to the agent's log.
    pub fn apply_policy(&self, yaml: &str) -> Result<String> {
        let file = self.log.with_extension("policy.yaml");
        std::fs::write(&file, yaml)?;
        self.cli_ok(&["policy", "apply", "-f", &file.display().to_string()])
    }

    pub fn unenroll(&self, pod: &Pod) -> Result<String> {
        self.cli_ok(&[
            "unenroll",
            "--namespace",
            &pod.namespace,
            "--name",
            &pod.name,
        ])
    }

    pub fn pods(&self) -> Result<Value> {
        Ok(serde_json::from_str(&self.cli_ok(&["pods", "--json"])?)?)
    }

    /// Open and recently closed connections, oldest first.
    pub fn connections(&self) -> Result<Vec<Value>> {
        let snap: Value = serde_json::from_str(&self.cli_ok(&["connections", "--json"])?)?;
        let mut all: Vec<Value> = snap["recent"].as_array().cloned().unwrap_or_default();
        all.extend(snap["open"].as_array().cloned().unwrap_or_default());
        Ok(all)
    }

    /// Waits (up to 10 s) for a connection record matching `pred`; the agent records a
    /// connection's close a moment after the client sees it.
    pub fn wait_connection(&self, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let conns = self.connections()?;
            if let Some(c) = conns.iter().find(|c| pred(c)) {
                return Ok(c.clone());
            }
            if Instant::now() > deadline {
                bail!("no matching connection in the agent's table: {conns:#?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then wait for a clean exit (SIGKILL after 15 s). Returns the exit status.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let status = self.child.wait()?;
                bail!("podlock run ignored SIGTERM for 15 s; killed ({status})");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.stop();
        }
    }
}
