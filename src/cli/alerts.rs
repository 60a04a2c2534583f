//! `trailhub alerts`: alert rules and their firings, through the running hub (it evaluates the
//! rules as events are stored, and every change is recorded in its log)

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{json, Value};

use super::RemoteArgs;
use crate::config::Settings;

/// Largest rule file read (the hub takes 64 KiB).
const MAX_RULE_FILE: u64 = 64 * 1024;

#[derive(Subcommand, Debug)]
pub enum AlertsCommand {
    /// The rules, oldest first
    Rules {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// One rule as JSON
    Rule {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Add a rule from a JSON file ("-": standard input), as `POST /api/v1/alerts/rules` takes it
    Add {
        file: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Change a rule: the JSON names only what changes (a change starts a new version)
    Update {
        id: String,
        file: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Turn a rule off or on without changing it otherwise
    Disable {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    Enable {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Delete a rule (its firings stay in the history)
    Remove {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Fire a rule now on an event (default: the newest matching one of the last 30 days) and
    /// deliver it to its channels, marked as a test
    Test {
        id: String,
        #[arg(long)]
        event: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// The firings, newest first
    History {
        /// Only this rule's
        #[arg(long)]
        rule: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// One firing with each delivery's status
    Show {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

async fn client(settings: &Settings, remote: &RemoteArgs) -> anyhow::Result<super::remote::Client> {
    super::hub_client(
        settings,
        remote,
        "it evaluates the rules, and every change is recorded in its log",
    )
    .await
}

/// A rule body from a file or standard input, bounded and checked to be JSON.
fn rule_body(file: &PathBuf) -> anyhow::Result<Value> {
    let mut text = String::new();
    let read = if file.as_os_str() == "-" {
        std::io::stdin()
            .take(MAX_RULE_FILE + 1)
            .read_to_string(&mut text)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(MAX_RULE_FILE + 1).read_to_string(&mut text))
    };
    read.map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if text.len() as u64 > MAX_RULE_FILE {
        anyhow::bail!(
            "{}: a rule is at most {MAX_RULE_FILE} bytes",
            file.display()
        );
    }
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", file.display()))
}

/// A 422 comes back as a body (ingest's partial answers are 422s); here it is a refusal.
fn refused(v: Value) -> anyhow::Result<Value> {
    match v["error"]["message"].as_str() {
        Some(message) => anyhow::bail!("hub refused: {message}"),
        None => Ok(v),
    }
}

fn condition_text(c: &Value) -> String {
    match c["type"].as_str() {
        Some("count") => format!("count >= {} in {} s", c["threshold"], c["window_secs"]),
        Some("value") => format!(
            "{} {} {}",
            c["field"].as_str().unwrap_or("?"),
            c["op"].as_str().unwrap_or("?"),
            c["value"]
        ),
        _ => "each event".to_string(),
    }
}

fn print_rules(rules: &[Value]) {
    if rules.is_empty() {
        println!("no alert rules");
        return;
    }
    println!(
        "{:<22}  {:<8}  {:<3}  {:<30}  {:<26}  FILTER",
        "ID", "PRIORITY", "ON", "NAME", "CONDITION"
    );
    for r in rules {
        let filter = r["filter"]
            .as_object()
            .map(|f| {
                f.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        println!(
            "{:<22}  {:<8}  {:<3}  {:<30}  {:<26}  {}",
            r["id"].as_str().unwrap_or("?"),
            r["priority"].as_str().unwrap_or("?"),
            if r["enabled"].as_bool().unwrap_or(false) {
                "yes"
            } else {
                "no"
            },
            r["name"].as_str().unwrap_or("?"),
            condition_text(&r["condition"]),
            filter
        );
    }
}

fn print_firings(firings: &[Value]) {
    if firings.is_empty() {
        println!("no firings");
        return;
    }
    for f in firings {
        println!(
            "{}  {}  {:<8}  {}{}  ×{}  {}",
            f["fired_at"].as_str().unwrap_or("?"),
            f["id"].as_str().unwrap_or("?"),
            f["priority"].as_str().unwrap_or("?"),
            f["rule_name"].as_str().unwrap_or("?"),
            if f["test"].as_bool().unwrap_or(false) {
                " (test)"
            } else {
                ""
            },
            f["count"],
            f["message"].as_str().unwrap_or("")
        );
    }
}

pub async fn alerts(settings: &Settings, command: &AlertsCommand) -> anyhow::Result<ExitCode> {
    match command {
        AlertsCommand::Rules { remote } => {
            let v = client(settings, remote)
                .await?
                .get_json("/api/v1/alerts/rules", &[])
                .await?;
            print_rules(v["rules"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Rule { id, remote } => {
            let v = client(settings, remote)
                .await?
                .get_json(&format!("/api/v1/alerts/rules/{id}"), &[])
                .await?;
            super::print_json(&v)
        }
        AlertsCommand::Add { file, remote } => {
            let body = rule_body(file)?;
            let v = client(settings, remote)
                .await?
                .post_json("/api/v1/alerts/rules", &body)
                .await
                .and_then(refused)?;
            super::print_json(&v)
        }
        AlertsCommand::Update { id, file, remote } => {
            let body = rule_body(file)?;
            let v = client(settings, remote)
                .await?
                .patch_json(&format!("/api/v1/alerts/rules/{id}"), &body)
                .await?;
            super::print_json(&v)
        }
        AlertsCommand::Disable { id, remote } | AlertsCommand::Enable { id, remote } => {
            let enabled = matches!(command, AlertsCommand::Enable { .. });
            let v = client(settings, remote)
                .await?
                .patch_json(
                    &format!("/api/v1/alerts/rules/{id}"),
                    &json!({ "enabled": enabled }),
                )
                .await?;
            println!(
                "rule {id} {} (version {})",
                if enabled { "enabled" } else { "disabled" },
                v["version"]
            );
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Remove { id, remote } => {
            client(settings, remote)
                .await?
                .delete(&format!("/api/v1/alerts/rules/{id}"))
                .await?;
            println!("rule {id} deleted");
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Test { id, event, remote } => {
            let body = match event {
                Some(e) => json!({ "event_id": e }),
                None => json!({}),
            };
            let v = client(settings, remote)
                .await?
                .post_json(&format!("/api/v1/alerts/rules/{id}/test"), &body)
                .await
                .and_then(refused)?;
            super::print_json(&v)
        }
        AlertsCommand::History {
            rule,
            limit,
            remote,
        } => {
            let mut query = vec![("limit".to_string(), limit.to_string())];
            if let Some(r) = rule {
                query.push(("rule".to_string(), r.clone()));
            }
            let v = client(settings, remote)
                .await?
                .get_json("/api/v1/alerts", &query)
                .await?;
            print_firings(v["alerts"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            if let Some(next) = v["next_cursor"].as_str() {
                println!("(more: the API's cursor is {next})");
            }
            Ok(ExitCode::SUCCESS)
        }
        AlertsCommand::Show { id, remote } => {
            let v = client(settings, remote)
                .await?
                .get_json(&format!("/api/v1/alerts/{id}"), &[])
                .await?;
            super::print_json(&v)
        }
    }
}
