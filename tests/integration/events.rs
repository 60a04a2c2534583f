//! Ingest, filters, paging, histograms, export, dedup, bad input and auth — over HTTP

use std::collections::{BTreeMap, HashSet};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::data::*;
use crate::support::hub::*;

fn time_secs(e: &Value) -> f64 {
    let t = e["time"].as_str().expect("time");
    chrono::DateTime::parse_from_rfc3339(t)
        .expect("rfc3339")
        .timestamp_micros() as f64
        / 1e6
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn every_filter_returns_exactly_the_matching_events() {
    let hub = TestHub::start().await;
    let posted = varied_events("f", 400, 3 * 86_400, 7);
    let report = hub.ingest(&posted).await;
    assert_eq!(report["stored"], 400, "{report}");

    let since = rfc3339(BASE_SECS + 86_400, 0);
    let until = rfc3339(BASE_SECS + 2 * 86_400, 0);
    let in_range = |e: &&Value| {
        let t = time_secs(e);
        t >= (BASE_SECS + 86_400) as f64 && t < (BASE_SECS + 2 * 86_400) as f64
    };
    type Pred = Box<dyn Fn(&&Value) -> bool>;
    let cases: Vec<(String, Pred)> = vec![
        (String::new(), Box::new(|_| true)),
        ("actor=u2".into(), Box::new(|e| e["actor"]["id"] == "u2")),
        (
            "actor=alice%40example.com".into(),
            Box::new(|e| e["actor"]["email"] == "alice@example.com"),
        ),
        (
            "actor=Carol%20Danvers".into(),
            Box::new(|e| e["actor"]["name"] == "Carol Danvers"),
        ),
        (
            "action=delete".into(),
            Box::new(|e| e["action"] == "delete"),
        ),
        (
            "category=configuration".into(),
            Box::new(|e| e["category"] == "configuration"),
        ),
        (
            "outcome=failure".into(),
            Box::new(|e| e["outcome"] == "failure"),
        ),
        (
            "event_type=repo.update".into(),
            Box::new(|e| e["event_type"] == "repo.update"),
        ),
        (
            "target=acme%2Fapi".into(),
            Box::new(|e| e["targets"][0]["id"] == "acme/api"),
        ),
        (
            "ip=2001:db8::1".into(),
            Box::new(|e| e["actor"]["ip"] == "2001:db8::1"),
        ),
        ("integration=custom".into(), Box::new(|_| true)),
        ("connector=custom".into(), Box::new(|_| true)),
        (
            "q=breakglass".into(),
            Box::new(|e| {
                e["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("breakglass"))
            }),
        ),
        (
            "q=Emergency+bob".into(),
            Box::new(|e| {
                e["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("emergency"))
                    && e["actor"]["id"] == "u2"
            }),
        ),
        (format!("since={since}&until={until}"), Box::new(in_range)),
        (
            format!("since={since}&until={until}&action=update&outcome=success"),
            Box::new(move |e| in_range(e) && e["action"] == "update" && e["outcome"] == "success"),
        ),
        (
            "action=delete&actor=u1&target=acme%2Fweb".into(),
            Box::new(|e| {
                e["action"] == "delete"
                    && e["actor"]["id"] == "u1"
                    && e["targets"][0]["id"] == "acme/web"
            }),
        ),
        ("actor=nobody".into(), Box::new(|_| false)),
    ];
    for (query, pred) in cases {
        let want = sorted(
            posted
                .iter()
                .filter(|e| pred(e))
                .map(|e| e["source_id"].as_str().expect("id").to_string())
                .collect(),
        );
        let got_events = hub.all_events(&query, 53).await;
        let got = sorted(source_ids(&got_events));
        assert_eq!(got, want, "query {query:?}");
        for pair in got_events.windows(2) {
            assert!(
                time_secs(&pair[0]) >= time_secs(&pair[1]),
                "{query}: not newest first"
            );
        }
    }
    hub.stop().await;
}

#[tokio::test]
async fn paging_has_no_gaps_or_repeats_while_events_keep_arriving() {
    let hub = TestHub::start().await;
    let posted = varied_events("p", 600, 86_400, 11);
    hub.ingest(&posted).await;

    let url = hub.url.clone();
    let writer = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for round in 0..30 {
            let now = chrono::Utc::now().timestamp();
            // New events (newer than everything) and late ones (older than everything).
            let lines: Vec<Value> = (0..20)
                .map(|i| {
                    let secs = if i % 2 == 0 { now } else { BASE_SECS - 86_400 + round };
                    json!({"time": rfc3339(secs, i), "source_id": format!("live-{round}-{i}"), "event_type": "x.y", "action": "read", "actor": {"id": "writer"}})
                })
                .collect();
            let resp = http
                .post(format!("{url}/api/v1/events"))
                .bearer_auth(ADMIN)
                .header("content-type", "application/x-ndjson")
                .body(ndjson(&lines))
                .send()
                .await
                .expect("sent");
            assert_eq!(resp.status(), StatusCode::OK);
        }
    });

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut last_time = f64::INFINITY;
    loop {
        let mut path = "/api/v1/events?limit=37&integration=custom".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = hub.get(&path, Some(ADMIN)).await;
        assert_eq!(status, StatusCode::OK);
        for e in page["events"].as_array().expect("events") {
            let t = time_secs(e);
            assert!(t <= last_time, "order broke");
            last_time = t;
            seen.push(e["source_id"].as_str().expect("id").to_string());
        }
        tokio::task::yield_now().await;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    writer.await.expect("writer");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "an event was served twice");
    for id in source_ids(&posted) {
        assert!(unique.contains(&id), "{id} was skipped");
    }
    hub.stop().await;
}

#[tokio::test]
async fn histogram_counts_match_the_events() {
    let hub = TestHub::start().await;
    let posted = varied_events("h", 500, 2 * 86_400, 23);
    hub.ingest(&posted).await;

    // Unaligned edges exercise rollups for whole cells and index scans for the rest.
    let since_s = BASE_SECS + 3_600 * 5 + 17 * 60 + 13;
    let until_s = BASE_SECS + 86_400 + 3_600 * 20 + 42 * 60 + 5;
    for (bucket, step) in [("1m", 60i64), ("5m", 300), ("1h", 3_600), ("1d", 86_400)] {
        for group in ["action", "actor", "outcome", "category", "integration"] {
            for extra in ["", "&outcome=failure"] {
                let path = format!(
                    "/api/v1/events/histogram?bucket={bucket}&group_by={group}&since={}&until={}{extra}",
                    rfc3339(since_s, 0),
                    rfc3339(until_s, 0)
                );
                let (status, body) = hub.get(&path, Some(ADMIN)).await;
                assert_eq!(status, StatusCode::OK, "{body}");
                let mut want: BTreeMap<(i64, String), u64> = BTreeMap::new();
                for e in &posted {
                    let t = time_secs(e);
                    if t < since_s as f64
                        || t >= until_s as f64
                        || (extra.contains("failure") && e["outcome"] != "failure")
                    {
                        continue;
                    }
                    let key = match group {
                        "actor" => e["actor"]["id"].as_str().expect("actor").to_string(),
                        "integration" => "custom".to_string(),
                        g => e[g].as_str().expect("group").to_string(),
                    };
                    let start = (t as i64).div_euclid(step) * step;
                    *want.entry((start, key)).or_default() += 1;
                }
                let mut got: BTreeMap<(i64, String), u64> = BTreeMap::new();
                let mut total = 0;
                for b in body["buckets"].as_array().expect("buckets") {
                    let start =
                        chrono::DateTime::parse_from_rfc3339(b["start"].as_str().expect("start"))
                            .expect("time")
                            .timestamp();
                    let mut bucket_sum = 0;
                    for (k, v) in b["counts"].as_object().expect("counts") {
                        let n = v.as_u64().expect("n");
                        if n > 0 {
                            got.insert((start, k.clone()), n);
                        }
                        bucket_sum += n;
                    }
                    assert_eq!(b["total"].as_u64(), Some(bucket_sum));
                    total += bucket_sum;
                }
                assert_eq!(got, want, "{path}");
                assert_eq!(total as usize, want.values().sum::<u64>() as usize);
            }
        }
    }
    let (status, body) = hub
        .get(
            "/api/v1/events/histogram?bucket=1m&since=2000-01-01T00:00:00Z",
            Some(ADMIN),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "too many buckets: {body}");
    let (status, body) = hub
        .get("/api/v1/events/histogram?bucket=2h", Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"]
        .as_str()
        .expect("msg")
        .contains("bucket"));
    hub.stop().await;
}

#[tokio::test]
async fn export_streams_every_matching_event_in_each_format() {
    let hub = TestHub::start().await;
    let posted = varied_events("x", 1500, 86_400, 5);
    hub.ingest(&posted).await;
    let want: HashSet<String> = posted
        .iter()
        .filter(|e| e["action"] == "update")
        .map(|e| e["source_id"].as_str().expect("id").to_string())
        .collect();

    let (status, text) = hub
        .get_text("/api/v1/events/export?format=ndjson&integration=custom")
        .await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson line"))
        .collect();
    assert_eq!(lines.len(), 1500);

    let (_, text) = hub
        .get_text("/api/v1/events/export?format=ndjson&action=update&integration=custom")
        .await;
    let got: HashSet<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("line")["source_id"]
                .as_str()
                .expect("id")
                .to_string()
        })
        .collect();
    assert_eq!(got, want);

    let (status, text) = hub
        .get_text("/api/v1/events/export?format=json&action=update&integration=custom")
        .await;
    assert_eq!(status, StatusCode::OK);
    let arr: Vec<Value> = serde_json::from_str(&text).expect("json array");
    assert_eq!(arr.len(), want.len());

    let (status, text) = hub
        .get_text("/api/v1/events/export?format=csv&action=update&integration=custom")
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers = reader.headers().expect("header").clone();
    assert_eq!(&headers[0], "id");
    let source_col = headers
        .iter()
        .position(|h| h == "source_id")
        .expect("column");
    let rows: HashSet<String> = reader
        .records()
        .map(|r| r.expect("row")[source_col].to_string())
        .collect();
    assert_eq!(rows, want);

    // The export itself is recorded as an admin action of the `trailhub` integration.
    let audit = hub
        .all_events("integration=trailhub&event_type=export.create", 100)
        .await;
    assert_eq!(audit.len(), 4);
    assert_eq!(audit[0]["action"], "export");
    hub.stop().await;
}

