//! The integrations admin API: validation against the connector's declared fields, roles, and
//! credentials that never leave the hub (responses, metrics, exports, logs, files on disk)

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use trailhub::config::Secret;

use crate::support::emu::Emulator;
use crate::support::hub::{start_hub, start_hub_with, unique_source_ids, Api};
use crate::support::vendors::{Okta, Slack};

async fn expect_400(api: &Api, body: Value, names: &str) {
    let (status, v) = api
        .json(Method::POST, "/api/v1/integrations", Some(body.clone()))
        .await;
    assert_eq!(status, 400, "{body} → {v}");
    let message = v["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(names), "{message:?} should name {names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_validated_against_the_connector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let c = api.get("/api/v1/connectors").await;
    let names: Vec<&str> = c["connectors"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "atlassian_admin",
            "auth0",
            "cloudflare",
            "entra_audits",
            "entra_signins",
            "github",
            "github_enterprise",
            "gitlab",
            "google_workspace",
            "jira",
            "okta",
            "onepassword_audit",
            "onepassword_itemusages",
            "onepassword_signins",
            "slack",
            "webhook"
        ]
    );
    for connector in c["connectors"].as_array().expect("list") {
        let config = connector["config"].as_array().expect("fields");
        assert!(
            config.iter().any(|f| f["name"] == "base_url"),
            "{connector}"
        );
        assert!(connector["credentials"]
            .as_array()
            .expect("fields")
            .iter()
            .all(|f| f["required"].is_boolean()));
        let pushes =
            ["github", "okta", "webhook"].contains(&connector["name"].as_str().unwrap_or(""));
        assert_eq!(connector["webhook"], pushes, "{connector}");
    }

    let ok = json!({"name": "gh", "connector": "github", "config": {"org": "octo", "base_url": "http://127.0.0.1:9"}, "credentials": {"token": "t"}, "schedule": "*/5 * * * *", "paused": true, "allow_insecure_http": true});
    expect_400(
        &api,
        json!({"name": "gh", "connector": "github", "config": {}, "credentials": {"token": "t"}}),
        "config.org",
    )
    .await;
    expect_400(&api, json!({"name": "gh", "connector": "github", "config": {"org": "o", "colour": "red"}, "credentials": {"token": "t"}}), "config.colour").await;
    expect_400(
        &api,
        json!({"name": "gh", "connector": "github", "config": {"org": "o"}, "credentials": {}}),
        "credentials.token",
    )
    .await;
    expect_400(&api, json!({"name": "gh", "connector": "github", "config": {"org": "o"}, "credentials": {"token": "t", "pat": "x"}}), "credentials.pat").await;
    expect_400(
        &api,
        json!({"name": "gh", "connector": "zoom", "config": {}, "credentials": {}}),
        "known: atlassian_admin, auth0, cloudflare, entra_audits, entra_signins, github,",
    )
    .await;
    expect_400(&api, json!({"name": "gh", "connector": "github", "config": {"org": "o"}, "credentials": {"token": "t"}, "schedule": "every minute"}), "schedule").await;
    expect_400(&api, json!({"name": "gh", "connector": "github", "config": {"org": "o"}, "credentials": {"token": "t"}, "backfill": "30 days"}), "backfill").await;
    expect_400(&api, json!({"name": "gh", "connector": "github", "config": {"org": "o", "base_url": "https://u:p@example.com"}, "credentials": {"token": "t"}}), "config.base_url").await;
    expect_400(
        &api,
        json!({"name": "ok", "connector": "okta", "config": {}, "credentials": {"token": "t"}}),
        "config.base_url",
    )
    .await;
    expect_400(&api, json!({"name": "gh", "connector": "github", "config": {"org": "o"}, "credentials": {"token": "t"}, "colour": 1}), "colour").await;

    let created = api.create_integration(ok.clone()).await;
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["state"], "paused");
    assert_eq!(created["schedule"], "*/5 * * * *");
    assert_eq!(created["credentials"], json!(["token"]));
    let (status, _) = api
        .json(Method::POST, "/api/v1/integrations", Some(ok))
        .await;
    assert_eq!(status, 409, "duplicate name");
    let (status, _) = api
        .json(
            Method::POST,
            &format!("/api/v1/integrations/{id}/poll"),
            None,
        )
        .await;
    assert_eq!(status, 409, "poll of a paused integration");
    let (status, _) = api
        .json(Method::POST, "/api/v1/integrations/int_nope/poll", None)
        .await;
    assert_eq!(status, 404);

    // roles: a viewer reads status, changes nothing
    let (_, minted) = api
        .json(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "v", "role": "viewer"})),
        )
        .await;
    let viewer = Api::with_token(&hub, minted["token"].as_str().expect("token"));
    let (status, _) = viewer.json(Method::GET, "/api/v1/integrations", None).await;
    assert_eq!(status, 200);
    let (status, _) = viewer
        .json(
            Method::POST,
            "/api/v1/integrations",
            Some(json!({"name": "x", "connector": "github"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = viewer
        .json(Method::DELETE, &format!("/api/v1/integrations/{id}"), None)
        .await;
    assert_eq!(status, 403);
    let anonymous = Api::with_token(&hub, "");
    let (status, _) = anonymous
        .json(Method::GET, "/api/v1/integrations", None)
        .await;
    assert_eq!(status, 401);

    let (status, v) = api.patch(&id, json!({"config": {"colour": "red"}})).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = api
        .patch(&id, json!({"schedule": "0 0 9 * * 2", "paused": false}))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["schedule"], "0 0 9 * * 2");
    // cron crate day-of-week 2 is Monday: the next polls say so
    let next = v["next_polls"][0].as_str().expect("next polls");
    let when = chrono::DateTime::parse_from_rfc3339(next).expect("rfc3339");
    assert_eq!(
        chrono::Datelike::weekday(&when),
        chrono::Weekday::Mon,
        "{v}"
    );
    assert!(next.contains("T09:00:00"), "{next}");
    hub.stop().await.expect("stops");
}

/// Credentials sealed under one master key do not open under another: the hub refuses to start
/// with it; if the key is lost for good, `trailhub keys forget-credentials --yes` lets the hub
/// start, the integration shows an error (no crash, no hot loop), and setting the credentials
/// again recovers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_master_key_is_refused_until_the_lost_credentials_are_forgotten_and_set_again() {
    let key_a = "a".repeat(64);
    let key_b = "b".repeat(64);
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Slack, "tok-mk", 50).await;
    emu.add_recent(3, 600);
    let id = {
        let hub = start_hub_with(dir.path(), |s| s.master_key = Some(Secret::new(&key_a))).await;
        let api = Api::new(&hub);
        let id = api.create(json!({"name": "slack-mk", "connector": "slack",
                "config": {"base_url": emu.url}, "credentials": {"token": "tok-mk"},
                "schedule": "* * * * * *", "requests_per_minute": 6000, "allow_insecure_http": true})).await;
        api.wait_for_events(&id, 3, 20).await;
        hub.stop().await.expect("stops");
        id
    };
    assert!(
        !dir.path().join("master.key").exists(),
        "the env key is used, no file is made"
    );
    let mut settings = trailhub::config::Settings::for_data_dir(dir.path());
    settings.admin_token = Some(Secret::new(crate::support::hub::ADMIN));
    settings.master_key = Some(Secret::new(&key_b));
    match trailhub::server::start(settings).await {
        Ok(_) => panic!("started with another master key"),
        Err(e) => assert!(e.to_string().contains("opens none"), "{e}"),
    }
    let forget = |yes: bool| {
        let mut cmd = std::process::Command::new(crate::support::hub::BIN);
        cmd.args(["keys", "forget-credentials"])
            .env("TRAILHUB_DATA_DIR", dir.path())
            .env("TRAILHUB_MASTER_KEY", &key_b)
            .env_remove("TRAILHUB_MASTER_KEY_FILE")
            .env("TRAILHUB_LOG", "off");
        if yes {
            cmd.arg("--yes");
        }
        let out = cmd.output().expect("runs");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = forget(false);
    assert!(listed.contains(&format!("slack-mk ({id})")), "{listed}");
    assert!(listed.contains("--yes"), "{listed}");
    let forgotten = forget(true);
    assert!(
        forgotten.contains("forgot the credentials of 1 integrations"),
        "{forgotten}"
    );
    let hub = start_hub_with(dir.path(), |s| s.master_key = Some(Secret::new(&key_b))).await;
    let api = Api::new(&hub);
    let v = api
        .wait_for(&id, "error", 10, |v| v["state"] == "error")
        .await;
    assert!(
        v["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("do not open"),
        "{v}"
    );
    let forgotten = api.events("trailhub").await;
    assert!(
        forgotten
            .iter()
            .any(|e| e["event_type"] == "integration.credentials_forget"),
        "{forgotten:?}"
    );
    emu.add_recent(2, 10);
    let (status, v) = api
        .patch(&id, json!({"credentials": {"token": "tok-mk"}}))
        .await;
    assert_eq!(status, 200, "{v}");
    let events = api.wait_for_events(&id, 5, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    hub.stop().await.expect("stops");
}

/// A PATCH that must be refused with `status`, its message naming `names`.
async fn expect_refused(api: &Api, path: &str, body: Value, status: u16, names: &str) -> Value {
    let (got, v) = api.json(Method::PATCH, path, Some(body)).await;
    assert_eq!(got, status, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains(names), "{message:?} should name {names:?}");
    v
}

/// Issue 7 item 5: a stolen admin token must not redirect sealed credentials. Moving any URL
/// field (`base_url`, `login_url`, ...) to another origin needs every credential in the same
/// request (422 naming the field otherwise), through the API and the CLI; every URL field is
/// https unless the integration opts in to http for a loopback host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_an_outbound_host_needs_the_credentials_again() {
    const SEALED: &str = "sealed-okta-t0ken-8d31c7";
    const NEW: &str = "attacker-chosen-t0ken-2b";
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let legit = Emulator::start(Okta, SEALED, 50).await;
    legit.add_recent(2, 600);
    let evil = Emulator::start(Okta, NEW, 50).await;
    evil.add_recent(1, 600);

    // https only; http only with the opt-in, and only for loopback hosts
    let okta = |base: &str, insecure: bool| {
        json!({"name": "okta-move", "connector": "okta", "config": {"base_url": base},
            "credentials": {"token": SEALED, "webhook_secret": "hook-secret-move"},
            "schedule": "* * * * * *", "requests_per_minute": 6000, "allow_insecure_http": insecure})
    };
    let (status, v) = api
        .json(
            Method::POST,
            "/api/v1/integrations",
            Some(okta(&legit.url, false)),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("config.base_url") && message.contains("allow_insecure_http"),
        "{message}"
    );
    for remote in [
        "http://acme.okta.com",
        "http://10.1.2.3:8080",
        "http://localhost.evil.example",
    ] {
        expect_400(&api, okta(remote, true), "config.base_url").await;
    }
    let created = api.create_integration(okta(&legit.url, true)).await;
    let id = created["id"].as_str().expect("id").to_string();
    assert_eq!(created["allow_insecure_http"], true);
    api.wait_for_events(&id, 2, 20).await;
    let path = format!("/api/v1/integrations/{id}");

    // another host without the credentials: refused, nothing stored, the new host hears nothing
    let move_only = json!({"config": {"base_url": evil.url}});
    let v = expect_refused(&api, &path, move_only, 422, "config.base_url").await;
    assert_eq!(v["error"]["code"], "unprocessable");
    let message = v["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("`token`") && message.contains("`webhook_secret`"),
        "{message}"
    );
    // naming only some of them is not enough: the others would follow to the new host
    let partial = json!({"config": {"base_url": evil.url}, "credentials": {"token": NEW}});
    expect_refused(&api, &path, partial, 422, "`webhook_secret`").await;
    assert_eq!(
        api.integration(&id).await["config"]["base_url"],
        legit.url.as_str()
    );
    // turning the opt-in off while a URL is http is refused too
    let opt_out = json!({"allow_insecure_http": false});
    expect_refused(&api, &path, opt_out, 400, "config.base_url").await;
    // the same origin with another path is not a move
    let (status, v) = api
        .json(
            Method::PATCH,
            &path,
            Some(json!({"config": {"base_url": format!("{}/", legit.url)}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = api.call(Method::POST, &format!("{path}/poll"), None).await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        evil.requests().is_empty(),
        "the sealed credentials went to the new host"
    );

    // the CLI says the same, and exits non-zero
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailhub"))
            .args(["integrations", "update", &id])
            .args(args)
            .args(["--hub", &hub.url(), "--token", crate::support::hub::ADMIN])
            .env("NEW_TOKEN_FOR_TEST", NEW)
            .output()
            .expect("cli runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let base = format!("base_url={}", evil.url);
    let (ok, out) = cli(&["--set", &base]);
    assert!(
        !ok && out.contains("422") && out.contains("config.base_url"),
        "{out}"
    );
    let (ok, out) = cli(&[
        "--set",
        &base,
        "--credential",
        "token=env:NEW_TOKEN_FOR_TEST",
        "--credential",
        "webhook_secret=hook-secret-new",
    ]);
    assert!(ok, "{out}");
    assert!(!out.contains(NEW) && !out.contains(SEALED), "{out}");
    api.wait_for_events(&id, 3, 20).await;
    let heard = evil.requests();
    assert!(!heard.is_empty());
    assert!(
        heard
            .iter()
            .all(|r| r.authorization == format!("SSWS {NEW}")),
        "the new host saw only the credentials given with the move"
    );

    // login_url moves the token endpoint: a URL field like base_url
    let entra = api
        .create_integration(json!({"name": "entra-move", "connector": "entra_audits",
            "config": {"tenant_id": "contoso.onmicrosoft.com"},
            "credentials": {"client_id": "app", "client_secret": "entra-s3cret-move"}, "paused": true}))
        .await;
    let entra_path = format!("/api/v1/integrations/{}", entra["id"].as_str().expect("id"));
    let login_move = json!({"config": {"login_url": "https://login.evil.example"}});
    expect_refused(&api, &entra_path, login_move, 422, "config.login_url").await;
    let (_, connectors) = api.json(Method::GET, "/api/v1/connectors", None).await;
    let kinds: Vec<(String, String)> = connectors["connectors"]
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["name"] == "entra_audits")
        .flat_map(|c| c["config"].as_array().cloned().unwrap_or_default())
        .map(|f| {
            (
                f["name"].as_str().unwrap_or("").to_string(),
                f["kind"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("login_url".into(), "url".into())),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&("scope".into(), "text".into())),
        "{kinds:?}"
    );
    hub.stop().await.expect("stops");
}

/// `POST /api/v1/integrations/test`, answered.
async fn connection_test(api: &Api, body: Value) -> Value {
    let (status, v) = api
        .json(Method::POST, "/api/v1/integrations/test", Some(body))
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// A connection test sends one real request of the first page a poll would ask for, and
/// stores nothing but its audit record: no integration, no event, no name taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_test_makes_one_request_and_stores_nothing() {
    const TOKEN: &str = "okta-probe-token-5521";
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Okta, TOKEN, 50).await;
    emu.add_recent(7, 600);
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);

    let v = connection_test(&api, emu.integration("probe")).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["records"], 7, "{v}");
    assert!(v["elapsed_ms"].is_u64(), "{v}");
    assert!(v.get("error").is_none(), "{v}");
    let requests = emu.api_requests();
    assert_eq!(requests.len(), 1, "one request, no second page");
    // the first page of the first walk: the backfill window (P3D in the body), the token sent
    let since = requests[0]
        .query
        .split('&')
        .find_map(|p| p.strip_prefix("since="))
        .expect("since");
    let since = chrono::DateTime::parse_from_rfc3339(&since.replace("%3A", ":")).expect("time");
    let age = chrono::Utc::now().signed_duration_since(since);
    assert!(
        age > chrono::Duration::hours(71) && age < chrono::Duration::hours(73),
        "{age}"
    );
    assert_eq!(requests[0].authorization, format!("SSWS {TOKEN}"));

    // nothing was made or stored but the record of the test
    assert_eq!(
        api.get("/api/v1/integrations").await["integrations"],
        json!([])
    );
    let stored = api.get("/api/v1/events?limit=1000").await;
    let stored = stored["events"].as_array().expect("events");
    assert!(
        stored.iter().all(|e| e["integration"]["id"] == "trailhub"),
        "{stored:#?}"
    );
    let audit = api
        .get("/api/v1/events?integration=trailhub&event_type=integration.test")
        .await;
    let audit = audit["events"].as_array().expect("events");
    assert_eq!(audit.len(), 1, "{audit:#?}");
    let text = audit[0].to_string();
    assert!(
        !text.contains(TOKEN),
        "the audit record holds no credential"
    );
    assert_eq!(audit[0]["raw"]["details"]["ok"], true, "{text}");
    assert_eq!(audit[0]["raw"]["details"]["credentials"], json!(["token"]));

    // the name is free: the integration is made as tested, and collects
    let id = api.create(emu.integration("probe")).await;
    api.wait_for_events(&id, 7, 20).await;
    hub.stop().await.expect("stops");
}

/// What fails says why, with the vendor's status when it answered, at once (no retry, no wait)
/// and never with a credential in the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connection_test_says_why_without_a_credential() {
    use crate::support::emu::Fault;
    const WRONG: &str = "okta-wrong-token-8841";
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Okta, "okta-right-token-1193", 50).await;
    emu.add_recent(3, 600);
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let wrong = || emu.integration_with("probe", json!({"token": WRONG}));

    let v = connection_test(&api, wrong()).await;
    assert_eq!(
        (v["ok"].clone(), v["status"].clone()),
        (json!(false), json!(401)),
        "{v}"
    );
    let error = v["error"].as_str().expect("error");
    assert!(error.starts_with("credentials rejected"), "{error}");

    // a proxy that echoes the Authorization header: the reason is scrubbed
    emu.fault(Fault::EchoAuthorization(400));
    let v = connection_test(&api, wrong()).await;
    assert_eq!(v["status"], 400, "{v}");
    let error = v["error"].as_str().expect("error");
    assert!(error.contains("HTTP 400"), "{error}");
    use base64::Engine as _;
    for secret in [
        WRONG.to_string(),
        base64::engine::general_purpose::STANDARD.encode(format!("SSWS {WRONG}")),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(WRONG),
    ] {
        assert!(!v.to_string().contains(&secret), "{v}");
    }

    // a vendor fault is reported, not retried
    let before = emu.api_requests().len();
    emu.fault(Fault::Status(503, None));
    let v = connection_test(&api, emu.integration("probe")).await;
    assert_eq!(
        (v["ok"].clone(), v["status"].clone()),
        (json!(false), json!(503)),
        "{v}"
    );
    assert!(
        v["error"].as_str().expect("error").contains("HTTP 503"),
        "{v}"
    );
    assert_eq!(
        emu.api_requests().len(),
        before + 1,
        "one request, no retry"
    );

    // nobody listening: no status
    let mut closed = emu.integration("probe");
    closed["config"]["base_url"] = json!(format!(
        "http://127.0.0.1:{}",
        crate::support::hub::free_port()
    ));
    let v = connection_test(&api, closed).await;
    assert_eq!(
        (v["ok"].clone(), v["status"].clone()),
        (json!(false), Value::Null),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .expect("error")
            .contains("request failed"),
        "{v}"
    );

    // a rate limit says when to try again, and closes the host's gate as a poll's would: the
    // next test answers at once without a request
    emu.fault(Fault::Status(429, Some(30)));
    let v = connection_test(&api, emu.integration("probe")).await;
    assert_eq!(
        (v["ok"].clone(), v["status"].clone()),
        (json!(false), json!(429)),
        "{v}"
    );
    let error = v["error"].as_str().expect("error");
    assert!(
        error.contains("rate limited") && error.contains("30 s"),
        "{error}"
    );
    let before = emu.api_requests().len();
    let started = std::time::Instant::now();
    let v = connection_test(&api, emu.integration("probe")).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        (v["ok"].clone(), v["status"].clone()),
        (json!(false), Value::Null),
        "{v}"
    );
    assert!(
        v["error"].as_str().expect("error").contains("budget"),
        "{v}"
    );
    assert_eq!(emu.api_requests().len(), before);

    // every test was recorded, and no record holds the wrong token
    let audit = api
        .get("/api/v1/events?integration=trailhub&event_type=integration.test")
        .await;
    assert_eq!(audit["events"].as_array().expect("events").len(), 6);
    assert!(!audit.to_string().contains(WRONG));
    hub.stop().await.expect("stops");
}

