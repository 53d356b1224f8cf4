//! Applying PeerAuthentication to enrolled pods: the datapath's inbound modes, the proxies'
//! view (STRICT outbound, exemptions), and live connections that policy no longer allows.
use std::{collections::BTreeMap, sync::Arc};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{PodSpec, WorkloadError, Workloads};
use crate::{
    connections::{ConnInfo, Direction, NoIdentity, PeerIdentity},
    datapath::InboundMode,
    policy::{Effective, Mode, PolicyStore, Setting, Workload},
    proxy::{Exemption, PodEndpoint, PodPolicy, EXEMPT_ANNOTATION},
};

/// What `podlock policy` shows for one pod.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PolicyReport {
    pub pod: String,
    pub default: Setting,
    pub ports: BTreeMap<u16, Setting>,
    pub outbound_exemptions: Vec<String>,
    pub warnings: Vec<String>,
}

pub(super) fn inbound(mode: Mode) -> InboundMode {
    match mode {
        Mode::Strict => InboundMode::Strict,
        Mode::Disable => InboundMode::Disable,
        Mode::Permissive | Mode::Unset => InboundMode::Permissive,
    }
}

impl Workloads {
    /// The policy for a pod described by `spec`, with the resolution's warnings.
    pub(super) fn resolve_policy(&self, spec: &PodSpec) -> (PodPolicy, Vec<String>) {
        let store = self.policy.lock().unwrap_or_else(|p| p.into_inner());
        let (effective, mut warnings) = store.resolve(&Workload {
            namespace: &spec.namespace,
            labels: &spec.labels,
        });
        let mut exemptions = self.proxy.config.exemptions();
        if let Some(value) = effective.annotations.get(EXEMPT_ANNOTATION) {
            let (good, bad) = Exemption::parse_list(value);
            exemptions.extend(good);
            warnings.extend(bad);
        }
        (
            PodPolicy {
                effective,
                exemptions,
            },
            warnings,
        )
    }

    /// Writes a pod's inbound modes into the datapath.
    pub(super) fn program_modes(
        &mut self,
        endpoint: &PodEndpoint,
        effective: &Effective,
    ) -> Result<(), WorkloadError> {
        let ports: Vec<(u16, InboundMode)> = effective
            .ports
            .iter()
            .map(|(port, s)| (*port, inbound(s.mode)))
            .collect();
        self.datapath.set_inbound_modes(
            endpoint.netns.cookie(),
            &endpoint.ips,
            inbound(effective.default.mode),
            &ports,
        )?;
        Ok(())
    }

    /// Re-resolves every pod after a policy change; ends connections that are no longer
    /// allowed (plaintext into a port that became STRICT, plaintext out of a pod that
    /// became STRICT to a destination that is not exempt).
    pub fn apply_policy(&mut self) {
        let pods: Vec<_> = self
            .pods
            .iter()
            .map(|(key, pod)| (key.clone(), pod.spec.clone(), pod.endpoint.clone()))
            .collect();
        for (key, spec, endpoint) in pods {
            let (policy, warnings) = self.resolve_policy(&spec);
            for w in &warnings {
                warn!(pod = %key, "policy: {w}");
            }
            if endpoint.policy().effective == policy.effective {
                continue;
            }
            if let Err(e) = self.program_modes(&endpoint, &policy.effective) {
                warn!(pod = %key, error = %e, "cannot apply the new policy to the datapath");
            }
            info!(pod = %key, mode = ?policy.effective.default.mode, source = %policy.effective.default.source,
                  ports = ?policy.effective.ports, "policy applied");
            let policy = Arc::new(policy);
            *endpoint.policy.write().unwrap_or_else(|p| p.into_inner()) = policy.clone();
            let closed = self
                .proxy
                .conns
                .close_where(|c| c.pod == endpoint.label && !allowed(c, &policy));
            for c in closed {
                info!(pod = %key, src = %c.src, dst = %c.dst, direction = ?c.direction,
                      "closing plaintext connection: policy is now STRICT");
            }
        }
    }

    /// `podlock policy apply`: adds or replaces runtime objects, then applies them.
    pub fn apply_policy_yaml(&mut self, yaml: &str) -> Result<Vec<String>, WorkloadError> {
        let result = self.store().apply(yaml)?;
        self.apply_policy();
        Ok(result)
    }

    /// `podlock policy delete`.
    pub fn delete_policy(&mut self, namespace: &str, name: &str) -> Result<(), WorkloadError> {
        self.store().delete(namespace, name)?;
        self.apply_policy();
        Ok(())
    }

    pub fn policy_report(&self) -> Vec<PolicyReport> {
        self.pods
            .iter()
            .map(|(key, pod)| {
                let (policy, warnings) = self.resolve_policy(&pod.spec);
                PolicyReport {
                    pod: key.to_string(),
                    default: policy.effective.default.clone(),
                    ports: policy.effective.ports.clone(),
                    outbound_exemptions: policy
                        .exemptions
                        .iter()
                        .map(ToString::to_string)
                        .collect(),
                    warnings,
                }
            })
            .collect()
    }

    fn store(&self) -> std::sync::MutexGuard<'_, PolicyStore> {
        self.policy.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// May this open connection continue under `policy`?
fn allowed(c: &ConnInfo, policy: &PodPolicy) -> bool {
    if c.transport != "plaintext" {
        return true;
    }
    match c.direction {
        Direction::Inbound => {
            c.peer == PeerIdentity::None(NoIdentity::ExemptProbe)
                || policy.effective.mode_for_port(c.dst.port()) != Mode::Strict
        }
        Direction::Outbound => policy.allows_plaintext_to(c.dst),
    }
}
