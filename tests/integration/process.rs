//! The real binary: `serve` killed with SIGKILL in the middle of a backfill and restarted gives
//! the same event set, none twice; the `integrations` CLI drives it through the API

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::emu::{Emulator, Fault};
use crate::support::hub::{free_port, unique_source_ids, wait_ready, Api, HubProcess, ADMIN, BIN};
use crate::support::vendors::{Github, Okta};

/// The binary serving `dir` with small index segments, so that a kill lands around seals too.
async fn serve(dir: &std::path::Path, port: u16) -> HubProcess {
    let hub = HubProcess::spawn_with(dir, port, &[("TRAILHUB_SEAL_EVENTS", "32")]);
    wait_ready(&reqwest::Client::new(), &format!("http://127.0.0.1:{port}")).await;
    hub
}

async fn events(url: &str, id: &str) -> Vec<Value> {
    Api::at(url, ADMIN).events(id).await
}

fn cli(url: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .args(["--hub", url, "--token", ADMIN])
        .env("GH_TOKEN_FOR_TEST", "tok-kill")
        .output()
        .expect("cli runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_backfill_then_restart_gives_each_event_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Github::Org, "tok-kill", 5).await;
    emu.add_recent(150, 2 * 86_400);
    for _ in 0..30 {
        emu.fault(Fault::Slow(Duration::from_millis(60)));
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut hub = serve(dir.path(), port).await;

    let base = format!("base_url={}", emu.url);
    let (ok, out) = cli(
        &url,
        &[
            "integrations",
            "add",
            "--name",
            "gh-kill",
            "--connector",
            "github",
            "--set",
            "org=octo-corp",
            "--set",
            &base,
            "--credential",
            "token=env:GH_TOKEN_FOR_TEST",
            "--schedule",
            "* * * * * *",
            "--backfill",
            "P3D",
            "--allow-insecure-http",
            "--requests-per-minute",
            "6000",
        ],
    );
    assert!(ok, "{out}");
    assert!(
        !out.contains("tok-kill"),
        "the CLI printed the credential: {out}"
    );
    let created: Value = serde_json::from_str(&out).expect("json");
    let id = created["id"].as_str().expect("id").to_string();

    // kill -9 once some pages are committed, before the walk is over
    let mut seen = 0;
    for _ in 0..200 {
        seen = events(&url, &id).await.len();
        if seen >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hub.kill().expect("SIGKILL");
    let _ = hub.wait();
    assert!(
        seen > 0 && seen < 150,
        "kill did not land mid-backfill ({seen} events)"
    );

    let mut hub = serve(dir.path(), port).await;
    let mut all = Vec::new();
    for _ in 0..150 {
        all = events(&url, &id).await;
        if all.len() >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(unique_source_ids(&all), emu.ids());

    let (ok, out) = cli(&url, &["integrations", "list"]);
    assert!(ok && out.contains("gh-kill"), "{out}");
    let (ok, out) = cli(&url, &["integrations", "poll", &id]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&url, &["integrations", "show", &id]);
    assert!(ok, "{out}");
    let shown: Value = serde_json::from_str(&out).expect("json");
    // the count commits with the events: exact across the kill
    assert_eq!(shown["events_ingested"], 150, "{out}");
    let (ok, out) = cli(&url, &["integrations", "remove", &id]);
    assert!(ok, "{out}");
    let _ = hub.kill();
    let _ = hub.wait();
}

/// SIGTERM in the middle of a slow page: the page in hand is committed before the hub exits,
/// so every page the vendor served is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_the_page_in_hand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Okta, "tok-kill", 5).await;
    emu.add_recent(100, 3600);
    for _ in 0..100 {
        emu.fault(Fault::Slow(Duration::from_millis(400)));
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let hub = serve(dir.path(), port).await;
    let base = format!("base_url={}", emu.url);
    let (ok, out) = cli(
        &url,
        &[
            "integrations",
            "add",
            "--name",
            "okta-term",
            "--connector",
            "okta",
            "--set",
            &base,
            "--credential",
            "token=env:GH_TOKEN_FOR_TEST",
            "--schedule",
            "* * * * * *",
            "--allow-insecure-http",
            "--requests-per-minute",
            "6000",
        ],
    );
    assert!(ok, "{out}");
    let id = serde_json::from_str::<Value>(&out).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    // stop while a slow page is in flight
    for _ in 0..100 {
        if !events(&url, &id).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let term = Command::new("kill")
        .args(["-TERM", &hub.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(term.success());
    let status = tokio::task::spawn_blocking(move || {
        let mut hub = hub;
        hub.wait()
    })
    .await
    .expect("join")
    .expect("wait");
    assert!(status.success(), "hub exited with {status}");
    let served: usize = emu.requests().iter().filter(|r| r.status == 200).count();
    let started = emu.state.lock().expect("lock").started;
    assert_eq!(started, served, "a page was abandoned in flight");
    let out = Command::new(BIN)
        .args([
            "events",
            "--integration",
            &id,
            "--format",
            "json",
            "--limit",
            "1000",
        ])
        .env("TRAILHUB_DATA_DIR", dir.path())
        .output()
        .expect("events runs");
    let page: Value = serde_json::from_slice(&out.stdout).expect("json");
    let stored = page["events"].as_array().map(Vec::len).unwrap_or(0);
    assert!(served >= 2, "stopped too early to tell ({served} pages)");
    assert_eq!(stored, served * 5, "every served page of 5 is stored");
}

#[test]
fn connectors_check_and_replay_commands() {
    let out = Command::new(BIN)
        .args(["connectors", "check"])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in ["github", "okta", "slack"] {
        assert!(
            text.contains(&format!("ok: connectors/{name}.toml")),
            "{text}"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("okta.toml");
    let good = include_str!("../../connectors/okta.toml");
    std::fs::write(
        &bad,
        good.replace("overlap = \"PT5M\"", "overlap = \"PT5M\"\nwindow = 3"),
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["connectors", "check"])
        .arg(&bad)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("okta.toml") && err.contains("cursor.window"),
        "{err}"
    );

    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/github/audit-log/page.json"
    );
    let out = Command::new(BIN)
        .args(["connectors", "replay", "github", fixture])
        .output()
        .expect("runs");
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["event_type"], "team.add_member");
    assert_eq!(lines[0]["action"], "grant");
}
