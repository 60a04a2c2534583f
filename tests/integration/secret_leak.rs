//! Planted secrets — API tokens, OAuth2 client secrets and the access tokens fetched with them,
//! webhook secrets — appear in no response body or header, log line, metric, export, audit
//! event, error, CLI output or stored file: across create, change, polls of vendors that echo
//! what they were sent (into error pages, records and next links), failures and webhooks
//!
//! Each test drives a path where the secret really is sent or echoed (the emulators record
//! it, the hub shows `[redacted]` where it was), so that the final sweep cannot pass by
//! seeing nothing.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::emu::{Emulator, Fault};
use crate::support::hub::{captured_logs, files_containing, start_hub, Api, ADMIN};
use crate::support::vendors::{Entra, Jira, Okta};
use crate::webhooks::{post_hook, signed};

const REDACTED: &str = "[redacted]";
const EVERY_SECOND: &str = "* * * * * *";

/// Everything the hub said during a test: response status lines, headers and bodies, CLI
/// output; at the end, its logs and its files.
struct Said {
    base: String,
    http: reqwest::Client,
    outputs: Vec<String>,
}

impl Said {
    fn new(base: String) -> Said {
        Said {
            base,
            http: reqwest::Client::new(),
            outputs: Vec::new(),
        }
    }

    /// One request as `token` (none for public routes); the answer is kept whole.
    async fn call(
        &mut self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, String) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("hub answers");
        let status = resp.status().as_u16();
        let headers = format!("{:?}", resp.headers());
        let text = resp.text().await.expect("body");
        self.outputs
            .push(format!("{method} {path} → {status}\n{headers}\n{text}"));
        (status, text)
    }

    async fn admin(&mut self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (status, text) = self.call(Some(ADMIN), method, path, body.as_ref()).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates an integration (201 expected); its id.
    async fn create(&mut self, body: Value) -> String {
        let (status, created) = self
            .admin(Method::POST, "/api/v1/integrations", Some(body))
            .await;
        assert_eq!(status, 201, "{created}");
        created["id"].as_str().expect("id").to_string()
    }

    fn keep(&mut self, what: &str, text: impl std::fmt::Display) {
        self.outputs.push(format!("{what}\n{text}"));
    }

    /// Every read a viewer or an admin can make of the hub's state, and the CLI's views.
    async fn sweep(&mut self, ids: &[&str]) {
        let mut paths: Vec<String> = [
            "/api/v1/integrations",
            "/api/v1/connectors",
            "/api/v1/events?limit=1000",
            "/api/v1/events?integration=trailhub&limit=1000",
            "/api/v1/events/export?format=ndjson",
            "/api/v1/events/export?format=csv",
            "/api/v1/events/export?format=json",
            "/api/v1/events/histogram?bucket=1h&group_by=integration",
            "/api/v1/integrity",
            "/api/v1/tokens",
            "/metrics",
            "/healthz",
            "/console",
        ]
        .map(String::from)
        .to_vec();
        paths.extend(ids.iter().map(|id| format!("/api/v1/integrations/{id}")));
        for path in paths {
            let (status, _) = self.call(Some(ADMIN), Method::GET, &path, None).await;
            assert!(status < 500, "{path}: {status}");
        }
        for args in [vec!["integrations", "list"]]
            .into_iter()
            .chain(ids.iter().map(|id| vec!["integrations", "show", id]))
        {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailhub"))
                .args(&args)
                .args(["--hub", &self.base, "--token", ADMIN])
                .output()
                .expect("cli runs");
            assert!(out.status.success(), "{args:?}");
            self.keep(
                &format!("trailhub {}", args.join(" ")),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            );
        }
    }

    /// No secret in anything said, logged or stored.
    fn assert_clean(mut self, secrets: &[&str], dir: &Path) {
        let logs = captured_logs();
        self.keep("logs", logs);
        for secret in secrets {
            for out in &self.outputs {
                if let Some(at) = out.find(secret) {
                    let bytes = &out.as_bytes()[at.saturating_sub(300)..(at + 100).min(out.len())];
                    panic!("{secret} leaked in:\n{}…", String::from_utf8_lossy(bytes));
                }
            }
            let hits = files_containing(dir, secret.as_bytes());
            assert!(hits.is_empty(), "{secret} stored in clear in {hits:?}");
        }
    }
}

