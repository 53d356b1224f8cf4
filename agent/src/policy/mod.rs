//! PeerAuthentication policy: Istio's `security.istio.io` PeerAuthentication objects,
//! read from YAML files and from the node API, resolved per pod the way Istio does.
#![forbid(unsafe_code)]

mod error;
mod model;
mod parse;
mod resolve;
mod store;

pub use error::PolicyError;
pub use model::Mode;
pub use resolve::{Effective, Setting, Workload};
pub use store::PolicyStore;
