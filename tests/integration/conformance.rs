//! The cases every polling connector must pass against its vendor's emulator: pagination with
//! duplicates across pages, 429 with Retry-After, 5xx, truncated JSON, restart from the
//! committed cursor, late events inside the overlap, and empty polls that change nothing
//!
//! The suite walks the built-in registry, so a new polling connector fails here until its
//! vendor is emulated (tests/integration/support/vendors); push-only connectors are skipped.
//! A connector that takes a time window (`request.until`) passes them twice: walked in one
//! sequence, and with its backfill split into windows walked concurrently.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use trailhub::connectors::Registry;

use crate::support::emu::{Emulator, Fault, Vendor};
use crate::support::hub::{fast_tuning, start_hub_with, unique_source_ids, Api};
use crate::support::vendors;

const CLIENT_ID: &str = "8a1c7e4e-client";
const SECRET: &str = "client-secret-for-tests";
/// Cases run at once: each mostly waits (Retry-After, schedules), two cores are enough for this.
const AT_ONCE: usize = 5;

/// A hub on `dir`: one sequential walk, or backfill windows (4, two at a time).
async fn hub(dir: &std::path::Path, windows: bool) -> trailhub::server::RunningHub {
    start_hub_with(dir, |s| {
        if windows {
            s.poll = trailhub::config::PollTuning {
                backfill_slices: 4,
                backfill_lanes: 2,
                ..fast_tuning()
            };
        }
    })
    .await
}

async fn conformance(vendor: Arc<dyn Vendor>, until: Option<String>) {
    let windows = until.is_some();
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start_shared(vendor, CLIENT_ID, SECRET, 6).await;
    emu.set_repeat_across_pages();
    emu.add_recent(40, 86_400);
    emu.fault(Fault::Status(429, Some(1)));
    emu.fault(Fault::Status(500, None));
    emu.fault(Fault::Truncated);
    let id = {
        let hub = hub(dir.path(), windows).await;
        let api = Api::new(&hub);
        let id = api
            .create(emu.integration(&format!("conformance-{}", emu.connector())))
            .await;
        let events = api.wait_for_events(&id, 40, 30).await;
        assert_eq!(unique_source_ids(&events), emu.ids(), "backfill");
        if let Some(param) = &until {
            let bounded = emu
                .api_requests()
                .iter()
                .filter(|r| r.query.contains(&format!("{param}=")))
                .count();
            assert!(bounded >= 4, "{bounded} requests asked for a window");
        }
        api.wait_live(&id).await;
        hub.stop().await.expect("stops");
        id
    };
    // while the hub is down: new events, and late ones stamped inside the overlap window
    let now = chrono::Utc::now().timestamp_micros();
    emu.add_events(&[now - 120_000_000, now - 5_000_000]);
    emu.add_recent(9, 20);
    let hub = hub(dir.path(), windows).await;
    let api = Api::new(&hub);
    let events = api.wait_for_events(&id, 51, 30).await;
    assert_eq!(unique_source_ids(&events), emu.ids(), "after restart");
    // empty polls change nothing
    api.poll_now(&id).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(api.events(&id).await.len(), 51);
    let v = api.wait_live(&id).await;
    assert_eq!(v["last_error"], Value::Null);
    hub.stop().await.expect("stops");
}

fn panic_message(e: tokio::task::JoinError) -> String {
    match e.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".into()),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_polling_connector_passes_the_conformance_cases() {
    let registry = Registry::builtin().expect("builtin definitions are valid");
    for vendor in vendors::all() {
        assert!(
            registry.get(vendor.connector()).is_ok(),
            "an emulated vendor serves {:?}, which is no built-in connector",
            vendor.connector()
        );
    }
    let mut polling = Vec::new();
    let mut missing = Vec::new();
    for connector in registry.all() {
        // pushed, never polled: nothing here applies
        let Some(poll) = &connector.poll else {
            continue;
        };
        match vendors::for_connector(&connector.name) {
            Some(vendor) => {
                if let Some(until) = &poll.request.until {
                    let name = format!("{} (backfill windows)", connector.name);
                    polling.push((name, vendor.clone(), Some(until.param.clone())));
                }
                polling.push((connector.name.clone(), vendor, None));
            }
            None => missing.push(connector.name.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "built-in polling connectors without an emulated vendor, so without conformance cases: \
         {missing:?} (add one in tests/integration/support/vendors)"
    );
    let permits = Arc::new(tokio::sync::Semaphore::new(AT_ONCE));
    let mut cases = tokio::task::JoinSet::new();
    for (name, vendor, until) in polling {
        let permits = permits.clone();
        cases.spawn(async move {
            let _permit = permits.acquire().await.expect("semaphore open");
            // its own task, so that a failing case is told apart by its connector
            let outcome = tokio::spawn(conformance(vendor, until)).await;
            (name, outcome.map_err(panic_message))
        });
    }
    let mut failed = Vec::new();
    while let Some(done) = cases.join_next().await {
        let (name, outcome) = done.expect("case runner");
        if let Err(why) = outcome {
            failed.push(format!("{name}: {why}"));
        }
    }
    assert!(failed.is_empty(), "conformance failed: {failed:#?}");
}
