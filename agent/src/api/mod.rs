//! The node API: newline-delimited JSON over a unix socket, one request and one response
//! per line. The CLI (`podlock enroll`, `pods`, ...) is its client; a CNI plugin or an
//! operator's tooling can speak it too.
#![forbid(unsafe_code)]

pub mod client;
mod server;

use serde::{Deserialize, Serialize};

use crate::workloads::{PodKey, PodSpec};

pub use server::{bind, serve, ApiServer};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Enroll(PodSpec),
    Unenroll(PodKey),
    Pods,
    Connections,
    Config,
    /// Effective policy of every enrolled pod.
    Policy,
    /// Add or replace PeerAuthentication objects (YAML, one or more documents).
    PolicyApply {
        yaml: String,
    },
    PolicyDelete {
        namespace: String,
        name: String,
    },
}

/// `{"ok": <result>}` or `{"error": "<one line naming what was wrong>"}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(serde_json::Value),
    Error(String),
}

/// Largest request line accepted; anything longer is an error, not an allocation.
pub const MAX_REQUEST: usize = 256 * 1024;
