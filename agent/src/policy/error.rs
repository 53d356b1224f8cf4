//! Errors of the policy module.

use thiserror::Error;

/// Everything that can go wrong reading, applying or deleting PeerAuthentication objects.
/// Every variant names where the bad input came from.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    /// A document of a policy file or request was rejected. `detail` starts with the
    /// field path when one is known (`spec.mtls.mode: unknown variant ...`).
    #[error("{origin}: document {document}{}: {detail}", object_suffix(.object))]
    Document {
        origin: String,
        /// 1-based index of the YAML document in the input.
        document: usize,
        /// `namespace/name` when it could be read.
        object: Option<String>,
        detail: String,
    },
    /// A policy file or directory could not be read.
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    /// `delete` of an object that comes from a policy file.
    #[error("PeerAuthentication {key} comes from the file {file}: edit or remove the file")]
    FromFile { key: String, file: String },
    /// `delete` of an object the store does not know.
    #[error("PeerAuthentication {key} not found")]
    NotFound { key: String },
}

fn object_suffix(object: &Option<String>) -> String {
    match object {
        Some(key) => format!(" ({key})"),
        None => String::new(),
    }
}
