//! Webhook receivers: verify → normalise → commit → only then 2xx; bad deliveries get the right
//! 4xx and store nothing; a pushed event and the same event polled are stored once

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::emu::Emulator;
use crate::support::hub::{start_hub, unique_source_ids, webhook_metric, Api};
use crate::support::vendors::{Github, Okta};

const EVERY_SECOND: &str = "* * * * * *";

pub(crate) async fn post_hook(
    hub: &str,
    id: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{hub}/hooks/{id}"))
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("hub answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_event_hook_deliveries_are_verified_stored_once_and_merge_with_polls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let url = hub.url();
    let emu = Emulator::start(Okta, "tok", 50).await;
    let id = api
        .create(json!({
            "name": "okta-hooks", "connector": "okta", "config": {"base_url": emu.url},
            "credentials": {"token": "tok", "webhook_secret": "hook-secret-1"},
            "schedule": EVERY_SECOND, "backfill": "P1D", "requests_per_minute": 6000,
            "allow_insecure_http": true,
        }))
        .await;
    let (_, connectors) = api.json(Method::GET, "/api/v1/connectors", None).await;
    let okta = connectors["connectors"]
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["name"] == "okta")
        .expect("okta")
        .clone();
    assert_eq!(okta["webhook"], true);

    // The one-time verification handshake.
    let resp = reqwest::Client::new()
        .get(format!("{url}/hooks/{id}"))
        .header("X-Okta-Verification-Challenge", "chal-123")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({"verification": "chal-123"})
    );

    // An event that the vendor also serves to polls.
    let ids = emu.add_recent(1, 30);
    // Held back from the vendor's poll answers until the hook has delivered it, so that the
    // delivery is the first copy the hub sees (the every-second poll would otherwise race it).
    let held = emu.withhold(0);
    let record = held.record.clone();
    let delivery =
        json!({"eventType": "com.okta.event_hook", "data": {"events": [record]}}).to_string();
    let auth = [
        ("content-type", "application/json"),
        ("authorization", "hook-secret-1"),
    ];

    // Wrong secret, missing header, stale content type, malformed JSON, oversize: refused, nothing stored.
    let (status, body) = post_hook(
        &url,
        &id,
        &[
            ("content-type", "application/json"),
            ("authorization", "nope"),
        ],
        &delivery,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.to_string().contains("hook-secret-1"),
        "the secret leaked into a rejection"
    );
    assert_eq!(
        post_hook(
            &url,
            &id,
            &[("content-type", "application/json")],
            &delivery
        )
        .await
        .0,
        401
    );
    assert_eq!(
        post_hook(
            &url,
            &id,
            &[
                ("content-type", "text/plain"),
                ("authorization", "hook-secret-1")
            ],
            &delivery
        )
        .await
        .0,
        415
    );
    assert_eq!(
        post_hook(&url, &id, &auth, "{\"data\": {\"events\": [")
            .await
            .0,
        400
    );
    assert_eq!(
        post_hook(&url, "no-such-integration", &auth, &delivery)
            .await
            .0,
        404
    );
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(17 * 1024 * 1024));
    assert_eq!(post_hook(&url, &id, &auth, &huge).await.0, 413);

    // The genuine delivery is stored before the 2xx; a redelivery is accepted and stored once.
    let (status, body) = post_hook(&url, &id, &auth, &delivery).await;
    assert_eq!((status, body["stored"].as_u64()), (200, Some(1)), "{body}");
    let (status, body) = post_hook(&url, &id, &auth, &delivery).await;
    assert_eq!(
        (status, body["stored"].as_u64(), body["duplicates"].as_u64()),
        (200, Some(0), Some(1)),
        "{body}"
    );

    // The poll brings the same event: still one.
    emu.restore(held);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = api.events(&id).await;
    assert_eq!(unique_source_ids(&events), ids.into_iter().collect());
    // ...and the poll did fetch it: one duplicate from the redelivery, one from the poll.
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let dup = format!("trailhub_events_duplicate_total{{integration=\"{id}\"}} 2");
    assert!(metrics.contains(&dup), "{metrics}");

    // Rotation: the previous secret still works while both are set.
    let (status, v) = api
        .json(Method::PATCH, &format!("/api/v1/integrations/{id}"), Some(json!({"credentials": {"token": "tok", "webhook_secret": "hook-secret-2", "webhook_secret_previous": "hook-secret-1"}})))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(post_hook(&url, &id, &auth, &delivery).await.0, 200);
    assert_eq!(
        post_hook(
            &url,
            &id,
            &[
                ("content-type", "application/json"),
                ("authorization", "hook-secret-2")
            ],
            &delivery
        )
        .await
        .0,
        200
    );

    // Paused integrations accept no deliveries.
    let (status, _) = api
        .json(
            Method::PATCH,
            &format!("/api/v1/integrations/{id}"),
            Some(json!({"paused": true})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(post_hook(&url, &id, &auth, &delivery).await.0, 403);

    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(webhook_metric(&metrics, &id, "bad_token") >= 1, "{metrics}");
    assert!(webhook_metric(&metrics, &id, "stored") >= 4, "{metrics}");
    assert!(
        !metrics.contains("hook-secret"),
        "a secret leaked into /metrics"
    );
    hub.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_webhook_deliveries_nudge_a_poll() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let url = hub.url();
    let emu = Emulator::start(Github::Org, "tok", 50).await;
    let id = api.create(json!({
            "name": "gh-hooks", "connector": "github", "config": {"base_url": emu.url, "org": "octo-corp"},
            "credentials": {"token": "tok", "webhook_secret": "It's a Secret to Everybody"},
            // hourly: only the nudge can explain a prompt second poll
            "schedule": "0 0 * * * *", "backfill": "P1D", "allow_insecure_http": true,
        })).await;
    api.poll_now(&id).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = emu.requests().len();
    emu.add_recent(2, 30);

    let body = include_str!("../../fixtures/github/webhooks/organization_member_added.json");
    let mut mac = Hmac::<Sha256>::new_from_slice(b"It's a Secret to Everybody").expect("key");
    mac.update(body.as_bytes());
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = [
        ("content-type", "application/json"),
        ("x-github-event", "organization"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];

    let mut bad = headers.to_vec();
    bad.push((
        "x-hub-signature-256",
        "sha256=0000000000000000000000000000000000000000000000000000000000000000",
    ));
    assert_eq!(post_hook(&url, &id, &bad, body).await.0, 401);
    let mut tampered = headers.to_vec();
    tampered.push(("x-hub-signature-256", signature.as_str()));
    assert_eq!(
        post_hook(
            &url,
            &id,
            &tampered,
            &body.replace("member_added", "member_removed")
        )
        .await
        .0,
        401
    );
    assert_eq!(
        emu.requests().len(),
        before,
        "a rejected delivery must not trigger a poll"
    );

    let mut good = headers.to_vec();
    good.push(("x-hub-signature-256", signature.as_str()));
    let (status, v) = post_hook(&url, &id, &good, body).await;
    assert_eq!(status, 202, "{v}");
    let events = api.wait_for_events(&id, 2, 10).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    assert!(emu.requests().len() > before);
    hub.stop().await.expect("stops");
}

pub(crate) fn signed(
    secret: &trailhub::config::Secret,
    msg_id: &str,
    ts: i64,
    body: &str,
) -> Vec<(String, String)> {
    let signature = trailhub::webhooks::sign_standard_webhook(secret, msg_id, ts, body.as_bytes())
        .expect("signs");
    vec![
        ("content-type".into(), "application/json".into()),
        ("webhook-id".into(), msg_id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        ("webhook-signature".into(), signature),
    ]
}

pub(crate) async fn post_signed(
    hub: &str,
    id: &str,
    headers: &[(String, String)],
    body: &str,
) -> (u16, Value) {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    post_hook(hub, id, &pairs, body).await
}

/// The in-house `webhook` connector: unified events pushed with Standard Webhooks signatures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_house_applications_push_signed_unified_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let url = hub.url();
    let secret = trailhub::webhooks::new_standard_webhooks_secret();
    let created = api
        .create_integration(json!({"name": "billing-app", "connector": "webhook",
            "credentials": {"signing_secret": secret.expose()}}))
        .await;
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["state"], "live", "{created}");
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/integrations/{id}/poll"),
            None,
        )
        .await;
    assert_eq!(status, 409, "a push-only integration has nothing to poll");

    let now = chrono::Utc::now().timestamp();
    let one = json!({"time": "2024-05-01T10:00:00Z", "source_id": "inv-1", "event_type": "invoice.refund", "action": "update", "category": "data_change", "outcome": "success", "actor": {"id": "u-7", "email": "clerk@example.com"}, "targets": [{"type": "invoice", "id": "INV-1"}]}).to_string();
    let (status, body) = post_signed(&url, &id, &signed(&secret, "msg_1", now, &one), &one).await;
    assert_eq!((status, body["stored"].as_u64()), (200, Some(1)), "{body}");
    // A redelivery of the same message: accepted, stored once.
    let (status, body) = post_signed(&url, &id, &signed(&secret, "msg_1", now, &one), &one).await;
    assert_eq!(
        (status, body["duplicates"].as_u64()),
        (200, Some(1)),
        "{body}"
    );

    // An array, one good line and one bad: the good one is stored, the bad one explained.
    let many = json!([
        {"time": "2024-05-01T11:00:00Z", "source_id": "inv-2", "event_type": "invoice.void", "action": "delete", "actor": {"id": "u-7"}},
        {"time": "2024-05-01T11:00:00Z", "event_type": "invoice.void", "actor": {"id": "u-7"}},
    ])
    .to_string();
    let (status, body) = post_signed(&url, &id, &signed(&secret, "msg_2", now, &many), &many).await;
    assert_eq!((status, body["stored"].as_u64()), (200, Some(1)), "{body}");
    assert!(
        body["rejected"][0]["error"]
            .as_str()
            .expect("why")
            .contains("`action`"),
        "{body}"
    );
    // the same report as POST /api/v1/events: rejects named by their 1-based position
    assert_eq!(
        (
            body["rejected_count"].as_u64(),
            body["rejected"][0]["line"].as_u64()
        ),
        (Some(1), Some(2)),
        "{body}"
    );
    let bad =
        json!({"time": "yesterday", "event_type": "x", "action": "read", "actor": {"id": "u"}})
            .to_string();
    let (status, body) = post_signed(&url, &id, &signed(&secret, "msg_3", now, &bad), &bad).await;
    assert_eq!(status, 422, "{body}");

    // Tampered body, another secret, a stale timestamp: refused, nothing stored.
    let headers = signed(&secret, "msg_4", now, &one);
    assert_eq!(
        post_signed(&url, &id, &headers, &one.replace("inv-1", "inv-9"))
            .await
            .0,
        401
    );
    let other = trailhub::webhooks::new_standard_webhooks_secret();
    assert_eq!(
        post_signed(&url, &id, &signed(&other, "msg_5", now, &one), &one)
            .await
            .0,
        401
    );
    let (status, body) =
        post_signed(&url, &id, &signed(&secret, "msg_6", now - 600, &one), &one).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("timestamp"),
        "{body}"
    );

    let events = api.events(&id).await;
    assert_eq!(
        unique_source_ids(&events),
        ["inv-1".to_string(), "inv-2".to_string()]
            .into_iter()
            .collect()
    );
    let refund = events
        .iter()
        .find(|e| e["source_id"] == "inv-1")
        .expect("stored");
    assert_eq!(refund["integration"]["connector"], "webhook");
    assert_eq!(refund["action"], "update");
    assert_eq!(refund["targets"][0]["id"], "INV-1");
    hub.stop().await.expect("stops");
}

