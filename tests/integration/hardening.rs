//! Issue 7, "Hardening": one request must never take the hub down, leak a secret or poison an
//! export. Each test pins one item of the issue and failed on the code before its fix.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::data::*;
use crate::support::hub::*;

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or("")
}

// ---- item 1: every time input is clamped to 1970..=9999 with checked arithmetic ----

#[tokio::test]
async fn absurd_time_ranges_are_refused_by_name_and_never_overflow() {
    let hub = TestHub::start().await;
    hub.ingest(&varied_events("t", 20, 3_600, 1)).await;
    // the issue's reproduction: overflowed the bucket arithmetic and allocated until the process
    // died (release) or panicked (debug)
    let cases = [
        (
            "/api/v1/events/histogram?since=9223372036854s&until=9999-12-31T00:00:00Z&bucket=1h",
            "since",
        ),
        ("/api/v1/events/histogram?since=9223372036854775807s", "since"),
        ("/api/v1/events/histogram?since=99999999999999999999999d", "since"),
        ("/api/v1/events/histogram?until=0001-01-01T00:00:00Z", "until"),
        (
            "/api/v1/events/histogram?since=1970-01-01T00:00:00Z&until=9999-12-31T23:59:59.999999Z&bucket=1m",
            "bucket",
        ),
        ("/api/v1/events/histogram?since=9999-12-31T00:00:00Z", "since"),
        ("/api/v1/events?since=9223372036854s", "since"),
        ("/api/v1/events?until=1969-12-31T23:59:59Z", "until"),
        ("/api/v1/events/export?since=9223372036854775807s", "since"),
    ];
    for (path, field) in cases {
        let (status, body) = hub.get(path, Some(ADMIN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(error_code(&body), "invalid_parameter", "{path}: {body}");
        assert!(
            error_message(&body).starts_with(&format!("`{field}`")),
            "{path}: {body}"
        );
    }
    // the edges of the range are fine
    let (status, body) = hub
        .get(
            "/api/v1/events/histogram?since=1970-01-01T00:00:00Z&until=1970-01-02T00:00:00Z&bucket=1h",
            Some(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["buckets"].as_array().map(Vec::len), Some(24));
    let (status, body) = hub
        .get(
            "/api/v1/events/histogram?since=9999-12-30T00:00:00Z&until=9999-12-31T23:59:59.999999Z&bucket=1d",
            Some(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = hub.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "the hub survived");
}

#[tokio::test]
async fn ingested_times_outside_1970_to_9999_are_rejected_by_line() {
    let hub = TestHub::start().await;
    let line = |time: &str, sid: &str| json!({"time": time, "source_id": sid, "event_type": "t.x", "action": "read", "actor": {"id": "u"}});
    let (status, report) = hub
        .post(
            "/api/v1/events",
            Some(ADMIN),
            "application/x-ndjson",
            ndjson(&[
                line("0001-01-01T00:00:00Z", "ancient"),
                line("1969-12-31T23:59:59.999999Z", "just-before"),
                line("9999-12-31T23:59:59-05:00", "year-10000"),
                line("2024-05-01T00:00:00Z", "fine"),
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["stored"], 1, "{report}");
    assert_eq!(report["rejected_count"], 3, "{report}");
    for r in report["rejected"].as_array().expect("rejected") {
        let e = r["error"].as_str().expect("error");
        assert!(e.starts_with("`time`: outside the accepted range"), "{e}");
    }
}

#[test]
fn vendor_timestamps_outside_the_range_are_skipped_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let page = dir.path().join("page.json");
    let record = |ms: Value, id: &str| json!({"@timestamp": ms, "_document_id": id, "action": "org.add_member", "actor": "octocat"});
    std::fs::write(
        &page,
        Value::Array(vec![
            record(json!(253_402_300_800_000i64), "year-10000"),
            record(json!(-86_400_000), "1969"),
            record(json!(i64::MAX), "overflows-micros"),
            record(json!(1_714_521_600_000i64), "fine"),
        ])
        .to_string(),
    )
    .expect("fixture");
    let out = Command::new(env!("CARGO_BIN_EXE_trailhub"))
        .args(["connectors", "replay", "github"])
        .arg(&page)
        .env("TRAILHUB_LOG", "off")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("\"fine\""), "{stdout}");
    assert_eq!(
        stderr.matches("outside the accepted range").count(),
        2,
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

// ---- item 2: /metrics labels only known integrations and methods ----

/// The series of a metrics text: every sample line without its value.
fn series(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()))
        .collect()
}

async fn unknown_traffic(hub: &TestHub, round: u64) {
    let mut rng = Lcg(round);
    for i in 0..40 {
        let random = format!("r{:x}{:x}", rng.next(), rng.next());
        let (status, body) = hub
            .post(&format!("/hooks/{random}"), None, "application/json", "{}")
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let method = reqwest::Method::from_bytes(format!("M{random}").to_uppercase().as_bytes())
            .expect("a token is a method");
        let resp = hub
            .http
            .request(method, format!("{}/api/v1/events", hub.url))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("sent");
        assert!(resp.status().is_client_error(), "{}", resp.status());
        let resp = hub
            .http
            .get(format!("{}/{random}/{i}", hub.url))
            .send()
            .await
            .expect("sent");
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn random_hook_paths_and_invented_methods_do_not_grow_metrics() {
    let hub = TestHub::start().await;
    unknown_traffic(&hub, 1).await;
    // the scrape itself is counted: once its series exist, a scrape adds none
    hub.get_text("/metrics").await;
    let (_, first) = hub.get_text("/metrics").await;
    unknown_traffic(&hub, 2).await;
    let (_, second) = hub.get_text("/metrics").await;
    assert_eq!(series(&first), series(&second), "new series appeared");
    for text in [&first, &second] {
        assert!(!text.contains("integration=\"r"), "{text}");
        assert!(!text.contains("method=\"M"), "{text}");
    }
    assert!(
        second.contains("integration=\"unknown\",result=\"not_found\""),
        "{second}"
    );
    assert!(second.contains("method=\"other\""), "{second}");
    assert!(second.contains("route=\"unmatched\""), "{second}");
}

// ---- item 3: timeouts, a connection cap, a webhook body cap and a delivery limit ----

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound on how long a test waits for something the hub must do; hitting it is the failure
/// (never a timing assertion: the hub's own timeouts are short and configured per test).
const PATIENCE: Duration = Duration::from_secs(20);

fn addr(hub: &TestHub) -> String {
    hub.url.trim_start_matches("http://").to_string()
}

/// Reads until the hub closes the connection (or resets it); what it sent before.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test]
async fn a_slowloris_is_disconnected_after_the_header_timeout_and_others_are_served() {
    let hub = TestHub::start_with(|s| s.header_timeout = Duration::from_millis(800)).await;
    let mut slow = TcpStream::connect(addr(&hub)).await.expect("connect");
    let trickle = async {
        // headers that never end, one byte at a time
        let head = b"GET /healthz HTTP/1.1\r\nHost: hub\r\n";
        for i in 0usize.. {
            let byte = if i < head.len() {
                head[i]
            } else {
                b"X-Pad: 1\r\n"[(i - head.len()) % 10]
            };
            if slow.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            // the hub closing its side shows as a readable EOF
            let mut probe = [0u8; 64];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await
            {
                assert!(n == 0 || !probe.starts_with(b"HTTP/1.1 200"), "served");
                break;
            }
        }
    };
    let others = async {
        for _ in 0..5 {
            let (status, _) = hub.get("/healthz", None).await;
            assert_eq!(status, StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (closed, ()) = tokio::join!(tokio::time::timeout(PATIENCE, trickle), others);
    assert!(closed.is_ok(), "the slowloris connection was never closed");
    let resp = reqwest::get(format!("{}/healthz", hub.url))
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_body_that_never_ends_is_answered_408() {
    let hub = TestHub::start_with(|s| s.body_timeout = Duration::from_millis(800)).await;
    let mut stream = TcpStream::connect(addr(&hub)).await.expect("connect");
    let head = format!(
        "POST /api/v1/events HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/x-ndjson\r\nContent-Length: 1000\r\n\r\n{{\"time\":"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = tokio::time::timeout(PATIENCE, read_until_closed(&mut stream))
        .await
        .expect("the hub gave up on the body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
    // the same through axum's own body extractor (the admin JSON routes)
    let mut stream = TcpStream::connect(addr(&hub)).await.expect("connect");
    let head = format!(
        "POST /api/v1/tokens HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"name\":"
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let answer = tokio::time::timeout(PATIENCE, read_until_closed(&mut stream))
        .await
        .expect("the hub gave up on the body");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_with_503_and_the_hub_keeps_serving() {
    let hub = TestHub::start_with(|s| s.max_connections = 2).await;
    // two connections that hold their slots (the default header timeout is 10 s)
    let held = [
        TcpStream::connect(addr(&hub)).await.expect("connect"),
        TcpStream::connect(addr(&hub)).await.expect("connect"),
    ];
    let fresh = reqwest::Client::new();
    let resp = fresh
        .get(format!("{}/healthz", hub.url))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = resp.json().await.expect("JSON error");
    assert_eq!(error_code(&body), "unavailable", "{body}");
    drop(held);
    // once the slots are free, requests are served again
    let served = async {
        loop {
            let resp = reqwest::Client::new()
                .get(format!("{}/metrics", hub.url))
                .send()
                .await
                .expect("answered");
            if resp.status() == StatusCode::OK {
                return resp.text().await.expect("text");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let metrics = tokio::time::timeout(PATIENCE, served)
        .await
        .expect("served again");
    assert!(
        metrics.lines().any(
            |l| l.starts_with("trailhub_http_connections_refused_total ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

/// An in-house `webhook` integration and its signing secret.
async fn webhook_integration(hub: &TestHub) -> (String, trailhub::config::Secret) {
    let secret = trailhub::webhooks::new_standard_webhooks_secret();
    let (status, created) = hub
        .post(
            "/api/v1/integrations",
            Some(ADMIN),
            "application/json",
            json!({"name": "billing-app", "connector": "webhook", "credentials": {"signing_secret": secret.expose()}})
                .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    (created["id"].as_str().expect("id").to_string(), secret)
}

fn forged_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    let now = chrono::Utc::now().timestamp().to_string();
    h.insert("content-type", "application/json".parse().expect("value"));
    h.insert("webhook-id", "msg_forged".parse().expect("value"));
    h.insert("webhook-timestamp", now.parse().expect("value"));
    h.insert(
        "webhook-signature",
        "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
            .parse()
            .expect("value"),
    );
    h
}

#[tokio::test]
async fn an_oversized_webhook_delivery_is_refused_413_before_its_signature_is_checked() {
    let hub = TestHub::start().await;
    let (id, secret) = webhook_integration(&hub).await;
    let url = format!("{}/hooks/{id}", hub.url);
    // 1 MiB and one byte, declared up front
    let big = format!("[{}]", " ".repeat(1024 * 1024 - 1));
    // far more than the socket buffers hold: the client is still writing when the hub answers,
    // and must get the answer rather than a broken pipe
    let huge = format!("[{}]", " ".repeat(24 * 1024 * 1024));
    let resp = hub
        .http
        .post(&url)
        .headers(forged_headers())
        .body(big.clone())
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = resp.json().await.expect("JSON error");
    assert_eq!(error_code(&body), "payload_too_large", "{body}");
    let resp = hub
        .http
        .post(&url)
        .headers(forged_headers())
        .body(huge.clone())
        .send()
        .await
        .expect("answered, not reset");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // the same, streamed without a Content-Length: refused while reading
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = huge
        .as_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let resp = hub
        .http
        .post(&url)
        .headers(forged_headers())
        .body(reqwest::Body::wrap_stream(futures_stream(chunks)))
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let (_, metrics) = hub.get_text("/metrics").await;
    assert_eq!(
        webhook_metric(&metrics, &id, "bad_signature"),
        0,
        "{metrics}"
    );
    assert_eq!(
        webhook_metric(&metrics, &id, "payload_too_large"),
        3,
        "{metrics}"
    );
    // a genuine delivery under the cap is still stored
    let event = json!({"time": "2024-05-01T10:00:00Z", "source_id": "inv-1", "event_type": "invoice.refund", "action": "update", "actor": {"id": "u-7"}}).to_string();
    let now = chrono::Utc::now().timestamp();
    let signature =
        trailhub::webhooks::sign_standard_webhook(&secret, "msg_1", now, event.as_bytes())
            .expect("signs");
    let resp = hub
        .http
        .post(&url)
        .header("content-type", "application/json")
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(event)
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::OK);
}

fn futures_stream<T: Send + 'static>(
    items: Vec<T>,
) -> impl tokio_stream::Stream<Item = T> + Send + 'static {
    tokio_stream::iter(items)
}

#[tokio::test]
async fn deliveries_past_the_concurrency_limit_get_503_with_retry_after() {
    let hub = TestHub::start_with(|s| s.webhook_concurrency = 1).await;
    let (id, _) = webhook_integration(&hub).await;
    // one delivery that holds the only slot: its body is still arriving
    let mut slow = TcpStream::connect(addr(&hub)).await.expect("connect");
    let head = format!(
        "POST /hooks/{id} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n["
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    let in_flight = async {
        loop {
            let (_, metrics) = hub.get_text("/metrics").await;
            if metrics
                .lines()
                .any(|l| l == "trailhub_webhook_deliveries_in_flight 1")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, in_flight)
        .await
        .expect("the slow delivery is being read");
    let resp = hub
        .http
        .post(format!("{}/hooks/{id}", hub.url))
        .headers(forged_headers())
        .body("[]")
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let body: Value = resp.json().await.expect("JSON error");
    assert_eq!(error_code(&body), "unavailable", "{body}");
    // the slot frees when the slow delivery ends: the next one is verified (and refused as forged)
    drop(slow);
    let verified = async {
        loop {
            let resp = hub
                .http
                .post(format!("{}/hooks/{id}", hub.url))
                .headers(forged_headers())
                .body("[]")
                .send()
                .await
                .expect("answered");
            if resp.status() == StatusCode::UNAUTHORIZED {
                return;
            }
            assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(PATIENCE, verified)
        .await
        .expect("the slot was freed");
}

// ---- item 4: CSV exports carry no spreadsheet formulas ----

#[tokio::test]
async fn csv_exports_neutralise_cells_that_would_start_a_formula() {
    let hub = TestHub::start().await;
    let evil_name = "=HYPERLINK(\"http://evil\",\"x\")";
    let agents = [
        "@SUM(1+1)*cmd|' /C calc'!A0",
        "+cmd",
        "-2+3",
        "\t=1",
        "\r=1",
    ];
    let mut lines: Vec<Value> = agents
        .iter()
        .enumerate()
        .map(|(i, ua)| {
            json!({"time": rfc3339(BASE_SECS + i as i64, 0), "source_id": format!("evil-{i}"),
                "event_type": "user.session.start", "action": "login", "outcome": "failure",
                "actor": {"id": format!("attacker-{i}"), "name": evil_name, "user_agent": ua},
                "description": "-5"})
        })
        .collect();
    lines.push(json!({"time": rfc3339(BASE_SECS + 100, 0), "source_id": "plain",
        "event_type": "user.session.start", "action": "login",
        "actor": {"id": "alice", "name": "Alice", "user_agent": "Mozilla/5.0"}, "description": "ok"}));
    hub.ingest(&lines).await;
    let (status, text) = hub
        .get_text("/api/v1/events/export?format=csv&integration=custom")
        .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    // every cell quoted, as OWASP recommends
    for line in text.lines().filter(|l| !l.is_empty()) {
        assert!(line.starts_with('"'), "{line:?}");
    }
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("headers").clone();
    let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let (name, ua, desc) = (
        col("actor_name"),
        col("actor_user_agent"),
        col("description"),
    );
    let mut rows = 0;
    for record in reader.records() {
        let record = record.expect("record");
        for cell in record.iter() {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "a formula cell: {cell:?} in {record:?}"
            );
        }
        if record[col("actor_id")].starts_with("attacker-") {
            assert_eq!(&record[name], format!("'{evil_name}"));
            assert!(agents.contains(&&record[ua][1..]), "{:?}", &record[ua]);
            assert!(record[ua].starts_with('\''));
            assert_eq!(&record[desc], "'-5");
        } else {
            assert_eq!(&record[name], "Alice");
            assert_eq!(&record[ua], "Mozilla/5.0");
        }
        rows += 1;
    }
    assert_eq!(rows, agents.len() + 1);
}

// ---- item 8: health tells the truth; /readyz; the 507 text says what helps ----

async fn post_one(hub: &TestHub, sid: &str) -> (StatusCode, Value) {
    hub.post(
        "/api/v1/events",
        Some(ADMIN),
        "application/x-ndjson",
        ndjson(&[json!({"time": "2024-05-01T00:00:00Z", "source_id": sid,
            "event_type": "t.x", "action": "read", "actor": {"id": "u"}})]),
    )
    .await
}

#[tokio::test]
async fn below_the_free_space_reserve_health_is_degraded_and_writes_resume_by_themselves() {
    // a reserve no disk has: every write is below it
    let hub = TestHub::start_with(|s| s.min_free_mb = 1 << 30).await;
    let (status, body) = post_one(&hub, "a").await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(error_code(&body), "storage_full");
    let message = error_message(&body);
    assert!(message.contains("resume by themselves"), "{message}");
    assert!(!message.contains("restart"), "{message}");
    let (status, health) = hub.get("/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["status"], "degraded");
    assert!(
        health["reason"]
            .as_str()
            .is_some_and(|r| r.contains("below the reserve")),
        "{health}"
    );
    // reads go on, and the hub is still ready for them
    let (status, _) = hub.get("/api/v1/events", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, ready) = hub.get("/readyz", None).await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
}

#[tokio::test]
async fn after_a_failed_write_health_is_degraded_and_the_507_says_only_a_restart_helps() {
    let hub = TestHub::start().await;
    let (status, health) = hub.get("/healthz", None).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    // what the store records when sled's write meets a full disk (src/store: StoreStats::fail)
    *hub.store().stats().failure.lock().expect("lock") = Some(
        trailhub::store::StoreError::StorageFull("No space left on device (os error 28)".into()),
    );
    let (status, body) = post_one(&hub, "b").await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert_eq!(error_code(&body), "storage_full");
    let message = error_message(&body);
    assert!(message.contains("until the hub is restarted"), "{message}");
    assert!(!message.contains("resume by themselves"), "{message}");
    assert!(!message.contains("retry when space is freed"), "{message}");
    let (status, health) = hub.get("/healthz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{health}");
    assert_eq!(health["status"], "degraded");
    assert!(
        health["reason"]
            .as_str()
            .is_some_and(|r| r.contains("restart")),
        "{health}"
    );
}

#[tokio::test]
async fn readyz_answers_503_while_the_hub_shuts_down() {
    let hub = TestHub::start_with(|s| s.shutdown_drain = Duration::from_secs(3)).await;
    let url = hub.url.clone();
    let (status, ready) = hub.get("/readyz", None).await;
    assert_eq!(
        (status, ready["status"].as_str()),
        (StatusCode::OK, Some("ready"))
    );
    let stopping = tokio::spawn(hub.stop());
    let not_ready = async {
        loop {
            let resp = reqwest::get(format!("{url}/readyz"))
                .await
                .expect("answered");
            if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                return resp.json::<Value>().await.expect("JSON");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let body = tokio::time::timeout(PATIENCE, not_ready)
        .await
        .expect("/readyz turned 503 during the drain");
    assert_eq!(body["status"], "shutting_down");
    stopping.await.expect("stop task");
}

// ---- item 9: the smaller ones ----

#[tokio::test]
async fn errors_axum_answers_by_itself_use_the_json_error_shape() {
    let hub = TestHub::start().await;
    // past axum's default 2 MB limit on the admin JSON bodies
    let huge = format!(
        "{{\"name\": \"{}\", \"role\": \"viewer\"}}",
        "x".repeat(24 << 20)
    );
    for path in ["/api/v1/tokens", "/api/v1/integrations"] {
        let (status, body) = hub
            .post(path, Some(ADMIN), "application/json", huge.clone())
            .await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {body}");
        assert_eq!(error_code(&body), "payload_too_large", "{path}: {body}");
    }
    // a path parameter that is not UTF-8
    let (status, body) = hub.get("/api/v1/events/%FF%FE", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "invalid_parameter", "{body}");
    assert!(!error_message(&body).is_empty(), "{body}");
}

#[tokio::test]
async fn repeated_wrong_tokens_from_one_address_get_429() {
    let hub = TestHub::start_with(|s| s.auth_failure_limit = 3).await;
    for i in 0..3 {
        let (status, body) = hub.get("/api/v1/events", Some(&format!("guess-{i}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    let resp = hub
        .http
        .get(format!("{}/api/v1/events", hub.url))
        .bearer_auth("guess-3")
        .send()
        .await
        .expect("answered");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=60).contains(&wait), "{wait}");
    let body: Value = resp.json().await.expect("JSON error");
    assert_eq!(error_code(&body), "too_many_requests", "{body}");
    // while blocked, even the right token is not looked at: a guess reveals nothing
    let (status, _) = hub.get("/api/v1/events", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // what needs no token is not affected
    let (status, _) = hub.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn a_short_admin_token_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailhub"))
        .arg("serve")
        .env("TRAILHUB_DATA_DIR", dir.path())
        .env("TRAILHUB_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("TRAILHUB_ADMIN_TOKEN", "x")
        .env("TRAILHUB_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = status.expect("the hub refused to start with a one-character admin token");
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read");
    assert!(stderr.contains("at least 24 characters"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_bootstrap_token_file_is_0600_even_when_it_already_existed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let token_file = data.join("admin.token");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    // a file left there before the first start (e.g. created by a provisioning script)
    std::fs::write(&token_file, "placeholder\n").expect("write");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let start = || {
        let mut settings = trailhub::config::Settings::for_data_dir(&data);
        settings.admin_token = None;
        settings.cache_mb = 16;
        trailhub::server::start(settings)
    };
    let hub = start().await.expect("starts");
    let minted = hub.minted_admin_token.clone().expect("minted a token");
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(
        std::fs::read_to_string(&token_file).expect("read").trim(),
        minted.expose()
    );
    hub.stop().await.expect("stops");
    // loosened while the hub was down: tightened again at the next start
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let hub = start().await.expect("starts again");
    assert!(hub.minted_admin_token.is_none());
    assert_eq!(mode(&token_file), 0o600);
    hub.stop().await.expect("stops");
}

fn cli(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_trailhub"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("TRAILHUB_ADMIN_TOKEN")
        .env_remove("TRAILHUB_TOKEN")
        .env_remove("TRAILHUB_URL")
        .env("TRAILHUB_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("TRAILHUB_LOG", "off")
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_token_minted_on_the_local_command_line_is_an_audit_event() {
    let hub = TestHub::start().await;
    let dir = hub.stop().await;
    let (ok, out, err) = cli(
        dir.path(),
        &[
            "tokens",
            "create",
            "--name",
            "ci pipeline",
            "--role",
            "ingest",
        ],
    );
    assert!(ok, "{out}\n{err}");
    let token_id = out.split_whitespace().next().expect("token id").to_string();
    assert!(token_id.starts_with("tok_"), "{out}");
    let (ok, out, err) = cli(
        dir.path(),
        &["events", "--integration", "trailhub", "--format", "json"],
    );
    assert!(ok, "{out}\n{err}");
    let page: Value = serde_json::from_str(&out).expect("JSON page");
    let minted: Vec<&Value> = page["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event_type"] == "token.create")
        .collect();
    assert_eq!(minted.len(), 1, "{page}");
    let e = minted[0];
    assert_eq!(e["targets"][0]["id"], token_id.as_str(), "{e}");
    assert_eq!(e["actor"]["id"], "local-cli", "{e}");
    assert_eq!(e["category"], "authorization");
}

/// Runs `trailhub serve` until it is healthy, then stops it; what it logged.
async fn serve_once(data: &std::path::Path, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let port = free_port();
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailhub"))
        .arg("serve")
        .env("TRAILHUB_DATA_DIR", data)
        .env("TRAILHUB_LISTEN", format!("127.0.0.1:{port}"))
        .env("TRAILHUB_ADMIN_TOKEN", ADMIN)
        .env("TRAILHUB_LOG", "warn")
        .env_remove("TRAILHUB_MASTER_KEY")
        .env_remove("TRAILHUB_MASTER_KEY_FILE")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log.reopen().expect("log"))
        .spawn()
        .expect("starts");
    let url = format!("http://127.0.0.1:{port}");
    let healthy = async {
        loop {
            if let Ok(r) = reqwest::get(format!("{url}/healthz")).await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the hub exited ({status}): {}",
                    std::fs::read_to_string(log.path()).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(PATIENCE, healthy)
        .await
        .expect("the hub came up");
    let _ = child.kill();
    let _ = child.wait();
    std::fs::read_to_string(log.path()).expect("log")
}

#[tokio::test]
async fn the_master_key_can_live_outside_the_data_dir_and_inside_it_is_warned_about() {
    let dir = tempfile::tempdir().expect("tempdir");
    // the default: beside the data, with a warning
    let data = dir.path().join("data");
    let log = serve_once(&data, &[]).await;
    assert!(data.join("master.key").exists());
    assert!(log.contains("master key is inside the data dir"), "{log}");

    // a key file elsewhere: created there (0600), nothing in the data dir, no warning
    let data = dir.path().join("data-2");
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).expect("keys dir");
    let key_file = keys.join("trailhub.key");
    let log = serve_once(&data, &[("TRAILHUB_MASTER_KEY_FILE", key_file.as_os_str())]).await;
    assert!(key_file.exists(), "{log}");
    assert!(!data.join("master.key").exists());
    assert!(!log.contains("master key is inside the data dir"), "{log}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // pointing at a new place while the old key is still in the data dir: refused, not a new key
    let elsewhere = keys.join("moved.key");
    let out = Command::new(env!("CARGO_BIN_EXE_trailhub"))
        .arg("serve")
        .env("TRAILHUB_DATA_DIR", dir.path().join("data"))
        .env("TRAILHUB_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("TRAILHUB_ADMIN_TOKEN", ADMIN)
        .env("TRAILHUB_MASTER_KEY_FILE", &elsewhere)
        .env("TRAILHUB_LOG", "off")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("move that file"), "{stderr}");
    assert!(!elsewhere.exists());
}

#[tokio::test]
async fn a_refused_body_is_read_to_its_end_so_the_client_sees_the_answer() {
    let hub = TestHub::start().await;
    let (id, _) = webhook_integration(&hub).await;
    let mut stream = TcpStream::connect(addr(&hub)).await.expect("connect");
    let size = 8 * 1024 * 1024;
    let head = format!(
        "POST /hooks/{id} HTTP/1.1\r\nHost: hub\r\nContent-Type: application/json\r\n\
         Content-Length: {size}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    // the hub answers at once, from the declared length ...
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("payload_too_large") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
            .await
            .expect("answered")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 413"));
    // ... and keeps reading what the client still sends, instead of resetting the connection
    let chunk = vec![b' '; 64 * 1024];
    for _ in 0..size / chunk.len() {
        tokio::time::timeout(PATIENCE, stream.write_all(&chunk))
            .await
            .expect("the hub reads on")
            .expect("no broken pipe");
    }
    stream.shutdown().await.expect("half-close");
    let rest = tokio::time::timeout(PATIENCE, read_until_closed(&mut stream))
        .await
        .expect("closed in the end");
    drop(rest);
}