/// A hub on a temp dir, its API as admin, and a record of what it says.
async fn start() -> (tempfile::TempDir, trailhub::server::RunningHub, Api, Said) {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let said = Said::new(hub.url());
    (dir, hub, api, said)
}

async fn wait_for_error(api: &Api, id: &str, containing: &str) -> Value {
    api.wait_for(id, containing, 20, |v| {
        v["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(containing))
    })
    .await
}

/// Waits for an error that quotes the vendor's echo, and checks the echo was scrubbed.
async fn wait_for_scrubbed_error(api: &Api, id: &str, containing: &str) {
    let v = wait_for_error(api, id, containing).await;
    assert!(
        v["last_error"].as_str().unwrap_or("").contains(REDACTED),
        "the vendor's echo is quoted, scrubbed: {v}"
    );
}

/// An Okta integration whose vendor (or a proxy in front of it) echoes the `SSWS` token into a
/// record, an error page (422, 401, 500) and a next link; its webhook secret is echoed into a
/// pushed event; the token is rotated, a host move without it is refused, a second integration
/// with rejected credentials fails. None of the four planted values comes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_credentials_never_leak_through_polls_failures_changes_or_webhooks() {
    const PLANTED: &str = "planted-s3cret-4f9a1c";
    const ROTATED: &str = "rotated-s3cret-77b2e0";
    const REJECTED: &str = "rejected-s3cret-0d0d0d";
    const HOOK: &str = "planted-hook-s3cret-6e2f";
    let (dir, hub, api, mut said) = start().await;
    let emu = Emulator::start(Okta, PLANTED, 5).await;
    emu.add_recent(8, 3600);
    emu.fault(Fault::EchoInRecord);

    // create, and a first cycle whose page quotes the header in a record
    let body = json!({"name": "okta-leak", "connector": "okta", "config": {"base_url": emu.url},
        "credentials": {"token": PLANTED, "webhook_secret": HOOK}, "schedule": EVERY_SECOND,
        "requests_per_minute": 6000, "allow_insecure_http": true});
    let id = said.create(body).await;
    api.wait_for_events(&id, 8, 20).await;
    let requests = emu.requests();
    assert!(requests
        .iter()
        .all(|r| r.authorization == format!("SSWS {PLANTED}")));
    assert!(requests.iter().all(|r| !r.query.contains(PLANTED)));
    let (_, export) = said
        .call(
            Some(ADMIN),
            Method::GET,
            &format!("/api/v1/events/export?format=ndjson&integration={id}"),
            None,
        )
        .await;
    assert!(export.contains(REDACTED), "the echoed record: {export}");

    // failures whose pages echo the header: an error page, a next link, 401 and 500 bodies
    emu.fault(Fault::EchoAuthorization(422));
    wait_for_scrubbed_error(&api, &id, "HTTP 422").await;
    emu.fault(Fault::EchoInLink);
    wait_for_error(&api, &id, "next-page link").await;
    emu.fault(Fault::EchoAuthorization(401));
    wait_for_error(&api, &id, "credentials rejected").await;
    for _ in 0..4 {
        emu.fault(Fault::EchoAuthorization(500));
    }
    wait_for_error(&api, &id, "gave up").await;

    // a second integration whose vendor refuses its token, with an echo
    let refusing = Emulator::start(Okta, PLANTED, 5).await;
    refusing.fault(Fault::EchoAuthorization(401));
    let bad = json!({"name": "okta-bad", "connector": "okta", "config": {"base_url": refusing.url},
        "credentials": {"token": REJECTED}, "schedule": EVERY_SECOND, "allow_insecure_http": true});
    let bad_id = said.create(bad).await;
    wait_for_error(&api, &bad_id, "credentials rejected").await;
    assert_eq!(
        refusing.requests()[0].authorization,
        format!("SSWS {REJECTED}")
    );
    // refused requests that carry a secret
    let (status, _) = said
        .admin(
            Method::POST,
            "/api/v1/integrations",
            Some(
                json!({"name": "x", "connector": "okta", "config": {"base_url": emu.url},
                "credentials": {"token": REJECTED}, "colour": "red"}),
            ),
        )
        .await;
    assert_eq!(status, 400);
    let (status, _) = said
        .admin(
            Method::POST,
            "/api/v1/integrations",
            Some(
                json!({"name": "x", "connector": "okta", "config": {"base_url": emu.url},
                "credentials": {"token": REJECTED}}),
            ),
        )
        .await;
    assert_eq!(status, 400, "http without the opt-in");

    // changes: a host move without the credentials is refused; a rotation is audited
    let path = format!("/api/v1/integrations/{id}");
    let (status, _) = said
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"config": {"base_url": refusing.url}})),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = said
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"credentials": {"token": ROTATED, "pat": ROTATED}})),
        )
        .await;
    assert_eq!(status, 400);
    let (status, v) = said
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"credentials": {"token": ROTATED}})),
        )
        .await;
    assert_eq!(status, 200, "{v}");

    // webhooks: the handshake, a wrong secret, and a genuine delivery that quotes both secrets
    let hub_url = hub.url();
    let (status, _) = said
        .call(None, Method::GET, &format!("/hooks/{id}"), None)
        .await;
    assert!(status < 500);
    let record = {
        let template = emu.record(0);
        let mut r = template;
        r["uuid"] = json!("hook-echo-1");
        r["displayMessage"] = json!(format!("hook said {HOOK} with SSWS {ROTATED}"));
        r
    };
    let delivery = json!({"data": {"events": [record]}}).to_string();
    for (secret, expected) in [("not-the-hook-secret", 401), (HOOK, 200)] {
        let (status, v) = post_hook(
            &hub_url,
            &id,
            &[
                ("content-type", "application/json"),
                ("authorization", secret),
            ],
            &delivery,
        )
        .await;
        assert_eq!(status, expected, "{v}");
        said.keep("hook delivery", v);
    }
    let hooked = api
        .events(&id)
        .await
        .into_iter()
        .find(|e| e["source_id"] == "hook-echo-1")
        .expect("the delivery is stored");
    assert_eq!(
        hooked["description"], "hook said [redacted] with SSWS [redacted]",
        "{hooked}"
    );

    tokio::time::sleep(Duration::from_millis(1200)).await;
    said.sweep(&[&id, &bad_id]).await;
    let audit = said
        .outputs
        .iter()
        .find(|o| o.contains("integration=trailhub"))
        .expect("audit output");
    assert!(audit.contains("integration.credentials_rotate"), "{audit}");
    hub.stop().await.expect("stops");
    assert!(
        captured_logs().contains(&format!("integration={id}")),
        "the log capture works"
    );
    said.assert_clean(&[PLANTED, ROTATED, REJECTED, HOOK], dir.path());
}

