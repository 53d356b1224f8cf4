//! A testbed: nodes (network namespaces routed to each other), their pods and agents.
use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, Result};

use crate::{agent::Agent, cmd, cni::CniNetwork, pod::Pod};

/// Addresses of the link between node i and node j live in 10.255.0.0/24; node i's pods
/// get 10.1.i.0/24 from its CNI bridge.
fn node_link_ip(index: usize) -> String {
    format!("10.255.0.{}", index + 1)
}

fn node_link_ip6(index: usize) -> String {
    format!("fd00:ff::{}", index + 1)
}

fn pod_subnet6(index: usize) -> String {
    format!("fd00:{}::/64", index + 1)
}

fn pod_subnet(index: usize) -> String {
    format!("10.1.{}.0/24", index + 1)
}

pub struct Node {
    pub index: usize,
    /// Name of the node's network namespace under /run/netns.
    pub netns: String,
    net: CniNetwork,
    pub pods: Vec<Pod>,
    agent: Option<Agent>,
}

impl Node {
    /// This node's agent; panics if none was started.
    pub fn agent(&self) -> &Agent {
        self.agent.as_ref().expect("no agent started on this node")
    }

    pub fn agent_mut(&mut self) -> &mut Agent {
        self.agent.as_mut().expect("no agent started on this node")
    }

    /// Removes the agent from the node, e.g. to stop it and inspect what it leaves behind.
    pub fn take_agent(&mut self) -> Option<Agent> {
        self.agent.take()
    }

    /// Runs `f` in the node's own network namespace (where kubelet probes come from).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        crate::pod::run_in_netns(Path::new(&format!("/run/netns/{}", self.netns)), f)
    }

    pub fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod {name} on node {}", self.netns))
    }
}

pub struct Testbed {
    pub id: String,
    pub dir: PathBuf,
    cgroup: PathBuf,
    pub nodes: Vec<Node>,
    /// Pods and node links also get IPv6 addresses.
    ipv6: bool,
}

fn unique_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{:04x}{:04x}",
        std::process::id() & 0xffff,
        (nanos ^ (n << 12) ^ n) & 0xffff
    )
}

/// The cgroup2 mount, as the agent finds it.
fn cgroup2_root() -> Result<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    info.lines()
        .find_map(|l| {
            let (mount, fs) = l.split_once(" - ")?;
            let mount_point = mount.split_whitespace().nth(4)?;
            (fs.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount_point))
        })
        .context("no cgroup2 mount on this machine")
}

impl Testbed {
    /// `pods[i]` names the pods of node i. Nodes are routed to each other; no agents yet.
    pub fn new(pods: &[&[&str]]) -> Result<Self> {
        Self::build(pods, false)
    }

    /// Like [`Testbed::new`], with IPv6 addresses and routes beside the IPv4 ones.
    pub fn dual_stack(pods: &[&[&str]]) -> Result<Self> {
        Self::build(pods, true)
    }

    fn build(pods: &[&[&str]], ipv6: bool) -> Result<Self> {
        crate::require_root();
        let id = unique_id();
        let dir = std::env::temp_dir().join(format!("podlock-e2e-{id}"));
        std::fs::create_dir_all(&dir)?;
        let cgroup = cgroup2_root()?.join(format!("podlock-e2e-{id}"));
        std::fs::create_dir_all(&cgroup)
            .with_context(|| format!("creating cgroup {}", cgroup.display()))?;
        let mut tb = Self {
            id,
            dir,
            cgroup,
            nodes: Vec::new(),
            ipv6,
        };
        for (index, names) in pods.iter().enumerate() {
            tb.add_node(index)?;
            for name in *names {
                tb.add_pod(index, name)?;
            }
        }
        tb.link_nodes()?;
        Ok(tb)
    }

