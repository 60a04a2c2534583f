//! `trailhub keys rotate-master` and the master key check at start: credentials re-sealed under
//! a new key still poll, the old key opens nothing, a wrong key stops the start with what to do,
//! and a rotation killed after its batch is finished by the next start

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use trailhub::config::{Secret, Settings};
use trailhub::connectors::integrations::rotation;
use trailhub::secrets::MasterKey;

use crate::support::emu::Emulator;
use crate::support::hub::*;
use crate::support::vendors::Slack;

/// What a finished command left.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs the binary on `data` with `args` (and `env`) until it exits; a hub that keeps serving
/// past `secs` is killed and fails the test.
fn trailhub(data: &Path, env: &[(&str, &OsStr)], args: &[&str], secs: u64) -> Ran {
    let mut child = Command::new(BIN)
        .args(args)
        .env("TRAILHUB_DATA_DIR", data)
        .env("TRAILHUB_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("TRAILHUB_ADMIN_TOKEN", ADMIN)
        .env("TRAILHUB_LOG", "warn")
        .env_remove("TRAILHUB_MASTER_KEY")
        .env_remove("TRAILHUB_MASTER_KEY_FILE")
        .env_remove("TRAILHUB_URL")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "trailhub {args:?} still running after {secs} s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    Ran {
        ok: status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn key_in(path: &Path) -> MasterKey {
    trailhub::secrets::read_key_file(path)
        .expect("a key file")
        .expect("exists")
}

/// The `master.key.old-<unix time>` files of `dir`.
fn kept_keys(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("master.key.old-"))
        })
        .collect()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

/// A hub on `dir` (key as `adjust` says) with one Slack integration that has polled 3 events.
async fn hub_with_integration(
    dir: &Path,
    emu: &Emulator,
    adjust: impl FnOnce(&mut Settings),
) -> String {
    emu.add_recent(3, 600);
    let hub = start_hub_with(dir, adjust).await;
    let api = Api::new(&hub);
    let id = api.create(emu.integration("slack-keys")).await;
    api.wait_for_events(&id, 3, 20).await;
    hub.stop().await.expect("stops");
    id
}

/// The hub polls the integration again: its credentials open (the emulator checks the token).
async fn polls_again(api: &Api, emu: &Emulator, id: &str) {
    emu.add_recent(2, 10);
    api.poll_now(id).await;
    let events = api.wait_for_events(id, 5, 20).await;
    assert_eq!(unique_source_ids(&events), emu.ids());
    let v = api.integration(id).await;
    assert_eq!(v["last_error"], Value::Null, "{v}");
}

/// The `trailhub` integration's events of `event_type`.
async fn audit_events(api: &Api, event_type: &str) -> Vec<Value> {
    api.events("trailhub")
        .await
        .into_iter()
        .filter(|e| e["event_type"] == event_type)
        .collect()
}

