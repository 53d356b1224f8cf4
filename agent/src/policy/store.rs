//! The node's set of PeerAuthentication objects: policy files plus objects applied
//! through the node API.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use tracing::{debug, info, warn};

use super::error::PolicyError;
use super::model::PeerAuthentication;
use super::parse::parse_documents_in;
use super::resolve::{resolve, Effective, Workload};

/// Origin of objects applied through the node API.
const API_ORIGIN: &str = "api";
/// Origin named in errors about objects applied through the node API.
const REQUEST_ORIGIN: &str = "request";

type Stamp = (Option<SystemTime>, u64);

#[derive(Default)]
struct FileEntry {
    /// (mtime, len) when last read; `None` forces a re-read.
    stamp: Option<Stamp>,
    /// The last good objects of the file.
    objects: Vec<Arc<PeerAuthentication>>,
}

/// All PeerAuthentication objects known to the node.
pub struct PolicyStore {
    root_namespace: String,
    files: BTreeMap<PathBuf, FileEntry>,
    runtime: BTreeMap<String, Arc<PeerAuthentication>>,
    /// `namespace/name` -> when the store first saw it (stable across reloads).
    first_seen: HashMap<String, u64>,
    next_seen: u64,
    /// The objects in force with their origin, in first-seen order.
    active: Vec<(Arc<PeerAuthentication>, String)>,
    /// `active` without the origins, as `resolve` takes it.
    ordered: Vec<Arc<PeerAuthentication>>,
    version: u64,
}

impl PolicyStore {
    pub fn new(root_namespace: String) -> Self {
        Self {
            root_namespace,
            files: BTreeMap::new(),
            runtime: BTreeMap::new(),
            first_seen: HashMap::new(),
            next_seen: 0,
            active: Vec::new(),
            ordered: Vec::new(),
            version: 0,
        }
    }

    #[cfg(test)]
    pub fn root_namespace(&self) -> &str {
        &self.root_namespace
    }

