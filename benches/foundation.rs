//! Foundation benchmark: ingest through the HTTP API vs. raw sled and SQLite (peers measured in the
//! same run), timeline pages, histogram, export and start-up at scale. Prints figures and
//! same-run ratios; asserts nothing about time.
//!
//! cargo bench --bench foundation                # 1,000,000 events
//! cargo bench --bench foundation -- 100000      # a quicker run
//! cargo bench --bench foundation -- 10000000    # the 10M-event scale of issue 8
//! TRAILHUB_BENCH_NO_PEERS=1 cargo bench --bench foundation   # without the sled and SQLite
//!                                               # peers (they need ~5 GB of disk at 1M)
//!
//! The hub runs as a separate process (the release `trailhub` binary), so that its RSS and CPU
//! time can be read from /proc and the load generator does not share its heap. Events are
//! generated batch by batch from their index, so 10M events never sit in the bench's memory.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "bench-admin-token-0123456789";
const BATCH: usize = 1000;
const CLIENTS: usize = 4;
/// Runs of up to this many events have their request bodies generated before the clock starts.
const PREGENERATE_UP_TO: usize = 1_000_000;
const ACTORS: usize = 50;
const DAYS: i64 = 30;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() as usize) % n
    }
}

const TYPES: &[(&str, &str, &str)] = &[
    ("user.session.start", "login", "authentication"),
    ("user.session.end", "logout", "authentication"),
    ("user.authentication.sso", "login", "authentication"),
    ("repo.create", "create", "data_change"),
    ("repo.destroy", "delete", "data_change"),
    ("repo.access", "read", "data_access"),
    ("repo.download_zip", "export", "data_access"),
    ("org.add_member", "grant", "user_management"),
    ("org.remove_member", "revoke", "user_management"),
    ("team.add_member", "grant", "user_management"),
    ("group.user_membership.add", "grant", "authorization"),
    ("policy.rule.update", "update", "configuration"),
    ("app.oauth2.token.grant", "grant", "authorization"),
    ("file_downloaded", "read", "data_access"),
    ("channel_created", "create", "data_change"),
    ("workflow.run", "execute", "system"),
];
const WORDS: &[&str] = &[
    "payments",
    "billing",
    "frontend",
    "infra",
    "terraform",
    "secrets",
    "analytics",
    "mobile",
    "ledger",
    "search",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
    "GitHub-Hookshot/2a6ee1b",
    "okta-sdk-golang/2.20.0 golang/go1.22",
];

fn actor(i: usize) -> (String, String, String, String) {
    let names = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    ];
    let name = format!("{}{}", names[i % names.len()], i / names.len());
    (
        format!("00u{:08x}", i * 7919),
        name.clone(),
        format!("{name}@example.com"),
        format!("10.{}.{}.{}", i % 7, i % 13, i),
    )
}

