//! `podlock run`: the node agent's lifecycle. Load and attach the datapath, serve the node
//! API, and on SIGTERM/SIGINT stop in order: stop accepting requests, unenroll every pod
//! (capture off, listeners and connections closed), detach the programs, remove the socket.
#![forbid(unsafe_code)]

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::{signal::unix::SignalKind, sync::Mutex};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    admin::{Admin, Metrics},
    api::{self, ApiServer},
    config::Config,
    connections::ConnTable,
    datapath::{find_cgroup2_root, Datapath, DatapathConfig, Pins},
    hbone::{HboneClient, MeshDiscovery},
    identity::{validate_trust_domain, Ca, CertManager},
    policy::PolicyStore,
    proxy::{LocalIdentities, ProxyContext},
    tls::TrustContext,
    workloads::{StateFile, Workloads},
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
    // The socket is this agent's lock: bind it before touching any pinned state.
    let listener = api::bind(&config.socket).await?;
    let shutdown = CancellationToken::new();
    let admin = Admin {
        metrics: Metrics::default(),
        ready: Arc::new(AtomicBool::new(false)),
    };
    if let Err(e) = serve_admin(&config, &admin, &shutdown).await {
        let _ = std::fs::remove_file(&config.socket);
        return Err(e.into());
    }
    let (datapath, earlier_runs) = match load_datapath(&config, cgroup_root) {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = std::fs::remove_file(&config.socket);
            return Err(e);
        }
    };
    let tasks = TaskTracker::new();
    let metrics = admin.metrics.clone();
    let conns = ConnTable::with_metrics(metrics.clone());
    let proxy = ProxyContext {
        config: config.clone(),
        orig_dst: datapath.orig_dst(),
        conns: conns.clone(),
        tasks: tasks.clone(),
        hbone: HboneClient::new(shutdown.clone()),
        discovery: MeshDiscovery::default(),
        local: LocalIdentities::default(),
        host_flows: datapath.host_flows(),
        metrics: metrics.clone(),
    };
    let policy = Arc::new(std::sync::Mutex::new(load_policy(&config)));
    let certs = CertManager::new(ca, config.cert_lifetime);
    let state = StateFile::new(&config.state_dir);
    let workloads = Workloads::new(
        datapath,
        proxy,
        certs,
        trust,
        policy.clone(),
        state,
        shutdown.clone(),
    );
    let workloads = Arc::new(Mutex::new(workloads));
    // Serve the previous run's pods before letting go of its pinned programs, so a STRICT
    // pod is never open in between.
    let restored = workloads.lock().await.restore().await;
    Pins::release(&earlier_runs);
    if restored > 0 {
        info!(pods = restored, "restored the pods of the previous run");
    }
    admin.ready.store(true, Ordering::Release);
    if let Some(dir) = config.policy_dir.clone() {
        tokio::spawn(watch_policy(
            dir,
            policy,
            workloads.clone(),
            shutdown.clone(),
        ));
    }
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

/// Metrics and readiness, each on its own address (they may be the same port only if
/// given once: two binds of one address fail).
async fn serve_admin(
    config: &Config,
    admin: &Admin,
    shutdown: &CancellationToken,
) -> Result<(), crate::admin::BindError> {
    crate::admin::serve(
        config.metrics_addr,
        "--metrics-addr",
        admin.clone(),
        shutdown.clone(),
    )
    .await?;
    crate::admin::serve(
        config.readiness_addr,
        "--readiness-addr",
        admin.clone(),
        shutdown.clone(),
    )
    .await
}

/// Loads and attaches the datapath, pinning its links in a new generation; returns it and
/// the generations earlier runs left. A failure leaves nothing attached.
fn load_datapath(
    config: &Config,
    cgroup_root: std::path::PathBuf,
) -> Result<(Datapath, Vec<std::path::PathBuf>)> {
    let node_netns_cookie = crate::netns::current_cookie()
        .context("reading the node's netns cookie (SO_NETNS_COOKIE needs Linux >= 5.14)")?;
    let (pins, earlier_runs) = Pins::prepare(&config.bpffs_dir)?;
    let generation = pins.dir().to_path_buf();
    let cfg = DatapathConfig {
        cgroup_root,
        mark: config.mark,
        outbound_port: config.outbound_port,
        hbone_port: config.hbone_port,
        node_netns_cookie,
        bpf_log: config.bpf_log,
    };
    match Datapath::load(&cfg, pins) {
        Ok(datapath) => Ok((datapath, earlier_runs)),
        Err(e) => {
            Pins::release(&[generation]);
            Err(e.into())
        }
    }
}

/// The policy store, with `--policy-dir` read once before any pod is served.
fn load_policy(config: &Config) -> PolicyStore {
    let mut store = PolicyStore::new(config.root_namespace.clone());
    if let Some(dir) = &config.policy_dir {
        let errors = store.load_dir(dir);
        info!(dir = %dir.display(), objects = store.objects().len(), errors = errors.len(), "policy loaded");
    }
    store
}

/// How often `--policy-dir` is checked for changes.
const POLICY_POLL: Duration = Duration::from_millis(300);

/// Re-reads the policy directory when it changes and applies the result to every pod.
async fn watch_policy(
    dir: std::path::PathBuf,
    policy: Arc<std::sync::Mutex<PolicyStore>>,
    workloads: Arc<Mutex<Workloads>>,
    shutdown: CancellationToken,
) {
    let mut seen = policy.lock().map(|p| p.version()).unwrap_or(0);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLICY_POLL) => {}
        }
        let version = {
            let mut store = policy.lock().unwrap_or_else(|p| p.into_inner());
            store.load_dir(&dir);
            store.version()
        };
        if version != seen {
            seen = version;
            workloads.lock().await.apply_policy();
        }
    }
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