/// A flood of forged deliveries: every one refused and counted, nothing stored, and the hub goes
/// on serving genuine ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_deliveries_is_refused_and_the_hub_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let url = hub.url();
    let secret = trailhub::webhooks::new_standard_webhooks_secret();
    let forger = trailhub::webhooks::new_standard_webhooks_secret();
    let id = api.create(json!({"name": "flooded", "connector": "webhook", "credentials": {"signing_secret": secret.expose()}})).await;
    let now = chrono::Utc::now().timestamp();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let (url, id, forger) = (url.clone(), id.clone(), forger.clone());
            tokio::spawn(async move {
                for i in 0..50 {
                    let body = json!({"time": "2024-05-01T00:00:00Z", "source_id": format!("forged-{t}-{i}"), "event_type": "x.y", "action": "delete", "actor": {"id": "mallory"}}).to_string();
                    let (status, _) = post_signed(&url, &id, &signed(&forger, &format!("m{t}-{i}"), now, &body), &body).await;
                    assert_eq!(status, 401);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("flood task");
    }
    let body = json!({"time": "2024-05-01T00:00:00Z", "source_id": "genuine", "event_type": "x.y", "action": "read", "actor": {"id": "alice"}}).to_string();
    let (status, v) = post_signed(&url, &id, &signed(&secret, "genuine", now, &body), &body).await;
    assert_eq!((status, v["stored"].as_u64()), (200, Some(1)), "{v}");
    let events = api.events(&id).await;
    assert_eq!(events.len(), 1, "forged deliveries were stored");
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert_eq!(
        webhook_metric(&metrics, &id, "bad_signature"),
        800,
        "{metrics}"
    );
    // One log line for the flood, not 800.
    let logs = crate::support::hub::captured_logs();
    let lines = logs
        .lines()
        .filter(|l| l.contains("webhook delivery rejected") && l.contains(&id))
        .count();
    assert_eq!(
        lines, 1,
        "rejections must be logged at most once per 10 s per integration"
    );
    hub.stop().await.expect("stops");
}
