//! The connector catalogue against its loopback emulators: pagination, cursor and auth flow of
//! each vendor (the token endpoint included for OAuth2 vendors); the cases every connector
//! passes are in conformance.rs

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::emu::{Emulator, Fault};
use crate::support::hub::{captured_logs, files_containing, start_hub, unique_source_ids, Api};
use crate::support::vendors::{
    AtlassianAdmin, Auth0, Cloudflare, Entra, Github, Gitlab, Google, Jira, OnePassword,
    GOOGLE_TEST_KEY,
};

const CLIENT_ID: &str = "8a1c7e4e-client";
const SECRET: &str = "client-secret-for-tests";

fn oauth_credentials() -> Value {
    json!({"client_id": CLIENT_ID, "client_secret": SECRET})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_token_filter_next_link_and_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start_as(Entra::Audits, CLIENT_ID, SECRET, 5).await;
    emu.add_recent(23, 3600);
    emu.fault(Fault::Status(429, Some(1)));
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let id = api
        .create(emu.integration_with("entra", oauth_credentials()))
        .await;
    let events = api.wait_for_events(&id, 23, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    api.wait_live(&id).await;
    // more cycles run (every second); still the one token
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let tokens = emu.token_requests();
    assert_eq!(tokens.len(), 1, "one token, cached");
    let form: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(&tokens[0].body).expect("form");
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], SECRET);
    assert_eq!(form["scope"], "https://graph.microsoft.com/.default");
    assert_eq!(tokens[0].path, "/contoso.onmicrosoft.com/oauth2/v2.0/token");
    let api_requests = emu.api_requests();
    assert!(api_requests
        .iter()
        .all(|r| r.authorization == "Bearer emu-access-token-1"));
    let first = &api_requests[0];
    assert_eq!(first.status, 429);
    let q: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(&first.query).expect("query");
    assert!(q["$filter"].starts_with("activityDateTime ge 20"), "{q:?}");
    assert_eq!(q["$orderby"], "activityDateTime desc");
    // Retry-After: 1 was honoured
    assert!(api_requests[1].at.duration_since(first.at) >= Duration::from_millis(950));
    // the next links were followed: 23 records at 5 a page
    assert!(
        api_requests
            .iter()
            .filter(|r| r.query.contains("skiptoken"))
            .count()
            >= 4
    );
    // a later cycle asks from the high-water mark minus the overlap (15 min), not the backfill
    let last: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(&api_requests.last().expect("requests").query).expect("q");
    let since = last["$filter"]
        .strip_prefix("activityDateTime ge ")
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .expect("filter time");
    let age = chrono::Utc::now().signed_duration_since(since);
    assert!(age < chrono::Duration::minutes(30), "{age}");
    hub.stop().await.expect("stops");
}

/// A token the vendor stops accepting (401) is fetched again once and the page retried; a
/// refused client is a credentials error; a rate-limited token endpoint is waited out; a token
/// near its expiry is replaced before it is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_token_401_refused_client_and_expiry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start_as(Entra::SignIns, CLIENT_ID, SECRET, 50).await;
    emu.add_recent(5, 600);
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let id = api
        .create(emu.integration_with("entra-signins", oauth_credentials()))
        .await;
    api.wait_for_events(&id, 5, 20).await;
    assert_eq!(emu.token_requests().len(), 1);
    // the vendor revokes the token: one 401, a new token, the same page again
    emu.revoke_tokens();
    emu.add_recent(3, 5);
    api.wait_for_events(&id, 8, 20).await;
    let v = api.integration(&id).await;
    assert_eq!(v["last_error"], Value::Null, "{v:#}");
    assert_eq!(emu.token_requests().len(), 2);
    let statuses: Vec<u16> = emu.api_requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        1,
        "{statuses:?}"
    );

    // a client the token endpoint refuses: credentials rejected, the vendor's text left out
    let bad = api
        .create_integration(emu.integration_with(
            "entra-bad",
            json!({"client_id": CLIENT_ID, "client_secret": "wrong"}),
        ))
        .await;
    let bad_id = bad["id"].as_str().expect("id").to_string();
    let v = api
        .wait_for(&bad_id, "error", 10, |v| v["state"] == "error")
        .await;
    let err = v["last_error"].as_str().unwrap_or("");
    assert!(err.starts_with("credentials rejected"), "{err}");
    assert!(err.contains("invalid_client"), "{err}");
    assert!(!err.contains("AADSTS"), "vendor free text stays out: {err}");
    assert!(emu
        .api_requests()
        .iter()
        .all(|r| r.authorization.starts_with("Bearer emu-access-token")));

    // a rate-limited token endpoint is waited out, not a credentials error
    emu.revoke_tokens();
    emu.fault(Fault::TokenStatus(429, Some(1)));
    emu.add_recent(2, 5);
    api.wait_for_events(&id, 10, 20).await;
    let v = api.integration(&id).await;
    assert_eq!(v["state"], "live", "{v:#}");
    assert_eq!(v["last_error"], Value::Null, "{v:#}");
    hub.stop().await.expect("stops");

    // tokens that live 3 s: cycles every second replace them before they expire, so the API
    // never sees an expired one
    let emu = Emulator::start_as(Entra::SignIns, CLIENT_ID, SECRET, 50).await;
    emu.state.lock().expect("lock").token_lifetime = 3;
    emu.add_recent(4, 600);
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let id = api
        .create(emu.integration_with("entra-short-tokens", oauth_credentials()))
        .await;
    api.wait_for_events(&id, 4, 20).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while emu.token_requests().len() < 3 && tokio::time::Instant::now() < deadline {
        emu.add_recent(1, 1);
        api.poll_now(&id).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        emu.token_requests().len() >= 3,
        "tokens replaced before expiry"
    );
    let statuses: Vec<u16> = emu.api_requests().iter().map(|r| r.status).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    hub.stop().await.expect("stops");
}

