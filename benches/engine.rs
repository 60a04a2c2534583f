//! Engine benchmark: backfill GitHub-shaped audit events from a loopback emulator through the
//! real hub (scheduler, engine, normalisation, store), and the request rate under a limit.
//! Prints figures; asserts nothing about time.
//!
//! cargo bench --bench engine                 # 100,000 events, 100 per page
//! cargo bench --bench engine -- 20000        # a quicker run
//! cargo bench --bench engine -- windows      # backfill windows against one sequential walk
//!
//! Last, Grove 2.2.0 (HashiCorp's Python SaaS log collector, in a virtualenv under target/)
//! collects the same emulated history, once the hub has stopped; see docs/PERFORMANCE.md.

// the hub runs in this process: give it the allocator the `trailhub` binary uses
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::time::{Duration, Instant};

use axum::http::header;
use serde_json::{json, Value};
use trailhub::config::{Secret, Settings};

// the emulator core and GitHub vendor the integration tests use
#[path = "../tests/integration/support/mod.rs"]
#[allow(dead_code, unused_imports)] // the bench uses a part of the test support
mod support;

use support::emu::Emulator;
use support::hub::Api;
use support::vendors::{Github, Slack};

const TOKEN: &str = "bench-admin-token-0123456789";
const PER_PAGE: usize = 100;
/// The GitHub token the hub and Grove send.
const GH_TOKEN: &str = "ghp_bench";

/// A GitHub audit-log emulator (newest first, `after=o<offset>` Link-header cursors) holding `n`
/// events over five days, with a budget far larger than the run needs.
async fn start_emulator(n: usize, tag: &str) -> Emulator {
    let emu = Emulator::start(Github::Org, GH_TOKEN, PER_PAGE).await;
    // "No rate limit": resetting each minute (the hub spreads requests over the advertised
    // window, so a far-off reset would pace it down).
    emu.state.lock().expect("lock").budget_remaining = 10_000_000;
    let now_ms = now_ms();
    let span_ms: i64 = 5 * 86_400_000;
    let actions = [
        "repo.create",
        "repo.destroy",
        "org.add_member",
        "team.add_member",
        "repo.access",
        "org.update_member",
    ];
    for i in 0..n {
        // newest first
        let t = now_ms - 60_000 - (i as i64) * span_ms / n as i64;
        let id = format!("{tag}-{i:08}");
        emu.add_record(t * 1000, &id, json!({
            "@timestamp": t, "created_at": t, "_document_id": id,
            "action": actions[i % actions.len()], "actor": format!("user{}", i % 50), "actor_id": 1000 + (i % 50),
            "actor_location": {"country_name": "Norway"}, "org": "bench", "org_id": 42,
            "repo": format!("bench/repo-{}", i % 300), "user": format!("member{}", i % 500), "visibility": "private",
            "operation_type": "create", "transport_protocol_name": "http",
        }));
    }
    emu
}

