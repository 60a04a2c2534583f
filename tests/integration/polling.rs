//! The connector engine against loopback vendors: exactly once, nothing missed, limits
//! respected, errors and recovery, restart from the committed cursor

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use std::sync::Arc;

use crate::support::emu::{Emulator, Fault, Vendor};
use crate::support::hub::{fast_tuning, start_hub, start_hub_with, unique_source_ids, Api};
use crate::support::vendors::{Github, Okta, Slack};

const EVERY_SECOND: &str = "* * * * * *";

fn integration_body(name: &str, emu: &Emulator, token: &str) -> Value {
    emu.integration_with(name, json!({"token": token}))
}

/// Backfill, then live events (some late, inside the overlap), each stored exactly once.
async fn backfill_then_live(vendor: impl Vendor) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let emu = Emulator::start(vendor, "tok-1", 7).await;
    emu.add_recent(60, 2 * 86_400);
    let id = api.create(integration_body("acme", &emu, "tok-1")).await;
    let events = api.wait_for_events(&id, 60, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let v = api.wait_live(&id).await;
    assert!(v["last_success_at"].is_string(), "{v}");
    assert!(v["lag_seconds"].is_number(), "{v}");
    assert_eq!(v["events_ingested"], 60, "{v}");

    // live: new events, plus late arrivals stamped a little in the past (inside the overlap)
    let now = chrono::Utc::now().timestamp_micros();
    emu.add_events(&[now - 60_000_000, now - 2_000_000, now - 1_000_000]);
    emu.add_recent(10, 30);
    api.poll_now(&id).await;
    let events = api.wait_for_events(&id, 73, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    // a few more cycles change nothing
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = api.events(&id).await;
    assert_eq!(events.len(), 73);

    let reqs = emu.requests();
    assert!(
        reqs.iter().all(|r| r.user_agent.starts_with("trailhub/")),
        "user agent"
    );
    let e = &events[0];
    assert_eq!(e["integration"]["connector"], json!(emu.connector()));
    assert!(e["raw"].is_object());
    hub.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_backfill_then_live_exactly_once() {
    backfill_then_live(Github::Org).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_backfill_then_live_exactly_once() {
    backfill_then_live(Okta).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_backfill_then_live_exactly_once() {
    backfill_then_live(Slack).await;
}

/// Okta's next link is the cursor: after a restart the hub continues from it, not from `since`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_restart_resumes_from_the_persisted_next_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Okta, "tok-okta", 10).await;
    emu.add_recent(35, 3600);
    let id = {
        let hub = start_hub(dir.path()).await;
        let api = Api::new(&hub);
        let id = api.create(integration_body("okta", &emu, "tok-okta")).await;
        api.wait_for_events(&id, 35, 20).await;
        let v = api.wait_live(&id).await;
        assert!(
            v["cursor"]["next"]
                .as_str()
                .unwrap_or("")
                .contains("after="),
            "{v}"
        );
        hub.stop().await.expect("stops");
        id
    };
    let before = emu.requests().len();
    emu.add_recent(12, 60);
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let events = api.wait_for_events(&id, 47, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let after_restart = &emu.requests()[before];
    assert!(
        after_restart.query.contains("after="),
        "first request after restart must follow the saved link: {}",
        after_restart.query
    );
    hub.stop().await.expect("stops");
}

/// Newest-first GitHub: a restart in the middle of a walk continues the walk (the cursor holds
/// its position) and the high-water mark only moves once it is complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_restart_mid_walk_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Github::Org, "tok-gh", 5).await;
    emu.add_recent(40, 86_400);
    // slow pages so the stop lands inside the walk
    for _ in 0..4 {
        emu.fault(Fault::Slow(Duration::from_millis(150)));
    }
    let id = {
        let hub = start_hub(dir.path()).await;
        let api = Api::new(&hub);
        let id = api.create(integration_body("gh", &emu, "tok-gh")).await;
        api.wait_for_events(&id, 10, 20).await;
        hub.stop().await.expect("stops");
        id
    };
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let events = api.wait_for_events(&id, 40, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let v = api.wait_live(&id).await;
    assert!(v["cursor"]["high_water"].is_string(), "{v}");
    hub.stop().await.expect("stops");
}

/// 429 with Retry-After, 500, a slow answer beyond the timeout, truncated JSON, a duplicate
/// across pages: everything arrives once, and the waits show in the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_and_nothing_is_stored_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let emu = Emulator::start(Slack, "tok-slack", 6).await;
    emu.add_recent(30, 7200);
    emu.fault(Fault::Status(429, Some(1)));
    emu.fault(Fault::Status(500, None));
    emu.fault(Fault::Slow(Duration::from_millis(1200)));
    emu.fault(Fault::Truncated);
    emu.fault(Fault::Status(503, Some(0)));
    let id = api
        .create(integration_body("slack", &emu, "tok-slack"))
        .await;
    let events = api.wait_for_events(&id, 30, 30).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let v = api.wait_live(&id).await;
    assert_eq!(v["last_error"], Value::Null);
    let metrics = reqwest::get(format!("{}/metrics", hub.url()))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let waits_line = metrics
        .lines()
        .find(|l| l.starts_with("trailhub_rate_limit_waits_total") && l.contains(&id))
        .unwrap_or_else(|| panic!("no rate-limit waits metric:\n{metrics}"));
    assert!(!waits_line.ends_with(" 0"), "{waits_line}");
    assert!(
        metrics.contains("trailhub_upstream_responses_total{"),
        "{metrics}"
    );
    // the 429's Retry-After of 1 s was honoured
    let reqs = emu.requests();
    let i = reqs.iter().position(|r| r.status == 429).expect("a 429");
    let gap = reqs[i + 1].at.duration_since(reqs[i].at);
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?}");
    hub.stop().await.expect("stops");
}

/// A spent budget (remaining 0) and Okta's 429 without Retry-After both wait until the reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_headers_are_respected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let emu = Emulator::start(Okta, "tok-rl", 4).await;
    emu.add_recent(12, 600);
    emu.fault(Fault::BudgetSpent(2));
    emu.fault(Fault::RateLimitedUntilReset(2));
    let id = api
        .create(integration_body("okta-rl", &emu, "tok-rl"))
        .await;
    let events = api.wait_for_events(&id, 12, 30).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let reqs = emu.requests();
    // request 0 spent the budget: request 1 (the 429) waits for the reset (≥ 1 s after the
    // epoch-second boundary), and request 2 waits for the 429's reset
    let gap1 = reqs[1].at.duration_since(reqs[0].at);
    let gap2 = reqs[2].at.duration_since(reqs[1].at);
    assert!(
        gap1 >= Duration::from_millis(1000),
        "after a spent budget waited only {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(1000),
        "after a 429 without Retry-After waited only {gap2:?}"
    );
    hub.stop().await.expect("stops");
}

/// Wrong credentials (GitHub: 401; Slack: 200 with `invalid_auth`): `error: credentials
/// rejected`, no hot loop; new credentials recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_error_without_hot_loop_then_recover() {
    rejected_credentials(Github::Org).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_invalid_auth_is_rejected_credentials() {
    rejected_credentials(Slack).await;
}

async fn rejected_credentials(vendor: impl Vendor) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let emu = Emulator::start(vendor, "right-token", 50).await;
    emu.add_recent(5, 3600);
    let id = api
        .create(integration_body("bad-creds", &emu, "wrong-token"))
        .await;
    let v = api
        .wait_for(&id, "error", 10, |v| v["state"] == "error")
        .await;
    assert!(
        v["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("credentials rejected"),
        "{v}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let attempts = emu.requests().len();
    assert!(
        attempts <= 4,
        "{attempts} requests in ~3 s with a 1 s schedule: a hot loop"
    );
    let (status, v) = api
        .patch(&id, json!({"credentials": {"token": "right-token"}}))
        .await;
    assert_eq!(status, 200, "{v}");
    let events = api.wait_for_events(&id, 5, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    api.wait_live(&id).await;
    hub.stop().await.expect("stops");
}

/// Persistent 5xx: retries with backoff, then `state: error` with the reason, then recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_end_in_error_state_and_recover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let emu = Emulator::start(Slack, "tok", 50).await;
    emu.add_recent(4, 3600);
    for _ in 0..4 {
        emu.fault(Fault::Status(502, None));
    }
    let id = api.create(integration_body("slack-5xx", &emu, "tok")).await;
    let v = api
        .wait_for(&id, "error", 10, |v| v["state"] == "error")
        .await;
    assert!(
        v["last_error"].as_str().unwrap_or("").contains("HTTP 502"),
        "{v}"
    );
    let events = api.wait_for_events(&id, 4, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    api.wait_live(&id).await;
    hub.stop().await.expect("stops");
}

/// DELETE stops collection and keeps the events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_stops_collection_and_keeps_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let emu = Emulator::start(Github::Org, "tok", 50).await;
    emu.add_recent(6, 3600);
    let id = api.create(integration_body("gh-del", &emu, "tok")).await;
    api.wait_for_events(&id, 6, 20).await;
    let (status, _) = api
        .call(Method::DELETE, &format!("/api/v1/integrations/{id}"), None)
        .await;
    assert_eq!(status, 204);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = emu.requests().len();
    emu.add_recent(3, 10);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(emu.requests().len(), before, "polled after delete");
    assert_eq!(api.events(&id).await.len(), 6);
    let (status, _) = api
        .call(Method::GET, &format!("/api/v1/integrations/{id}"), None)
        .await;
    assert_eq!(status, 404);
    // the admin actions are audit events
    let audit = api
        .get("/api/v1/events?integration=trailhub&limit=100")
        .await;
    let types: Vec<&str> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    assert!(
        types.contains(&"integration.create") && types.contains(&"integration.delete"),
        "{types:?}"
    );
    hub.stop().await.expect("stops");
}

/// Idle backoff: with nothing new, polls space out; a manual poll still goes at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_cycles_space_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let emu = Emulator::start(Slack, "tok", 50).await;
    let id = api
        .create(integration_body("slack-idle", &emu, "tok"))
        .await;
    api.wait_live(&id).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    let polls = emu.requests().len();
    // every second without backoff would be ~7; with it (bounded at 2 s in tests) about 4
    assert!(polls <= 5, "{polls} polls in ~6 s of idleness");
    let before = emu.requests().len();
    api.poll_now(&id).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(emu.requests().len() > before, "manual poll did not go out");
    hub.stop().await.expect("stops");
}

/// A saved next link is only followed to the configured host: after `base_url` changes, the
/// walk restarts from the time cursor on the new host and the old one hears nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_link_is_not_followed_to_a_previous_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let old = Emulator::start(Okta, "tok", 50).await;
    old.add_recent(3, 600);
    let id = api.create(integration_body("okta-move", &old, "tok")).await;
    api.wait_for_events(&id, 3, 20).await;
    let new = Emulator::start(Okta, "tok", 50).await;
    new.add_recent(2, 60);
    // moving to another host takes the credentials along only if they are given again
    let (status, v) = api
        .patch(&id, json!({"config": {"base_url": new.url}}))
        .await;
    assert_eq!(status, 422, "{v}");
    let (status, v) = api
        .patch(
            &id,
            json!({"config": {"base_url": new.url}, "credentials": {"token": "tok"}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let heard = old.requests().len();
    api.wait_for_events(&id, 5, 20).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        old.requests().len() <= heard + 1,
        "the old host is still polled"
    );
    let first = &new.requests()[0];
    assert!(first.query.contains("since="), "{}", first.query);
    hub.stop().await.expect("stops");
}

/// A loopback server that answers every request with `307` to the same path on `target`.
async fn redirector(target: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let target = target.to_string();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let location = format!("{target}{uri}");
        async move {
            (
                axum::http::StatusCode::TEMPORARY_REDIRECT,
                [(axum::http::header::LOCATION, location)],
            )
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Redirects are never followed, by the API client or the OAuth2 token client: a 307 would
/// carry the `Authorization` header or the client secret to whatever host it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_do_not_carry_credentials_to_another_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let elsewhere = Emulator::start(Okta, "tok-redirect", 50).await;
    elsewhere.add_recent(2, 60);
    let redirect = redirector(&elsewhere.url).await;
    let okta = api
        .create_integration(json!({"name": "okta-redirect", "connector": "okta",
            "config": {"base_url": redirect}, "credentials": {"token": "tok-redirect"},
            "schedule": EVERY_SECOND, "allow_insecure_http": true}))
        .await;
    let entra = api
        .create_integration(
            json!({"name": "entra-redirect", "connector": "entra_audits",
            "config": {"base_url": redirect, "login_url": redirect, "tenant_id": "contoso"},
            "credentials": {"client_id": "app", "client_secret": "secret-redirect"},
            "schedule": EVERY_SECOND, "allow_insecure_http": true}),
        )
        .await;
    for created in [okta, entra] {
        let id = created["id"].as_str().expect("id");
        let v = api
            .wait_for(id, "error", 20, |v| v["state"] == "error")
            .await;
        assert!(
            v["last_error"].as_str().unwrap_or("").contains("307"),
            "{v}"
        );
    }
    assert!(
        elsewhere.requests().is_empty(),
        "a redirect was followed: {:?}",
        elsewhere.requests()
    );
    hub.stop().await.expect("stops");
}

/// Every page repeats the last record of the one before, and new events arrive while a slow
/// walk is under way (shifting newest-first pages): each event is stored once, none is missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_across_pages_and_events_arriving_mid_walk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let mut running = Vec::new();
    let vendors: [Arc<dyn Vendor>; 3] = [Arc::new(Github::Org), Arc::new(Okta), Arc::new(Slack)];
    for vendor in vendors {
        let emu = Emulator::start_shared(vendor, "", "tok", 4).await;
        emu.set_repeat_across_pages();
        emu.add_recent(30, 7200);
        for _ in 0..6 {
            emu.fault(Fault::Slow(Duration::from_millis(100)));
        }
        let id = api
            .create(integration_body(emu.connector(), &emu, "tok"))
            .await;
        let late = emu.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(250)).await;
            late.add_recent(8, 5);
        });
        running.push((emu, id));
    }
    for (emu, id) in &running {
        let events = api.wait_for_events(id, 38, 20).await;
        assert_eq!(unique_source_ids(&events), emu.ids());
        // the cycle ends (a repeated last record must not keep it spinning)
        let v = api
            .wait_for(id, "cycle end", 10, |v| {
                v["polling"] == false && v["state"] == "live"
            })
            .await;
        assert_eq!(v["events_ingested"], 38, "duplicates are not counted: {v}");
    }
    hub.stop().await.expect("stops");
}

