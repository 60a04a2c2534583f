//! Backfill windows: a first backfill of a connector that takes a time window is split into
//! windows walked concurrently under the integration's one rate gate, while live polls go on;
//! a kill -9 of the real binary resumes every window where it stopped, nothing lost or doubled

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::emu::{Emulator, Req};
use crate::support::hub::{
    fast_tuning, free_port, start_hub_with, unique_source_ids, wait_ready, Api, HubProcess, ADMIN,
};
use crate::support::vendors::Slack;

fn slack_integration(emu: &Emulator, requests_per_minute: u32) -> Value {
    json!({"name": "slack-windows", "connector": "slack", "config": {"base_url": emu.url},
        "credentials": {"token": "tok-win"}, "schedule": "* * * * * *", "backfill": "P3D",
        "requests_per_minute": requests_per_minute, "idle_backoff": 0, "allow_insecure_http": true})
}

fn in_window(r: &Req) -> bool {
    r.query.contains("latest=")
}

/// Most requests in flight at once: each is in flight from its arrival for `latency`.
fn most_in_flight(requests: &[Req], latency: Duration) -> usize {
    requests
        .iter()
        .map(|r| {
            requests
                .iter()
                .filter(|o| o.at <= r.at && r.at < o.at + latency)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_are_walked_concurrently_under_one_gate_while_live_polls_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let latency = Duration::from_millis(100);
    let emu = Emulator::start(Slack, "tok-win", 3).await;
    emu.state.lock().expect("lock").latency = latency;
    emu.add_recent(150, 3 * 86_400);
    let hub = start_hub_with(dir.path(), |s| {
        s.poll = trailhub::config::PollTuning {
            backfill_slices: 8,
            backfill_lanes: 4,
            ..fast_tuning()
        };
    })
    .await;
    let api = Api::new(&hub);
    // 20 requests a second: the lanes together must stay under it
    let id = api.create(slack_integration(&emu, 1200)).await;
    let backfilling = api
        .wait_for(&id, "windows planned", 10, |v| {
            v["cursor"]["backfill_slices_left"].as_u64() > Some(0)
        })
        .await;
    assert_eq!(backfilling["state"], "backfilling", "{backfilling:#}");
    let events = api.wait_for_events(&id, 150, 60).await;
    let done = api
        .wait_for(&id, "windows walked", 20, |v| {
            v["state"] == "live" && v["cursor"]["backfill_slices_left"] == 0
        })
        .await;
    assert_eq!(unique_source_ids(&events), emu.ids(), "each event once");
    assert_eq!(done["events_ingested"], 150, "{done:#}");

    let requests = emu.api_requests();
    let windows: std::collections::BTreeSet<String> = requests
        .iter()
        .filter(|r| in_window(r) && !r.query.contains("cursor="))
        .map(|r| r.query.clone())
        .collect();
    assert_eq!(
        windows.len(),
        8,
        "one first request per window: {windows:#?}"
    );
    let window_requests: Vec<Req> = requests.iter().filter(|r| in_window(r)).cloned().collect();
    assert!(
        most_in_flight(&window_requests, latency) >= 2,
        "windows were walked one at a time"
    );
    assert!(
        emu.busiest_second() <= 20,
        "{} requests in one second over a budget of 20",
        emu.busiest_second()
    );
    // the live walk polled while windows were still being walked
    let (first, last) = (
        window_requests.first().expect("windows").at,
        window_requests.last().expect("windows").at,
    );
    assert!(
        requests
            .iter()
            .any(|r| !in_window(r) && r.at > first && r.at < last),
        "no live poll during the backfill"
    );
    hub.stop().await.expect("stops");
}

/// SIGKILL while windows are walked: on restart every window resumes from the link committed
/// with its last page, the live walk goes on, and each event is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_windows_resumes_every_window_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start(Slack, "tok-win", 3).await;
    emu.state.lock().expect("lock").latency = Duration::from_millis(60);
    emu.add_recent(300, 3 * 86_400);
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let serve = || HubProcess::spawn_with(dir.path(), port, &[("TRAILHUB_SEAL_EVENTS", "32")]);
    let mut hub = serve();
    wait_ready(&reqwest::Client::new(), &url).await;
    let api = Api::at(&url, ADMIN);
    let id = api.create(slack_integration(&emu, 6000)).await;
    let mut seen = 0;
    for _ in 0..300 {
        seen = api.events(&id).await.len();
        if seen >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // the committed cursor only loses windows as they finish: read just before the kill, it
    // names at least the windows still left at the kill
    let left = api.integration(&id).await["cursor"]["backfill_slices_left"]
        .as_u64()
        .unwrap_or(0) as usize;
    hub.kill().expect("SIGKILL");
    let _ = hub.wait();
    assert!(
        seen > 0 && seen < 300 && left > 0,
        "kill did not land mid-backfill ({seen} events, {left} windows left)"
    );
    let before = emu.api_requests().len();

    let mut hub = serve();
    wait_ready(&reqwest::Client::new(), &url).await;
    let events = api.wait_for_events(&id, 300, 60).await;
    assert_eq!(unique_source_ids(&events), emu.ids(), "each event once");
    let done = api
        .wait_for(&id, "windows walked", 30, |v| {
            v["state"] == "live" && v["cursor"]["backfill_slices_left"] == 0
        })
        .await;
    // the count commits with the events: exact across the kill
    assert_eq!(done["events_ingested"], 300, "{done:#}");
    // resumed, not restarted: the windows done before the kill were not asked again
    let after: Vec<Req> = emu.api_requests().into_iter().skip(before).collect();
    let restarted = after
        .iter()
        .filter(|r| in_window(r) && !r.query.contains("cursor="))
        .count();
    assert!(
        restarted <= left,
        "{restarted} windows started again after the kill, {left} were left"
    );
    let _ = hub.kill();
    let _ = hub.wait();
}
