//! Command-line interface: `podlock run` starts the agent; every other command asks a
//! running agent through its node API and prints the answer for people (or `--json`).
#![forbid(unsafe_code)]

use std::{io::IsTerminal, path::PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::{
    api::{client, Request},
    config::{Config, DEFAULT_SOCKET},
    workloads::{PodInfo, PodKey, PodSpec, PolicyReport},
};

mod output;

use output::{join_ips, print_connections, print_pods, print_policy};

#[derive(Parser, Debug)]
#[command(
    name = "podlock",
    version,
    about = "Mutual TLS for every pod, without sidecars."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Debug)]
struct Target {
    /// Node API socket of the agent to talk to.
    #[arg(long, default_value = DEFAULT_SOCKET, env = "PODLOCK_SOCKET")]
    socket: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the node agent.
    Run(Box<Config>),
    /// Enroll a pod: capture its traffic from now on.
    Enroll {
        /// The pod's network namespace (e.g. /run/netns/NAME or /proc/PID/ns/net).
        #[arg(long)]
        netns: PathBuf,
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "default")]
        service_account: String,
        /// Pod label, `key=value`; repeat for several.
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[command(flatten)]
        target: Target,
    },
    /// Stop capturing a pod's traffic and close its connections.
    Unenroll {
        #[arg(long)]
        namespace: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List enrolled pods.
    Pods {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// List open and recently closed connections, with their transport and peer identity.
    Connections {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Print the running agent's configuration (JSON), as it resolved its flags.
    Config {
        #[command(flatten)]
        target: Target,
    },
    /// Show the effective mTLS mode of every enrolled pod and port, and which
    /// PeerAuthentication set it; or change policies at run time.
    Policy {
        #[command(subcommand)]
        action: Option<PolicyAction>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Certificate authority: create one, or issue a certificate by hand.
    #[command(subcommand)]
    Ca(crate::identity::CaCommand),
}

#[derive(Subcommand, Debug)]
enum PolicyAction {
    /// Add or replace the PeerAuthentication objects in a YAML file (`-` for stdin).
    Apply {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a PeerAuthentication added with `apply` (NAMESPACE/NAME).
    Delete {
        object: String,
        #[command(flatten)]
        target: Target,
    },
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("label {s:?} is not key=value")),
    }
}

pub async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run(config) => {
            init_tracing();
            crate::run::run(*config).await
        }
        Command::Enroll {
            netns,
            namespace,
            name,
            service_account,
            labels,
            target,
        } => {
            let spec = PodSpec {
                namespace,
                name,
                service_account,
                labels: labels.into_iter().collect(),
                netns,
            };
            let reply = client::call(&target.socket, &Request::Enroll(spec)).await?;
            let pod: PodInfo = serde_json::from_value(reply["pod"].clone())?;
            let outcome = reply["outcome"].as_str().unwrap_or("enrolled");
            let verb = if outcome == "unchanged" {
                "already enrolled"
            } else {
                "enrolled"
            };
            println!(
                "{}/{} {verb} ({}, ips {})",
                pod.namespace,
                pod.name,
                pod.identity,
                join_ips(&pod)
            );
            Ok(())
        }
        Command::Unenroll {
            namespace,
            name,
            target,
        } => {
            let key = PodKey { namespace, name };
            client::call(&target.socket, &Request::Unenroll(key.clone())).await?;
            println!("{key} unenrolled");
            Ok(())
        }
        Command::Ca(cmd) => crate::identity::ca_cli(cmd),
        Command::Policy {
            action,
            json,
            target,
        } => policy(action, json, target).await,
        Command::Pods { json, target } => {
            let reply = client::call(&target.socket, &Request::Pods).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print_pods(&serde_json::from_value::<Vec<PodInfo>>(reply)?);
            }
            Ok(())
        }
        Command::Config { target } => {
            let reply = client::call(&target.socket, &Request::Config).await?;
            println!("{}", serde_json::to_string_pretty(&reply)?);
            Ok(())
        }
        Command::Connections { json, target } => {
            let reply = client::call(&target.socket, &Request::Connections).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print_connections(&serde_json::from_value(reply)?);
            }
            Ok(())
        }
    }
}

async fn policy(action: Option<PolicyAction>, json: bool, target: Target) -> Result<()> {
    match action {
        Some(PolicyAction::Apply { file, target }) => {
            let yaml = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
            };
            let reply = client::call(&target.socket, &Request::PolicyApply { yaml }).await?;
            for line in reply.as_array().into_iter().flatten() {
                println!("{}", line.as_str().unwrap_or_default());
            }
        }
        Some(PolicyAction::Delete { object, target }) => {
            let Some((namespace, name)) = object.split_once('/') else {
                anyhow::bail!("expected NAMESPACE/NAME, got {object:?}");
            };
            let request = Request::PolicyDelete {
                namespace: namespace.into(),
                name: name.into(),
            };
            let reply = client::call(&target.socket, &request).await?;
            println!("{}", reply.as_str().unwrap_or_default());
        }
        None => {
            let reply = client::call(&target.socket, &Request::Policy).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print_policy(&serde_json::from_value::<Vec<PolicyReport>>(reply)?);
            }
        }
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
