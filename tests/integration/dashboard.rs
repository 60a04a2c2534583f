//! The desk's overviews through HTTP: `/api/v1/summary` (events per calendar period in a time
//! zone, storage, categories, top actors and actions, high priority events, integrations in
//! error), `/api/v1/actors/{id}` and `/api/v1/events/{id}/related`, and their CLI commands.
//! Every figure is checked exactly against what was seeded (and what the timeline lists).

use std::collections::HashMap;

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;
use reqwest::StatusCode;
use serde_json::{json, Value};
use trailhub::time::{format_micros, now_micros, parse_rfc3339, DAY, HOUR, MINUTE};

use crate::support::hub::*;

const OKTA_CHROME: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/127.0.0.0 Safari/537.36";
const FIREFOX: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn event(source_id: &str, time: i64, actor: &str, action: &str) -> Value {
    json!({
        "time": format_micros(time),
        "source_id": source_id,
        "event_type": format!("test.{action}"),
        "action": action,
        "category": "data_change",
        "outcome": "success",
        "actor": {"id": actor, "type": "user"},
    })
}

fn time_of(e: &Value) -> i64 {
    parse_rfc3339(e["time"].as_str().expect("time")).expect("rfc3339")
}

/// [start, end) of today, this week (from Monday) and this month in `tz`, at `now`: an
/// independent reckoning with chrono (these zones have every midnight).
fn zone_periods(tz: Tz, now: i64) -> [(i64, i64); 3] {
    let d = chrono::DateTime::from_timestamp_micros(now)
        .expect("now")
        .with_timezone(&tz)
        .date_naive();
    let midnight = |d: NaiveDate| {
        tz.from_local_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight"))
            .earliest()
            .expect("every midnight exists here")
            .timestamp_micros()
    };
    let days = |d: NaiveDate, n: u64| d + chrono::Days::new(n);
    let monday = d - chrono::Days::new(u64::from(d.weekday().num_days_from_monday()));
    let first = d.with_day(1).expect("first");
    [
        (midnight(d), midnight(days(d, 1))),
        (midnight(monday), midnight(days(monday, 7))),
        (midnight(first), midnight(first + chrono::Months::new(1))),
    ]
}

/// Counts of `events` by a key, and the top `n` as the API ranks them (largest first, ties by
/// name).
fn top(events: &[&Value], key: impl Fn(&Value) -> String, n: usize) -> Vec<(String, u64)> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for e in events {
        *counts.entry(key(e)).or_default() += 1;
    }
    let mut v: Vec<(String, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(n);
    v
}

fn ranking(v: &Value) -> Vec<(String, u64)> {
    v.as_array()
        .expect("ranking")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().expect("name").to_string(),
                c["events"].as_u64().expect("events"),
            )
        })
        .collect()
}

