//! Workload identities (SPIFFE IDs), the CA, and workload certificates.
//!
//! - [`SpiffeId`]: `spiffe://<td>/ns/<ns>/sa/<sa>`, parsed strictly.
//! - [`Ca`]: loads Istio's plug-in CA layout (`cacerts`), issues [`WorkloadCert`]s;
//!   [`init_ca_dir`] writes a fresh root in that layout.
//! - [`CertManager`]: one certificate per identity, shared by its pods, renewed at half-life.
//! - [`spiffe_id_of`]: the identity in a peer's certificate.
//! - [`CaCommand`] / [`ca_cli`]: `podlock ca init|issue`.
#![forbid(unsafe_code)]

mod ca;
mod ca_init;
mod certs;
mod cli;
mod clock;
mod issuer;
mod pem;
mod spiffe;
mod verify;
mod workload;

#[cfg(test)]
mod ca_tests;

pub use ca::{Ca, CaError};
pub use certs::{CertManager, IdentityCert};
pub use cli::{parse_duration, run as ca_cli, CaCommand};
pub use spiffe::{validate_trust_domain, SpiffeId};
pub use verify::spiffe_id_of;