fn refused_start(dir: &Path, key: Option<&str>) -> String {
    let mut settings = Settings::for_data_dir(dir);
    settings.admin_token = Some(Secret::new(ADMIN));
    settings.master_key = key.map(Secret::new);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(trailhub::server::start(settings)) {
        Ok(_) => panic!("the hub started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_master_reseals_the_credentials_and_the_old_key_opens_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Slack, "tok-rotate-5c1e", 50).await;
    let id = hub_with_integration(dir.path(), &emu, |_| {}).await;
    let key_path = dir.path().join("master.key");
    let old = key_in(&key_path);
    let old_hex = std::fs::read_to_string(&key_path)
        .expect("key")
        .trim()
        .to_string();

    // not under a running hub
    let hub = start_hub(dir.path()).await;
    let ran = trailhub(dir.path(), &[], &["keys", "rotate-master"], 30);
    assert!(!ran.ok, "{}", ran.stdout);
    assert!(
        ran.stderr.contains("held by a running hub: stop it first"),
        "{}",
        ran.stderr
    );
    hub.stop().await.expect("stops");
    assert_eq!(key_in(&key_path).fingerprint(), old.fingerprint());

    let ran = trailhub(dir.path(), &[], &["keys", "rotate-master"], 60);
    assert!(ran.ok, "{}\n{}", ran.stdout, ran.stderr);
    let new = key_in(&key_path);
    let new_hex = std::fs::read_to_string(&key_path)
        .expect("key")
        .trim()
        .to_string();
    assert_ne!(new.fingerprint(), old.fingerprint());
    assert!(
        ran.stdout.contains("re-sealed 1 credentials"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains(&new.fingerprint()), "{}", ran.stdout);
    assert!(
        ran.stdout.contains("destroy it once no backup"),
        "{}",
        ran.stdout
    );
    for shown in [&ran.stdout, &ran.stderr] {
        assert!(
            !shown.contains(&old_hex) && !shown.contains(&new_hex),
            "{shown}"
        );
    }
    // the old key kept beside it, both 0600, no `.new` left
    let kept = kept_keys(dir.path());
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(key_in(&kept[0]).fingerprint(), old.fingerprint());
    assert!(
        ran.stdout.contains(&kept[0].display().to_string()),
        "{}",
        ran.stdout
    );
    assert!(!dir.path().join("master.key.new").exists());
    #[cfg(unix)]
    {
        assert_eq!(mode(&key_path), 0o600);
        assert_eq!(mode(&kept[0]), 0o600);
    }

    // the old key opens nothing any more: the hub refuses it
    let refused = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        let old_hex = old_hex.clone();
        move || refused_start(&dir, Some(&old_hex))
    })
    .await
    .expect("joined");
    assert!(
        refused.contains("opens none of the 1 stored credentials"),
        "{refused}"
    );

    // the new key polls with the same credentials
    let hub = start_hub(dir.path()).await;
    let api = Api::new(&hub);
    polls_again(&api, &emu, &id).await;
    let rotated = audit_events(&api, "master_key.rotate").await;
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    let text = rotated[0].to_string();
    assert!(
        text.contains(&new.fingerprint()) && text.contains(&old.fingerprint()),
        "{text}"
    );
    assert!(
        !text.contains(&old_hex) && !text.contains(&new_hex),
        "{text}"
    );
    assert_eq!(rotated[0]["actor"]["id"], "local-cli");
    hub.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_master_key_stops_the_start_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Slack, "tok-wrong-key-77", 50).await;
    let right = MasterKey::generate().encoded();
    let wrong = MasterKey::generate().encoded();
    let right_env = right.clone();
    hub_with_integration(dir.path(), &emu, move |s| s.master_key = Some(right_env)).await;
    let data = dir.path().to_path_buf();
    let serve = move |env: Vec<(&'static str, std::ffi::OsString)>| {
        let data = data.clone();
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
            trailhub(&data, &env, &["serve"], 30)
        })
    };
    let no_keys = |ran: &Ran| {
        for shown in [&ran.stdout, &ran.stderr] {
            assert!(
                !shown.contains(right.expose()) && !shown.contains(wrong.expose()),
                "{shown}"
            );
            assert!(!shown.contains("panicked"), "{shown}");
        }
    };

    // from the environment
    let ran = serve(vec![("TRAILHUB_MASTER_KEY", wrong.expose().into())])
        .await
        .expect("joined");
    assert!(!ran.ok);
    no_keys(&ran);
    assert_eq!(
        ran.stderr.matches("opens none").count(),
        1,
        "{}",
        ran.stderr
    );
    for says in [
        "TRAILHUB_MASTER_KEY (environment)",
        "opens none of the 1 stored credentials (e.g. those of slack-keys",
        "set TRAILHUB_MASTER_KEY to it",
        "cannot be recovered without it",
        "trailhub keys forget-credentials",
    ] {
        assert!(ran.stderr.contains(says), "{says:?} in {}", ran.stderr);
    }

    // from a key file: named
    let wrong_file = dir.path().join("wrong.key");
    std::fs::write(&wrong_file, wrong.expose()).expect("write");
    let ran = serve(vec![(
        "TRAILHUB_MASTER_KEY_FILE",
        wrong_file.clone().into(),
    )])
    .await
    .expect("joined");
    assert!(!ran.ok);
    no_keys(&ran);
    let named = format!("the key file {}", wrong_file.display());
    assert!(ran.stderr.contains(&named), "{}", ran.stderr);

    // no key file at all: refused, and no new key minted over the sealed credentials
    let missing = dir.path().join("missing.key");
    let ran = serve(vec![("TRAILHUB_MASTER_KEY_FILE", missing.clone().into())])
        .await
        .expect("joined");
    assert!(!ran.ok);
    assert!(ran.stderr.contains("does not exist"), "{}", ran.stderr);
    assert!(ran.stderr.contains("cannot be recovered"), "{}", ran.stderr);
    assert!(!missing.exists());

    // the right key still starts
    let hub = start_hub_with(dir.path(), |s| s.master_key = Some(right)).await;
    hub.stop().await.expect("stops");
}

