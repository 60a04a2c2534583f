//! The console end to end: headless Chromium (Debian's `chromium`, driven over the DevTools
//! protocol by `support::browser`) against a hub this test starts, in a time zone other than
//! UTC. Every view is driven as a person would (real clicks and typing) and photographed into
//! docs/screenshots/ for the README.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::notify::verify_received;
use crate::support::browser::{js, Browser};
use crate::support::data::ACTORS;
use crate::support::emu::Emulator;
use crate::support::hub::{TestHub, ADMIN};
use crate::support::receiver::Receiver;
use crate::support::vendors::Okta;
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
/// severity; and a thinner history over the week before, for the chart.
fn seed_events(now: i64) -> Vec<Value> {
    let mut events = recent_events(now);
    events.extend((0..96).filter(|i| (i * 7) % 5 != 0).map(|i: i64| {
        let (id, name, email) = ACTORS[(i as usize * 3) % ACTORS.len()];
        let action = ["read", "update", "login", "create"][i as usize % 4];
        json!({
            "time": format_micros(now - (12 * 3600 + i * 5400) * S),
            "source_id": format!("history-{i}"),
            "event_type": format!("repo.{action}"),
            "action": action,
            "category": if action == "login" { "authentication" } else { "data_change" },
            "outcome": "success",
            "actor": {"id": id, "name": name, "email": email, "type": "user", "ip": "203.0.113.20"},
            "targets": [{"type": "repo", "id": "acme/web"}],
            "description": format!("routine {name} did {action}"),
        })
    }));
    events
}

