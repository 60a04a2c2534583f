//! Alert evaluation under load. Prints figures; asserts nothing about time.
//!
//! 1. Cost: the same ingest (NDJSON batches of 1,000 events from 4 clients) into a hub with no
//!    rule and into one with 100 rules of every kind (single event, count per actor in a
//!    window, numeric value, night window in a zone), alternated for 5 rounds (or the third
//!    number); ingest rate of each, the ratio of their medians and of each round's pair, and
//!    how long evaluation took to catch up after the last batch.
//! 2. Latency: 10,000 events/s paced for `--secs` seconds with the 100 rules loaded, one event
//!    in 1,000 a probe that a rule delivers to a signed webhook receiver in this process; the
//!    time from the probe's batch being acknowledged (stored) to its delivery, p50/p99/max.
//!
//! cargo bench --bench alerts                 # 200,000 events per cost run (5 rounds), 30 s of latency
//! cargo bench --bench alerts -- 50000 10     # a quicker run
//! cargo bench --bench alerts -- 100000 0     # the cost part only (to profile it)

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use trailhub::config::{Secret, Settings};

const TOKEN: &str = "bench-admin-token-0123456789";
const BATCH: usize = 1000;
const CLIENTS: usize = 4;
const ZONES: [&str; 3] = ["Europe/Paris", "America/New_York", "Asia/Tokyo"];

fn main() {
    // what the hub logs (an alert error, say) goes to stderr
    tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_writer(std::io::stderr)
        .init();
    let mut numbers = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let n = numbers.next().unwrap_or(200_000) as usize;
    let secs = numbers.next().unwrap_or(30);
    let rounds = numbers.next().unwrap_or(5).max(1) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(n, secs, rounds));
}

/// The `k`-th event of the load: 100 event types, 1,000 actors, a tenth failed, logins (a
/// fiftieth of all events are failed logins, by 20 actors), exports with a record count.
fn event(prefix: &str, k: usize, time: &str) -> Value {
    let actions = ["login", "read", "update", "export", "create"];
    json!({
        "time": time,
        "source_id": format!("{prefix}-{k}"),
        "event_type": format!("type-{}", k % 100),
        "action": actions[k % actions.len()],
        "category": if k % 5 == 0 { "authentication" } else { "data_access" },
        "outcome": if k % 10 == 3 || k % 50 == 0 { "failure" } else { "success" },
        "actor": {"id": format!("user-{}", k % 1000), "name": format!("User {}", k % 1000), "ip": format!("10.0.{}.{}", k % 200, k % 250)},
        "targets": [{"type": "doc", "id": format!("doc-{}", k % 5000)}],
        "raw": {"records": k % 2000},
    })
}

/// 100 rules, a quarter of each kind, as a security team writes them: broad filters that match
/// a good share of the load (every failed login, every export, every login of a watched
/// account), conditions that hold rarely. Each run fires a few hundred times: the 20 actors
/// with failed logins trip every count rule once, a few exports are large, and a watched
/// account's login in its night window fires once an hour.
fn rules() -> Vec<Value> {
    (0..100)
        .map(|i| match i % 4 {
            0 => json!({"name": format!("type {i} failed"), "filter": {"event_type": format!("type-{}", (i + 3) % 100), "outcome": "failure", "actor": format!("user-{}", 500 + i)}}),
            1 => json!({"name": format!("{} failed logins", 5 + i % 10), "filter": {"action": "login", "outcome": "failure"},
                "condition": {"type": "count", "threshold": 5 + i % 10, "window_secs": 600}, "group_by": "actor.id"}),
            2 => json!({"name": format!("export over {}", 1990 + i / 10), "filter": {"action": "export"},
                "condition": {"type": "value", "field": "raw.records", "op": ">=", "value": 1990 + i / 10}, "group_by": "actor.id", "suppress_secs": 3600}),
            _ => json!({"name": format!("night login {i}"), "filter": {"action": "login", "actor": format!("user-{}", i * 10)},
                "schedule": {"timezone": ZONES[i % 3], "from": "22:00", "to": "06:00"}, "suppress_secs": 3600}),
        })
        .collect()
}

