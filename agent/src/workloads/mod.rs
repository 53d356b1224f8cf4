//! Enrolled pods: the one owner of which pods podlock serves on this node.
//!
//! Enrolling a pod opens its netns, binds the agent's listeners inside it, and only then
//! turns on capture in the datapath, so no captured connection ever finds nobody listening.
//! Unenrolling reverses it: capture off first, then listeners and connections close.
#![forbid(unsafe_code)]

mod policy;
mod spec;
mod state;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex, RwLock},
};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    datapath::{Datapath, DatapathError},
    identity::{CaError, CertManager, IdentityCert, SpiffeId},
    netns::{Netns, NetnsError},
    policy::{Mode, PolicyError, PolicyStore},
    proxy::{BindError, PodEndpoint, PodListeners, PodTls, ProxyContext},
    tls::{TlsError, TrustContext},
};

pub use policy::PolicyReport;
pub use spec::{PodKey, PodSpec, SpecError};
pub use state::StateFile;

/// What `podlock pods` shows for one pod.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    pub identity: String,
    pub labels: BTreeMap<String, String>,
    pub netns: PathBuf,
    pub netns_cookie: u64,
    pub ips: Vec<IpAddr>,
    pub state: String,
    /// Serial (hex) of the workload certificate in use.
    pub cert_serial: String,
    /// When that certificate expires (Unix seconds); it is renewed at half-life.
    pub cert_expires_unix: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(
        "pod {pod} is already enrolled with netns {existing}; unenroll it first to use {requested}"
    )]
    OtherNetns {
        pod: PodKey,
        existing: PathBuf,
        requested: PathBuf,
    },
    #[error("netns {netns} already belongs to enrolled pod {other}")]
    NetnsTaken { netns: PathBuf, other: PodKey },
    #[error("pod {0} is not enrolled")]
    NotEnrolled(PodKey),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("{0}")]
    Datapath(#[from] DatapathError),
    #[error("issuing the workload certificate: {0}")]
    Cert(#[from] CaError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("agent is shutting down")]
    ShuttingDown,
}

struct Enrolled {
    spec: PodSpec,
    cert: IdentityCert,
    endpoint: Arc<PodEndpoint>,
}

impl Enrolled {
    fn info(&self) -> PodInfo {
        let cert = self.cert.current();
        let expires = cert
            .not_after
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PodInfo {
            namespace: self.spec.namespace.clone(),
            name: self.spec.name.clone(),
            service_account: self.spec.service_account.clone(),
            identity: self.endpoint.tls.identity.to_string(),
            labels: self.spec.labels.clone(),
            netns: self.spec.netns.clone(),
            netns_cookie: self.endpoint.netns.cookie(),
            ips: self.endpoint.ips.clone(),
            state: "enrolled".into(),
            cert_serial: cert.serial.clone(),
            cert_expires_unix: expires,
        }
    }
}

pub struct Workloads {
    datapath: Datapath,
    pods: BTreeMap<PodKey, Enrolled>,
    proxy: ProxyContext,
    certs: CertManager,
    trust: TrustContext,
    policy: Arc<Mutex<PolicyStore>>,
    state: StateFile,
    shutdown: CancellationToken,
}

/// Whether an enroll request changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrollOutcome {
    Enrolled,
    Unchanged,
}

