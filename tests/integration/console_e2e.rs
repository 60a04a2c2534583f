//! The console end to end: headless Chromium (Debian's `chromium`, driven over the DevTools
//! protocol by `support::browser`) against a hub this test starts, in a time zone other than
//! UTC. Every view is driven as a person would (real clicks and typing) and photographed into
//! docs/screenshots/ for the README.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::browser::{js, Browser};
use crate::support::data::ACTORS;
use crate::support::hub::{TestHub, ADMIN};
use trailhub::time::{format_micros, now_micros, MICROS_PER_SEC};

const S: i64 = MICROS_PER_SEC;

/// Where the screenshots go: docs/screenshots/ (committed, linked from the README), or the
/// directory `TRAILHUB_SCREENSHOTS` names.
fn screenshot_path(view: &str) -> PathBuf {
    let dir = std::env::var_os("TRAILHUB_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots"));
    dir.join(format!("{view}.png"))
}

/// Varied events of the last hours: four people, logins that fail, changes, a few of high
/// severity.
fn seed_events(now: i64) -> Vec<Value> {
    let actions = ["login", "update", "create", "delete", "login", "read"];
    let categories = [
        "authentication",
        "data_change",
        "data_change",
        "data_change",
        "authentication",
        "data_access",
    ];
    let words = ["quarterly", "rotation", "breakglass", "routine"];
    (0..48)
        .map(|i: i64| {
            let (id, name, email) = ACTORS[i as usize % ACTORS.len()];
            let k = i as usize % actions.len();
            let failed = actions[k] == "login" && i % 4 == 0;
            let mut e = json!({
                "time": format_micros(now - (6 * 3600 - i * 420) * S),
                "source_id": format!("seed-{i}"),
                "event_type": format!("repo.{}", actions[k]),
                "action": actions[k],
                "category": categories[k],
                "outcome": if failed { "failure" } else { "success" },
                "actor": {"id": id, "name": name, "email": email, "type": "user",
                    "ip": format!("203.0.113.{}", 10 + i % 5)},
                "targets": [{"type": "repo", "id": format!("acme/{}", ["web", "api", "infra"][i as usize % 3])}],
                "description": format!("{} {name} did {}", words[i as usize % words.len()], actions[k]),
                "session_id": format!("sess-{id}"),
            });
            if i % 11 == 5 {
                e["severity"] = json!("high");
            }
            e
        })
        .collect()
}

/// The whole console, one browser, one hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_end_to_end_in_headless_chromium() {
    let started = Instant::now();
    let mut lap = Instant::now();
    let mut laps: Vec<(&str, Duration)> = Vec::new();
    let mut mark = |name: &'static str, lap: &mut Instant| {
        laps.push((name, lap.elapsed()));
        *lap = Instant::now();
    };

    let hub = TestHub::start().await;
    let now = now_micros();
    hub.ingest(&seed_events(now)).await;

    let b = Browser::launch().await;
    b.set_timezone("Europe/Paris").await;
    mark("start", &mut lap);

    // sign in: a wrong token is refused with a message, the right one opens the console
    b.goto(&format!("{}/console", hub.url)).await;
    b.wait_for("#login-form").await;
    b.allow_error("status of 401");
    b.fill("#token", "not-a-token").await;
    b.click("#login-form button[type=submit]").await;
    b.wait_until(
        "the refusal shown",
        "document.querySelector('#login-error').textContent.length > 0",
    )
    .await;
    b.screenshot(&screenshot_path("sign-in")).await;
    b.fill("#token", ADMIN).await;
    b.click("#login-form button[type=submit]").await;
    mark("sign in", &mut lap);

    // the timeline: the seeded rows
    b.wait_count("#events tbody tr", 48).await;
    b.wait_for("#chart svg rect").await;
    b.screenshot(&screenshot_path("timeline")).await;
    mark("timeline", &mut lap);

    // an event's detail
    b.click("#events tbody tr:nth-child(3)").await;
    b.wait_for("#detail").await;
    let title = b.text("#detail-title").await;
    assert!(title.starts_with("repo."), "{title}");
    b.screenshot(&screenshot_path("event")).await;
    mark("event", &mut lap);

    let _ = js("");
    b.finish().await;
    drop(b);
    eprintln!(
        "console e2e: {:?} in all; {}",
        started.elapsed(),
        laps.iter()
            .map(|(n, d)| format!("{n} {:.1}s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
