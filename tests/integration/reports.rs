//! Reports through the API: each of the six kinds over seeded events gives exactly the expected
//! rows in its CSV; the PDF is a valid PDF whose text holds the summary counts and the actors'
//! names; a schedule due every second makes reports into the history; bounds and errors.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::hub::{cli, post_events, Api, TestHub, ADMIN};

/// A seeded event: name, actor id, actor name, actor type, category, action, outcome,
/// severity, changes.
type Seed = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Value,
);

/// Seeded events by name, each in the reports its test expects it in.
fn seeds() -> Vec<(&'static str, Value)> {
    let now = trailhub::time::now_micros();
    let mut out = Vec::new();
    let specs: [Seed; 12] = [
        (
            "login",
            "u-zoe",
            "Zoë Ångström",
            "user",
            "authentication",
            "login",
            "success",
            "info",
            json!([]),
        ),
        (
            "failed_login",
            "u-bob",
            "Bob Stone",
            "user",
            "authentication",
            "login",
            "failure",
            "low",
            json!([]),
        ),
        (
            "read",
            "u-alice",
            "Alice Liddell",
            "user",
            "data_access",
            "read",
            "success",
            "info",
            json!([]),
        ),
        (
            "update",
            "u-alice",
            "Alice Liddell",
            "user",
            "data_change",
            "update",
            "success",
            "info",
            json!([{"field": "title", "old": "Q1 plan", "new": "=HYPERLINK(\"x\")"}, {"field": "owner", "old": "alice", "new": "bob"}]),
        ),
        (
            "bot_delete",
            "svc-deploy",
            "deploy-bot",
            "service",
            "data_change",
            "delete",
            "success",
            "info",
            json!([]),
        ),
        (
            "grant",
            "u-carol",
            "Carol Danvers",
            "user",
            "authorization",
            "grant",
            "success",
            "medium",
            json!([{"field": "role", "old": "member", "new": "admin"}]),
        ),
        (
            "config",
            "u-carol",
            "Carol Danvers",
            "user",
            "configuration",
            "update",
            "success",
            "high",
            json!([]),
        ),
        (
            "export",
            "u-dave",
            "Dave Grohl",
            "user",
            "data_access",
            "export",
            "success",
            "info",
            json!([]),
        ),
        (
            "api_read",
            "key-ci",
            "ci-token",
            "api_key",
            "data_access",
            "read",
            "success",
            "info",
            json!([]),
        ),
        (
            "user_create",
            "u-carol",
            "Carol Danvers",
            "user",
            "user_management",
            "create",
            "success",
            "info",
            json!([]),
        ),
        (
            "system_job",
            "sys",
            "scheduler",
            "system",
            "system",
            "execute",
            "success",
            "info",
            json!([]),
        ),
        (
            "noise",
            "u-eve",
            "Eve",
            "user",
            "other",
            "other",
            "success",
            "info",
            json!([]),
        ),
    ];
    for (i, (name, id, actor, kind, category, action, outcome, severity, changes)) in
        specs.into_iter().enumerate()
    {
        let time = now - 2 * trailhub::time::DAY + i as i64 * trailhub::time::MINUTE;
        out.push((
            name,
            json!({
                "time": trailhub::time::format_micros(time),
                "source_id": format!("rep-{name}"),
                "event_type": format!("test.{name}"),
                "category": category, "action": action, "outcome": outcome, "severity": severity,
                "actor": {"id": id, "name": actor, "type": kind, "ip": "10.1.2.3"},
                "targets": [{"type": "doc", "id": format!("doc-{i}")}],
                "changes": changes,
                "description": format!("{name} by {actor}"),
            }),
        ));
    }
    out
}

