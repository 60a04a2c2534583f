//! Export jobs through the API: create, progress, completion, download equal to the streamed
//! export of the same filter, bounds and refusals, expiry, a kill -9 mid-job, and the audit
//! records of every create, download and delete.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::data::varied_events;
use crate::support::hub::{free_port, post_events, wait_ready, Api, HubProcess, TestHub, ADMIN};

const SINCE: &str = "2024-04-30T00:00:00Z";
const UNTIL: &str = "2024-05-10T00:00:00Z";

/// GETs `path` until `done` holds for the job, or panics with the last one.
async fn wait_job(api: &Api, path: &str, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let (status, job) = api.json(Method::GET, path, None).await;
        assert_eq!(status, 200, "{path}: {job}");
        if done(&job) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting on {path}: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn bytes(api: &Api, path: &str) -> (u16, Vec<u8>, Option<String>) {
    let resp = reqwest::Client::new()
        .get(format!("{}{path}", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("hub answers");
    let status = resp.status().as_u16();
    let sha = resp
        .headers()
        .get("trailhub-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, resp.bytes().await.expect("body").to_vec(), sha)
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

async fn create(api: &Api, body: Value) -> Value {
    let (status, job) = api.json(Method::POST, "/api/v1/exports", Some(body)).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["state"], "queued", "{job}");
    job
}

/// The `trailhub` events of `event_type`.
async fn audit_events(api: &Api, event_type: &str) -> Vec<Value> {
    let page = api
        .get(&format!(
            "/api/v1/events?integration=trailhub&event_type={event_type}&limit=100"
        ))
        .await;
    page["events"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_runs_with_progress_and_its_file_equals_the_streamed_export() {
    let hub = TestHub::start_with(|s| {
        // a pause after each 1,000 events, so the test sees the job running
        s.jobs.test_pause = Duration::from_millis(300);
    })
    .await;
    let api = Api::at(&hub.url, ADMIN);
    let events = varied_events("ej", 3_000, 3 * 86_400, 7);
    for chunk in events.chunks(1_000) {
        hub.ingest(chunk).await;
    }
    let viewer = Api::at(&hub.url, &hub.mint("viewer").await);
    let filter = json!({"integration": "custom"});
    let job = create(
        &viewer,
        json!({"name": "May, custom", "format": "ndjson", "since": SINCE, "until": UNTIL, "filter": filter}),
    )
    .await;
    let id = job["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/exports/{id}");
    assert_eq!(job["name"], "May, custom");
    assert_eq!(job["filter"], filter);
    assert_eq!(job["since"], "2024-04-30T00:00:00.000000Z");

    // running, part-way, with the store's estimate of the total
    let running = wait_job(&viewer, &path, 30, |j| {
        j["state"] == "running" && j["progress"]["events"].as_u64().unwrap_or(0) >= 1_000
    })
    .await;
    assert_eq!(running["progress"]["estimated_total"], 3_000, "{running}");
    assert!(running["progress"]["percent"].as_u64().expect("percent") < 100);
    let (status, _, _) = bytes(&viewer, &format!("{path}/download")).await;
    assert_eq!(status, 409, "no download before it completes");

    let done = wait_job(&viewer, &path, 60, |j| j["state"] == "completed").await;
    assert_eq!(done["events"], 3_000, "{done}");
    assert_eq!(done["progress"]["percent"], 100);
    assert_eq!(done["attempts"], 1);
    assert!(done["expires_at"].as_str().is_some());
    let (status, file, header_sha) = bytes(&viewer, &format!("{path}/download")).await;
    assert_eq!(status, 200);
    assert_eq!(done["bytes"], file.len() as u64);
    assert_eq!(done["sha256"].as_str(), Some(sha256_hex(&file).as_str()));
    assert_eq!(header_sha.as_deref(), done["sha256"].as_str());

    let (status, streamed, _) = bytes(
        &viewer,
        &format!(
            "/api/v1/events/export?format=ndjson&since={SINCE}&until={UNTIL}&integration=custom"
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(file.len(), streamed.len());
    assert!(
        file == streamed,
        "the job's file and the streamed export differ"
    );
    assert_eq!(file.iter().filter(|b| **b == b'\n').count(), 3_000);

    // the other formats are the stream's bytes too (CSV through the spreadsheet guard)
    for format in ["csv", "json"] {
        let job = create(
            &api,
            json!({"format": format, "since": SINCE, "until": UNTIL, "filter": {"actor": "alice@example.com"}}),
        )
        .await;
        let p = format!("/api/v1/exports/{}", job["id"].as_str().expect("id"));
        wait_job(&api, &p, 60, |j| j["state"] == "completed").await;
        let (_, file, _) = bytes(&api, &format!("{p}/download")).await;
        let (_, streamed, _) = bytes(
            &api,
            &format!("/api/v1/events/export?format={format}&since={SINCE}&until={UNTIL}&actor=alice@example.com"),
        )
        .await;
        assert!(
            file == streamed,
            "{format}: the job's file differs from the stream"
        );
        assert!(file.len() > 1_000, "{format}: {} bytes", file.len());
    }

    // newest first in the list
    let list = api.get("/api/v1/exports").await;
    let ids: Vec<&str> = list["exports"]
        .as_array()
        .expect("exports")
        .iter()
        .filter_map(|j| j["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(list["total"], 3);
    assert_eq!(ids[2], id, "the first job is listed last");
    assert!(ids[0] > ids[1] && ids[1] > ids[2]);

    // every create and download is an audited action of the token that made it
    let created = audit_events(&api, "export_job.create").await;
    assert_eq!(created.len(), 3);
    let downloaded = audit_events(&api, "export_job.download").await;
    assert_eq!(downloaded.len(), 3);
    let first = downloaded
        .iter()
        .find(|e| e["targets"][0]["id"] == id.as_str())
        .expect("the viewer's download");
    assert_eq!(first["actor"]["name"], "viewer token");
    assert_eq!(first["action"], "export");

    // a viewer cannot delete another token's job; its maker can, and that is audited too
    let admin_job = ids[0];
    let (status, _) = viewer
        .json(
            Method::DELETE,
            &format!("/api/v1/exports/{admin_job}"),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = viewer.json(Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = viewer.json(Method::GET, &path, None).await;
    assert_eq!(status, 404);
    assert_eq!(audit_events(&api, "export_job.delete").await.len(), 1);
    assert!(
        !hub.dir
            .path()
            .join("exports")
            .join(format!("{id}.ndjson"))
            .exists(),
        "a deleted job's file is removed"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_and_refusals_name_their_field() {
    let hub = TestHub::start_with(|s| {
        s.jobs.max_queued = 2;
        s.jobs.workers = 1;
        // jobs that stay running while the queue fills
        s.jobs.test_pause = Duration::from_secs(2);
    })
    .await;
    let api = Api::at(&hub.url, ADMIN);
    hub.ingest(&varied_events("bq", 2_500, 86_400, 3)).await;
    let refused = |status: u16, code: &str, needle: &str, v: &Value| {
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(needle),
            "{status}: {v}"
        );
    };
    let cases = [
        (
            json!({"format": "ndjson", "since": "2024-01-01T00:00:00Z", "until": "2024-05-01T00:00:00Z"}),
            422,
            "unprocessable",
            "at most 92 days",
        ),
        (json!({"format": "ndjson"}), 400, "invalid_body", "`since`"),
        (
            json!({"format": "xlsx", "since": SINCE, "until": UNTIL}),
            400,
            "invalid_body",
            "`format`",
        ),
        (
            json!({"since": SINCE, "until": "2024-04-01T00:00:00Z"}),
            400,
            "invalid_body",
            "`since`",
        ),
        (
            json!({"since": "yesterday"}),
            400,
            "invalid_body",
            "`since`",
        ),
        (
            json!({"since": SINCE, "until": UNTIL, "name": "x".repeat(201)}),
            400,
            "invalid_body",
            "`name`",
        ),
        (
            json!({"since": SINCE, "until": UNTIL, "name": "  "}),
            400,
            "invalid_body",
            "`name`",
        ),
        (
            json!({"since": SINCE, "until": UNTIL, "filter": {"actr": "alice"}}),
            400,
            "invalid_body",
            "`filter.actr`",
        ),
        (
            json!({"since": SINCE, "until": UNTIL, "filter": {"outcome": "maybe"}}),
            400,
            "invalid_body",
            "`filter.outcome`",
        ),
        (
            json!({"since": SINCE, "until": UNTIL, "filter": {"actor": 7}}),
            400,
            "invalid_body",
            "`filter.actor`",
        ),
        (
            json!({"since": SINCE, "until": UNTIL, "filter": {"since": SINCE}}),
            400,
            "invalid_body",
            "beside `filter`",
        ),
        (
            json!({"since": SINCE, "until": UNTIL, "filter": {"q": "a".repeat(1_001)}}),
            400,
            "invalid_body",
            "1000 characters",
        ),
        (
            json!({"since": SINCE, "until": UNTIL, "colour": "red"}),
            400,
            "invalid_body",
            "unknown field",
        ),
    ];
    for (body, status, code, needle) in cases {
        let (got, v) = api
            .json(Method::POST, "/api/v1/exports", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {v}");
        refused(got, code, needle, &v);
    }
    // the largest range that is allowed is accepted; a body past 64 KiB is refused
    let ok = create(
        &api,
        json!({"since": "2024-02-01T00:00:00Z", "until": "2024-05-03T00:00:00Z"}),
    )
    .await;
    let big = format!(
        "{{\"since\": \"{SINCE}\", \"until\": \"{UNTIL}\", \"name\": \"{}\"}}",
        "x".repeat(70_000)
    );
    let (status, _) = hub
        .post("/api/v1/exports", Some(ADMIN), "application/json", big)
        .await;
    assert_eq!(status, 413);
    let (status, _) = api.json(Method::GET, "/api/v1/exports?limit=0", None).await;
    assert_eq!(status, 400);
    let (status, _) = api
        .json(Method::GET, "/api/v1/exports/not-an-id", None)
        .await;
    assert_eq!(status, 404);

    // at most `max_queued` jobs wait or run: the next is refused with 429 until one ends
    let second = create(&api, json!({"since": SINCE, "until": UNTIL})).await;
    let (status, v) = api
        .json(
            Method::POST,
            "/api/v1/exports",
            Some(json!({"since": SINCE, "until": UNTIL})),
        )
        .await;
    assert_eq!(status, 429, "{v}");
    refused(status, "too_many_requests", "queued or running", &v);
    // the one running is cancelled, the queued one too; then there is room again
    let first_path = format!("/api/v1/exports/{}", ok["id"].as_str().expect("id"));
    wait_job(&api, &first_path, 30, |j| j["state"] == "running").await;
    let (status, v) = api
        .json(Method::GET, &format!("{first_path}/download"), None)
        .await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict");
    for job in [&ok, &second] {
        let (status, _) = api
            .json(
                Method::DELETE,
                &format!("/api/v1/exports/{}", job["id"].as_str().expect("id")),
                None,
            )
            .await;
        assert_eq!(status, 204);
    }
    create(&api, json!({"since": SINCE, "until": UNTIL})).await;
    let partials: Vec<_> = std::fs::read_dir(hub.dir.path().join("exports"))
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(ok["id"].as_str().expect("id")))
        .collect();
    assert!(
        partials.is_empty(),
        "a cancelled job leaves no file: {partials:?}"
    );
    // ingest tokens may not make exports
    let ingest = Api::at(&hub.url, &hub.mint("ingest").await);
    let (status, _) = ingest
        .json(
            Method::POST,
            "/api/v1/exports",
            Some(json!({"since": SINCE, "until": UNTIL})),
        )
        .await;
    assert_eq!(status, 403);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_job_answers_410_and_its_file_is_gone() {
    let hub = TestHub::start_with(|s| {
        s.jobs.expire_after = Duration::from_secs(2);
        s.jobs.cleanup_interval = Duration::from_millis(100);
    })
    .await;
    let api = Api::at(&hub.url, ADMIN);
    hub.ingest(&varied_events("ex", 50, 3_600, 5)).await;
    let job = create(
        &api,
        json!({"format": "csv", "since": SINCE, "until": UNTIL}),
    )
    .await;
    let id = job["id"].as_str().expect("id");
    let path = format!("/api/v1/exports/{id}");
    wait_job(&api, &path, 30, |j| j["state"] == "completed").await;
    let file = hub.dir.path().join("exports").join(format!("{id}.csv"));
    assert!(file.exists());
    let (status, body, _) = bytes(&api, &format!("{path}/download")).await;
    assert_eq!(status, 200);
    assert!(body.starts_with(b"\"id\",\"time\""));
    let expired = wait_job(&api, &path, 30, |j| j["state"] == "expired").await;
    assert_eq!(expired["sha256"].as_str(), Some(sha256_hex(&body).as_str()));
    assert!(!file.exists(), "the expired file is deleted");
    let (status, v) = api
        .json(Method::GET, &format!("{path}/download"), None)
        .await;
    assert_eq!(status, 410, "{v}");
    assert_eq!(v["error"]["code"], "gone");
    hub.stop().await;
}

/// A job running when the hub is killed is run again from the start at the next start, and
/// ends with a complete, correct file; nothing half-written is ever served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_killed_mid_way_completes_after_the_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut hub =
        HubProcess::spawn_with(dir.path(), port, &[("TRAILHUB_JOBS_TEST_PAUSE_MS", "400")]);
    wait_ready(&http, &url).await;
    let events = varied_events("kj", 6_000, 2 * 86_400, 11);
    for chunk in events.chunks(2_000) {
        assert_eq!(post_events(&http, &url, chunk).await, 200);
    }
    let api = Api::at(&url, ADMIN);
    let job = create(&api, json!({"format": "ndjson", "since": SINCE, "until": UNTIL, "filter": {"integration": "custom"}})).await;
    let id = job["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/exports/{id}");
    wait_job(&api, &path, 30, |j| {
        j["state"] == "running" && j["progress"]["events"].as_u64().unwrap_or(0) >= 1_000
    })
    .await;
    let partial = dir
        .path()
        .join("exports")
        .join(format!("{id}.ndjson.partial"));
    assert!(partial.exists(), "the job writes a partial file first");
    hub.kill().expect("kill -9");
    hub.wait().expect("reaped");
    drop(hub);

    let hub = HubProcess::spawn(dir.path(), port);
    wait_ready(&http, &url).await;
    let done = wait_job(&api, &path, 60, |j| j["state"] == "completed").await;
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(done["events"], 6_000);
    assert!(!partial.exists());
    let (status, file, _) = bytes(&api, &format!("{path}/download")).await;
    assert_eq!(status, 200);
    assert_eq!(done["sha256"].as_str(), Some(sha256_hex(&file).as_str()));
    let (_, streamed, _) = bytes(
        &api,
        &format!(
            "/api/v1/events/export?format=ndjson&since={SINCE}&until={UNTIL}&integration=custom"
        ),
    )
    .await;
    assert!(
        file == streamed,
        "the re-run's file differs from the stream"
    );
    let lines: std::collections::HashSet<&[u8]> = file
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 6_000, "every event once");
    drop(hub);
}
