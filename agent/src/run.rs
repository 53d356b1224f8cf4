//! `podlock run`: the node agent's lifecycle. Load and attach the datapath, serve the node
//! API, and on SIGTERM/SIGINT stop in order: stop accepting requests, unenroll every pod
//! (capture off, listeners and connections closed), detach the programs, remove the socket.
#![forbid(unsafe_code)]

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use tokio::{signal::unix::SignalKind, sync::Mutex};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    api::{self, ApiServer},
    config::Config,
    connections::ConnTable,
    datapath::{find_cgroup2_root, Datapath, DatapathConfig},
    hbone::{HboneClient, MeshDiscovery},
    identity::{validate_trust_domain, Ca, CertManager},
    proxy::{LocalIdentities, ProxyContext},
    tls::TrustContext,
    workloads::Workloads,
};

/// How long open connections get to finish after shutdown is signalled.
const DRAIN: Duration = Duration::from_secs(5);

pub async fn run(config: Config) -> Result<()> {
    let config = Arc::new(config);
    let cgroup_root = match &config.cgroup_root {
        Some(p) => p.clone(),
        None => find_cgroup2_root()
            .context("no cgroup2 mount found in /proc/self/mountinfo; pass --cgroup-root")?,
    };
    validate_trust_domain(&config.trust_domain).context("--trust-domain")?;
    let ca = Arc::new(Ca::load(&config.ca_dir).with_context(|| {
        format!(
            "loading the CA from {} (create one with `podlock ca init --out {}`, or pass --ca-dir)",
            config.ca_dir.display(),
            config.ca_dir.display()
        )
    })?);
    let trust = TrustContext::new(ca.roots(), &config.trust_domain)?;
    info!(ca_dir = %config.ca_dir.display(), roots = ca.roots().len(),
          trust_domain = %config.trust_domain, "CA loaded");
    let listener = api::bind(&config.socket).await?;
    let datapath = Datapath::load(&DatapathConfig {
        cgroup_root,
        mark: config.mark,
        outbound_port: config.outbound_port,
        hbone_port: config.hbone_port,
        bpf_log: config.bpf_log,
    });
    let datapath = match datapath {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&config.socket);
            return Err(e.into());
        }
    };
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let conns = ConnTable::default();
    let proxy = ProxyContext {
        config: config.clone(),
        orig_dst: datapath.orig_dst(),
        conns: conns.clone(),
        tasks: tasks.clone(),
        hbone: HboneClient::new(shutdown.clone()),
        discovery: MeshDiscovery::default(),
        local: LocalIdentities::default(),
    };
    let certs = CertManager::new(ca, config.cert_lifetime);
    let workloads = Workloads::new(datapath, proxy, certs, trust, shutdown.clone());
    let workloads = Arc::new(Mutex::new(workloads));
    let server = Arc::new(ApiServer {
        workloads: workloads.clone(),
        conns,
        config: config.clone(),
    });
    let api_task = tokio::spawn(api::serve(listener, server, shutdown.clone()));
    info!(socket = %config.socket.display(), "podlock agent ready");

    wait_for_signal().await?;
    info!("shutting down");
    shutdown.cancel();
    let _ = api_task.await;
    let _ = std::fs::remove_file(&config.socket);
    let mut workloads = workloads.lock().await;
    workloads.shutdown();
    tasks.close();
    if tokio::time::timeout(DRAIN, tasks.wait()).await.is_err() {
        warn!("some connections did not finish within {DRAIN:?}; closing them");
    }
    drop(workloads);
    info!("stopped");
    Ok(())
}

async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
