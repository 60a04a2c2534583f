//! Webhook load: signed deliveries from many concurrent clients into one integration, each
//! verified, normalised and flushed before its 2xx; then every event is counted once. Prints
//! figures; asserts nothing about time.
//!
//! cargo bench --bench webhooks                # 20,000 deliveries, 32 clients
//! cargo bench --bench webhooks -- 5000        # a quicker run

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use trailhub::config::{Secret, Settings};

const TOKEN: &str = "bench-admin-token";
const CLIENTS: usize = 32;
const SECRET: &str = "bench-hook-secret";

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(n));
}

/// An Okta event-hook delivery carrying one System Log event (the spec's example, new uuid).
fn delivery(template: &Value, i: usize) -> String {
    let mut event = template.clone();
    event["uuid"] = json!(format!("bench-{i:08}-0000-4000-8000-000000000000"));
    event["published"] =
        json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    json!({"eventType": "com.okta.event_hook", "eventId": format!("delivery-{i}"), "data": {"events": [event]}}).to_string()
}

async fn run(n: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::for_data_dir(dir.path());
    settings.admin_token = Some(Secret::new(TOKEN));
    let hub = trailhub::server::start(settings).await.expect("hub");
    let url = hub.url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CLIENTS)
        .build()
        .expect("client");
    let created: Value = http
        .post(format!("{url}/api/v1/integrations"))
        .bearer_auth(TOKEN)
        .json(&json!({
            "name": "okta-hooks", "connector": "okta", "config": {"base_url": "http://127.0.0.1:9"},
            "credentials": {"token": "unused", "webhook_secret": SECRET}, "schedule": "0 0 0 1 1 *", "paused": false,
        }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_string();
    let page: Vec<Value> =
        serde_json::from_str(include_str!("../fixtures/okta/logs/page.json")).expect("fixture");
    let bodies: Arc<Vec<String>> = Arc::new((0..n).map(|i| delivery(&page[0], i)).collect());
    println!("# trailhub webhook benchmark: {n} Okta event-hook deliveries (one event each, {} bytes), {CLIENTS} concurrent clients, {} cores", bodies[0].len(), std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0));

    for (label, count) in [
        ("first delivery", n),
        ("redelivery of the first 2,000", n.min(2000)),
    ] {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (http, url, id, bodies, next) = (
                    http.clone(),
                    url.clone(),
                    id.clone(),
                    bodies.clone(),
                    next.clone(),
                );
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return latencies;
                        }
                        let t = Instant::now();
                        let resp = http
                            .post(format!("{url}/hooks/{id}"))
                            .header("content-type", "application/json")
                            .header("authorization", SECRET)
                            .body(bodies[i].clone())
                            .send()
                            .await
                            .expect("delivery");
                        assert_eq!(resp.status().as_u16(), 200, "delivery {i}");
                        let _ = resp.bytes().await;
                        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                })
            })
            .collect();
        let mut latencies = Vec::new();
        for c in clients {
            latencies.extend(c.await.expect("client"));
        }
        let secs = started.elapsed().as_secs_f64();
        latencies.sort_by(|a, b| a.total_cmp(b));
        let at = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
        println!("{label}: {count} deliveries in {secs:.2}s = {:.0} deliveries/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms", count as f64 / secs, at(0.5), at(0.99), latencies[latencies.len() - 1]);
    }

    let text = http
        .get(format!(
            "{url}/api/v1/events/export?format=ndjson&integration={id}"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("body");
    let ids: std::collections::HashSet<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("line")["source_id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    println!(
        "stored: {} events, {} distinct source ids (want {n} and {n})",
        text.lines().count(),
        ids.len()
    );
    hub.stop().await.expect("stop");
}
