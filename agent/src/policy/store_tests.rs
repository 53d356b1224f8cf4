use super::*;
use crate::policy::model::Mode;

fn doc(ns: &str, name: &str, mode: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  mtls:\n    mode: {mode}\n"
    )
}

fn keys(store: &PolicyStore) -> Vec<String> {
    store
        .objects()
        .iter()
        .map(|(p, origin)| format!("{} {}", p.key(), origin))
        .collect()
}

fn pod_mode(store: &PolicyStore, ns: &str) -> (Mode, String) {
    let labels = BTreeMap::new();
    let (effective, _) = store.resolve(&Workload {
        namespace: ns,
        labels: &labels,
    });
    (effective.default.mode, effective.default.source)
}

#[test]
fn load_dir_good_bad_removed() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("mesh.yaml");
    let shop = dir.path().join("shop.yml");
    fs::write(&good, doc("istio-system", "default", "STRICT")).unwrap();
    fs::write(&shop, doc("shop", "default", "DISABLE")).unwrap();
    fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
    fs::write(dir.path().join(".hidden.yaml"), "not yaml: [").unwrap();
    let mut store = PolicyStore::new("istio-system".into());
    assert_eq!(store.root_namespace(), "istio-system");
    assert!(store.load_dir(dir.path()).is_empty());
    assert_eq!(store.version(), 1);
    assert_eq!(
        pod_mode(&store, "shop"),
        (Mode::Disable, "shop/default".into())
    );
    assert_eq!(
        pod_mode(&store, "other"),
        (Mode::Strict, "istio-system/default".into())
    );

    // Unchanged files: nothing re-read, no version bump.
    assert!(store.load_dir(dir.path()).is_empty());
    assert_eq!(store.version(), 1);

    // A bad file keeps its last good objects; a new good file applies.
    fs::write(&shop, doc("shop", "default", "STRICTT")).unwrap();
    fs::write(
        dir.path().join("zoo.yaml"),
        doc("zoo", "default", "PERMISSIVE"),
    )
    .unwrap();
    let errors = store.load_dir(dir.path());
    assert_eq!(errors.len(), 1);
    let msg = errors[0].to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: document 1 (shop/default): spec.mtls.mode: unknown variant",
            shop.display()
        )),
        "{msg}"
    );
    assert_eq!(
        pod_mode(&store, "shop"),
        (Mode::Disable, "shop/default".into())
    );
    assert_eq!(
        pod_mode(&store, "zoo"),
        (Mode::Permissive, "zoo/default".into())
    );
    assert_eq!(store.version(), 2);
    // The unchanged bad file is not reported again.
    assert!(store.load_dir(dir.path()).is_empty());
    assert_eq!(store.version(), 2);

    // Fixed, then removed.
    fs::write(&shop, doc("shop", "default", "PERMISSIVE")).unwrap();
    assert!(store.load_dir(dir.path()).is_empty());
    assert_eq!(
        pod_mode(&store, "shop"),
        (Mode::Permissive, "shop/default".into())
    );
    assert_eq!(store.version(), 3);
    fs::remove_file(&shop).unwrap();
    assert!(store.load_dir(dir.path()).is_empty());
    assert_eq!(
        pod_mode(&store, "shop"),
        (Mode::Strict, "istio-system/default".into())
    );
    assert_eq!(store.version(), 4);
}

#[test]
fn first_seen_order_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = PolicyStore::new("istio-system".into());
    fs::write(dir.path().join("b.yaml"), doc("shop", "b", "STRICT")).unwrap();
    store.load_dir(dir.path());
    fs::write(dir.path().join("a.yaml"), doc("shop", "a", "STRICT")).unwrap();
    store.load_dir(dir.path());
    // b.yaml rewritten (longer): b keeps its place ahead of a.
    fs::write(dir.path().join("b.yaml"), doc("shop", "b", "PERMISSIVE")).unwrap();
    store.load_dir(dir.path());
    let a = dir.path().join("a.yaml").display().to_string();
    let b = dir.path().join("b.yaml").display().to_string();
    assert_eq!(keys(&store), [format!("shop/b {b}"), format!("shop/a {a}")]);
    let (effective, warnings) = store.resolve(&Workload {
        namespace: "shop",
        labels: &BTreeMap::new(),
    });
    assert_eq!(effective.default.source, "shop/b");
    assert_eq!(warnings.len(), 1);
}

#[test]
fn apply_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.yaml");
    fs::write(&file, doc("shop", "default", "DISABLE")).unwrap();
    let mut store = PolicyStore::new("istio-system".into());
    store.load_dir(dir.path());
    let v = store.version();

    let text = format!(
        "{}---\n{}",
        doc("istio-system", "default", "STRICT"),
        doc("shop", "default", "STRICT")
    );
    let applied = store.apply(&text).unwrap();
    assert_eq!(
        applied,
        ["istio-system/default created", "shop/default created"]
    );
    assert_eq!(store.version(), v + 1);
    // The runtime object wins over the file's.
    assert_eq!(
        pod_mode(&store, "shop"),
        (Mode::Strict, "shop/default".into())
    );
    assert!(keys(&store).contains(&"shop/default api".to_string()));
    // Re-applying the same objects changes nothing.
    let applied = store.apply(&text).unwrap();
    assert_eq!(
        applied,
        ["istio-system/default configured", "shop/default configured"]
    );
    assert_eq!(store.version(), v + 1);

    // All or nothing.
    let bad = format!(
        "{}---\n{}",
        doc("zoo", "default", "STRICT"),
        doc("zoo", "x", "NOPE")
    );
    let msg = store.apply(&bad).unwrap_err().to_string();
    assert!(
        msg.starts_with("request: document 2 (zoo/x): spec.mtls.mode"),
        "{msg}"
    );
    assert_eq!(
        pod_mode(&store, "zoo"),
        (Mode::Strict, "istio-system/default".into())
    );
    assert_eq!(store.version(), v + 1);

    // Deleting the runtime object brings the file's back; the file's cannot be deleted.
    store.delete("shop", "default").unwrap();
    assert_eq!(
        pod_mode(&store, "shop"),
        (Mode::Disable, "shop/default".into())
    );
    assert_eq!(store.version(), v + 2);
    let err = store.delete("shop", "default").unwrap_err();
    assert_eq!(
        err,
        PolicyError::FromFile {
            key: "shop/default".into(),
            file: file.display().to_string()
        }
    );
    assert!(err.to_string().contains("edit or remove the file"));
    let err = store.delete("shop", "nope").unwrap_err();
    assert_eq!(err.to_string(), "PeerAuthentication shop/nope not found");
    assert_eq!(store.version(), v + 2);
}

#[test]
fn root_namespace_selector_rejected() {
    let mut store = PolicyStore::new("mesh-root".into());
    let text = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: x, namespace: mesh-root}\nspec:\n  selector:\n    matchLabels: {app: a}\n";
    let msg = store.apply(text).unwrap_err().to_string();
    assert!(msg.starts_with("request: document 1 (mesh-root/x): spec.selector: not allowed in the root namespace mesh-root"), "{msg}");
    assert_eq!(store.version(), 0);
}

#[test]
fn missing_dir_is_an_error_and_keeps_policies() {
    let mut store = PolicyStore::new("istio-system".into());
    store.apply(&doc("shop", "default", "STRICT")).unwrap();
    let errors = store.load_dir(Path::new("/nonexistent/podlock-policies"));
    assert_eq!(errors.len(), 1);
    assert!(errors[0]
        .to_string()
        .starts_with("/nonexistent/podlock-policies: "));
    assert_eq!(store.objects().len(), 1);
}