impl Workloads {
    pub fn new(
        datapath: Datapath,
        proxy: ProxyContext,
        certs: CertManager,
        trust: TrustContext,
        policy: Arc<Mutex<PolicyStore>>,
        state: StateFile,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            datapath,
            pods: BTreeMap::new(),
            proxy,
            certs,
            trust,
            policy,
            state,
            shutdown,
        }
    }

    /// Enrolls again the pods a previous run was serving; returns how many came back.
    pub async fn restore(&mut self) -> usize {
        let specs = self.state.load();
        let mut restored = 0;
        for spec in specs {
            let key = spec.key();
            match self.enroll(spec).await {
                Ok(_) => restored += 1,
                Err(e) => {
                    warn!(pod = %key, error = %e, "not restoring a pod from the previous run")
                }
            }
        }
        self.save_state();
        restored
    }

    /// After every change to the set of pods: the state file and the pod gauge.
    fn save_state(&self) {
        self.state.save(self.pods.values().map(|p| &p.spec));
        self.proxy.metrics.pods.set(self.pods.len() as i64);
    }

    /// The pod's certificate (issued now if its identity has none yet) and TLS configs.
    fn pod_tls(&self, identity: SpiffeId) -> Result<(IdentityCert, PodTls), WorkloadError> {
        let cert = self.certs.acquire(&identity)?;
        let configs = self
            .trust
            .server_config(cert.clone())
            .and_then(|server| Ok((server, self.trust.client_config(cert.clone())?)));
        match configs {
            Ok((server, client)) => Ok((
                cert,
                PodTls {
                    identity,
                    server,
                    client,
                },
            )),
            Err(e) => {
                self.certs.release(&identity);
                Err(e.into())
            }
        }
    }

    pub fn list(&self) -> Vec<PodInfo> {
        self.pods.values().map(Enrolled::info).collect()
    }

    pub async fn enroll(
        &mut self,
        spec: PodSpec,
    ) -> Result<(PodInfo, EnrollOutcome), WorkloadError> {
        spec.validate()?;
        if self.shutdown.is_cancelled() {
            return Err(WorkloadError::ShuttingDown);
        }
        let key = spec.key();
        let path = spec.netns.clone();
        let (netns, ips) = tokio::task::spawn_blocking(move || -> Result<_, NetnsError> {
            let netns = Netns::open(&path)?;
            let ips = netns.addresses()?;
            Ok((netns, ips))
        })
        .await
        .map_err(|_| WorkloadError::ShuttingDown)??;

        if let Some(existing) = self.pods.get(&key) {
            if existing.endpoint.netns.id() == netns.id() {
                return Ok((existing.info(), EnrollOutcome::Unchanged));
            }
            return Err(WorkloadError::OtherNetns {
                pod: key,
                existing: existing.spec.netns.clone(),
                requested: spec.netns.clone(),
            });
        }
        if let Some((other, _)) = self
            .pods
            .iter()
            .find(|(_, p)| p.endpoint.netns.id() == netns.id())
        {
            return Err(WorkloadError::NetnsTaken {
                netns: spec.netns.clone(),
                other: other.clone(),
            });
        }
        if ips.is_empty() {
            warn!(pod = %key, netns = %spec.netns.display(), "pod has no addresses yet; only its outbound traffic is captured");
        }

        let identity = spec.identity(&self.proxy.config.trust_domain);
        let (cert, tls) = self.pod_tls(identity.clone())?;
        let (policy, warnings) = self.resolve_policy(&spec);
        for w in &warnings {
            warn!(pod = %key, "policy: {w}");
        }
        let endpoint = Arc::new(PodEndpoint {
            label: key.to_string(),
            netns: Arc::new(netns),
            ips,
            token: self.shutdown.child_token(),
            tls,
            policy: RwLock::new(Arc::new(policy)),
        });
        if let Err(e) = self.start(&endpoint).await {
            self.certs.release(&identity);
            return Err(e);
        }
        info!(pod = %key, netns = %spec.netns.display(), cookie = endpoint.netns.cookie(),
              ips = ?endpoint.ips, %identity, serial = %cert.current().serial, "pod enrolled");
        let enrolled = Enrolled {
            spec,
            cert,
            endpoint,
        };
        let info = enrolled.info();
        self.pods.insert(key, enrolled);
        self.save_state();
        Ok((info, EnrollOutcome::Enrolled))
    }

    /// Listeners first, then the pod's inbound modes, then steering and capture: nothing
    /// captured finds no listener, and a STRICT pod never accepts plaintext meanwhile.
    async fn start(&mut self, endpoint: &Arc<PodEndpoint>) -> Result<(), WorkloadError> {
        let listeners = PodListeners::bind(endpoint, &self.proxy.config).await?;
        let effective = endpoint.policy().effective.clone();
        let enrolled = self.program_modes(endpoint, &effective).and_then(|()| {
            Ok(self
                .datapath
                .enroll(&endpoint.netns, &listeners.steering())?)
        });
        if let Err(e) = enrolled {
            self.datapath
                .unenroll(endpoint.netns.cookie(), &endpoint.ips);
            return Err(e);
        }
        listeners.serve(endpoint.clone(), &self.proxy);
        self.proxy
            .local
            .set(&endpoint.ips, Some(&endpoint.tls.identity));
        Ok(())
    }

    pub fn unenroll(&mut self, key: &PodKey) -> Result<PodInfo, WorkloadError> {
        let pod = self
            .pods
            .remove(key)
            .ok_or_else(|| WorkloadError::NotEnrolled(key.clone()))?;
        self.datapath
            .unenroll(pod.endpoint.netns.cookie(), &pod.endpoint.ips);
        self.proxy.local.set(&pod.endpoint.ips, None);
        pod.endpoint.token.cancel();
        self.certs.release(&pod.endpoint.tls.identity);
        self.save_state();
        info!(pod = %key, "pod unenrolled");
        Ok(pod.info())
    }

    /// The agent is stopping: every pod's listeners and connections close. A pod with
    /// anything STRICT stays closed in the datapath (see [`Datapath::shutdown`]); every
    /// other pod is released and talks directly until an agent is back. The state file is
    /// kept, so the next run serves the same pods.
    pub fn shutdown(&mut self) {
        let mut closed = Vec::new();
        for pod in std::mem::take(&mut self.pods).into_values() {
            let effective = pod.endpoint.policy().effective.clone();
            let strict_out = effective.default.mode == Mode::Strict;
            let strict_in = strict_out || effective.ports.values().any(|s| s.mode == Mode::Strict);
            if strict_in {
                info!(pod = %pod.endpoint.label, "STRICT: stays closed to plaintext while the agent is down");
                closed.push((pod.endpoint.netns.cookie(), strict_out));
            } else {
                self.datapath
                    .unenroll(pod.endpoint.netns.cookie(), &pod.endpoint.ips);
            }
            pod.endpoint.token.cancel();
            self.certs.release(&pod.endpoint.tls.identity);
        }
        self.datapath.shutdown(&closed);
    }
}