/// An Okta integration whose polls fail at once: https to a closed loopback port (and a pace
/// high enough that Okta's rate gate does not space its retries out past the test's wait).
fn failing_okta(name: &str) -> Value {
    json!({"name": name, "connector": "okta", "config": {"base_url": "https://127.0.0.1:9"},
        "credentials": {"token": "dash-token", "webhook_secret": "dash-hook-secret"},
        "schedule": "0 0 0 1 1 *", "requests_per_minute": 60000})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_counts_each_period_in_the_zone_asked_for() {
    let hub = TestHub::start().await;
    let viewer = hub.mint("viewer").await;
    let api = Api::at(&hub.url, ADMIN);
    // two integrations whose polls fail; the second is paused, so it is not "in error"
    let broken = api.create(failing_okta("dash-broken")).await;
    let paused = api.create(failing_okta("dash-paused")).await;
    for id in [&broken, &paused] {
        api.poll_now(id).await;
        api.wait_for(id, "a failed poll", 20, |v| v["state"] == "error")
            .await;
    }
    let (status, _) = api.patch(&paused, json!({"paused": true})).await;
    assert_eq!(status, 200);

    let now = now_micros();
    let mut lines = Vec::new();
    // at each period's first instant, and just before it, in three zones (Kolkata's midnight is
    // not on a UTC hour, so its edges are counted from the index, not the hourly rollups)
    let zones: [Tz; 3] = ["Europe/Paris", "Asia/Kolkata", "UTC"].map(|z| z.parse().expect("zone"));
    for tz in zones {
        for (start, _) in zone_periods(tz, now) {
            for (i, t) in [start, start - 1].into_iter().enumerate() {
                let who = format!("edge-{}", tz.name());
                lines.push(event(&format!("{who}-{start}-{i}"), t, &who, "read"));
            }
        }
    }
    // the rankings: a01 has 12 events in the last seven days, a02 11, ... a12 1
    for k in 1..=12u64 {
        let action = ["login", "create", "update", "delete", "export"][(k % 5) as usize];
        for j in 0..(13 - k) {
            let t = now - (k as i64) * HOUR - (j as i64) * 11 * HOUR - 7 * MINUTE;
            lines.push(event(
                &format!("rank-{k}-{j}"),
                t,
                &format!("a{k:02}"),
                action,
            ));
        }
    }
    // older than the rankings' window: a large count that must not rank
    for j in 0..30 {
        lines.push(event(
            &format!("old-{j}"),
            now - 9 * DAY - j * MINUTE,
            "zz-old",
            "grant",
        ));
    }
    // more history, in other categories, so that the store seals a segment (256 events)
    for j in 0..200i64 {
        let mut e = event(
            &format!("fill-{j}"),
            now - 20 * DAY - j * HOUR,
            "filler",
            "read",
        );
        e["category"] = json!(["authentication", "configuration", "system"][(j % 3) as usize]);
        lines.push(e);
    }
    // high priority: three of severity high; and two that only look like it
    for (i, hours) in [2i64, 3, 4].into_iter().enumerate() {
        let mut e = event(&format!("high-{i}"), now - hours * HOUR, "a01", "update");
        e["severity"] = json!("high");
        lines.push(e);
    }
    let mut lookalike = event("lookalike", now - HOUR, "a02", "read");
    lookalike["raw"] = json!({"severity": "high"});
    lines.push(lookalike);
    // a custom event named like a firing is not one: firings are the trailhub integration's
    lines.push(event("custom-alert", now - 90 * MINUTE, "a03", "execute"));
    lines.last_mut().expect("line")["event_type"] = json!("alert.fired");
    hub.ingest(&lines).await;
    // an alert firing, as the alert engine records it
    let engine = trailhub::auth::Principal {
        token_id: "alert-engine".into(),
        name: "alert engine".into(),
        role: trailhub::auth::Role::Admin,
    };
    trailhub::audit::record(
        hub.store(),
        &engine,
        trailhub::audit::AdminAction {
            event_type: "alert.fired",
            action: trailhub::schema::Action::Execute,
            category: trailhub::schema::Category::System,
            target: None,
            description: "rule \"failed logins\" fired".into(),
            details: json!({"rule": "r1"}),
        },
    )
    .await
    .expect("recorded");

    let all = hub.all_events("", 1000).await;
    let before = now_micros();
    let (status, paris) = hub
        .get("/api/v1/summary?tz=Europe/Paris", Some(&viewer))
        .await;
    assert_eq!(status, StatusCode::OK, "{paris}");
    let after = now_micros();
    assert_eq!(paris["time_zone"], "Europe/Paris");

    for tz in zones {
        let summary = if tz.name() == "Europe/Paris" {
            paris.clone()
        } else {
            let (status, s) = hub
                .get(&format!("/api/v1/summary?tz={}", tz.name()), Some(ADMIN))
                .await;
            assert_eq!(status, StatusCode::OK, "{s}");
            s
        };
        let expected = zone_periods(tz, before);
        // a midnight passed during the test: nothing exact can be said of this run
        if expected != zone_periods(tz, after) {
            continue;
        }
        for ((start, end), key) in expected.iter().zip(["today", "this_week", "this_month"]) {
            let p = &summary["events"][key];
            assert_eq!(p["since"], format_micros(*start), "{} {key}", tz.name());
            assert_eq!(p["until"], format_micros(*end), "{} {key}", tz.name());
            let want = all
                .iter()
                .filter(|e| (*start..*end).contains(&time_of(e)))
                .count() as u64;
            assert_eq!(p["count"], want, "{} {key}: {p}", tz.name());
        }
    }
    // the zone matters: Paris's day and UTC's differ by the edge events between their midnights
    let utc = zone_periods(Tz::UTC, before)[0];
    let paris_day = zone_periods("Europe/Paris".parse().expect("zone"), before)[0];
    assert_ne!(utc, paris_day);
    // with no tz, UTC
    let (_, plain) = hub.get("/api/v1/summary", Some(ADMIN)).await;
    assert_eq!(plain["time_zone"], "UTC");
    assert_eq!(plain["events"]["today"]["since"], format_micros(utc.0));

    // storage and categories, all time
    assert_eq!(paris["storage"]["events_stored"], all.len());
    assert_eq!(paris["storage"]["events_live"], all.len());
    assert_eq!(paris["storage"]["events_purged"], 0);
    assert!(paris["storage"]["bytes_on_disk"].as_u64().expect("bytes") > 0);
    let refs: Vec<&Value> = all.iter().collect();
    let categories = top(
        &refs,
        |e| e["category"].as_str().expect("c").to_string(),
        100,
    );
    let served: Vec<(String, u64, f64)> = paris["categories"]
        .as_array()
        .expect("categories")
        .iter()
        .map(|c| {
            (
                c["category"].as_str().expect("category").to_string(),
                c["events"].as_u64().expect("events"),
                c["share"].as_f64().expect("share"),
            )
        })
        .collect();
    assert_eq!(
        served
            .iter()
            .map(|(c, n, _)| (c.clone(), *n))
            .collect::<Vec<_>>(),
        categories
    );
    for (c, n, share) in &served {
        let want = (*n as f64 / all.len() as f64 * 10_000.0).round() / 10_000.0;
        assert_eq!(*share, want, "{c}");
    }

    // rankings: whole hours of the last seven days, the current one included
    let since = parse_rfc3339(paris["top_actors"]["since"].as_str().expect("since")).expect("t");
    let until = parse_rfc3339(paris["top_actors"]["until"].as_str().expect("until")).expect("t");
    assert_eq!(until - since, 7 * DAY);
    assert_eq!(until % HOUR, 0);
    assert!(until > before && until <= after + HOUR, "{until}");
    let window: Vec<&Value> = all
        .iter()
        .filter(|e| (since..until).contains(&time_of(e)))
        .collect();
    assert_eq!(paris["top_actors"]["total"], window.len());
    let actors = top(
        &window,
        |e| e["actor"]["id"].as_str().expect("id").to_lowercase(),
        10,
    );
    assert_eq!(ranking(&paris["top_actors"]["top"]), actors);
    assert!(!actors.iter().any(|(a, _)| a == "zz-old"));
    assert_eq!(
        actors[0],
        ("a01".to_string(), 12 + 3),
        "a01's 12 and its 3 high ones"
    );
    let actions = top(
        &window,
        |e| e["action"].as_str().expect("a").to_string(),
        10,
    );
    assert_eq!(ranking(&paris["top_actions"]["top"]), actions);

    // high priority: the firing (now), then the three high ones, newest first
    let high = &paris["high_priority"];
    let listed: Vec<(&str, &str)> = high["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["reason"].as_str().expect("reason"),
                e["event_type"].as_str().expect("type"),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("alert_fired", "alert.fired"),
            ("severity_high", "test.update"),
            ("severity_high", "test.update"),
            ("severity_high", "test.update"),
        ]
    );
    assert_eq!(high["events"][0]["integration"], "trailhub");
    assert_eq!(high["events"][1]["severity"], "high");
    let times: Vec<i64> = high["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(time_of)
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let examined = all.iter().filter(|e| time_of(e) >= since).count();
    assert_eq!(high["examined"], examined);
    assert_eq!(high["complete"], true);
    assert_eq!(high["examined_since"], format_micros(since));

    // integrations in error: the failing one, not the paused one
    let errors = paris["integrations_in_error"].as_array().expect("list");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["id"], broken.as_str());
    assert_eq!(errors[0]["connector"], "okta");
    assert!(errors[0]["last_error"]
        .as_str()
        .is_some_and(|e| !e.is_empty()));

    // reading the summary changed nothing
    assert_eq!(hub.all_events("", 1000).await.len(), all.len());
    hub.stop().await;
}

