//! Istio's PeerAuthentication resolution for one pod.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::model::{Mode, PeerAuthentication};

/// The pod a policy is resolved for.
#[derive(Clone, Copy, Debug)]
pub struct Workload<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

/// A resolved mode and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting {
    /// Never `Unset`.
    pub mode: Mode,
    /// `namespace/name` of the object that set it, or `default`.
    pub source: String,
}

/// The mTLS policy in force for one pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Effective {
    pub default: Setting,
    pub ports: BTreeMap<u16, Setting>,
    /// Annotations of the winning objects (workload over namespace over mesh).
    pub annotations: BTreeMap<String, String>,
}

impl Effective {
    /// The mode for traffic to `port` of the pod.
    pub fn mode_for_port(&self, port: u16) -> Mode {
        self.ports.get(&port).unwrap_or(&self.default).mode
    }
}

/// Resolves the policy for `w`. `policies` is in the order the store first saw them;
/// between two objects that both carry a creationTimestamp the earlier timestamp is the
/// older. Returns the result and warnings about conflicting objects.
pub fn resolve(
    policies: &[Arc<PeerAuthentication>],
    root_namespace: &str,
    w: &Workload,
) -> (Effective, Vec<String>) {
    let mut warnings = Vec::new();
    let in_pod_ns = |p: &PeerAuthentication| p.namespace == w.namespace;
    let workload = oldest(policies, "workload", w, &mut warnings, |p| {
        in_pod_ns(p)
            && p.selector
                .as_ref()
                .is_some_and(|s| s.iter().all(|(k, v)| w.labels.get(k) == Some(v)))
    });
    let namespace = oldest(policies, "namespace", w, &mut warnings, |p| {
        in_pod_ns(p) && p.selector.is_none()
    });
    let mesh = oldest(policies, "mesh", w, &mut warnings, |p| {
        p.namespace == root_namespace && p.selector.is_none()
    });

    let default = [workload, namespace, mesh]
        .into_iter()
        .flatten()
        .find(|p| p.mode != Mode::Unset)
        .map(|p| Setting {
            mode: p.mode,
            source: p.key(),
        })
        .unwrap_or_else(|| Setting {
            mode: Mode::Permissive,
            source: "default".to_string(),
        });
    let ports = workload
        .map(|p| {
            p.port_modes
                .iter()
                .map(|(port, mode)| {
                    let setting = match mode {
                        Mode::Unset => default.clone(),
                        mode => Setting {
                            mode: *mode,
                            source: p.key(),
                        },
                    };
                    (*port, setting)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut annotations = BTreeMap::new();
    for p in [mesh, namespace, workload].into_iter().flatten() {
        annotations.extend(p.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let effective = Effective {
        default,
        ports,
        annotations,
    };
    (effective, warnings)
}

/// The oldest object that `applies`, warning about every other one that also does.
fn oldest<'p>(
    policies: &'p [Arc<PeerAuthentication>],
    scope: &str,
    w: &Workload,
    warnings: &mut Vec<String>,
    applies: impl Fn(&PeerAuthentication) -> bool,
) -> Option<&'p PeerAuthentication> {
    let candidates: Vec<&PeerAuthentication> = policies
        .iter()
        .map(Arc::as_ref)
        .filter(|p| applies(p))
        .collect();
    // Seen order breaks ties, so a fold keeps the earlier one unless the later is older.
    let winner = candidates.iter().copied().reduce(|best, next| {
        match (&best.creation_timestamp, &next.creation_timestamp) {
            (Some(a), Some(b)) if b.cmp(a) == Ordering::Less => next,
            _ => best,
        }
    })?;
    for other in candidates.iter().filter(|p| !std::ptr::eq(**p, winner)) {
        warnings.push(format!(
            "PeerAuthentication {} and {} both apply at {scope} scope to pods in {} with labels \
             {}; using the oldest, {}",
            winner.key(),
            other.key(),
            w.namespace,
            describe_labels(w.labels),
            winner.key()
        ));
    }
    Some(winner)
}

fn describe_labels(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(","))
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
