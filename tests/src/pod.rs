//! A pod: a network namespace wired by CNI, a cgroup for its processes, and helpers to run
//! code or programs inside it.
use std::{
    fs::File,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Mutex,
};

use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};

use crate::{cmd, cni::CniNetwork};

pub struct Pod {
    pub name: String,
    /// Kubernetes namespace the pod is enrolled under.
    pub namespace: String,
    pub netns_name: String,
    pub netns_path: PathBuf,
    pub ip: Ipv4Addr,
    /// Set on dual-stack testbeds.
    pub ip6: Option<Ipv6Addr>,
    pub cgroup: PathBuf,
    children: Mutex<Vec<Child>>,
}

impl Pod {
    pub(crate) fn create(
        name: &str,
        node_netns: &str,
        netns_name: &str,
        cgroup: &Path,
        net: &CniNetwork,
    ) -> Result<Self> {
        cmd::ip(&["netns", "add", netns_name])?;
        let netns_path = PathBuf::from(format!("/run/netns/{netns_name}"));
        std::fs::create_dir_all(cgroup)
            .with_context(|| format!("creating cgroup {}", cgroup.display()))?;
        if net.subnet6.is_some() {
            // No duplicate address detection: the address is usable at once.
            cmd::in_netns(
                netns_name,
                "sysctl",
                &[
                    "-qw",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            )?;
        }
        let (ip, ip6) = match net.add(node_netns, netns_name, &netns_path) {
            Ok(ips) => ips,
            Err(e) => {
                let _ = cmd::ip(&["netns", "del", netns_name]);
                let _ = std::fs::remove_dir(cgroup);
                return Err(e);
            }
        };
        Ok(Self {
            name: name.to_string(),
            namespace: "e2e".into(),
            netns_name: netns_name.to_string(),
            netns_path,
            ip,
            ip6,
            cgroup: cgroup.to_path_buf(),
            children: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on a thread inside the pod's network namespace (sockets it creates belong
    /// to the pod).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        run_in_netns(&self.netns_path, f)
    }

    /// Starts a program as a process of the pod: first moved into the pod's cgroup, then
    /// into its network namespace. It is killed when the testbed is dropped.
    pub fn spawn(&self, program: &str, args: &[&str]) -> Result<u32> {
        let procs = self.cgroup.join("cgroup.procs");
        let script = format!(
            "echo $$ > '{}' && exec nsenter --net='{}' -- \"$@\"",
            procs.display(),
            self.netns_path.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script, "sh", program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {program} in pod {}", self.name))?;
        let pid = child.id();
        self.children.lock().expect("lock").push(child);
        Ok(pid)
    }

    /// Runs a program in the pod (cgroup and netns) to completion, feeding it `input`.
    pub fn exec(&self, program: &str, args: &[&str], input: &[u8]) -> Result<std::process::Output> {
        use std::io::Write;
        let procs = self.cgroup.join("cgroup.procs");
        let script = format!(
            "echo $$ > '{}' && exec nsenter --net='{}' -- \"$@\"",
            procs.display(),
            self.netns_path.display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script, "sh", program])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {program} in pod {}", self.name))?;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(input)?;
        drop(stdin);
        Ok(child.wait_with_output()?)
    }

    /// Kills the pod's processes, runs CNI DEL, removes its netns and cgroup.
    pub(crate) fn destroy(self, node_netns: &str, net: &CniNetwork) {
        for mut child in self.children.into_inner().unwrap_or_default() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = net.del(node_netns, &self.netns_name, &self.netns_path);
        let _ = cmd::ip(&["netns", "del", &self.netns_name]);
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// Runs `f` on a thread inside the network namespace at `path`.
pub fn run_in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> T {
    let netns = File::open(path).expect("netns exists");
    std::thread::scope(|s| {
        s.spawn(|| {
            setns(&netns, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread panicked")
    })
}
