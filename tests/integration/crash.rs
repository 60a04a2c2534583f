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
