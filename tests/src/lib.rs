//! End-to-end harness for podlock: "nodes" and "pods" are real network namespaces, wired
//! the way a container runtime wires them (the CNI bridge and host-local plugins, called
//! with the CNI protocol), each pod's processes in their own cgroup2 directory, and one
//! real `podlock run` agent per node. Everything a [`Testbed`] creates carries a unique
//! name and is removed when it is dropped, also when a test fails.
#![forbid(unsafe_code)]

mod agent;
pub mod capture;
mod cmd;
mod cni;
pub mod hbone_client;
mod pod;
mod testbed;
pub mod traffic;

pub use agent::{ca_dir, podlock_bin, Agent};
pub use pod::Pod;
pub use testbed::{Node, Testbed};

/// Fails loudly (never skips) when the suite cannot run here.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the end-to-end tests create network namespaces and load eBPF programs: run them as \
         root (cargo xtask test)"
    );
}
