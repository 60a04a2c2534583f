//! The key history's tests: round trips, trust, the key in force by size, and the
//! refusal of a foreign key or an altered history

use super::*;
use crate::evidence::note::NoteSigner;

const ORIGIN: &str = "trailhub.example/log";

fn signer(seed: u8) -> NoteSigner {
    NoteSigner::from_seed(ORIGIN, &[seed; 32]).expect("valid name")
}

fn handover(old: &NoteSigner, new: &NoteSigner, size: u64) -> String {
    let mut note = Checkpoint::new(ORIGIN, size, [size as u8; 32])
        .and_then(|c| c.with_extension("time 2026-01-01T00:00:00Z"))
        .and_then(|c| c.with_extension(&format!("{HANDOVER_PREFIX}{}", new.verifier().vkey())))
        .and_then(|c| c.sign(old))
        .expect("valid checkpoint");
    note.sign(new);
    note.to_string()
}

fn pending() -> PendingHandover {
    PendingHandover {
        key_file: "/keys/signing.key".into(),
        pending_file: "/keys/signing.key.new".into(),
        old_copy: "/keys/signing.key.old-1".into(),
        replaced: None,
        seeded: true,
        started_at: 0,
    }
}

/// A history of keys 1 (from 0), 2 (from 10) and 3 (from 25), stored in a fresh tree.
fn three_keys() -> (sled::Db, Keyring, [NoteSigner; 3]) {
    let db = sled::Config::new().temporary(true).open().expect("db");
    let keys = [signer(1), signer(2), signer(3)];
    let keyring = Keyring::default()
        .or_original(&keys[0].verifier())
        .handed_over(
            keys[1].verifier(),
            10,
            handover(&keys[0], &keys[1], 10),
            pending(),
        )
        .finished()
        .handed_over(
            keys[2].verifier(),
            25,
            handover(&keys[1], &keys[2], 25),
            pending(),
        )
        .finished();
    let value = keyring.to_value().expect("encodes").expect("not empty");
    db.insert(KEYRING_KEY, value).expect("insert");
    (db, keyring, keys)
}

#[test]
fn a_history_round_trips_and_an_empty_one_is_the_current_key() {
    let db = sled::Config::new().temporary(true).open().expect("db");
    let empty = Keyring::load(&db).expect("nothing stored");
    assert!(empty.is_empty() && empty.pending().is_none());
    assert_eq!(empty.to_value().expect("encodes"), None);
    let current = signer(1).verifier();
    let original = empty.clone().or_original(&current);
    assert_eq!(original.entries().len(), 1);
    assert_eq!(original.entries()[0].from_size(), 0);
    assert_eq!(original.entries()[0].handover(), None);
    assert_eq!(empty.trusted(&current), vec![current.clone()]);

    let (db, keyring, keys) = three_keys();
    let loaded = Keyring::load(&db).expect("loads");
    assert_eq!(loaded, keyring);
    let sizes: Vec<u64> = loaded.entries().iter().map(KeyEntry::from_size).collect();
    assert_eq!(sizes, [0, 10, 25]);
    assert_eq!(
        loaded.newest().map(KeyEntry::vkey),
        Some(keys[2].verifier().vkey())
    );
    // a marker survives the round trip with the entries
    let marked = loaded.handed_over(
        signer(4).verifier(),
        30,
        handover(&keys[2], &signer(4), 30),
        pending(),
    );
    db.insert(KEYRING_KEY, marked.to_value().expect("ok").expect("some"))
        .expect("insert");
    let reloaded = Keyring::load(&db).expect("loads");
    assert_eq!(reloaded.pending(), Some(&pending()));
    assert_eq!(reloaded, marked);
    // rolled back, the history is as before; a first rotation rolled back leaves none
    let mut not_seeded = pending();
    not_seeded.seeded = false;
    let marked = keyring.handed_over(
        signer(4).verifier(),
        30,
        handover(&keys[2], &signer(4), 30),
        not_seeded,
    );
    assert_eq!(marked.rolled_back(), keyring);
    let first = Keyring::default()
        .or_original(&keys[0].verifier())
        .handed_over(
            keys[1].verifier(),
            10,
            handover(&keys[0], &keys[1], 10),
            pending(),
        );
    assert!(first.rolled_back().is_empty());
}