/// Auth0: a client-credentials token with the Management API audience; the walk is seeded by a
/// date search, then continues with `from=<last log_id>&take=100`; the request with the newest
/// log_id is the cursor, polled again after an empty page, and finds late-stamped events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_checkpoint_walk_and_token_audience() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start_as(Auth0, CLIENT_ID, SECRET, 4).await;
    emu.add_recent(11, 3600);
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let id = api
        .create(emu.integration_with("auth0", oauth_credentials()))
        .await;
    let events = api.wait_for_events(&id, 11, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let v = api.wait_live(&id).await;
    let next = v["cursor"]["next"].as_str().expect("a saved checkpoint");
    assert!(next.contains("from=900"), "{next}");
    let tokens = emu.token_requests();
    assert_eq!(tokens.len(), 1);
    let form: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(&tokens[0].body).expect("form");
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["audience"], format!("{}/api/v2/", emu.url));
    assert_eq!(form["client_secret"], SECRET);
    let reqs = emu.api_requests();
    let first: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(&reqs[0].query).expect("query");
    assert!(first["q"].starts_with("date:[20"), "{first:?}");
    assert_eq!(first["sort"], "date:1");
    assert!(!first.contains_key("from"));
    assert!(reqs[1..].iter().all(|r| r.query.contains("from=900")));
    assert!(reqs.iter().all(|r| r.query.contains("take=100")));
    // an event stamped an hour ago that arrives now: found by the checkpoint
    let late = emu.add_events(&[chrono::Utc::now().timestamp_micros() - 3_600_000_000]);
    let events = api.wait_for_events(&id, 12, 20).await;
    assert!(unique_source_ids(&events).contains(&late[0]));
    hub.stop().await.expect("stops");
}

/// GitLab: `PRIVATE-TOKEN`, keyset newest first with `created_after`, Link rel=next; the
/// instance endpoint chosen by `config.level`, whose values are checked when saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_keyset_walk_and_level_choice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start_as(Gitlab, "", SECRET, 4).await;
    emu.add_recent(10, 3600);
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let mut body = emu.integration_with("gitlab-group", json!({"token": SECRET}));
    let id = api.create(body.clone()).await;
    let events = api.wait_for_events(&id, 10, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let reqs = emu.api_requests();
    assert!(reqs
        .iter()
        .all(|r| r.path == "/api/v4/groups/60/audit_events"));
    let first: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(&reqs[0].query).expect("query");
    assert_eq!(first["pagination"], "keyset");
    assert_eq!(first["sort"], "desc");
    assert!(first["created_after"].starts_with("20"));
    assert!(reqs[1].query.contains("cursor=k"), "the Link was followed");

    // a value outside the field's choices is refused, naming the field
    body["name"] = json!("gitlab-bad-level");
    body["config"]["level"] = json!("project");
    let (status, v) = api
        .json(Method::POST, "/api/v1/integrations", Some(body.clone()))
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("config.level"), "{v}");

    // the instance endpoint
    body["name"] = json!("gitlab-instance");
    body["config"] = json!({"base_url": emu.url, "level": "instance"});
    let instance_id = api.create(body).await;
    api.wait_for_events(&instance_id, 10, 20).await;
    assert!(emu
        .api_requests()
        .iter()
        .any(|r| r.path == "/api/v4/audit_events"));
    // the connector lists the choices
    let connectors = api.get("/api/v1/connectors").await;
    assert!(connectors
        .to_string()
        .contains("\"choices\":[\"group\",\"instance\"]"));
    hub.stop().await.expect("stops");
}

