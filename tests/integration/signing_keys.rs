//! `trailhub keys rotate-signing` end to end: the log keeps its name, the new key is handed over
//! by a checkpoint both keys sign, a client holding only the old key can follow the hand-over
//! to the new one and still prove that the log only grew across the rotation, and the hub
//! refuses a key file holding a key its history does not end with.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use trailhub::checkpoints::keyring::HANDOVER_PREFIX;
use trailhub::checkpoints::Keyring;
use trailhub::config::{Secret, Settings};
use trailhub::evidence::checkpoint::{Checkpoint, CheckpointError};
use trailhub::evidence::merkle::verify_consistency;
use trailhub::evidence::note::{Note, NoteError, NoteSigner, NoteVerifier};
use trailhub::server::RunningHub;

use crate::support::data::{hex_hashes, ndjson, varied_events};
use crate::support::hub::*;

/// Checkpoints only when asked (and at shutdown), so that the history holds what the test signs.
fn quiet(s: &mut Settings) {
    s.checkpoints.interval = Duration::from_secs(86_400);
    s.checkpoints.every_events = 1_000_000;
}

async fn ingest(hub: &RunningHub, prefix: &str, n: usize) {
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/events", hub.url()))
        .bearer_auth(ADMIN)
        .header("content-type", "application/x-ndjson")
        .body(ndjson(&varied_events(prefix, n, 3_600, 5)))
        .send()
        .await
        .expect("ingest");
    assert_eq!(
        resp.status(),
        200,
        "{}",
        resp.text().await.unwrap_or_default()
    );
}

/// Signs a checkpoint now; its tree size.
async fn sign(hub: &RunningHub) -> u64 {
    let (status, body) = Api::new(hub)
        .json(reqwest::Method::POST, "/api/v1/checkpoints", None)
        .await;
    assert!(status == 201 || status == 200, "{status}: {body}");
    body["size"].as_u64().expect("size")
}

/// The signed note of the checkpoint of `size`, as served.
async fn note_of(hub: &RunningHub, size: u64) -> String {
    let (status, text) = Api::new(hub)
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/checkpoints/{size}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{text}");
    text
}

fn vkey(v: &Value) -> NoteVerifier {
    NoteVerifier::from_vkey(v.as_str().expect("a vkey")).expect("a verifier key")
}

/// The `new key: <vkey>` line the command prints.
fn printed_key(out: &str, label: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no {label:?} line in: {out}"))
        .trim()
        .to_string()
}

fn hub_settings(dir: &Path) -> Settings {
    let mut s = Settings::for_data_dir(dir);
    s.admin_token = Some(Secret::new(ADMIN));
    s.cache_mb = 16;
    s.listen = "127.0.0.1:0".parse().expect("address");
    quiet(&mut s);
    s
}

