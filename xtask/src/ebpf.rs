//! Builds the eBPF object (nightly, bpfel-unknown-none, bpf-linker) and puts it where the
//! agent's build script looks for it: `target/bpf/podlock.bpf.o`.
use std::process::Command;

use anyhow::{Context, Result};

use crate::{run_in, setup, workspace_root};

pub fn build() -> Result<()> {
    setup::toolchain()?;
    let root = workspace_root();
    let crate_dir = root.join("ebpf/podlock-ebpf");
    let target_dir = root.join("target/ebpf");
    // Run inside the crate so cargo picks up its .cargo/config.toml (target, linker).
    run_in(
        &crate_dir,
        Command::new("cargo")
            .args(["+nightly", "build", "--release", "--target-dir"])
            .arg(&target_dir)
            // The workspace's stable toolchain must not leak into the nested nightly build.
            .env_remove("RUSTC")
            .env_remove("RUSTUP_TOOLCHAIN")
            .env_remove("CARGO"),
    )?;
    let built = target_dir.join("bpfel-unknown-none/release/podlock");
    let installed = root.join("target/bpf/podlock.bpf.o");
    std::fs::create_dir_all(installed.parent().expect("has a parent"))?;
    let new = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
    if std::fs::read(&installed).ok().as_deref() == Some(&new[..]) {
        // Same bytes: only refresh the timestamp so the agent's staleness check passes
        // without forcing a rebuild for nothing.
        let file = std::fs::File::options().append(true).open(&installed)?;
        file.set_modified(std::time::SystemTime::now())?;
    } else {
        std::fs::write(&installed, &new)
            .with_context(|| format!("writing {}", installed.display()))?;
        eprintln!("xtask: eBPF object updated: {}", installed.display());
    }
    Ok(())
}
