//! Archive → purge → restore: what retention purges is first written as a segment (to a
//! directory, or to a real S3-protocol server), and a restore puts every event back byte for
//! byte, after checking its proof — and refuses a segment that was edited.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::hub::*;
use crate::support::s3::S3Server;

/// An aged event whose actor varies with its source id.
fn aged(source_id: &str, category: &str, age_days: i64) -> Value {
    crate::support::data::aged(
        source_id,
        category,
        age_days,
        &format!("actor-{}", source_id.len() % 3),
    )
}

/// 150 expired data changes and 150 recent ones, then enough to seal them all.
async fn fill(hub: &TestHub) {
    let mut lines = Vec::new();
    for i in 0..150 {
        lines.push(aged(&format!("old-{i}"), "data_change", 400));
        lines.push(aged(&format!("new-{i}"), "data_change", 3));
    }
    hub.ingest(&lines).await;
    let filler: Vec<Value> = (0..300)
        .map(|i| aged(&format!("filler-{i}"), "configuration", 0))
        .collect();
    hub.ingest(&filler).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while hub.store().sealed_through().expect("sealed") < 300 {
        assert!(std::time::Instant::now() < deadline, "not sealed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Every event's exact bytes, by id, as `GET /api/v1/events/{id}` serves them.
async fn exact_bytes(hub: &TestHub, query: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in hub.all_events(query, 500).await {
        let id = e["id"].as_str().expect("id").to_string();
        let (status, text) = hub.get_text(&format!("/api/v1/events/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        out.push((id, text));
    }
    out.sort();
    out
}

/// The same ids with the same bytes (names the first difference, not both lists).
fn same_events(got: &[(String, String)], want: &[(String, String)]) {
    assert_eq!(got.len(), want.len(), "how many events");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g, w, "the first event that differs");
    }
}

async fn post(hub: &TestHub, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
    hub.post(path, Some(ADMIN), "application/octet-stream", body)
        .await
}

/// The whole round trip against one archive target (`[archive]` as a TOML table).
async fn round_trip(archive: toml::Table, encrypted: bool) -> (TestHub, Value) {
    let hub = TestHub::start_with(move |s| s.retention.archive = Some(archive)).await;
    fill(&hub).await;
    let before = exact_bytes(&hub, "integration=custom&category=data_change").await;
    assert_eq!(before.len(), 300);

    let report = {
        let (status, r) = hub
            .post("/api/v1/retention/run", Some(ADMIN), "application/json", "")
            .await;
        assert_eq!(status, StatusCode::OK, "{r}");
        r
    };
    assert_eq!(report["purged"], 150, "{report}");
    let objects = report["archived_objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 1, "{report}");
    assert_eq!(objects[0]["events"], 150);
    assert_eq!(objects[0]["encrypted"], encrypted);
    let object = objects[0]["object"].as_str().expect("name").to_string();
    // the purge record names the segment and its hash
    let records = hub
        .all_events("integration=trailhub&event_type=retention.purge", 10)
        .await;
    assert_eq!(records[0]["raw"]["details"]["archive"][0]["object"], object);
    let (status, listed) = hub.get("/api/v1/archive", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["objects"][0]["object"], object, "{listed}");
    let (_, storage) = hub.get("/api/v1/storage", Some(ADMIN)).await;
    assert_eq!(
        storage["bytes"]["archived"], objects[0]["bytes"],
        "{storage}"
    );
    assert_eq!(
        hub.all_events("integration=custom&category=data_change", 500)
            .await
            .len(),
        150
    );

    // restore from the archive: every event back, byte for byte
    let (status, restored) = post(
        &hub,
        &format!("/api/v1/archive/restore?object={object}"),
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["restored"], 150, "{restored}");
    same_events(
        &exact_bytes(&hub, "integration=custom&category=data_change").await,
        &before,
    );
    // marked restored: in the timeline page, and on the event's detail
    let (_, page) = hub
        .get(
            "/api/v1/events?limit=500&integration=custom&category=data_change",
            Some(ADMIN),
        )
        .await;
    let marks = page["restored"].as_object().expect("restored marks");
    assert_eq!(marks.len(), 150, "{marks:?}");
    let first = records[0]["raw"]["details"]["first_id"]
        .as_str()
        .expect("first id");
    assert!(marks.contains_key(first), "{first} in {marks:?}");
    let resp = hub
        .http
        .get(format!("{}/api/v1/events/{first}", hub.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("sent");
    assert!(resp.headers().contains_key("trailhub-restored-at"));
    // again: nothing to do
    let (_, again) = post(
        &hub,
        &format!("/api/v1/archive/restore?object={object}"),
        Vec::new(),
    )
    .await;
    assert_eq!(again["restored"], 0, "{again}");
    assert_eq!(again["present"], 150, "{again}");
    // restored events are spared by the next run (the restore hold)
    let (_, next) = hub
        .post("/api/v1/retention/run", Some(ADMIN), "application/json", "")
        .await;
    assert_eq!(next["purged"], 0, "{next}");
    assert_eq!(next["spared_restored"], 150, "{next}");
    let (_, integrity) = hub.get("/api/v1/integrity", Some(ADMIN)).await;
    assert_eq!(integrity["ok"], true, "{integrity}");
    (hub, json!({"object": object}))
}

fn dir_target(dir: &std::path::Path) -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("dir".into(), dir.display().to_string().into());
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_purge_restore_round_trips_every_event_through_a_directory() {
    let archive = tempfile::tempdir().expect("tempdir");
    let (hub, found) = round_trip(dir_target(archive.path()), false).await;
    let object = found["object"].as_str().expect("object");
    let segment = std::fs::read(archive.path().join(object)).expect("segment file");
    // a plain segment is a zstd frame of an evidence bundle: `verify --export` checks it offline
    let bundle = zstd::decode_all(&segment[..]).expect("zstd");
    let (_, listing) = hub.get("/api/v1/checkpoints", Some(ADMIN)).await;
    let key = listing["public_key"].as_str().expect("key").to_string();
    let (ok, out) = verify_export(&bundle, &key);
    assert!(ok, "{out}");
    assert!(out.contains("ok: 150 events of"), "{out}");

    // an edited segment is refused, and nothing of it is restored: one actor changed in one
    // event, compressed again, uploaded through the CLI
    let edited = String::from_utf8(bundle)
        .expect("utf8")
        .replacen("actor-0", "actor-9", 1);
    let edited = zstd::encode_all(edited.as_bytes(), 3).expect("zstd");
    let outside = tempfile::tempdir().expect("tempdir");
    let file = outside.path().join("edited.ndjson.zst");
    std::fs::write(&file, &edited).expect("write");
    let (ok, out) = cli(
        outside.path(),
        &[
            "archive",
            "restore",
            file.to_str().expect("path"),
            "--hub",
            &hub.url,
            "--token",
            ADMIN,
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("was not restored"), "{out}");
    // a segment that is not one
    let (status, body) = post(&hub, "/api/v1/archive/restore", b"hello".to_vec()).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // a name outside the archive's keys
    let (status, body) = post(
        &hub,
        "/api/v1/archive/restore?object=../../etc/passwd",
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_purge_restore_round_trips_every_event_through_s3_encrypted() {
    let s3 = S3Server::start().await;
    s3.create_bucket("audit-archive");
    let target = s3.target("audit-archive");
    let keys = tempfile::tempdir().expect("tempdir");
    let key_file = keys.path().join("archive.key");
    trailhub::archive::ArchiveKey::generate_to(&key_file).expect("key");
    let mut t = toml::Table::new();
    for (k, v) in [
        ("endpoint", target.endpoint.clone()),
        ("bucket", target.bucket.clone()),
        ("access_key_id", target.access_key_id.clone()),
        (
            "secret_access_key_file",
            target
                .secret_access_key_file
                .as_ref()
                .map(|p| p.display().to_string()),
        ),
        ("key_file", Some(key_file.display().to_string())),
    ] {
        if let Some(v) = v {
            t.insert(k.into(), v.into());
        }
    }
    let (hub, found) = round_trip(t, true).await;
    let object = found["object"].as_str().expect("object");
    assert!(object.ends_with(".enc"), "{object}");
    // the bucket holds ciphertext: no event text in it
    let stored = std::fs::read(s3.object_path("audit-archive", object)).expect("object file");
    assert!(
        !stored.windows(7).any(|w| w == b"actor-0"),
        "the archived segment is not encrypted"
    );
    hub.stop().await;
}

/// A segment archived before `trailhub keys rotate-signing` is signed by the old key: a restore
/// after the rotation checks it with the key in force when it was written, and every event
/// comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_from_before_a_signing_key_rotation_still_restores() {
    let archive = tempfile::tempdir().expect("tempdir");
    let target = dir_target(archive.path());
    let hub = TestHub::start_with({
        let target = target.clone();
        move |s| s.retention.archive = Some(target)
    })
    .await;
    fill(&hub).await;
    let before = exact_bytes(&hub, "integration=custom&category=data_change").await;
    let (status, report) = hub
        .post("/api/v1/retention/run", Some(ADMIN), "application/json", "")
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["purged"], 150, "{report}");
    let object = report["archived_objects"][0]["object"]
        .as_str()
        .expect("object")
        .to_string();
    let data = hub.stop().await;
    let (ok, out) = cli(data.path(), &["keys", "rotate-signing"]);
    assert!(ok, "{out}");

    let hub = start_hub_with(data.path(), move |s| s.retention.archive = Some(target)).await;
    let api = Api::new(&hub);
    let (status, restored) = api
        .json(
            reqwest::Method::POST,
            &format!("/api/v1/archive/restore?object={object}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{restored}");
    assert_eq!(restored["restored"], 150, "{restored}");
    let listing = api.get("/api/v1/checkpoints").await;
    assert_eq!(listing["keys"].as_array().map(Vec::len), Some(2), "rotated");
    let mut after = Vec::new();
    for (id, _) in &before {
        let (status, text) = api
            .call(reqwest::Method::GET, &format!("/api/v1/events/{id}"), None)
            .await;
        assert_eq!(status, 200);
        after.push((id.clone(), text));
    }
    same_events(&after, &before);
    hub.stop().await.expect("clean stop");
}
