//! The command line: `serve` (the default) and the admin/query commands, which run on the same
//! code paths as the API — against the data dir directly, or against the running hub that holds it

mod integrations;
mod remote;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::Role;
use crate::config::{Overrides, Secret, Settings};
use crate::server::{self, ServeError};
use crate::store::{Store, StoreError};
use crate::time::{format_micros, now_micros};

#[derive(Parser, Debug)]
#[command(name = "trailhub", version, about = "Self-hosted audit-log hub", long_about = None)]
pub struct Cli {
    /// TOML config file (listen, data_dir, max_body_bytes, cache_mb, min_free_mb, poll_workers,
    /// header_timeout_secs, body_timeout_secs, max_connections, webhook_max_body_bytes,
    /// webhook_concurrency, shutdown_drain_secs, auth_failure_limit, auth_failure_window_secs,
    /// master_key_file)
    #[arg(long, global = true, env = "TRAILHUB_CONFIG")]
    config: Option<PathBuf>,
    /// Address to serve on, or of the running hub to talk to [default: 127.0.0.1:7410]
    #[arg(long, global = true, env = "TRAILHUB_LISTEN")]
    listen: Option<String>,
    /// Data directory [default: ./trailhub-data]
    #[arg(long, global = true, env = "TRAILHUB_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the hub (the default command)
    Serve,
    /// Show events from the timeline, newest first
    Events(Box<EventsArgs>),
    /// Store the events of an NDJSON file (or a JSON array) in the `custom` integration
    Ingest(IngestArgs),
    /// Walk the integrity hash chain and report the first broken link
    Verify(RemoteArgs),
    /// Convert a data dir written by an earlier store format (resumable; the hub must be stopped)
    Migrate,
    /// Manage API tokens
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Manage integrations (the vendor APIs the hub polls)
    Integrations {
        #[command(subcommand)]
        command: integrations::IntegrationsCommand,
    },
    /// Inspect, check and replay connector definitions
    Connectors {
        #[command(subcommand)]
        command: integrations::ConnectorsCommand,
    },
}

#[derive(Args, Debug, Default)]
struct ServeArgs {
    /// The master key file that seals credentials, best outside the data dir [default: <data_dir>/master.key]
    #[arg(long, global = true, env = "TRAILHUB_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Bootstrap admin token; without it one is minted on first start and saved to <data_dir>/admin.token
    #[arg(
        long,
        global = true,
        env = "TRAILHUB_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<Secret>,
    /// Largest accepted request body, bytes [default: 16777216]
    #[arg(long, global = true, env = "TRAILHUB_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// sled page cache, MiB [default: 64]
    #[arg(long, global = true, env = "TRAILHUB_CACHE_MB")]
    cache_mb: Option<u64>,
    /// Refuse writes (507) while the data dir's disk has less free space, MiB [default: 256]
    #[arg(long, global = true, env = "TRAILHUB_MIN_FREE_MB")]
    min_free_mb: Option<u64>,
    /// Poll cycles running at once [default: 4]
    #[arg(long, global = true, env = "TRAILHUB_POLL_WORKERS")]
    poll_workers: Option<usize>,
    /// Seconds a client has to send a request's headers, counted from when the hub waits for
    /// it (so also the keep-alive idle timeout) [default: 10]
    #[arg(long, global = true, env = "TRAILHUB_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<u64>,
    /// Seconds a client has to send a request's body [default: 60]
    #[arg(long, global = true, env = "TRAILHUB_BODY_TIMEOUT_SECS")]
    body_timeout_secs: Option<u64>,
    /// HTTP connections served at once; more are answered 503 [default: 1024]
    #[arg(long, global = true, env = "TRAILHUB_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Largest webhook delivery, bytes, unless the connector sets its own [default: 1048576]
    #[arg(long, global = true, env = "TRAILHUB_WEBHOOK_MAX_BODY_BYTES")]
    webhook_max_body_bytes: Option<usize>,
    /// Webhook deliveries read and verified at once; more are answered 503 [default: 64]
    #[arg(long, global = true, env = "TRAILHUB_WEBHOOK_CONCURRENCY")]
    webhook_concurrency: Option<usize>,
    /// At shutdown, seconds /readyz answers 503 before the server stops (for load balancers) [default: 0]
    #[arg(long, global = true, env = "TRAILHUB_SHUTDOWN_DRAIN_SECS")]
    shutdown_drain_secs: Option<u64>,
    /// Wrong API tokens one client address may present per window before it gets 429; 0 turns
    /// the limit off [default: 10]
    #[arg(long, global = true, env = "TRAILHUB_AUTH_FAILURE_LIMIT")]
    auth_failure_limit: Option<u32>,
    /// The window of --auth-failure-limit, seconds [default: 60]
    #[arg(long, global = true, env = "TRAILHUB_AUTH_FAILURE_WINDOW_SECS")]
    auth_failure_window_secs: Option<u64>,
    /// Events that may wait for the store's writer before writes answer 503 [default: 32768]
    #[arg(long, global = true, env = "TRAILHUB_MAX_QUEUED_EVENTS")]
    max_queued_events: Option<usize>,
    /// Events per sealed index segment (tests lower it to seal often) [default: 65536]
    #[arg(long, global = true, env = "TRAILHUB_SEAL_EVENTS", hide = true)]
    seal_events: Option<usize>,
}