    /// Bumps whenever the set of objects in force changes.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// (Re)reads every `*.yaml` / `*.yml` file of `dir` (not recursive) whose mtime or
    /// length changed. A file that fails keeps its last good objects; a removed file drops
    /// its objects. Returns the errors of this pass.
    pub fn load_dir(&mut self, dir: &Path) -> Vec<PolicyError> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) => {
                let error = io_error(dir, &e);
                warn!(dir = %dir.display(), error = %e, "cannot read the policy directory; keeping the current policies");
                return vec![error];
            }
        };
        let mut errors = Vec::new();
        let mut present = BTreeSet::new();
        for entry in entries {
            let path = match entry {
                Ok(entry) => entry.path(),
                Err(e) => {
                    errors.push(io_error(dir, &e));
                    continue;
                }
            };
            if !is_policy_file(&path) {
                continue;
            }
            match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => {
                    present.insert(path.clone());
                    let stamp = (meta.modified().ok(), meta.len());
                    if let Err(e) = self.load_file(&path, stamp) {
                        errors.push(e);
                    }
                }
                Ok(_) => {}
                // Gone since the listing (or a dangling link): treat as removed.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    present.insert(path.clone());
                    errors.push(io_error(&path, &e));
                }
            }
        }
        for error in &errors {
            warn!(error = %error, "policy file rejected; keeping its last good policies");
        }
        self.files.retain(|path, _| {
            let keep = present.contains(path);
            if !keep {
                info!(file = %path.display(), "policy file removed");
            }
            keep
        });
        self.rebuild();
        errors
    }

    fn load_file(&mut self, path: &Path, stamp: Stamp) -> Result<(), PolicyError> {
        if self.files.get(path).and_then(|f| f.stamp) == Some(stamp) {
            return Ok(());
        }
        let text = fs::read_to_string(path).map_err(|e| io_error(path, &e))?;
        let origin = path.display().to_string();
        let parsed = parse_documents_in(&text, &origin, Some(&self.root_namespace));
        let entry = self.files.entry(path.to_path_buf()).or_default();
        // An unchanged bad file is not re-read (nor re-reported) until it changes.
        entry.stamp = Some(stamp);
        let objects = parsed?;
        debug!(file = %origin, objects = objects.len(), "policy file read");
        entry.objects = objects.into_iter().map(Arc::new).collect();
        let keys: Vec<String> = entry.objects.iter().map(|p| p.key()).collect();
        keys.iter().for_each(|key| self.note_seen(key));
        Ok(())
    }

    /// Applies objects from the node API (all or nothing). An object with the same
    /// `namespace/name` as a file object overrides it.
    pub fn apply(&mut self, text: &str) -> Result<Vec<String>, PolicyError> {
        let objects = parse_documents_in(text, REQUEST_ORIGIN, Some(&self.root_namespace))?;
        let mut results = Vec::with_capacity(objects.len());
        for object in objects {
            let key = object.key();
            if let Some(file) = self.file_of(&key) {
                info!(policy = %key, file = %file.display(), "applied policy overrides the file's");
            }
            self.note_seen(&key);
            let verb = match self.runtime.insert(key.clone(), Arc::new(object)) {
                Some(_) => "configured",
                None => "created",
            };
            info!(policy = %key, "policy {verb}");
            results.push(format!("{key} {verb}"));
        }
        self.rebuild();
        Ok(results)
    }

    /// Deletes an object applied through the node API.
    pub fn delete(&mut self, namespace: &str, name: &str) -> Result<(), PolicyError> {
        let key = format!("{namespace}/{name}");
        if self.runtime.remove(&key).is_some() {
            info!(policy = %key, "policy deleted");
            self.rebuild();
            return Ok(());
        }
        match self.file_of(&key) {
            Some(file) => Err(PolicyError::FromFile {
                key,
                file: file.display().to_string(),
            }),
            None => Err(PolicyError::NotFound { key }),
        }
    }

    /// The policy for one pod, and warnings about conflicting objects.
    pub fn resolve(&self, w: &Workload) -> (Effective, Vec<String>) {
        resolve(&self.ordered, &self.root_namespace, w)
    }

    /// The objects in force with their origin (file path or `api`), oldest seen first.
    pub fn objects(&self) -> Vec<(Arc<PeerAuthentication>, String)> {
        self.active.clone()
    }

    fn file_of(&self, key: &str) -> Option<&Path> {
        self.files
            .iter()
            .find(|(_, f)| f.objects.iter().any(|p| p.key() == key))
            .map(|(path, _)| path.as_path())
    }

    fn note_seen(&mut self, key: &str) {
        if !self.first_seen.contains_key(key) {
            self.first_seen.insert(key.to_string(), self.next_seen);
            self.next_seen += 1;
        }
    }

    /// Recomputes the objects in force; bumps the version when they changed.
    fn rebuild(&mut self) {
        let mut chosen: BTreeMap<String, (Arc<PeerAuthentication>, String)> = BTreeMap::new();
        for (path, file) in &self.files {
            for object in &file.objects {
                let origin = path.display().to_string();
                if let Some((_, first)) = chosen.get(&object.key()) {
                    warn!(policy = %object.key(), file = %origin, used = %first, "policy defined in two files; using the first");
                    continue;
                }
                chosen.insert(object.key(), (Arc::clone(object), origin));
            }
        }
        for (key, object) in &self.runtime {
            chosen.insert(key.clone(), (Arc::clone(object), API_ORIGIN.to_string()));
        }
        self.first_seen.retain(|key, _| chosen.contains_key(key));
        let mut active: Vec<(u64, (Arc<PeerAuthentication>, String))> = chosen
            .into_iter()
            .map(|(key, entry)| {
                (
                    self.first_seen.get(&key).copied().unwrap_or(u64::MAX),
                    entry,
                )
            })
            .collect();
        active.sort_by_key(|(seen, _)| *seen);
        let active: Vec<_> = active.into_iter().map(|(_, entry)| entry).collect();
        let same = active.len() == self.active.len()
            && active
                .iter()
                .zip(&self.active)
                .all(|((a, ao), (b, bo))| ao == bo && a == b);
        if !same {
            self.version += 1;
            info!(
                version = self.version,
                objects = active.len(),
                "policies changed"
            );
            self.ordered = active.iter().map(|(p, _)| Arc::clone(p)).collect();
            self.active = active;
        }
    }
}

fn is_policy_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    let yaml = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e == "yaml" || e == "yml");
    !hidden && yaml
}

fn io_error(path: &Path, error: &io::Error) -> PolicyError {
    PolicyError::Io {
        path: path.display().to_string(),
        message: error.to_string(),
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
