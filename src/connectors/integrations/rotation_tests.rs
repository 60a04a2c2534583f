//! Tests of `rotation`.
use super::*;
use crate::config::Secret;

fn tree() -> sled::Tree {
    let db = sled::Config::new()
        .temporary(true)
        .open()
        .expect("temporary db");
    db.open_tree("integrations").expect("tree")
}

/// A record of `id` whose credentials (`{"token": ...}`) are sealed under `key`.
fn put(tree: &sled::Tree, id: &str, key: &MasterKey) {
    let record = IntegrationRecord {
        v: 1,
        id: id.into(),
        name: format!("name-{id}"),
        connector: "okta".into(),
        config: BTreeMap::new(),
        credential_names: vec!["token".into()],
        sealed_credentials: hex::encode(key.seal(br#"{"token":"t0ken-value"}"#, id)),
        schedule: None,
        backfill: None,
        idle_backoff: None,
        requests_per_minute: None,
        paused: false,
        allow_insecure_http: false,
        filters: Default::default(),
        created_at: 0,
        updated_at: 0,
    };
    tree.insert(
        super::super::record_key(id),
        serde_json::to_vec(&record).expect("serialises"),
    )
    .expect("insert");
}

fn opens_all(tree: &sled::Tree, key: &MasterKey) -> bool {
    sealed_records(tree)
        .expect("records")
        .iter()
        .all(|r| open_record(key, r).is_ok_and(|p| p.as_slice() == br#"{"token":"t0ken-value"}"#))
}

fn key_file(dir: &Path, key: &MasterKey) -> PathBuf {
    let path = dir.join("master.key");
    secrets::write_key_file(&path, key).expect("written");
    path
}

/// Runs the command's first two steps: what a kill right after the batch leaves.
fn committed(tree: &sled::Tree, old: &MasterKey, source: &KeySource, default: &Path) -> Plan {
    let (key_file, pending_file) = destination(source, None, default).expect("destination");
    let plan = prepare(tree, old, source, key_file, pending_file).expect("prepared");
    commit(tree, &plan).expect("committed");
    plan
}

#[test]
fn the_key_check_needs_one_credential_to_open() {
    let tree = tree();
    let (a, b) = (MasterKey::generate(), MasterKey::generate());
    assert_eq!(
        check_key(&tree, &a).expect("check"),
        KeyCheck::NothingSealed
    );
    put(&tree, "int_1", &a);
    assert_eq!(check_key(&tree, &a).expect("check"), KeyCheck::Opens);
    assert_eq!(
        check_key(&tree, &b).expect("check"),
        KeyCheck::OpensNone {
            sealed: 1,
            example: "name-int_1 (int_1)".into()
        }
    );
    // one set again under b after a's loss: both keys open something
    put(&tree, "int_2", &b);
    assert_eq!(check_key(&tree, &b).expect("check"), KeyCheck::Opens);
}

#[test]
fn a_credential_that_does_not_open_stops_the_rotation_before_any_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = tree();
    let (a, b) = (MasterKey::generate(), MasterKey::generate());
    put(&tree, "int_1", &a);
    put(&tree, "int_2", &b);
    let source = KeySource::File(key_file(dir.path(), &a));
    let sealed = |t: &sled::Tree| -> Vec<String> {
        sealed_records(t)
            .expect("records")
            .into_iter()
            .map(|r| r.sealed_credentials)
            .collect()
    };
    let before = sealed(&tree);
    let (key_file, pending_file) =
        destination(&source, None, &dir.path().join("master.key")).expect("destination");
    let err = prepare(&tree, &a, &source, key_file, pending_file.clone())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("name-int_2 (int_2)"), "{err}");
    assert!(!err.to_string().contains("int_1"), "{err}");
    assert!(pending(&tree).expect("read").is_none());
    assert!(!pending_file.exists());
    assert_eq!(sealed(&tree), before);
}

#[test]
fn killed_after_the_batch_the_rename_is_finished_from_the_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = tree();
    let old = MasterKey::generate();
    put(&tree, "int_1", &old);
    put(&tree, "int_2", &old);
    let path = key_file(dir.path(), &old);
    let source = KeySource::File(path.clone());
    let plan = committed(&tree, &old, &source, &path);
    let marker = pending(&tree).expect("read").expect("pending");
    assert_eq!(marker.new_fingerprint, plan.new_key.fingerprint());
    assert_eq!(marker.resealed, 2);
    assert!(opens_all(&tree, &plan.new_key));
    assert_eq!(
        check_key(&tree, &old).expect("check"),
        KeyCheck::OpensNone {
            sealed: 2,
            example: "name-int_1 (int_1)".into()
        }
    );
    // the key file still holds the old key: the marker says the new one waits in `.new`
    assert!(matches!(diagnose(&marker, &source), Ok(Resume::Install)));
    install(&marker).expect("installed");
    let copy = marker.old_copy.clone().expect("a copy of the old key");
    assert_eq!(
        secrets::read_key_file(&copy)
            .expect("read")
            .map(|k| k.fingerprint()),
        Some(old.fingerprint())
    );
    assert_eq!(
        source.read().expect("read").map(|k| k.fingerprint()),
        Some(plan.new_key.fingerprint())
    );
    assert!(!marker.pending_file.exists());
    // killed again before the marker went: the key in place says the rest is done
    install(&marker).expect("a second time changes nothing");
    assert!(matches!(diagnose(&marker, &source), Ok(Resume::Installed)));
    complete(&tree, &marker).expect("completed");
    assert!(pending(&tree).expect("read").is_none());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [&path, &copy] {
            let mode = std::fs::metadata(p).expect("exists").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", p.display());
        }
    }
}