#[derive(Args, Debug, Clone)]
struct RemoteArgs {
    /// Talk to this running hub (e.g. http://127.0.0.1:7410) instead of opening the data dir
    #[arg(long, env = "TRAILHUB_URL")]
    hub: Option<String>,
    /// API token for --hub [default: TRAILHUB_ADMIN_TOKEN, else <data_dir>/admin.token]
    #[arg(long, env = "TRAILHUB_TOKEN", hide_env_values = true)]
    token: Option<Secret>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(Args, Debug)]
struct EventsArgs {
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
struct IngestArgs {
    /// NDJSON file (one event per line) or a JSON array; `-` reads standard input
    file: PathBuf,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Subcommand, Debug)]
enum TokensCommand {
    /// Mint a token; it is printed once
    Create {
        #[arg(long)]
        name: String,
        /// admin, viewer or ingest
        #[arg(long, default_value = "viewer")]
        role: String,
    },
    /// List tokens (never the tokens themselves)
    List,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, None | Some(Command::Serve));
    init_tracing(if serving { "info" } else { "warn" });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRAILHUB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn resolve_settings(cli: &Cli) -> anyhow::Result<Settings> {
    let serve = &cli.serve;
    Ok(Settings::resolve(Overrides {
        config: cli.config.clone(),
        listen: cli.listen.clone(),
        data_dir: cli.data_dir.clone(),
        admin_token: serve.admin_token.clone(),
        max_body_bytes: serve.max_body_bytes,
        cache_mb: serve.cache_mb,
        min_free_mb: serve.min_free_mb,
        max_queued_events: serve.max_queued_events,
        master_key: std::env::var("TRAILHUB_MASTER_KEY").ok().map(Secret::new),
        master_key_file: serve.master_key_file.clone(),
        poll_workers: serve.poll_workers,
        header_timeout_secs: serve.header_timeout_secs,
        body_timeout_secs: serve.body_timeout_secs,
        max_connections: serve.max_connections,
        webhook_max_body_bytes: serve.webhook_max_body_bytes,
        webhook_concurrency: serve.webhook_concurrency,
        shutdown_drain_secs: serve.shutdown_drain_secs,
        auth_failure_limit: serve.auth_failure_limit,
        auth_failure_window_secs: serve.auth_failure_window_secs,
    })?)
}

