//! Wiring pods with the real CNI plugins, called the way a container runtime calls them.
use std::{
    io::Write,
    net::Ipv4Addr,
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{bail, Context, Result};

const CNI_PATH: &str = "/usr/lib/cni";

pub struct CniNetwork {
    pub name: String,
    pub bridge: String,
    /// e.g. "10.1.1.0/24"
    pub subnet: String,
    /// host-local's IPAM state, private to this testbed.
    pub ipam_dir: String,
}

impl CniNetwork {
    fn bridge_config(&self) -> String {
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.name,
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {
                "type": "host-local",
                "ranges": [[{ "subnet": self.subnet }]],
                "routes": [{ "dst": "0.0.0.0/0" }],
                "dataDir": self.ipam_dir,
            }
        })
        .to_string()
    }

    /// `CNI_COMMAND=ADD` for the pod's lo and eth0; returns the pod's address. The plugin
    /// runs in the node's netns, where it creates the bridge and the host side of the veth.
    pub fn add(&self, node_netns: &str, container_id: &str, pod_netns: &Path) -> Result<Ipv4Addr> {
        let lo = r#"{"cniVersion":"1.0.0","name":"lo","type":"loopback"}"#;
        call(
            "loopback",
            "ADD",
            node_netns,
            container_id,
            pod_netns,
            "lo",
            lo,
        )?;
        let result = call(
            "bridge",
            "ADD",
            node_netns,
            container_id,
            pod_netns,
            "eth0",
            &self.bridge_config(),
        )?;
        let parsed: serde_json::Value =
            serde_json::from_str(&result).context("bridge plugin returned invalid JSON")?;
        let cidr = parsed["ips"][0]["address"]
            .as_str()
            .with_context(|| format!("bridge plugin result has no address: {result}"))?;
        let ip = cidr.split('/').next().unwrap_or(cidr);
        ip.parse().with_context(|| format!("bad address {cidr}"))
    }

    /// `CNI_COMMAND=DEL`, as the runtime does when the pod goes away.
    pub fn del(&self, node_netns: &str, container_id: &str, pod_netns: &Path) -> Result<()> {
        call(
            "bridge",
            "DEL",
            node_netns,
            container_id,
            pod_netns,
            "eth0",
            &self.bridge_config(),
        )
        .map(|_| ())
    }
}

fn call(
    plugin: &str,
    command: &str,
    node_netns: &str,
    container_id: &str,
    pod_netns: &Path,
    ifname: &str,
    config: &str,
) -> Result<String> {
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{node_netns}"))
        .arg("--")
        .arg(format!("{CNI_PATH}/{plugin}"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container_id)
        .env("CNI_NETNS", pod_netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_PATH", CNI_PATH)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run CNI plugin {CNI_PATH}/{plugin} (is containernetworking-plugins installed?)"))?;
    child
        .stdin
        .take()
        .context("plugin stdin")?
        .write_all(config.as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "CNI {plugin} {command} for {container_id} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}