/// Path and query of each request without a cursor (each client's first page).
fn first_requests(emu: &Emulator) -> Vec<String> {
    emu.requests()
        .into_iter()
        .filter(|r| !r.query.contains("after="))
        .map(|r| format!("{}?{}", r.path, r.query))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Adds one event upstream and times how long until it is the newest event of the timeline.
async fn time_to_timeline(
    http: &reqwest::Client,
    hub: &str,
    id: &str,
    emu: &Emulator,
    n: usize,
) -> f64 {
    let doc = format!("live-{id}-{n}");
    let t = now_ms();
    emu.add_record(t * 1000, &doc, json!({"@timestamp": t, "created_at": t, "_document_id": doc, "action": "repo.create", "actor": "octocat", "org": "bench"}));
    let started = Instant::now();
    loop {
        let page: Value = http
            .get(format!("{hub}/api/v1/events?integration={id}&limit=1"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("events")
            .json()
            .await
            .expect("json");
        if page["events"][0]["source_id"] == doc.as_str() {
            return started.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn latency(
    http: &reqwest::Client,
    hub: &str,
    idle_backoff: Option<u32>,
    rounds: usize,
    quiet: Duration,
) -> Vec<f64> {
    // a GitHub emulator whose records change while the hub polls it
    let emu = Emulator::start(Github::Org, GH_TOKEN, PER_PAGE).await;
    let t = now_ms() - 3_600_000;
    let seed = format!("seed-{}", emu.url);
    emu.add_record(t * 1000, &seed, json!({"@timestamp": t, "created_at": t, "_document_id": seed, "action": "org.create", "actor": "octocat", "org": "bench"}));
    let mut body = json!({
        "name": format!("bench-live-{}", emu.url.rsplit(':').next().unwrap_or("x")), "connector": "github",
        "config": {"base_url": emu.url, "org": "bench"}, "credentials": {"token": GH_TOKEN},
        "schedule": "* * * * * *", "backfill": "P1D", "allow_insecure_http": true,
    });
    if let Some(b) = idle_backoff {
        body["idle_backoff"] = json!(b);
    }
    let id = Api::at(hub, TOKEN).create(body).await;
    wait_ingested(http, hub, &id, 1).await;
    let mut out = Vec::new();
    for n in 0..rounds {
        // idle long enough for any backoff to reach its bound, at a varying phase of the schedule
        tokio::time::sleep(quiet + Duration::from_millis((n as u64 * 137) % 1000)).await;
        out.push(time_to_timeline(http, hub, &id, &emu, n).await);
    }
    out
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    format!(
        "p50 {:.2}s, max {:.2}s over {} events",
        at(0.5),
        v[v.len() - 1],
        v.len()
    )
}

async fn walk_alone(emu: &Emulator, http: &reqwest::Client) -> (usize, f64) {
    let started = Instant::now();
    let mut url = format!("{}/orgs/bench/audit-log?per_page={PER_PAGE}", emu.url);
    let mut events = 0;
    loop {
        let resp = http
            .get(&url)
            .bearer_auth(GH_TOKEN)
            .send()
            .await
            .expect("page");
        let next = resp
            .headers()
            .get(header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.split(';').next())
            .map(|u| {
                u.trim_matches(|c| c == '<' || c == '>' || c == ' ')
                    .to_string()
            });
        let body: Vec<Value> = resp.json().await.expect("json");
        events += body.len();
        match next {
            Some(u) => url = u,
            None => return (events, started.elapsed().as_secs_f64()),
        }
    }
}

async fn create(hub: &str, name: &str, emu: &Emulator, per_minute: u32) -> String {
    let body = json!({
        "name": name, "connector": "github",
        "config": {"base_url": emu.url, "org": "bench"}, "credentials": {"token": GH_TOKEN},
        "schedule": "* * * * * *", "backfill": "P7D", "requests_per_minute": per_minute, "idle_backoff": 0,
        "allow_insecure_http": true,
    });
    Api::at(hub, TOKEN).create(body).await
}

async fn wait_ingested(http: &reqwest::Client, hub: &str, id: &str, n: u64) -> f64 {
    let started = Instant::now();
    loop {
        let v: Value = http
            .get(format!("{hub}/api/v1/integrations/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("json");
        if v["events_ingested"].as_u64().unwrap_or(0) >= n {
            return started.elapsed().as_secs_f64();
        }
        if started.elapsed() > Duration::from_secs(600) {
            panic!("not done after 10 minutes: {v}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if args.iter().any(|a| a == "windows") {
        runtime.block_on(windows());
    } else {
        runtime.block_on(run(n));
    }
}

/// The vendor's budget in the windows benchmark, requests per second.
const WINDOWS_BUDGET: u32 = 20;

/// One backfill of `n` Slack events over 30 days from a vendor answering each page in
/// `latency`, under a budget of `WINDOWS_BUDGET` requests/s: seconds to the last event, and the
/// busiest second the vendor saw.
async fn backfill_once(
    http: &reqwest::Client,
    n: usize,
    latency: Duration,
    tuning: trailhub::config::PollTuning,
) -> (f64, usize, usize) {
    let emu = Emulator::start(Slack, "xoxp-bench", PER_PAGE).await;
    {
        let mut s = emu.state.lock().expect("lock");
        s.latency = latency;
        // the budget is the hub's gate (requests_per_minute below): the vendor's headers must
        // not pace it further
        s.budget_remaining = 10_000_000;
    }
    emu.add_recent(n, 30 * 86_400);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::for_data_dir(dir.path());
    settings.admin_token = Some(Secret::new(TOKEN));
    settings.poll = tuning;
    let hub = trailhub::server::start(settings).await.expect("hub");
    let url = hub.url();
    let body = json!({
        "name": "bench-windows", "connector": "slack", "config": {"base_url": emu.url},
        "credentials": {"token": "xoxp-bench"}, "schedule": "* * * * * *", "backfill": "P30D",
        "requests_per_minute": WINDOWS_BUDGET * 60, "idle_backoff": 0, "allow_insecure_http": true,
    });
    let started = Instant::now();
    let id = Api::at(&url, TOKEN).create(body).await;
    wait_ingested(http, &url, &id, n as u64).await;
    let secs = started.elapsed().as_secs_f64();
    hub.stop().await.expect("stop");
    (secs, emu.api_requests().len(), emu.busiest_second())
}

/// Backfill windows (issue 9): the same history walked once sequentially and once in windows,
/// at a vendor latency of 100 ms and of 1 s per page, under a budget of 20 requests/s.
async fn windows() {
    let http = reqwest::Client::new();
    println!(
        "# backfill windows: Slack-shaped events, {PER_PAGE} per page, budget {WINDOWS_BUDGET} requests/s, {} cores",
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0)
    );
    // TRAILHUB_BENCH_WINDOWS_EVENTS scales both runs down (a quick look)
    let scale: f64 = std::env::var("TRAILHUB_BENCH_WINDOWS_EVENTS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(1.0, |n| n / 20_000.0);
    for (latency_ms, n) in [(100u64, 20_000usize), (1000, 4_000)] {
        let n = ((n as f64 * scale) as usize).max(PER_PAGE);
        let latency = Duration::from_millis(latency_ms);
        let sequential = trailhub::config::PollTuning {
            backfill_slices: 1,
            ..Default::default()
        };
        let (seq_secs, seq_requests, seq_busiest) =
            backfill_once(&http, n, latency, sequential).await;
        let defaults = trailhub::config::PollTuning::default();
        let (lanes, slices) = (defaults.backfill_lanes, defaults.backfill_slices);
        let (win_secs, win_requests, win_busiest) =
            backfill_once(&http, n, latency, defaults).await;
        let over = |busiest: usize| {
            if busiest > WINDOWS_BUDGET as usize {
                "OVER BUDGET"
            } else {
                "0 violations"
            }
        };
        println!(
            "{latency_ms} ms/page, {n} events: sequential walk {seq_secs:.1} s ({seq_requests} requests, {:.1} req/s, busiest second {seq_busiest}: {}); {slices} windows in {lanes} lanes {win_secs:.1} s ({win_requests} requests, {:.1} req/s, busiest second {win_busiest}: {}); windows / sequential = {:.2}x (the budget allows at most {:.1}x here)",
            seq_requests as f64 / seq_secs,
            over(seq_busiest),
            win_requests as f64 / win_secs,
            over(win_busiest),
            seq_secs / win_secs,
            // one request at a time takes `latency`; the budget caps every walk together
            (WINDOWS_BUDGET as f64 * latency.as_secs_f64()).max(1.0),
        );
    }
}

async fn run(n: usize) {
    let http = reqwest::Client::new();
    println!(
        "# trailhub engine benchmark: {n} GitHub-shaped events, {PER_PAGE} per page, {} cores",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(0)
    );

    let emu = start_emulator(n, "a").await;
    let (events, secs) = walk_alone(&emu, &http).await;
    println!("emulator alone (one client walking the Link headers): {events} events in {secs:.2}s = {:.0} events/s, {:.0} pages/s", events as f64 / secs, (events / PER_PAGE) as f64 / secs);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::for_data_dir(dir.path());
    settings.admin_token = Some(Secret::new(TOKEN));
    let hub = trailhub::server::start(settings).await.expect("hub");
    let url = hub.url();

    // kept to the end: Grove collects the same pages once the hub has stopped
    let backfill_emu = start_emulator(n, "b").await;
    let started = Instant::now();
    let id = create(&url, "bench-backfill", &backfill_emu, 1_000_000).await;
    let secs = wait_ingested(&http, &url, &id, n as u64).await;
    let total = started.elapsed().as_secs_f64();
    let requests = backfill_emu.requests().len();
    let hub_rate = n as f64 / total;
    println!(
        "backfill through the hub, no rate limit: {n} events in {total:.2}s = {hub_rate:.0} events/s ({requests} requests; status polled every 10 ms, {secs:.2}s after creation returned)",
    );

    // A limit of 10 requests/s: the achieved rate and the busiest second.
    let limited_events = 80 * PER_PAGE;
    let emu = start_emulator(limited_events, "c").await;
    let id = create(&url, "bench-limited", &emu, 600).await;
    wait_ingested(&http, &url, &id, limited_events as u64).await;
    let hits: Vec<Instant> = emu.requests().iter().map(|r| r.at).collect();
    let span = hits
        .last()
        .expect("hits")
        .duration_since(hits[0])
        .as_secs_f64();
    let achieved = (hits.len() - 1) as f64 / span;
    let busiest = emu.busiest_second();
    println!(
        "with requests_per_minute = 600 (10/s): {} requests in {span:.2}s = {achieved:.2} requests/s ({:.0}% of the limit); busiest 1 s window: {busiest} requests",
        hits.len(),
        achieved / 10.0 * 100.0
    );

    let off = latency(&http, &url, Some(0), 20, Duration::from_millis(300)).await;
    println!(
        "new upstream event to timeline, schedule every second, idle backoff off: {}",
        summary(off)
    );
    let on = latency(&http, &url, None, 6, Duration::from_secs(8)).await;
    println!("new upstream event to timeline, schedule every second, idle backoff on (default 4x = 4 s bound), after 8 s idle: {}", summary(on));
    hub.stop().await.expect("stop");

    race_grove(&backfill_emu, n, hub_rate).await;
}

/// The Grove release raced by the backfill figure (issue 8): HashiCorp's Python SaaS log
/// collector, PyPI `grove`.
const GROVE_VERSION: &str = "2.2.0";
/// Grove's exit is waited for this long at most.
const GROVE_DEADLINE: Duration = Duration::from_secs(1200);

/// Counts the records Grove wrote (gzipped NDJSON files, "\r\n" between records) and the distinct
/// `_document_id`s among them.
const GROVE_COUNT: &str = r#"
import glob, gzip, json, sys
records, ids = 0, set()
for path in glob.glob(sys.argv[1] + "/**/*.json.gz", recursive=True):
    with open(path, "rb") as f:
        for line in gzip.decompress(f.read()).decode("utf-8").split("\r\n"):
            if line:
                records += 1
                ids.add(json.loads(line)["_document_id"])
print(records, len(ids))
"#;

/// Runs a command to its end; its stdout, or why not (the last line of its stderr).
fn output_of(cmd: &mut std::process::Command) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).trim().to_string());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty());
    Err(format!(
        "{what} exited with {}: {}",
        out.status,
        last.unwrap_or("no output").trim()
    ))
}

/// The virtualenv's python with Grove installed: target/grove-venv, reused when it already has
/// the right version, else made with `python3 -m venv` and `pip install grove==2.2.0`.
fn grove_python() -> Result<std::path::PathBuf, String> {
    use std::process::Command;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let venv = target.join("grove-venv");
    let python = venv.join("bin").join("python");
    let installed = || {
        output_of(Command::new(&python).args([
            "-c",
            "import importlib.metadata as m; print(m.version('grove'))",
        ]))
        .is_ok_and(|v| v == GROVE_VERSION)
    };
    if installed() {
        return Ok(python);
    }
    output_of(Command::new("python3").arg("--version"))
        .map_err(|e| format!("no python3 on PATH: {e}"))?;
    println!(
        "grove: installing grove=={GROVE_VERSION} into {}",
        venv.display()
    );
    output_of(
        Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
    )?;
    output_of(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("grove=={GROVE_VERSION}"),
    ]))?;
    if !installed() {
        return Err(format!(
            "grove {GROVE_VERSION} not importable after pip install"
        ));
    }
    Ok(python)
}

/// What one Grove collection did.
struct GroveRun {
    /// records in its output files
    records: usize,
    /// distinct `_document_id`s among them
    distinct: usize,
    /// process start to exit
    secs: f64,
    /// from its "Grove started" log line to its "All connectors have exited" one
    inner: f64,
    /// "3.11"
    python: String,
}

/// One Grove collection of the emulator's whole history into local files, timed from process
/// start to exit.
fn run_grove(python: &std::path::Path, emu_url: &str) -> Result<GroveRun, String> {
    use std::process::{Command, Stdio};
    let py_version = output_of(
        Command::new(python).args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]),
    )?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let (config, out) = (dir.path().join("config"), dir.path().join("out"));
    std::fs::create_dir_all(&config).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    // Grove's GitHub audit-log connector: `fqdn` is its API host setting (for GitHub
    // Enterprise Server); the key is the token, sent as `Authorization: Bearer <key>`.
    let fqdn = emu_url.trim_start_matches("http://");
    let connector = json!({
        "name": "bench-github", "connector": "github_audit_log", "identity": "bench",
        "scope": "orgs", "fqdn": fqdn, "key": GH_TOKEN, "operation": "all",
    });
    std::fs::write(config.join("github.json"), connector.to_string()).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.path().join("grove.log")).map_err(|e| e.to_string())?;
    let shim = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/grove_shim.py");
    let started = Instant::now();
    let mut child = Command::new(python)
        .arg(shim)
        .env("GROVE_CONFIG_HANDLER", "local_file")
        .env("GROVE_CONFIG_LOCAL_FILE_PATH", &config)
        .env("GROVE_OUTPUT_HANDLER", "local_file")
        .env("GROVE_OUTPUT_LOCAL_FILE_PATH", &out)
        .env("GROVE_CACHE_HANDLER", "local_memory")
        .env("NO_PROXY", "127.0.0.1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("{python:?}: {e}"))?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > GROVE_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "did not finish within {} s",
                GROVE_DEADLINE.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let secs = started.elapsed().as_secs_f64();
    let log = std::fs::read_to_string(dir.path().join("grove.log")).unwrap_or_default();
    // Grove logs one JSON object a line, and exits 0 after a failed collection: report its
    // first error line.
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if let Some(error) = lines
        .iter()
        .find(|l| matches!(l["level"].as_str(), Some("ERROR" | "CRITICAL")))
        .map(Value::to_string)
        .or_else(|| (!status.success()).then(|| log.lines().last().unwrap_or("no log").into()))
    {
        return Err(format!("exited with {status}, log: {error}"));
    }
    // Grove's own span, from its first log line to its last (the rest is interpreter start-up,
    // imports and exit)
    let at = |message: &str| {
        lines
            .iter()
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message))
            })
            .and_then(|l| l["timestamp"].as_str())
            .and_then(|t| chrono::DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S,%3f%z").ok())
    };
    let inner = match (at("Grove started"), at("All connectors have exited")) {
        (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
        _ => f64::NAN,
    };
    let counted = output_of(Command::new(python).args(["-c", GROVE_COUNT]).arg(&out))?;
    let mut counts = counted.split_whitespace().map(|c| c.parse().unwrap_or(0));
    let (records, distinct) = (counts.next().unwrap_or(0), counts.next().unwrap_or(0));
    Ok(GroveRun {
        records,
        distinct,
        secs,
        inner,
        python: py_version,
    })
}