fn settings(cli: &Cli) -> anyhow::Result<Settings> {
    let mut s = resolve_settings(cli)?;
    if let Some(n) = cli.serve.seal_events {
        s.seal_events = n.clamp(1, crate::store::tail::SEAL_EVENTS);
    }
    Ok(s)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        None | Some(Command::Serve) => serve(settings(&cli)?).await,
        Some(Command::Events(args)) => events(&settings(&cli)?, args).await,
        Some(Command::Ingest(args)) => ingest(&settings(&cli)?, args).await,
        Some(Command::Verify(args)) => verify(&settings(&cli)?, args).await,
        Some(Command::Migrate) => migrate(&settings(&cli)?),
        Some(Command::Tokens { command }) => tokens(&settings(&cli)?, command).await,
        Some(Command::Integrations { command }) => {
            integrations::integrations(&settings(&cli)?, command).await
        }
        Some(Command::Connectors { command }) => integrations::connectors(command),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let hub = server::start(settings.clone()).await?;
    if let Some(token) = &hub.minted_admin_token {
        println!(
            "admin token (shown once, saved to {}): {}",
            settings.admin_token_path().display(),
            token.expose()
        );
    }
    println!(
        "trailhub {} listening on {}",
        env!("CARGO_PKG_VERSION"),
        hub.url()
    );
    wait_for_signal().await;
    tracing::info!("shutting down: finishing requests in flight and flushing the store");
    hub.stop().await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Where a command's work happens.
enum Target {
    Local(Store),
    Remote(remote::Client),
}

/// The data dir if it is free; the hub holding it otherwise (or the one `--hub` names).
fn target(settings: &Settings, remote: &RemoteArgs) -> anyhow::Result<Target> {
    if let Some(url) = &remote.hub {
        return Ok(Target::Remote(remote::Client::new(
            url,
            token_for(settings, remote)?,
        )?));
    }
    if !settings.store_path().exists() {
        anyhow::bail!(
            "no hub data in {} (start one with `trailhub serve`, or pass --data-dir or --hub)",
            settings.data_dir.display()
        );
    }
    match server::open_store(settings) {
        Ok(store) => Ok(Target::Local(store)),
        Err(ServeError::Store(_, StoreError::Locked(_))) => {
            let url = format!("http://{}", settings.listen);
            eprintln!(
                "note: {} is held by a running hub; asking it at {url}",
                settings.data_dir.display()
            );
            Ok(Target::Remote(remote::Client::new(
                &url,
                token_for(settings, remote)?,
            )?))
        }
        Err(e) => Err(e.into()),
    }
}

fn token_for(settings: &Settings, remote: &RemoteArgs) -> anyhow::Result<String> {
    if let Some(t) = remote
        .token
        .as_ref()
        .map(|t| t.expose().to_string())
        .or_else(|| std::env::var("TRAILHUB_ADMIN_TOKEN").ok())
        .filter(|t| !t.is_empty())
    {
        return Ok(t);
    }
    let path = settings.admin_token_path();
    match std::fs::read_to_string(&path) {
        Ok(t) => Ok(t.trim().to_string()),
        Err(_) => anyhow::bail!(
            "no API token: pass --token or set TRAILHUB_TOKEN (could not read {})",
            path.display()
        ),
    }
}

/// Who acts through a command that opens the data dir directly: the OS user, as far as the
/// environment says.
fn local_principal() -> crate::auth::Principal {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown user".into());
    crate::auth::Principal {
        token_id: "local-cli".into(),
        name: format!("local command line ({user})"),
        role: Role::Admin,
    }
}

/// `trailhub migrate`: converts the data dir in place, with a progress line, then opens it once
/// so the index is built before the hub next starts.
fn migrate(settings: &Settings) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let path = settings.store_path();
    if !path.exists() {
        anyhow::bail!("no store in {}", settings.data_dir.display());
    }
    let started = std::time::Instant::now();
    let mut last_print = std::time::Instant::now();
    let report =
        crate::store::migrate::migrate(&path, settings.cache_mb * 1024 * 1024, |done, total| {
            if last_print.elapsed().as_millis() >= 200 || done == total {
                last_print = std::time::Instant::now();
                let pct = (done * 100).checked_div(total).unwrap_or(100);
                eprint!("\rmigrating: {done} / {total} events ({pct}%)   ");
                let _ = std::io::stderr().flush();
            }
            true
        })?;
    if !report.needed {
        println!("the data dir is already in the current store format; nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!();
    if report.resumed_after > 0 {
        println!("resumed after event {}", report.resumed_after);
    }
    println!(
        "moved {} events into blocks in {:.1} s; building the index",
        report.moved,
        started.elapsed().as_secs_f64()
    );
    let store = server::open_store(settings)?;
    let report = store.verify()?;
    close(store)?;
    if !report.ok {
        println!("verify: FAILED after migration: {:?}", report.first_broken);
        return Ok(ExitCode::from(1));
    }
    println!(
        "done: {} events, chain head {} verified",
        report.events_checked, report.head_hash
    );
    Ok(ExitCode::SUCCESS)
}

fn close(store: Store) -> anyhow::Result<()> {
    store.shutdown()?;
    Ok(())
}

async fn events(settings: &Settings, args: &EventsArgs) -> anyhow::Result<ExitCode> {
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

async fn ingest(settings: &Settings, args: &IngestArgs) -> anyhow::Result<ExitCode> {
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

async fn verify(settings: &Settings, args: &RemoteArgs) -> anyhow::Result<ExitCode> {
    let report: serde_json::Value = match target(settings, args)? {
        Target::Remote(client) => client.get_json("/api/v1/integrity", &[]).await?,
        Target::Local(store) => {
            let report = store.verify();
            close(store)?;
            serde_json::to_value(report?)?
        }
    };
    if report["ok"].as_bool() == Some(true) {
        println!(
            "ok: {} events verified, chain head {}",
            report["events_checked"],
            report["head_hash"].as_str().unwrap_or("")
        );
        Ok(ExitCode::SUCCESS)
    } else {
        let b = &report["first_broken"];
        println!(
            "BROKEN at event {} (seq {}): {}",
            b["id"].as_str().unwrap_or("?"),
            b["seq"],
            b["reason"].as_str().unwrap_or("")
        );
        println!("{} events before it verified", report["events_checked"]);
        Ok(ExitCode::from(1))
    }
}

async fn tokens(settings: &Settings, command: &TokensCommand) -> anyhow::Result<ExitCode> {
    let remote = RemoteArgs {
        hub: None,
        token: None,
    };
    match (command, target(settings, &remote)?) {
        (TokensCommand::Create { name, role }, Target::Remote(client)) => {
            let v = client
                .post_json(
                    "/api/v1/tokens",
                    &serde_json::json!({"name": name, "role": role}),
                )
                .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        (TokensCommand::Create { name, role }, Target::Local(store)) => {
            let role = Role::parse(role)
                .ok_or_else(|| anyhow::anyhow!("--role: expected admin, viewer or ingest"))?;
            let tokens = crate::auth::Tokens::new(store.tokens_tree().clone(), None);
            let (record, token) = tokens.create(name, role)?;
            // the same audit record as POST /api/v1/tokens: minting is an admin action wherever
            // it happens; the token is not shown before its record is on disk
            let recorded = crate::audit::record_token_created(
                &store,
                &local_principal(),
                &record,
                "minted on the local command line",
            )
            .await;
            if let Err(e) = recorded {
                // the token exists but its minting is unrecorded: take it back
                let _ = tokens.revoke(&record.id);
                close(store)?;
                return Err(anyhow::anyhow!("cannot record the token's creation: {e}"));
            }
            close(store)?;
            println!(
                "{} {} ({}) created {}: {}",
                record.id,
                record.name,
                role.as_str(),
                format_micros(record.created_at),
                token.expose()
            );
        }
        (TokensCommand::List, Target::Remote(client)) => {
            let v = client.get_json("/api/v1/tokens", &[]).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        (TokensCommand::List, Target::Local(store)) => {
            let tokens = crate::auth::Tokens::new(store.tokens_tree().clone(), None);
            let list = tokens.list()?;
            close(store)?;
            for t in list {
                println!(
                    "{}  {:<8} {}  {}",
                    t.id,
                    t.role.as_str(),
                    format_micros(t.created_at),
                    t.name
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsed_arguments_do_not_debug_print_secrets() {
        let planted = "planted-secret-value-0123456789";
        let credential = format!("token={planted}");
        let parsed = [
            vec!["trailhub", "--admin-token", planted, "serve"],
            vec![
                "trailhub", "events", "--hub", "http://h", "--token", planted,
            ],
            vec![
                "trailhub",
                "integrations",
                "add",
                "--name",
                "a",
                "--connector",
                "okta",
                "--credential",
                &credential,
            ],
        ];
        for args in parsed {
            let cli = Cli::try_parse_from(&args).expect("parses");
            let shown = format!("{cli:?}");
            assert!(!shown.contains(planted), "{shown}");
        }
    }
}
