//! Reading PeerAuthentication objects from (multi-document) YAML.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::error::PolicyError;
use super::model::{Mode, PeerAuthentication, RawObject};

const API_VERSIONS: [&str; 2] = ["security.istio.io/v1", "security.istio.io/v1beta1"];
const KIND: &str = "PeerAuthentication";

/// Parses every PeerAuthentication in `text` (multi-document YAML; empty documents are
/// skipped). All or nothing: the first bad document fails the whole input, with an error
/// naming `origin`, the document, the object and the field.
#[cfg(test)]
pub fn parse_documents(text: &str, origin: &str) -> Result<Vec<PeerAuthentication>, PolicyError> {
    parse_documents_in(text, origin, None)
}

/// As [`parse_documents`], also rejecting a `selector` on an object in the mesh root
/// namespace, when one is given.
pub(super) fn parse_documents_in(
    text: &str,
    origin: &str,
    root_namespace: Option<&str>,
) -> Result<Vec<PeerAuthentication>, PolicyError> {
    // First pass: syntax, and the objects' names for the error messages of the second.
    let mut values = Vec::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        match Value::deserialize(document) {
            Ok(value) => values.push(value),
            // Stop here: the parser cannot resume after a syntax error.
            Err(e) => {
                return Err(document_error(
                    origin,
                    index,
                    None,
                    format!("invalid YAML: {e}"),
                ))
            }
        }
    }
    // Second pass: typed, so serde's errors carry the field path.
    let mut objects: Vec<PeerAuthentication> = Vec::new();
    let mut seen = BTreeMap::new();
    for (index, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let Some(value) = values.get(index) else {
            break;
        };
        if value.is_null() {
            continue;
        }
        let object = object_key(value);
        let raw = RawObject::deserialize(document)
            .map_err(|e| document_error(origin, index, object.clone(), e.to_string()))?;
        let policy = convert(raw, root_namespace).map_err(|(field, message)| {
            document_error(origin, index, object.clone(), format!("{field}: {message}"))
        })?;
        let key = policy.key();
        if let Some(first) = seen.insert(key.clone(), index + 1) {
            let detail = format!("metadata.name: {key} is already defined in document {first}");
            return Err(document_error(origin, index, Some(key), detail));
        }
        objects.push(policy);
    }
    Ok(objects)
}

fn document_error(
    origin: &str,
    index: usize,
    object: Option<String>,
    detail: String,
) -> PolicyError {
    PolicyError::Document {
        origin: origin.to_string(),
        document: index + 1,
        object,
        detail,
    }
}

/// `namespace/name` of a document, read loosely, for error messages.
fn object_key(value: &Value) -> Option<String> {
    let metadata = value.get("metadata")?;
    let name = metadata.get("name")?.as_str().filter(|n| !n.is_empty())?;
    let namespace = metadata.get("namespace").and_then(Value::as_str);
    Some(format!("{}/{name}", namespace_or_default(namespace)))
}

fn namespace_or_default(namespace: Option<&str>) -> &str {
    match namespace {
        Some(ns) if !ns.is_empty() => ns,
        _ => "default",
    }
}

/// Checks what serde cannot; errors are `(field, message)`.
fn convert(
    raw: RawObject,
    root_namespace: Option<&str>,
) -> Result<PeerAuthentication, (String, String)> {
    if !API_VERSIONS.contains(&raw.api_version.as_str()) {
        let message = format!(
            "expected {} or {}, got `{}`",
            API_VERSIONS[0], API_VERSIONS[1], raw.api_version
        );
        return Err(("apiVersion".into(), message));
    }
    if raw.kind != KIND {
        let message = format!("expected {KIND}, got `{}`", raw.kind);
        return Err(("kind".into(), message));
    }
    let name = raw.metadata.name.unwrap_or_default();
    if name.is_empty() {
        return Err(("metadata.name".into(), "must not be empty".into()));
    }
    let namespace = namespace_or_default(raw.metadata.namespace.as_deref()).to_string();
    let spec = raw.spec.unwrap_or_default();
    let selector = spec
        .selector
        .and_then(|s| s.match_labels)
        .filter(|labels| !labels.is_empty());
    if let (Some(root), Some(_)) = (root_namespace, &selector) {
        if namespace == root {
            let message = format!(
                "not allowed in the root namespace {root}: a policy there applies to the whole \
                 mesh; put a workload policy in the workload's namespace instead"
            );
            return Err(("spec.selector".into(), message));
        }
    }
    let mut port_modes = BTreeMap::new();
    let mut written = BTreeSet::new();
    for (key, mtls) in spec.port_level_mtls.unwrap_or_default().0 {
        let field = format!("spec.portLevelMtls.{}", key.0);
        let Some(port) = key.port() else {
            return Err((field, "port must be a number from 1 to 65535".into()));
        };
        if !written.insert(port) {
            return Err((field, format!("port {port} is given twice")));
        }
        port_modes.insert(port, mtls.mode.unwrap_or(Mode::Unset));
    }
    if !port_modes.is_empty() && selector.is_none() {
        let message = "needs spec.selector.matchLabels: Istio applies port-level mTLS only to \
                       workload policies";
        return Err(("spec.portLevelMtls".into(), message.into()));
    }
    Ok(PeerAuthentication {
        namespace,
        name,
        creation_timestamp: raw.metadata.creation_timestamp,
        annotations: raw.metadata.annotations.unwrap_or_default(),
        selector,
        mode: spec.mtls.and_then(|m| m.mode).unwrap_or(Mode::Unset),
        port_modes,
    })
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