/// OAuth2: the client secret and the access tokens the vendor hands out, echoed by the API (a
/// bearer in a 422 page) and by the token endpoint (the secret as its `error` code), and a Jira
/// basic-auth header echoed base64 — none of it comes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth2_secrets_tokens_and_basic_auth_never_leak() {
    const CLIENT_ID: &str = "8a1c7e4e-client";
    const PLANTED_SECRET: &str = "planted-client-s3cret-93e1";
    const TOKEN_PREFIX: &str = "planted-access-t0ken-5c2b";
    const REJECTED: &str = "rejected-client-s3cret-11aa";
    const JIRA_TOKEN: &str = "planted-jira-api-t0ken-71";
    let (dir, hub, api, mut said) = start().await;
    let emu = Emulator::start_as(Entra::Audits, CLIENT_ID, PLANTED_SECRET, 4).await;
    emu.state.lock().expect("lock").token_prefix = TOKEN_PREFIX.into();
    emu.add_recent(9, 3600);
    let credentials = json!({"client_id": CLIENT_ID, "client_secret": PLANTED_SECRET});
    let body = emu.integration_with("entra-leak", credentials);
    let id = said.create(body).await;
    api.wait_for_events(&id, 9, 20).await;

    // the API echoes the bearer token into an error page
    emu.fault(Fault::EchoAuthorization(422));
    wait_for_scrubbed_error(&api, &id, "HTTP 422").await;
    assert!(emu.api_requests().iter().all(|r| r
        .authorization
        .starts_with(&format!("Bearer {TOKEN_PREFIX}"))));
    // the token endpoint answers with the client secret as its error code
    emu.fault(Fault::TokenEcho(400));
    emu.revoke_tokens();
    wait_for_scrubbed_error(&api, &id, "token endpoint HTTP 400").await;
    // a client the endpoint refuses
    let bad = emu.integration_with(
        "entra-leak-bad",
        json!({"client_id": CLIENT_ID, "client_secret": REJECTED}),
    );
    let bad_id = said.create(bad).await;
    wait_for_error(&api, &bad_id, "credentials rejected").await;
    assert!(emu.token_requests().len() >= 3, "tokens were fetched again");

    // basic auth (`email:api_token`, base64) echoed by a Jira proxy
    let jira = Emulator::start_as(Jira, "admin@example.com", JIRA_TOKEN, 4).await;
    jira.fault(Fault::EchoAuthorization(422));
    let body = jira.integration_with(
        "jira-leak",
        json!({"email": "admin@example.com", "api_token": JIRA_TOKEN}),
    );
    let jira_id = said.create(body).await;
    wait_for_scrubbed_error(&api, &jira_id, "HTTP 422").await;
    assert!(jira.requests()[0].authorization.starts_with("Basic "));

    tokio::time::sleep(Duration::from_millis(1200)).await;
    said.sweep(&[&id, &bad_id, &jira_id]).await;
    hub.stop().await.expect("stops");
    said.assert_clean(
        &[PLANTED_SECRET, TOKEN_PREFIX, REJECTED, JIRA_TOKEN],
        dir.path(),
    );
}