async fn wait_completed(api: &Api, path: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = api.get(path).await;
        match job["state"].as_str() {
            Some("completed") => return job,
            Some("failed") => panic!("{path} failed: {job:#}"),
            _ => {}
        }
        assert!(tokio::time::Instant::now() < deadline, "{path}: {job:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn download(api: &Api, path: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("answers");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.expect("body").to_vec())
}

/// Makes a report of `kind` over the last three days and answers (job, CSV rows by header).
async fn report(api: &Api, kind: &str, filter: Value) -> (Value, Vec<BTreeMap<String, String>>) {
    let (status, job) = api
        .json(
            Method::POST,
            "/api/v1/reports",
            Some(json!({"kind": kind, "since": "3d", "filter": filter})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let path = format!("/api/v1/reports/{}", job["id"].as_str().expect("id"));
    let job = wait_completed(api, &path).await;
    let (status, csv) = download(api, &format!("{path}/download?format=csv")).await;
    assert_eq!(status, 200);
    let mut reader = csv::Reader::from_reader(csv.as_slice());
    let headers: Vec<String> = reader
        .headers()
        .expect("headers")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|r| {
            headers
                .iter()
                .cloned()
                .zip(r.expect("row").iter().map(str::to_string))
                .collect()
        })
        .collect();
    (job, rows)
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_selects_exactly_its_rows_and_prints_a_pdf() {
    let hub = TestHub::start().await;
    let api = Api::at(&hub.url, ADMIN);
    let seeds = seeds();
    let lines: Vec<Value> = seeds.iter().map(|(_, e)| e.clone()).collect();
    assert_eq!(post_events(&hub.http, &hub.url, &lines).await, 200);
    let stored = hub.all_events("integration=custom", 100).await;
    let id_of: BTreeMap<String, String> = stored
        .iter()
        .map(|e| {
            let name = e["source_id"]
                .as_str()
                .expect("sid")
                .trim_start_matches("rep-");
            (name.to_string(), e["id"].as_str().expect("id").to_string())
        })
        .collect();
    let ids = |names: &[&str]| sorted(names.iter().map(|n| id_of[*n].clone()).collect());
    let row_ids = |rows: &[BTreeMap<String, String>]| {
        sorted(rows.iter().map(|r| r["event_id"].clone()).collect())
    };
    // the hub's own export records: a streamed export and an export job, before the reports
    let (status, _) = download(&api, "/api/v1/events/export?format=csv&since=1d").await;
    assert_eq!(status, 200);
    let (status, _) = api
        .json(
            Method::POST,
            "/api/v1/exports",
            Some(json!({"since": "1d"})),
        )
        .await;
    assert_eq!(status, 202);

    let (_, rows) = report(&api, "export_activity", json!({})).await;
    let mut hub_records: Vec<&str> = rows
        .iter()
        .filter(|r| r["event_type"] != "test.export")
        .map(|r| r["event_type"].as_str())
        .collect();
    hub_records.sort();
    assert_eq!(
        hub_records,
        ["export.create", "export_job.create"],
        "{rows:?}"
    );
    assert_eq!(
        rows.iter()
            .filter(|r| r["event_type"] == "test.export")
            .count(),
        1
    );

    let custom = json!({"integration": "custom"});
    let (job, rows) = report(&api, "user_access", custom.clone()).await;
    assert_eq!(
        row_ids(&rows),
        ids(&["login", "failed_login", "read", "export"])
    );
    assert_eq!(job["summary"]["events"], 4);
    assert_eq!(
        job["summary"]["by_outcome"],
        json!({"success": 3, "failure": 1})
    );
    assert_eq!(job["summary"]["cut"], false);
    let user_access = job;

    let (_, rows) = report(&api, "data_changes", custom.clone()).await;
    assert_eq!(
        row_ids(&rows),
        ids(&["update", "update", "bot_delete", "grant"]),
        "one row per change"
    );
    let title = rows
        .iter()
        .find(|r| r["field"] == "title")
        .expect("the title change");
    assert_eq!(title["before"], "Q1 plan");
    assert_eq!(
        title["after"], "'=HYPERLINK(\"x\")",
        "a formula reaches the CSV as text"
    );
    let role = rows.iter().find(|r| r["field"] == "role").expect("role");
    assert_eq!(
        (role["before"].as_str(), role["after"].as_str()),
        ("member", "admin")
    );

    let (_, rows) = report(&api, "security_events", custom.clone()).await;
    assert_eq!(
        row_ids(&rows),
        ids(&["login", "failed_login", "grant", "config"])
    );

    let (_, rows) = report(&api, "admin_activity", custom.clone()).await;
    assert_eq!(row_ids(&rows), ids(&["grant", "config", "user_create"]));
    let grant = rows
        .iter()
        .find(|r| r["event_type"] == "test.grant")
        .expect("grant");
    assert_eq!(grant["changes"], "role: member -> admin");

    let (_, rows) = report(&api, "system_access", custom.clone()).await;
    assert_eq!(
        row_ids(&rows),
        ids(&["bot_delete", "api_read", "system_job"])
    );
    assert!(rows.iter().any(|r| r["actor_type"] == "api_key"));

    // the history lists them newest first, with the kinds
    let history = api.get("/api/v1/reports").await;
    assert_eq!(history["total"], 6);
    assert_eq!(history["kinds"].as_array().expect("kinds").len(), 6);
    assert_eq!(history["reports"][0]["report"], "system_access");

    // the PDF: valid, and its text holds the summary and the actors (Latin-1 names too)
    let path = format!(
        "/api/v1/reports/{}/download?format=pdf",
        user_access["id"].as_str().expect("id")
    );
    let (status, pdf) = download(&api, &path).await;
    assert_eq!(status, 200);
    assert_eq!(
        user_access["files"]["pdf"]["bytes"],
        pdf.len() as u64,
        "{user_access}"
    );
    let text = pdf_text(&pdf);
    for needle in [
        "User access report",
        "By outcome",
        "Top actors",
        "Events per day (UTC)",
        "Zoë Ångström",
        "Alice Liddell",
        "integration=custom",
        "rows, page 1 of 1",
    ] {
        assert!(
            text.contains(needle),
            "{needle:?} not in the PDF's text:\n{text}"
        );
    }
    for (label, n) in [("success", 3), ("failure", 1), ("Events", 4), ("Rows", 4)] {
        let found = text.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words
                .windows(2)
                .any(|w| w[0] == label && w[1] == n.to_string())
        });
        assert!(found, "{label} {n} not in the PDF's text:\n{text}");
    }
    // downloads are audited actions
    let audited = api
        .get("/api/v1/events?integration=trailhub&event_type=report.download&limit=100")
        .await;
    assert_eq!(audited["events"].as_array().expect("events").len(), 7);
    hub.stop().await;
}

/// The text of a PDF, as `pdftotext -layout` reads it (poppler-utils).
fn pdf_text(pdf: &[u8]) -> String {
    assert!(pdf.starts_with(b"%PDF-"), "not a PDF");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("report.pdf");
    std::fs::write(&file, pdf).expect("write");
    let out = std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&file)
        .arg("-")
        .output()
        .expect("pdftotext runs (Debian: poppler-utils)");
    assert!(
        out.status.success(),
        "pdftotext refused the PDF: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_past_its_row_limit_is_cut_and_says_so() {
    let hub = TestHub::start_with(|s| s.jobs.max_report_rows = 2).await;
    let api = Api::at(&hub.url, ADMIN);
    let lines: Vec<Value> = seeds().into_iter().map(|(_, e)| e).collect();
    assert_eq!(post_events(&hub.http, &hub.url, &lines).await, 200);
    let (job, rows) = report(&api, "user_access", json!({"integration": "custom"})).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(job["summary"]["cut"], true);
    assert_eq!(job["summary"]["rows"], 2);
    assert_eq!(
        job["summary"]["events"], 4,
        "the counts cover every selected event"
    );
    let (_, pdf) = download(
        &api,
        &format!(
            "/api/v1/reports/{}/download",
            job["id"].as_str().expect("id")
        ),
    )
    .await;
    let text = pdf_text(&pdf);
    assert!(text.contains("cut at 2 rows"), "{text}");
    hub.stop().await;
}

/// What the delivery hook was handed: job id, channels, the job's files.
type Delivery = (String, Vec<String>, Vec<std::path::PathBuf>);

/// A delivery hook's record of what it was handed.
#[derive(Default)]
struct Deliveries(std::sync::Mutex<Vec<Delivery>>);

struct Hook(std::sync::Arc<Deliveries>, trailhub::jobs::Jobs);

impl trailhub::jobs::ReportDelivery for Hook {
    fn deliver(&self, job: &trailhub::jobs::Job, schedule: &trailhub::jobs::Schedule) {
        let files = job
            .outputs
            .iter()
            .map(|o| self.1.file_path(job, &o.format))
            .collect();
        if let Ok(mut d) = self.0 .0.lock() {
            d.push((job.id.clone(), schedule.channels.clone(), files));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_due_every_second_fills_the_history() {
    let hub = TestHub::start().await;
    let api = Api::at(&hub.url, ADMIN);
    let delivered = std::sync::Arc::new(Deliveries::default());
    hub.jobs().set_delivery(std::sync::Arc::new(Hook(
        delivered.clone(),
        hub.jobs().clone(),
    )));
    let lines: Vec<Value> = seeds().into_iter().map(|(_, e)| e).collect();
    assert_eq!(post_events(&hub.http, &hub.url, &lines).await, 200);
    let (status, schedule) = api
        .json(
            Method::POST,
            "/api/v1/reports/schedules",
            Some(
                json!({"kind": "security_events", "cron": "* * * * * *", "range": "P3D",
                "time_zone": "Europe/Paris", "filter": {"integration": "custom"},
                "channels": ["ops-email", "sec_slack"], "name": "every second"}),
            ),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    let id = schedule["id"].as_str().expect("id").to_string();
    assert_eq!(schedule["channels"], json!(["ops-email", "sec_slack"]));
    assert!(schedule["next_run"].as_str().is_some());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let made = loop {
        let history = api.get("/api/v1/reports").await;
        let done: Vec<Value> = history["reports"]
            .as_array()
            .expect("reports")
            .iter()
            .filter(|r| r["schedule"] == id.as_str() && r["state"] == "completed")
            .cloned()
            .collect();
        if !done.is_empty() {
            break done[0].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{history:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(made["report"], "security_events");
    assert_eq!(made["summary"]["events"], 4, "{made}");
    assert_eq!(made["created_by"]["token_id"], format!("schedule:{id}"));
    let since = trailhub::time::parse_rfc3339(made["since"].as_str().expect("since")).expect("t");
    let until = trailhub::time::parse_rfc3339(made["until"].as_str().expect("until")).expect("t");
    assert_eq!(
        until - since,
        3 * trailhub::time::DAY,
        "the range ends at the run"
    );
    // the completed report reaches the delivery hook with the schedule's channels
    let made_id = made["id"].as_str().expect("id").to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (channels, files) = loop {
        let found = delivered
            .0
            .lock()
            .expect("lock")
            .iter()
            .find(|(job, _, _)| *job == made_id)
            .map(|(_, c, f)| (c.clone(), f.clone()));
        if let Some(found) = found {
            break found;
        }
        assert!(tokio::time::Instant::now() < deadline, "not delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(channels, ["ops-email", "sec_slack"]);
    assert_eq!(files.len(), 2);
    assert!(files.iter().all(|f| f.exists()), "{files:?}");
    let listed = api.get("/api/v1/reports/schedules").await;
    assert_eq!(listed["schedules"][0]["id"], id.as_str());
    assert!(listed["schedules"][0]["last_report"].as_str().is_some());
    let (status, _) = api
        .json(
            Method::DELETE,
            &format!("/api/v1/reports/schedules/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = api
        .json(
            Method::DELETE,
            &format!("/api/v1/reports/schedules/{id}"),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let created = api
        .get("/api/v1/events?integration=trailhub&event_type=report_schedule.create")
        .await;
    assert_eq!(created["events"].as_array().expect("events").len(), 1);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_bounds_and_errors_name_their_field() {
    let hub = TestHub::start().await;
    let api = Api::at(&hub.url, ADMIN);
    let cases = [
        (json!({"kind": "everything", "since": "1d"}), 400, "`kind`"),
        (json!({"kind": "user_access"}), 400, "`since`"),
        (
            json!({"kind": "user_access", "since": "200d"}),
            422,
            "at most 92 days",
        ),
        (
            json!({"kind": "user_access", "since": "1d", "filter": {"who": "x"}}),
            400,
            "`filter.who`",
        ),
        (json!({"since": "1d"}), 400, "kind"),
    ];
    for (body, status, needle) in cases {
        let (got, v) = api
            .json(Method::POST, "/api/v1/reports", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(needle),
            "{body}: {v}"
        );
    }
    let schedule = |extra: Value| {
        let mut body = json!({"kind": "user_access", "cron": "0 6 * * 1", "range": "P7D"});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let many: Vec<String> = (0..11).map(|i| format!("c{i}")).collect();
    let cases = [
        (schedule(json!({"cron": "every monday"})), 400, "`cron`"),
        (schedule(json!({"cron": "0 61 * * *"})), 400, "`cron`"),
        (schedule(json!({"range": "a week"})), 400, "`range`"),
        (schedule(json!({"range": "P1Y"})), 422, "at most 92 days"),
        (
            schedule(json!({"time_zone": "Mars/Olympus"})),
            400,
            "`time_zone`",
        ),
        (schedule(json!({"kind": "nope"})), 400, "`kind`"),
        (schedule(json!({"channels": many})), 400, "`channels`"),
        (
            schedule(json!({"channels": ["has space"]})),
            400,
            "`channels`",
        ),
        (
            schedule(json!({"filter": {"outcome": "perhaps"}})),
            400,
            "`filter.outcome`",
        ),
        (schedule(json!({"every": "day"})), 400, "unknown field"),
    ];
    for (body, status, needle) in cases {
        let (got, v) = api
            .json(
                Method::POST,
                "/api/v1/reports/schedules",
                Some(body.clone()),
            )
            .await;
        assert_eq!(got, status, "{body}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(needle),
            "{body}: {v}"
        );
    }
    // viewers read schedules but do not make them
    let viewer = Api::at(&hub.url, &hub.mint("viewer").await);
    let (status, _) = viewer
        .json(
            Method::POST,
            "/api/v1/reports/schedules",
            Some(schedule(json!({}))),
        )
        .await;
    assert_eq!(status, 403);
    // a report's download: 404 for no such report, 400 for another format, 409 before it completes
    let (status, _) = api
        .json(
            Method::GET,
            "/api/v1/reports/000000000000000000000000/download",
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, job) = api
        .json(
            Method::POST,
            "/api/v1/reports",
            Some(json!({"kind": "user_access", "since": "1d"})),
        )
        .await;
    let path = format!("/api/v1/reports/{}", job["id"].as_str().expect("id"));
    let (status, _) = api
        .json(Method::GET, &format!("{path}/download?format=docx"), None)
        .await;
    assert_eq!(status, 400);
    wait_completed(&api, &path).await;
    hub.stop().await;
}

/// `trailhub exports` and `trailhub reports` against the running hub: create, wait, download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_makes_and_downloads_exports_and_reports() {
    let hub = TestHub::start().await;
    let lines: Vec<Value> = seeds().into_iter().map(|(_, e)| e).collect();
    assert_eq!(post_events(&hub.http, &hub.url, &lines).await, 200);
    let out = tempfile::tempdir().expect("tempdir");
    let remote = ["--hub", hub.url.as_str(), "--token", ADMIN];
    let file = out.path().join("export.csv");
    let file_arg = file.to_str().expect("path").to_string();
    let mut args = vec![
        "exports",
        "create",
        "--format",
        "csv",
        "--since",
        "3d",
        "--filter",
        "integration=custom",
        "--wait-download",
        &file_arg,
    ];
    args.extend(remote);
    let (ok, text) = cli(out.path(), &args);
    assert!(ok, "{text}");
    let csv = std::fs::read_to_string(&file).expect("downloaded");
    assert_eq!(csv.lines().count(), 13, "a header and 12 events:\n{csv}");
    let mut args = vec!["exports", "list"];
    args.extend(remote);
    let (ok, text) = cli(out.path(), &args);
    assert!(ok && text.contains("\"state\": \"completed\""), "{text}");

    let pdf = out.path().join("security.pdf");
    let pdf_arg = pdf.to_str().expect("path").to_string();
    let mut args = vec![
        "reports",
        "create",
        "security_events",
        "--since",
        "3d",
        "--wait-download",
        &pdf_arg,
    ];
    args.extend(remote);
    let (ok, text) = cli(out.path(), &args);
    assert!(ok, "{text}");
    assert!(pdf_text(&std::fs::read(&pdf).expect("pdf")).contains("Security events report"));
    let mut args = vec!["reports", "create", "user_access", "--since", "400d"];
    args.extend(remote);
    let (ok, text) = cli(out.path(), &args);
    assert!(!ok && text.contains("at most 92 days"), "{text}");
    hub.stop().await;
}

/// A scheduled report reaches a real signed webhook channel through the outbox: one delivery
/// per report, `report.ready`, naming the report and its downloads, which a viewer can fetch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_report_is_announced_on_its_webhook_channel() {
    use crate::support::receiver::Receiver;
    let hub = TestHub::start().await;
    let api = Api::at(&hub.url, ADMIN);
    let receiver = Receiver::start(Vec::new()).await;
    let (status, channel) = api
        .json(
            Method::POST,
            "/api/v1/channels",
            Some(json!({"name": "compliance", "kind": "webhook", "url": format!("{}/hook", receiver.url)})),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let lines: Vec<Value> = seeds().into_iter().map(|(_, e)| e).collect();
    assert_eq!(post_events(&hub.http, &hub.url, &lines).await, 200);
    let (status, schedule) = api
        .json(
            Method::POST,
            "/api/v1/reports/schedules",
            Some(json!({"kind": "security_events", "cron": "* * * * * *", "range": "P3D",
                "filter": {"integration": "custom"}, "channels": [channel["id"]], "name": "weekly security"})),
        )
        .await;
    assert_eq!(status, 201, "{schedule}");
    // a channel that does not exist is refused, named
    let (status, refused) = api
        .json(
            Method::POST,
            "/api/v1/reports/schedules",
            Some(json!({"kind": "security_events", "cron": "0 0 7 * * *", "range": "P7D", "channels": ["ch_nowhere"]})),
        )
        .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no notification channel \"ch_nowhere\""),
        "{refused}"
    );
    let got = receiver.wait_for(1, 30).await;
    // the schedule is due every second: stop it before counting what arrived
    let (status, _) = api
        .call(
            Method::DELETE,
            &format!(
                "/api/v1/reports/schedules/{}",
                schedule["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let body = got[0].json();
    assert_eq!(body["type"], "trailhub.notification", "{body}");
    assert_eq!(body["data"]["type"], "report.ready");
    assert_eq!(body["data"]["schedule"], schedule["id"]);
    assert!(body["subject"]
        .as_str()
        .expect("subject")
        .contains("weekly security"));
    assert!(got[0].header("webhook-signature").starts_with("v1,"));
    let report = body["data"]["report"].as_str().expect("report id");
    let downloads = body["data"]["downloads"].as_array().expect("downloads");
    assert_eq!(downloads.len(), 2, "{body}");
    for d in downloads {
        let path = d.as_str().expect("path");
        assert!(path.starts_with(&format!("/api/v1/reports/{report}/download")));
        let (status, bytes) = api.call(Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}");
        assert!(!bytes.is_empty());
    }
    // every report made is announced once, under its own key
    let ids: std::collections::BTreeSet<String> = receiver
        .received()
        .iter()
        .map(|r| {
            r.json()["data"]["report"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        ids.len(),
        receiver.received().len(),
        "one delivery per report"
    );
    hub.stop().await;
}
