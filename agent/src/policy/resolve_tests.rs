use super::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn policy(key: &str, selector: Option<&[(&str, &str)]>, mode: Mode) -> PeerAuthentication {
    let (namespace, name) = key.split_once('/').expect("ns/name");
    PeerAuthentication {
        namespace: namespace.into(),
        name: name.into(),
        creation_timestamp: None,
        annotations: BTreeMap::new(),
        selector: selector.map(labels),
        mode,
        port_modes: BTreeMap::new(),
    }
}

fn run(policies: Vec<PeerAuthentication>, pod_labels: &[(&str, &str)]) -> (Effective, Vec<String>) {
    let policies: Vec<Arc<PeerAuthentication>> = policies.into_iter().map(Arc::new).collect();
    let pod_labels = labels(pod_labels);
    let w = Workload {
        namespace: "shop",
        labels: &pod_labels,
    };
    resolve(&policies, "istio-system", &w)
}

fn setting(mode: Mode, source: &str) -> Setting {
    Setting {
        mode,
        source: source.into(),
    }
}

const WEB: &[(&str, &str)] = &[("app", "web")];
const POD: &[(&str, &str)] = &[("app", "web"), ("version", "v1")];

#[test]
fn precedence_table() {
    use Mode::*;
    // (workload, namespace, mesh) -> expected default
    let cases = [
        (None, None, None, setting(Permissive, "default")),
        (
            None,
            None,
            Some(Strict),
            setting(Strict, "istio-system/mesh"),
        ),
        (None, None, Some(Unset), setting(Permissive, "default")),
        (
            None,
            Some(Disable),
            Some(Strict),
            setting(Disable, "shop/ns"),
        ),
        (
            None,
            Some(Unset),
            Some(Strict),
            setting(Strict, "istio-system/mesh"),
        ),
        (
            None,
            Some(Unset),
            Some(Unset),
            setting(Permissive, "default"),
        ),
        (
            Some(Strict),
            Some(Disable),
            Some(Disable),
            setting(Strict, "shop/wl"),
        ),
        (
            Some(Unset),
            Some(Disable),
            Some(Strict),
            setting(Disable, "shop/ns"),
        ),
        (
            Some(Unset),
            Some(Unset),
            Some(Strict),
            setting(Strict, "istio-system/mesh"),
        ),
        (Some(Unset), None, None, setting(Permissive, "default")),
        (
            Some(Permissive),
            None,
            Some(Strict),
            setting(Permissive, "shop/wl"),
        ),
    ];
    for (workload, namespace, mesh, expected) in cases {
        let mut policies = Vec::new();
        if let Some(mode) = mesh {
            policies.push(policy("istio-system/mesh", None, mode));
        }
        if let Some(mode) = namespace {
            policies.push(policy("shop/ns", None, mode));
        }
        if let Some(mode) = workload {
            policies.push(policy("shop/wl", Some(WEB), mode));
        }
        let (effective, warnings) = run(policies, POD);
        assert_eq!(
            effective.default, expected,
            "{workload:?} {namespace:?} {mesh:?}"
        );
        assert!(effective.ports.is_empty());
        assert!(warnings.is_empty());
    }
}

#[test]
fn other_namespaces_and_unmatched_labels_do_not_apply() {
    let policies = vec![
        policy("other/ns", None, Mode::Disable),
        policy("other/wl", Some(WEB), Mode::Disable),
        policy(
            "shop/wl",
            Some(&[("app", "web"), ("tier", "db")]),
            Mode::Disable,
        ),
        policy("shop/wl2", Some(&[("app", "api")]), Mode::Disable),
        policy("istio-system/mesh", None, Mode::Strict),
    ];
    let (effective, _) = run(policies, POD);
    assert_eq!(
        effective.default,
        setting(Mode::Strict, "istio-system/mesh")
    );
}

#[test]
fn port_level_modes() {
    let mut wl = policy("shop/wl", Some(WEB), Mode::Unset);
    wl.port_modes = BTreeMap::from([(8080, Mode::Disable), (9090, Mode::Unset)]);
    let policies = vec![policy("shop/ns", None, Mode::Strict), wl];
    let (effective, _) = run(policies, POD);
    assert_eq!(effective.default, setting(Mode::Strict, "shop/ns"));
    assert_eq!(effective.ports[&8080], setting(Mode::Disable, "shop/wl"));
    assert_eq!(effective.ports[&9090], setting(Mode::Strict, "shop/ns"));
    assert_eq!(effective.mode_for_port(8080), Mode::Disable);
    assert_eq!(effective.mode_for_port(9090), Mode::Strict);
    assert_eq!(effective.mode_for_port(443), Mode::Strict);
}

#[test]
fn oldest_wins_with_warning() {
    // Seen order decides without timestamps.
    let policies = vec![
        policy("shop/a", Some(WEB), Mode::Strict),
        policy("shop/b", Some(&[("version", "v1")]), Mode::Disable),
    ];
    let (effective, warnings) = run(policies, POD);
    assert_eq!(effective.default, setting(Mode::Strict, "shop/a"));
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("shop/a and shop/b both apply at workload scope"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].ends_with("using the oldest, shop/a"),
        "{}",
        warnings[0]
    );

    // Timestamps decide when both have one.
    let mut a = policy("shop/a", None, Mode::Strict);
    a.creation_timestamp = Some("2024-06-01T00:00:00Z".into());
    let mut b = policy("shop/b", None, Mode::Disable);
    b.creation_timestamp = Some("2024-01-01T00:00:00Z".into());
    let (effective, warnings) = run(vec![a, b], POD);
    assert_eq!(effective.default, setting(Mode::Disable, "shop/b"));
    assert!(
        warnings[0].contains("at namespace scope"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[0].ends_with("using the oldest, shop/b"),
        "{}",
        warnings[0]
    );
}

#[test]
fn annotations_union() {
    let mut mesh = policy("istio-system/mesh", None, Mode::Strict);
    mesh.annotations = labels(&[("k", "mesh"), ("m", "1")]);
    let mut ns = policy("shop/ns", None, Mode::Unset);
    ns.annotations = labels(&[("k", "ns"), ("n", "1")]);
    let mut wl = policy("shop/wl", Some(WEB), Mode::Unset);
    wl.annotations = labels(&[("k", "wl")]);
    let (effective, _) = run(vec![mesh, ns, wl], POD);
    assert_eq!(
        effective.annotations,
        labels(&[("k", "wl"), ("m", "1"), ("n", "1")])
    );
}
