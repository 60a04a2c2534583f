//! The evidence log from outside: signed checkpoints, inclusion and consistency proofs checked
//! with nothing but the hub's public key, and `trailhub verify --against` catching the two
//! attacks a hash chain cannot — cutting the newest events off and rewriting the whole history —
//! as someone with write access to the data dir (and even the signing key) would.

use reqwest::StatusCode;
use serde_json::Value;
use trailhub::evidence::checkpoint::Checkpoint;
use trailhub::evidence::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use trailhub::evidence::note::NoteVerifier;
use trailhub::store::block::BlockView;
use trailhub::store::keys;

use crate::support::data::*;
use crate::support::hub::*;

async fn sign(hub: &TestHub) -> Value {
    let (status, body) = hub
        .post("/api/v1/checkpoints", Some(ADMIN), "application/json", "")
        .await;
    assert!(
        status == StatusCode::CREATED || status == StatusCode::OK,
        "{status}: {body}"
    );
    body
}

async fn public_key(hub: &TestHub) -> NoteVerifier {
    let (status, listing) = hub.get("/api/v1/checkpoints", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{listing}");
    NoteVerifier::from_vkey(listing["public_key"].as_str().expect("public key")).expect("vkey")
}

/// Ingests `n` events in requests of `per_request` (one block each).
async fn fill(hub: &TestHub, prefix: &str, n: usize, per_request: usize) -> Vec<Value> {
    let events = varied_events(prefix, n, 3_600, 11);
    for chunk in events.chunks(per_request) {
        hub.ingest(chunk).await;
    }
    events
}

#[tokio::test]
async fn proofs_verify_with_only_the_public_key_and_the_served_bytes() {
    // checkpoints only when asked, so that the history holds exactly the two signed here
    let hub =
        TestHub::start_with(|s| s.checkpoints.interval = std::time::Duration::from_secs(86_400))
            .await;
    // minting is audited: the token's event is event 1
    let viewer = hub.mint("viewer").await;
    fill(&hub, "p", 299, 100).await;
    let first = sign(&hub).await;
    assert_eq!(first["size"], 300);
    fill(&hub, "q", 77, 77).await;
    let second = sign(&hub).await;
    assert_eq!(second["size"], 377);
    let key = public_key(&hub).await;

    // an event's proof against the latest checkpoint, checked from scratch
    for seq in [1u64, 150, 300, 377] {
        let id = format!("{seq:016x}");
        let (status, proof) = hub
            .get(&format!("/api/v1/events/{id}/proof"), Some(&viewer))
            .await;
        assert_eq!(status, StatusCode::OK, "{proof}");
        let note = proof["checkpoint"].as_str().expect("note");
        let checkpoint = Checkpoint::open(note.as_bytes(), key.name(), std::slice::from_ref(&key))
            .expect("the checkpoint is signed by the hub's key");
        assert_eq!(checkpoint.size(), 377);
        let served = hub
            .http
            .get(format!("{}/api/v1/events/{id}", hub.url))
            .bearer_auth(&viewer)
            .send()
            .await
            .expect("event")
            .bytes()
            .await
            .expect("bytes");
        let leaf = leaf_hash(&served);
        assert_eq!(hex::encode(leaf), proof["leaf_hash"]);
        verify_inclusion(
            &leaf,
            seq - 1,
            checkpoint.size(),
            &hex_hashes(&proof["proof"]),
            checkpoint.root(),
        )
        .expect("the inclusion proof verifies");
        // and not for a neighbour's bytes
        assert!(verify_inclusion(
            &leaf,
            seq % 377,
            checkpoint.size(),
            &hex_hashes(&proof["proof"]),
            checkpoint.root(),
        )
        .is_err());
    }

    // a proof against the older checkpoint, named
    let (status, proof) = hub
        .get(
            "/api/v1/events/0000000000000007/proof?checkpoint=300",
            Some(&viewer),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert_eq!(proof["tree_size"], 300);

    // the newer checkpoint extends the older one
    let (status, c) = hub
        .get("/api/v1/checkpoints/consistency?from=300", Some(&viewer))
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let old = Checkpoint::open(
        first["note"].as_str().expect("note").as_bytes(),
        key.name(),
        std::slice::from_ref(&key),
    )
    .expect("signed");
    let new = Checkpoint::open(
        c["to_checkpoint"].as_str().expect("note").as_bytes(),
        key.name(),
        std::slice::from_ref(&key),
    )
    .expect("signed");
    verify_consistency(
        old.size(),
        old.root(),
        new.size(),
        new.root(),
        &hex_hashes(&c["proof"]),
    )
    .expect("consistent");

    // the history lists both, newest first; each note is served as text
    let (_, listing) = hub.get("/api/v1/checkpoints?limit=1", Some(&viewer)).await;
    assert_eq!(listing["count"], 2);
    assert_eq!(listing["checkpoints"][0]["size"], 377);
    assert_eq!(listing["next_before"], 377);
    let (_, older) = hub
        .get("/api/v1/checkpoints?limit=5&before=377", Some(&viewer))
        .await;
    assert_eq!(older["checkpoints"][0]["size"], 300);
    let (status, text) = hub.get_text("/api/v1/checkpoints/300").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, first["note"].as_str().expect("note"));

    // nothing new to sign: the latest comes back
    assert_eq!(sign(&hub).await["size"], 377);
    hub.stop().await;
}

#[tokio::test]
async fn proof_requests_are_bounded_and_answered_with_clear_errors() {
    let hub = TestHub::start().await;
    let (status, _) = hub.get_text("/api/v1/checkpoints/latest").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing signed yet");
    // minting is audited: the token's event is event 1, then 9 more
    let viewer = hub.mint("viewer").await;
    fill(&hub, "e", 9, 9).await;
    sign(&hub).await;
    fill(&hub, "f", 5, 5).await;
    for (path, want) in [
        ("/api/v1/events/0000000000000003/proof?checkpoint=abc", 400),
        ("/api/v1/events/0000000000000003/proof?checkpoint=-1", 400),
        (
            "/api/v1/events/0000000000000003/proof?checkpoint=99999999999999999999",
            400,
        ),
        (
            "/api/v1/events/0000000000000003/proof?checkpoint=1&checkpoint=2",
            400,
        ),
        ("/api/v1/events/0000000000000003/proof?size=3", 400),
        ("/api/v1/events/0000000000000003/proof?checkpoint=11", 404),
        ("/api/v1/events/000000000000000c/proof?checkpoint=10", 400),
        ("/api/v1/events/000000000000000c/proof", 409),
        ("/api/v1/events/0000000000000099/proof", 404),
        ("/api/v1/events/0000000000000000/proof", 404),
        ("/api/v1/events/not-an-id/proof", 404),
        ("/api/v1/checkpoints?limit=0", 400),
        ("/api/v1/checkpoints?limit=1001", 400),
        ("/api/v1/checkpoints/consistency", 400),
        ("/api/v1/checkpoints/consistency?from=11&to=10", 400),
        (
            "/api/v1/checkpoints/consistency?from=1&to=18446744073709551615",
            400,
        ),
        ("/api/v1/checkpoints/18446744073709551616", 400),
        ("/api/v1/checkpoints/7", 404),
    ] {
        let (status, body) = hub.get(path, Some(&viewer)).await;
        assert_eq!(status.as_u16(), want, "{path}: {body}");
        assert!(
            body["error"]["message"].as_str().is_some(),
            "{path}: {body}"
        );
    }
    // signing is an admin's call
    let (status, _) = hub
        .post("/api/v1/checkpoints", Some(&viewer), "application/json", "")
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    hub.stop().await;
}

/// What someone with write access to a stopped hub's data dir does to hide the newest events:
/// drop their blocks, set the chain head back to the last kept event, drop the Merkle nodes and
/// the signed checkpoints that mention them, fix the counts, and let the index be rebuilt.
fn cut_after(dir: &std::path::Path, keep: u64) {
    let db = trailhub::store::open_db(&dir.join("db"), 8 << 20).expect("open store");
    let log = db.open_tree(keys::TREE_LOG).expect("log");
    let mut kept_hash = None;
    for item in log.scan_prefix([keys::BLOCK]) {
        let (k, v) = item.expect("read");
        let first = keys::decode_u64(&k[1..]);
        let view = BlockView::parse(&v).expect("block");
        let last = first + view.count as u64 - 1;
        if first > keep {
            log.remove(k).expect("remove");
        } else {
            assert!(last <= keep, "cut at a block boundary");
            if last == keep {
                kept_hash = Some(view.hash);
            }
        }
    }
    let mut head = keep.to_be_bytes().to_vec();
    head.extend_from_slice(&kept_hash.expect("the kept block"));
    log.insert(keys::meta_key(keys::META_HEAD), head)
        .expect("head");
    for item in log.scan_prefix([keys::TREE_NODE]) {
        let (k, _) = item.expect("read");
        let level = u32::from(k[1]);
        let index = keys::decode_u64(&k[2..]);
        if (index + 1) << level > keep {
            log.remove(k).expect("remove");
        }
    }
    for item in log.scan_prefix([keys::COUNT]) {
        let (k, _) = item.expect("read");
        log.insert(k, &keep.to_be_bytes()[..]).expect("count");
    }
    db.drop_tree(keys::TREE_INDEX).expect("index");
    db.open_tree(keys::TREE_CHECKPOINTS)
        .expect("checkpoints")
        .clear()
        .expect("clear");
    db.flush().expect("flush");
}

fn write_file(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[tokio::test]
async fn cutting_off_the_newest_events_is_caught_by_a_checkpoint_kept_elsewhere() {
    let hub = TestHub::start().await;
    fill(&hub, "t", 300, 100).await;
    sign(&hub).await;
    let (_, kept_elsewhere) = hub.get_text("/api/v1/checkpoints/latest").await;
    let key = public_key(&hub).await.vkey();
    let dir = hub.stop().await;
    let outside = tempfile::tempdir().expect("tempdir");
    let file = write_file(outside.path(), "checkpoint.txt", &kept_elsewhere);

    let (ok, out) = cli(dir.path(), &["verify", "--against", &file]);
    assert!(ok, "the untouched log extends its checkpoint: {out}");

    cut_after(dir.path(), 200);
    // the chain and the tree alone are consistent again: that is the attack
    let (ok, out) = cli(dir.path(), &["verify"]);
    assert!(ok, "{out}");
    // the checkpoint kept elsewhere is not
    let (ok, out) = cli(dir.path(), &["verify", "--against", &file, "--key", &key]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("covers 300 events but the log holds 200"),
        "{out}"
    );

    // a checkpoint signed by another key is refused, not trusted
    let other = trailhub::evidence::note::NoteSigner::generate("someone/else").expect("key");
    let (ok, out) = cli(
        dir.path(),
        &[
            "verify",
            "--against",
            &file,
            "--key",
            &other.verifier().vkey(),
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("is not one signed by the key"), "{out}");
}

#[tokio::test]
async fn a_history_rewritten_end_to_end_is_caught_by_a_published_checkpoint() {
    let keys_dir = tempfile::tempdir().expect("tempdir");
    let published = tempfile::tempdir().expect("tempdir");
    let key_file = keys_dir.path().join("signing.key");
    let settings = |s: &mut trailhub::config::Settings| {
        s.checkpoints.signing_key_file = Some(key_file.clone());
        s.checkpoints.publish_dir = Some(published.path().to_path_buf());
    };
    let hub = TestHub::start_with(settings).await;
    let events = fill(&hub, "r", 120, 60).await;
    sign(&hub).await;
    let key = public_key(&hub).await.vkey();
    hub.stop().await;
    let file = published
        .path()
        .join(format!("checkpoint-{:020}.txt", 120))
        .display()
        .to_string();
    assert!(std::path::Path::new(&file).exists(), "published on signing");

    // The attacker holds the data dir and the signing key, and writes a whole new history with
    // one event changed: every hash in it is consistent and every checkpoint it signs verifies.
    let mut altered = events.clone();
    altered[57]["actor"]["id"] = Value::from("someone-else");
    let forged = TestHub::start_with(|s| {
        s.checkpoints.signing_key_file = Some(key_file.clone());
    })
    .await;
    for chunk in altered.chunks(60) {
        forged.ingest(chunk).await;
    }
    sign(&forged).await;
    let dir = forged.stop().await;
    let (ok, out) = cli(
        dir.path(),
        &[
            "verify",
            "--signing-key-file",
            &key_file.display().to_string(),
        ],
    );
    assert!(ok, "the forgery is self-consistent: {out}");
    let (ok, out) = cli(dir.path(), &["verify", "--against", &file, "--key", &key]);
    assert!(!ok, "{out}");
    assert!(out.contains("the history it covers was rewritten"), "{out}");
}

#[tokio::test]
async fn a_flipped_byte_in_a_merkle_node_or_a_stored_checkpoint_is_reported() {
    let hub =
        TestHub::start_with(|s| s.checkpoints.interval = std::time::Duration::from_secs(86_400))
            .await;
    fill(&hub, "n", 600, 300).await;
    sign(&hub).await;
    let dir = hub.stop().await;
    let (ok, out) = cli(dir.path(), &["verify"]);
    assert!(ok, "{out}");
    assert!(out.contains("1 signed checkpoint(s) matched"), "{out}");

    let flip = |tree: &str, key: Vec<u8>| {
        let db = trailhub::store::open_db(&dir.path().join("db"), 8 << 20).expect("open");
        let t = db.open_tree(tree).expect("tree");
        let mut v = t.get(&key).expect("read").expect("present").to_vec();
        v[3] ^= 0x01;
        t.insert(&key, v).expect("write");
        db.flush().expect("flush");
    };
    flip(keys::TREE_LOG, keys::node_key(8, 1).to_vec());
    let (ok, out) = cli(dir.path(), &["verify"]);
    assert!(!ok, "{out}");
    assert!(out.contains("Merkle node over events"), "{out}");
    flip(keys::TREE_LOG, keys::node_key(8, 1).to_vec());

    let checkpoints = {
        let db = trailhub::store::open_db(&dir.path().join("db"), 8 << 20).expect("open");
        let t = db.open_tree(keys::TREE_CHECKPOINTS).expect("tree");
        t.iter().keys().next().expect("one").expect("key").to_vec()
    };
    flip(keys::TREE_CHECKPOINTS, checkpoints);
    let (ok, out) = cli(dir.path(), &["verify"]);
    assert!(!ok, "{out}");
    assert!(out.contains("not signed by the key"), "{out}");
}

/// docs/INTEGRITY.md promises a third party can check a proof with a 30-line script and the
/// hub's public key alone: this runs that very script (python3 with `cryptography`, which
/// `.ci/run` installs) on what a live hub serves.
#[tokio::test]
async fn the_documented_script_verifies_a_proof() {
    let doc = include_str!("../../docs/INTEGRITY.md");
    let script = doc
        .split("<!-- verify_proof.py -->\n```python\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("the script is in the doc");
    assert!(script.lines().count() <= 30, "a 30-line script");
    let hub = TestHub::start().await;
    fill(&hub, "s", 200, 100).await;
    sign(&hub).await;
    let vkey = public_key(&hub).await.vkey();
    let work = tempfile::tempdir().expect("tempdir");
    let script_path = work.path().join("verify_proof.py");
    std::fs::write(&script_path, script).expect("write");
    let run = |event: &[u8], proof: &str| {
        std::fs::write(work.path().join("event.json"), event).expect("write");
        std::fs::write(work.path().join("proof.json"), proof).expect("write");
        let out = std::process::Command::new("python3")
            .arg(&script_path)
            .arg(&vkey)
            .arg(work.path().join("event.json"))
            .arg(work.path().join("proof.json"))
            .output()
            .expect("python3 runs (install python3 and python3-cryptography)");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    for seq in [1u64, 150, 200] {
        let id = format!("{seq:016x}");
        let (_, event) = hub.get_text(&format!("/api/v1/events/{id}")).await;
        let (_, proof) = hub.get_text(&format!("/api/v1/events/{id}/proof")).await;
        let (ok, out) = run(event.as_bytes(), &proof);
        assert!(ok, "{id}: {out}");
        assert!(
            out.contains(&format!("ok: event {id} is leaf {}", seq - 1)),
            "{out}"
        );
        let mut edited = event.clone().into_bytes();
        let at = edited.len() / 2;
        edited[at] ^= 0x01;
        let (ok, out) = run(&edited, &proof);
        assert!(!ok, "an edited event must fail: {out}");
        assert!(out.contains("NOT in the signed log"), "{out}");
    }
    hub.stop().await;
}

/// An export with `proofs=true` is an evidence bundle: `trailhub verify --export` checks it with
/// the public key alone (no data dir, no hub), and any edit of an event in it fails.
#[tokio::test]
async fn an_exported_slice_with_proofs_verifies_offline_and_fails_after_any_edit() {
    let hub = TestHub::start().await;
    fill(&hub, "x", 700, 350).await;
    let key = public_key(&hub).await.vkey();
    let (status, body) = hub
        .get("/api/v1/events/export?format=csv&proofs=true", Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = hub
        .get("/api/v1/events/export?proofs=yes", Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // a slice: one actor's events
    let (status, bundle) = hub
        .get_text("/api/v1/events/export?format=ndjson&proofs=true&actor=u3")
        .await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<&str> = bundle.lines().collect();
    let header: Value = serde_json::from_str(lines[0]).expect("header");
    assert_eq!(header["trailhub_bundle"], 1);
    // the export's own audit record is in the log, and the checkpoint covers it
    assert_eq!(header["tree_size"], 701);
    let slice = lines.len() - 1;
    assert!(slice > 10 && slice < 700, "{slice} events of one actor");
    // each line carries the event's exact bytes, as the API serves them
    let first: Value = serde_json::from_str(lines[1]).expect("line");
    let id = serde_json::from_str::<Value>(first["event"].as_str().expect("event")).expect("json")
        ["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (_, served) = hub.get_text(&format!("/api/v1/events/{id}")).await;
    assert_eq!(first["event"].as_str(), Some(served.as_str()));
    hub.stop().await;

    let outside = tempfile::tempdir().expect("tempdir");
    let nowhere = tempfile::tempdir().expect("tempdir");
    let file = write_file(outside.path(), "bundle.ndjson", &bundle);
    let (ok, out) = cli(
        nowhere.path(),
        &["verify", "--export", &file, "--key", &key],
    );
    assert!(ok, "{out}");
    assert!(out.contains(&format!("ok: {slice} events of")), "{out}");

    // an actor renamed in one event, a proof hash changed, an event dropped from the middle of
    // the header's claim: each fails
    let edits = [
        bundle.replacen("\\\"u3\\\"", "\\\"u4\\\"", 1),
        {
            let at = bundle.find("\"proof\":[\"").expect("proof") + 10;
            let mut b = bundle.clone().into_bytes();
            b[at] = if b[at] == b'0' { b'1' } else { b'0' };
            String::from_utf8(b).expect("utf8")
        },
        bundle.replacen("\"tree_size\":701", "\"tree_size\":700", 1),
    ];
    for (i, edited) in edits.iter().enumerate() {
        assert_ne!(edited, &bundle, "edit {i} changed something");
        let file = write_file(outside.path(), &format!("edited-{i}.ndjson"), edited);
        let (ok, out) = cli(
            nowhere.path(),
            &["verify", "--export", &file, "--key", &key],
        );
        assert!(!ok, "edit {i} passed: {out}");
        assert!(out.contains("BROKEN"), "{out}");
    }
}

/// What `verify` reads from outside is bounded: a checkpoint file, a key file and a bundle line
/// past their limits are refused with an error naming the limit, not read into memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_oversized_checkpoint_key_and_bundle_files() {
    let hub = TestHub::start().await;
    fill(&hub, "b", 20, 20).await;
    let key = public_key(&hub).await.vkey();
    let dir = hub.stop().await;
    let outside = tempfile::tempdir().expect("tempdir");

    let big_checkpoint = write_file(outside.path(), "huge.txt", &"x".repeat(65 * 1024));
    let (ok, out) = cli(
        dir.path(),
        &["verify", "--against", &big_checkpoint, "--key", &key],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("larger than 65536 bytes"), "{out}");

    let big_key = write_file(outside.path(), "huge.vkey", &"k".repeat(5 * 1024));
    let (ok, out) = cli(dir.path(), &["verify", "--key", &big_key]);
    assert!(!ok, "{out}");
    assert!(out.contains("larger than 4096 bytes"), "{out}");

    // a bundle whose header line never ends: 17 MiB without a newline
    let endless = write_file(outside.path(), "endless.ndjson", &"{".repeat(17 << 20));
    let (ok, out) = cli(
        outside.path(),
        &["verify", "--export", &endless, "--key", &key],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("longer than 16777216 bytes"), "{out}");
}
