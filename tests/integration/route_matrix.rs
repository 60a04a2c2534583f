//! Every route of the router × every kind of caller (no token, viewer, ingest, admin): the
//! status each must get. The list of routes is `trailhub::api::route_table()`, written by the
//! same calls that build the router, and the matrix must cover exactly that table: a route added
//! without its row here fails this test.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::hub::{start_hub, Api, ADMIN};

/// Columns of a row: the status for no token, a viewer, an ingest token, an admin.
type Expect = [u16; 4];
const CALLERS: [&str; 4] = ["no token", "viewer", "ingest", "admin"];

/// The `/api` rule: no token 401; a role that may not 403.
const VIEWER_READS: Expect = [401, 200, 403, 200];
const ADMIN_ONLY_READ: Expect = [401, 403, 403, 200];
const PUBLIC_PAGE: Expect = [200, 200, 200, 200];

/// Every route and what each caller gets. Bodies and queries are harmless: what an admin
/// creates is thrown away, what it deletes was made for the purpose.
fn matrix() -> Vec<(Method, &'static str, Expect)> {
    use Method as M;
    vec![
        (M::GET, "/", [307; 4]),
        (M::GET, "/console", PUBLIC_PAGE),
        (M::GET, "/console/app.css", PUBLIC_PAGE),
        (M::GET, "/console/core.js", PUBLIC_PAGE),
        (M::GET, "/console/chart.js", PUBLIC_PAGE),
        (M::GET, "/console/events.js", PUBLIC_PAGE),
        (M::GET, "/console/desk.js", PUBLIC_PAGE),
        (M::GET, "/console/integrations.js", PUBLIC_PAGE),
        (M::GET, "/console/app.js", PUBLIC_PAGE),
        (M::GET, "/healthz", PUBLIC_PAGE),
        (M::GET, "/readyz", PUBLIC_PAGE),
        (M::GET, "/metrics", PUBLIC_PAGE),
        (M::GET, "/api/v1/integrity", VIEWER_READS),
        (M::GET, "/api/v1/events", VIEWER_READS),
        (M::POST, "/api/v1/events", [401, 403, 200, 200]),
        (M::GET, "/api/v1/events/histogram", VIEWER_READS),
        (M::GET, "/api/v1/events/export", VIEWER_READS),
        (M::GET, "/api/v1/events/{id}", VIEWER_READS),
        (M::GET, "/api/v1/events/{id}/proof", VIEWER_READS),
        (M::GET, "/api/v1/checkpoints", VIEWER_READS),
        (M::GET, "/api/v1/checkpoints/latest", VIEWER_READS),
        (M::GET, "/api/v1/checkpoints/{size}", VIEWER_READS),
        (M::GET, "/api/v1/checkpoints/consistency", VIEWER_READS),
        // after POST /api/v1/events above: the log grew, so the admin's call signs anew
        (M::POST, "/api/v1/checkpoints", [401, 403, 403, 201]),
        (M::GET, "/api/v1/tokens", ADMIN_ONLY_READ),
        (M::POST, "/api/v1/tokens", [401, 403, 403, 201]),
        (M::DELETE, "/api/v1/tokens/{id}", [401, 403, 403, 204]),
        (M::GET, "/api/v1/connectors", VIEWER_READS),
        (M::GET, "/api/v1/integrations", VIEWER_READS),
        (M::POST, "/api/v1/integrations", [401, 403, 403, 201]),
        // one request to a closed loopback port: the test ran (and failed), so 200
        (M::POST, "/api/v1/integrations/test", ADMIN_ONLY_READ),
        (M::GET, "/api/v1/integrations/{id}", VIEWER_READS),
        (M::PATCH, "/api/v1/integrations/{id}", ADMIN_ONLY_READ),
        (M::DELETE, "/api/v1/integrations/{id}", [401, 403, 403, 204]),
        (
            M::POST,
            "/api/v1/integrations/{id}/poll",
            [401, 403, 403, 202],
        ),
        (M::GET, "/api/v1/retention", VIEWER_READS),
        (M::PUT, "/api/v1/retention", ADMIN_ONLY_READ),
        (M::POST, "/api/v1/retention/run", ADMIN_ONLY_READ),
        (M::GET, "/api/v1/legal-holds", VIEWER_READS),
        (M::POST, "/api/v1/legal-holds", [401, 403, 403, 201]),
        // no hold has this id: the admin gets past the role check to a 404
        (M::DELETE, "/api/v1/legal-holds/{id}", [401, 403, 403, 404]),
        (M::GET, "/api/v1/holds", VIEWER_READS),
        (M::POST, "/api/v1/holds", [401, 403, 403, 201]),
        (M::DELETE, "/api/v1/holds/{id}", [401, 403, 403, 404]),
        // no archive is configured here (tests/integration/archive.rs has one)
        (M::GET, "/api/v1/archive", [401, 403, 403, 409]),
        // an empty body is no segment
        (M::POST, "/api/v1/archive/restore", [401, 403, 403, 400]),
        (M::GET, "/api/v1/storage", VIEWER_READS),
        (M::GET, "/api/v1/alerts/rules", VIEWER_READS),
        (M::POST, "/api/v1/alerts/rules", [401, 403, 403, 201]),
        // no rule or firing has the integration's id: readers get past the role check to a 404
        (M::GET, "/api/v1/alerts/rules/{id}", [401, 404, 403, 404]),
        (M::PATCH, "/api/v1/alerts/rules/{id}", [401, 403, 403, 404]),
        (M::DELETE, "/api/v1/alerts/rules/{id}", [401, 403, 403, 404]),
        (
            M::POST,
            "/api/v1/alerts/rules/{id}/test",
            [401, 403, 403, 404],
        ),
        (M::GET, "/api/v1/alerts", VIEWER_READS),
        (M::GET, "/api/v1/alerts/{id}", [401, 404, 403, 404]),
        (M::GET, "/api/v1/channels", VIEWER_READS),
        (M::POST, "/api/v1/channels", [401, 403, 403, 201]),
        (M::GET, "/api/v1/channels/{id}", VIEWER_READS),
        (M::PATCH, "/api/v1/channels/{id}", ADMIN_ONLY_READ),
        (M::DELETE, "/api/v1/channels/{id}", [401, 403, 403, 204]),
        // the channel points at a closed loopback port: the first attempt fails at once
        (M::POST, "/api/v1/channels/{id}/test", ADMIN_ONLY_READ),
        (M::GET, "/api/v1/deliveries", VIEWER_READS),
        // no delivery has this id: a viewer may look, and finds nothing
        (M::GET, "/api/v1/deliveries/{id}", [401, 404, 403, 404]),
        // viewers make and download exports and reports (the timeline's export is theirs too)
        (M::GET, "/api/v1/exports", VIEWER_READS),
        (M::POST, "/api/v1/exports", [401, 202, 403, 202]),
        (M::GET, "/api/v1/exports/{id}", VIEWER_READS),
        (M::GET, "/api/v1/exports/{id}/download", VIEWER_READS),
        // a viewer deletes only the jobs it made; this one is the admin's
        (M::DELETE, "/api/v1/exports/{id}", [401, 403, 403, 204]),
        (M::GET, "/api/v1/reports", VIEWER_READS),
        (M::POST, "/api/v1/reports", [401, 202, 403, 202]),
        (M::GET, "/api/v1/reports/{id}", VIEWER_READS),
        (M::GET, "/api/v1/reports/{id}/download", VIEWER_READS),
        (M::DELETE, "/api/v1/reports/{id}", [401, 403, 403, 204]),
        (M::GET, "/api/v1/reports/schedules", VIEWER_READS),
        (M::POST, "/api/v1/reports/schedules", [401, 403, 403, 201]),
        (
            M::DELETE,
            "/api/v1/reports/schedules/{id}",
            [401, 403, 403, 204],
        ),
        (M::GET, "/api/v1/summary", VIEWER_READS),
        // the actor of the matrix's event
        (M::GET, "/api/v1/actors/{id}", VIEWER_READS),
        (M::GET, "/api/v1/events/{id}/related", VIEWER_READS),
        // webhooks are not bearer-authenticated: every caller is a stranger to the scheme
        (M::GET, "/hooks/{integration_id}", PUBLIC_PAGE),
        (M::POST, "/hooks/{integration_id}", [401; 4]),
    ]
}

