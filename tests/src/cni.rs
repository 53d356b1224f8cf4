//! Wiring pods with the real CNI plugins, called the way a container runtime calls them.
use std::{
    io::Write,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
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
    /// e.g. "fd00:1::/64", for dual-stack pods.
    pub subnet6: Option<String>,
    /// host-local's IPAM state, private to this testbed.
    pub ipam_dir: String,
}

impl CniNetwork {
    fn bridge_config(&self) -> String {
        let mut ranges = vec![serde_json::json!([{ "subnet": self.subnet }])];
        let mut routes = vec![serde_json::json!({ "dst": "0.0.0.0/0" })];
        if let Some(v6) = &self.subnet6 {
            ranges.push(serde_json::json!([{ "subnet": v6 }]));
            routes.push(serde_json::json!({ "dst": "::/0" }));
        }
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
                "ranges": ranges,
                "routes": routes,
                "dataDir": self.ipam_dir,
            }
        })
        .to_string()
    }

    /// `CNI_COMMAND=ADD` for the pod's lo and eth0; returns the pod's addresses. The plugin
    /// runs in the node's netns, where it creates the bridge and the host side of the veth.
    pub fn add(
        &self,
        node_netns: &str,
        container_id: &str,
        pod_netns: &Path,
    ) -> Result<(Ipv4Addr, Option<Ipv6Addr>)> {
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
        let addrs: Vec<IpAddr> = parsed["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
            .collect();
        let v4 = addrs.iter().find_map(|a| match a {
            IpAddr::V4(v4) => Some(*v4),
            IpAddr::V6(_) => None,
        });
        let v6 = addrs.iter().find_map(|a| match a {
            IpAddr::V6(v6) => Some(*v6),
            IpAddr::V4(_) => None,
        });
        let v4 =
            v4.with_context(|| format!("bridge plugin result has no IPv4 address: {result}"))?;
        Ok((v4, v6))
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
