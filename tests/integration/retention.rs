//! Retention from outside: a policy purges what expired (and only that), legal holds spare
//! what they cover, every count and histogram stays exact, `verify` still passes and every
//! surviving event still proves itself; the purge is itself a recorded event; an archived
//! segment restores every event byte for byte.

use reqwest::StatusCode;
use serde_json::{json, Value};
use trailhub::store::block::{is_tombstone, BlockView, Dictionaries, Packer, Tombstone};
use trailhub::store::{keys, prepare};
use trailhub::time::{format_micros, now_micros, DAY};

use crate::support::data::aged;
use crate::support::hub::*;

/// The mix every test starts from: 100 of each kind, ids `{kind}-{i}`.
/// - `sys-old`: system, 200 days old (expired: system keeps 90);
/// - `sys-new`: system, 10 days old (kept);
/// - `auth-old`: authentication, 400 days old (kept: 730);
/// - `change-old`: data_change, 500 days old (expired: 365);
/// - `held`: system, 200 days old, by the actor a legal hold names.
fn mix() -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..100 {
        out.push(aged(&format!("sys-old-{i}"), "system", 200, "u1"));
        out.push(aged(&format!("sys-new-{i}"), "system", 10, "u1"));
        out.push(aged(&format!("auth-old-{i}"), "authentication", 400, "u2"));
        out.push(aged(&format!("change-old-{i}"), "data_change", 500, "u3"));
        out.push(aged(&format!("held-{i}"), "system", 200, "suspect"));
    }
    out
}

