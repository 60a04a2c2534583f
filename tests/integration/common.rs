//! Helpers: a hub on port 0 with a temp dir, an HTTP client, and event generators

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use trailhub::config::{Secret, Settings};
use trailhub::server::{self, RunningHub};

pub const ADMIN: &str = "test-admin-token-for-common-hubs";

pub struct TestHub {
    hub: Option<RunningHub>,
    pub url: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

impl TestHub {
    pub async fn start() -> TestHub {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> TestHub {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = Settings::for_data_dir(dir.path());
        settings.admin_token = Some(Secret::new(ADMIN));
        settings.cache_mb = 16;
        // seal small segments, so that tests cross the tail/segment boundary
        settings.seal_events = 256;
        adjust(&mut settings);
        let hub = server::start(settings).await.expect("hub starts");
        TestHub {
            url: hub.url(),
            hub: Some(hub),
            http: reqwest::Client::new(),
            dir,
        }
    }

    /// The hub's store, for tests that stage a store fault.
    pub fn store(&self) -> &trailhub::store::Store {
        &self.hub.as_ref().expect("running").store
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(hub) = self.hub.take() {
            hub.stop().await.expect("clean stop");
        }
        self.dir
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn ingest(&self, lines: &[Value]) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/events",
                Some(ADMIN),
                "application/x-ndjson",
                ndjson(lines),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get_text(&self, path: &str) -> (StatusCode, String) {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("request sent");
        (resp.status(), resp.text().await.expect("body"))
    }

    /// Every event matching `query`, walking all pages of `limit`.
    pub async fn all_events(&self, query: &str, limit: usize) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/events?limit={limit}");
            if !query.is_empty() {
                path.push('&');
                path.push_str(query);
            }
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (status, page) = self.get(&path, Some(ADMIN)).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            out.extend(page["events"].as_array().expect("events").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    pub async fn mint(&self, role: &str) -> String {
        let (status, body) = self
            .post(
                "/api/v1/tokens",
                Some(ADMIN),
                "application/json",
                json!({"name": format!("{role} token"), "role": role}).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"].as_str().expect("token").to_string()
    }
}

pub fn ndjson(lines: &[Value]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(&l.to_string());
        s.push('\n');
    }
    s
}

/// A small deterministic generator (no rand dependency in tests).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
}

pub const ACTORS: &[(&str, &str, &str)] = &[
    ("u1", "Alice Liddell", "alice@example.com"),
    ("u2", "Bob Stone", "bob@example.com"),
    ("u3", "Carol Danvers", "carol@example.com"),
    ("u4", "Dave Grohl", "dave@example.com"),
];
pub const ACTIONS: &[&str] = &["create", "read", "update", "delete", "login"];
pub const OUTCOMES: &[&str] = &["success", "failure"];
pub const CATEGORIES: &[&str] = &["authentication", "data_change", "configuration"];
pub const REPOS: &[&str] = &["acme/web", "acme/api", "acme/infra"];
pub const IPS: &[&str] = &["10.0.0.1", "192.168.1.7", "2001:db8::1"];
pub const WORDS: &[&str] = &[
    "quarterly",
    "rotation",
    "emergency",
    "breakglass",
    "routine",
];

/// 2024-05-01T00:00:00Z in seconds.
pub const BASE_SECS: i64 = 1_714_521_600;

pub fn rfc3339(secs: i64, millis: i64) -> String {
    chrono::DateTime::from_timestamp(secs, (millis * 1_000_000) as u32)
        .expect("valid")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `n` varied events spread over `span_secs` after BASE, with source ids `{prefix}-{i}`.
pub fn varied_events(prefix: &str, n: usize, span_secs: i64, seed: u64) -> Vec<Value> {
    let mut rng = Lcg(seed);
    (0..n)
        .map(|i| {
            let (id, name, email) = *rng.pick(ACTORS);
            let action = *rng.pick(ACTIONS);
            let secs = BASE_SECS + (rng.next() as i64 % span_secs);
            let millis = (rng.next() % 1000) as i64;
            json!({
                "time": rfc3339(secs, millis),
                "source_id": format!("{prefix}-{i}"),
                "event_type": format!("repo.{action}"),
                "action": action,
                "category": *rng.pick(CATEGORIES),
                "outcome": *rng.pick(OUTCOMES),
                "actor": {"id": id, "name": name, "email": email, "type": "user", "ip": *rng.pick(IPS)},
                "targets": [{"type": "repo", "id": *rng.pick(REPOS)}],
                "description": format!("{} {name} did {action}", *rng.pick(WORDS)),
            })
        })
        .collect()
}

pub fn source_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["source_id"].as_str().expect("source_id").to_string())
        .collect()
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The real binary as a child process, for tests that kill it or read its files.
/// A hub child process, killed when dropped so that a failing test leaves none behind.
pub struct HubProcess(Child);

impl std::ops::Deref for HubProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for HubProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_hub(dir: &std::path::Path, port: u16) -> HubProcess {
    spawn_hub_with(dir, port, &[])
}

pub fn spawn_hub_with(dir: &std::path::Path, port: u16, env: &[(&str, &str)]) -> HubProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_trailhub"))
        .env("TRAILHUB_SEAL_EVENTS", "512")
        .envs(env.iter().copied())
        .env("TRAILHUB_DATA_DIR", dir)
        .env("TRAILHUB_LISTEN", format!("127.0.0.1:{port}"))
        .env("TRAILHUB_ADMIN_TOKEN", ADMIN)
        .env("TRAILHUB_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("hub process starts");
    HubProcess(child)
}

pub async fn wait_ready(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{url}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("hub at {url} did not become ready");
}

/// Events of the `custom` integration per batch, for source ids shaped `b<batch>-e<index>`;
/// panics if any source id is stored twice.
pub async fn events_per_batch(
    http: &reqwest::Client,
    url: &str,
) -> std::collections::HashMap<usize, usize> {
    let text = http
        .get(format!(
            "{url}/api/v1/events/export?format=ndjson&integration=custom"
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("body");
    let mut per_batch = std::collections::HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        let e: Value = serde_json::from_str(line).expect("line");
        let sid = e["source_id"].as_str().expect("source_id").to_string();
        let batch: usize = sid[1..sid.find('-').expect("dash")]
            .parse()
            .expect("batch number");
        *per_batch.entry(batch).or_default() += 1;
        assert!(seen.insert(sid.clone()), "{sid} stored twice");
    }
    per_batch
}