struct Hub {
    hub: trailhub::server::RunningHub,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Hub {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::for_data_dir(dir.path());
    settings.admin_token = Some(Secret::new(TOKEN));
    let hub = trailhub::server::start(settings).await.expect("hub");
    Hub {
        url: hub.url(),
        hub,
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(CLIENTS * 2)
            .build()
            .expect("client"),
        _dir: dir,
    }
}

impl Hub {
    async fn post_json(&self, path: &str, body: &Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("json");
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn ingest(&self, body: String) -> Instant {
        let resp = self
            .http
            .post(format!("{}/api/v1/events", self.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .expect("ingest");
        assert_eq!(resp.status().as_u16(), 200, "ingest");
        let _ = resp.bytes().await;
        Instant::now()
    }

    async fn load_rules(&self, channel: Option<&str>) {
        for rule in rules() {
            self.post_json("/api/v1/alerts/rules", &rule).await;
        }
        if let Some(c) = channel {
            self.post_json(
                "/api/v1/alerts/rules",
                &json!({"name": "latency probe", "filter": {"event_type": "latency.probe"},
                    "message": "probe {{source_id}}", "channels": [c]}),
            )
            .await;
        }
    }

    /// Firings recorded so far.
    async fn fired(&self) -> usize {
        let v: Value = self
            .http
            .get(format!(
                "{}/api/v1/events/histogram?bucket=1d&since=30d&integration=trailhub&event_type=alert.fired&group_by=action",
                self.url
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("histogram")
            .json()
            .await
            .expect("json");
        v["buckets"]
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(|x| x["counts"]["execute"].as_u64())
                    .sum::<u64>() as usize
            })
            .unwrap_or(0)
    }

    async fn stop(self) {
        self.hub.stop().await.expect("stop");
    }
}

/// Ingests `n` events from `CLIENTS` clients as fast as the hub takes them; events/s.
async fn flood(hub: &Hub, prefix: &str, n: usize) -> f64 {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let bodies: Arc<Vec<String>> = Arc::new(
        (0..n.div_ceil(BATCH))
            .map(|b| {
                let mut s = String::new();
                for k in b * BATCH..((b + 1) * BATCH).min(n) {
                    s.push_str(&event(prefix, k, &time).to_string());
                    s.push('\n');
                }
                s
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (bodies, next) = (bodies.clone(), next.clone());
            let (http, url) = (hub.http.clone(), hub.url.clone());
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(body) = bodies.get(i) else { return };
                    let resp = http
                        .post(format!("{url}/api/v1/events"))
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/x-ndjson")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("ingest");
                    assert_eq!(resp.status().as_u16(), 200);
                    let _ = resp.bytes().await;
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

async fn cost(n: usize, rounds: usize) {
    println!("## cost of evaluation: {n} events per run, batches of {BATCH}, {CLIENTS} clients, {rounds} rounds");
    let mut rates: HashMap<&str, Vec<f64>> = HashMap::new();
    for round in 0..rounds {
        for rules in [false, true] {
            let hub = start().await;
            if rules {
                hub.load_rules(None).await;
            }
            let rate = flood(&hub, &format!("r{round}"), n).await;
            let ended = Instant::now();
            // evaluation has caught up once the firings stop growing
            let mut last = hub.fired().await;
            loop {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                let now = hub.fired().await;
                if now == last {
                    break;
                }
                last = now;
            }
            let label = if rules { "100 rules" } else { "no rules" };
            println!(
                "  round {round}, {label:>9}: {rate:>9.0} events/s ingested; {last} firings; evaluation settled {:.1} s after the last batch (1.5 s of it the settle check)",
                ended.elapsed().as_secs_f64()
            );
            rates.entry(label).or_default().push(rate);
            hub.stop().await;
        }
    }
    // medians: one slow run (the machine busy for a moment) moves a mean a lot
    let median = |l: &str| {
        let mut v = rates[l].clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (without, with) = (median("no rules"), median("100 rules"));
    let mut paired: Vec<f64> = rates["no rules"]
        .iter()
        .zip(&rates["100 rules"])
        .map(|(a, b)| (1.0 - b / a) * 100.0)
        .collect();
    paired.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  median: no rules {without:.0} events/s, 100 rules {with:.0} events/s: evaluation costs {:.1}% of ingest throughput (per round: {})",
        (1.0 - with / without) * 100.0,
        paired
            .iter()
            .map(|p| format!("{p:.1}%"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

async fn run(n: usize, secs: u64, rounds: usize) {
    println!(
        "# trailhub alert benchmark: hubs in this process, {} cores",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(0)
    );
    cost(n, rounds).await;
    if secs > 0 {
        latency(secs).await;
    }
}

/// Delivery times of probes by source id, as a webhook receiver in this process sees them.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver() -> (String, Arrivals) {
    let arrivals: Arrivals = Arc::default();
    let seen = arrivals.clone();
    #[allow(clippy::disallowed_methods)] // a receiver outside the hub: not one of its routes
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let at = Instant::now();
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                if let Some(probe) = v["data"]["firing"]["message"]
                    .as_str()
                    .and_then(|m| m.strip_prefix("probe "))
                {
                    if let Ok(mut s) = seen.lock() {
                        s.entry(probe.to_string()).or_insert(at);
                    }
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, arrivals)
}

async fn latency(secs: u64) {
    const RATE: usize = 10_000;
    const TICK: Duration = Duration::from_millis(100);
    let per_tick = RATE * TICK.as_millis() as usize / 1000;
    println!("## latency: {RATE} events/s for {secs} s (batches of {per_tick} every {TICK:?}), 100 rules + one probe rule delivering to a signed webhook");
    let hub = Arc::new(start().await);
    let (url, arrivals) = receiver().await;
    let channel = hub
        .post_json(
            "/api/v1/channels",
            &json!({"name": "bench receiver", "kind": "webhook", "url": url}),
        )
        .await;
    let channel = channel["id"].as_str().expect("channel id").to_string();
    hub.load_rules(Some(&channel)).await;
    let acks: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let ticks = secs as usize * 1000 / TICK.as_millis() as usize;
    let mut sends = Vec::with_capacity(ticks);
    for b in 0..ticks {
        ticker.tick().await;
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let mut body = String::new();
        for k in 0..per_tick - 1 {
            body.push_str(&event("load", b * per_tick + k, &time).to_string());
            body.push('\n');
        }
        let probe = format!("lat-{b}");
        body.push_str(
            &json!({"time": time, "source_id": probe, "event_type": "latency.probe", "action": "other", "actor": {"id": "bench"}})
                .to_string(),
        );
        body.push('\n');
        let (hub, acks) = (hub.clone(), acks.clone());
        sends.push(tokio::spawn(async move {
            let at = hub.ingest(body).await;
            if let Ok(mut a) = acks.lock() {
                a.insert(probe, at);
            }
        }));
    }
    for s in sends {
        s.await.expect("send");
    }
    let sent_secs = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if arrivals.lock().map(|a| a.len()).unwrap_or(0) >= ticks {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (acks, arrivals) = (
        acks.lock().map(|a| a.clone()).unwrap_or_default(),
        arrivals.lock().map(|a| a.clone()).unwrap_or_default(),
    );
    let mut ms: Vec<f64> = acks
        .iter()
        .filter_map(|(probe, ack)| {
            arrivals.get(probe).map(|at| {
                at.checked_duration_since(*ack)
                    .unwrap_or_default()
                    .as_secs_f64()
                    * 1000.0
            })
        })
        .collect();
    ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "  ingested {} events in {sent_secs:.1} s = {:.0} events/s; {} of {ticks} probes delivered",
        ticks * per_tick,
        (ticks * per_tick) as f64 / sent_secs,
        ms.len()
    );
    if !ms.is_empty() {
        let at = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "  stored (acknowledged) -> webhook delivered: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            at(0.5),
            at(0.99),
            ms[ms.len() - 1]
        );
    }
    match Arc::try_unwrap(hub) {
        Ok(hub) => hub.stop().await,
        Err(_) => println!("  (hub still shared; not stopped cleanly)"),
    }
}