/// Races Grove on the emulator the hub backfilled from (the hub is stopped by then), and prints
/// its rate and the hub's ratio to it; a missing Python or a failed install skips it.
async fn race_grove(emu: &Emulator, n: usize, hub_rate: f64) {
    let python = match tokio::task::spawn_blocking(grove_python)
        .await
        .expect("join")
    {
        Ok(python) => python,
        Err(reason) => {
            println!("grove: SKIPPED ({reason})");
            return;
        }
    };
    let hits_before = emu.requests().len();
    let firsts_before = first_requests(emu).len();
    let url = emu.url.clone();
    let ran = tokio::task::spawn_blocking(move || run_grove(&python, &url))
        .await
        .expect("join");
    let requests = emu.requests().len() - hits_before;
    let firsts = first_requests(emu);
    match ran {
        Err(reason) => println!("grove: FAILED ({reason}; {requests} requests)"),
        Ok(GroveRun {
            records,
            distinct,
            secs,
            inner,
            python,
        }) => {
            let rate = records as f64 / secs;
            println!(
                "grove {GROVE_VERSION} (Python {python}): {records} events in {secs:.2} s = {rate:.0} events/s ({requests} requests; process start to exit, {inner:.2} s of it from Grove's first log line to its last; {distinct} distinct _document_id of {n})"
            );
            let first = |from: usize| firsts.get(from).map_or("none", String::as_str);
            println!("  hub's first request:   GET {}", first(0));
            println!("  grove's first request: GET {}", first(firsts_before));
            if records == n && distinct == n {
                println!(
                    "hub / grove: {:.1}x (must reach >= 4x, aim >= 10x)",
                    hub_rate / rate
                );
            } else {
                println!("hub / grove: not computed (grove wrote {records} records, {distinct} distinct, of {n} events)");
            }
        }
    }
}