/// Okta refuses a saved link (e.g. expired): the walk restarts from the high-water mark minus
/// the 5 min overlap; the overlap's duplicates are absorbed and nothing is missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_saved_link_restarts_from_time_with_overlap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let emu = Emulator::start(Okta, "tok", 50).await;
    emu.add_recent(10, 600);
    let id = api
        .create(integration_body("okta-refused", &emu, "tok"))
        .await;
    api.wait_for_events(&id, 10, 20).await;
    api.wait_live(&id).await;
    emu.fault(Fault::Status(400, None));
    emu.add_recent(3, 30);
    let events = api.wait_for_events(&id, 13, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let reqs = emu.requests();
    let refused = reqs
        .iter()
        .position(|r| r.status == 400)
        .expect("the refusal");
    assert!(
        reqs[refused].query.contains("after="),
        "{}",
        reqs[refused].query
    );
    assert!(
        reqs[refused + 1].query.contains("since=") && !reqs[refused + 1].query.contains("after="),
        "restart from the time cursor: {}",
        reqs[refused + 1].query
    );
    api.wait_for(&id, "live", 10, |v| {
        v["state"] == "live" && v["last_error"].is_null()
    })
    .await;
    hub.stop().await.expect("stops");
}

/// Slack refuses a saved cursor (`invalid_cursor`) after a restart in the middle of a walk: the
/// walk restarts from the time cursor, nothing is missed or stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_invalid_cursor_restarts_the_walk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Slack, "tok", 4).await;
    emu.add_recent(40, 86_400);
    for _ in 0..5 {
        emu.fault(Fault::Slow(Duration::from_millis(200)));
    }
    let id = {
        let hub = start_hub(dir.path()).await;
        let api = Api::new(&hub);
        let id = api
            .create(integration_body("slack-cursor", &emu, "tok"))
            .await;
        api.wait_for_events(&id, 4, 20).await;
        let v = api.integration(&id).await;
        hub.stop().await.expect("stops");
        assert!(v["cursor"]["next"].is_string(), "stopped mid-walk: {v}");
        id
    };
    emu.clear_faults();
    emu.fault(Fault::Body(json!({"ok": false, "error": "invalid_cursor"})));
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let events = api.wait_for_events(&id, 40, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let v = api.wait_live(&id).await;
    assert_eq!(v["last_error"], Value::Null);
    hub.stop().await.expect("stops");
}

