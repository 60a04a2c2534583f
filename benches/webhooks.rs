//! Webhook load: signed deliveries from many concurrent clients into one integration, each
//! verified, normalised and flushed before its 2xx; then every event is counted once. Prints
//! figures; asserts nothing about time.
//!
//! cargo bench --bench webhooks                # 20,000 deliveries, 32 clients
//! cargo bench --bench webhooks -- 5000        # a quicker run

// the hub runs in this process: give it the allocator the `trailhub` binary uses
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use trailhub::config::{Secret, Settings};

// the integration tests' hub client
#[path = "../tests/integration/support/mod.rs"]
#[allow(dead_code, unused_imports)] // the bench uses a part of the test support
mod support;

use support::hub::Api;

const TOKEN: &str = "bench-admin-token-0123456789";
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

struct Delivery {
    body: String,
    headers: Vec<(String, String)>,
}

async fn create(url: &str, body: Value) -> String {
    Api::at(url, TOKEN).create(body).await
}

/// Sends every delivery from `CLIENTS` concurrent clients; prints rate and latency.
async fn load(
    http: &reqwest::Client,
    url: &str,
    id: &str,
    label: &str,
    deliveries: Arc<Vec<Delivery>>,
    count: usize,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (http, url, id, deliveries, next) = (
                http.clone(),
                url.to_string(),
                id.to_string(),
                deliveries.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return latencies;
                    }
                    let d = &deliveries[i];
                    let t = Instant::now();
                    let mut req = http.post(format!("{url}/hooks/{id}")).body(d.body.clone());
                    for (k, v) in &d.headers {
                        req = req.header(k.as_str(), v.as_str());
                    }
                    let resp = req.send().await.expect("delivery");
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

async fn count_stored(http: &reqwest::Client, url: &str, id: &str, n: usize) {
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
        "  stored: {} events, {} distinct source ids (want {n} and {n})",
        text.lines().count(),
        ids.len()
    );
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
    println!("# trailhub webhook benchmark: {n} deliveries of one event each, {CLIENTS} concurrent clients in the hub's process, {} cores", std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0));

    // In-house application: unified events signed with Standard Webhooks (HMAC-SHA256).
    let secret = trailhub::webhooks::new_standard_webhooks_secret();
    let id = create(&url, json!({"name": "app-hooks", "connector": "webhook", "credentials": {"signing_secret": secret.expose()}})).await;
    let now = chrono::Utc::now().timestamp();
    let deliveries: Arc<Vec<Delivery>> = Arc::new(
        (0..n)
            .map(|i| {
                let body = json!({
                    "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true), "source_id": format!("app-{i:08}"),
                    "event_type": "invoice.refund", "action": "update", "category": "data_change", "outcome": "success",
                    "actor": {"id": format!("u-{}", i % 50), "email": format!("clerk{}@example.com", i % 50), "ip": "10.1.2.3"},
                    "targets": [{"type": "invoice", "id": format!("INV-{i}")}], "description": "refund issued",
                })
                .to_string();
                let msg = format!("msg_{i}");
                let signature = trailhub::webhooks::sign_standard_webhook(&secret, &msg, now, body.as_bytes()).expect("sign");
                let headers = vec![
                    ("content-type".to_string(), "application/json".to_string()),
                    ("webhook-id".to_string(), msg),
                    ("webhook-timestamp".to_string(), now.to_string()),
                    ("webhook-signature".to_string(), signature),
                ];
                Delivery { body, headers }
            })
            .collect(),
    );
    println!(
        "webhook connector (Standard Webhooks signatures), {} bytes per delivery:",
        deliveries[0].body.len()
    );
    load(&http, &url, &id, "  first delivery", deliveries.clone(), n).await;
    load(
        &http,
        &url,
        &id,
        "  redelivery of the first 2,000",
        deliveries.clone(),
        n.min(2000),
    )
    .await;
    count_stored(&http, &url, &id, n).await;

    // Okta event hooks: System Log events, the shared secret in Authorization.
    let id = create(
        &url,
        json!({
            "name": "okta-hooks", "connector": "okta", "config": {"base_url": "http://127.0.0.1:9"},
            "credentials": {"token": "unused", "webhook_secret": SECRET}, "schedule": "0 0 0 1 1 *",
            "allow_insecure_http": true,
        }),
    )
    .await;
    let page: Vec<Value> =
        serde_json::from_str(include_str!("../fixtures/okta/logs/page.json")).expect("fixture");
    let deliveries: Arc<Vec<Delivery>> = Arc::new(
        (0..n)
            .map(|i| Delivery {
                body: delivery(&page[0], i),
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("authorization".into(), SECRET.into()),
                ],
            })
            .collect(),
    );
    println!(
        "okta event hooks, {} bytes per delivery:",
        deliveries[0].body.len()
    );
    load(&http, &url, &id, "  first delivery", deliveries.clone(), n).await;
    count_stored(&http, &url, &id, n).await;
    hub.stop().await.expect("stop");
}
