//! kill -9 in the middle of ingest: every acknowledged batch survives, no batch is half
//! stored, nothing is doubled, and the chain still verifies

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

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

    for round in 0..3 {
        let mut child = spawn_hub(dir.path(), port);
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
        let mut child = spawn_hub(dir.path(), port);
        wait_ready(&http, &url).await;
        let per_batch = events_per_batch(&http, &url).await;
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
        let integrity: Value = http
            .get(format!("{url}/api/v1/integrity"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("integrity")
            .json()
            .await
            .expect("json");
        assert_eq!(integrity["ok"], true, "round {round}: {integrity}");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    // Re-posting everything after the crashes stores each event exactly once.
    let mut child = spawn_hub(dir.path(), port);
    wait_ready(&http, &url).await;
    for batch in 1..=130 {
        assert!(post_batch(&http, &url, batch).await, "repost {batch}");
    }
    let per_batch = events_per_batch(&http, &url).await;
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