/// 1Password: a reset cursor body first, then `{cursor}` bodies; the cursor is kept after
/// `has_more: false` and posted again, so events that arrive later (even stamped earlier) come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onepassword_post_cursor_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start_as(OnePassword::AuditEvents, "", SECRET, 4).await;
    emu.add_recent(9, 3600);
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let id = api
        .create(emu.integration_with("1password", json!({"token": SECRET})))
        .await;
    let events = api.wait_for_events(&id, 9, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let reqs = emu.api_requests();
    assert!(reqs.iter().all(|r| r.method == "POST"));
    assert!(reqs
        .iter()
        .all(|r| r.authorization == format!("Bearer {SECRET}")));
    assert!(reqs.iter().all(|r| r.query.is_empty()));
    let first: Value = serde_json::from_str(&reqs[0].body).expect("json");
    assert_eq!(first["limit"], 1000);
    assert!(first["start_time"]
        .as_str()
        .expect("start")
        .starts_with("20"));
    for r in &reqs[1..] {
        let b: Value = serde_json::from_str(&r.body).expect("json");
        let keys: Vec<&String> = b.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["cursor"], "{b}");
    }
    let v = api.wait_live(&id).await;
    assert!(v["cursor"]["next"]
        .as_str()
        .unwrap_or("")
        .contains("#cursor="));
    let late = emu.add_events(&[chrono::Utc::now().timestamp_micros() - 7_200_000_000]);
    let events = api.wait_for_events(&id, 10, 20).await;
    assert!(unique_source_ids(&events).contains(&late[0]));
    hub.stop().await.expect("stops");
}

/// Jira (basic auth, offset/limit, `from`) and Cloudflare (bearer, `since`, `direction=asc`,
/// `page` until an empty `result`) walk their offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jira_and_cloudflare_offset_walks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let jira = Emulator::start_as(Jira, "admin@example.com", SECRET, 4).await;
    jira.add_recent(10, 3600);
    let id = api
        .create(jira.integration_with(
            "jira",
            json!({"email": "admin@example.com", "api_token": SECRET}),
        ))
        .await;
    let events = api.wait_for_events(&id, 10, 20).await;
    assert_eq!(unique_source_ids(&events), jira.ids());
    let offsets: Vec<String> = jira
        .api_requests()
        .iter()
        .take(4)
        .map(|r| {
            let q: std::collections::HashMap<String, String> =
                serde_urlencoded::from_str(&r.query).expect("query");
            assert!(q["from"].starts_with("20"));
            q.get("offset").cloned().unwrap_or_default()
        })
        .collect();
    assert_eq!(offsets, ["", "4", "8", "10"]);

    let cf = Emulator::start_as(Cloudflare, "", SECRET, 4).await;
    cf.add_recent(9, 3600);
    let id = api
        .create(cf.integration_with("cloudflare", json!({"token": SECRET})))
        .await;
    let events = api.wait_for_events(&id, 9, 20).await;
    assert_eq!(unique_source_ids(&events), cf.ids());
    let pages: Vec<String> = cf
        .api_requests()
        .iter()
        .take(4)
        .map(|r| {
            let q: std::collections::HashMap<String, String> =
                serde_urlencoded::from_str(&r.query).expect("query");
            assert_eq!(q["direction"], "asc");
            assert!(q["since"].starts_with("20"));
            q.get("page").cloned().unwrap_or_default()
        })
        .collect();
    assert_eq!(pages, ["", "2", "3", "4"]);
    hub.stop().await.expect("stops");
}

