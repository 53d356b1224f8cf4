//! Enrolled pods: the one owner of which pods podlock serves on this node.
//!
//! Enrolling a pod opens its netns, binds the agent's listeners inside it, and only then
//! turns on capture in the datapath, so no captured connection ever finds nobody listening.
//! Unenrolling reverses it: capture off first, then listeners and connections close.
#![forbid(unsafe_code)]

mod spec;

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, sync::Arc};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    datapath::{Datapath, DatapathError},
    netns::{Netns, NetnsError},
    proxy::{BindError, PodEndpoint, PodListeners, ProxyContext},
};

pub use spec::{PodKey, PodSpec, SpecError};

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
    #[error("agent is shutting down")]
    ShuttingDown,
}

struct Enrolled {
    spec: PodSpec,
    identity: String,
    endpoint: Arc<PodEndpoint>,
}

impl Enrolled {
    fn info(&self) -> PodInfo {
        PodInfo {
            namespace: self.spec.namespace.clone(),
            name: self.spec.name.clone(),
            service_account: self.spec.service_account.clone(),
            identity: self.identity.clone(),
            labels: self.spec.labels.clone(),
            netns: self.spec.netns.clone(),
            netns_cookie: self.endpoint.netns.cookie(),
            ips: self.endpoint.ips.clone(),
            state: "enrolled".into(),
        }
    }
}

pub struct Workloads {
    datapath: Datapath,
    pods: BTreeMap<PodKey, Enrolled>,
    proxy: ProxyContext,
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
    pub fn new(datapath: Datapath, proxy: ProxyContext, shutdown: CancellationToken) -> Self {
        Self {
            datapath,
            pods: BTreeMap::new(),
            proxy,
            shutdown,
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

        let endpoint = Arc::new(PodEndpoint {
            label: key.to_string(),
            netns: Arc::new(netns),
            ips,
            token: self.shutdown.child_token(),
        });
        let listeners = PodListeners::bind(&endpoint, &self.proxy.config).await?;
        if let Err(e) = self.datapath.enroll(&endpoint.netns, &listeners.steering()) {
            self.datapath
                .unenroll(endpoint.netns.cookie(), &endpoint.ips);
            return Err(e.into());
        }
        listeners.serve(endpoint.clone(), &self.proxy);
        let identity = spec.identity(&self.proxy.config.trust_domain);
        info!(pod = %key, netns = %spec.netns.display(), cookie = endpoint.netns.cookie(),
              ips = ?endpoint.ips, %identity, "pod enrolled");
        let enrolled = Enrolled {
            spec,
            identity,
            endpoint,
        };
        let info = enrolled.info();
        self.pods.insert(key, enrolled);
        Ok((info, EnrollOutcome::Enrolled))
    }

    pub fn unenroll(&mut self, key: &PodKey) -> Result<PodInfo, WorkloadError> {
        let pod = self
            .pods
            .remove(key)
            .ok_or_else(|| WorkloadError::NotEnrolled(key.clone()))?;
        self.datapath
            .unenroll(pod.endpoint.netns.cookie(), &pod.endpoint.ips);
        pod.endpoint.token.cancel();
        info!(pod = %key, "pod unenrolled");
        Ok(pod.info())
    }

    /// Unenrolls every pod and detaches the datapath (the agent is stopping).
    pub fn shutdown(&mut self) {
        let keys: Vec<PodKey> = self.pods.keys().cloned().collect();
        for key in keys {
            let _ = self.unenroll(&key);
        }
        self.datapath.detach_all();
    }
}
