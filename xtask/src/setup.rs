//! Installs what the build and the tests need, only when it is missing.
use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

use crate::run;

/// Debian packages, each with a file that proves it is installed.
const APT: &[(&str, &str)] = &[
    ("iproute2", "/usr/bin/ip"),
    ("tcpdump", "/usr/bin/tcpdump"),
    ("socat", "/usr/bin/socat"),
    ("bpftool", "/usr/sbin/bpftool"),
    ("containernetworking-plugins", "/usr/lib/cni/bridge"),
    ("util-linux", "/usr/bin/nsenter"),
    ("openssl", "/usr/bin/openssl"),
];

const BPF_LINKER_VERSION: &str = "0.13";

pub fn all() -> Result<()> {
    apt_packages()?;
    toolchain()
}

/// The nightly toolchain with rust-src, and bpf-linker built against nightly's LLVM.
pub fn toolchain() -> Result<()> {
    let has_src = Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rust-src"))
        .unwrap_or(false);
    if !has_src {
        eprintln!(
            "xtask: installing the nightly toolchain's rust-src (needed for -Z build-std=core)"
        );
        // `component add`, not `toolchain install`: the latter may move nightly to a newer
        // build whose LLVM no longer matches bpf-linker's.
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    bpf_linker()
}

fn bpf_linker() -> Result<()> {
    // Under `rustup run nightly`, which puts nightly's libLLVM on the library path.
    let current = Command::new("rustup")
        .args(["run", "nightly", "bpf-linker", "--version"])
        .output();
    if let Ok(out) = current {
        if String::from_utf8_lossy(&out.stdout)
            .contains(&format!("bpf-linker {BPF_LINKER_VERSION}"))
        {
            return Ok(());
        }
    }
    eprintln!("xtask: building bpf-linker {BPF_LINKER_VERSION} against the nightly toolchain's LLVM (about a minute)");
    let prefix = llvm_prefix()?;
    run(Command::new("cargo")
        .args(["+nightly", "install", "bpf-linker", "--locked", "--version"])
        .arg(format!("^{BPF_LINKER_VERSION}"))
        .args(["--no-default-features", "--features", "llvm-22", "--force"])
        .env("LLVM_PREFIX", &prefix))
}

/// A directory whose `lib/libLLVM.so` is the nightly toolchain's own LLVM. Kept under the
/// user's data directory so it outlives this checkout.
fn llvm_prefix() -> Result<PathBuf> {
    let sysroot = Command::new("rustc")
        .args(["+nightly", "--print", "sysroot"])
        .output()
        .context("cannot run rustc +nightly")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim());
    let lib = std::fs::read_dir(sysroot.join("lib"))
        .with_context(|| format!("cannot read {}/lib", sysroot.display()))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with("libLLVM.so."))
                .unwrap_or(false)
        });
    let Some(lib) = lib else {
        bail!(
            "no libLLVM.so.* in {}/lib; is the nightly toolchain complete?",
            sysroot.display()
        );
    };
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let prefix = PathBuf::from(home).join(".local/share/podlock/llvm");
    std::fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&lib, &link)
        .with_context(|| format!("cannot link {} to {}", link.display(), lib.display()))?;
    Ok(prefix)
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT
        .iter()
        .filter(|(_, file)| !std::path::Path::new(file).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    run(Command::new("apt-get").args(["update", "-qq"]))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