#[tokio::test]
async fn a_rotated_signing_key_is_handed_over_and_the_log_stays_provable() {
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path();
    let hub = start_hub_with(dir, quiet).await;
    ingest(&hub, "before", 40).await;
    let before_size = sign(&hub).await;
    let before = note_of(&hub, before_size).await;
    let listing = Api::new(&hub).get("/api/v1/checkpoints").await;
    let old = vkey(&listing["public_key"]);
    let origin = listing["origin"].as_str().expect("origin").to_string();
    // never rotated: one key, the current one, from the start
    assert_eq!(
        listing["keys"],
        serde_json::json!([{"public_key": old.vkey(), "from_size": 0, "handover": null}])
    );

    // the hub holds the data dir: the command says to stop it and changes nothing
    let (ok, out) = cli(dir, &["keys", "rotate-signing"]);
    assert!(!ok, "{out}");
    assert!(out.contains("stop it first"), "{out}");
    hub.stop().await.expect("clean stop");

    let (ok, out) = cli(dir, &["keys", "rotate-signing"]);
    assert!(ok, "{out}");
    let new = NoteVerifier::from_vkey(&printed_key(&out, "new key:")).expect("vkey");
    assert_eq!(printed_key(&out, "old key:"), old.vkey());
    assert_eq!(new.name(), origin, "the log keeps its name");
    assert_ne!(new.key_id(), old.key_id());
    let skey_file = std::fs::read_to_string(dir.join("signing.key")).expect("key file");
    assert!(
        !out.contains(skey_file.trim()),
        "the private key is never printed"
    );
    assert!(!out.contains("PRIVATE+KEY"), "{out}");

    let published = tempfile::tempdir().expect("tempdir");
    let publish_dir = published.path().to_path_buf();
    let hub = start_hub_with(dir, move |s| {
        quiet(s);
        s.checkpoints.publish_dir = Some(publish_dir);
    })
    .await;
    ingest(&hub, "after", 25).await;
    let newest_size = sign(&hub).await;
    let newest = note_of(&hub, newest_size).await;
    let listing = Api::new(&hub).get("/api/v1/checkpoints").await;
    assert_eq!(
        vkey(&listing["public_key"]),
        new,
        "public_key is the key signing now"
    );

    // the listing names both keys, the second with its hand-over
    let keys = listing["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{listing:#}");
    assert_eq!(vkey(&keys[0]["public_key"]), old);
    assert_eq!(keys[0]["from_size"], 0);
    assert!(keys[0]["handover"].is_null());
    assert_eq!(vkey(&keys[1]["public_key"]), new);
    let handover_size = keys[1]["from_size"].as_u64().expect("from_size");
    assert!(
        (before_size..newest_size).contains(&handover_size),
        "{handover_size}"
    );
    let handover = keys[1]["handover"].as_str().expect("hand-over note");
    assert!(
        out.contains(handover),
        "the command printed the hand-over: {out}"
    );
    assert_eq!(note_of(&hub, handover_size).await, handover);
    // published where the hub's host cannot take it back, beside the checkpoints
    let file = published
        .path()
        .join(format!("handover-{handover_size:020}.txt"));
    assert_eq!(
        std::fs::read_to_string(&file).expect("the hand-over is published"),
        handover
    );

    // holding the old key: the hand-over verifies and names the new key
    let opened = Checkpoint::open(handover.as_bytes(), &origin, std::slice::from_ref(&old))
        .expect("the hand-over is signed by the old key");
    assert_eq!(opened.size(), handover_size);
    let named: Vec<&str> = opened
        .extensions()
        .iter()
        .filter_map(|l| l.strip_prefix(HANDOVER_PREFIX))
        .collect();
    assert_eq!(named, [new.vkey()]);
    // ... and is signed by the new key as well
    let both = [old.clone(), new.clone()];
    let parsed = Note::parse(handover.as_bytes()).expect("a note");
    assert_eq!(parsed.verify(&both).map(|k| k.len()), Ok(2));

    // the newest checkpoint verifies with the new key only
    let latest = Checkpoint::open(newest.as_bytes(), &origin, std::slice::from_ref(&new))
        .expect("signed by the new key");
    assert_eq!(latest.size(), newest_size);
    assert_eq!(
        Checkpoint::open(newest.as_bytes(), &origin, std::slice::from_ref(&old)),
        Err(CheckpointError::Note(NoteError::Unverified))
    );

    // a client holding the old key learns the new one from the listing, not the hub's word
    let chain = Keyring::from_listing(&listing["keys"]).expect("the hand-overs verify");
    let trusted = chain
        .trusted_from(&old)
        .expect("the old key is in the chain");
    assert!(trusted.contains(&new));

    // the log only grew across the rotation: the checkpoint kept before it is consistent
    // with the newest, signed by another key
    let pre = Checkpoint::open(before.as_bytes(), &origin, std::slice::from_ref(&old))
        .expect("the old checkpoint, by the old key");
    let proof = Api::new(&hub)
        .get(&format!(
            "/api/v1/checkpoints/consistency?from={before_size}&to={newest_size}"
        ))
        .await;
    verify_consistency(
        pre.size(),
        pre.root(),
        latest.size(),
        latest.root(),
        &hex_hashes(&proof["proof"]),
    )
    .expect("the consistency proof verifies");

    // the rotation is in the log it signs for, as an audit event after the hand-over
    let events = Api::new(&hub).get("/api/v1/events?limit=1000").await;
    let text = events.to_string();
    assert!(text.contains("signing_key.rotate"), "{events:#}");
    assert!(text.contains(&new.vkey()));
    hub.stop().await.expect("clean stop");

    // a key file swapped for another key of the same name is refused at start
    let key_path = dir.join("signing.key");
    let good = std::fs::read(&key_path).expect("key file");
    let swapped = NoteSigner::generate(&origin).expect("a key");
    std::fs::write(&key_path, format!("{}\n", *swapped.skey())).expect("write");
    let err = trailhub::server::start(hub_settings(dir))
        .await
        .err()
        .map(|e| e.to_string())
        .expect("refused");
    assert!(err.contains("never signed this log"), "{err}");
    assert!(err.contains(&new.vkey()), "{err}");
    // and so is the old key, restored from the copy the rotation kept
    let kept = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("signing.key.old-"))
        })
        .expect("the old key is kept");
    std::fs::copy(&kept, &key_path).expect("restore the old key");
    let err = trailhub::server::start(hub_settings(dir))
        .await
        .err()
        .map(|e| e.to_string())
        .expect("refused");
    assert!(err.contains("retired"), "{err}");
    std::fs::write(&key_path, good).expect("put the new key back");
    let hub = trailhub::server::start(hub_settings(dir))
        .await
        .expect("starts with the newest key");
    hub.stop().await.expect("clean stop");
}
