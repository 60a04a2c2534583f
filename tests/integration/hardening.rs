//! Issue 7, "Hardening": one request must never take the hub down, leak a secret or poison an
//! export. Each test pins one item of the issue and failed on the code before its fix.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;

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