fn recent_events(now: i64) -> Vec<Value> {
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

/// The API's answer to a GET as the admin, which must be 200.
async fn get(hub: &TestHub, path: &str) -> Value {
    let (status, body) = hub.get(path, Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

/// How many events the API has for this timeline query (all pages).
async fn api_count(hub: &TestHub, query: &str) -> usize {
    hub.all_events(query, 500).await.len()
}

/// The hash of the page, decoded as the timeline's query parameters.
async fn hash_params(b: &Browser) -> Vec<(String, String)> {
    let hash = b.eval("location.hash").await;
    let hash = hash.as_str().unwrap_or_default();
    let query = hash.split_once('?').map_or("", |(_, q)| q);
    serde_urlencoded::from_str(query).expect("the hash carries a query")
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Three failed logins by one person within a minute: what the rule the test creates fires on.
fn failed_logins(now: i64) -> Vec<Value> {
    (0..3)
        .map(|i: i64| {
            json!({
                "time": format_micros(now - (60 - i * 10) * S),
                "source_id": format!("mallory-{i}"),
                "event_type": "user.session.start",
                "action": "login",
                "category": "authentication",
                "outcome": "failure",
                "severity": "medium",
                "actor": {"id": "mallory", "name": "Mallory Evil", "type": "user", "ip": "198.51.100.66"},
                "description": "failed login",
            })
        })
        .collect()
}

/// The whole console, one browser, one hub: sign in, dashboard, timeline (filter, search, the
/// hash, reload, a drag on the chart), an event and its actor, an alert rule made in the form
/// that fires and is delivered signed, an export job downloaded, a PDF report, an integration
/// added through the form against a loopback Okta, and a viewer refused an admin action.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_end_to_end_in_headless_chromium() {
    const ZONE: &str = "Europe/Paris";
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
    // a signed webhook channel the alert rule will name
    let receiver = Receiver::start(Vec::new()).await;
    let (status, channel) = hub
        .post(
            "/api/v1/channels",
            Some(ADMIN),
            "application/json",
            json!({"name": "soc-webhook", "kind": "webhook", "url": format!("{}/hook", receiver.url)})
                .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{channel}");
    let channel_id = channel["id"].as_str().expect("channel id").to_string();
    let channel_secret = channel["secret"].as_str().expect("secret").to_string();
    // an Okta System Log on loopback with a dozen events of the last hour
    let okta_token = "okta-e2e-api-token-0123456789";
    let emu = Emulator::start(Okta, okta_token, 100).await;
    let okta_ids = emu.add_recent(12, 3600);
    let viewer = hub.mint("viewer").await;

    let b = Browser::launch().await;
    b.set_timezone(ZONE).await;
    mark("start", &mut lap);

    // --- sign in: a wrong token is refused with a message, the right one opens the dashboard
    b.goto(&format!("{}/console", hub.url)).await;
    b.wait_for("#login-form").await;
    b.allow_error("status of 401 (Unauthorized)");
    b.fill("#token", "not-a-token").await;
    b.click("#login-form button[type=submit]").await;
    b.wait_until(
        "the refusal of a wrong token",
        "document.querySelector('#login-error').textContent.includes('does not know')",
    )
    .await;
    b.screenshot(&screenshot_path("sign-in")).await;
    b.fill("#token", ADMIN).await;
    b.click("#login-form button[type=submit]").await;
    b.wait_until(
        "the dashboard after sign-in",
        "location.hash === '#/dashboard'",
    )
    .await;
    mark("sign in", &mut lap);

    // --- dashboard: the counts of the viewer's zone, rankings, recent high-priority events
    b.wait_for("[data-testid=summary-today][data-value]").await;
    let summary = get(&hub, &format!("/api/v1/summary?tz={ZONE}")).await;
    assert_eq!(summary["time_zone"], ZONE);
    for (testid, period) in [
        ("summary-today", "today"),
        ("summary-week", "this_week"),
        ("summary-month", "this_month"),
    ] {
        let shown = b
            .attr(&format!("[data-testid={testid}]"), "data-value")
            .await;
        assert_eq!(
            shown.as_deref(),
            Some(summary["events"][period]["count"].to_string().as_str()),
            "{testid} against {summary}"
        );
    }
    b.wait_count("[data-testid=top-actors] li[data-name]", ACTORS.len())
        .await;
    b.wait_count("[data-testid=top-actions] li[data-name]", 4)
        .await;
    b.wait_count("[data-testid=categories] li[data-name]", 3)
        .await;
    // the four seeded high-severity events
    b.wait_count("[data-testid=recent-high] tr[data-id]", 4)
        .await;
    b.wait_for("[data-testid=storage]").await;
    b.wait_for("[data-testid=integrations-in-error]").await;
    let zone = b.text("#zone").await;
    assert!(zone.contains(ZONE), "{zone}");
    b.screenshot(&screenshot_path("dashboard")).await;
    mark("dashboard", &mut lap);

    // --- timeline: every stored event, times in Paris with UTC on hover, failures stand out
    b.click("nav button[data-view=timeline]").await;
    let all = api_count(&hub, "").await;
    assert!(all > 100, "{all} events: more than a page");
    b.wait_until(
        "the first page of the timeline",
        "document.querySelectorAll('tr[data-testid=event-row]').length === 100",
    )
    .await;
    b.wait_for("#more").await;
    assert!(b.count("tr[data-testid=event-row].failure").await > 0);
    assert_eq!(b.count("tr[data-testid=event-row].sev-high").await, 4);
    let newest = get(&hub, "/api/v1/events?limit=1").await["events"][0].clone();
    let id = newest["id"].as_str().expect("id");
    let cell = format!("tr[data-testid=event-row][data-id='{id}'] time");
    let utc: DateTime<Utc> = newest["time"]
        .as_str()
        .expect("time")
        .parse()
        .expect("RFC 3339");
    let paris = utc.with_timezone(&chrono_tz::Europe::Paris);
    let title = b.attr(&cell, "title").await.unwrap_or_default();
    assert!(
        title.contains(&utc.format("%Y-%m-%d %H:%M:%S").to_string()) && title.ends_with("UTC"),
        "the UTC value on hover: {title:?} for {utc}"
    );
    let shown = b.text(&cell).await;
    assert!(
        shown.contains(&paris.format("%I:%M:%S").to_string())
            && !shown.contains(&utc.format("%I:%M:%S").to_string()),
        "the time in {ZONE}: {shown:?} for {utc} ({paris})"
    );
    b.wait_for("#chart svg [data-testid=chart-axis] .tick-label")
        .await;
    b.screenshot(&screenshot_path("timeline")).await;
    // the next page below
    b.click("#more").await;
    b.wait_until(
        "every stored event after Load more",
        &format!(
            "document.querySelectorAll('tr[data-testid=event-row]').length === {}",
            all.min(200)
        ),
    )
    .await;

    // filter and search: the form writes the hash, the rows are the API's for the same query
    b.fill("#filters [name=q]", "breakglass").await;
    b.fill("#filters [name=since]", "12h").await;
    b.fill("#filters [name=category]", "authentication").await;
    b.click("#filters button[type=submit]").await;
    b.wait_until(
        "the filter in the hash",
        "location.hash.startsWith('#/timeline?') && location.hash.includes('q=breakglass') && location.hash.includes('category=authentication')",
    )
    .await;
    let filtered = api_count(&hub, "q=breakglass&since=12h&category=authentication").await;
    assert!(filtered > 0 && filtered < all, "{filtered} of {all}");
    let rows_are = |n: usize| {
        format!("document.querySelectorAll('tr[data-testid=event-row]').length === {n} && !document.querySelector('#status').classList.contains('loading')")
    };
    b.wait_until("the filtered rows", &rows_are(filtered)).await;
    // a reload keeps the filter: the hash fills the form and the same rows come back
    b.reload().await;
    b.wait_until("the filtered rows after a reload", &rows_are(filtered))
        .await;
    assert_eq!(
        b.eval("document.querySelector('#filters [name=q]').value")
            .await,
        "breakglass"
    );
    assert_eq!(
        b.eval("document.querySelector('#filters [name=category]').value")
            .await,
        "authentication"
    );

    // a drag across the chart narrows since/until to the buckets it crossed
    b.fill("#filters [name=category]", "").await;
    b.fill("#filters [name=q]", "").await;
    b.click("#filters button[type=submit]").await;
    b.wait_until(
        "the 12-hour range",
        "location.hash === '#/timeline?since=12h'",
    )
    .await;
    let in_range = api_count(&hub, "since=12h").await;
    b.wait_until("the rows of 12 hours", &rows_are(in_range))
        .await;
    let bars = b
        .wait_until(
            "bars with events in the chart",
            "(() => { const bars = [...document.querySelectorAll('#chart g.bar')];
               const full = bars.filter(g => g.getBBox().height > 0.5);
               if (full.length < 4) return null;
               const box = (g) => { const r = g.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height - 2]; };
               const a = full[1], z = full[full.length - 2];
               return {from: box(a), to: box(z), start: a.dataset.start, index: +z.dataset.index, bars: bars.length}; })()",
        )
        .await;
    let point = |v: &Value| (v[0].as_f64().unwrap_or(0.0), v[1].as_f64().unwrap_or(0.0));
    b.drag(point(&bars["from"]), point(&bars["to"])).await;
    b.wait_until(
        "since and until in the hash after the drag",
        "location.hash.includes('until=')",
    )
    .await;
    let params = hash_params(&b).await;
    let since = param(&params, "since").expect("since").to_string();
    let until = param(&params, "until").expect("until").to_string();
    let since_t: DateTime<Utc> = since.parse().expect("since is a time");
    let until_t: DateTime<Utc> = until.parse().expect("until is a time");
    let first_bar: DateTime<Utc> = bars["start"]
        .as_str()
        .expect("start")
        .parse()
        .expect("time");
    assert_eq!(
        since_t, first_bar,
        "the drag starts at the first bar it crossed"
    );
    assert!(until_t > since_t, "{since} .. {until}");
    let narrowed = api_count(
        &hub,
        &serde_urlencoded::to_string([("since", &since), ("until", &until)]).expect("query"),
    )
    .await;
    assert!(
        narrowed > 0 && narrowed < in_range,
        "the drag narrowed {in_range} events to {narrowed}"
    );
    b.wait_until("the rows of the dragged range", &rows_are(narrowed))
        .await;
    mark("timeline", &mut lap);

    // --- an event: its detail, related events (same session), a link to its actor
    let row = b
        .eval("document.querySelector('tr[data-testid=event-row]').dataset.id")
        .await;
    let event_id = row.as_str().expect("a row id").to_string();
    b.click(&format!(
        "tr[data-testid=event-row][data-id='{event_id}'] td:nth-child(5)"
    ))
    .await;
    b.wait_until(
        "the event's view",
        &format!("location.hash === {}", js(&format!("#/events/{event_id}"))),
    )
    .await;
    let event = get(&hub, &format!("/api/v1/events/{event_id}")).await;
    let detail_title = b.text("#detail [data-testid=detail-title]").await;
    assert_eq!(detail_title, event["event_type"].as_str().expect("type"));
    b.wait_count("[data-testid=related] tr[data-testid=event-row]", 1)
        .await;
    b.wait_for("#detail-raw").await;
    b.screenshot(&screenshot_path("event")).await;
    let actor = event["actor"]["id"].as_str().expect("actor").to_string();
    b.click("a[data-testid=actor-link]").await;
    b.wait_until(
        "the actor's view",
        &format!("location.hash === {}", js(&format!("#/actors/{actor}"))),
    )
    .await;
    let totals = get(&hub, &format!("/api/v1/actors/{actor}")).await;
    b.wait_for("[data-testid=actor-totals]").await;
    assert_eq!(
        b.attr("[data-testid=actor-total]", "data-value").await,
        Some(totals["total"].to_string())
    );
    assert_eq!(
        b.attr("[data-testid=actor-logins]", "data-value").await,
        Some(totals["logins"]["succeeded"].to_string())
    );
    b.wait_for("[data-testid=actor-first-seen] time").await;
    b.wait_count("#events tr[data-testid=event-row]", 1).await;
    b.screenshot(&screenshot_path("actor")).await;
    // back returns to the event
    b.back().await;
    b.wait_until(
        "back to the event",
        &format!("location.hash === {}", js(&format!("#/events/{event_id}"))),
    )
    .await;
    b.wait_for("#detail [data-testid=detail-title]").await;
    mark("event and actor", &mut lap);

    // --- alerts: a rule made in the form; an error shown next to its field first
    b.click("nav button[data-view=alerts]").await;
    b.wait_for("#rule-form").await;
    b.allow_error("status of 400 (Bad Request)");
    b.allow_error("status of 422 (Unprocessable");
    b.fill("#rule-form [name=name]", "3 failed logins in 10 minutes")
        .await;
    b.fill("#rule-form [name=action]", "login").await;
    b.fill("#rule-form [name=outcome]", "failure").await;
    b.fill("#rule-form [name=condition]", "count").await;
    b.fill("#rule-form [name=threshold]", "0").await;
    b.fill("#rule-form [name=window_secs]", "600").await;
    b.click("#rule-form button[type=submit]").await;
    b.wait_until(
        "the API's error next to the threshold",
        "(() => { const e = document.querySelector('#rule-form [data-error-for=threshold]'); return e && !e.hidden && e.textContent.length > 0; })()",
    )
    .await;
    assert_eq!(b.count("tr[data-testid=rule-row]").await, 0);
    b.fill("#rule-form [name=threshold]", "3").await;
    b.fill("#rule-form [name=group_by]", "actor.id").await;
    b.fill("#rule-form [name=priority]", "high").await;
    b.fill(
        "#rule-form [name=message]",
        "{{alert.count}} failed logins for {{actor.name}}",
    )
    .await;
    b.select_many("#rule-form [name=channels]", &[&channel_id])
        .await;
    b.click("#rule-form button[type=submit]").await;
    b.wait_count("tr[data-testid=rule-row]", 1).await;
    let rules = get(&hub, "/api/v1/alerts/rules").await;
    let rule = rules["rules"][0].clone();
    let rule_id = rule["id"].as_str().expect("rule id").to_string();
    assert_eq!(rule["condition"]["threshold"], 3, "{rule}");
    assert_eq!(rule["channels"], json!([channel_id]), "{rule}");
    b.wait_for(&format!("tr[data-testid=rule-row][data-id='{rule_id}']"))
        .await;
    // the events it counts arrive: a firing row appears, high priority standing out, and the
    // receiver gets the signed delivery of that firing
    hub.ingest(&failed_logins(now_micros())).await;
    b.wait_count("tr[data-testid=firing-row]", 1).await;
    let firing_id = b
        .eval("document.querySelector('tr[data-testid=firing-row]').dataset.id")
        .await
        .as_str()
        .expect("firing id")
        .to_string();
    assert!(
        b.count(&format!(
            "tr[data-testid=firing-row][data-id='{firing_id}'].sev-high"
        ))
        .await
            == 1
    );
    let firing = get(&hub, &format!("/api/v1/alerts/{firing_id}")).await;
    assert_eq!(firing["rule_id"], rule_id.as_str(), "{firing}");
    assert_eq!(firing["group"], "mallory", "{firing}");
    let deliveries = receiver.wait_for(1, 30).await;
    let hit = deliveries
        .iter()
        .find(|r| r.json()["data"]["firing"]["id"] == firing_id.as_str())
        .unwrap_or_else(|| panic!("no delivery of firing {firing_id}"));
    verify_received(&channel_secret, hit).expect("signed per Standard Webhooks");
    assert!(
        hit.json()["text"]
            .as_str()
            .is_some_and(|t| t.contains("Mallory")),
        "{}",
        hit.json()
    );
    // test-fire from the row shows its result in the row
    b.click(&format!(
        "tr[data-testid=rule-row][data-id='{rule_id}'] [data-testid=rule-test]"
    ))
    .await;
    b.wait_for(&format!(
        "tr[data-testid=rule-row][data-id='{rule_id}'] [data-testid=rule-test-result][data-ok]"
    ))
    .await;
    b.screenshot(&screenshot_path("alerts")).await;
    mark("alerts", &mut lap);

    // --- exports: a CSV job of the posted events, its progress, its download
    b.click("nav button[data-view=exports]").await;
    b.wait_for("#export-form").await;
    b.fill("#export-form [name=name]", "e2e-custom-events")
        .await;
    b.fill("#export-form [name=format]", "csv").await;
    b.fill("#export-form [name=since]", "1d").await;
    b.fill("#export-form [name=integration]", "custom").await;
    b.click("#export-form button[type=submit]").await;
    b.wait_count("tr[data-testid=export-row]", 1).await;
    b.wait_until_for(
        "the export to complete",
        "document.querySelector('tr[data-testid=export-row][data-status=completed] a[data-testid=export-download]')",
        Duration::from_secs(60),
    )
    .await;
    let expected = api_count(&hub, "since=1d&integration=custom").await;
    b.click("tr[data-testid=export-row][data-status=completed] a[data-testid=export-download]")
        .await;
    let (name, file) = b.wait_download(Duration::from_secs(30)).await;
    assert!(name.ends_with(".csv"), "{name}");
    let mut csv = csv::Reader::from_reader(file.as_slice());
    let rows = csv.records().filter_map(Result::ok).count();
    assert_eq!(rows, expected, "{name}: rows against the API's count");
    let headers = csv.headers().expect("a header row").clone();
    assert!(headers.iter().any(|h| h == "id"), "{headers:?}");
    b.screenshot(&screenshot_path("exports")).await;
    mark("exports", &mut lap);

    // --- reports: a PDF of the security events of the day
    b.click("nav button[data-view=reports]").await;
    b.wait_for("#report-form").await;
    b.fill("#report-form [name=kind]", "security_events").await;
    b.fill("#report-form [name=name]", "e2e security events")
        .await;
    b.fill("#report-form [name=since]", "1d").await;
    b.click("#report-form button[type=submit]").await;
    b.wait_until_for(
        "the report to complete",
        "document.querySelector('tr[data-testid=report-row][data-status=completed] a[data-testid=report-pdf]')",
        Duration::from_secs(60),
    )
    .await;
    b.click("tr[data-testid=report-row][data-status=completed] a[data-testid=report-pdf]")
        .await;
    let (name, pdf) = b.wait_download(Duration::from_secs(30)).await;
    assert!(name.ends_with(".pdf"), "{name}");
    assert!(pdf.starts_with(b"%PDF-"), "{name} is not a PDF");
    assert!(pdf.len() > 1000, "{name}: {} bytes", pdf.len());
    b.screenshot(&screenshot_path("reports")).await;
    mark("reports", &mut lap);

    // --- integrations: the add form against the loopback Okta
    b.click("nav button[data-view=integrations]").await;
    b.click("[data-testid=add-integration]").await;
    b.wait_until("the add form", "location.hash === '#/integrations/new'")
        .await;
    b.fill("#integration-form select[name=connector]", "okta")
        .await;
    b.wait_for("#integration-form [name='config.base_url']")
        .await;
    assert_eq!(
        b.attr("#integration-form [name='credentials.token']", "type")
            .await
            .as_deref(),
        Some("password"),
        "credentials are password inputs"
    );
    b.fill("#integration-form [name=name]", "okta-e2e").await;
    b.fill("#integration-form [name=schedule]", "* * * * * *")
        .await;
    // a URL the hub refuses: the error next to the field
    b.fill(
        "#integration-form [name='config.base_url']",
        "ftp://nowhere",
    )
    .await;
    b.fill("#integration-form [name='credentials.token']", okta_token)
        .await;
    b.click("[data-testid=test-connection]").await;
    b.wait_for("[data-testid=test-result][data-ok=false]").await;
    b.wait_until(
        "the error next to the base URL",
        "(() => { const e = document.querySelector(\"#integration-form [data-error-for='config.base_url']\"); return e && !e.hidden && e.textContent.length > 0; })()",
    )
    .await;
    // the emulator, with a wrong token: the vendor's refusal, no credential in it
    b.fill("#integration-form [name='config.base_url']", &emu.url)
        .await;
    b.wait_for("#integration-form input[name=allow_insecure_http]:checked")
        .await;
    b.fill(
        "#integration-form [name='credentials.token']",
        "wrong-token-abc",
    )
    .await;
    b.click("[data-testid=test-connection]").await;
    b.wait_for("[data-testid=test-result][data-ok=false]").await;
    let refused = b.text("[data-testid=test-result]").await;
    assert!(
        refused.contains("401") && !refused.contains("wrong-token-abc"),
        "{refused}"
    );
    // the right token: one real request, ok
    b.fill("#integration-form [name='credentials.token']", okta_token)
        .await;
    b.click("[data-testid=test-connection]").await;
    b.wait_for("[data-testid=test-result][data-ok=true]").await;
    let ok = b.text("[data-testid=test-result]").await;
    assert!(ok.contains("200") && ok.contains("12"), "{ok}");
    b.screenshot(&screenshot_path("integration-new")).await;
    b.click("#integration-form button[type=submit]").await;
    b.wait_until(
        "the integrations list",
        "location.hash === '#/integrations'",
    )
    .await;
    let list = get(&hub, "/api/v1/integrations").await;
    let integration = list["integrations"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["name"] == "okta-e2e"))
        .expect("the integration was created")
        .clone();
    let integration_id = integration["id"].as_str().expect("id").to_string();
    assert_eq!(integration["allow_insecure_http"], true, "{integration}");
    // its events arrive: the row's count (refreshed every few seconds), then the timeline
    b.wait_until_for(
        "the Okta events counted in the integration's row",
        &format!(
            "(() => {{ const r = document.querySelector(\"tr[data-testid=integration-row][data-id='{integration_id}']\"); return r && +r.dataset.events >= {n}; }})()",
            n = okta_ids.len()
        ),
        Duration::from_secs(60),
    )
    .await;
    b.screenshot(&screenshot_path("integrations")).await;
    b.goto(&format!(
        "{}/console#/timeline?integration={integration_id}",
        hub.url
    ))
    .await;
    b.wait_until(
        "the Okta events in the timeline",
        &format!(
            "document.querySelectorAll('tr[data-testid=event-row]').length === {}",
            okta_ids.len()
        ),
    )
    .await;
    assert_eq!(
        b.eval("document.querySelector('#filters [name=integration]').value")
            .await,
        integration_id.as_str()
    );
    mark("integrations", &mut lap);

    // --- a viewer reads, and an admin action shows the hub's refusal instead of breaking
    b.allow_error("status of 403 (Forbidden)");
    b.click("#sign-out").await;
    b.wait_for("#login-form").await;
    b.fill("#token", &viewer).await;
    b.click("#login-form button[type=submit]").await;
    b.wait_until(
        "the timeline again, as the viewer",
        "!!document.querySelector('tr[data-testid=event-row]')",
    )
    .await;
    // exports are a viewer's too; alert rules are the admins'
    b.goto(&format!("{}/console#/alerts", hub.url)).await;
    b.wait_for("#rule-form").await;
    b.wait_count("tr[data-testid=rule-row]", 1).await;
    b.fill("#rule-form [name=name]", "a viewer's rule").await;
    b.click("#rule-form button[type=submit]").await;
    b.wait_until(
        "the refusal shown to the viewer",
        "(() => { const e = document.querySelector('#rule-form [data-testid=form-error]'); return e && !e.hidden && e.textContent.includes('Not allowed'); })()",
    )
    .await;
    assert_eq!(b.count("tr[data-testid=rule-row]").await, 1);
    mark("viewer", &mut lap);

    b.finish().await;
    drop(b);
    let total = started.elapsed();
    eprintln!(
        "console e2e: {:.1}s in all; {}",
        total.as_secs_f64(),
        laps.iter()
            .map(|(n, d)| format!("{n} {:.1}s", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
