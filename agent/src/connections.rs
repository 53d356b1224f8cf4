//! The agent's record of proxied connections: what is open now and what closed recently,
//! with the peer identity (or why there is none). Read by the node API and the CLI.
#![forbid(unsafe_code)]

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::admin::{ConnLabels, Metrics};

/// How many closed connections are kept for inspection.
const RECENT: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Outbound,
    Inbound,
}

/// A connection's peer identity, or the reason there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerIdentity {
    Verified(String),
    None(NoIdentity),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoIdentity {
    /// Plaintext caught by the inbound capture: the client is not in the mesh.
    PlaintextCaptured,
    /// Outbound to a destination that does not speak podlock's tunnel.
    NotInMesh,
    /// Plaintext from the pod's own node (kubelet probes), exempt from STRICT.
    ExemptProbe,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnInfo {
    pub id: u64,
    /// `namespace/name` of the enrolled pod this connection belongs to.
    pub pod: String,
    pub direction: Direction,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// `plaintext` or `hbone` (mTLS).
    pub transport: String,
    pub peer: PeerIdentity,
    pub opened_unix_ms: u64,
    pub closed_unix_ms: Option<u64>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Why it ended, when it did not end cleanly.
    pub error: Option<String>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    open: HashMap<u64, (ConnInfo, CancellationToken)>,
    recent: VecDeque<ConnInfo>,
}

#[derive(Clone, Default)]
pub struct ConnTable {
    inner: Arc<Mutex<Inner>>,
    metrics: Metrics,
}

/// Snapshot returned to the API.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConnSnapshot {
    pub open: Vec<ConnInfo>,
    pub recent: Vec<ConnInfo>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// New connection's description, before it has an id.
pub struct NewConn {
    pub pod: String,
    pub direction: Direction,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: &'static str,
    pub peer: PeerIdentity,
    /// Cancelling it ends the connection (see [`ConnTable::close_where`]).
    pub cancel: CancellationToken,
}

fn labels(info: &ConnInfo) -> ConnLabels {
    ConnLabels {
        direction: match info.direction {
            Direction::Inbound => "inbound".into(),
            Direction::Outbound => "outbound".into(),
        },
        transport: info.transport.clone(),
    }
}

impl ConnTable {
    /// A table that also counts what it records in `metrics`.
    pub fn with_metrics(metrics: Metrics) -> Self {
        Self {
            inner: Arc::default(),
            metrics,
        }
    }

    /// Registers an open connection; the returned guard closes it when dropped.
    pub fn open(&self, conn: NewConn) -> ConnGuard {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.next_id += 1;
        let id = inner.next_id;
        let info = ConnInfo {
            id,
            pod: conn.pod,
            direction: conn.direction,
            src: conn.src,
            dst: conn.dst,
            transport: conn.transport.to_string(),
            peer: conn.peer,
            opened_unix_ms: now_ms(),
            closed_unix_ms: None,
            bytes_sent: 0,
            bytes_received: 0,
            error: None,
        };
        let l = labels(&info);
        self.metrics.opened.get_or_create(&l).inc();
        self.metrics.active.get_or_create(&l).inc();
        inner.open.insert(id, (info, conn.cancel));
        ConnGuard {
            table: self.clone(),
            id,
            sent: 0,
            received: 0,
            error: None,
        }
    }

    pub fn snapshot(&self) -> ConnSnapshot {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut open: Vec<ConnInfo> = inner.open.values().map(|(c, _)| c.clone()).collect();
        open.sort_by_key(|c| c.id);
        ConnSnapshot {
            open,
            recent: inner.recent.iter().cloned().collect(),
        }
    }

    /// Ends every open connection `pred` selects; returns what it ended.
    pub fn close_where(&self, pred: impl Fn(&ConnInfo) -> bool) -> Vec<ConnInfo> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = Vec::new();
        for (info, cancel) in inner.open.values() {
            if pred(info) {
                cancel.cancel();
                closed.push(info.clone());
            }
        }
        closed
    }

    fn close(&self, guard: &ConnGuard) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((mut info, _)) = inner.open.remove(&guard.id) {
            info.closed_unix_ms = Some(now_ms());
            info.bytes_sent = guard.sent;
            info.bytes_received = guard.received;
            let l = labels(&info);
            self.metrics.active.get_or_create(&l).dec();
            self.metrics.sent.get_or_create(&l).inc_by(guard.sent);
            self.metrics
                .received
                .get_or_create(&l)
                .inc_by(guard.received);
            info.error = guard.error.clone();
            if inner.recent.len() == RECENT {
                inner.recent.pop_front();
            }
            inner.recent.push_back(info);
        }
    }
}

/// Keeps a connection listed as open until dropped.
pub struct ConnGuard {
    table: ConnTable,
    id: u64,
    sent: u64,
    received: u64,
    error: Option<String>,
}

impl ConnGuard {
    /// Bytes the pod's side sent and received, recorded when the connection ends.
    pub fn finish(&mut self, sent: u64, received: u64, error: Option<String>) {
        self.sent = sent;
        self.received = received;
        self.error = error;
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.table.close(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> NewConn {
        NewConn {
            pod: "ns/a".into(),
            direction: Direction::Outbound,
            src: "10.0.0.1:1000".parse().unwrap(),
            dst: "10.0.0.2:80".parse().unwrap(),
            transport: "plaintext",
            peer: PeerIdentity::None(NoIdentity::NotInMesh),
            cancel: CancellationToken::new(),
        }
    }

    #[test]
    fn guard_moves_connection_to_recent_with_counts() {
        let table = ConnTable::default();
        let mut guard = table.open(conn());
        assert_eq!(table.snapshot().open.len(), 1);
        guard.finish(10, 20, None);
        drop(guard);
        let snap = table.snapshot();
        assert!(snap.open.is_empty());
        assert_eq!(snap.recent[0].bytes_sent, 10);
        assert_eq!(snap.recent[0].bytes_received, 20);
        assert!(snap.recent[0].closed_unix_ms.is_some());
    }

    #[test]
    fn close_where_cancels_only_matching_connections() {
        let table = ConnTable::default();
        let (a, b) = (conn(), conn());
        let (ta, tb) = (a.cancel.clone(), b.cancel.clone());
        let _ga = table.open(a);
        let mut other = b;
        other.direction = Direction::Inbound;
        let _gb = table.open(other);
        let closed = table.close_where(|c| c.direction == Direction::Inbound);
        assert_eq!(closed.len(), 1);
        assert!(tb.is_cancelled() && !ta.is_cancelled());
    }

    #[test]
    fn recent_is_bounded() {
        let table = ConnTable::default();
        for _ in 0..RECENT + 10 {
            drop(table.open(conn()));
        }
        assert_eq!(table.snapshot().recent.len(), RECENT);
    }
}
