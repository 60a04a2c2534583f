//! `trailhub summary` and `trailhub actor ID`: the dashboard summary and one actor's activity,
//! from the running hub (they read its rollups and index through the API).

use std::fmt::Write as _;
use std::process::ExitCode;

use clap::Args;
use serde_json::Value;

use super::{OutputFormat, RemoteArgs};
use crate::config::Settings;

#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// The time zone of "today", "this week" and "this month" (an IANA name) [default: UTC]
    #[arg(long)]
    tz: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Args, Debug)]
pub struct ActorArgs {
    /// The actor's id, name or email (as the timeline's `actor` filter matches it)
    id: String,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    #[command(flatten)]
    remote: RemoteArgs,
}

async fn client(settings: &Settings, remote: &RemoteArgs) -> anyhow::Result<super::remote::Client> {
    super::hub_client(
        settings,
        remote,
        "it reads the hub's rollups and integration status",
    )
    .await
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

fn counts(out: &mut String, title: &str, list: &Value) {
    let items = list.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title}:");
    for item in items {
        let _ = writeln!(
            out,
            "  {:>10}  {}",
            text(&item["events"]),
            text(&item["name"])
        );
    }
}

pub async fn summary(settings: &Settings, args: &SummaryArgs) -> anyhow::Result<ExitCode> {
    let query: Vec<(String, String)> = args
        .tz
        .iter()
        .map(|tz| ("tz".to_string(), tz.clone()))
        .collect();
    let v = client(settings, &args.remote)
        .await?
        .get_json("/api/v1/summary", &query)
        .await?;
    if args.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(out, "time zone {}", text(&v["time_zone"]));
    for (label, key) in [
        ("today", "today"),
        ("this week", "this_week"),
        ("this month", "this_month"),
    ] {
        let p = &v["events"][key];
        let _ = writeln!(
            out,
            "{label:>10}: {:>10} events (from {})",
            text(&p["count"]),
            text(&p["since"])
        );
    }
    let s = &v["storage"];
    let _ = writeln!(
        out,
        "storage: {} bytes on disk, {} events stored ({} purged)",
        text(&s["bytes_on_disk"]),
        text(&s["events_stored"]),
        text(&s["events_purged"])
    );
    let _ = writeln!(out, "categories (all time):");
    for c in v["categories"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let share = c["share"].as_f64().unwrap_or(0.0) * 100.0;
        let _ = writeln!(
            out,
            "  {:>10}  {share:5.1}%  {}",
            text(&c["events"]),
            text(&c["category"])
        );
    }
    let _ = writeln!(
        out,
        "last 7 days ({} to {}): {} events",
        text(&v["top_actors"]["since"]),
        text(&v["top_actors"]["until"]),
        text(&v["top_actors"]["total"])
    );
    counts(&mut out, "top actors", &v["top_actors"]["top"]);
    counts(&mut out, "top actions", &v["top_actions"]["top"]);
    let high = &v["high_priority"];
    let _ = writeln!(
        out,
        "high priority ({} events read{}):",
        text(&high["examined"]),
        if high["complete"] == Value::Bool(true) {
            String::new()
        } else {
            format!(", stopped at {}", text(&high["examined_since"]))
        }
    );
    for e in high["events"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let _ = writeln!(
            out,
            "  {}  {}  {}  {}  {}",
            text(&e["time"]),
            text(&e["reason"]),
            text(&e["event_type"]),
            text(&e["actor"]["id"]),
            text(&e["id"])
        );
    }
    let errors = v["integrations_in_error"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let _ = writeln!(out, "integrations in error: {}", errors.len());
    for i in errors {
        let _ = writeln!(
            out,
            "  {} ({}): {}",
            text(&i["id"]),
            text(&i["connector"]),
            text(&i["last_error"])
        );
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

pub async fn actor(settings: &Settings, args: &ActorArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/api/v1/actors/{}", percent_encode(&args.id));
    let v = client(settings, &args.remote)
        .await?
        .get_json(&path, &[])
        .await?;
    if args.format == OutputFormat::Json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut out = String::new();
    let a = &v["actor"];
    let _ = writeln!(
        out,
        "actor {} ({}, {}, {})",
        text(&a["id"]),
        text(&a["name"]),
        text(&a["email"]),
        text(&a["type"])
    );
    let _ = writeln!(
        out,
        "events: {}{}; first seen {}, last seen {}",
        text(&v["total"]),
        if v["capped"]["total"] == Value::Bool(true) {
            " or more"
        } else {
            ""
        },
        text(&v["first_seen"]),
        text(&v["last_seen"])
    );
    if v["capped"]["details"] == Value::Bool(true) {
        let _ = writeln!(
            out,
            "(breakdowns cover the newest {} events, from {})",
            text(&v["details_events"]),
            text(&v["details_since"])
        );
    }
    let l = &v["logins"];
    let _ = writeln!(
        out,
        "logins: {} succeeded, {} failed; sessions: {}",
        text(&l["succeeded"]),
        text(&l["failed"]),
        text(&v["sessions"])
    );
    counts(&mut out, "by integration", &v["by_integration"]);
    counts(&mut out, "by action", &v["by_action"]);
    counts(&mut out, "browsers", &v["browsers"]);
    counts(&mut out, "operating systems", &v["operating_systems"]);
    counts(&mut out, "countries", &v["countries"]);
    counts(&mut out, "addresses", &v["ip_addresses"]);
    let _ = writeln!(out, "recent:");
    for e in v["recent"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let _ = writeln!(
            out,
            "  {}  {}  {}  {}",
            text(&e["time"]),
            text(&e["event_type"]),
            text(&e["outcome"]),
            text(&e["id"])
        );
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// A path segment: everything but unreserved characters percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
