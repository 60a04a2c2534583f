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