/// GitHub Enterprise: the organization log's emulator at /enterprises/{enterprise}/audit-log
/// (same shape): the walk, a 429 and a 5xx on the way, a restart that adds late events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_enterprise_walk_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Github::Enterprise, "tok-ent", 6).await;
    emu.set_repeat_across_pages();
    emu.add_recent(20, 86_400);
    emu.fault(Fault::Status(429, Some(1)));
    emu.fault(Fault::Status(502, None));
    let body = emu.integration("ghe");
    let id = {
        let hub = start_hub(dir.path()).await;
        let api = Api::new(&hub);
        let id = api.create(body).await;
        let events = api.wait_for_events(&id, 20, 30).await;
        assert_eq!(unique_source_ids(&events), emu.ids());
        hub.stop().await.expect("stops");
        id
    };
    let now = chrono::Utc::now().timestamp_micros();
    emu.add_events(&[now - 120_000_000]);
    emu.add_recent(3, 10);
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let events = api.wait_for_events(&id, 24, 30).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let e = events
        .iter()
        .find(|e| e["targets"].to_string().contains("octo-corp"));
    assert!(e.is_some(), "organization targets mapped");
    assert!(emu
        .requests()
        .iter()
        .all(|r| r.authorization == "Bearer tok-ent"));
    hub.stop().await.expect("stops");
}

fn google_credentials() -> Value {
    json!({"client_email": CLIENT_ID, "private_key": GOOGLE_TEST_KEY})
}

/// Google: the RS256 assertion (iss, sub, scope, aud) is accepted, one token serves every page;
/// a subject the service account may not act as is refused credentials; a key that is no PEM
/// is a configuration error; the private key appears in no output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_workspace_jwt_bearer_and_page_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start_as(Google, CLIENT_ID, SECRET, 4).await;
    emu.add_recent(10, 3600);
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let id = api
        .create(emu.integration_with("google", google_credentials()))
        .await;
    let events = api.wait_for_events(&id, 10, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let tokens = emu.token_requests();
    assert_eq!(tokens.len(), 1);
    assert!(tokens.iter().all(|t| t.status == 200));
    let form: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(&tokens[0].body).expect("form");
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    let reqs = emu.api_requests();
    assert!(reqs[0].query.contains("startTime=20"));
    assert!(reqs[1].query.contains("pageToken=p4"), "{}", reqs[1].query);

    let mut wrong_sub = emu.integration_with("google-sub", google_credentials());
    wrong_sub["config"]["admin_email"] = json!("intruder@example.com");
    let bad = api.create_integration(wrong_sub).await;
    let bad_id = bad["id"].as_str().expect("id").to_string();
    let v = api
        .wait_for(&bad_id, "error", 10, |v| v["state"] == "error")
        .await;
    let err = v["last_error"].as_str().unwrap_or("");
    assert!(err.starts_with("credentials rejected"), "{err}");
    assert!(err.contains("unauthorized_client"), "{err}");

    let garbage = api
        .create_integration(emu.integration_with(
            "google-garbage",
            json!({"client_email": CLIENT_ID, "private_key": "not a key"}),
        ))
        .await;
    let garbage_id = garbage["id"].as_str().expect("id").to_string();
    let v = api
        .wait_for(&garbage_id, "error", 10, |v| v["state"] == "error")
        .await;
    assert!(
        v["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("private_key"),
        "{v:#}"
    );
    let (_, listing) = api.call(Method::GET, "/api/v1/integrations", None).await;
    hub.stop().await.expect("stops");
    let key_body = GOOGLE_TEST_KEY.lines().nth(1).expect("key line");
    for out in [listing, captured_logs()] {
        assert!(!out.contains(key_body), "the private key leaked");
    }
    assert!(files_containing(dir.path(), key_body.as_bytes()).is_empty());
}

/// Atlassian organization events-stream: `from` in epoch ms seeds the walk, `meta.next` goes back
/// as `cursor=`, and the last page's cursor is kept and polled again for new events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn atlassian_admin_stream_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start_as(AtlassianAdmin, "", SECRET, 4).await;
    emu.add_recent(9, 3600);
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let id = api
        .create(emu.integration_with("atlassian", json!({"api_key": SECRET})))
        .await;
    let events = api.wait_for_events(&id, 9, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let reqs = emu.api_requests();
    assert!(reqs
        .iter()
        .all(|r| r.authorization == format!("Bearer {SECRET}")));
    let first: std::collections::HashMap<String, String> =
        serde_urlencoded::from_str(&reqs[0].query).expect("query");
    let from: i64 = first["from"].parse().expect("epoch ms");
    assert!(from > 1_600_000_000_000, "{from}");
    assert!(reqs[1].query.contains("cursor=a"));
    let v = api.wait_live(&id).await;
    assert!(v["cursor"]["next"]
        .as_str()
        .unwrap_or("")
        .contains("cursor=a"));
    let late = emu.add_events(&[chrono::Utc::now().timestamp_micros() - 1_800_000_000]);
    let events = api.wait_for_events(&id, 10, 20).await;
    assert!(unique_source_ids(&events).contains(&late[0]));
    hub.stop().await.expect("stops");
}
