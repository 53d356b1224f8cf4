//! `podlock ca <command>`: operator commands for the CA.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::ca::Ca;
use super::ca_init::init_ca_dir;
use super::spiffe::SpiffeId;
use super::{clock, pem};

#[derive(clap::Subcommand, Debug)]
pub enum CaCommand {
    /// Write a fresh self-signed root CA in Istio's plug-in CA layout.
    Init {
        /// Directory to write ca-cert.pem, ca-key.pem, root-cert.pem and cert-chain.pem into.
        #[arg(long)]
        out: PathBuf,
        /// Trust domain the CA is for (named in its subject).
        #[arg(long, default_value = "cluster.local")]
        trust_domain: String,
        /// Validity of the root, in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
        /// Replace existing CA files.
        #[arg(long)]
        force: bool,
    },
    /// Issue a workload certificate (for debugging and tests): writes cert-chain.pem (leaf+chain) and key.pem (0600) into --out.
    Issue {
        /// Directory holding the CA in plug-in layout.
        #[arg(long)]
        ca_dir: PathBuf,
        /// SPIFFE ID to put in the certificate, spiffe://<td>/ns/<ns>/sa/<sa> (any trust domain).
        #[arg(long)]
        identity: String,
        /// Lifetime: 90s, 15m, 24h, 7d or plain seconds.
        #[arg(long, default_value = "1h", value_parser = parse_duration)]
        lifetime: Duration,
        /// Directory to write cert-chain.pem and key.pem into (created if missing).
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs one `podlock ca` command and prints one line saying what it wrote.
pub fn run(cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init {
            out,
            trust_domain,
            days,
            force,
        } => {
            init_ca_dir(&out, &trust_domain, days, force)?;
            println!(
                "wrote a new root CA for trust domain {trust_domain} (valid {days} days) to {}: \
                 ca-cert.pem, ca-key.pem, root-cert.pem, cert-chain.pem",
                out.display()
            );
        }
        CaCommand::Issue {
            ca_dir,
            identity,
            lifetime,
            out,
        } => {
            // Any trust domain is accepted (tests mint certificates for foreign domains),
            // but the ID itself must be well formed.
            let id: SpiffeId = identity.parse()?;
            let ca = Ca::load(&ca_dir)?;
            let cert = ca.issue(&id, lifetime)?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            pem::write_public(&out.join("cert-chain.pem"), &pem::encode_certs(&cert.chain))?;
            pem::write_private(
                &out.join("key.pem"),
                &pem::encode("PRIVATE KEY", cert.key.secret_der()),
            )?;
            println!(
                "wrote cert-chain.pem and key.pem for {id} (serial {}, valid until {}) to {}",
                cert.serial,
                clock::rfc3339(cert.not_after),
                out.display()
            );
        }
    }
    Ok(())
}

/// Parses `90s`, `15m`, `24h`, `7d` or plain seconds (`30`); zero is rejected.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!("invalid duration {s:?}: expected a positive whole number with an optional unit s, m, h or d (e.g. 90s, 15m, 24h, 7d)")
    };
    let (digits, unit_secs) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!("invalid duration {s:?}: must be longer than zero"));
    }
    let secs = n
        .checked_mul(unit_secs)
        .ok_or_else(|| format!("invalid duration {s:?}: too long"))?;
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        for (input, secs) in [
            ("90s", 90),
            ("15m", 900),
            ("24h", 86_400),
            ("7d", 604_800),
            ("30", 30),
            ("1", 1),
        ] {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_secs(secs)),
                "{input}"
            );
        }
        for input in [
            "",
            "0",
            "0s",
            "0d",
            "s",
            "-5s",
            "+5",
            "1.5h",
            "5 m",
            " 5m",
            "5w",
            "1h30m",
            "abc",
            "99999999999999999999",
            "999999999999999999d",
        ] {
            let err = parse_duration(input).expect_err(input);
            assert!(err.contains(&format!("{input:?}")), "{err}");
        }
    }

    #[test]
    fn init_then_issue_writes_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ca_dir = dir.path().join("ca");
        run(CaCommand::Init {
            out: ca_dir.clone(),
            trust_domain: "cluster.local".into(),
            days: 2,
            force: false,
        })
        .unwrap();
        let out = dir.path().join("leaf");
        run(CaCommand::Issue {
            ca_dir: ca_dir.clone(),
            identity: "spiffe://other.domain/ns/a/sa/b".into(),
            lifetime: Duration::from_secs(600),
            out: out.clone(),
        })
        .unwrap();
        let chain = pem::read_certs(&out.join("cert-chain.pem")).unwrap();
        assert_eq!(chain.len(), 2, "leaf + root");
        assert_eq!(
            crate::identity::verify::spiffe_id_of(&chain[0]).unwrap(),
            SpiffeId::new("other.domain", "a", "b")
        );
        pem::read_key(&out.join("key.pem")).unwrap();
        let mode = std::fs::metadata(out.join("key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        let err = run(CaCommand::Issue {
            ca_dir,
            identity: "spiffe://cluster.local/ns/a".into(),
            lifetime: Duration::from_secs(600),
            out,
        })
        .unwrap_err();
        assert!(err.to_string().contains("invalid SPIFFE ID"), "{err}");
    }
}
