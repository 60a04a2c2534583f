//! The hub under test: in-process on a data dir (`start_hub`, or `TestHub` with a temp dir of
//! its own and request helpers), or the real binary as a child process (`HubProcess`); the `Api`
//! client with its wait helpers; the hub's captured logs for leak checks

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use trailhub::config::PollTuning;
use trailhub::config::{Secret, Settings};
use trailhub::server::RunningHub;

use super::data::ndjson;

/// The admin token of every test hub, in-process or child.
pub const ADMIN: &str = "test-admin-token-for-test-hubs";

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

/// Engine knobs short enough that retries and backoffs fit in a test.
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

/// An in-process hub on `dir` (restart it on the same dir to test recovery).
pub async fn start_hub(dir: &Path) -> RunningHub {
    start_hub_with(dir, |_| {}).await
}

/// The same with settings of its own (engine knobs, master key, limits).
pub async fn start_hub_with(dir: &Path, adjust: impl FnOnce(&mut Settings)) -> RunningHub {
    init_logs();
    let mut settings = Settings::for_data_dir(dir);
    settings.admin_token = Some(Secret::new(ADMIN));
    settings.cache_mb = 16;
    // seal small segments, so that tests cross the tail/segment boundary
    settings.seal_events = 256;
    settings.poll = fast_tuning();
    adjust(&mut settings);
    trailhub::server::start(settings).await.expect("hub starts")
}

/// An in-process hub on a temp dir of its own, with request helpers.
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
        let hub = start_hub_with(dir.path(), adjust).await;
        TestHub {
            url: hub.url(),
            hub: Some(hub),
            http: reqwest::Client::new(),
            dir,
        }
    }

    /// A hub started on `dir` (a restart of a stopped `TestHub`).
    pub fn adopt(hub: RunningHub, dir: tempfile::TempDir) -> TestHub {
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

    /// The hub's export jobs and reports, for tests that connect report delivery.
    pub fn jobs(&self) -> &trailhub::jobs::Jobs {
        &self.hub.as_ref().expect("running").jobs
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
        answer(req).await
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
        answer(req).await
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

/// Status and body of an answer: JSON, or the text as a JSON string.
async fn answer(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The API of a running hub as one token, with waits on an integration's state.
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
        Api::at(&hub.url(), token)
    }

    /// A hub at `base` (a child process, say).
    pub fn at(base: &str, token: &str) -> Api {
        Api {
            base: base.to_string(),
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

    /// `PATCH /api/v1/integrations/{id}` with `changes`.
    pub async fn patch(&self, id: &str, changes: Value) -> (u16, Value) {
        self.json(
            reqwest::Method::PATCH,
            &format!("/api/v1/integrations/{id}"),
            Some(changes),
        )
        .await
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

    /// Creates an integration and returns its id.
    pub async fn create(&self, body: Value) -> String {
        let created = self.create_integration(body).await;
        created["id"].as_str().expect("id").to_string()
    }

    /// Asks for a cycle now (idle backoff would otherwise skip fires).
    pub async fn poll_now(&self, id: &str) {
        let (status, _) = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/integrations/{id}/poll"),
                None,
            )
            .await;
        assert_eq!(status, 202);
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

    /// The integration's events as the NDJSON export.
    pub async fn export(&self, integration: &str) -> String {
        let (status, text) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/v1/events/export?format=ndjson&integration={integration}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "export: {text}");
        text
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

    /// Waits until the integration is live.
    pub async fn wait_live(&self, id: &str) -> Value {
        self.wait_for(id, "live", 10, |v| v["state"] == "live")
            .await
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

/// The `trailhub_webhook_deliveries_total` count of an integration and result in a `/metrics`
/// text (0 when absent).
pub fn webhook_metric(text: &str, integration: &str, result: &str) -> u64 {
    let needle = format!(
        "trailhub_webhook_deliveries_total{{integration=\"{integration}\",result=\"{result}\"}} "
    );
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The real binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_trailhub");

/// Runs the CLI on a (stopped hub's) data dir: whether it exited 0, and stdout then stderr.
pub fn cli(dir: &Path, args: &[&str]) -> (bool, String) {
    cli_with(dir, args, &[])
}

/// The same with environment variables of its own.
pub fn cli_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("cli runs");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `trailhub verify --export` on `bundle` (an evidence bundle's NDJSON) with `key`, in a temp
/// dir of its own: no hub, no data dir.
pub fn verify_export(bundle: &[u8], key: &str) -> (bool, String) {
    let outside = tempfile::tempdir().expect("tempdir");
    let file = outside.path().join("bundle.ndjson");
    std::fs::write(&file, bundle).expect("write");
    cli(
        outside.path(),
        &[
            "verify",
            "--export",
            file.to_str().expect("path"),
            "--key",
            key,
        ],
    )
}

/// POSTs `lines` as NDJSON to the ingest API of the hub at `url`.
pub async fn post_events(http: &reqwest::Client, url: &str, lines: &[Value]) -> StatusCode {
    http.post(format!("{url}/api/v1/events"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/x-ndjson")
        .body(ndjson(lines))
        .send()
        .await
        .expect("sent")
        .status()
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The real binary serving as a child process, for tests that kill it or read its files;
/// killed when dropped so that a failing test leaves none behind.
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

impl HubProcess {
    pub fn spawn(dir: &Path, port: u16) -> HubProcess {
        HubProcess::spawn_with(dir, port, &[])
    }

    /// With more environment (`TRAILHUB_*` settings), taking precedence over the defaults.
    pub fn spawn_with(dir: &Path, port: u16, env: &[(&str, &str)]) -> HubProcess {
        let child = Command::new(BIN)
            .arg("serve")
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
}

/// Waits until the hub at `url` answers its health check.
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
pub async fn events_per_batch(url: &str) -> std::collections::HashMap<usize, usize> {
    let text = Api::at(url, ADMIN).export("custom").await;
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