/// What the requests of the matrix act on.
struct Fixtures {
    event: String,
    /// The tree size of a signed checkpoint.
    checkpoint: u64,
    integration: String,
    doomed_integration: String,
    doomed_token: String,
    channel: String,
    doomed_channel: String,
    /// A completed export job and report, and a report schedule, all the admin's.
    export_job: String,
    report_job: String,
    schedule: String,
}

impl Fixtures {
    /// The concrete path and the request body of a row.
    fn request(&self, method: &Method, template: &str) -> (String, Option<(&'static str, String)>) {
        let actor = "u1".to_string();
        let id: &str = match (method.as_str(), template) {
            ("DELETE", "/api/v1/integrations/{id}") => &self.doomed_integration,
            ("DELETE", "/api/v1/tokens/{id}") => &self.doomed_token,
            ("DELETE", "/api/v1/channels/{id}") => &self.doomed_channel,
            (_, "/api/v1/channels/{id}" | "/api/v1/channels/{id}/test") => &self.channel,
            (_, "/api/v1/deliveries/{id}") => "dlv_000000000000000000000000",
            (
                _,
                "/api/v1/events/{id}" | "/api/v1/events/{id}/proof" | "/api/v1/events/{id}/related",
            ) => &self.event,
            (_, "/api/v1/actors/{id}") => &actor,
            (_, "/api/v1/exports/{id}" | "/api/v1/exports/{id}/download") => &self.export_job,
            (_, "/api/v1/reports/{id}" | "/api/v1/reports/{id}/download") => &self.report_job,
            (_, "/api/v1/reports/schedules/{id}") => &self.schedule,
            _ => &self.integration,
        };
        let path = template
            .replace("{id}", id)
            .replace("{integration_id}", id)
            .replace("{size}", &self.checkpoint.to_string());
        let json = |v: Value| Some(("application/json", v.to_string()));
        let body = match (method.as_str(), template) {
            ("POST", "/api/v1/events") => Some(("application/x-ndjson", event_line("matrix-2"))),
            ("POST", "/api/v1/tokens") => json(json!({"name": "matrix", "role": "viewer"})),
            ("POST", "/api/v1/integrations") => json(okta("matrix-new")),
            ("POST", "/api/v1/integrations/test") => json(okta("matrix-test")),
            ("PATCH", "/api/v1/alerts/rules/{id}") => json(json!({"priority": "high"})),
            ("POST", "/api/v1/channels") => json(slack_channel("matrix-new")),
            ("PATCH", "/api/v1/channels/{id}") => json(json!({"name": "matrix renamed"})),
            ("PATCH", _) => json(json!({"schedule": "0 0 0 1 1 *"})),
            ("POST", "/api/v1/alerts/rules") => json(json!({"name": "matrix"})),
            ("PUT", "/api/v1/retention") => json(json!({"categories": {"system": 120}})),
            ("POST", "/api/v1/legal-holds" | "/api/v1/holds") => {
                json(json!({"reason": "matrix", "integration": "x"}))
            }
            ("POST", "/hooks/{integration_id}") => json(json!({"data": {"events": []}})),
            ("POST", "/api/v1/exports") => json(export_job()),
            ("POST", "/api/v1/reports") => json(report_job()),
            ("POST", "/api/v1/reports/schedules") => json(schedule()),
            _ => None,
        };
        let query = match template {
            "/api/v1/events/histogram" => "?bucket=1h",
            "/api/v1/events/export" => "?format=ndjson",
            "/api/v1/checkpoints/consistency" => "?from=1",
            "/api/v1/retention/run" => "?dry_run=true",
            "/api/v1/summary" => "?tz=Europe/Paris",
            "/api/v1/events/{id}/related" => "?limit=5",
            _ => "",
        };
        (format!("{path}{query}"), body)
    }
}

fn export_job() -> Value {
    json!({"format": "ndjson", "since": "2024-05-01T00:00:00Z", "until": "2024-05-02T00:00:00Z"})
}

fn report_job() -> Value {
    json!({"kind": "user_access", "since": "2024-05-01T00:00:00Z", "until": "2024-05-02T00:00:00Z"})
}

fn schedule() -> Value {
    json!({"kind": "security_events", "cron": "0 6 * * 1", "range": "P7D", "time_zone": "Europe/Paris"})
}

/// POSTs `body` to `path` and waits until the job it makes has completed; answers its id.
async fn completed_job(api: &Api, path: &str, body: Value) -> String {
    let (status, job) = api.json(Method::POST, path, Some(body)).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().expect("id").to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let job = api.get(&format!("{path}/{id}")).await;
        if job["state"] == "completed" {
            return id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job did not complete: {job}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn event_line(source_id: &str) -> String {
    json!({"time": "2024-05-01T10:00:00Z", "source_id": source_id, "event_type": "matrix.check",
        "action": "read", "actor": {"id": "u1"}})
    .to_string()
}

/// A Slack channel that never reaches Slack: https to a closed loopback port.
fn slack_channel(name: &str) -> Value {
    json!({"name": name, "kind": "slack", "url": "https://127.0.0.1:9/services/T/B/matrix"})
}

/// An Okta integration that never reaches a vendor: https to a closed loopback port, polled
/// yearly.
fn okta(name: &str) -> Value {
    json!({"name": name, "connector": "okta", "config": {"base_url": "https://127.0.0.1:9"},
        "credentials": {"token": "matrix-token", "webhook_secret": "matrix-hook-secret"},
        "schedule": "0 0 0 1 1 *"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_as_it_must() {
    let served: BTreeSet<(String, String)> = trailhub::api::route_table()
        .into_iter()
        .map(|(path, method)| (method.to_string(), path.to_string()))
        .collect();
    let rows = matrix();
    let covered: BTreeSet<(String, String)> = rows
        .iter()
        .map(|(method, path, _)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(covered.len(), rows.len(), "a route has two rows");
    let missing: Vec<_> = served.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "routes without a row in the matrix (say what each caller must get): {missing:?}"
    );
    let stale: Vec<_> = covered.difference(&served).collect();
    assert!(
        stale.is_empty(),
        "rows for routes the router does not serve: {stale:?}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    let mut tokens = Vec::new();
    for role in ["viewer", "ingest", "viewer"] {
        let (status, v) = api
            .json(
                Method::POST,
                "/api/v1/tokens",
                Some(json!({"name": format!("matrix {role}"), "role": role})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        tokens.push(v);
    }
    let (status, _) = api.call(Method::POST, "/api/v1/integrations", None).await;
    assert_eq!(status, 400, "an empty body is refused, not a crash");
    let integration = api.create_integration(okta("matrix")).await;
    let doomed = api.create_integration(okta("matrix-doomed")).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let stored = http
        .post(format!("{}/api/v1/events", hub.url()))
        .bearer_auth(ADMIN)
        .header("content-type", "application/x-ndjson")
        .body(event_line("matrix-1"))
        .send()
        .await
        .expect("ingest");
    assert_eq!(stored.status(), 200);
    let events = api.get("/api/v1/events?limit=1").await;
    let mut channels = Vec::new();
    for name in ["matrix channel", "matrix doomed channel"] {
        let (status, v) = api
            .json(Method::POST, "/api/v1/channels", Some(slack_channel(name)))
            .await;
        assert_eq!(status, 201, "{v}");
        channels.push(v["id"].as_str().expect("id").to_string());
    }
    let (status, signed) = api.json(Method::POST, "/api/v1/checkpoints", None).await;
    assert_eq!(status, 201, "{signed}");
    let export_job = completed_job(&api, "/api/v1/exports", export_job()).await;
    let report_job = completed_job(&api, "/api/v1/reports", report_job()).await;
    let (status, schedule) = api
        .json(
            Method::POST,
            "/api/v1/reports/schedules",
            Some(self::schedule()),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    let fixtures = Fixtures {
        event: events["events"][0]["id"].as_str().expect("event").into(),
        checkpoint: signed["size"].as_u64().expect("size"),
        integration: integration["id"].as_str().expect("id").into(),
        doomed_integration: doomed["id"].as_str().expect("id").into(),
        doomed_token: tokens[2]["id"].as_str().expect("id").into(),
        channel: channels[0].clone(),
        doomed_channel: channels[1].clone(),
        export_job,
        report_job,
        schedule: schedule["id"].as_str().expect("id").into(),
    };
    let bearers: [Option<&str>; 4] = [
        None,
        tokens[0]["token"].as_str(),
        tokens[1]["token"].as_str(),
        Some(ADMIN),
    ];

    let mut wrong = Vec::new();
    for (method, template, expect) in &rows {
        let (path, body) = fixtures.request(method, template);
        for (i, bearer) in bearers.iter().enumerate() {
            let mut req = http
                .request(method.clone(), format!("{}{path}", hub.url()))
                .header("x-okta-verification-challenge", "matrix");
            if let Some(t) = bearer {
                req = req.bearer_auth(t);
            }
            if let Some((content_type, text)) = &body {
                req = req.header("content-type", *content_type).body(text.clone());
            }
            let resp = req.send().await.expect("hub answers");
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            let text: String = text.chars().take(200).collect();
            if status != expect[i] {
                wrong.push(format!(
                    "{method} {template} as {}: {status}, want {} ({text})",
                    CALLERS[i], expect[i]
                ));
            }
            if status >= 400 {
                let error: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                if error["error"]["code"].as_str().is_none() {
                    wrong.push(format!(
                        "{method} {template} as {}: {status} without the JSON error ({text})",
                        CALLERS[i]
                    ));
                }
            }
        }
    }
    hub.stop().await.expect("stops");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