#[test]
fn every_key_is_trusted_and_the_key_in_force_goes_by_size() {
    let (_db, keyring, keys) = three_keys();
    let [k1, k2, k3] = [0, 1, 2].map(|i| keys[i].verifier());
    assert_eq!(
        keyring.trusted(&k3),
        vec![k1.clone(), k2.clone(), k3.clone()]
    );
    let in_force = |size| keyring.in_force(size).map(|e| e.verifier().clone());
    assert_eq!(in_force(0), Some(k1.clone()));
    assert_eq!(in_force(9), Some(k1.clone()));
    assert_eq!(in_force(10), Some(k2.clone()));
    assert_eq!(in_force(24), Some(k2.clone()));
    assert_eq!(in_force(25), Some(k3.clone()));
    assert_eq!(in_force(u64::MAX), Some(k3.clone()));
    // a hand-over's size is signed by both keys, the others by the key in force alone
    assert_eq!(keyring.signers_at(5), vec![k1.clone()]);
    assert_eq!(keyring.signers_at(10), vec![k2.clone(), k1.clone()]);
    assert_eq!(keyring.signers_at(11), vec![k2.clone()]);
    assert_eq!(keyring.signers_at(25), vec![k3.clone(), k2.clone()]);
    assert_eq!(keyring.signers_at(26), vec![k3.clone()]);
    // two rotations at one size: the later hand-over is the checkpoint of that size
    let k4 = signer(4);
    let twice = keyring.handed_over(k4.verifier(), 25, handover(&keys[2], &k4, 25), pending());
    assert_eq!(twice.signers_at(25), vec![k4.verifier(), k3.clone()]);
    assert_eq!(twice.in_force(24).map(|e| e.verifier()), Some(&k2));
    // standing
    assert_eq!(keyring.standing(&k3), KeyStanding::Newest);
    assert_eq!(keyring.standing(&k1), KeyStanding::Retired { until: 10 });
    assert_eq!(keyring.standing(&k2), KeyStanding::Retired { until: 25 });
    assert_eq!(Keyring::default().standing(&k1), KeyStanding::Unrecorded);
    // an auditor holding any key of the chain trusts them all
    for held in [&k1, &k2, &k3] {
        assert_eq!(keyring.trusted_from(held).expect("in the chain").len(), 3);
    }
}

#[test]
fn a_foreign_key_is_neither_trusted_nor_standing() {
    let (_db, keyring, _) = three_keys();
    // same origin, another key: not one of the log's
    let foreign = signer(9).verifier();
    assert_eq!(keyring.standing(&foreign), KeyStanding::Foreign);
    assert!(!keyring.trusted(&foreign).contains(&foreign));
    let err = keyring
        .trusted_from(&foreign)
        .expect_err("not in the chain");
    assert!(matches!(err, KeyringError::NotInHistory { .. }), "{err}");
    assert!(err.to_string().contains(&foreign.vkey()), "{err}");
}

#[test]
fn an_altered_history_is_refused_naming_the_broken_key() {
    let (db, keyring, keys) = three_keys();
    let stored = |k: &Keyring| -> serde_json::Value {
        serde_json::from_slice(&k.to_value().expect("ok").expect("some")).expect("json")
    };
    let refused = |value: &serde_json::Value| -> String {
        db.insert(KEYRING_KEY, serde_json::to_vec(value).expect("json"))
            .expect("insert");
        match Keyring::load(&db) {
            Err(e @ KeyringError::Broken { .. }) | Err(e @ KeyringError::Undecodable(_)) => {
                e.to_string()
            }
            other => panic!("{value}: {other:?}"),
        }
    };
    let good = stored(&keyring);
    // a key swapped in for the newest: its hand-over is not signed by it
    let mut swapped = good.clone();
    swapped["keys"][2]["public_key"] = signer(9).verifier().vkey().into();
    assert!(refused(&swapped).contains("key 2"));
    // a hand-over signed by the new key alone (the old key's signature dropped)
    let alone = Checkpoint::new(ORIGIN, 25, [25; 32])
        .and_then(|c| c.with_extension(&format!("{HANDOVER_PREFIX}{}", keys[2].verifier().vkey())))
        .and_then(|c| c.sign(&keys[2]))
        .expect("valid");
    let mut unsigned = good.clone();
    unsigned["keys"][2]["handover"] = alone.to_string().into();
    assert!(
        refused(&unsigned).contains("not by"),
        "{}",
        refused(&unsigned)
    );
    // a hand-over of another size, or naming another key
    let mut moved = good.clone();
    moved["keys"][2]["from_size"] = 26.into();
    assert!(refused(&moved).contains("size 25"));
    let mut other_name = good.clone();
    other_name["keys"][1]["handover"] = handover(&keys[0], &keys[2], 10).into();
    assert!(refused(&other_name).contains("key 1"));
    // no hand-over, a first key with one, a key listed twice, sizes going back
    let mut missing = good.clone();
    missing["keys"][1]["handover"] = serde_json::Value::Null;
    assert!(refused(&missing).contains("no hand-over"));
    let mut first = good.clone();
    first["keys"][0]["from_size"] = 1.into();
    assert!(refused(&first).contains("size 0"));
    let mut twice = good.clone();
    let listed = twice["keys"][0].clone();
    twice["keys"].as_array_mut().expect("array").push(listed);
    assert!(refused(&twice).contains("twice"));
    let mut back = good.clone();
    back["keys"][2]["from_size"] = 5.into();
    assert!(refused(&back).contains("before the key before it"));
    // not JSON, another version, no keys, an unknown field
    db.insert(KEYRING_KEY, b"{".as_slice()).expect("insert");
    assert!(matches!(
        Keyring::load(&db),
        Err(KeyringError::Undecodable(_))
    ));
    let mut v2 = good.clone();
    v2["v"] = 2.into();
    assert!(refused(&v2).contains("version"));
    assert!(refused(&serde_json::json!({"v": 1, "keys": []})).contains("no key"));
    let mut extra = good.clone();
    extra["trust_me"] = true.into();
    refused(&extra);
    // the listing the API serves is checked the same way
    let mut listing = good["keys"].clone();
    assert_eq!(Keyring::from_listing(&listing).expect("good"), keyring);
    listing[0]["added_later"] = true.into();
    assert_eq!(Keyring::from_listing(&listing).expect("lenient"), keyring);
    assert!(Keyring::from_listing(&swapped["keys"]).is_err());
    assert!(Keyring::from_listing(&serde_json::json!([])).is_err());
}
