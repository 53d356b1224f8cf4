//! The enrolled pods, kept on disk so a restarted agent serves them again without waiting
//! for someone to re-enroll them.
use std::path::{Path, PathBuf};

use tracing::warn;

use super::PodSpec;

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("pods.json"),
        }
    }

    /// The pods a previous run was serving (none if there was no previous run).
    pub fn load(&self) -> Vec<PodSpec> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        serde_json::from_str(&text).unwrap_or_else(|e| {
            warn!(path = %self.path.display(), error = %e, "ignoring an unreadable pod state file");
            Vec::new()
        })
    }

    /// Replaces the file atomically (write, then rename).
    pub fn save<'a>(&self, pods: impl Iterator<Item = &'a PodSpec>) {
        let specs: Vec<&PodSpec> = pods.collect();
        let tmp = self.path.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&specs)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &self.path)
            });
        if let Err(e) = written {
            warn!(path = %self.path.display(), error = %e, "cannot save the enrolled pods");
        }
    }
}
