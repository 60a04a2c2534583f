//! The store's own guarantees on the block layout: a dedup hash collision never drops an event,
//! a full write queue refuses cleanly, and a data dir of the previous format is refused until
//! `trailhub migrate` converts it, keeping every event, id, cursor and the chain

use std::collections::{HashMap, HashSet};

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::data::*;
use crate::support::hub::*;

/// Only two bits of the dedup hash kept: hundreds of events share each hash, so every lookup
/// meets collisions — in memory, in sealed runs and in merged runs. Each must be resolved by
/// comparing the stored event, never by dropping one.
#[tokio::test]
async fn a_forced_dedup_hash_collision_stores_both_events() {
    let hub = TestHub::start_with(|s| {
        s.dedup_hash_mask = 0b11;
        s.seal_events = 64;
    })
    .await;
    let events = varied_events("collide", 300, 86_400, 21);
    let first = hub.ingest(&events).await;
    assert_eq!(first["stored"], 300, "{first}");
    assert_eq!(first["duplicates"], 0, "{first}");
    // a re-post: every event is a duplicate of itself, not of a colliding neighbour
    let again = hub.ingest(&events).await;
    assert_eq!(again["stored"], 0, "{again}");
    assert_eq!(again["duplicates"], 300, "{again}");
    // one new event among old ones, after several seals and a run merge
    let mut mixed = events[..50].to_vec();
    mixed.extend(varied_events("late", 1, 86_400, 5));
    let mixed_report = hub.ingest(&mixed).await;
    assert_eq!(mixed_report["stored"], 1, "{mixed_report}");
    assert_eq!(mixed_report["duplicates"], 50, "{mixed_report}");
    let all = hub.all_events("", 1000).await;
    let ids: HashSet<String> = source_ids(&all).into_iter().collect();
    assert_eq!(all.len(), 301);
    assert_eq!(ids.len(), 301);
    assert!(ids.contains("collide-0") && ids.contains("collide-299") && ids.contains("late-0"));
    let dir = hub.stop().await;

    // the same after a restart: the runs are read back from disk
    let hub = TestHub::start_with(|s| {
        s.data_dir = dir.path().to_path_buf();
        s.dedup_hash_mask = 0b11;
        s.seal_events = 64;
    })
    .await;
    let again = hub.ingest(&events[250..]).await;
    assert_eq!(again["duplicates"], 50, "{again}");
    assert_eq!(hub.all_events("", 1000).await.len(), 301);
    hub.stop().await;
}

/// A write queue of 64 events and 24 clients posting 100 at once: requests past the queue are
/// answered 503 with Retry-After and store nothing; every acknowledged batch is stored whole;
/// retried refusals are stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_write_queue_answers_503_with_retry_after_and_stores_nothing_of_it() {
    let hub = TestHub::start_with(|s| s.max_queued_events = 64).await;
    let batches: Vec<Vec<Value>> = (0..48)
        .map(|b| varied_events(&format!("q{b}"), 100, 3_600, b as u64))
        .collect();
    let mut tasks = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let (http, url, body) = (hub.http.clone(), hub.url.clone(), ndjson(batch));
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(format!("{url}/api/v1/events"))
                .bearer_auth(ADMIN)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .expect("answered");
            let status = resp.status();
            let retry = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let body: Value = resp.json().await.expect("JSON body");
            (b, status, retry, body)
        }));
    }
    let mut refused = Vec::new();
    let mut acked = Vec::new();
    for t in tasks {
        let (b, status, retry, body) = t.await.expect("task");
        match status {
            StatusCode::OK => {
                assert_eq!(body["stored"], 100, "{body}");
                acked.push(b);
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["error"]["code"], "unavailable", "{body}");
                assert_eq!(retry.as_deref(), Some("1"), "{body}");
                refused.push(b);
            }
            other => panic!("batch {b}: {other} {body}"),
        }
    }
    assert!(
        !refused.is_empty(),
        "24 concurrent batches never filled a 64-event queue"
    );
    assert!(!acked.is_empty());
    let stored = hub.all_events("", 1000).await;
    let per_batch = count_by_prefix(&stored);
    for b in &acked {
        assert_eq!(
            per_batch.get(&format!("q{b}")),
            Some(&100),
            "acknowledged batch {b}"
        );
    }
    for b in &refused {
        assert_eq!(
            per_batch.get(&format!("q{b}")),
            None,
            "refused batch {b} was stored"
        );
    }
    // the refused ones, retried one at a time, all go in
    for b in &refused {
        let report = hub.ingest(&batches[*b]).await;
        assert_eq!(report["stored"], 100, "{report}");
    }
    assert_eq!(hub.all_events("", 1000).await.len(), 4800);
    hub.stop().await;
}

fn count_by_prefix(events: &[Value]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for sid in source_ids(events) {
        let prefix = sid.split('-').next().expect("prefix").to_string();
        *out.entry(prefix).or_default() += 1;
    }
    out
}

fn format_1_events(n: usize) -> Vec<trailhub::schema::Event> {
    let integration = trailhub::ingest::custom_integration();
    varied_events("old", n, 30 * 86_400, 77)
        .iter()
        .map(|v| {
            trailhub::schema::parse_ingest_line(v, None, &integration, 1_700_000_000_000_000)
                .expect("valid line")
        })
        .collect()
}

