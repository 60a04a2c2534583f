//! `trailhub exports` and `trailhub reports`: export jobs, reports and report schedules, through
//! the running hub (its runner does the work; every request is recorded in its log)

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::RemoteArgs;
use crate::config::Settings;

/// The range and timeline filters of a job, as flags.
#[derive(Args, Debug, Clone)]
pub struct RangeArgs {
    /// Start of the range: RFC 3339, or a duration ago such as 7d (required)
    #[arg(long)]
    since: String,
    /// End of the range [default: now]
    #[arg(long)]
    until: Option<String>,
    /// A timeline filter, repeatable: --filter actor=alice --filter outcome=failure (integration,
    /// connector, actor, action, category, outcome, event_type, target, ip, q)
    #[arg(long = "filter", value_name = "NAME=VALUE")]
    filters: Vec<String>,
}

impl RangeArgs {
    fn body(&self) -> anyhow::Result<Value> {
        let mut filter = serde_json::Map::new();
        for f in &self.filters {
            let (k, v) = f
                .split_once('=')
                .with_context(|| format!("{f:?}: expected NAME=VALUE"))?;
            filter.insert(k.to_string(), json!(v));
        }
        Ok(json!({"since": self.since, "until": self.until, "filter": filter}))
    }
}

#[derive(Subcommand, Debug)]
pub enum ExportsCommand {
    /// Queue an export job
    Create {
        /// A name to find it by
        #[arg(long)]
        name: Option<String>,
        /// csv, json or ndjson
        #[arg(long, default_value = "ndjson")]
        format: String,
        #[command(flatten)]
        range: RangeArgs,
        /// Wait until it completes (or fails), then download it to this file
        #[arg(long, value_name = "FILE")]
        wait_download: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// List export jobs, newest first
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Show one export job with its progress
    Show {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Download a completed export to a file (checked against its SHA-256)
    Download {
        id: String,
        /// Where to write it
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Cancel a queued or running export, or delete a finished one and its file
    Delete {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

#[derive(Subcommand, Debug)]
pub enum ReportsCommand {
    /// Queue a report: user_access, data_changes, security_events, export_activity,
    /// admin_activity or system_access
    Create {
        kind: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        range: RangeArgs,
        /// Wait until it completes, then download its PDF (or CSV, by the file's extension)
        #[arg(long, value_name = "FILE")]
        wait_download: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// The report history, newest first, and the kinds
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    Show {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Download a completed report as PDF or CSV
    Download {
        id: String,
        #[arg(long, default_value = "pdf")]
        format: String,
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    Delete {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Report schedules
    Schedules {
        #[command(subcommand)]
        command: SchedulesCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum SchedulesCommand {
    List {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Make a report on a cron, over the range that ends at each run
    Add {
        kind: String,
        /// Cron: 5 fields (min hour dom month dow) or 6 (seconds first)
        #[arg(long)]
        cron: String,
        /// The range each report covers, ending at the run: ISO 8601 duration such as P7D
        #[arg(long)]
        range: String,
        /// IANA time zone the cron is read in [default: UTC]
        #[arg(long)]
        time_zone: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// A timeline filter, repeatable
        #[arg(long = "filter", value_name = "NAME=VALUE")]
        filters: Vec<String>,
        /// A notification channel id to deliver each report to, repeatable
        #[arg(long = "channel")]
        channels: Vec<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    Remove {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

async fn client(settings: &Settings, remote: &RemoteArgs) -> anyhow::Result<super::remote::Client> {
    super::hub_client(settings, remote, "its runner makes exports and reports").await
}

/// Answers the created job, or an error for a refusal.
async fn create(client: &super::remote::Client, path: &str, body: &Value) -> anyhow::Result<Value> {
    let job = client.post_json(path, body).await?;
    if job["id"].as_str().is_none() {
        let message = job["error"]["message"].as_str().unwrap_or("no message");
        anyhow::bail!("the hub refused: {message}");
    }
    Ok(job)
}

/// Polls a job until it is finished; answers it.
async fn wait(client: &super::remote::Client, path: &str) -> anyhow::Result<Value> {
    loop {
        let job = client.get_json(path, &[]).await?;
        match job["state"].as_str() {
            Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(500)).await,
            _ => return Ok(job),
        }
    }
}

async fn download(
    client: &super::remote::Client,
    path: &str,
    format: Option<&str>,
    output: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let query: Vec<(String, String)> = format
        .map(|f| vec![("format".to_string(), f.to_string())])
        .unwrap_or_default();
    let (bytes, sha256) = client
        .download(&format!("{path}/download"), &query, output)
        .await?;
    if let Some(expected) = &sha256 {
        let file = std::fs::File::open(output)?;
        let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
        std::io::copy(&mut std::io::BufReader::new(file), &mut hasher)?;
        let got = hex::encode(sha2::Digest::finalize(hasher));
        if &got != expected {
            anyhow::bail!(
                "{} does not match the hub's SHA-256 ({got} != {expected}): the download was damaged",
                output.display()
            );
        }
    }
    println!(
        "{bytes} bytes written to {} (sha256 {})",
        output.display(),
        sha256.as_deref().unwrap_or("not given")
    );
    Ok(ExitCode::SUCCESS)
}

async fn wait_and_download(
    client: &super::remote::Client,
    path: &str,
    format: Option<&str>,
    output: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let job = wait(client, path).await?;
    if job["state"] != "completed" {
        println!("{}", serde_json::to_string_pretty(&job)?);
        anyhow::bail!(
            "the job ended {}",
            job["state"].as_str().unwrap_or("in an unknown state")
        );
    }
    download(client, path, format, output).await
}

pub async fn exports(settings: &Settings, command: &ExportsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ExportsCommand::Create {
            name,
            format,
            range,
            wait_download,
            remote,
        } => {
            let client = client(settings, remote).await?;
            let mut body = range.body()?;
            body["name"] = json!(name);
            body["format"] = json!(format);
            let job = create(&client, "/api/v1/exports", &body).await?;
            match wait_download {
                None => super::print_json(&job),
                Some(file) => {
                    let id = job["id"].as_str().unwrap_or_default();
                    eprintln!("export job {id} queued");
                    wait_and_download(&client, &format!("/api/v1/exports/{id}"), None, file).await
                }
            }
        }
        ExportsCommand::List { limit, remote } => super::print_json(
            &client(settings, remote)
                .await?
                .get_json("/api/v1/exports", &[("limit".into(), limit.to_string())])
                .await?,
        ),
        ExportsCommand::Show { id, remote } => super::print_json(
            &client(settings, remote)
                .await?
                .get_json(&format!("/api/v1/exports/{id}"), &[])
                .await?,
        ),
        ExportsCommand::Download { id, output, remote } => {
            let client = client(settings, remote).await?;
            download(&client, &format!("/api/v1/exports/{id}"), None, output).await
        }
        ExportsCommand::Delete { id, remote } => {
            client(settings, remote)
                .await?
                .delete(&format!("/api/v1/exports/{id}"))
                .await?;
            println!("export job {id} deleted");
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub async fn reports(settings: &Settings, command: &ReportsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReportsCommand::Create {
            kind,
            name,
            range,
            wait_download,
            remote,
        } => {
            let client = client(settings, remote).await?;
            let mut body = range.body()?;
            body["name"] = json!(name);
            body["kind"] = json!(kind);
            let job = create(&client, "/api/v1/reports", &body).await?;
            match wait_download {
                None => super::print_json(&job),
                Some(file) => {
                    let id = job["id"].as_str().unwrap_or_default();
                    eprintln!("report {id} queued");
                    let format = match file.extension().and_then(|e| e.to_str()) {
                        Some("csv") => "csv",
                        _ => "pdf",
                    };
                    wait_and_download(
                        &client,
                        &format!("/api/v1/reports/{id}"),
                        Some(format),
                        file,
                    )
                    .await
                }
            }
        }
        ReportsCommand::List { limit, remote } => super::print_json(
            &client(settings, remote)
                .await?
                .get_json("/api/v1/reports", &[("limit".into(), limit.to_string())])
                .await?,
        ),
        ReportsCommand::Show { id, remote } => super::print_json(
            &client(settings, remote)
                .await?
                .get_json(&format!("/api/v1/reports/{id}"), &[])
                .await?,
        ),
        ReportsCommand::Download {
            id,
            format,
            output,
            remote,
        } => {
            let client = client(settings, remote).await?;
            download(
                &client,
                &format!("/api/v1/reports/{id}"),
                Some(format),
                output,
            )
            .await
        }
        ReportsCommand::Delete { id, remote } => {
            client(settings, remote)
                .await?
                .delete(&format!("/api/v1/reports/{id}"))
                .await?;
            println!("report {id} deleted");
            Ok(ExitCode::SUCCESS)
        }
        ReportsCommand::Schedules { command } => schedules(settings, command).await,
    }
}

async fn schedules(settings: &Settings, command: &SchedulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        SchedulesCommand::List { remote } => super::print_json(
            &client(settings, remote)
                .await?
                .get_json("/api/v1/reports/schedules", &[])
                .await?,
        ),
        SchedulesCommand::Add {
            kind,
            cron,
            range,
            time_zone,
            name,
            filters,
            channels,
            remote,
        } => {
            let mut filter = serde_json::Map::new();
            for f in filters {
                let (k, v) = f
                    .split_once('=')
                    .with_context(|| format!("{f:?}: expected NAME=VALUE"))?;
                filter.insert(k.to_string(), json!(v));
            }
            let body = json!({"kind": kind, "cron": cron, "range": range, "time_zone": time_zone,
                "name": name, "filter": filter, "channels": channels});
            let answer = client(settings, remote)
                .await?
                .post_json("/api/v1/reports/schedules", &body)
                .await?;
            if answer["id"].as_str().is_none() {
                let message = answer["error"]["message"].as_str().unwrap_or("no message");
                anyhow::bail!("the hub refused: {message}");
            }
            super::print_json(&answer)
        }
        SchedulesCommand::Remove { id, remote } => {
            client(settings, remote)
                .await?
                .delete(&format!("/api/v1/reports/schedules/{id}"))
                .await?;
            println!("report schedule {id} removed");
            Ok(ExitCode::SUCCESS)
        }
    }
}