#[tokio::test]
async fn a_bad_summary_query_is_refused_naming_the_parameter() {
    let hub = TestHub::start().await;
    for (query, names) in [
        ("tz=Mars/Olympus_Mons", "`tz`"),
        ("tz=", "`tz`"),
        ("tz=%2B02:00", "`tz`"),
        ("zone=UTC", "zone"),
        ("tz=UTC&tz=UTC", "tz"),
    ] {
        let (status, body) = hub
            .get(&format!("/api/v1/summary?{query}"), Some(ADMIN))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], "invalid_parameter");
        let message = body["error"]["message"].as_str().expect("message");
        assert!(message.contains(names), "{query}: {message}");
    }
    // a zone name far too long is cut in the message
    let long = "A".repeat(5000);
    let (status, body) = hub
        .get(&format!("/api/v1/summary?tz={long}"), Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.to_string().len() < 500, "{body}");
    hub.stop().await;
}

/// The seeded activity of `u-alice` (and of others that must not be counted with hers).
fn alice_events(now: i64) -> Vec<Value> {
    let mut lines = Vec::new();
    let mut add = |i: usize,
                   action: &str,
                   outcome: &str,
                   session: Option<&str>,
                   agent: &str,
                   ip: &str,
                   country: Option<&str>| {
        let mut e = json!({
            "time": format_micros(now - DAY + (i as i64) * HOUR),
            "source_id": format!("alice-{i}"),
            "event_type": format!("app.{action}"),
            "action": action,
            "category": if action == "login" { "authentication" } else { "data_change" },
            "outcome": outcome,
            "actor": {"id": "u-alice", "name": "Alice Liddell", "email": "alice@example.com",
                      "type": "user", "ip": ip, "user_agent": agent},
            "session_id": session,
        });
        if let Some(c) = country {
            e["actor"]["location"] = json!({"country": c});
        }
        lines.push(e);
    };
    add(
        0,
        "login",
        "success",
        Some("s-1"),
        OKTA_CHROME,
        "81.2.69.142",
        Some("GB"),
    );
    add(
        1,
        "read",
        "success",
        Some("s-1"),
        OKTA_CHROME,
        "81.2.69.142",
        Some("GB"),
    );
    add(2, "login", "failure", None, FIREFOX, "203.0.113.9", None);
    add(3, "login", "failure", None, FIREFOX, "203.0.113.9", None);
    add(
        4,
        "login",
        "success",
        Some("s-2"),
        FIREFOX,
        "81.2.69.142",
        Some("GB"),
    );
    add(
        5,
        "update",
        "success",
        Some("s-2"),
        FIREFOX,
        "81.2.69.142",
        Some("GB"),
    );
    add(
        6,
        "update",
        "success",
        Some("s-3"),
        "okta-sdk-python/2.9",
        "2a02:cf40::7",
        Some("DE"),
    );
    add(
        7,
        "update",
        "success",
        Some("s-3"),
        "okta-sdk-python/2.9",
        "2a02:cf40::7",
        Some("DE"),
    );
    add(
        8,
        "login",
        "unknown",
        None,
        "okta-sdk-python/2.9",
        "2a02:cf40::7",
        None,
    );
    add(
        9,
        "read",
        "success",
        Some("s-1"),
        OKTA_CHROME,
        "81.2.69.142",
        Some("GB"),
    );
    // someone else, named like her in part
    for j in 0..5 {
        let mut e = event(&format!("bob-{j}"), now - HOUR * j, "u-bob", "login");
        e["actor"]["name"] = json!("Bob Alice-Friend");
        lines.push(e);
    }
    lines
}