fn cli(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    cli_with(dir, args, &[("TRAILHUB_SEAL_EVENTS", "500")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_converts_a_format_1_data_dir_keeping_events_ids_cursors_and_the_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    let events = format_1_events(9_000);
    let cursor = br#"{"next":"https://api.example.com/logs?after=abc"}"#.as_slice();
    let head = trailhub::store::migrate::write_v1_for_tests(&db, &events, &[("gh-1", cursor)])
        .expect("format-1 store written");

    // the hub refuses it, naming the command
    let started = trailhub::server::start({
        let mut s = trailhub::config::Settings::for_data_dir(dir.path());
        s.admin_token = Some(trailhub::config::Secret::new(ADMIN));
        s
    })
    .await;
    let Err(refusal) = started else {
        panic!("a format-1 data dir was opened")
    };
    assert!(
        refusal.to_string().contains("trailhub migrate"),
        "{refusal}"
    );

    // interrupted after its first step (as a kill would), then resumed by the command
    let first = trailhub::store::migrate::migrate(&db, 16 << 20, |_, _| false).expect("one step");
    assert!(
        first.interrupted && first.moved > 0 && first.moved < 9_000,
        "{first:?}"
    );
    let (ok, out) = cli(dir.path(), &["verify"]);
    assert!(
        !ok && out.contains("trailhub migrate"),
        "half migrated must not open: {out}"
    );
    let (ok, out) = cli(dir.path(), &["migrate"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("resumed after event {}", first.moved)),
        "{out}"
    );
    assert!(out.contains("9000 events, chain head"), "{out}");
    let (ok, out) = cli(dir.path(), &["migrate"]);
    assert!(ok && out.contains("nothing to do"), "{out}");

    let hub = TestHub::start_with(|s| s.data_dir = dir.path().to_path_buf()).await;
    let (_, integrity) = hub.get("/api/v1/integrity", Some(ADMIN)).await;
    assert_eq!(integrity["ok"], true, "{integrity}");
    assert_eq!(integrity["events_checked"], 9_000);
    assert_eq!(
        integrity["head_hash"],
        hex(&head),
        "the same chain, the same head"
    );
    // every id names the same event as before
    for seq in [1usize, 2, 777, 4_500, 9_000] {
        let (status, e) = hub
            .get(&format!("/api/v1/events/{seq:016x}"), Some(ADMIN))
            .await;
        assert_eq!(status, StatusCode::OK, "{e}");
        assert_eq!(e["source_id"], events[seq - 1].source_id.as_str(), "{e}");
        assert_eq!(
            e["raw"],
            serde_json::to_value(&events[seq - 1].raw).expect("raw")
        );
    }
    let all = hub.all_events("", 1000).await;
    assert_eq!(all.len(), 9_000);
    let by_actor = hub.all_events("actor=u1", 1000).await;
    assert!(!by_actor.is_empty() && by_actor.iter().all(|e| e["actor"]["id"] == "u1"));
    // dedup survives: the old events posted again are duplicates
    let again = hub
        .ingest(&varied_events("old", 100, 30 * 86_400, 77))
        .await;
    assert_eq!(again["duplicates"], 100, "{again}");
    hub.stop().await;
    let store = trailhub::server::open_store(&trailhub::config::Settings::for_data_dir(dir.path()))
        .expect("opens");
    assert_eq!(store.cursor("gh-1").expect("read").as_deref(), Some(cursor));
    assert_eq!(store.integration_count("custom").expect("count"), 9_000);
    store.shutdown().expect("closes");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Dedup merges write their run on a thread of their own, with the run's id recorded first: a
/// crash before the merge commits leaves keys that the next start removes.
#[test]
fn an_unfinished_background_merge_leaves_nothing_behind() {
    use trailhub::store::keys;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store");
    let options = trailhub::store::StoreOptions::new(8 << 20, 0);
    drop(trailhub::store::Store::open(&path, &options).expect("store"));
    // what a merge of run 77 had written when the process died
    {
        let db = trailhub::store::open_db(&path, 8 << 20).expect("db");
        let index = db.open_tree(keys::TREE_INDEX).expect("index");
        index
            .insert(keys::meta_key(keys::META_MERGING), &77u64.to_be_bytes()[..])
            .expect("insert");
        for n in 0..3 {
            index
                .insert(keys::run_data_key(77, b'c', n), vec![7u8; 64])
                .expect("insert");
        }
        index
            .insert(
                keys::meta_key(keys::META_NEXT_RUN),
                &90u64.to_be_bytes()[..],
            )
            .expect("insert");
        db.flush().expect("flush");
    }
    drop(trailhub::store::Store::open(&path, &options).expect("store reopens"));
    let db = trailhub::store::open_db(&path, 8 << 20).expect("db");
    let index = db.open_tree(keys::TREE_INDEX).expect("index");
    for n in 0..3 {
        assert!(
            index
                .get(keys::run_data_key(77, b'c', n))
                .expect("get")
                .is_none(),
            "chunk {n} of the unfinished run is removed"
        );
    }
    assert!(index
        .get(keys::meta_key(keys::META_MERGING))
        .expect("get")
        .is_none());
}
