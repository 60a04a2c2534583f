//! Alert rules over HTTP: each kind of condition fires exactly when it must — counts per group
//! in a sliding window of event time (late events included), numeric values, a night window in
//! a named zone — once per burst, recorded as `alert.fired` events of `trailhub`, with the
//! state kept across a restart; and every bound and error of the rule API.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::hub::{TestHub, ADMIN};
use crate::support::receiver::Receiver;
use trailhub::time::{format_micros, now_micros, MICROS_PER_SEC};

fn login(source_id: &str, actor: &str, outcome: &str, time: i64) -> Value {
    json!({
        "time": format_micros(time),
        "source_id": source_id,
        "event_type": "user.session.start",
        "action": "login",
        "category": "authentication",
        "outcome": outcome,
        "actor": {"id": actor, "name": format!("{actor} name"), "type": "user", "ip": "203.0.113.9"},
    })
}

async fn create_rule(hub: &TestHub, rule: Value) -> Value {
    let (status, body) = hub
        .post(
            "/api/v1/alerts/rules",
            Some(ADMIN),
            "application/json",
            rule.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn firings(hub: &TestHub, rule: &str) -> Vec<Value> {
    let (status, body) = hub
        .get(
            &format!("/api/v1/alerts?rule={rule}&limit=200"),
            Some(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["alerts"].as_array().expect("alerts").clone()
}

/// Waits until `rule` has `n` firings, then a little longer to see that no more come.
async fn expect_firings(hub: &TestHub, rule: &str, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let got = firings(hub, rule).await;
        if got.len() >= n || std::time::Instant::now() > deadline {
            // the runner evaluates within a batch or a 1 s tick: 1.5 s more shows nothing else comes
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            let got = firings(hub, rule).await;
            assert_eq!(got.len(), n, "firings of {rule}: {got:#?}");
            return got;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

const S: i64 = MICROS_PER_SEC;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_failed_logins_fires_once_per_actor_late_events_included() {
    let hub = TestHub::start().await;
    // the firings go to a signed webhook: one delivery each, whose body names the firing
    let receiver = Receiver::start(Vec::new()).await;
    let (status, channel) = hub
        .post(
            "/api/v1/channels",
            Some(ADMIN),
            "application/json",
            json!({"name": "soc", "kind": "webhook", "url": format!("{}/hook", receiver.url)})
                .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{channel}");
    let rule = create_rule(
        &hub,
        json!({
            "channels": [channel["id"]],
            "name": "5+ failed logins in 10 minutes",
            "filter": {"action": "login", "outcome": "failure"},
            "condition": {"type": "count", "threshold": 5, "window_secs": 600},
            "group_by": "actor.id",
            "priority": "high",
            "message": "{{alert.count}} failed logins for {{actor.name}} from {{actor.ip}}",
        }),
    )
    .await;
    let id = rule["id"].as_str().expect("id");
    assert_eq!(
        rule["suppress_secs"], 600,
        "one burst fires once by default"
    );
    let base = now_micros() - 3600 * S;
    let mut lines = Vec::new();
    for i in 0..4 {
        lines.push(login(
            &format!("ann-{i}"),
            "ann",
            "failure",
            base + i * 60 * S,
        ));
        lines.push(login(
            &format!("bob-{i}"),
            "bob",
            "failure",
            base + i * 60 * S,
        ));
    }
    // successes and other actors' failures do not count for ann
    lines.push(login("ann-ok", "ann", "success", base + 100 * S));
    hub.ingest(&lines).await;
    expect_firings(&hub, id, 0).await;

    // ann's fifth failure arrives late: it happened before her fourth
    hub.ingest(&[login("ann-late", "ann", "failure", base + 30 * S)])
        .await;
    let fired = expect_firings(&hub, id, 1).await;
    let f = &fired[0];
    assert_eq!(f["group"], "ann");
    assert_eq!(f["count"], 5);
    assert_eq!(f["priority"], "high");
    assert_eq!(
        f["message"],
        "5 failed logins for ann name from 203.0.113.9"
    );
    assert_eq!(f["window_from"], format_micros(base));
    assert_eq!(f["test"], false);

    // the burst goes on: still one firing; bob's fifth is his own
    hub.ingest(&[
        login("ann-4", "ann", "failure", base + 300 * S),
        login("bob-4", "bob", "failure", base + 500 * S),
        // a replay of an event already stored is a duplicate, never counted again
        login("bob-3", "bob", "failure", base + 180 * S),
    ])
    .await;
    let fired = expect_firings(&hub, id, 2).await;
    assert_eq!(fired[0]["group"], "bob", "newest first");

    // each firing delivered once, signed, its webhook-id the delivery the history names
    let got = receiver.wait_for(2, 20).await;
    assert_eq!(got.len(), 2);
    for firing in &fired {
        let delivery = firing["deliveries"][0]["delivery"]
            .as_str()
            .expect("delivery");
        assert_eq!(
            firing["deliveries"][0]["status"]["status"], "delivered",
            "{firing}"
        );
        let hit = got
            .iter()
            .find(|r| r.header("webhook-id") == delivery)
            .expect("delivered under its id");
        assert!(hit.header("webhook-signature").starts_with("v1,"));
        let body = hit.json();
        assert_eq!(body["type"], "trailhub.notification");
        assert_eq!(body["data"]["type"], "alert.fired");
        assert_eq!(body["data"]["firing"]["id"], firing["id"]);
        assert_eq!(body["text"], firing["message"]);
    }

    // each firing is an event of the hub's own integration, as severe as the rule's priority
    let (_, page) = hub
        .get(
            "/api/v1/events?integration=trailhub&event_type=alert.fired",
            Some(ADMIN),
        )
        .await;
    let records = page["events"].as_array().expect("events");
    assert_eq!(records.len(), 2, "{page}");
    assert!(records.iter().all(|r| r["severity"] == "high"));
    assert_eq!(records[1]["description"], f["message"]);
    // and the rule's creation is audited
    let (_, page) = hub
        .get(
            "/api/v1/events?integration=trailhub&event_type=alert_rule.create",
            Some(ADMIN),
        )
        .await;
    assert_eq!(page["events"].as_array().expect("events").len(), 1);
    let (status, one) = hub
        .get(
            &format!("/api/v1/alerts/{}", f["id"].as_str().expect("id")),
            Some(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], f["id"]);
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_and_night_window_rules_fire_on_what_they_name_and_nothing_else() {
    let hub = TestHub::start().await;
    let export = create_rule(
        &hub,
        json!({
            "name": "an export of 1,000+ records",
            "filter": {"action": "export"},
            "condition": {"type": "value", "field": "raw.records", "op": ">=", "value": 1000},
            "message": "{{actor.id}} exported {{raw.records}} records",
        }),
    )
    .await;
    // Paris is UTC+1 in January
    let night = create_rule(
        &hub,
        json!({
            "name": "login at night",
            "filter": {"action": "login", "outcome": "success"},
            "schedule": {"timezone": "Europe/Paris", "from": "22:00", "to": "06:00"},
        }),
    )
    .await;
    // a catch-all rule: fires on every event stored after it, its own creation record included,
    // but never on the hub's own alert records
    let all = create_rule(&hub, json!({"name": "everything"})).await;
    let export_line = |id: &str, records: Value| {
        json!({"time": "2026-01-15T12:00:00Z", "source_id": id, "event_type": "report.export",
            "action": "export", "actor": {"id": "carol"}, "raw": {"records": records}})
    };
    let at = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .expect("time")
            .timestamp_micros()
    };
    hub.ingest(&[
        export_line("x1", json!(999)),
        export_line("x2", json!(1500)),
        export_line("x3", json!("2000")),
        export_line("x4", json!("lots")),
        // 23:30 and 05:59 in Paris fire; 06:00 and noon do not
        login("n1", "dan", "success", at("2026-01-15T22:30:00Z")),
        login("n2", "dan", "success", at("2026-01-16T04:59:00Z")),
        login("n3", "dan", "success", at("2026-01-16T05:00:00Z")),
        login("n4", "dan", "success", at("2026-01-16T11:00:00Z")),
    ])
    .await;
    let fired = expect_firings(&hub, export["id"].as_str().expect("id"), 2).await;
    let mut messages: Vec<&str> = fired
        .iter()
        .map(|f| f["message"].as_str().expect("m"))
        .collect();
    messages.sort();
    assert_eq!(
        messages,
        ["carol exported 1500 records", "carol exported 2000 records"]
    );
    let fired = expect_firings(&hub, night["id"].as_str().expect("id"), 2).await;
    let mut times: Vec<&str> = fired
        .iter()
        .map(|f| f["event_time"].as_str().expect("t"))
        .collect();
    times.sort();
    assert_eq!(
        times,
        ["2026-01-15T22:30:00.000000Z", "2026-01-16T04:59:00.000000Z"]
    );
    expect_firings(&hub, all["id"].as_str().expect("id"), 8 + 1).await;
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_survive_a_restart_and_a_changed_rule_starts_over() {
    let hub = TestHub::start().await;
    let rule = create_rule(
        &hub,
        json!({
            "name": "3 failures",
            "filter": {"outcome": "failure"},
            "condition": {"type": "count", "threshold": 3, "window_secs": 3600},
        }),
    )
    .await;
    let id = rule["id"].as_str().expect("id").to_string();
    let base = now_micros() - 600 * S;
    hub.ingest(&[
        login("r1", "eve", "failure", base),
        login("r2", "eve", "failure", base + S),
    ])
    .await;
    // the runner saves its cursor and counts at the stop
    let dir = hub.stop().await;
    let running = crate::support::hub::start_hub(dir.path()).await;
    let hub2 = TestHub::adopt(running, dir);
    hub2.ingest(&[login("r3", "eve", "failure", base + 2 * S)])
        .await;
    let fired = expect_firings(&hub2, &id, 1).await;
    assert_eq!(fired[0]["count"], 3, "the two before the restart counted");

    // a changed rule is a new version: its counts start from the change
    let changed = hub2
        .http
        .patch(format!("{}/api/v1/alerts/rules/{id}", hub2.url))
        .bearer_auth(ADMIN)
        .json(&json!({"condition": {"type": "count", "threshold": 2, "window_secs": 3600}, "suppress_secs": 0}))
        .send()
        .await
        .expect("patch");
    assert_eq!(changed.status(), StatusCode::OK);
    hub2.ingest(&[login("r4", "eve", "failure", base + 3 * S)])
        .await;
    expect_firings(&hub2, &id, 1).await;
    hub2.ingest(&[login("r5", "eve", "failure", base + 4 * S)])
        .await;
    let fired = expect_firings(&hub2, &id, 2).await;
    assert_eq!(fired[0]["rule_version"], 2);
    assert_eq!(fired[0]["count"], 2);

    // test-fire: on a named event, marked as a test
    let (status, test) = hub2
        .post(
            &format!("/api/v1/alerts/rules/{id}/test"),
            Some(ADMIN),
            "application/json",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{test}");
    assert_eq!(test["test"], true);
    assert_eq!(test["rule_id"], id.as_str());
    let (status, e) = hub2
        .post(
            &format!("/api/v1/alerts/rules/{id}/test"),
            Some(ADMIN),
            "application/json",
            json!({"event_id": "00000000000fffff"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    let deleted = hub2
        .http
        .delete(format!("{}/api/v1/alerts/rules/{id}", hub2.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, _) = hub2
        .get(&format!("/api/v1/alerts/rules/{id}"), Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    hub2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_input_is_bounded_and_every_refusal_names_its_field() {
    let hub = TestHub::start().await;
    let refused = |body: Value, status: StatusCode, field: &'static str| {
        let hub = &hub;
        async move {
            let (got, answer) = hub
                .post(
                    "/api/v1/alerts/rules",
                    Some(ADMIN),
                    "application/json",
                    body.to_string(),
                )
                .await;
            assert_eq!(got, status, "{body}: {answer}");
            let message = answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(message.contains(field), "{body}: {message}");
        }
    };
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    refused(json!({"filter": {}}), unprocessable, "name").await;
    refused(
        json!({"name": "x", "filter": {"actr": "a"}}),
        unprocessable,
        "filter.actr",
    )
    .await;
    refused(
        json!({"name": "x", "filter": {"since": "1h"}}),
        unprocessable,
        "filter.since",
    )
    .await;
    refused(json!({"name": "x", "condition": {"type": "count", "threshold": 100000, "window_secs": 60}}), unprocessable, "condition.threshold").await;
    refused(json!({"name": "x", "condition": {"type": "count", "threshold": 5, "window_secs": 99999999}}), unprocessable, "condition.window_secs").await;
    refused(
        json!({"name": "x", "condition": {"type": "value", "field": "", "op": ">", "value": 1}}),
        unprocessable,
        "condition.field",
    )
    .await;
    refused(json!({"name": "x", "schedule": {"timezone": "Nowhere/Land", "from": "22:00", "to": "06:00"}}), unprocessable, "schedule.timezone").await;
    refused(
        json!({"name": "x", "message": "{{unclosed"}),
        unprocessable,
        "message",
    )
    .await;
    refused(
        json!({"name": "x", "channels": ["ch_missing"]}),
        unprocessable,
        "channels[0]",
    )
    .await;
    refused(
        json!({"name": "x", "suppress_secs": 99999999}),
        unprocessable,
        "suppress_secs",
    )
    .await;
    refused(
        json!({"name": "x", "colour": "red"}),
        StatusCode::BAD_REQUEST,
        "colour",
    )
    .await;
    refused(json!({"name": "x".repeat(200)}), unprocessable, "name").await;
    refused(
        json!({"name": "x", "description": "d".repeat(100_000)}),
        StatusCode::PAYLOAD_TOO_LARGE,
        "bytes",
    )
    .await;
    // a viewer reads rules but does not write them
    let viewer = hub.mint("viewer").await;
    let (status, _) = hub
        .post(
            "/api/v1/alerts/rules",
            Some(&viewer),
            "application/json",
            json!({"name": "v"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = hub.get("/api/v1/alerts/rules", Some(&viewer)).await;
    assert_eq!(status, StatusCode::OK);
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("cursor=zz", "cursor"),
        ("rule=../x", "rule"),
        ("colour=1", "colour"),
    ] {
        let (status, answer) = hub
            .get(&format!("/api/v1/alerts?{query}"), Some(ADMIN))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(field),
            "{answer}"
        );
    }

    // at most MAX_RULES rules
    let mut made = 0;
    while made < trailhub::alerts::MAX_RULES {
        let batch: Vec<_> = (made..(made + 25).min(trailhub::alerts::MAX_RULES))
            .map(|i| {
                hub.post(
                    "/api/v1/alerts/rules",
                    Some(ADMIN),
                    "application/json",
                    json!({"name": format!("rule {i}"), "filter": {"actor": format!("a{i}")}})
                        .to_string(),
                )
            })
            .collect();
        for (status, body) in futures_util::future::join_all(batch).await {
            assert_eq!(status, StatusCode::CREATED, "{body}");
            made += 1;
        }
    }
    let (status, answer) = hub
        .post(
            "/api/v1/alerts/rules",
            Some(ADMIN),
            "application/json",
            json!({"name": "one too many"}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    // a thousand rules loaded: an event still fires exactly its own
    hub.ingest(&[json!({"time": format_micros(now_micros()), "source_id": "k1", "event_type": "t", "action": "read", "actor": {"id": "a777"}})]).await;
    let (_, rules) = hub.get("/api/v1/alerts/rules", Some(ADMIN)).await;
    let rules = rules["rules"].as_array().expect("rules");
    assert_eq!(rules.len(), trailhub::alerts::MAX_RULES);
    let r777 = rules
        .iter()
        .find(|r| r["name"] == "rule 777")
        .expect("rule 777");
    expect_firings(&hub, r777["id"].as_str().expect("id"), 1).await;
    let (_, all) = hub.get("/api/v1/alerts?limit=200", Some(ADMIN)).await;
    assert_eq!(all["alerts"].as_array().expect("alerts").len(), 1, "{all}");
    hub.stop().await;
}

/// kill -9 while the runner is still evaluating a flood of failed logins, three times: after
/// each restart it replays from its saved cursor, and in the end every burst has fired exactly
/// once — none lost, none doubled — in the history and as `alert.fired` records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_evaluating_loses_and_doubles_no_firing() {
    use crate::support::hub::{free_port, wait_ready, Api, HubProcess};
    const ACTORS: usize = 150;
    const ROUNDS: usize = 3;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let api = Api::at(&url, ADMIN);
    let mut child = HubProcess::spawn(dir.path(), port);
    wait_ready(&http, &url).await;
    let (status, rule) = api
        .json(
            reqwest::Method::POST,
            "/api/v1/alerts/rules",
            Some(json!({
                "name": "5 failed logins per actor",
                "filter": {"action": "login", "outcome": "failure"},
                "condition": {"type": "count", "threshold": 5, "window_secs": 600},
                "group_by": "actor.id",
            })),
        )
        .await;
    assert_eq!(status, 201, "{rule}");
    let id = rule["id"].as_str().expect("id").to_string();
    let base = now_micros() - 3600 * S;
    for round in 0..ROUNDS {
        // five failures of every actor, interleaved over five batches
        for k in 0..5 {
            let lines: Vec<Value> = (0..ACTORS)
                .map(|a| {
                    login(
                        &format!("k{round}-{a}-{k}"),
                        &format!("r{round}-u{a}"),
                        "failure",
                        base + (round as i64 * 900 + k as i64) * S,
                    )
                })
                .collect();
            let body = crate::support::data::ndjson(&lines);
            let resp = http
                .post(format!("{url}/api/v1/events"))
                .bearer_auth(ADMIN)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .expect("ingest");
            assert_eq!(resp.status(), StatusCode::OK);
        }
        // the last batch is acknowledged (stored); the runner is still at work
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        child = HubProcess::spawn(dir.path(), port);
        wait_ready(&http, &url).await;
    }
    let want = ACTORS * ROUNDS;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let count = |v: &Value| v["alerts"].as_array().map(Vec::len).unwrap_or(0);
    let mut all = Vec::new();
    loop {
        all.clear();
        let mut cursor = String::new();
        loop {
            let page = api
                .get(&format!("/api/v1/alerts?rule={id}&limit=200{cursor}"))
                .await;
            all.extend(page["alerts"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) if count(&page) > 0 => cursor = format!("&cursor={c}"),
                _ => break,
            }
        }
        if all.len() >= want || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let groups: std::collections::BTreeSet<&str> =
        all.iter().filter_map(|f| f["group"].as_str()).collect();
    assert_eq!(all.len(), want, "firings after {ROUNDS} kills");
    assert_eq!(groups.len(), want, "one firing per actor's burst");
    assert!(
        all.iter().all(|f| f["count"] == 5),
        "each saw its 5 failures"
    );
    // and the hub's own records hold each firing once
    let mut records = std::collections::BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let page = api
            .get(&format!(
                "/api/v1/events?integration=trailhub&event_type=alert.fired&since=30d&limit=1000{cursor}"
            ))
            .await;
        for e in page["events"].as_array().cloned().unwrap_or_default() {
            assert!(
                records.insert(e["source_id"].as_str().unwrap_or("").to_string()),
                "alert.fired stored twice: {e}"
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(records.len(), want);
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// `trailhub alerts`: a rule from a file, listed, refused with its field named, test-fired,
/// disabled, its history, and removed — through the running hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_alerts_cli_manages_rules_and_reads_the_history() {
    use crate::support::hub::cli;
    let hub = TestHub::start().await;
    hub.ingest(&[login("c1", "mallory", "failure", now_micros() - 60 * S)])
        .await;
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let remote = ["--hub", hub.url.as_str(), "--token", ADMIN];
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(remote);
        cli(elsewhere.path(), &all)
    };
    let file = elsewhere.path().join("rule.json");
    std::fs::write(
        &file,
        json!({"name": "any failed login", "filter": {"action": "login", "outcome": "failure"},
            "priority": "high", "message": "{{actor.name}} failed"})
        .to_string(),
    )
    .expect("write");
    let path = file.to_str().expect("path");
    let (ok, out) = run(&["alerts", "add", path]);
    assert!(ok, "{out}");
    let rule: Value = serde_json::from_str(&out).expect("json");
    let id = rule["id"].as_str().expect("id").to_string();
    let (ok, out) = run(&["alerts", "rules"]);
    assert!(ok, "{out}");
    assert!(
        out.contains(&id) && out.contains("any failed login") && out.contains("high"),
        "{out}"
    );

    // a refusal names the field and fails the command
    std::fs::write(
        &file,
        json!({"name": "x", "condition": {"type": "count", "threshold": 0, "window_secs": 60}})
            .to_string(),
    )
    .expect("write");
    let (ok, out) = run(&["alerts", "add", path]);
    assert!(!ok, "{out}");
    assert!(out.contains("condition.threshold"), "{out}");
    std::fs::write(&file, "{not json").expect("write");
    let (ok, out) = run(&["alerts", "add", path]);
    assert!(!ok && out.contains("not JSON"), "{out}");

    let (ok, out) = run(&["alerts", "test", &id]);
    assert!(ok, "{out}");
    let firing: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(firing["test"], true);
    assert_eq!(firing["message"], "mallory name failed");
    let (ok, out) = run(&["alerts", "history", "--rule", &id]);
    assert!(ok, "{out}");
    assert!(
        out.contains("any failed login (test)") && out.contains("mallory name failed"),
        "{out}"
    );
    let fid = firing["id"].as_str().expect("firing id");
    let (ok, out) = run(&["alerts", "show", fid]);
    assert!(ok && out.contains(fid), "{out}");

    let (ok, out) = run(&["alerts", "disable", &id]);
    assert!(ok && out.contains("disabled (version 2)"), "{out}");
    let (ok, out) = run(&["alerts", "rule", &id]);
    assert!(ok, "{out}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).expect("json")["enabled"],
        false
    );
    let (ok, out) = run(&["alerts", "remove", &id]);
    assert!(ok, "{out}");
    let (ok, out) = run(&["alerts", "rule", &id]);
    assert!(!ok && out.contains("404"), "{out}");
    hub.stop().await;
}
