//! Spawning a hub on port 0 with a temp data dir, calling its API, and capturing its logs

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::Value;
use trailhub::config::{Secret, Settings};
use trailhub::connectors::engine::PollTuning;
use trailhub::server::RunningHub;

pub const ADMIN: &str = "test-admin-token-for-helper-hubs";

/// Everything the hub logged during this test process (all tests), for leak checks.
pub fn captured_logs() -> String {
    let buf = log_buffer();
    let bytes = buf.lock().map(|b| b.clone()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

#[derive(Clone)]
struct BufWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(data);
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let buf = log_buffer().clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trailhub=debug"))
            .with_writer(move || BufWriter(buf.clone()))
            .with_ansi(false)
            .try_init();
    });
}

pub fn fast_tuning() -> PollTuning {
    PollTuning {
        request_timeout: Duration::from_millis(800),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
        max_retries: 3,
        max_wait: Duration::from_secs(5),
        workers: 4,
        error_backoff_max: Duration::from_secs(2),
        idle_backoff_max: Duration::from_secs(2),
        // one sequential walk, as these tests script it; backfill windows have tests of their own
        backfill_slices: 1,
        ..PollTuning::default()
    }
}

pub async fn spawn_hub(dir: &Path) -> RunningHub {
    spawn_hub_with_key(dir, None).await
}

/// A hub with its own engine knobs.
pub async fn spawn_hub_tuned(dir: &Path, poll: PollTuning) -> RunningHub {
    init_logs();
    let mut settings = Settings::for_data_dir(dir);
    settings.admin_token = Some(Secret::new(ADMIN));
    settings.seal_events = 256;
    settings.poll = poll;
    trailhub::server::start(settings).await.expect("hub starts")
}

/// A hub whose master key comes from `TRAILHUB_MASTER_KEY` (as settings) rather than the file.
pub async fn spawn_hub_with_key(dir: &Path, master_key: Option<&str>) -> RunningHub {
    init_logs();
    let mut settings = Settings::for_data_dir(dir);
    settings.admin_token = Some(Secret::new(ADMIN));
    settings.master_key = master_key.map(Secret::new);
    settings.seal_events = 256;
    settings.poll = fast_tuning();
    trailhub::server::start(settings).await.expect("hub starts")
}

pub struct Api {
    pub base: String,
    pub token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(hub: &RunningHub) -> Api {
        Api::with_token(hub, ADMIN)
    }

    pub fn with_token(hub: &RunningHub, token: &str) -> Api {
        Api {
            base: hub.url(),
            token: token.to_string(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("hub answers");
        let status = resp.status().as_u16();
        (status, resp.text().await.expect("body"))
    }

    pub async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, text) = self.call(method, path, body).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.json(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    pub async fn create_integration(&self, body: Value) -> Value {
        let (status, v) = self
            .json(reqwest::Method::POST, "/api/v1/integrations", Some(body))
            .await;
        assert_eq!(status, 201, "create: {v}");
        v
    }

    /// Every event of an integration (newest first), following the page cursor.
    pub async fn events(&self, integration: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/events?integration={integration}&limit=1000");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let page = self.get(&path).await;
            out.extend(page["events"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    pub async fn integration(&self, id: &str) -> Value {
        self.get(&format!("/api/v1/integrations/{id}")).await
    }

    /// Waits until `check` holds for the integration object, or panics with the last one.
    pub async fn wait_for(
        &self,
        id: &str,
        what: &str,
        secs: u64,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.integration(id).await;
            if check(&v) {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}: {v:#}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the integration holds `n` events.
    pub async fn wait_for_events(&self, id: &str, n: usize, secs: u64) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let events = self.events(id).await;
            if events.len() >= n {
                return events;
            }
            if tokio::time::Instant::now() > deadline {
                let v = self.integration(id).await;
                panic!(
                    "timed out waiting for {n} events, have {}: {v:#}",
                    events.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Asserts no source id appears twice and returns them.
pub fn unique_source_ids(events: &[Value]) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    for e in events {
        let id = e["source_id"].as_str().expect("source_id").to_string();
        assert!(seen.insert(id.clone()), "event {id} stored twice");
    }
    seen
}

/// The files under `dir` (recursively) whose bytes contain `needle`.
pub fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}
