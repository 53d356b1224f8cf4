//! Embeds the eBPF object built by `cargo xtask build-ebpf`. A missing or stale object is a
//! build error that says what to run, never a runtime surprise.
use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = SystemTime::UNIX_EPOCH;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return newest;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        let mtime = if path.is_dir() {
            newest_mtime(&path)
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(newest)
        };
        newest = newest.max(mtime);
    }
    newest
}

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let ebpf_src = manifest.join("../ebpf");
    let object = manifest.join("../target/bpf/podlock.bpf.o");
    println!("cargo:rerun-if-changed={}", object.display());
    println!("cargo:rerun-if-changed={}", ebpf_src.display());
    let Ok(meta) = std::fs::metadata(&object) else {
        panic!(
            "\n\npodlock: the eBPF object {} is missing.\n\
             Build it first with:  cargo xtask build-ebpf\n\n",
            object.display()
        );
    };
    let built = meta.modified().expect("mtime");
    if newest_mtime(&ebpf_src) > built {
        panic!(
            "\n\npodlock: the eBPF object {} is older than the sources in {}.\n\
             Rebuild it with:  cargo xtask build-ebpf\n\n",
            object.display(),
            ebpf_src.display()
        );
    }
    println!("cargo:rustc-env=PODLOCK_BPF_OBJECT={}", object.display());
}