/// The body is checked by the code that checks a create: the same status and message, and the
/// field named in `error.field`; nothing is sent to the vendor before it passes. Admins only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_test_checks_the_body_as_create_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Okta, "okta-token-7", 50).await;
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    // paused: it never polls, so every request the emulator sees would be a test's
    let mut taken = emu.integration("taken");
    taken["paused"] = json!(true);
    api.create(taken).await;
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = emu.integration("probe");
        f(&mut b);
        b
    };
    let cases: Vec<(Value, u16, Option<&str>)> = vec![
        (
            with(&|b| b["config"] = json!({})),
            400,
            Some("config.base_url"),
        ),
        (
            with(&|b| b["config"]["base_url"] = json!("http://example.com")),
            400,
            Some("config.base_url"),
        ),
        (
            with(&|b| b["config"]["org"] = json!("acme")),
            400,
            Some("config.org"),
        ),
        (
            with(&|b| b["credentials"] = json!({})),
            400,
            Some("credentials.token"),
        ),
        (
            with(&|b| b["connector"] = json!("nope")),
            400,
            Some("connector"),
        ),
        (
            with(&|b| b["schedule"] = json!("every day")),
            400,
            Some("schedule"),
        ),
        (with(&|b| b["name"] = json!("taken")), 409, Some("name")),
        (json!({"name": "probe"}), 400, None),
    ];
    for (body, status, field) in cases {
        let (tested, t) = api
            .json(
                Method::POST,
                "/api/v1/integrations/test",
                Some(body.clone()),
            )
            .await;
        assert_eq!(tested, status, "{body} → {t}");
        assert_eq!(t["error"]["field"].as_str(), field, "{t}");
        let (created, c) = api
            .json(Method::POST, "/api/v1/integrations", Some(body.clone()))
            .await;
        assert_eq!((created, &c), (tested, &t), "create and test answer alike");
    }
    assert_eq!(
        emu.api_requests().len(),
        0,
        "no invalid body reached the vendor"
    );

    let (_, minted) = api
        .json(
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "probe viewer", "role": "viewer"})),
        )
        .await;
    let viewer = Api::with_token(&hub, minted["token"].as_str().expect("token"));
    let (status, _) = viewer
        .json(
            Method::POST,
            "/api/v1/integrations/test",
            Some(emu.integration("probe")),
        )
        .await;
    assert_eq!(status, 403);
    hub.stop().await.expect("stops");
}