    fn add_node(&mut self, index: usize) -> Result<()> {
        let netns = format!("pl-{}-n{}", self.id, index + 1);
        cmd::ip(&["netns", "add", &netns])?;
        let node = Node {
            index,
            netns: netns.clone(),
            net: CniNetwork {
                name: format!("podlock-{}-n{}", self.id, index + 1),
                bridge: format!("plb{}{}", self.id, index + 1),
                subnet: pod_subnet(index),
                subnet6: self.ipv6.then(|| pod_subnet6(index)),
                ipam_dir: self
                    .dir
                    .join(format!("ipam-n{}", index + 1))
                    .display()
                    .to_string(),
            },
            pods: Vec::new(),
            agent: None,
        };
        self.nodes.push(node);
        cmd::ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        // Sysctls are set inside the node's own namespace, never on the host.
        cmd::in_netns(&netns, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        if self.ipv6 {
            cmd::in_netns(
                &netns,
                "sysctl",
                &[
                    "-qw",
                    "net.ipv6.conf.all.forwarding=1",
                    "net.ipv6.conf.all.accept_dad=0",
                    "net.ipv6.conf.default.accept_dad=0",
                ],
            )?;
        }
        Ok(())
    }

    /// Adds a pod to node `node`: its netns, CNI-wired, and its cgroup.
    pub fn add_pod(&mut self, node: usize, name: &str) -> Result<&Pod> {
        let n = &mut self.nodes[node];
        let pod = Pod::create(
            name,
            &n.netns,
            &format!("pl-{}-{name}", self.id),
            &self.cgroup.join(name),
            &n.net,
        )?;
        n.pods.push(pod);
        Ok(n.pods.last().expect("just pushed"))
    }

    /// One veth between every pair of consecutive nodes, with routes to each other's pods.
    fn link_nodes(&mut self) -> Result<()> {
        for i in 1..self.nodes.len() {
            let (a, b) = (&self.nodes[i - 1], &self.nodes[i]);
            let (va, vb) = (
                format!("plv{}{}a", self.id, i),
                format!("plv{}{}b", self.id, i),
            );
            cmd::ip(&[
                "link", "add", &va, "netns", &a.netns, "type", "veth", "peer", "name", &vb,
                "netns", &b.netns,
            ])?;
            for (node, dev, index) in [(a, &va, i - 1), (b, &vb, i)] {
                let addr = format!("{}/24", node_link_ip(index));
                cmd::ip(&["-n", &node.netns, "addr", "add", &addr, "dev", dev])?;
                if self.ipv6 {
                    let addr6 = format!("{}/64", node_link_ip6(index));
                    cmd::ip(&[
                        "-n",
                        &node.netns,
                        "addr",
                        "add",
                        &addr6,
                        "dev",
                        dev,
                        "nodad",
                    ])?;
                }
                cmd::ip(&["-n", &node.netns, "link", "set", dev, "up"])?;
            }
            if self.ipv6 {
                let (a6, b6) = (node_link_ip6(i - 1), node_link_ip6(i));
                cmd::ip(&[
                    "-n",
                    &a.netns,
                    "-6",
                    "route",
                    "add",
                    &pod_subnet6(i),
                    "via",
                    &b6,
                ])?;
                cmd::ip(&[
                    "-n",
                    &b.netns,
                    "-6",
                    "route",
                    "add",
                    &pod_subnet6(i - 1),
                    "via",
                    &a6,
                ])?;
            }
            cmd::ip(&[
                "-n",
                &a.netns,
                "route",
                "add",
                &pod_subnet(i),
                "via",
                &node_link_ip(i),
            ])?;
            cmd::ip(&[
                "-n",
                &b.netns,
                "route",
                "add",
                &pod_subnet(i - 1),
                "via",
                &node_link_ip(i - 1),
            ])?;
        }
        Ok(())
    }

    /// Starts `podlock run` for node `node` and waits until it answers.
    pub fn start_agent(&mut self, node: usize) -> Result<&Agent> {
        self.start_agent_with(node, &[])
    }

    /// Like [`Testbed::start_agent`], with extra `podlock run` flags.
    pub fn start_agent_with(&mut self, node: usize, extra: &[&str]) -> Result<&Agent> {
        let n = &mut self.nodes[node];
        let agent = Agent::start(&self.dir, &n.netns, node, extra)?;
        n.agent = Some(agent);
        Ok(n.agent.as_ref().expect("just set"))
    }

    /// Starts agents on every node and enrolls every pod with its node's agent.
    pub fn with_agents_enrolling_all(mut self) -> Result<Self> {
        for i in 0..self.nodes.len() {
            self.start_agent(i)?;
            let node = &self.nodes[i];
            for pod in &node.pods {
                node.agent().enroll(pod)?;
            }
        }
        Ok(self)
    }

    /// The veth that links node `index` to node `index + 1` (as seen in node `index`).
    pub fn link_iface(&self, index: usize) -> String {
        format!("plv{}{}a", self.id, index + 1)
    }

    pub fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Testbed {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        for node in &mut self.nodes {
            if let Some(mut agent) = node.agent.take() {
                if failed {
                    agent.dump_log();
                }
                let _ = agent.stop();
            }
        }
        for node in &self.nodes {
            // Unmounting the agent's bpffs releases whatever it left pinned (STRICT pods).
            let pins = crate::agent::bpffs_dir(&self.dir, node.index);
            let _ = nix::mount::umount2(&pins, nix::mount::MntFlags::MNT_DETACH);
        }
        for node in &mut self.nodes {
            for pod in node.pods.drain(..) {
                pod.destroy(&node.netns, &node.net);
            }
            let _ = cmd::ip(&["netns", "del", &node.netns]);
        }
        let _ = std::fs::remove_dir(&self.cgroup);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
