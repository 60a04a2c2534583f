//! The cases every connector must pass against its emulator: pagination with duplicates across
//! pages, 429 with Retry-After, 5xx, truncated JSON, restart from the committed cursor, late
//! events inside the overlap, and empty polls that change nothing

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::emulator::{Emulator, Fault, Vendor};
use crate::helpers::{spawn_hub, unique_source_ids, Api};

fn body(vendor: Vendor, emu: &Emulator) -> serde_json::Value {
    let (connector, config) = match vendor {
        Vendor::Github => ("github", json!({"base_url": emu.url, "org": "octo-corp"})),
        Vendor::Okta => ("okta", json!({"base_url": emu.url})),
        Vendor::Slack => ("slack", json!({"base_url": emu.url})),
    };
    json!({"name": format!("conformance-{connector}"), "connector": connector, "config": config,
        "credentials": {"token": "tok-conf"}, "schedule": "* * * * * *", "backfill": "P2D",
        "requests_per_minute": 6000, "allow_insecure_http": true})
}

async fn conformance(vendor: Vendor) {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(vendor, "tok-conf", 6).await;
    emu.state.lock().expect("lock").repeat_across_pages = true;
    emu.add_recent(40, 86_400);
    emu.fault(Fault::Status(429, Some(1)));
    emu.fault(Fault::Status(500, None));
    emu.fault(Fault::Truncated);
    let id = {
        let hub = spawn_hub(dir.path()).await;
        let api = Api::new(&hub);
        let created = api.create_integration(body(vendor, &emu)).await;
        let id = created["id"].as_str().expect("id").to_string();
        let events = api.wait_for_events(&id, 40, 30).await;
        assert_eq!(unique_source_ids(&events), emu.ids(), "backfill");
        api.wait_for(&id, "live", 10, |v| v["state"] == "live")
            .await;
        hub.stop().await.expect("stops");
        id
    };
    // while the hub is down: new events, and late ones stamped inside the overlap window
    let now = chrono::Utc::now().timestamp_micros();
    emu.add_events(&[now - 120_000_000, now - 5_000_000]);
    emu.add_recent(9, 20);
    let hub = spawn_hub(dir.path()).await;
    let api = Api::new(&hub);
    let events = api.wait_for_events(&id, 51, 30).await;
    assert_eq!(unique_source_ids(&events), emu.ids(), "after restart");
    // empty polls change nothing
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/integrations/{id}/poll"),
            None,
        )
        .await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(api.events(&id).await.len(), 51);
    let v = api
        .wait_for(&id, "live", 10, |v| v["state"] == "live")
        .await;
    assert_eq!(v["last_error"], serde_json::Value::Null);
    hub.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_conformance() {
    conformance(Vendor::Github).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_conformance() {
    conformance(Vendor::Okta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_conformance() {
    conformance(Vendor::Slack).await;
}