/// Ingests the mix, then enough recent events that all of it is sealed (purges take only
/// sealed events).
async fn fill(hub: &TestHub) {
    for chunk in mix().chunks(250) {
        hub.ingest(chunk).await;
    }
    let filler: Vec<Value> = (0..300)
        .map(|i| aged(&format!("filler-{i}"), "configuration", 0, "u9"))
        .collect();
    hub.ingest(&filler).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while hub.store().sealed_through().expect("sealed") < 500 {
        assert!(
            std::time::Instant::now() < deadline,
            "the mix was not sealed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn run(hub: &TestHub, query: &str) -> Value {
    let (status, body) = hub
        .post(
            &format!("/api/v1/retention/run{query}"),
            Some(ADMIN),
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn count(hub: &TestHub, query: &str) -> usize {
    hub.all_events(query, 500).await.len()
}

async fn hold(hub: &TestHub, body: Value) -> (StatusCode, Value) {
    hub.post(
        "/api/v1/legal-holds",
        Some(ADMIN),
        "application/json",
        body.to_string(),
    )
    .await
}

/// Total of a histogram's buckets.
fn histogram_total(h: &Value) -> u64 {
    h["buckets"]
        .as_array()
        .expect("buckets")
        .iter()
        .map(|b| b["total"].as_u64().unwrap_or(0))
        .sum()
}

#[tokio::test]
async fn a_purge_removes_only_what_expired_keeps_counts_exact_and_the_log_provable() {
    let hub = TestHub::start().await;
    fill(&hub).await;
    let (status, h) = hold(
        &hub,
        json!({"reason": "case 2026-17: preserve the suspect's activity", "filter": "actor=suspect"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{h}");
    let since = format_micros(now_micros() - 600 * DAY);
    let hist_query = format!("/api/v1/events/histogram?since={since}&bucket=1d");
    let (_, before_hist) = hub.get(&hist_query, Some(ADMIN)).await;
    let total_before = histogram_total(&before_hist);

    // a dry run counts and changes nothing
    let dry = run(&hub, "?dry_run=true").await;
    assert_eq!(dry["expired"], 300, "{dry}");
    assert_eq!(dry["held"], 100, "{dry}");
    assert_eq!(dry["purged"], 0, "{dry}");
    assert_eq!(count(&hub, "category=system").await, 300);

    let report = run(&hub, "").await;
    assert_eq!(report["purged"], 200, "{report}");
    assert_eq!(report["held"], 100, "{report}");
    assert_eq!(report["by_category"]["system"], 100, "{report}");
    assert_eq!(report["by_category"]["data_change"], 100, "{report}");
    assert!(
        report["bytes_after"].as_u64() < report["bytes_before"].as_u64(),
        "{report}"
    );

    // the timeline: expired events gone, everything else there
    assert_eq!(count(&hub, "category=data_change").await, 0);
    assert_eq!(count(&hub, "category=authentication").await, 100);
    assert_eq!(count(&hub, "actor=suspect").await, 100);
    assert_eq!(count(&hub, "category=system&actor=u1").await, 100);
    // an expired event's detail is gone too
    let (status, body) = hub
        .get("/api/v1/events/0000000000000001", Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.to_string().contains("purged by retention"), "{body}");

    // histograms count exactly what is left (rollups and scans alike)
    let (_, after_hist) = hub.get(&hist_query, Some(ADMIN)).await;
    // (the purge's own record is one event more)
    assert_eq!(histogram_total(&after_hist), total_before - 200 + 1);
    let (_, by_cat) = hub
        .get(
            &format!("/api/v1/events/histogram?since={since}&bucket=1d&group_by=category&category=data_change"),
            Some(ADMIN),
        )
        .await;
    assert_eq!(histogram_total(&by_cat), 0, "{by_cat}");

    // the purge is an event of the hub's own integration, naming what it did
    let records = hub
        .all_events("integration=trailhub&event_type=retention.purge", 100)
        .await;
    assert_eq!(records.len(), 1);
    let details = &records[0]["raw"]["details"];
    assert_eq!(details["events"], 200, "{details}");
    assert!(details["checkpoint"]["tree_size"].as_u64().expect("size") >= 800);

    // the storage view agrees
    let (status, storage) = hub.get("/api/v1/storage", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{storage}");
    assert_eq!(storage["events"]["purged"], 200, "{storage}");
    let system = storage["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .find(|c| c["category"] == "system")
        .expect("system row")
        .clone();
    // 100 recent, 100 held, and the purge record itself
    assert_eq!(system["events"], 201, "{system}");
    assert_eq!(system["retention_days"], 90, "{system}");

    // a vendor sending a purged event again does not bring it back
    let again = hub
        .ingest(&[aged("change-old-7", "data_change", 500, "u3")])
        .await;
    assert_eq!(again["duplicates"], 1, "{again}");

    // the log still verifies, and every surviving event proves itself against a new checkpoint
    let (status, integrity) = hub.get("/api/v1/integrity", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(integrity["ok"], true, "{integrity}");
    let (_, listing) = hub.get("/api/v1/checkpoints", Some(ADMIN)).await;
    let key = listing["public_key"].as_str().expect("key").to_string();
    let (status, bundle) = hub
        .get_text("/api/v1/events/export?format=ndjson&proofs=true")
        .await;
    assert_eq!(status, StatusCode::OK);
    let survivors = bundle.lines().count() - 1;
    let dir = hub.stop().await;
    let (ok, out) = verify_export(bundle.as_bytes(), &key);
    assert!(ok, "{out}");
    assert!(out.contains(&format!("ok: {survivors} events of")), "{out}");
    // the full walk over the stopped hub's data dir: tombstones keep the chain and the tree
    let (ok, out) = cli(dir.path(), &["verify"]);
    assert!(ok, "{out}");

    // someone with the disk empties a slot by hand, keeping its leaf hash so that the tree
    // still adds up: the tombstone names no retention record, and `verify` says so
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), copy.path());
    edit_slot(copy.path(), 3, |seq, slot| {
        assert!(
            !is_tombstone(slot),
            "event 3 (auth-old-0) survived the purge"
        );
        Tombstone {
            leaf: prepare::leaf_hash_of(seq, slot),
            purge_seq: 4,
        }
        .encode()
    });
    let (ok, out) = cli(copy.path(), &["verify"]);
    assert!(!ok, "{out}");
    assert!(out.contains("is not a retention record"), "{out}");
    // a tombstone's leaf hash changed: the tree no longer adds up
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), copy.path());
    edit_slot(copy.path(), 4, |_, slot| {
        let mut t = Tombstone::parse(slot)
            .expect("parses")
            .expect("event 4 was purged");
        t.leaf[0] ^= 1;
        t.encode()
    });
    let (ok, out) = cli(copy.path(), &["verify"]);
    assert!(!ok, "{out}");
    assert!(out.contains("BROKEN"), "{out}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Rewrites the slot of event `seq` in a stopped hub's store (no dictionary: these stores are
/// too small to train one).
fn edit_slot(dir: &std::path::Path, seq: u64, edit: impl FnOnce(u64, &[u8]) -> Vec<u8>) {
    let db = trailhub::store::open_db(&dir.join("db"), 8 << 20).expect("open store");
    let log = db.open_tree(keys::TREE_LOG).expect("log");
    let (k, v) = log
        .range(keys::block_key(0)..=keys::block_key(seq))
        .next_back()
        .expect("a block")
        .expect("read");
    let first = keys::decode_u64(&k[1..]);
    let view = BlockView::parse(&v).expect("block");
    let dicts = Dictionaries::default();
    let mut slots = view.slots(&dicts).expect("slots");
    let i = (seq - first) as usize;
    slots[i].0 = edit(seq, &slots[i].0);
    let refs: Vec<(&[u8], &[u8])> = slots.iter().map(|(b, p)| (b.as_slice(), &p[..])).collect();
    let value = Packer::new()
        .expect("packer")
        .pack(&refs, &view.hash, None)
        .expect("pack");
    log.insert(k, value).expect("write");
    db.flush().expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_holds_are_validated_and_audited() {
    let hub = TestHub::start().await;
    let viewer = hub.mint("viewer").await;
    let put = |body: String, token: &'static str| {
        let http = hub.http.clone();
        let url = format!("{}/api/v1/retention", hub.url);
        async move {
            let resp = http
                .put(url)
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("sent");
            let status = resp.status();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for (body, why) in [
        (json!({"categories": {"system": 0}}), "0 days"),
        (json!({"categories": {"logins": 30}}), "unknown category"),
        (json!({"categories": {"system": 99_999}}), "at most"),
        (json!({"retain": true}), "unknown field"),
    ] {
        let (status, answer) = put(body.to_string(), ADMIN).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer.to_string().contains(why), "{why}: {answer}");
    }
    let (status, answer) = put("{not json".into(), ADMIN).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    // a viewer reads the policy but may not change it
    let (status, shown) = hub.get("/api/v1/retention", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(shown["policy"]["categories"]["system"], 90, "{shown}");
    let resp = hub
        .http
        .put(format!("{}/api/v1/retention", hub.url))
        .bearer_auth(&viewer)
        .body(json!({"categories": {"system": 30}}).to_string())
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // a policy that keeps system events forever and okta's for 30 days
    let (status, answer) = put(
        json!({"categories": {"system": null}, "integrations": {"okta": 30}}).to_string(),
        ADMIN,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["policy"]["categories"]["system"], Value::Null);
    assert_eq!(answer["policy"]["integrations"]["okta"], 30);

    // holds: bounded, must name something, filters parsed like the timeline's
    for (body, why) in [
        (
            json!({"reason": "x"}),
            "names an integration, a filter or both",
        ),
        (json!({"reason": "", "integration": "okta"}), "reason"),
        (json!({"reason": "x", "filter": "nonsense=1"}), "filter"),
        (
            json!({"reason": "x".repeat(600), "integration": "okta"}),
            "reason",
        ),
    ] {
        let (status, answer) = hold(&hub, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(answer.to_string().contains(why), "{why}: {answer}");
    }
    let (status, h) = hold(&hub, json!({"reason": "litigation", "integration": "okta"})).await;
    assert_eq!(status, StatusCode::CREATED, "{h}");
    let id = h["id"].as_str().expect("id");
    let (_, listed) = hub.get("/api/v1/legal-holds", Some(&viewer)).await;
    assert_eq!(listed["legal_holds"][0]["id"], id);
    let lift = || {
        hub.http
            .delete(format!("{}/api/v1/legal-holds/{id}", hub.url))
            .bearer_auth(ADMIN)
            .send()
    };
    assert_eq!(lift().await.expect("sent").status(), StatusCode::NO_CONTENT);
    assert_eq!(lift().await.expect("sent").status(), StatusCode::NOT_FOUND);
    // every change is an audited action
    let audited = hub.all_events("integration=trailhub", 100).await;
    let types: Vec<&str> = audited
        .iter()
        .filter_map(|e| e["event_type"].as_str())
        .collect();
    for t in [
        "retention.policy.update",
        "retention.hold.create",
        "retention.hold.delete",
    ] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    let (status, _) = hub
        .post(
            "/api/v1/retention/run?dry_run=maybe",
            Some(ADMIN),
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = hub
        .post(
            "/api/v1/retention/run",
            Some(&viewer),
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // the same through the CLI, against the running hub
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let remote = ["--hub", hub.url.as_str(), "--token", ADMIN];
    let run_cli = |args: Vec<&str>| {
        let mut all = args;
        all.extend(remote);
        cli(elsewhere.path(), &all)
    };
    let (ok, out) = run_cli(vec![
        "retention",
        "set",
        "--category",
        "system=45",
        "--integration",
        "okta=default",
    ]);
    assert!(ok, "{out}");
    let shown: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(shown["policy"]["categories"]["system"], 45, "{out}");
    assert!(
        shown["policy"]["integrations"].get("okta").is_none(),
        "{out}"
    );
    let (ok, out) = run_cli(vec!["retention", "set", "--category", "system=0"]);
    assert!(!ok && out.contains("0 days"), "{out}");
    let (ok, out) = run_cli(vec!["retention", "set", "--category", "system=soon"]);
    assert!(!ok && out.contains("whole number"), "{out}");
    let (ok, out) = run_cli(vec![
        "holds",
        "add",
        "--reason",
        "audit 2027",
        "--filter",
        "actor=u1",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = run_cli(vec!["holds", "list"]);
    assert!(ok && out.contains("audit 2027"), "{out}");
    let (ok, out) = run_cli(vec!["retention", "run", "--dry-run"]);
    assert!(ok && out.contains("\"dry_run\": true"), "{out}");
    let (ok, out) = run_cli(vec!["storage"]);
    assert!(ok && out.contains("\"purged\": 0"), "{out}");
    let (ok, out) = run_cli(vec!["archive", "list"]);
    assert!(!ok && out.contains("no archive is configured"), "{out}");

    // holds are bounded: the 101st is refused with a clear error
    let mut placed = hub.get("/api/v1/legal-holds", Some(ADMIN)).await.1["legal_holds"]
        .as_array()
        .expect("holds")
        .len();
    loop {
        let (status, answer) = hold(
            &hub,
            json!({"reason": format!("bulk {placed}"), "integration": "okta"}),
        )
        .await;
        if status != StatusCode::CREATED {
            assert_eq!(status, StatusCode::CONFLICT, "{answer}");
            assert!(answer.to_string().contains("at most 100"), "{answer}");
            break;
        }
        placed += 1;
        assert!(placed <= 100, "more than 100 holds were accepted");
    }
    assert_eq!(placed, 100);
    hub.stop().await;
}