/// A record stamped ten years ahead must not carry the high-water mark into the future, or
/// later newest-first walks would stop after their first page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_future_timestamp_does_not_stall_the_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let emu = Emulator::start(Github::Org, "tok", 4).await;
    emu.add_recent(10, 3600);
    let now = chrono::Utc::now().timestamp_micros();
    emu.add_events(&[now + 10 * 365 * 86_400_000_000]);
    let id = api.create(integration_body("gh-future", &emu, "tok")).await;
    api.wait_for_events(&id, 11, 20).await;
    api.wait_live(&id).await;
    emu.add_recent(12, 10);
    let events = api.wait_for_events(&id, 23, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    hub.stop().await.expect("stops");
}

/// Okta counts its budget per org: two integrations on one Okta host share one gate, so a
/// spent budget seen by one holds back the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn integrations_on_one_okta_org_share_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let emu = Emulator::start(Okta, "tok", 50).await;
    emu.add_recent(3, 600);
    emu.fault(Fault::BudgetSpent(2));
    let a = api
        .create_integration(integration_body("okta-a", &emu, "tok"))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let b = api
        .create_integration(integration_body("okta-b", &emu, "tok"))
        .await;
    for v in [a, b] {
        let id = v["id"].as_str().expect("id");
        api.wait_for_events(id, 3, 20).await;
    }
    let reqs = emu.requests();
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        gap >= Duration::from_millis(1000),
        "the second integration did not wait: {gap:?}"
    );
    hub.stop().await.expect("stops");
}

