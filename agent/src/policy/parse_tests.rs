use super::*;

const MESH_STRICT: &str = "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
";

const NAMESPACE_PERMISSIVE: &str = "
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: default
  namespace: foo
  uid: 1234
  labels: {team: a}
spec:
  mtls:
    mode: PERMISSIVE
";

const WORKLOAD_PORTS: &str = "
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: finance
  namespace: foo
  creationTimestamp: 2024-05-01T10:00:00Z
  annotations:
    podlock.io/exempt: \"true\"
spec:
  selector:
    matchLabels:
      app: finance
  mtls:
    mode: STRICT
  portLevelMtls:
    8080:
      mode: DISABLE
    \"9090\":
      mode: UNSET
";

fn parse(text: &str) -> Result<Vec<PeerAuthentication>, PolicyError> {
    parse_documents_in(text, "policies/p.yaml", Some("istio-system"))
}

fn error(text: &str) -> String {
    match parse(text) {
        Ok(objects) => panic!("expected an error, got {objects:?}"),
        Err(e) => e.to_string(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn istio_examples() {
    let mesh = parse(MESH_STRICT).unwrap();
    assert_eq!(mesh.len(), 1);
    assert_eq!(mesh[0].key(), "istio-system/default");
    assert_eq!(mesh[0].mode, Mode::Strict);
    assert_eq!(mesh[0].selector, None);
    assert!(mesh[0].port_modes.is_empty());

    let ns = parse(NAMESPACE_PERMISSIVE).unwrap();
    assert_eq!(ns[0].key(), "foo/default");
    assert_eq!(ns[0].mode, Mode::Permissive);

    let w = &parse(WORKLOAD_PORTS).unwrap()[0];
    assert_eq!(w.selector, Some(labels(&[("app", "finance")])));
    assert_eq!(w.mode, Mode::Strict);
    assert_eq!(
        w.port_modes,
        BTreeMap::from([(8080, Mode::Disable), (9090, Mode::Unset)])
    );
    assert_eq!(
        w.creation_timestamp.as_deref(),
        Some("2024-05-01T10:00:00Z")
    );
    assert_eq!(w.annotations, labels(&[("podlock.io/exempt", "true")]));
}

#[test]
fn defaults() {
    let text = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: x}\n";
    let p = &parse(text).unwrap()[0];
    assert_eq!(p.key(), "default/x");
    assert_eq!(p.mode, Mode::Unset);
    // An empty matchLabels is no selector.
    let text = format!("{text}spec:\n  selector:\n    matchLabels: {{}}\n");
    assert_eq!(parse(&text).unwrap()[0].selector, None);
}

#[test]
fn multi_document() {
    let text = format!(
        "---\n{MESH_STRICT}---\n# just a comment\n---\n{NAMESPACE_PERMISSIVE}---\n{WORKLOAD_PORTS}"
    );
    let keys: Vec<String> = parse(&text).unwrap().iter().map(|p| p.key()).collect();
    assert_eq!(keys, ["istio-system/default", "foo/default", "foo/finance"]);
    assert!(parse("").unwrap().is_empty());
    assert!(parse("# nothing\n---\n").unwrap().is_empty());
}

#[test]
fn unknown_mode_names_everything() {
    let bad = NAMESPACE_PERMISSIVE.replace("PERMISSIVE", "STRICTT");
    let msg = error(&format!("{MESH_STRICT}---{bad}"));
    assert!(
        msg.starts_with(
            "policies/p.yaml: document 2 (foo/default): spec.mtls.mode: unknown variant `STRICTT`"
        ),
        "{msg}"
    );
}

#[test]
fn unknown_spec_field() {
    let msg = error(&MESH_STRICT.replace("mtls:", "mtsl:"));
    assert!(
        msg.starts_with(
            "policies/p.yaml: document 1 (istio-system/default): spec: unknown field `mtsl`"
        ),
        "{msg}"
    );
    let msg = error(&WORKLOAD_PORTS.replace("      mode: DISABLE", "      mod: DISABLE"));
    assert!(
        msg.contains("(foo/finance): spec.portLevelMtls.8080: unknown field `mod`"),
        "{msg}"
    );
    let msg = error(&WORKLOAD_PORTS.replace("matchLabels", "matchLabel"));
    assert!(
        msg.contains("(foo/finance): spec.selector: unknown field `matchLabel`"),
        "{msg}"
    );
}

#[test]
fn bad_yaml_syntax() {
    let msg = error(&format!("{MESH_STRICT}---\nmetadata: [unclosed\n"));
    assert!(
        msg.starts_with("policies/p.yaml: document 2: invalid YAML:"),
        "{msg}"
    );
    assert!(msg.contains("line"), "{msg}");
}

#[test]
fn selector_in_root_namespace() {
    let text = WORKLOAD_PORTS.replace("namespace: foo", "namespace: istio-system");
    let msg = error(&text);
    assert!(
        msg.starts_with("policies/p.yaml: document 1 (istio-system/finance): spec.selector: not allowed in the root namespace istio-system"),
        "{msg}"
    );
    // Without a root namespace (plain parse_documents) there is nothing to check against.
    assert!(parse_documents(&text, "request").is_ok());
}

#[test]
fn port_level_without_selector() {
    let text = WORKLOAD_PORTS.replace("  selector:\n    matchLabels:\n      app: finance\n", "");
    let msg = error(&text);
    assert!(
        msg.contains("document 1 (foo/finance): spec.portLevelMtls: needs spec.selector"),
        "{msg}"
    );
    let text = WORKLOAD_PORTS.replace("\n      app: finance", " {}");
    assert!(error(&text).contains("spec.portLevelMtls: needs spec.selector"));
}

#[test]
fn bad_ports() {
    for port in ["0", "65536", "\"http\"", "-1"] {
        let msg = error(&WORKLOAD_PORTS.replace("8080", port));
        let shown = port.trim_matches('"');
        assert!(
            msg.contains(&format!(
                "(foo/finance): spec.portLevelMtls.{shown}: port must be a number from 1 to 65535"
            )),
            "{msg}"
        );
    }
    assert!(error(&WORKLOAD_PORTS.replace("\"9090\"", "\"8080\"")).contains("given twice"));
}

#[test]
fn bad_api_version_kind_name() {
    let msg = error(&MESH_STRICT.replace("security.istio.io/v1", "security.istio.io/v2"));
    assert!(
        msg.starts_with("policies/p.yaml: document 1 (istio-system/default): apiVersion: expected security.istio.io/v1 or security.istio.io/v1beta1, got `security.istio.io/v2`"),
        "{msg}"
    );
    let msg = error(&MESH_STRICT.replace("kind: PeerAuthentication", "kind: AuthorizationPolicy"));
    assert!(
        msg.contains("(istio-system/default): kind: expected PeerAuthentication"),
        "{msg}"
    );
    let msg = error(&MESH_STRICT.replace("name: default", "name: \"\""));
    assert!(
        msg.contains("document 1: metadata.name: must not be empty"),
        "{msg}"
    );
}

#[test]
fn all_or_nothing_and_duplicates() {
    let msg = error(&format!("{MESH_STRICT}---\n{MESH_STRICT}"));
    assert!(msg.contains("document 2 (istio-system/default): metadata.name: istio-system/default is already defined in document 1"), "{msg}");
    let msg = error(&format!("{MESH_STRICT}---\n- a list\n"));
    assert!(
        msg.starts_with("policies/p.yaml: document 2: invalid type: sequence, expected a PeerAuthentication object"),
        "{msg}"
    );
}
