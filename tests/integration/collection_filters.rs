//! Collection filters: an integration's include / exclude rules drop records before they are
//! stored, on polls and webhook deliveries alike, and every dropped record is counted in the
//! integration's status (`events_filtered`), so the stored plus the filtered make up everything
//! the vendor sent.

use reqwest::Method;
use serde_json::json;

use crate::support::emu::Emulator;
use crate::support::hub::{start_hub, Api};
use crate::support::vendors::Okta;
use crate::webhooks::{post_signed, signed};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_and_pushed_records_are_filtered_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);

    // refused filters name the rule at fault
    let emu = Emulator::start(Okta, "tok-f", 10).await;
    let mut body = emu.integration_with("okta-bad", json!({"token": "tok-f"}));
    body["filters"] = json!({"exclude": [{"action": "jump"}]});
    let (status, answer) = api
        .json(Method::POST, "/api/v1/integrations", Some(body))
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("filters.exclude[0].action"),
        "{answer}"
    );

    // the emulator cycles four event types; sessions are noise here
    emu.add_recent(40, 86_400);
    let mut body = emu.integration_with("okta-filtered", json!({"token": "tok-f"}));
    body["filters"] = json!({"exclude": [{"event_type": "user.session.*"}]});
    let id = api.create(body).await;
    let events = api.wait_for_events(&id, 20, 20).await;
    assert!(events.iter().all(|e| !e["event_type"]
        .as_str()
        .unwrap_or("")
        .starts_with("user.session.")));
    let status = api
        .wait_for(&id, "20 filtered, live", 20, |v| {
            v["events_filtered"] == 20 && v["state"] == "live"
        })
        .await;
    assert_eq!(status["events_ingested"], 20, "{status}");
    assert_eq!(
        status["filters"]["exclude"][0]["event_type"],
        "user.session.*"
    );

    // changed to keep only group changes: later records follow the new rule
    let (code, changed) = api
        .patch(
            &id,
            json!({"filters": {"include": [{"event_type": "group.*"}]}}),
        )
        .await;
    assert_eq!(code, 200, "{changed}");
    // a cycle already running when the change lands finishes with the rules it started with:
    // the new rules apply from the next cycle, so wait for one that began after the change
    let changed_at = trailhub::time::format_micros(trailhub::time::now_micros());
    api.poll_now(&id).await;
    api.wait_for(&id, "a cycle after the change", 20, |v| {
        v["polling"] == false
            && v["last_poll_at"]
                .as_str()
                .is_some_and(|t| t > changed_at.as_str())
    })
    .await;
    emu.add_recent(8, 30);
    api.poll_now(&id).await;
    let status = api
        .wait_for(&id, "26 filtered", 20, |v| v["events_filtered"] == 26)
        .await;
    assert_eq!(status["events_ingested"], 22, "{status}");

    // a webhook delivery of the in-house connector: the same rules, counted the same way
    let secret = trailhub::webhooks::new_standard_webhooks_secret();
    let created = api
        .create_integration(json!({"name": "app-hooks", "connector": "webhook",
            "credentials": {"signing_secret": secret.expose()},
            "filters": {"exclude": [{"action": "read", "outcome": "success"}, {"field": "actor.id", "equals": "health-bot"}]}}))
        .await;
    let hook = created["id"].as_str().expect("id").to_string();
    let lines = json!([
        {"time": "2024-05-01T10:00:00Z", "source_id": "h1", "event_type": "doc.view", "action": "read", "outcome": "success", "actor": {"id": "u1"}},
        {"time": "2024-05-01T10:00:01Z", "source_id": "h2", "event_type": "doc.view", "action": "read", "outcome": "failure", "actor": {"id": "u1"}},
        {"time": "2024-05-01T10:00:02Z", "source_id": "h3", "event_type": "doc.edit", "action": "update", "actor": {"id": "health-bot"}},
        {"time": "2024-05-01T10:00:03Z", "source_id": "h4", "event_type": "doc.edit", "action": "update", "actor": {"id": "u2"}},
    ])
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let (code, report) = post_signed(
        &hub.url(),
        &hook,
        &signed(&secret, "msg_f1", now, &lines),
        &lines,
    )
    .await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(
        (report["stored"].as_u64(), report["filtered"].as_u64()),
        (Some(2), Some(2)),
        "{report}"
    );
    let status = api.integration(&hook).await;
    assert_eq!(
        (
            status["events_ingested"].as_u64(),
            status["events_filtered"].as_u64()
        ),
        (Some(2), Some(2)),
        "{status}"
    );
    let stored: Vec<String> = api
        .events(&hook)
        .await
        .iter()
        .map(|e| e["source_id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(stored.len(), 2);
    assert!(stored.contains(&"h2".to_string()) && stored.contains(&"h4".to_string()));
    hub.stop().await.expect("stops");
}
