//! SPIFFE IDs of the form `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.
//!
//! Parsing is strict: it accepts exactly that shape and the character sets of the SPIFFE
//! specification (trust domain `[a-z0-9._-]`, path segments `[A-Za-z0-9._-]`), so a peer's
//! identity has exactly one spelling and can be compared as a string.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The scheme prefix every SPIFFE ID starts with.
const SCHEME: &str = "spiffe://";
/// Maximum length of a SPIFFE ID in bytes (SPIFFE-ID spec, section 2.3).
const MAX_ID_LEN: usize = 2048;
/// Maximum length of a trust domain in bytes (SPIFFE-ID spec, section 2.1).
const MAX_TRUST_DOMAIN_LEN: usize = 255;
/// Inputs longer than this are shortened when quoted in an error message.
const MAX_QUOTED: usize = 200;

/// A workload identity: `spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    pub trust_domain: String,
    pub namespace: String,
    pub service_account: String,
}

/// A string that is not an acceptable SPIFFE ID (or trust domain), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct SpiffeError {
    what: &'static str,
    input: String,
    reason: String,
}

impl SpiffeError {
    fn id(input: &str, reason: impl Into<String>) -> Self {
        Self::new("SPIFFE ID", input, reason)
    }

    fn new(what: &'static str, input: &str, reason: impl Into<String>) -> Self {
        let input = if input.len() > MAX_QUOTED {
            let mut end = MAX_QUOTED;
            while !input.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}...", &input[..end])
        } else {
            input.to_owned()
        };
        Self {
            what,
            input,
            reason: reason.into(),
        }
    }
}

impl SpiffeId {
    /// Builds an ID from its parts without checking them; parse the URI when the
    /// parts come from outside the agent.
    pub fn new(
        trust_domain: impl Into<String>,
        namespace: impl Into<String>,
        service_account: impl Into<String>,
    ) -> Self {
        Self {
            trust_domain: trust_domain.into(),
            namespace: namespace.into(),
            service_account: service_account.into(),
        }
    }
}

/// Checks a trust domain name on its own (for example one given on the command line).
pub fn validate_trust_domain(td: &str) -> Result<(), SpiffeError> {
    trust_domain_problem(td).map_or(Ok(()), |reason| {
        Err(SpiffeError::new("trust domain", td, reason))
    })
}

fn trust_domain_problem(td: &str) -> Option<String> {
    if td.is_empty() {
        return Some("the trust domain is empty".into());
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Some(format!(
            "the trust domain is longer than {MAX_TRUST_DOMAIN_LEN} bytes"
        ));
    }
    if let Some(c) = td.chars().find(|c| c.is_ascii_uppercase()) {
        return Some(format!("the trust domain must be lowercase (found {c:?})"));
    }
    if let Some(c) = td
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_')))
    {
        return Some(format!(
            "the trust domain contains {c:?}; allowed are a-z, 0-9, '.', '-', '_'"
        ));
    }
    None
}

fn segment_problem(segment: &str) -> Option<String> {
    if segment.is_empty() {
        return Some("the path has an empty segment (\"//\")".into());
    }
    if segment == "." || segment == ".." {
        return Some(format!("the path segment {segment:?} is not allowed"));
    }
    if let Some(c) = segment
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
    {
        return Some(format!(
            "the path segment {segment:?} contains {c:?}; allowed are A-Z, a-z, 0-9, '.', '-', '_'"
        ));
    }
    None
}

