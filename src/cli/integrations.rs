//! `trailhub integrations ...` (through the running hub, or read-only on a free data dir) and
//! `trailhub connectors list|check|replay` (offline: definitions and fixtures)

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::{close, target, OutputFormat, RemoteArgs, Target};
use crate::config::Settings;
use crate::connectors::cursor::CursorState;
use crate::connectors::integrations::Integrations;
use crate::connectors::{definition, replay, Connector, Registry};
use crate::time::{format_micros, now_micros};

#[derive(Subcommand, Debug)]
pub enum IntegrationsCommand {
    /// Add an integration (needs a running hub)
    Add {
        #[arg(long)]
        name: String,
        /// Connector name (see `trailhub connectors list`)
        #[arg(long)]
        connector: String,
        /// A config field, repeatable: --set org=octo-corp --set base_url=https://...
        /// (`--config` names the hub's own config file)
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A credential, repeatable: KEY=VALUE, KEY=@file (read from a file) or KEY=env:VAR
        #[arg(long = "credential", value_name = "KEY=VALUE")]
        credentials: Vec<crate::config::Secret>,
        /// Cron schedule, 5 fields or 6 with seconds first [default: the connector's]
        #[arg(long)]
        schedule: Option<String>,
        /// ISO 8601 duration to backfill on first contact, e.g. P30D [default: the connector's]
        #[arg(long)]
        backfill: Option<String>,
        /// Requests per minute, to override the connector's pace (e.g. a higher vendor tier)
        #[arg(long)]
        requests_per_minute: Option<u32>,
        /// Create it paused
        #[arg(long)]
        paused: bool,
        /// Allow plain http for URL fields on a loopback host (127.0.0.0/8, ::1, localhost):
        /// test doubles and local proxies only
        #[arg(long)]
        allow_insecure_http: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Change an integration (needs a running hub). Changing the host of a URL field
    /// (base_url, ...) needs every credential again in the same command
    Update {
        id: String,
        /// A config field to set, repeatable: --set base_url=https://...
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A config field to remove (back to the connector's default), repeatable
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
        /// A credential, repeatable: KEY=VALUE, KEY=@file or KEY=env:VAR
        #[arg(long = "credential", value_name = "KEY=VALUE")]
        credentials: Vec<String>,
        /// Cron schedule, 5 fields or 6 with seconds first
        #[arg(long)]
        schedule: Option<String>,
        /// Pause (true) or resume (false)
        #[arg(long)]
        paused: Option<bool>,
        /// Allow (true) or refuse (false) plain http to loopback hosts
        #[arg(long)]
        allow_insecure_http: Option<bool>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List integrations with their state
    List {
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show one integration (settings, status, cursor; never credentials)
    Show {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Poll now, outside the schedule (needs a running hub)
    Poll {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Remove an integration: collection stops, its events stay (needs a running hub)
    Remove {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConnectorsCommand {
    /// List the built-in connectors
    List,
    /// Validate a definition file, or every built-in one
    Check {
        /// A connector definition (TOML); without it, the built-in ones
        file: Option<PathBuf>,
    },
    /// Run a recorded response body through a connector and print the normalised events (NDJSON)
    Replay {
        /// A built-in connector name or a definition file
        connector: String,
        /// A response body, e.g. fixtures/okta/logs/page.json
        fixture: PathBuf,
    },
}

fn pairs(flag: &str, items: &[String], read_values: bool) -> anyhow::Result<Map<String, Value>> {
    let mut map = Map::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            if read_values {
                // a credential without its key is probably the secret itself: do not echo it
                anyhow::bail!("--{flag}: expected KEY=VALUE (the value is not shown)");
            }
            anyhow::bail!("--{flag} {item:?}: expected KEY=VALUE");
        };
        let value = if !read_values {
            v.to_string()
        } else if let Some(path) = v.strip_prefix('@') {
            std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--{flag} {k}: cannot read {path}: {e}"))?
                .trim_end_matches(['\n', '\r'])
                .to_string()
        } else if let Some(var) = v.strip_prefix("env:") {
            std::env::var(var).map_err(|_| {
                anyhow::anyhow!("--{flag} {k}: environment variable {var} is not set")
            })?
        } else {
            v.to_string()
        };
        map.insert(k.trim().to_string(), Value::String(value));
    }
    Ok(map)
}

fn needs_hub(what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{what} needs the running hub (it schedules the polls): start `trailhub serve`, or pass --hub"
    )
}

fn print_list(list: &[Value]) {
    println!(
        "{:<21}  {:<20}  {:<9}  {:<11}  {:>8}  {:<27}  LAST ERROR",
        "ID", "NAME", "CONNECTOR", "STATE", "EVENTS", "LAST SUCCESS"
    );
    for i in list {
        let s = |k: &str| i[k].as_str().unwrap_or("-").to_string();
        println!(
            "{:<21}  {:<20}  {:<9}  {:<11}  {:>8}  {:<27}  {}",
            s("id"),
            s("name"),
            s("connector"),
            s("state"),
            i["events_ingested"].as_u64().unwrap_or(0),
            s("last_success_at"),
            i["last_error"].as_str().unwrap_or("")
        );
    }
}

/// The integration object as the API shows it, from a data dir (no live scheduler status).
fn local_object(
    integrations: &Integrations,
    store: &crate::store::Store,
    r: &crate::connectors::integrations::IntegrationRecord,
) -> anyhow::Result<Value> {
    let status = integrations.status(&r.id)?;
    let cursor = CursorState::decode(store.cursor(&r.id)?.as_deref());
    Ok(json!({
        "id": r.id, "name": r.name, "connector": r.connector, "config": r.config,
        "credentials": r.credential_names, "schedule": r.schedule, "backfill": r.backfill,
        "paused": r.paused,
        "allow_insecure_http": r.allow_insecure_http,
        "state": status.state(r.paused),
        "cursor": cursor.summary(),
        "last_poll_at": status.last_poll_at.map(format_micros),
        "last_success_at": status.last_success_at.map(format_micros),
        "last_error": status.last_error,
        "events_ingested": store.integration_count(&r.id)?,
        "events_purged": store.purged_count(&r.id)?,
        "lag_seconds": status.lag_seconds(now_micros()),
    }))
}

pub async fn integrations(
    settings: &Settings,
    command: &IntegrationsCommand,
) -> anyhow::Result<ExitCode> {
    match command {
        IntegrationsCommand::Add {
            name,
            connector,
            set,
            credentials,
            schedule,
            backfill,
            requests_per_minute,
            paused,
            allow_insecure_http,
            remote,
        } => {
            let body = json!({
                "name": name,
                "connector": connector,
                "config": pairs("set", set, false)?,
                "credentials": pairs(
                    "credential",
                    &credentials
                        .iter()
                        .map(|c| c.expose().to_string())
                        .collect::<Vec<_>>(),
                    true,
                )?,
                "schedule": schedule,
                "backfill": backfill,
                "requests_per_minute": requests_per_minute,
                "paused": paused,
                "allow_insecure_http": allow_insecure_http,
            });
            match target(settings, remote)? {
                Target::Remote(client) => {
                    let v = client.post_json("/api/v1/integrations", &body).await?;
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Target::Local(store) => {
                    close(store)?;
                    return Err(needs_hub("adding an integration"));
                }
            }
        }
        IntegrationsCommand::Update {
            id,
            set,
            unset,
            credentials,
            schedule,
            paused,
            allow_insecure_http,
            remote,
        } => {
            let mut patch = Map::new();
            let mut config = pairs("set", set, false)?;
            for key in unset {
                config.insert(key.trim().to_string(), Value::Null);
            }
            if !config.is_empty() {
                patch.insert("config".into(), Value::Object(config));
            }
            if !credentials.is_empty() {
                patch.insert(
                    "credentials".into(),
                    Value::Object(pairs("credential", credentials, true)?),
                );
            }
            if let Some(s) = schedule {
                patch.insert("schedule".into(), json!(s));
            }
            if let Some(p) = paused {
                patch.insert("paused".into(), json!(p));
            }
            if let Some(a) = allow_insecure_http {
                patch.insert("allow_insecure_http".into(), json!(a));
            }
            if patch.is_empty() {
                anyhow::bail!("nothing to change: give --set, --unset, --credential, --schedule, --paused or --allow-insecure-http");
            }
            match target(settings, remote)? {
                Target::Remote(client) => {
                    let v = client
                        .patch_json(&format!("/api/v1/integrations/{id}"), &Value::Object(patch))
                        .await?;
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
                Target::Local(store) => {
                    close(store)?;
                    return Err(needs_hub("changing an integration"));
                }
            }
        }
        IntegrationsCommand::List { format, remote } => {
            let list: Vec<Value> = match target(settings, remote)? {
                Target::Remote(client) => client.get_json("/api/v1/integrations", &[]).await?
                    ["integrations"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                Target::Local(store) => {
                    let integrations = Integrations::read_only(
                        store.integrations_tree().clone(),
                        Registry::builtin()?,
                    );
                    let list = integrations
                        .list()?
                        .iter()
                        .map(|r| local_object(&integrations, &store, r))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    close(store)?;
                    list
                }
            };
            match format {
                OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&list)?),
                OutputFormat::Table => print_list(&list),
            }
        }
        IntegrationsCommand::Show { id, remote } => {
            let v = match target(settings, remote)? {
                Target::Remote(client) => {
                    client
                        .get_json(&format!("/api/v1/integrations/{id}"), &[])
                        .await?
                }
                Target::Local(store) => {
                    let integrations = Integrations::read_only(
                        store.integrations_tree().clone(),
                        Registry::builtin()?,
                    );
                    let v = integrations
                        .get(id)
                        .map_err(anyhow::Error::from)
                        .and_then(|r| local_object(&integrations, &store, &r));
                    close(store)?;
                    v?
                }
            };
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        IntegrationsCommand::Poll { id, remote } => match target(settings, remote)? {
            Target::Remote(client) => {
                client
                    .post_json(&format!("/api/v1/integrations/{id}/poll"), &json!({}))
                    .await?;
                println!("poll of {id} requested");
            }
            Target::Local(store) => {
                close(store)?;
                return Err(needs_hub("polling"));
            }
        },
        IntegrationsCommand::Remove { id, remote } => match target(settings, remote)? {
            Target::Remote(client) => {
                client.delete(&format!("/api/v1/integrations/{id}")).await?;
                println!("integration {id} removed; its events are kept");
            }
            Target::Local(store) => {
                close(store)?;
                return Err(needs_hub("removing an integration"));
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn load_connector(name_or_file: &str) -> anyhow::Result<Connector> {
    if name_or_file.ends_with(".toml") || std::path::Path::new(name_or_file).exists() {
        let text = std::fs::read_to_string(name_or_file)
            .map_err(|e| anyhow::anyhow!("cannot read {name_or_file}: {e}"))?;
        return Ok(definition::parse(name_or_file, &text)?);
    }
    Ok((*Registry::builtin()?.get(name_or_file)?).clone())
}

pub fn connectors(command: &ConnectorsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConnectorsCommand::List => {
            for c in Registry::builtin()?.all() {
                match &c.poll {
                    Some(poll) => println!(
                        "{:<8}  {}  (schedule {})",
                        c.name, c.title, poll.default_schedule
                    ),
                    None => println!("{:<8}  {}  (push-only)", c.name, c.title),
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConnectorsCommand::Check { file } => {
            let files: Vec<(String, String)> = match file {
                Some(path) => vec![(
                    path.display().to_string(),
                    std::fs::read_to_string(path)
                        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
                )],
                None => crate::connectors::BUILTIN
                    .iter()
                    .map(|(f, t)| (f.to_string(), t.to_string()))
                    .collect(),
            };
            let mut failed = false;
            for (name, text) in files {
                match definition::parse(&name, &text) {
                    Ok(c) => println!("ok: {name} ({}: {})", c.name, c.title),
                    Err(e) => {
                        failed = true;
                        eprintln!("error: {e}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        ConnectorsCommand::Replay { connector, fixture } => {
            let c = load_connector(connector)?;
            let body = std::fs::read_to_string(fixture)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", fixture.display()))?;
            let mut bad = 0;
            for result in replay(&c, &body)? {
                match result {
                    Ok(event) => println!("{}", serde_json::to_string(&event)?),
                    Err(e) => {
                        bad += 1;
                        eprintln!("skipped: {e}");
                    }
                }
            }
            Ok(if bad > 0 {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}
