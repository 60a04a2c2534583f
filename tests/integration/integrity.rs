//! `trailhub verify` walks the hash chain and names the first event that was altered

use serde_json::Value;
use trailhub::store::block::{get_varint, BlockView, Dictionaries, CHAIN_PREFIX};

use crate::support::data::*;
use crate::support::hub::*;

fn verify(dir: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailhub"))
        .args(["--data-dir", dir.to_str().expect("utf8"), "verify"])
        .output()
        .expect("cli runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Rewrites the stored block holding event `seq` in place, as someone with access to the disk
/// could; returns the block's first sequence number and its event count.
fn tamper(dir: &std::path::Path, seq: u64, edit: impl FnOnce(&[u8], u64) -> Vec<u8>) -> (u64, u64) {
    let db = trailhub::store::open_db(&dir.join("db"), 8 << 20).expect("open store");
    let log = db.open_tree("log").expect("tree");
    let mut from = vec![b'B'];
    from.extend_from_slice(&0u64.to_be_bytes());
    let mut to = vec![b'B'];
    to.extend_from_slice(&seq.to_be_bytes());
    let (key, value) = log
        .range(from..=to)
        .next_back()
        .expect("a block holds the event")
        .expect("read");
    let first = u64::from_be_bytes(key[1..9].try_into().expect("8 bytes"));
    let count = BlockView::parse(&value).expect("block").count as u64;
    let edited = edit(&value, first);
    log.insert(key, edited).expect("write");
    db.flush().expect("flush");
    (first, count)
}

/// The id `verify` named as the first broken event.
fn named(out: &str) -> u64 {
    let Some(at) = out.find("BROKEN at event ") else {
        panic!("a broken event is named: {out}");
    };
    let at = at + 16;
    u64::from_str_radix(&out[at..at + 16], 16).expect("hex id")
}

#[tokio::test]
async fn verify_detects_a_single_flipped_byte() {
    let hub = TestHub::start().await;
    // two requests: two blocks, 1..=20 and 21..=40
    let events = varied_events("v", 40, 3_600, 8);
    hub.ingest(&events[..20]).await;
    hub.ingest(&events[20..]).await;
    let (status, report) = hub.get("/api/v1/integrity", Some(ADMIN)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(report["ok"], Value::Bool(true), "{report}");
    assert_eq!(report["events_checked"], 40);
    let dir = hub.stop().await;
    assert_eq!(verify(dir.path()).0, 0);

    // One byte of event 27's JSON changed, its frame compressed again so that it still decodes:
    // `verify` names event 27 and vouches for the 26 before it.
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), copy.path());
    tamper(copy.path(), 27, |value, first| {
        let view = BlockView::parse(value).expect("block");
        let (frame, index) = view.locate((27 - first) as u32).expect("in block");
        view.with_frame_edited(frame, &Dictionaries::default(), |raw| {
            // walk the frame to event `index`: varint length, chain prefix, body
            let mut at = 0;
            for i in 0..=index {
                let len = get_varint(raw, &mut at).expect("length") as usize;
                let body = at + CHAIN_PREFIX;
                if i == index {
                    let actor = raw[body..body + len]
                        .windows(6)
                        .position(|w| {
                            w == b"\"u1\",\""
                                || w == b"\"u2\",\""
                                || w == b"\"u3\",\""
                                || w == b"\"u4\",\""
                        })
                        .expect("actor id");
                    raw[body + actor + 2] ^= 0x01;
                }
                at = body + len;
            }
        })
        .expect("re-packed")
    });
    let (code, out) = verify(copy.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("000000000000001b"), "names event 27: {out}");
    assert!(out.contains("26 events before it verified"), "{out}");

    // One raw byte flipped anywhere in the stored block: `verify` fails and names an event of
    // that block, never one before it.
    for offset in [0usize, 5, 40, 90, 200] {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_dir(dir.path(), copy.path());
        let (first, count) = tamper(copy.path(), 27, |value, _| {
            let mut v = value.to_vec();
            let i = offset.min(v.len() - 1);
            v[i] ^= 0x20;
            v
        });
        let (code, out) = verify(copy.path());
        assert_eq!(code, 1, "offset {offset}: {out}");
        let broken = named(&out);
        assert!(
            (first..first + count).contains(&broken),
            "offset {offset}: names {broken}, outside the block {first}..{}: {out}",
            first + count
        );
    }

    // The untouched original still verifies.
    assert_eq!(verify(dir.path()).0, 0);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// The index tree is derived from the log: lose it (or crash between the two) and the next start
/// rebuilds it, with the same answers and the same counts.
#[tokio::test]
async fn a_lost_index_is_rebuilt_from_the_log_on_start() {
    // small segments: four sealed (their dedup runs merged once) and a tail
    let hub = TestHub::start_with(|s| s.seal_events = 64).await;
    hub.ingest(&varied_events("ix", 300, 2 * 86_400, 12)).await;
    let queries = [
        "",
        "actor=u3",
        "action=delete&outcome=failure",
        "q=breakglass",
        "target=acme%2Fapi",
    ];
    let histogram = format!(
        "/api/v1/events/histogram?bucket=1h&group_by=action&since={}&until={}",
        rfc3339(BASE_SECS + 1_000, 0),
        rfc3339(BASE_SECS + 2 * 86_400, 0)
    );
    let mut before = Vec::new();
    for q in queries {
        before.push(source_ids(&hub.all_events(q, 1000).await));
    }
    let (_, hist_before) = hub.get(&histogram, Some(ADMIN)).await;
    let dir = hub.stop().await;

    {
        let db = trailhub::store::open_db(&dir.path().join("db"), 8 << 20).expect("open store");
        let index = db.open_tree("index").expect("tree");
        assert!(!index.is_empty());
        index.clear().expect("clear");
        db.flush().expect("flush");
    }
    let hub = TestHub::start_with(|s| {
        s.data_dir = dir.path().to_path_buf();
        s.seal_events = 64;
    })
    .await;
    for (q, want) in queries.iter().zip(before) {
        assert_eq!(
            source_ids(&hub.all_events(q, 1000).await),
            want,
            "query {q:?} after rebuild"
        );
    }
    let (_, hist_after) = hub.get(&histogram, Some(ADMIN)).await;
    assert_eq!(hist_after, hist_before);
    hub.stop().await;
}