impl FromStr for SpiffeId {
    type Err = SpiffeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: String| SpiffeError::id(input, reason);
        if input.len() > MAX_ID_LEN {
            return Err(err(format!("longer than {MAX_ID_LEN} bytes")));
        }
        let Some(rest) = input.strip_prefix(SCHEME) else {
            return Err(err(match input.split_once("://") {
                Some((scheme, _)) => format!("the scheme must be \"spiffe\", not {scheme:?}"),
                None => "it does not start with \"spiffe://\"".into(),
            }));
        };
        for (c, what) in [
            ('?', "a query"),
            ('#', "a fragment"),
            ('%', "percent-encoding"),
        ] {
            if rest.contains(c) {
                return Err(err(format!("{what} ({c:?}) is not allowed")));
            }
        }
        let (td, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if let Some(reason) = trust_domain_problem(td) {
            return Err(err(reason));
        }
        if path.is_empty() || path == "/" {
            return Err(err(
                "the path /ns/<namespace>/sa/<service-account> is missing".into(),
            ));
        }
        if path.len() > 1 && path.ends_with('/') {
            return Err(err("a trailing slash is not allowed".into()));
        }
        let segments: Vec<&str> = path[1..].split('/').collect();
        if let Some(reason) = segments.iter().find_map(|s| segment_problem(s)) {
            return Err(err(reason));
        }
        match segments.as_slice() {
            ["ns", ns, "sa", sa] => Ok(SpiffeId::new(td, *ns, *sa)),
            _ => Err(err(format!(
                "the path must be /ns/<namespace>/sa/<service-account>, not {path:?}"
            ))),
        }
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{SCHEME}{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl Serialize for SpiffeId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpiffeId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_format_round_trip() {
        for uri in [
            "spiffe://cluster.local/ns/default/sa/default",
            "spiffe://example.org/ns/team-a/sa/Web_Frontend.v2",
            "spiffe://a_b-c.9/ns/x/sa/y",
        ] {
            let id: SpiffeId = uri.parse().expect(uri);
            assert_eq!(id.to_string(), uri);
        }
        let id: SpiffeId = "spiffe://cluster.local/ns/shop/sa/cart".parse().unwrap();
        assert_eq!(id, SpiffeId::new("cluster.local", "shop", "cart"));
    }

    #[test]
    fn serde_uses_the_uri() {
        let id = SpiffeId::new("cluster.local", "shop", "cart");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"spiffe://cluster.local/ns/shop/sa/cart\"");
        assert_eq!(serde_json::from_str::<SpiffeId>(&json).unwrap(), id);
        let bad = serde_json::from_str::<SpiffeId>("\"spiffe://cluster.local/ns/shop\"");
        assert!(bad.unwrap_err().to_string().contains("invalid SPIFFE ID"));
    }

    #[test]
    fn rejects_malformed_ids() {
        let long = format!("spiffe://td/ns/a/sa/{}", "x".repeat(2040));
        let cases: Vec<(&str, &str)> = vec![
            ("", "does not start with"),
            ("cluster.local/ns/a/sa/b", "does not start with"),
            (
                "https://cluster.local/ns/a/sa/b",
                "scheme must be \"spiffe\"",
            ),
            (
                "SPIFFE://cluster.local/ns/a/sa/b",
                "scheme must be \"spiffe\"",
            ),
            ("spiffe:/cluster.local/ns/a/sa/b", "does not start with"),
            ("spiffe://", "trust domain is empty"),
            ("spiffe:///ns/a/sa/b", "trust domain is empty"),
            (
                "spiffe://cluster.local",
                "path /ns/<namespace>/sa/<service-account> is missing",
            ),
            ("spiffe://cluster.local/", "is missing"),
            ("spiffe://Cluster.local/ns/a/sa/b", "must be lowercase"),
            ("spiffe://cluster.local:8443/ns/a/sa/b", "contains ':'"),
            ("spiffe://user@cluster.local/ns/a/sa/b", "contains '@'"),
            ("spiffe://cluster.local/ns/a/sa/b/", "trailing slash"),
            ("spiffe://cluster.local/ns/a/sa/b/extra", "path must be"),
            ("spiffe://cluster.local/ns/a/sa", "path must be"),
            ("spiffe://cluster.local/ns/a", "path must be"),
            ("spiffe://cluster.local/sa/b/ns/a", "path must be"),
            ("spiffe://cluster.local/ns//sa/b", "empty segment"),
            ("spiffe://cluster.local/ns/a/sa/", "trailing slash"),
            ("spiffe://cluster.local/ns/./sa/b", "\".\" is not allowed"),
            ("spiffe://cluster.local/ns/../sa/b", "\"..\" is not allowed"),
            ("spiffe://cluster.local/ns/a/sa/b?x=1", "query"),
            ("spiffe://cluster.local/ns/a/sa/b#frag", "fragment"),
            ("spiffe://cluster.local/ns/a%2Fb/sa/c", "percent-encoding"),
            ("spiffe://cluster.local/ns/a b/sa/c", "contains ' '"),
            ("spiffe://cluster.local/ns/caf\u{e9}/sa/c", "contains"),
            ("spiffe://cluster.local/NS/a/sa/b", "path must be"),
            (long.as_str(), "longer than 2048 bytes"),
        ];
        for (input, want) in cases {
            let err = input
                .parse::<SpiffeId>()
                .expect_err(&format!("{input:?} should be rejected"));
            let text = err.to_string();
            assert!(
                text.contains(want),
                "{input:?}: error {text:?} should mention {want:?}"
            );
            assert!(text.starts_with("invalid SPIFFE ID \""), "{text}");
        }
    }

    #[test]
    fn error_quotes_the_input() {
        let err = "spiffe://x/ns/a/sa/b/c".parse::<SpiffeId>().unwrap_err();
        assert!(
            err.to_string().contains("\"spiffe://x/ns/a/sa/b/c\""),
            "{err}"
        );
    }

    #[test]
    fn trust_domain_validation() {
        assert!(validate_trust_domain("cluster.local").is_ok());
        let err = validate_trust_domain("Cluster.local").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("invalid trust domain \"Cluster.local\""));
        assert!(validate_trust_domain("").is_err());
        assert!(validate_trust_domain("a/b").is_err());
    }
}