#[test]
fn a_new_key_lost_before_it_was_installed_is_rolled_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = tree();
    let old = MasterKey::generate();
    put(&tree, "int_1", &old);
    let path = key_file(dir.path(), &old);
    let source = KeySource::File(path.clone());
    let plan = committed(&tree, &old, &source, &path);
    std::fs::remove_file(&plan.marker.pending_file).expect("the new key deleted");
    assert!(matches!(
        diagnose(&plan.marker, &source),
        Ok(Resume::RollBack)
    ));
    rollback(&tree, &plan.marker).expect("rolled back");
    assert!(opens_all(&tree, &old));
    assert!(pending(&tree).expect("read").is_none());
    // given a third key, nothing is guessed
    let plan = committed(&tree, &old, &source, &path);
    std::fs::remove_file(&plan.marker.pending_file).expect("deleted");
    let other = KeySource::Env(Secret::new(MasterKey::generate().encoded().expose()));
    assert!(matches!(
        diagnose(&plan.marker, &other),
        Err(RotationError::KeyLost { .. })
    ));
}

#[test]
fn a_key_from_the_environment_is_handed_over_from_the_pending_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = tree();
    let old = MasterKey::generate();
    put(&tree, "int_1", &old);
    let source = KeySource::Env(old.encoded());
    let default = dir.path().join("master.key");
    let plan = committed(&tree, &old, &source, &default);
    assert_eq!(plan.marker.key_file, None);
    assert_eq!(plan.marker.pending_file, dir.path().join("master.key.new"));
    assert!(
        !default.exists(),
        "no key file is made for an environment key"
    );
    match diagnose(&plan.marker, &source) {
        Ok(Resume::HandOver(k)) => assert_eq!(k.fingerprint(), plan.new_key.fingerprint()),
        _ => panic!("the new key is to be handed over"),
    }
    // the admin restarted with the new key: only the marker and the file are left
    let given = KeySource::Env(plan.new_key.encoded());
    assert!(matches!(
        diagnose(&plan.marker, &given),
        Ok(Resume::Installed)
    ));
    complete(&tree, &plan.marker).expect("completed");
    assert!(!plan.marker.pending_file.exists());
    assert!(opens_all(&tree, &plan.new_key));
}

#[test]
fn a_new_key_file_elsewhere_must_not_exist_and_replaces_the_old_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tree = tree();
    let old = MasterKey::generate();
    put(&tree, "int_1", &old);
    let path = key_file(dir.path(), &old);
    let source = KeySource::File(path.clone());
    let elsewhere = dir.path().join("elsewhere.key");
    std::fs::write(&elsewhere, "x").expect("write");
    assert!(matches!(
        destination(&source, Some(&elsewhere), &path),
        Err(RotationError::DestinationExists(_))
    ));
    std::fs::remove_file(&elsewhere).expect("remove");
    let (key_file, pending_file) =
        destination(&source, Some(&elsewhere), &path).expect("destination");
    let plan = prepare(&tree, &old, &source, key_file, pending_file).expect("prepared");
    commit(&tree, &plan).expect("committed");
    assert!(matches!(
        diagnose(&plan.marker, &source),
        Ok(Resume::Install)
    ));
    install(&plan.marker).expect("installed");
    assert!(!path.exists(), "the old file is kept only as its copy");
    assert!(plan.marker.old_copy.as_ref().is_some_and(|c| c.exists()));
    assert_eq!(
        secrets::read_key_file(&elsewhere)
            .expect("read")
            .map(|k| k.fingerprint()),
        Some(plan.new_key.fingerprint())
    );
    // the hub still pointed at the old path finds the new key where it went
    assert!(matches!(
        diagnose(&plan.marker, &source),
        Ok(Resume::Installed)
    ));
}

#[test]
fn forgetting_touches_only_what_does_not_open() {
    let tree = tree();
    let (a, b) = (MasterKey::generate(), MasterKey::generate());
    put(&tree, "int_1", &a);
    put(&tree, "int_2", &b);
    let listed = forget_unopenable(&tree, Some(&b), false).expect("listed");
    assert_eq!(listed, vec!["name-int_1 (int_1)".to_string()]);
    assert_eq!(
        sealed_count(&tree).expect("count"),
        2,
        "a listing changes nothing"
    );
    forget_unopenable(&tree, Some(&b), true).expect("forgotten");
    assert_eq!(sealed_count(&tree).expect("count"), 1);
    assert!(opens_all(&tree, &b));
}