/// GitHub's secondary limit is a 403 without Retry-After whose body says so: a rate limit
/// (wait, then go on), not refused credentials. A plain 403 is refused credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_secondary_limit_403_waits_and_a_plain_403_is_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tuning = trailhub::config::PollTuning {
        max_wait: Duration::from_millis(1200),
        ..fast_tuning()
    };
    let hub = start_hub_with(dir.path(), |s| s.poll = tuning).await;
    let api = Api::new(&hub);
    let emu = Emulator::start(Github::Org, "tok", 50).await;
    emu.add_recent(5, 600);
    emu.fault(Fault::StatusBody(
        403,
        json!({"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}),
    ));
    let id = api
        .create(integration_body("gh-secondary", &emu, "tok"))
        .await;
    let events = api.wait_for_events(&id, 5, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let reqs = emu.requests();
    assert_eq!(reqs[0].status, 403);
    let gap = reqs[1].at.duration_since(reqs[0].at);
    assert!(gap >= Duration::from_millis(1100), "waited only {gap:?}");
    api.wait_for(&id, "live", 20, |v| v["state"] == "live")
        .await;

    // Refused until further notice: the error state must not depend on catching a short window
    // between a failed cycle and the next (every-second) one.
    for _ in 0..50 {
        emu.fault(Fault::StatusBody(
            403,
            json!({"message": "Resource not accessible by integration"}),
        ));
    }
    api.poll_now(&id).await;
    let v = api
        .wait_for(&id, "error", 20, |v| v["state"] == "error")
        .await;
    assert!(
        v["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("credentials rejected (HTTP 403)"),
        "{v}"
    );
    hub.stop().await.expect("stops");
}