/// The in-house `webhook` connector: its signing secret, quoted in a signed delivery and in a
/// line that fails validation, is stored and answered as `[redacted]`; forged deliveries are
/// refused without naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_signing_secrets_never_leak() {
    let (dir, hub, api, mut said) = start().await;
    let secret = trailhub::webhooks::new_standard_webhooks_secret();
    let planted = secret.expose().to_string();
    let id = said
        .create(json!({"name": "app-leak", "connector": "webhook",
            "credentials": {"signing_secret": planted}}))
        .await;
    let now = chrono::Utc::now().timestamp();
    let url = hub.url();
    let body = json!([
        {"time": "2024-05-01T10:00:00Z", "source_id": "leak-1", "event_type": "config.dump",
         "action": "read", "actor": {"id": "u-1"}, "description": format!("secret is {planted}")},
        {"time": "2024-05-01T10:00:00Z", "event_type": "x", "action": planted, "actor": {"id": "u-1"}},
    ])
    .to_string();
    let forger = trailhub::webhooks::new_standard_webhooks_secret();
    let (status, v) =
        crate::webhooks::post_signed(&url, &id, &signed(&forger, "msg_forged", now, &body), &body)
            .await;
    assert_eq!(status, 401, "{v}");
    said.keep("forged delivery", v);
    let (status, v) =
        crate::webhooks::post_signed(&url, &id, &signed(&secret, "msg_1", now, &body), &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["stored"], 1, "{v}");
    said.keep("genuine delivery", &v);
    assert!(v["rejected"].to_string().contains(REDACTED), "{v}");
    let events = api.events(&id).await;
    assert_eq!(events[0]["description"], "secret is [redacted]");
    said.sweep(&[&id]).await;
    hub.stop().await.expect("stops");
    said.assert_clean(&[&planted], dir.path());
}
