//! Running helper commands with errors that say what failed.
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion; an unsuccessful exit is an error carrying its stderr.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", describe(cmd)))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    Ok(out)
}

/// `ip ARGS...`
pub fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

/// Runs a command inside a named netns (no /sys remount, unlike `ip netns exec`).
pub fn in_netns(netns: &str, program: &str, args: &[&str]) -> Result<Output> {
    run(Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .arg("--")
        .arg(program)
        .args(args))
}
