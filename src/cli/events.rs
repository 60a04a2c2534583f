//! `trailhub events` and `trailhub ingest`: reading the timeline and storing events, through
//! the running hub or on the data dir directly, with the same parameters and report as the API.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{close, target, OutputFormat, RemoteArgs, Target};
use crate::config::Settings;
use crate::time::now_micros;

#[derive(Args, Debug)]
pub(super) struct EventsArgs {
    /// RFC 3339 time or a duration ago (15m, 1h, 7d)
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    integration: Option<String>,
    #[arg(long)]
    connector: Option<String>,
    /// Actor id, name or email
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    action: Option<String>,
    #[arg(long)]
    category: Option<String>,
    #[arg(long)]
    outcome: Option<String>,
    #[arg(long)]
    event_type: Option<String>,
    #[arg(long)]
    target: Option<String>,
    #[arg(long)]
    ip: Option<String>,
    /// Free-text search (every word must match)
    #[arg(short, long)]
    q: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Continue after this page cursor
    #[arg(long)]
    cursor: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Args, Debug)]
pub(super) struct IngestArgs {
    /// NDJSON file (one event per line) or a JSON array; `-` reads standard input
    file: PathBuf,
    #[command(flatten)]
    remote: RemoteArgs,
}

pub(super) async fn events(settings: &Settings, args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut push = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            pairs.push((k.to_string(), v.clone()));
        }
    };
    push("since", &args.since);
    push("until", &args.until);
    push("integration", &args.integration);
    push("connector", &args.connector);
    push("actor", &args.actor);
    push("action", &args.action);
    push("category", &args.category);
    push("outcome", &args.outcome);
    push("event_type", &args.event_type);
    push("target", &args.target);
    push("ip", &args.ip);
    push("q", &args.q);
    push("cursor", &args.cursor);
    pairs.push(("limit".into(), args.limit.to_string()));

    let page: serde_json::Value = match target(settings, &args.remote)? {
        Target::Remote(client) => client.get_json("/api/v1/events", &pairs).await?,
        Target::Local(store) => {
            let request = crate::timeline::parse(&pairs, &["limit", "cursor"], now_micros())?;
            let (events, next) =
                store.page(&request.filter, request.cursor()?, request.limit()?)?;
            let events: Vec<serde_json::Value> = events
                .iter()
                .map(|e| serde_json::from_slice(e))
                .collect::<Result<_, _>>()?;
            close(store)?;
            serde_json::json!({"events": events, "next_cursor": next.map(|p| p.encode())})
        }
    };
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&page)?),
        OutputFormat::Table => print_table(&page),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(page: &serde_json::Value) {
    let empty = Vec::new();
    let events = page["events"].as_array().unwrap_or(&empty);
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let rows: Vec<[String; 7]> = events
        .iter()
        .map(|e| {
            let actor = e["actor"]["email"]
                .as_str()
                .or(e["actor"]["name"].as_str())
                .unwrap_or(e["actor"]["id"].as_str().unwrap_or(""))
                .to_string();
            let target = e["targets"]
                .as_array()
                .and_then(|t| t.first())
                .map(|t| {
                    t["name"]
                        .as_str()
                        .unwrap_or(t["id"].as_str().unwrap_or(""))
                        .to_string()
                })
                .unwrap_or_default();
            [
                s(&e["time"]),
                s(&e["integration"]["name"]),
                actor,
                s(&e["action"]),
                s(&e["outcome"]),
                s(&e["event_type"]),
                target,
            ]
        })
        .collect();
    let header = [
        "TIME",
        "INTEGRATION",
        "ACTOR",
        "ACTION",
        "OUTCOME",
        "EVENT TYPE",
        "TARGET",
    ];
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count()).min(40);
        }
    }
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                format!(
                    "{:<w$}",
                    c.chars().take(40).collect::<String>(),
                    w = widths[i]
                )
            })
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    if let Some(next) = page["next_cursor"].as_str() {
        eprintln!("more: --cursor {next}");
    }
}

pub(super) async fn ingest(settings: &Settings, args: &IngestArgs) -> anyhow::Result<ExitCode> {
    let body = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        buf
    } else {
        std::fs::read(&args.file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?
    };
    let report: serde_json::Value = match target(settings, &args.remote)? {
        Target::Remote(client) => client.post_ndjson("/api/v1/events", body).await?,
        Target::Local(store) => {
            let report = crate::ingest::ingest_body(
                crate::pipeline::Pipeline::new(&store, None),
                body.into(),
                crate::ingest::BodyFormat::Sniff,
                crate::ingest::custom_integration(),
                now_micros(),
            )
            .await;
            close(store)?;
            serde_json::to_value(report?)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    let rejected = report["rejected_count"].as_u64().unwrap_or(0);
    Ok(if rejected > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
