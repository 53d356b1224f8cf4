//! `cargo xtask <command>`: the project's build, setup, test and demo entry points.
//!
//! - `setup`: install what building and testing need (apt packages, nightly rust-src,
//!   bpf-linker built against nightly's LLVM); idempotent.
//! - `build-ebpf`: build the eBPF object the agent embeds (installs the toolchain bits first).
//! - `test`: setup, build, fmt and clippy checks, then the whole test suite (as root).
//! - `demo`: a local demo node with real pods, traffic between them, then teardown.
//! - `bench`: podlock's data path against a direct run, as ratios (nothing asserted).
#![forbid(unsafe_code)]

mod bench;
mod demo;
mod ebpf;
mod setup;

use std::{path::PathBuf, process::Command};

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str).unwrap_or("help");
    match command {
        "setup" => setup::all(),
        "build-ebpf" => ebpf::build(),
        "test" => test(&args[1..]),
        "demo" => demo::run(),
        "bench" => bench::run(),
        _ => {
            eprintln!(
                "usage: cargo xtask <setup | build-ebpf | test [-- TEST-ARGS] | demo | bench>\n\
                 see xtask/src/main.rs for what each does"
            );
            if command == "help" || command == "--help" {
                Ok(())
            } else {
                bail!("unknown command {command:?}")
            }
        }
    }
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Runs a command in the workspace root, echoing it; fails naming the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    run_in(&workspace_root(), cmd)
}

/// Runs a command in `dir` (cargo reads `.cargo/config.toml` from there).
pub fn run_in(dir: &std::path::Path, cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", describe(cmd));
    let status = cmd
        .current_dir(dir)
        .status()
        .with_context(|| format!("cannot start {}", describe(cmd)))?;
    if !status.success() {
        bail!("{} failed ({status})", describe(cmd));
    }
    Ok(())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Builds the agent binary the end-to-end tests and the demo run.
pub fn build_agent() -> Result<()> {
    ebpf::build()?;
    run(cargo().args(["build", "-p", "podlock"]))
}

fn test(extra: &[String]) -> Result<()> {
    if !nix_is_root() {
        bail!("the test suite creates network namespaces and loads eBPF: run it as root");
    }
    setup::all()?;
    build_agent()?;
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace"]).args(extra);
    run(&mut cmd)
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