// multi-threaded: the CLI runs as a child process while this test's runtime serves the hub
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actors_activity_is_counted_exactly() {
    let hub = TestHub::start().await;
    let viewer = hub.mint("viewer").await;
    let now = now_micros();
    hub.ingest(&alice_events(now)).await;
    // two of her admin actions, recorded in the trailhub integration under her id
    let alice = trailhub::auth::Principal {
        token_id: "u-alice".into(),
        name: "Alice Liddell".into(),
        role: trailhub::auth::Role::Admin,
    };
    for i in 0..2 {
        trailhub::audit::record(
            hub.store(),
            &alice,
            trailhub::audit::AdminAction {
                event_type: "export.create",
                action: trailhub::schema::Action::Export,
                category: trailhub::schema::Category::DataAccess,
                target: None,
                description: format!("export {i}"),
                details: json!({}),
            },
        )
        .await
        .expect("recorded");
    }
    let hers = hub.all_events("actor=u-alice", 1000).await;
    assert_eq!(hers.len(), 12);

    // by id or name, in any case: the same answer; by email, the events that carry it (her
    // admin actions name her by id and name only)
    let (status, a) = hub.get("/api/v1/actors/u-alice", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    for other in ["Alice%20Liddell", "U-ALICE", "alice%20LIDDELL"] {
        let (status, b) = hub
            .get(&format!("/api/v1/actors/{other}"), Some(&viewer))
            .await;
        assert_eq!(status, StatusCode::OK, "{other}: {b}");
        assert_eq!(b["total"], a["total"], "{other}");
        assert_eq!(b["by_action"], a["by_action"], "{other}");
    }
    let (status, by_email) = hub
        .get("/api/v1/actors/ALICE@example.com", Some(&viewer))
        .await;
    assert_eq!(status, StatusCode::OK, "{by_email}");
    assert_eq!(by_email["total"], 10);
    assert_eq!(by_email["actor"]["email"], "alice@example.com");
    assert_eq!(
        ranking(&by_email["by_integration"]),
        [("custom".to_string(), 10)]
    );
    // the newest event names her: one of the admin actions
    assert_eq!(a["actor"]["id"], "u-alice");
    assert_eq!(a["actor"]["name"], "Alice Liddell");
    assert_eq!(a["actor"]["type"], "api_key");
    assert_eq!(a["total"], 12);
    assert_eq!(a["capped"], json!({"total": false, "details": false}));
    assert_eq!(a["details_events"], 12);
    assert_eq!(a["first_seen"], format_micros(now - DAY));
    assert_eq!(a["last_seen"], hers[0]["time"]);
    assert_eq!(a["details_since"], a["first_seen"]);
    let counts = |v: &Value| -> Vec<(String, u64)> { ranking(v) };
    assert_eq!(
        counts(&a["by_integration"]),
        [("custom".to_string(), 10), ("trailhub".to_string(), 2)]
    );
    assert_eq!(
        counts(&a["by_action"]),
        [
            ("login".to_string(), 5),
            ("update".to_string(), 3),
            ("export".to_string(), 2),
            ("read".to_string(), 2)
        ]
    );
    assert_eq!(
        a["logins"],
        json!({"succeeded": 2, "failed": 2, "unknown": 1})
    );
    assert_eq!(a["sessions"], 3);
    assert_eq!(
        counts(&a["browsers"]),
        [
            ("Firefox".to_string(), 4),
            ("Chrome".to_string(), 3),
            ("okta-sdk-python".to_string(), 3)
        ]
    );
    assert_eq!(
        counts(&a["operating_systems"]),
        [
            ("Windows 10".to_string(), 4),
            ("Mac OSX".to_string(), 3),
            ("unknown".to_string(), 3)
        ]
    );
    assert_eq!(
        counts(&a["device_types"]),
        [("desktop".to_string(), 7), ("api_client".to_string(), 3)]
    );
    // no geo database here: the vendor's locations, where it gave one
    assert_eq!(
        counts(&a["countries"]),
        [("GB".to_string(), 5), ("DE".to_string(), 2)]
    );
    assert_eq!(
        counts(&a["ip_addresses"]),
        [
            ("81.2.69.142".to_string(), 5),
            ("2a02:cf40::7".to_string(), 3),
            ("203.0.113.9".to_string(), 2)
        ]
    );
    // the newest events in full, as the timeline lists them
    let recent: Vec<&Value> = a["recent"].as_array().expect("recent").iter().collect();
    assert_eq!(recent.len(), 12);
    assert_eq!(recent, hers.iter().collect::<Vec<_>>());

    // nobody of that name: 404; a name too long: 400
    let (status, body) = hub.get("/api/v1/actors/nobody", Some(&viewer)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let long = "x".repeat(1025);
    let (status, body) = hub
        .get(&format!("/api/v1/actors/{long}"), Some(&viewer))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .expect("m")
        .contains("`id`"));
    let (status, _) = hub
        .get("/api/v1/actors/u-alice?tz=UTC", Some(&viewer))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // the CLI, through the running hub
    let remote = ["--hub", hub.url.as_str(), "--token", ADMIN];
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["actor", "alice@example.com"];
    args.extend(remote);
    let (ok, out) = cli(elsewhere.path(), &args);
    assert!(ok, "{out}");
    assert!(out.contains("actor u-alice (Alice Liddell"), "{out}");
    assert!(
        out.contains("logins: 2 succeeded, 2 failed; sessions: 3"),
        "{out}"
    );
    let mut args = vec!["actor", "u-alice", "--format", "json"];
    args.extend(remote);
    let (ok, out) = cli(elsewhere.path(), &args);
    assert!(ok, "{out}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["total"], 12);
    let mut args = vec!["summary", "--tz", "Asia/Kolkata"];
    args.extend(remote);
    let (ok, out) = cli(elsewhere.path(), &args);
    assert!(ok, "{out}");
    assert!(out.contains("time zone Asia/Kolkata"), "{out}");
    assert!(out.contains("integrations in error: 0"), "{out}");
    let mut args = vec!["summary", "--tz", "Nowhere/Land"];
    args.extend(remote);
    let (ok, out) = cli(elsewhere.path(), &args);
    assert!(!ok, "{out}");
    assert!(out.contains("`tz`"), "{out}");
    hub.stop().await;
}

#[tokio::test]
async fn past_its_cap_an_actors_breakdowns_cover_the_newest_events_and_say_so() {
    let hub = TestHub::start().await;
    let now = now_micros();
    let n = trailhub::insight::actor::DETAIL_CAP as i64 + 50;
    let lines: Vec<Value> = (0..n)
        .map(|i| {
            let action = if i < 50 { "login" } else { "read" };
            event(&format!("many-{i}"), now - DAY + i * 1000, "u-busy", action)
        })
        .collect();
    for chunk in lines.chunks(5000) {
        hub.ingest(chunk).await;
    }
    let (status, a) = hub.get("/api/v1/actors/u-busy", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    // the total and the first event are exact (counted from the index)
    assert_eq!(a["total"], n);
    assert_eq!(a["first_seen"], format_micros(now - DAY));
    assert_eq!(a["capped"], json!({"total": false, "details": true}));
    // the breakdowns cover the newest DETAIL_CAP: the 50 oldest (the logins) are not in them
    assert_eq!(a["details_events"], n - 50);
    assert_eq!(a["details_since"], format_micros(now - DAY + 50 * 1000));
    assert_eq!(
        ranking(&a["by_action"]),
        [("read".to_string(), (n - 50) as u64)]
    );
    assert_eq!(a["logins"]["failed"], 0);
    assert_eq!(a["recent"].as_array().expect("recent").len(), 20);
    hub.stop().await;
}

/// The source ids of a related list, in order.
fn sources(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("list")
        .iter()
        .map(|r| {
            r["event"]["source_id"]
                .as_str()
                .expect("source")
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn related_events_are_the_nearest_on_each_side_by_target_and_session() {
    let hub = TestHub::start().await;
    let t0 = now_micros() - 10 * DAY;
    let on = |id: &str, offset: i64, targets: Value, session: Option<&str>| {
        json!({
            "time": format_micros(t0 + offset),
            "source_id": id,
            "event_type": "repo.change",
            "action": "update",
            "actor": {"id": "u1"},
            "targets": targets,
            "session_id": session,
        })
    };
    let repo_x = json!([{"type": "repo", "id": "repo-x"}]);
    let lines = vec![
        on("A", -3 * HOUR, repo_x.clone(), None),
        on("B", -2 * HOUR, repo_x.clone(), None),
        on("C", -HOUR, repo_x.clone(), None),
        on(
            "S1",
            -30 * MINUTE,
            json!([{"type": "repo", "id": "repo-y"}]),
            Some("sess-42"),
        ),
        on(
            "E",
            0,
            json!([{"type": "repo", "id": "repo-x"}, {"type": "team", "id": "core"}]),
            Some("sess-42"),
        ),
        on("S2", 10 * MINUTE, json!([]), Some("sess-42")),
        on("D", HOUR, repo_x.clone(), None),
        // shares the target and the session: listed once, with both
        on("F", 2 * HOUR, repo_x.clone(), Some("sess-42")),
        // far after: found by a wider window
        on("G", 30 * HOUR, repo_x.clone(), None),
        on("T", 5 * DAY, json!([{"type": "team", "id": "core"}]), None),
        // not related, though the index finds them: a target named repo-x with another id; another
        // session made of the same words
        on(
            "N1",
            -10 * MINUTE,
            json!([{"type": "repo", "id": "other", "name": "repo-x"}]),
            None,
        ),
        on("N2", 20 * MINUTE, json!([]), Some("42-sess")),
        on(
            "N3",
            5 * MINUTE,
            json!([{"type": "repo", "id": "repo-z"}]),
            None,
        ),
    ];
    hub.ingest(&lines).await;
    let all = hub.all_events("", 1000).await;
    let id_of = |source: &str| {
        all.iter()
            .find(|e| e["source_id"] == source)
            .and_then(|e| e["id"].as_str())
            .expect("stored")
            .to_string()
    };
    let e = id_of("E");
    let (status, r) = hub
        .get(&format!("/api/v1/events/{e}/related"), Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["event"], e.as_str());
    assert_eq!(r["limit"], 10);
    assert_eq!(
        r["targets"],
        json!([{"type": "repo", "id": "repo-x"}, {"type": "team", "id": "core"}])
    );
    assert_eq!(r["session_id"], "sess-42");
    assert_eq!(sources(&r["before"]), ["S1", "C", "B", "A"]);
    assert_eq!(sources(&r["after"]), ["S2", "D", "F", "G", "T"]);
    assert_eq!(r["before"][0]["via"], json!(["session"]));
    assert_eq!(r["before"][1]["via"], json!(["target:repo-x"]));
    assert_eq!(r["after"][2]["via"], json!(["target:repo-x", "session"]));
    assert_eq!(r["after"][4]["via"], json!(["target:core"]));
    assert_eq!(r["capped"], json!({"before": false, "after": false}));

    // the nearest `limit` on each side
    let (_, r) = hub
        .get(&format!("/api/v1/events/{e}/related?limit=2"), Some(ADMIN))
        .await;
    assert_eq!(sources(&r["before"]), ["S1", "C"]);
    assert_eq!(sources(&r["after"]), ["S2", "D"]);

    // from another event: A has nothing before it, and E's session does not count for A
    let (_, r) = hub
        .get(
            &format!("/api/v1/events/{}/related?limit=3", id_of("A")),
            Some(ADMIN),
        )
        .await;
    assert_eq!(sources(&r["before"]), Vec::<String>::new());
    assert_eq!(sources(&r["after"]), ["B", "C", "E"]);
    assert_eq!(r["session_id"], Value::Null);

    // unknown and malformed ids: 404; bad limits: 400 naming `limit`
    for id in ["ffffffffffffff00", "not-an-id"] {
        let (status, body) = hub
            .get(&format!("/api/v1/events/{id}/related"), Some(ADMIN))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {body}");
    }
    for limit in ["0", "101", "ten", "-1"] {
        let (status, body) = hub
            .get(
                &format!("/api/v1/events/{e}/related?limit={limit}"),
                Some(ADMIN),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{limit}: {body}");
        assert!(body["error"]["message"]
            .as_str()
            .expect("m")
            .contains("`limit`"));
    }
    let (status, _) = hub
        .get(&format!("/api/v1/events/{e}/related?limti=3"), Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    hub.stop().await;
}