/// An OAuth2 connector's test exchanges its client credentials for a token first (the real
/// transport); a client the token endpoint refuses is a credentials error without a status.
/// A push-only connector has nothing to request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_test_exchanges_oauth_tokens_and_knows_push_only_connectors() {
    use crate::support::vendors::Entra;
    const CLIENT_ID: &str = "8a1c7e4e-probe";
    const SECRET: &str = "client-secret-for-probe-31";
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start_as(Entra::SignIns, CLIENT_ID, SECRET, 50).await;
    emu.add_recent(4, 600);
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);

    let body = emu.integration_with(
        "entra-probe",
        json!({"client_id": CLIENT_ID, "client_secret": SECRET}),
    );
    let v = connection_test(&api, body).await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["records"], 4, "{v}");
    assert_eq!(emu.token_requests().len(), 1);
    assert_eq!(emu.api_requests().len(), 1);

    let refused = emu.integration_with(
        "entra-probe",
        json!({"client_id": CLIENT_ID, "client_secret": "wrong-secret-52"}),
    );
    let v = connection_test(&api, refused).await;
    assert_eq!(
        (v["ok"].clone(), v["status"].clone()),
        (json!(false), Value::Null),
        "{v}"
    );
    let error = v["error"].as_str().expect("error");
    assert!(error.starts_with("credentials rejected"), "{error}");
    assert!(!v.to_string().contains("wrong-secret-52"), "{v}");
    assert_eq!(
        emu.api_requests().len(),
        1,
        "no API request without a token"
    );

    let v = connection_test(
        &api,
        json!({"name": "in-house", "connector": "webhook",
            "credentials": {"signing_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}}),
    )
    .await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["push_only"], true, "{v}");
    hub.stop().await.expect("stops");
}
