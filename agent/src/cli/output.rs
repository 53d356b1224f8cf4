//! How the CLI prints the agent's answers for people (`--json` prints them as they are).
use crate::{
    connections::{ConnInfo, ConnSnapshot, PeerIdentity},
    workloads::{PodInfo, PolicyReport},
};

pub(super) fn print_policy(pods: &[PolicyReport]) {
    println!("{:<24} {:<8} {:<11} SET BY", "POD", "PORT", "MODE");
    for p in pods {
        println!(
            "{:<24} {:<8} {:<11} {}",
            p.pod,
            "*",
            format!("{:?}", p.default.mode).to_uppercase(),
            p.default.source
        );
        for (port, s) in &p.ports {
            println!(
                "{:<24} {:<8} {:<11} {}",
                p.pod,
                port,
                format!("{:?}", s.mode).to_uppercase(),
                s.source
            );
        }
        for w in &p.warnings {
            println!("{:<24} warning: {w}", p.pod);
        }
    }
}

pub(super) fn join_ips(pod: &PodInfo) -> String {
    if pod.ips.is_empty() {
        return "-".into();
    }
    pod.ips
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn print_pods(pods: &[PodInfo]) {
    println!(
        "{:<16} {:<20} {:<16} {:<13} {:<10} {:<14} IDENTITY",
        "NAMESPACE", "NAME", "IPS", "NETNS-COOKIE", "STATE", "CERT-EXPIRES"
    );
    for p in pods {
        println!(
            "{:<16} {:<20} {:<16} {:<13} {:<10} {:<14} {}",
            p.namespace,
            p.name,
            join_ips(p),
            p.netns_cookie,
            p.state,
            expires_in(p.cert_expires_unix),
            p.identity
        );
    }
}

/// "in 23h59m" style, from a Unix timestamp.
fn expires_in(unix: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if unix <= now {
        return "expired".into();
    }
    let left = unix - now;
    let (h, m, s) = (left / 3600, left % 3600 / 60, left % 60);
    if h > 0 {
        format!("in {h}h{m:02}m")
    } else if m > 0 {
        format!("in {m}m{s:02}s")
    } else {
        format!("in {s}s")
    }
}

fn peer_text(c: &ConnInfo) -> String {
    match &c.peer {
        PeerIdentity::Verified(id) => id.clone(),
        PeerIdentity::None(reason) => format!(
            "none ({})",
            serde_json::to_value(reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ),
    }
}

pub(super) fn print_connections(snap: &ConnSnapshot) {
    println!(
        "{:<7} {:<20} {:<9} {:<22} {:<22} {:<10} PEER",
        "STATE", "POD", "DIRECTION", "SOURCE", "DESTINATION", "TRANSPORT"
    );
    let rows = snap
        .open
        .iter()
        .map(|c| ("open", c))
        .chain(snap.recent.iter().map(|c| ("closed", c)));
    for (state, c) in rows {
        let direction = serde_json::to_value(c.direction)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        println!(
            "{:<7} {:<20} {:<9} {:<22} {:<22} {:<10} {}",
            state,
            c.pod,
            direction,
            c.src.to_string(),
            c.dst.to_string(),
            c.transport,
            peer_text(c)
        );
    }
}