/// One event line of about 1.2 KiB, time-ordered over 30 days ending now; the same for the same
/// index in every run.
fn event_line(i: usize, n: usize, now: i64) -> String {
    let rng = &mut Rng((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 42);
    let span = DAYS * 86_400_000_000;
    let t = now - span + (i as i64) * (span / n as i64) + (rng.below(1000) as i64);
    let secs = t.div_euclid(1_000_000);
    let micros = t.rem_euclid(1_000_000);
    let time = chrono_like(secs, micros);
    let (event_type, action, category) = TYPES[rng.below(TYPES.len())];
    let a = rng.below(ACTORS);
    let (aid, aname, email, ip) = actor(a);
    let outcome = if rng.below(10) == 0 {
        "failure"
    } else {
        "success"
    };
    let repo = format!("acme/{}-{}", WORDS[rng.below(WORDS.len())], rng.below(200));
    let ua = AGENTS[rng.below(AGENTS.len())];
    let req = format!("{:016x}{:016x}", rng.next(), rng.next());
    let raw = format!(
        r#"{{"uuid":"{req}","published":"{time}","eventType":"{event_type}","displayMessage":"{aname} {action} {repo}","actor":{{"id":"{aid}","type":"User","alternateId":"{email}","displayName":"{aname}"}},"client":{{"userAgent":{{"rawUserAgent":"{ua}"}},"ipAddress":"{ip}","geographicalContext":{{"city":"Oslo","country":"Norway"}}}},"outcome":{{"result":"{res}"}},"target":[{{"id":"{repo}","type":"Repository"}}],"transaction":{{"id":"{req}","type":"WEB"}},"debugContext":{{"debugData":{{"requestUri":"/api/v1/{repo}","threatSuspected":"false"}}}}}}"#,
        res = outcome.to_uppercase()
    );
    format!(
        r#"{{"time":"{time}","source_id":"evt-{i}","event_type":"{event_type}","action":"{action}","category":"{category}","outcome":"{outcome}","actor":{{"id":"{aid}","name":"{aname}","email":"{email}","type":"user","ip":"{ip}","user_agent":"{ua}"}},"targets":[{{"type":"repo","id":"{repo}","name":"{repo}"}}],"session_id":"s-{s}","description":"{aname} {event_type} on {repo}","raw":{raw}}}"#,
        s = rng.below(100_000)
    )
}

fn chrono_like(secs: i64, micros: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Howard Hinnant's days → civil date.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// The NDJSON body of batch `b` (events `b * BATCH ..` up to `n`).
fn batch_body(b: usize, n: usize, now: i64) -> String {
    let mut body = String::with_capacity(BATCH * 1300);
    for i in b * BATCH..((b + 1) * BATCH).min(n) {
        body.push_str(&event_line(i, n, now));
        body.push('\n');
    }
    body
}

fn batches(n: usize) -> usize {
    n.div_ceil(BATCH)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Hub {
    child: Child,
    url: String,
    /// From spawning the process to its first healthy answer.
    started_in: Duration,
}

impl Hub {
    async fn start(dir: &std::path::Path, http: &reqwest::Client) -> Hub {
        let port = free_port();
        let spawned = Instant::now();
        // TRAILHUB_BENCH_HUB runs another command as the hub (a profiler wrapping it)
        let bin = std::env::var_os("TRAILHUB_BENCH_HUB")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_trailhub").into());
        let child = Command::new(bin)
            .env("TRAILHUB_DATA_DIR", dir)
            .env("TRAILHUB_LISTEN", format!("127.0.0.1:{port}"))
            .env("TRAILHUB_ADMIN_TOKEN", TOKEN)
            .env("TRAILHUB_LOG", "warn")
            .env("TRAILHUB_MAX_BODY_BYTES", (64 * 1024 * 1024).to_string())
            // the key outside the data dir, as docs/SECURITY.md advises (and no warning)
            .env("TRAILHUB_MASTER_KEY_FILE", dir.with_extension("master.key"))
            .env(
                "TRAILHUB_SIGNING_KEY_FILE",
                dir.with_extension("signing.key"),
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("hub starts");
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..60_000 {
            if let Ok(r) = http.get(format!("{url}/healthz")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Hub {
            child,
            url,
            started_in: spawned.elapsed(),
        }
    }

    /// Peak resident set of the hub process so far, MiB.
    fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    }

    /// CPU time (user + system) the hub process has used so far, seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // fields after the command (which may hold spaces): state is field 3, utime 14, stime 15
        let after = stat.rsplit(") ").next().unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // SAFETY: sysconf has no preconditions
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        (ticks(11) + ticks(12)) / hz.max(1.0)
    }

    fn stop(mut self) {
        // SAFETY: SIGTERM to our own child; the hub flushes and exits cleanly.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99))
}

fn dir_bytes(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let md = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            total += if md.is_dir() {
                dir_bytes(&e.path())
            } else {
                md.len()
            };
        }
    }
    total
}

async fn timed_get(http: &reqwest::Client, url: &str) -> (f64, usize) {
    let started = Instant::now();
    let resp = http.get(url).bearer_auth(TOKEN).send().await.expect("sent");
    assert!(resp.status().is_success(), "{url}: {}", resp.status());
    let body = resp.bytes().await.expect("body");
    (started.elapsed().as_secs_f64() * 1000.0, body.len())
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(n));
}

async fn run(n: usize) {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(16)
        .build()
        .expect("client");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    println!(
        "# trailhub foundation benchmark: {n} events, {ACTORS} actors, {DAYS} days, {} cores",
        std::thread::available_parallelism()
            .map(|p| p.get())
            .unwrap_or(0)
    );

    let sample = batch_body(0, n.min(BATCH), now);
    let mean = sample.len() as f64 / n.min(BATCH) as f64;
    println!("mean event {mean:.0} bytes (NDJSON line)");

    // Peers measured on the same machine in the same run, on the first `peer_n` events.
    let peer_n = n.min(1_000_000);
    let peers = std::env::var_os("TRAILHUB_BENCH_NO_PEERS").is_none();
    if peers {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new()
            .path(dir.path())
            .cache_capacity(128 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .open()
            .expect("sled");
        let tree = db.open_tree("raw").expect("tree");
        let mut secs = 0.0;
        for b in 0..batches(peer_n) {
            let body = batch_body(b, peer_n, now);
            let started = Instant::now();
            let mut batch = sled::Batch::default();
            for (i, l) in body.lines().enumerate() {
                batch.insert(&((b * BATCH + i) as u64).to_be_bytes()[..], l.as_bytes());
            }
            tree.apply_batch(batch).expect("batch");
            secs += started.elapsed().as_secs_f64();
        }
        let started = Instant::now();
        db.flush().expect("flush");
        secs += started.elapsed().as_secs_f64();
        println!(
            "raw sled floor: {:.0} events/s ({:.1} MiB/s), {:.0} bytes/event on disk ({peer_n} events, one key each, batches of {BATCH}, one flush)",
            peer_n as f64 / secs,
            peer_n as f64 * mean / secs / 1048576.0,
            dir_bytes(dir.path()) as f64 / peer_n as f64
        );
    }
    let sqlite = if peers {
        sqlite_peer(peer_n, now)
    } else {
        None
    };

    // The peers are timed without generating their input; the hub is too, where its input fits
    // in memory (about 1.2 GiB per million events): generating in the clients would take CPU
    // from the hub on the same cores.
    let pregenerated: Option<std::sync::Arc<Vec<bytes::Bytes>>> =
        (n <= PREGENERATE_UP_TO).then(|| {
            std::sync::Arc::new(
                (0..batches(n))
                    .map(|b| bytes::Bytes::from(batch_body(b, n, now)))
                    .collect(),
            )
        });
    // TRAILHUB_BENCH_DATA names a directory to keep the hub's data in (for profiling after the
    // run); by default a temporary one
    let data = tempfile::tempdir().expect("tempdir");
    let kept = std::env::var_os("TRAILHUB_BENCH_DATA").map(std::path::PathBuf::from);
    let data_dir = kept.as_deref().unwrap_or(data.path());
    let hub = Hub::start(data_dir, &http).await;
    let cpu_before = hub.cpu_seconds();
    let started = Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, url, next) = (http.clone(), hub.url.clone(), next.clone());
            let pregenerated = pregenerated.clone();
            tokio::spawn(async move {
                let mut stored = 0u64;
                loop {
                    let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if b >= batches(n) {
                        return stored;
                    }
                    let body = match &pregenerated {
                        Some(bodies) => bodies[b].clone(),
                        None => bytes::Bytes::from(batch_body(b, n, now)),
                    };
                    let resp = http
                        .post(format!("{url}/api/v1/events"))
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/x-ndjson")
                        .body(body)
                        .send()
                        .await
                        .expect("sent");
                    assert!(resp.status().is_success(), "ingest {}", resp.status());
                    let report: serde_json::Value = resp.json().await.expect("json");
                    stored += report["stored"].as_u64().unwrap_or(0);
                }
            })
        })
        .collect();
    let mut stored = 0;
    for c in clients {
        stored += c.await.expect("client");
    }
    let secs = started.elapsed().as_secs_f64();
    let ingest_rate = stored as f64 / secs;
    let cpu = hub.cpu_seconds() - cpu_before;
    println!(
        "API ingest: {stored} events in {secs:.1}s = {ingest_rate:.0} events/s ({CLIENTS} clients, {BATCH}-event NDJSON batches {}, acknowledged after flush); hub peak RSS {:.0} MiB; hub CPU {:.1} us/event",
        if pregenerated.is_some() {
            "generated before timing"
        } else {
            "generated by the clients while timed"
        },
        hub.peak_rss_mib(),
        cpu * 1e6 / stored.max(1) as f64
    );
    drop(pregenerated);
    let metrics = http
        .get(format!("{}/metrics", hub.url))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let counter = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    println!(
        "keys written per event: {:.2} to the log, {:.2} to the index",
        counter("trailhub_store_log_keys_total") / n as f64,
        counter("trailhub_store_index_keys_total") / n as f64
    );
    hub.stop();
    let on_disk = dir_bytes(data_dir);
    let hub_bytes = on_disk as f64 / n as f64;
    println!(
        "data dir: {:.1} MiB = {hub_bytes:.0} bytes/event",
        on_disk as f64 / 1048576.0,
    );
    if let Some((rate, bytes)) = sqlite {
        println!(
            "hub / sqlite: ingest {:.2}x (must reach >= 2x), bytes/event {:.2}x (must reach <= 0.5x)",
            ingest_rate / rate,
            hub_bytes / bytes
        );
    }

    // Queries on a fresh process.
    let hub = Hub::start(data_dir, &http).await;
    println!(
        "start-up with {n} events stored: {:.2} s to the first healthy answer",
        hub.started_in.as_secs_f64()
    );
    let mut rng = Rng(7);
    let rounds = 200;
    let mut urls = |make: &mut dyn FnMut(&mut Rng) -> String| -> Vec<String> {
        (0..rounds).map(|_| make(&mut rng)).collect()
    };
    let base = hub.url.clone();
    let cases: Vec<(&str, Vec<String>)> = vec![
        (
            "first page, unfiltered",
            urls(&mut |_| format!("{base}/api/v1/events?limit=100")),
        ),
        (
            "first page, by actor",
            urls(&mut |r| {
                format!(
                    "{base}/api/v1/events?limit=100&actor={}",
                    actor(r.below(ACTORS)).2
                )
            }),
        ),
        (
            "first page, action+outcome",
            urls(&mut |r| {
                let (_, action, _) = TYPES[r.below(TYPES.len())];
                format!(
                    "{base}/api/v1/events?limit=100&action={action}&outcome={}",
                    if r.below(2) == 0 {
                        "failure"
                    } else {
                        "success"
                    }
                )
            }),
        ),
        (
            "first page, q (one word)",
            urls(&mut |r| {
                format!(
                    "{base}/api/v1/events?limit=100&q={}",
                    WORDS[r.below(WORDS.len())]
                )
            }),
        ),
        (
            "first page, q (two words)",
            urls(&mut |r| {
                format!(
                    "{base}/api/v1/events?limit=100&q={}+{}",
                    WORDS[r.below(WORDS.len())],
                    r.below(200)
                )
            }),
        ),
    ];
    for (label, urls) in cases {
        for u in urls.iter().take(5) {
            timed_get(&http, u).await;
        }
        let mut lat = Vec::new();
        for u in &urls {
            lat.push(timed_get(&http, u).await.0);
        }
        let (p50, p99) = percentiles(lat);
        println!("{label}: p50 {p50:.2} ms, p99 {p99:.2} ms ({rounds} requests)");
    }
    for (bucket, group) in [("1h", "action"), ("1d", "actor")] {
        let url = format!(
            "{}/api/v1/events/histogram?bucket={bucket}&group_by={group}&since={DAYS}d",
            hub.url
        );
        let mut lat = Vec::new();
        for i in 0..50 {
            let (ms, _) = timed_get(&http, &url).await;
            if i >= 3 {
                lat.push(ms);
            }
        }
        let (p50, p99) = percentiles(lat);
        println!("histogram {DAYS} days, {bucket} buckets, group_by={group}: p50 {p50:.2} ms, p99 {p99:.2} ms");
    }
    // the desk's overviews (issue 11): the dashboard summary, one actor (each of the 50 holds
    // about 2% of the events: past the actor view's 10,000-event detail cap at 1M), related
    // events, and a 1,000-event page with and without enrichment (user agents; no geo files)
    let desk: Vec<(String, Vec<String>)> = vec![
        (
            "summary?tz=Europe/Paris".into(),
            vec![format!("{base}/api/v1/summary?tz=Europe/Paris")],
        ),
        (
            "actors/{email}".into(),
            (0..ACTORS)
                .map(|a| format!("{base}/api/v1/actors/{}", actor(a).2))
                .collect(),
        ),
        (
            "events/{id}/related".into(),
            (0..20)
                .map(|_| {
                    format!(
                        "{base}/api/v1/events/{:016x}/related",
                        1 + rng.below(n) as u64
                    )
                })
                .collect(),
        ),
        (
            "events?limit=1000".into(),
            vec![format!("{base}/api/v1/events?limit=1000")],
        ),
        (
            "events?limit=1000&enrich=true".into(),
            vec![format!("{base}/api/v1/events?limit=1000&enrich=true")],
        ),
    ];
    for (label, urls) in desk {
        for u in urls.iter().take(3) {
            timed_get(&http, u).await;
        }
        let mut lat = Vec::new();
        for i in 0..50 {
            lat.push(timed_get(&http, &urls[i % urls.len()]).await.0);
        }
        let (p50, p99) = percentiles(lat);
        println!("{label}: p50 {p50:.2} ms, p99 {p99:.2} ms (50 requests)");
    }
    hub.stop();

    // Export on a fresh process, so its peak RSS is the export's.
    let hub = Hub::start(data_dir, &http).await;
    let started = Instant::now();
    let mut resp = http
        .get(format!(
            "{}/api/v1/events/export?format=ndjson&integration=custom",
            hub.url
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("export");
    let mut lines_seen = 0usize;
    let mut bytes_seen = 0usize;
    while let Some(chunk) = resp.chunk().await.expect("chunk") {
        lines_seen += chunk.iter().filter(|b| **b == b'\n').count();
        bytes_seen += chunk.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "export ndjson: {lines_seen} events ({:.0} MiB) in {secs:.1}s = {:.0} events/s; hub peak RSS {:.0} MiB",
        bytes_seen as f64 / 1048576.0,
        lines_seen as f64 / secs,
        hub.peak_rss_mib()
    );
    hub.stop();

    // Retention: every category kept 15 days purges the older half of the 30 days, each event
    // leaving a tombstone in its slot. What it costs in time, and what it gives back in bytes.
    let hub = Hub::start(data_dir, &http).await;
    let policy = serde_json::json!({"categories": {"authentication": 15, "authorization": 15,
        "user_management": 15, "configuration": 15, "data_access": 15, "data_change": 15,
        "system": 15, "other": 15}});
    let put = http
        .put(format!("{}/api/v1/retention", hub.url))
        .bearer_auth(TOKEN)
        .json(&policy)
        .send()
        .await
        .expect("policy");
    assert!(put.status().is_success(), "policy refused");
    let storage = |http: reqwest::Client, url: String| async move {
        http.get(format!("{url}/api/v1/storage"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("storage")
            .json::<serde_json::Value>()
            .await
            .expect("storage json")
    };
    let before = storage(http.clone(), hub.url.clone()).await;
    let started = Instant::now();
    let report: serde_json::Value = http
        .post(format!("{}/api/v1/retention/run", hub.url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("run")
        .json()
        .await
        .expect("report");
    let secs = started.elapsed().as_secs_f64();
    let after = storage(http.clone(), hub.url.clone()).await;
    let purged = report["purged"].as_u64().unwrap_or(0);
    let active = |v: &serde_json::Value| v["bytes"]["active"].as_u64().unwrap_or(0) as f64;
    println!(
        "retention: {purged} events purged in {secs:.1}s = {:.0} events/s; event blocks {:.0} -> {:.0} MiB ({:.0} bytes freed per purged event, {:.0} -> {:.0} bytes per stored event)",
        purged as f64 / secs,
        active(&before) / 1048576.0,
        active(&after) / 1048576.0,
        (active(&before) - active(&after)) / purged.max(1) as f64,
        active(&before) / before["events"]["stored"].as_f64().unwrap_or(1.0),
        active(&after) / after["events"]["stored"].as_f64().unwrap_or(1.0),
    );
    hub.stop();
    let _ = std::io::stdout().flush();
}

/// The peer an admin could build on instead: the same events into SQLite (WAL,
/// `synchronous=FULL`, one transaction per 1,000-event batch, a unique (integration, source_id)
/// key for exactly-once, indexes on time, actor+time and action+time), the fields read from each
/// line with serde as any such ingester would. Returns (events/s, bytes/event), or `None` when
/// SQLite cannot be opened.
fn sqlite_peer(n: usize, now: i64) -> Option<(f64, f64)> {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        source_id: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        time: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        action: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        actor: Actor<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Actor<'a> {
        #[serde(borrow)]
        id: std::borrow::Cow<'a, str>,
    }
    let dir = tempfile::tempdir().ok()?;
    let path = dir.path().join("peer.db");
    let mut conn = match rusqlite::Connection::open(&path) {
        Ok(c) => c,
        Err(e) => {
            println!("sqlite peer: SKIPPED ({e})");
            return None;
        }
    };
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL;
         CREATE TABLE events (
             seq INTEGER PRIMARY KEY,
             integration TEXT NOT NULL,
             source_id TEXT NOT NULL,
             time TEXT NOT NULL,
             actor TEXT NOT NULL,
             action TEXT NOT NULL,
             body TEXT NOT NULL,
             UNIQUE (integration, source_id)
         );
         CREATE INDEX events_time ON events (time);
         CREATE INDEX events_actor_time ON events (actor, time);
         CREATE INDEX events_action_time ON events (action, time);",
    )
    .ok()?;
    let mut secs = 0.0;
    let mut stored = 0usize;
    for b in 0..batches(n) {
        let body = batch_body(b, n, now);
        let started = Instant::now();
        let tx = conn.transaction().ok()?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (integration, source_id, time, actor, action, body)
                     VALUES ('custom', ?1, ?2, ?3, ?4, ?5)",
                )
                .ok()?;
            for line in body.lines() {
                let l: Line = serde_json::from_str(line).expect("generated lines parse");
                stored += insert
                    .execute((&*l.source_id, &*l.time, &*l.actor.id, &*l.action, line))
                    .ok()?;
            }
        }
        tx.commit().ok()?;
        secs += started.elapsed().as_secs_f64();
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .ok()?;
    drop(conn);
    let bytes = dir_bytes(dir.path()) as f64 / n as f64;
    let rate = stored as f64 / secs;
    println!(
        "sqlite peer ({} events; WAL, synchronous=FULL, 1,000-event transactions, unique (integration, source_id), indexes on time, actor+time, action+time): {rate:.0} events/s, {bytes:.0} bytes/event",
        stored
    );
    Some((rate, bytes))
}
