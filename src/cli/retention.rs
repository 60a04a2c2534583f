//! `trailhub retention`, `trailhub holds`, `trailhub archive` and `trailhub storage`: the
//! retention policy, legal holds, the archive and the storage view, through the running hub
//! (purges, holds and restores are recorded in its log and must not race its retention job).

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use serde_json::{json, Value};

use super::RemoteArgs;
use crate::config::Settings;

#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    /// Show the policy, the last run and the next
    Show {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Change the policy: only what is given changes
    Set {
        /// Days to keep a category, repeatable: --category system=90, or =forever
        #[arg(long = "category", value_name = "CATEGORY=DAYS")]
        categories: Vec<String>,
        /// Days to keep an integration's events (all categories), repeatable:
        /// --integration okta=30, =forever, or =default to drop the rule
        #[arg(long = "integration", value_name = "ID=DAYS")]
        integrations: Vec<String>,
        /// Days for categories without a rule (or `forever`)
        #[arg(long)]
        default_days: Option<String>,
        /// Purge at all (true) or not (false)
        #[arg(long)]
        enabled: Option<bool>,
        /// Archive what is purged first, when an archive is configured
        #[arg(long)]
        archive: Option<bool>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Purge what expired now (with --dry-run, only count it)
    Run {
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum HoldsCommand {
    /// List the legal holds
    List {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Place a legal hold: nothing it covers is purged until it is lifted
    Add {
        /// Why (a case number, a request)
        #[arg(long)]
        reason: String,
        /// Hold this integration's events
        #[arg(long)]
        integration: Option<String>,
        /// Hold the events matching this timeline query, e.g. "actor=alice&category=authentication"
        #[arg(long)]
        filter: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Lift a legal hold
    Remove {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ArchiveCommand {
    /// List the archived segments
    List {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Put an archived segment's events back into the timeline, after checking every proof
    Restore {
        /// A segment file (.ndjson.zst or .ndjson.zst.enc)
        #[arg(required_unless_present = "object")]
        file: Option<std::path::PathBuf>,
        /// A segment in the configured archive, by name (see `archive list`)
        #[arg(long, conflicts_with = "file")]
        object: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

async fn client(settings: &Settings, remote: &RemoteArgs) -> anyhow::Result<super::remote::Client> {
    super::hub_client(
        settings,
        remote,
        "retention is its job, and every change is recorded in its log",
    )
    .await
}

/// `NAME=DAYS`, `NAME=forever`; `None` for `NAME=default` when `allow_default`.
fn days_rule(text: &str, allow_default: bool) -> anyhow::Result<(String, Option<Value>)> {
    let (name, days) = text
        .split_once('=')
        .with_context(|| format!("{text:?}: expected NAME=DAYS"))?;
    let value = match days {
        "forever" => Some(Value::Null),
        "default" if allow_default => None,
        d => Some(json!(d.parse::<u32>().with_context(|| format!(
            "{text:?}: days must be a whole number or `forever`"
        ))?)),
    };
    Ok((name.to_string(), value))
}

pub async fn retention(
    settings: &Settings,
    command: &RetentionCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        RetentionCommand::Show { remote } => super::print_json(
            &client(settings, remote)
                .await?
                .get_json("/api/v1/retention", &[])
                .await?,
        ),
        RetentionCommand::Set {
            categories,
            integrations,
            default_days,
            enabled,
            archive,
            remote,
        } => {
            let client = client(settings, remote).await?;
            let mut policy = client.get_json("/api/v1/retention", &[]).await?["policy"].clone();
            for c in categories {
                let (name, days) = days_rule(c, false)?;
                policy["categories"][name] = days.unwrap_or(Value::Null);
            }
            for i in integrations {
                let (name, days) = days_rule(i, true)?;
                match days {
                    Some(d) => policy["integrations"][name] = d,
                    None => {
                        if let Some(map) = policy["integrations"].as_object_mut() {
                            map.remove(&name);
                        }
                    }
                }
            }
            if let Some(d) = default_days {
                let (_, days) = days_rule(&format!("default={d}"), false)?;
                policy["default_days"] = days.unwrap_or(Value::Null);
            }
            if let Some(e) = enabled {
                policy["enabled"] = json!(e);
            }
            if let Some(a) = archive {
                policy["archive"] = json!(a);
            }
            super::print_json(&client.put_json("/api/v1/retention", &policy).await?)
        }
        RetentionCommand::Run { dry_run, remote } => {
            let path = if *dry_run {
                "/api/v1/retention/run?dry_run=true"
            } else {
                "/api/v1/retention/run"
            };
            super::print_json(
                &client(settings, remote)
                    .await?
                    .post_json(path, &json!({}))
                    .await?,
            )
        }
    }
}

pub async fn holds(settings: &Settings, command: &HoldsCommand) -> anyhow::Result<ExitCode> {
    match command {
        HoldsCommand::List { remote } => super::print_json(
            &client(settings, remote)
                .await?
                .get_json("/api/v1/legal-holds", &[])
                .await?,
        ),
        HoldsCommand::Add {
            reason,
            integration,
            filter,
            remote,
        } => {
            let body = json!({"reason": reason, "integration": integration, "filter": filter});
            super::print_json(
                &client(settings, remote)
                    .await?
                    .post_json("/api/v1/legal-holds", &body)
                    .await?,
            )
        }
        HoldsCommand::Remove { id, remote } => {
            client(settings, remote)
                .await?
                .delete(&format!("/api/v1/legal-holds/{id}"))
                .await?;
            println!("legal hold {id} lifted");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn archive(settings: &Settings, command: &ArchiveCommand) -> anyhow::Result<ExitCode> {
    match command {
        ArchiveCommand::List { remote } => super::print_json(
            &client(settings, remote)
                .await?
                .get_json("/api/v1/archive", &[])
                .await?,
        ),
        ArchiveCommand::Restore {
            file,
            object,
            remote,
        } => {
            let client = client(settings, remote).await?;
            let answer = match (file, object) {
                (_, Some(name)) => {
                    let query = serde_urlencoded::to_string([("object", name)])?;
                    client
                        .post_bytes(&format!("/api/v1/archive/restore?{query}"), Vec::new())
                        .await?
                }
                (Some(path), None) => {
                    let size = std::fs::metadata(path)
                        .with_context(|| format!("cannot read {}", path.display()))?
                        .len();
                    let limit = crate::api::MAX_RESTORE_UPLOAD as u64;
                    if size > limit {
                        anyhow::bail!(
                            "{} is {size} bytes, more than a restore takes ({limit}); restore it from the archive with --object",
                            path.display()
                        );
                    }
                    let bytes = std::fs::read(path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    client.post_bytes("/api/v1/archive/restore", bytes).await?
                }
                (None, None) => anyhow::bail!("give a segment file or --object NAME"),
            };
            super::print_json(&answer)
        }
    }
}

pub async fn storage(settings: &Settings, remote: &RemoteArgs) -> anyhow::Result<ExitCode> {
    super::print_json(
        &client(settings, remote)
            .await?
            .get_json("/api/v1/storage", &[])
            .await?,
    )
}