/// The command's steps up to its batch, run in-process, leave what a kill right after the batch
/// leaves: records sealed under the new key, the marker, the new key only in `master.key.new`.
fn rotation_killed_after_the_batch(settings: &Settings) -> String {
    let store = trailhub::server::open_store(settings).expect("store opens");
    let tree = store.integrations_tree();
    let source = trailhub::server::key_source(settings);
    let old = source.read().expect("key").expect("exists");
    let (key_file, pending) =
        rotation::destination(&source, None, &settings.master_key_path()).expect("destination");
    let plan = rotation::prepare(tree, &old, &source, key_file, pending).expect("prepared");
    rotation::commit(tree, &plan).expect("committed");
    assert!(rotation::pending(tree).expect("read").is_some());
    let fingerprint = plan.new_key.fingerprint();
    store.shutdown().expect("closed");
    fingerprint
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_killed_between_its_batch_and_the_rename_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Slack, "tok-crash-window-31", 50).await;
    let id = hub_with_integration(dir.path(), &emu, |_| {}).await;
    let key_path = dir.path().join("master.key");
    let old = key_in(&key_path);
    let settings = Settings::for_data_dir(dir.path());
    let new_fingerprint = rotation_killed_after_the_batch(&settings);
    assert_eq!(key_in(&key_path).fingerprint(), old.fingerprint());
    assert_eq!(
        key_in(&dir.path().join("master.key.new")).fingerprint(),
        new_fingerprint
    );
    assert!(kept_keys(dir.path()).is_empty());

    // the next start: a real hub process, reading the default key file
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _child = HubProcess::spawn(dir.path(), port);
    wait_ready(&reqwest::Client::new(), &url).await;
    assert_eq!(key_in(&key_path).fingerprint(), new_fingerprint);
    assert!(!dir.path().join("master.key.new").exists());
    let kept = kept_keys(dir.path());
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(key_in(&kept[0]).fingerprint(), old.fingerprint());
    let api = Api::at(&url, ADMIN);
    polls_again(&api, &emu, &id).await;
    let rotated = audit_events(&api, "master_key.rotate").await;
    assert_eq!(rotated.len(), 1, "{rotated:?}");
    assert!(
        rotated[0]["description"]
            .as_str()
            .is_some_and(|d| d.contains("finished at hub start")),
        "{}",
        rotated[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_key_rotation_killed_before_the_hand_over_is_finished_by_a_second_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Slack, "tok-hand-over-90", 50).await;
    let old = MasterKey::generate().encoded();
    let old_env = old.clone();
    let id = hub_with_integration(dir.path(), &emu, move |s| s.master_key = Some(old_env)).await;
    let mut settings = Settings::for_data_dir(dir.path());
    settings.master_key = Some(old.clone());
    let new_fingerprint = rotation_killed_after_the_batch(&settings);
    let env = [("TRAILHUB_MASTER_KEY", OsStr::new(old.expose()))];

    // the hub, given the old key, cannot hand the new one over: it says what to run
    let data = dir.path().to_path_buf();
    let given = old.clone();
    let ran = tokio::task::spawn_blocking(move || {
        trailhub(
            &data,
            &[("TRAILHUB_MASTER_KEY", OsStr::new(given.expose()))],
            &["serve"],
            30,
        )
    })
    .await
    .expect("joined");
    assert!(!ran.ok);
    assert!(
        ran.stderr.contains("run `trailhub keys rotate-master`"),
        "{}",
        ran.stderr
    );

    // a second run prints the new key, once, and leaves no key file
    let ran = trailhub(dir.path(), &env, &["keys", "rotate-master"], 60);
    assert!(ran.ok, "{}\n{}", ran.stdout, ran.stderr);
    assert_eq!(
        ran.stdout.matches("new master key: ").count(),
        1,
        "{}",
        ran.stdout
    );
    let printed = ran
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("new master key: "))
        .expect("the new key")
        .trim()
        .to_string();
    assert!(ran.stdout.contains("TRAILHUB_MASTER_KEY"), "{}", ran.stdout);
    let decoded: [u8; 32] = hex::decode(&printed)
        .expect("hex")
        .try_into()
        .expect("32 bytes");
    assert_eq!(
        MasterKey::from_bytes(decoded).fingerprint(),
        new_fingerprint
    );
    assert!(!dir.path().join("master.key.new").exists());
    assert!(!dir.path().join("master.key").exists());

    let hub = start_hub_with(dir.path(), |s| s.master_key = Some(Secret::new(&printed))).await;
    let api = Api::new(&hub);
    polls_again(&api, &emu, &id).await;
    hub.stop().await.expect("stops");
}
