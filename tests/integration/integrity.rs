//! `trailhub verify` walks the hash chain and names the first event that was altered

use serde_json::Value;

use crate::common::*;

fn verify(dir: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailhub"))
        .args(["--data-dir", dir.to_str().expect("utf8"), "verify"])
        .output()
        .expect("cli runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Rewrites one stored value in place, as someone with access to the disk could.
fn tamper(dir: &std::path::Path, seq: u64, edit: impl FnOnce(&mut Vec<u8>)) {
    let db = sled::open(dir.join("db")).expect("open store");
    let log = db.open_tree("log").expect("tree");
    let mut key = vec![b'E'];
    key.extend_from_slice(&seq.to_be_bytes());
    let mut value = log.get(&key).expect("read").expect("event exists").to_vec();
    edit(&mut value);
    log.insert(key, value).expect("write");
    db.flush().expect("flush");
}

#[tokio::test]
async fn verify_detects_a_single_flipped_byte() {
    let hub = TestHub::start().await;
    hub.ingest(&varied_events("v", 40, 3_600, 8)).await;
    let (status, report) = hub.get("/api/v1/integrity", Some(ADMIN)).await;
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(report["ok"], Value::Bool(true), "{report}");
    assert_eq!(report["events_checked"], 40);
    let dir = hub.stop().await;
    assert_eq!(verify(dir.path()).0, 0);

    // One byte of the event's JSON changed (the body re-compressed so it still decodes).
    let copy = tempfile::tempdir().expect("tempdir");
    copy_dir(dir.path(), copy.path());
    tamper(copy.path(), 17, |v| {
        let mut body = lz4_flex::decompress_size_prepended(&v[33..]).expect("body");
        let at = body
            .windows(6)
            .position(|w| {
                w == b"\"u1\",\"" || w == b"\"u2\",\"" || w == b"\"u3\",\"" || w == b"\"u4\",\""
            })
            .expect("actor id");
        body[at + 2] ^= 0x01;
        v.truncate(33);
        v.extend_from_slice(&lz4_flex::compress_prepend_size(&body));
    });
    let (code, out) = verify(copy.path());
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("0000000000000011"), "names event 17: {out}");
    assert!(out.contains("16 events before it verified"), "{out}");

    // One raw byte flipped anywhere in the stored value.
    for offset in [0usize, 5, 40, 90] {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_dir(dir.path(), copy.path());
        tamper(copy.path(), 3, |v| {
            let i = offset.min(v.len() - 1);
            v[i] ^= 0x20;
        });
        let (code, out) = verify(copy.path());
        assert_eq!(code, 1, "offset {offset}: {out}");
        assert!(out.contains("0000000000000003"), "offset {offset}: {out}");
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
    let hub = TestHub::start().await;
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
        let db = sled::open(dir.path().join("db")).expect("open store");
        let index = db.open_tree("index").expect("tree");
        assert!(!index.is_empty());
        index.clear().expect("clear");
        db.flush().expect("flush");
    }
    let hub = TestHub::start_with(|s| s.data_dir = dir.path().to_path_buf()).await;
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
