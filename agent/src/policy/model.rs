//! The PeerAuthentication object and its Kubernetes (YAML) shape.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// Istio's `PeerAuthentication.MutualTLS.Mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    /// Inherit from the parent scope.
    Unset,
    /// Plain text only.
    Disable,
    /// Accept both mTLS and plain text.
    Permissive,
    /// mTLS only.
    Strict,
}

/// One PeerAuthentication object, validated.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerAuthentication {
    pub namespace: String,
    pub name: String,
    /// `metadata.creationTimestamp` (RFC 3339), when given.
    pub creation_timestamp: Option<String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.selector.matchLabels`; `None` when absent or empty.
    pub selector: Option<BTreeMap<String, String>>,
    /// `spec.mtls.mode`; `Unset` when absent.
    pub mode: Mode,
    /// `spec.portLevelMtls`.
    pub port_modes: BTreeMap<u16, Mode>,
}

impl PeerAuthentication {
    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// The object as written in YAML. Unknown top-level and metadata fields are ignored
/// (Kubernetes adds many); everything under `spec` is checked strictly.
#[derive(Debug, Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "a PeerAuthentication object (a mapping)"
)]
pub(super) struct RawObject {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: RawMetadata,
    #[serde(default)]
    pub spec: Option<RawSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawMetadata {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub creation_timestamp: Option<String>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawSpec {
    #[serde(default)]
    pub selector: Option<RawSelector>,
    #[serde(default)]
    pub mtls: Option<RawMtls>,
    #[serde(default)]
    pub port_level_mtls: Option<PortLevel>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawSelector {
    #[serde(default)]
    pub match_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RawMtls {
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// A `portLevelMtls` key as written (YAML gives an int or a string); checked later so
/// the error can name the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PortKey(pub String);

impl PortKey {
    /// The port number, when the key is one in 1..=65535.
    pub fn port(&self) -> Option<u16> {
        self.0.trim().parse::<u16>().ok().filter(|p| *p != 0)
    }
}

impl<'de> Deserialize<'de> for PortKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = PortKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortKey, E> {
                Ok(PortKey(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortKey, E> {
                Ok(PortKey(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortKey, E> {
                Ok(PortKey(v.to_string()))
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

/// `spec.portLevelMtls` entries in written order, keeping duplicates (`8080` and
/// `"8080"`) so they can be rejected.
#[derive(Debug, Default)]
pub(super) struct PortLevel(pub Vec<(PortKey, RawMtls)>);

impl<'de> Deserialize<'de> for PortLevel {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = PortLevel;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map from port number to mtls settings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PortLevel, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(PortLevel(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}
