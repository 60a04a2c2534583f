//! kill -9 in the middle of ingest: every acknowledged batch survives, no batch is half
//! stored, nothing is doubled, and the chain still verifies

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::data::*;
use crate::support::hub::*;

const BATCH: usize = 20;

fn batch_lines(batch: usize) -> String {
    let lines: Vec<Value> = (0..BATCH)
        .map(|i| {
            json!({
                "time": rfc3339(BASE_SECS + (batch * BATCH + i) as i64, 0),
                "source_id": format!("b{batch}-e{i}"),
                "event_type": "crash.test", "action": "create",
                "actor": {"id": format!("writer-{}", batch % 4)},
                "description": "x".repeat(300),
            })
        })
        .collect();
    ndjson(&lines)
}

async fn post_batch(http: &reqwest::Client, url: &str, batch: usize) -> bool {
    let sent = http
        .post(format!("{url}/api/v1/events"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/x-ndjson")
        .body(batch_lines(batch))
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {
            let body: Value = r.json().await.unwrap_or(Value::Null);
            body["rejected_count"] == 0
        }
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_ingest_loses_nothing_acknowledged_and_doubles_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let total_batches = 400;

    // checkpoints every 50 events: many are signed mid-ingest, right up to the kill
    let frequent = [("TRAILHUB_CHECKPOINT_EVERY_EVENTS", "50")];
    for round in 0..3 {
        let mut child = HubProcess::spawn_with(dir.path(), port, &frequent);
        wait_ready(&http, &url).await;
        let acked = Arc::new(Mutex::new(HashSet::new()));
        let next = Arc::new(Mutex::new(round * 40));
        let pid = child.id() as i32;
        let kill_after = 25 + round * 5;
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let (http, url, acked, next) =
                    (http.clone(), url.clone(), acked.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let batch = {
                            let mut n = next.lock().expect("lock");
                            *n += 1;
                            *n
                        };
                        if batch >= total_batches {
                            return;
                        }
                        if !post_batch(&http, &url, batch).await {
                            return;
                        }
                        let mut acked = acked.lock().expect("lock");
                        acked.insert(batch);
                        if acked.len() == kill_after {
                            // The instant an acknowledgement arrives, with other batches in flight.
                            // SAFETY: kill(2) on a child pid we spawned and have not reaped.
                            unsafe { libc::kill(pid, libc::SIGKILL) };
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            let _ = w.await;
        }
        child.wait().expect("reaped");
        let acked: HashSet<usize> = acked.lock().expect("lock").clone();
        assert!(
            !acked.is_empty(),
            "round {round}: nothing was acknowledged before the kill"
        );

        // Restart and check.
        let mut child = HubProcess::spawn_with(dir.path(), port, &frequent);
        wait_ready(&http, &url).await;
        let per_batch = events_per_batch(&url).await;
        for b in &acked {
            assert_eq!(
                per_batch.get(b).copied(),
                Some(BATCH),
                "round {round}: acknowledged batch {b} incomplete"
            );
        }
        for (b, n) in &per_batch {
            assert_eq!(
                *n, BATCH,
                "round {round}: batch {b} half stored ({n} of {BATCH})"
            );
        }
        let integrity = Api::at(&url, ADMIN).get("/api/v1/integrity").await;
        assert_eq!(integrity["ok"], true, "round {round}: {integrity}");
        // only what was on disk was signed: every checkpoint from before the kill still holds
        assert!(
            integrity["checkpoints_checked"].as_u64() > Some(0),
            "round {round}: {integrity}"
        );
        let checkpoints = Api::at(&url, ADMIN).get("/api/v1/checkpoints").await;
        assert_eq!(
            checkpoints["signing"]["state"], "ok",
            "round {round}: {checkpoints}"
        );
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    // Re-posting everything after the crashes stores each event exactly once.
    let mut child = HubProcess::spawn(dir.path(), port);
    wait_ready(&http, &url).await;
    for batch in 1..=130 {
        assert!(post_batch(&http, &url, batch).await, "repost {batch}");
    }
    let per_batch = events_per_batch(&url).await;
    assert!(
        (1..=130).all(|b| per_batch.get(&b) == Some(&BATCH)),
        "a re-posted batch is missing or doubled"
    );
    assert!(
        per_batch.values().all(|n| *n == BATCH),
        "a batch is doubled or half stored"
    );
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// One signed delivery of one unified event to the in-house `webhook` connector; true when the
/// hub acknowledged it (2xx: stored and flushed).
async fn deliver(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    secret: &trailhub::config::Secret,
    n: usize,
) -> bool {
    let body = json!({
        "time": rfc3339(BASE_SECS + n as i64, 0), "source_id": format!("hook-{n}"),
        "event_type": "invoice.paid", "action": "update", "actor": {"id": format!("u-{}", n % 5)},
        "description": "y".repeat(200),
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let mut req = http.post(format!("{url}/hooks/{id}")).body(body.clone());
    for (k, v) in crate::webhooks::signed(secret, &format!("msg-{n}"), now, &body) {
        req = req.header(k, v);
    }
    matches!(req.send().await, Ok(r) if r.status().is_success())
}

/// kill -9 during a flood of webhook deliveries from 8 senders: every acknowledged delivery is
/// stored once, a full redelivery stores the rest once, and the integration's count is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_webhook_flood_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut child = HubProcess::spawn_with(dir.path(), port, &[("TRAILHUB_SEAL_EVENTS", "100")]);
    wait_ready(&http, &url).await;
    let secret = trailhub::webhooks::new_standard_webhooks_secret();
    let created: Value = http
        .post(format!("{url}/api/v1/integrations"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "billing", "connector": "webhook", "credentials": {"signing_secret": secret.expose()}}))
        .send()
        .await
        .expect("created")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let total = 2_000;
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let next = Arc::new(Mutex::new(0usize));
    let pid = child.id() as i32;
    let senders: Vec<_> = (0..8)
        .map(|_| {
            let (http, url, id, secret, acked, next) = (
                http.clone(),
                url.clone(),
                id.clone(),
                secret.clone(),
                acked.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let n = {
                        let mut n = next.lock().expect("lock");
                        *n += 1;
                        *n
                    };
                    if n > total || !deliver(&http, &url, &id, &secret, n).await {
                        return;
                    }
                    let mut acked = acked.lock().expect("lock");
                    acked.insert(n);
                    if acked.len() == 400 {
                        // SAFETY: kill(2) on a child pid we spawned and have not reaped.
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            })
        })
        .collect();
    for s in senders {
        let _ = s.await;
    }
    child.wait().expect("reaped");
    let acked: HashSet<usize> = acked.lock().expect("lock").clone();
    assert!(acked.len() >= 400, "{} acknowledged", acked.len());

    let mut child = HubProcess::spawn_with(dir.path(), port, &[("TRAILHUB_SEAL_EVENTS", "100")]);
    wait_ready(&http, &url).await;
    let stored = |text: String| -> HashMap<String, usize> {
        let mut seen = HashMap::new();
        for line in text.lines() {
            let e: Value = serde_json::from_str(line).expect("line");
            *seen
                .entry(e["source_id"].as_str().expect("sid").to_string())
                .or_default() += 1;
        }
        seen
    };
    let api = Api::at(&url, ADMIN);
    let seen = stored(api.export(&id).await);
    for n in &acked {
        assert_eq!(
            seen.get(&format!("hook-{n}")),
            Some(&1),
            "acknowledged delivery {n}"
        );
    }
    assert!(seen.values().all(|c| *c == 1), "a delivery stored twice");
    // the sender redelivers everything: the rest goes in, nothing twice
    let max = acked.iter().max().copied().unwrap_or(0) + 8;
    for n in 1..=max {
        assert!(
            deliver(&http, &url, &id, &secret, n).await,
            "redelivery {n}"
        );
    }
    let seen = stored(api.export(&id).await);
    assert_eq!(seen.len(), max);
    assert!(seen.values().all(|c| *c == 1), "a delivery stored twice");
    let shown = Api::at(&url, ADMIN)
        .get(&format!("/api/v1/integrations/{id}"))
        .await;
    assert_eq!(shown["events_ingested"], max, "{shown}");
    let integrity = Api::at(&url, ADMIN).get("/api/v1/integrity").await;
    assert_eq!(integrity["ok"], true, "{integrity}");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// kill -9 while retention purges: each purge transaction is whole or absent, so after every
/// restart the timeline, the purged count and the histograms agree exactly, the log verifies,
/// and the next run purges what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_purge_keeps_counts_exact_and_the_log_verifiable() {
    const EXPIRED: usize = 3_200;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client");
    let api = Api::at(&url, ADMIN);
    let old =
        trailhub::time::format_micros(trailhub::time::now_micros() - 200 * trailhub::time::DAY);
    let mut child = HubProcess::spawn(dir.path(), port);
    wait_ready(&http, &url).await;
    // many small requests: many blocks, so a purge runs several transactions
    for request in 0..EXPIRED / 16 {
        let lines: Vec<Value> = (0..16)
            .map(|i| {
                json!({"time": old, "source_id": format!("old-{request}-{i}"), "event_type": "sys.tick",
                    "action": "execute", "category": "system", "actor": {"id": "cron"},
                    "description": format!("tick {request}/{i} {}", "y".repeat(200))})
            })
            .collect();
        assert!(post_events(&http, &url, &lines).await.is_success());
    }
    // recent events push the old ones past the seal
    let recent: Vec<Value> = (0..1200)
        .map(|i| {
            json!({"time": trailhub::time::format_micros(trailhub::time::now_micros()),
            "source_id": format!("new-{i}"), "event_type": "cfg.change", "action": "update",
            "category": "configuration", "actor": {"id": "admin"}})
        })
        .collect();
    assert!(post_events(&http, &url, &recent).await.is_success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, dry) = api
            .json(
                reqwest::Method::POST,
                "/api/v1/retention/run?dry_run=true",
                None,
            )
            .await;
        if dry["expired"] == EXPIRED {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never all sealed: {dry}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let since =
        trailhub::time::format_micros(trailhub::time::now_micros() - 400 * trailhub::time::DAY);
    // the kills land in the scan (which a dry run times), just after it, and in the middle of
    // the purge's transactions
    let started = std::time::Instant::now();
    let _ = api
        .json(
            reqwest::Method::POST,
            "/api/v1/retention/run?dry_run=true",
            None,
        )
        .await;
    let scan_ms = started.elapsed().as_millis() as u64;
    eprintln!("a dry run takes {scan_ms} ms");
    let delays = [
        scan_ms / 2,
        scan_ms + 20,
        scan_ms + 80,
        scan_ms + 200,
        scan_ms + 400,
    ];
    for (round, delay_ms) in delays.into_iter().enumerate() {
        let pid = child.id() as i32;
        let run = {
            let http = http.clone();
            let url = url.clone();
            tokio::spawn(async move {
                http.post(format!("{url}/api/v1/retention/run"))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        // SAFETY: kill(2) on a child pid we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = run.await;
        child.wait().expect("reaped");

        child = HubProcess::spawn(dir.path(), port);
        wait_ready(&http, &url).await;
        let integrity = api.get("/api/v1/integrity").await;
        assert_eq!(integrity["ok"], true, "round {round}: {integrity}");
        let storage = api.get("/api/v1/storage").await;
        let purged = storage["events"]["purged"].as_u64().expect("purged");
        let left = all_custom(&api, "category=system").await;
        eprintln!("round {round}: killed {delay_ms} ms into a run: {purged} purged, {left} left");
        assert_eq!(
            left + purged as usize,
            EXPIRED,
            "round {round}: {left} left and {purged} purged"
        );
        // the histogram (day rollups, exact after any crash) counts what the timeline lists
        let hist = api
            .get(&format!(
                "/api/v1/events/histogram?since={since}&bucket=1d&integration=custom"
            ))
            .await;
        let counted: u64 = hist["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|b| b["total"].as_u64().unwrap_or(0))
            .sum();
        let all = api
            .get(&format!("/api/v1/events/histogram?since={since}&bucket=1d"))
            .await;
        let all: u64 = all["buckets"]
            .as_array()
            .expect("buckets")
            .iter()
            .map(|b| b["total"].as_u64().unwrap_or(0))
            .sum();
        let listed = all_custom(&api, "").await;
        assert_eq!(
            counted as usize, listed,
            "round {round}: filtered histogram"
        );
        let everything = count_all(&api).await;
        assert_eq!(all as usize, everything, "round {round}: rollup histogram");
    }
    // the next run finishes the job
    let (status, report) = api
        .json(reqwest::Method::POST, "/api/v1/retention/run", None)
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(all_custom(&api, "category=system").await, 0);
    let storage = api.get("/api/v1/storage").await;
    assert_eq!(storage["events"]["purged"], EXPIRED, "{storage}");
    let integrity = api.get("/api/v1/integrity").await;
    assert_eq!(integrity["ok"], true, "{integrity}");
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// Events of the `custom` integration matching `query`, all pages.
async fn all_custom(api: &Api, query: &str) -> usize {
    let q = if query.is_empty() {
        "integration=custom".to_string()
    } else {
        format!("integration=custom&{query}")
    };
    count_query(api, &q).await
}

async fn count_all(api: &Api) -> usize {
    count_query(api, "").await
}

async fn count_query(api: &Api, query: &str) -> usize {
    let mut n = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/events?limit=1000&{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.get(&path).await;
        n += page["events"].as_array().expect("events").len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return n,
        }
    }
}
