//! schemas/event.schema.json is normative: every event the hub emits validates against it, and
//! the ingest validator accepts and rejects the same lines as `$defs/ingest_event`

use serde_json::{json, Value};

use crate::support::data::*;
use crate::support::hub::*;

fn schema() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/event.schema.json"
    ))
    .expect("schema file");
    serde_json::from_str(&text).expect("schema is JSON")
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .expect("schema compiles")
}

#[tokio::test]
async fn every_emitted_event_validates_against_the_schema() {
    let hub = TestHub::start().await;
    let mut lines = varied_events("s", 200, 86_400, 2);
    lines.push(json!({
        "time": "2024-05-01T00:00:00+02:00", "event_type": "full.event", "action": "update", "category": "user_management",
        "outcome": "success", "severity": "high", "session_id": "s1", "description": "everything set",
        "actor": {"id": "a", "name": "A", "email": "a@x.io", "type": "service", "ip": "::1", "user_agent": "curl/8",
                  "location": {"city": "Oslo", "region": null, "country": "NO", "latitude": 59.9, "longitude": 10.7}},
        "targets": [{"type": "user", "id": "t1", "name": "T"}, {"type": "group", "id": "g1"}],
        "changes": [{"field": "role", "old": "member", "new": "owner"}, {"field": "quota", "old": 1, "new": null}],
        "raw": {"anything": [true, 1.5, "x"]}
    }));
    hub.ingest(&lines).await;
    hub.mint("viewer").await;
    let (_, export) = hub.get_text("/api/v1/events/export?format=ndjson").await;

    let schema = schema();
    let v = validator(&schema);
    let mut checked = 0;
    let listed = hub.all_events("", 1000).await;
    let exported: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .collect();
    for event in listed.iter().chain(exported.iter()) {
        if let Err(e) = v.validate(event) {
            panic!("event does not validate: {e}\n{event}");
        }
        checked += 1;
    }
    // 201 ingested + token.create; the export adds its own audit event to the listing.
    assert_eq!(listed.len(), 203);
    assert!(checked >= 2 * 202);
    let id = listed[0]["id"].as_str().expect("id");
    let (_, detail) = hub.get(&format!("/api/v1/events/{id}"), Some(ADMIN)).await;
    assert!(v.is_valid(&detail));
    hub.stop().await;
}

#[test]
fn ingest_validator_agrees_with_the_schema() {
    let mut schema = schema();
    let defs = schema["$defs"].take();
    let ingest_schema = json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "$defs": defs, "$ref": "#/$defs/ingest_event"});
    let v = validator(&ingest_schema);
    let base = json!({"time": "2024-05-01T00:00:00Z", "event_type": "a.b", "action": "read", "actor": {"id": "u"}});
    let with = |path: &[&str], value: Value| {
        let mut e = base.clone();
        let mut cur = &mut e;
        for p in &path[..path.len() - 1] {
            cur = &mut cur[*p];
        }
        cur[path[path.len() - 1]] = value;
        e
    };
    let without = |key: &str| {
        let mut e = base.clone();
        e.as_object_mut().expect("object").remove(key);
        e
    };
    let cases = vec![
        base.clone(),
        without("time"),
        without("action"),
        without("event_type"),
        without("actor"),
        with(&["actor", "id"], json!("")),
        with(&["actor", "id"], json!(7)),
        with(&["actor", "ip"], json!("10.0.0.300")),
        with(&["actor", "ip"], json!("fe80::1")),
        with(&["actor", "type"], json!("robot")),
        with(&["actor", "type"], json!("api_key")),
        with(&["actor", "hair"], json!("red")),
        with(&["action"], json!("fly")),
        with(&["action"], json!("grant")),
        with(&["category"], json!("finance")),
        with(&["category"], json!(null)),
        with(&["outcome"], json!("failure")),
        with(&["severity"], json!("critical")),
        with(&["time"], json!("2024-05-01")),
        with(&["time"], json!("2024-05-01T00:00:00.123456789+05:30")),
        with(&["event_type"], json!("")),
        with(&["source_id"], json!("")),
        with(&["source_id"], json!("abc")),
        with(&["targets"], json!([{"type": "repo", "id": "r"}])),
        with(&["targets"], json!([{"type": "repo"}])),
        with(&["targets"], json!({"type": "repo", "id": "r"})),
        with(
            &["changes"],
            json!([{"field": "x", "old": 1, "new": {"a": 2}}]),
        ),
        with(&["changes"], json!([{"old": 1}])),
        with(&["raw"], json!({"k": "v"})),
        with(&["extra"], json!(1)),
        with(&["id"], json!("0000000000000001")),
        json!("just a string"),
    ];
    let integration = trailhub::ingest::custom_integration();
    for case in cases {
        let schema_ok = v.is_valid(&case);
        let rust_ok = trailhub::schema::parse_ingest_line(&case, None, &integration, 0).is_ok();
        assert_eq!(
            schema_ok, rust_ok,
            "schema and validator disagree on {case}"
        );
    }
}

/// Every connector's recorded pages normalise into events that validate against the schema;
/// a connector without a fixture that yields events fails this test.
#[test]
fn every_connector_fixture_normalises_into_valid_events() {
    let schema = schema();
    let v = validator(&schema);
    let registry = trailhub::connectors::Registry::builtin().expect("definitions load");
    for connector in registry.all().filter(|c| !c.push_only()) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(&connector.name);
        let mut files = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|x| x == "json") {
                    files.push(path);
                }
            }
        }
        let mut validated = 0;
        for file in files {
            let body = std::fs::read_to_string(&file).expect("fixture");
            let Ok(results) = trailhub::connectors::replay(connector, &body) else {
                continue; // an error body or a fragment, not a page
            };
            for event in results.into_iter().flatten() {
                let mut json = serde_json::to_value(&event).expect("serialises");
                json["id"] = json!("0000000000000001");
                if let Err(e) = v.validate(&json) {
                    panic!(
                        "{}: {}: event does not validate: {e}\n{json}",
                        connector.name,
                        file.display()
                    );
                }
                validated += 1;
            }
        }
        assert!(
            validated > 0,
            "connector {} has no fixture page that yields events",
            connector.name
        );
    }
}
