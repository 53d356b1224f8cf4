//! What an enroll request says about a pod, and its validation.
use std::{collections::BTreeMap, fmt, path::PathBuf};

use serde::{Deserialize, Serialize};

use crate::identity::SpiffeId;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PodSpec {
    pub namespace: String,
    pub name: String,
    #[serde(default = "default_service_account")]
    pub service_account: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub netns: PathBuf,
}

fn default_service_account() -> String {
    "default".into()
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid {field} {value:?}: {why}")]
    Invalid {
        field: &'static str,
        value: String,
        why: &'static str,
    },
}

/// Kubernetes object names: lowercase alphanumerics, '-' and '.', starting and ending
/// alphanumeric, at most 253 characters.
fn check_name(field: &'static str, value: &str) -> Result<(), SpecError> {
    let bad = |why| {
        Err(SpecError::Invalid {
            field,
            value: value.to_string(),
            why,
        })
    };
    if value.is_empty() || value.len() > 253 {
        return bad("must be 1 to 253 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return bad("only lowercase letters, digits, '-' and '.' are allowed");
    }
    let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge_ok(value.as_bytes()[0]) || !edge_ok(value.as_bytes()[value.len() - 1]) {
        return bad("must start and end with a letter or digit");
    }
    Ok(())
}

impl PodSpec {
    pub fn key(&self) -> PodKey {
        PodKey {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        check_name("namespace", &self.namespace)?;
        check_name("pod name", &self.name)?;
        check_name("service account", &self.service_account)?;
        if !self.netns.is_absolute() {
            return Err(SpecError::Invalid {
                field: "netns",
                value: self.netns.display().to_string(),
                why: "must be an absolute path",
            });
        }
        Ok(())
    }

    /// The pod's SPIFFE ID.
    pub fn identity(&self, trust_domain: &str) -> SpiffeId {
        SpiffeId::new(trust_domain, &self.namespace, &self.service_account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(ns: &str, name: &str) -> PodSpec {
        PodSpec {
            namespace: ns.into(),
            name: name.into(),
            service_account: "default".into(),
            labels: BTreeMap::new(),
            netns: "/run/netns/x".into(),
        }
    }

    #[test]
    fn accepts_kubernetes_names() {
        assert!(spec("team-a", "web-7d9f.x1").validate().is_ok());
    }

    #[test]
    fn rejects_bad_names_naming_the_field() {
        let err = spec("Team", "web").validate().unwrap_err().to_string();
        assert!(err.contains("namespace") && err.contains("Team"), "{err}");
        let err = spec("ns", "-web").validate().unwrap_err().to_string();
        assert!(err.contains("pod name"), "{err}");
        assert!(spec("ns", "").validate().is_err());
    }

    #[test]
    fn rejects_relative_netns() {
        let mut s = spec("ns", "web");
        s.netns = "run/netns/x".into();
        assert!(s.validate().unwrap_err().to_string().contains("netns"));
    }

    #[test]
    fn identity_is_spiffe() {
        assert_eq!(
            spec("ns", "web").identity("cluster.local").to_string(),
            "spiffe://cluster.local/ns/ns/sa/default"
        );
    }
}