#[tokio::test]
async fn reposting_stores_nothing_twice() {
    let hub = TestHub::start().await;
    let mut posted = varied_events("d", 100, 3_600, 3);
    // Lines without source_id are identified by content.
    posted.push(json!({"time": "2024-05-01T00:00:00Z", "event_type": "a.b", "action": "read", "actor": {"id": "z"}}));
    posted.push(json!({"actor": {"id": "z"}, "action": "read", "event_type": "a.b", "time": "2024-05-01T00:00:00Z"}));
    let first = hub.ingest(&posted).await;
    assert_eq!(
        (first["stored"].as_u64(), first["duplicates"].as_u64()),
        (Some(101), Some(1)),
        "{first}"
    );
    let second = hub.ingest(&posted).await;
    assert_eq!(
        (second["stored"].as_u64(), second["duplicates"].as_u64()),
        (Some(0), Some(102)),
        "{second}"
    );
    // The same events as a JSON array, and re-ingesting an export, change nothing either.
    let (status, third) = hub
        .post(
            "/api/v1/events",
            Some(ADMIN),
            "application/json",
            Value::Array(posted.clone()).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(third["stored"], 0);
    let (_, export) = hub
        .get_text("/api/v1/events/export?format=ndjson&integration=custom")
        .await;
    let (status, fourth) = hub
        .post(
            "/api/v1/events",
            Some(ADMIN),
            "application/x-ndjson",
            export,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{fourth}");
    assert_eq!(
        (fourth["stored"].as_u64(), fourth["duplicates"].as_u64()),
        (Some(0), Some(101)),
        "{fourth}"
    );
    assert_eq!(hub.all_events("integration=custom", 1000).await.len(), 101);
    hub.stop().await;
}

#[tokio::test]
async fn bad_lines_are_reported_and_good_ones_kept() {
    let hub = TestHub::start().await;
    let good = |i: usize| {
        json!({"time": "2024-05-01T00:00:00Z", "source_id": format!("g{i}"), "event_type": "a.b", "action": "read", "actor": {"id": "u"}}).to_string()
    };
    let body = [
        good(1),
        "{not json".to_string(),
        json!({"time": "2024-05-01T00:00:00Z", "event_type": "a.b", "action": "fly", "actor": {"id": "u"}}).to_string(),
        String::new(),
        good(2),
        json!({"time": "2024-05-01T00:00:00Z", "event_type": "a.b", "action": "read"}).to_string(),
        json!({"time": 5, "event_type": "a.b", "action": "read", "actor": {"id": "u"}}).to_string(),
        "[1,2]".to_string(),
        good(3),
    ]
    .join("\n");
    let (status, report) = hub
        .post("/api/v1/events", Some(ADMIN), "application/x-ndjson", body)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["stored"], 3);
    assert_eq!(report["rejected_count"], 5);
    let rejected: Vec<(u64, String)> = report["rejected"]
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().expect("line"),
                r["error"].as_str().expect("error").to_string(),
            )
        })
        .collect();
    assert_eq!(
        rejected.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![2, 3, 6, 7, 8]
    );
    assert!(rejected[0].1.contains("not valid JSON"), "{rejected:?}");
    assert!(rejected[1].1.contains("`action`"), "{rejected:?}");
    assert!(
        rejected[2].1.contains("`actor.id` is required"),
        "{rejected:?}"
    );
    assert!(rejected[3].1.contains("`time`"), "{rejected:?}");

    // Nothing good at all: 422 and nothing stored.
    let (status, report) = hub
        .post(
            "/api/v1/events",
            Some(ADMIN),
            "application/x-ndjson",
            "{\"a\":1}\n",
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{report}");
    // A JSON array that does not parse: 400 for the whole body.
    let (status, report) = hub
        .post(
            "/api/v1/events",
            Some(ADMIN),
            "application/json",
            "[{\"time\": ",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(report["error"]["code"], "invalid_body");
    let (status, _) = hub
        .post(
            "/api/v1/events",
            Some(ADMIN),
            "application/x-ndjson",
            "   \n",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, report) = hub
        .post("/api/v1/events", Some(ADMIN), "application/xml", "<a/>")
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{report}");
    assert_eq!(hub.all_events("integration=custom", 100).await.len(), 3);

    // Bad query parameters name themselves.
    for (path, field) in [
        ("/api/v1/events?actr=u", "actr"),
        ("/api/v1/events?limit=0", "limit"),
        ("/api/v1/events?limit=1001", "limit"),
        ("/api/v1/events?cursor=zzz", "cursor"),
        ("/api/v1/events?since=yesterday", "since"),
        ("/api/v1/events?outcome=maybe", "outcome"),
        (
            "/api/v1/events?since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z",
            "since",
        ),
    ] {
        let (status, body) = hub.get(path, Some(ADMIN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            body["error"]["message"]
                .as_str()
                .expect("message")
                .contains(&format!("`{field}`")),
            "{path}: {body}"
        );
    }
    let (status, body) = hub
        .get("/api/v1/events/00000000000fffff", Some(ADMIN))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = hub.get("/api/v1/events/nope", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = hub.get("/api/v1/nothing-here", Some(ADMIN)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    hub.stop().await;
}

#[tokio::test]
async fn event_detail_has_the_raw_payload() {
    let hub = TestHub::start().await;
    let line = r#"{"time":"2024-05-01T10:00:00.123Z","event_type":"door.open","action":"execute","actor":{"id":"bob"},"raw":{"door": 7, "vendor_field": [1, 2]}}"#;
    let (status, report) = hub
        .post(
            "/api/v1/events",
            Some(ADMIN),
            "application/x-ndjson",
            format!("{line}\n"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let list = hub.all_events("actor=bob", 10).await;
    let id = list[0]["id"].as_str().expect("id");
    let (status, event) = hub.get(&format!("/api/v1/events/{id}"), Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(event["raw"], json!({"door": 7, "vendor_field": [1, 2]}));
    assert_eq!(event["time"], "2024-05-01T10:00:00.123000Z");
    assert_eq!(event["id"], id);
    hub.stop().await;
}

#[tokio::test]
async fn tokens_and_roles_guard_every_route() {
    let hub = TestHub::start().await;
    let viewer = hub.mint("viewer").await;
    let ingest = hub.mint("ingest").await;
    let line = ndjson(&[
        json!({"time": "2024-05-01T00:00:00Z", "event_type": "a.b", "action": "read", "actor": {"id": "u"}}),
    ]);

    let (status, body) = hub.get("/api/v1/events", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = hub.get("/api/v1/events", Some("th_wrong")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let resp = hub
        .http
        .get(format!("{}/api/v1/events", hub.url))
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // viewer: reads, cannot write or mint.
    assert_eq!(
        hub.get("/api/v1/events", Some(&viewer)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        hub.get("/api/v1/events/histogram", Some(&viewer)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        hub.post(
            "/api/v1/events",
            Some(&viewer),
            "application/x-ndjson",
            line.clone()
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = hub
        .post(
            "/api/v1/tokens",
            Some(&viewer),
            "application/json",
            r#"{"name":"x","role":"admin"}"#,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    assert_eq!(
        hub.get("/api/v1/tokens", Some(&viewer)).await.0,
        StatusCode::FORBIDDEN
    );

    // ingest: writes, cannot read.
    assert_eq!(
        hub.post(
            "/api/v1/events",
            Some(&ingest),
            "application/x-ndjson",
            line
        )
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        hub.get("/api/v1/events", Some(&ingest)).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        hub.get("/api/v1/events/export", Some(&ingest)).await.0,
        StatusCode::FORBIDDEN
    );

    // Bad token requests.
    let (status, body) = hub
        .post(
            "/api/v1/tokens",
            Some(ADMIN),
            "application/json",
            r#"{"name":"x","role":"root"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = hub
        .post(
            "/api/v1/tokens",
            Some(ADMIN),
            "application/json",
            r#"{"name":"x"#,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Tokens are listed without secrets, and revoked tokens stop working.
    let (status, list) = hub.get("/api/v1/tokens", Some(ADMIN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!list.to_string().contains(&viewer));
    let viewer_id = list["tokens"]
        .as_array()
        .expect("tokens")
        .iter()
        .find(|t| t["role"] == "viewer")
        .expect("viewer")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let resp = hub
        .http
        .delete(format!("{}/api/v1/tokens/{viewer_id}", hub.url))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        hub.get("/api/v1/events", Some(&viewer)).await.0,
        StatusCode::UNAUTHORIZED
    );

    // Minting and revoking are audit events.
    let audit = hub.all_events("integration=trailhub", 100).await;
    let types: Vec<&str> = audit
        .iter()
        .map(|e| e["event_type"].as_str().expect("type"))
        .collect();
    assert_eq!(types, vec!["token.revoke", "token.create", "token.create"]);
    assert!(
        !serde_json::to_string(&audit)
            .expect("json")
            .contains(&ingest),
        "a token leaked into the audit log"
    );

    // Public routes.
    let (status, health) = hub.get("/healthz", None).await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, metrics) = hub.get("/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().expect("text").to_string();
    assert!(
        metrics.contains("trailhub_events_ingested_total{integration=\"custom\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("trailhub_http_requests_total"),
        "{metrics}"
    );
    hub.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_refused_whole() {
    let hub = TestHub::start_with(|s| s.max_body_bytes = 64 * 1024).await;
    let lines = varied_events("big", 400, 3_600, 1);
    let body = ndjson(&lines);
    assert!(body.len() > 64 * 1024);
    let (status, report) = hub
        .post(
            "/api/v1/events",
            Some(ADMIN),
            "application/x-ndjson",
            body.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{report}");
    assert_eq!(report["error"]["code"], "payload_too_large");

    // Without a Content-Length (chunked), the limit still holds.
    let chunks: Vec<Result<String, std::io::Error>> =
        body.lines().map(|l| Ok(format!("{l}\n"))).collect();
    let stream = futures_stream(chunks);
    let resp = hub
        .http
        .post(format!("{}/api/v1/events", hub.url))
        .bearer_auth(ADMIN)
        .header("content-type", "application/x-ndjson")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(hub.all_events("integration=custom", 100).await.is_empty());

    // Just under the limit is fine.
    let small = ndjson(&lines[..50]);
    let (status, report) = hub
        .post("/api/v1/events", Some(ADMIN), "application/x-ndjson", small)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["stored"], 50);
    hub.stop().await;
}

fn futures_stream(
    items: Vec<Result<String, std::io::Error>>,
) -> impl tokio_stream::Stream<Item = Result<String, std::io::Error>> {
    tokio_stream::iter(items)
}

#[tokio::test]
async fn events_survive_a_restart_and_the_cli_reads_them() {
    let hub = TestHub::start().await;
    let posted = varied_events("r", 50, 3_600, 9);
    hub.ingest(&posted).await;
    let dir = hub.stop().await;

    // The CLI on the data dir (no hub running) sees them, with the same filters.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailhub"))
        .args([
            "--data-dir",
            dir.path().to_str().expect("utf8"),
            "events",
            "--actor",
            "bob@example.com",
            "--since",
            "2024-01-01T00:00:00Z",
            "--limit",
            "1000",
            "--format",
            "json",
        ])
        .output()
        .expect("cli runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: Value = serde_json::from_slice(&out.stdout).expect("json");
    let want = posted.iter().filter(|e| e["actor"]["id"] == "u2").count();
    assert_eq!(page["events"].as_array().expect("events").len(), want);

    let file = dir.path().join("more.ndjson");
    std::fs::write(&file, ndjson(&varied_events("cli", 10, 60, 4))).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailhub"))
        .args([
            "--data-dir",
            dir.path().to_str().expect("utf8"),
            "ingest",
            file.to_str().expect("utf8"),
        ])
        .output()
        .expect("cli runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["stored"], 10);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailhub"))
        .args(["--data-dir", dir.path().to_str().expect("utf8"), "events"])
        .output()
        .expect("cli runs");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("TIME"),
        "table output"
    );

    let hub = TestHub::start_with(|s| s.data_dir = dir.path().to_path_buf()).await;
    assert_eq!(hub.all_events("integration=custom", 1000).await.len(), 60);
    hub.stop().await;
}

/// Every file of the console (each `/console` route the router serves): its content type, the
/// strict CSP and `nosniff`; the page loads each script and style it serves and nothing from
/// elsewhere, with no inline script or style; no script writes HTML.
#[tokio::test]
async fn the_console_is_served_with_a_strict_content_security_policy() {
    let hub = TestHub::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let root = http
        .get(format!("{}/", hub.url))
        .send()
        .await
        .expect("root");
    assert!(root.status().is_redirection());
    assert_eq!(root.headers()["location"], "/console");
    let assets: Vec<&str> = trailhub::api::route_table()
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| p.starts_with("/console"))
        .collect();
    assert!(assets.len() >= 3, "{assets:?}");
    let mut index = String::new();
    for path in &assets {
        let kind = match path.rsplit_once('.').map(|(_, ext)| ext) {
            None => "text/html; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some(other) => panic!("{path}: a console file of unknown kind {other}"),
        };
        let resp = http
            .get(format!("{}{path}", hub.url))
            .send()
            .await
            .expect("asset");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let h = resp.headers();
        assert_eq!(h["content-type"], kind, "{path}");
        let csp = h["content-security-policy"].to_str().expect("ascii");
        for directive in [
            "default-src 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let body = resp.text().await.expect("body");
        assert!(!body.is_empty(), "{path}");
        // nothing from elsewhere: no CDN, no font service
        assert!(
            !body.contains("src=\"http")
                && !body.contains("href=\"http")
                && !body.contains("@import"),
            "{path} loads something from elsewhere"
        );
        if path.ends_with(".js") {
            // values from the API are never inserted as HTML, and no string is run as code
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!body.contains(banned), "{path} uses {banned}");
            }
        }
        if *path == "/console" {
            index = body;
        }
    }
    // the page uses every script and style served, and only those, with nothing inline
    for path in assets.iter().filter(|p| p.contains('.')) {
        let tag = if path.ends_with(".js") {
            format!("<script src=\"{path}\" defer></script>")
        } else {
            format!("<link rel=\"stylesheet\" href=\"{path}\">")
        };
        assert!(index.contains(&tag), "index.html does not load {path}");
    }
    assert_eq!(
        index.matches("<script").count(),
        assets.iter().filter(|p| p.ends_with(".js")).count(),
        "an inline script, or a script the hub does not serve"
    );
    assert!(
        !index.contains(" style=") && !index.contains("<style"),
        "inline style"
    );
    hub.stop().await;
}
