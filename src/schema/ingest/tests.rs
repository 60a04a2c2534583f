//! Unit tests of line validation: the fast path agrees with the full validator, defaults and
//! content hashes, and errors that name the field.

use super::*;
use serde_json::json;

fn custom() -> IntegrationRef {
    IntegrationRef {
        id: "custom".into(),
        name: "custom".into(),
        connector: "custom".into(),
    }
}

/// The fast path accepts a line only when the full validator accepts it, with the same
/// event (the raw payload kept as sent instead of re-serialised).
#[test]
fn the_fast_path_agrees_with_the_validator() {
    let lines = [
        r#"{"time":"2024-01-01T00:00:00Z","source_id":"a","event_type":"x.y","action":"login","actor":{"id":"u"}}"#,
        r#"{"time":"2024-01-01T00:00:00.123456789+02:00","source_id":"b","event_type":"x","action":"read","category":"data_access","outcome":"failure","severity":"high","actor":{"id":"u","name":"N","email":"e@x","type":"user","ip":"2001:db8::1","user_agent":"ua","location":{"city":"Oslo","latitude":59.9}},"targets":[{"type":"repo","id":"r","name":"R"}],"changes":[{"field":"f","old":1,"new":{"k":[1,2]}}],"session_id":"s","description":"d","raw":{"z":1,"a":"\u00e9"},"id":"x","ingested_at":"y","integration":{"id":"q"}}"#,
        r#"{"time":"2024-01-01T00:00:00Z","source_id":"c","event_type":"x","action":"read","actor":{"id":"u"},"raw":null}"#,
        r#"{"time":"2024-01-01T00:00:00Z","source_id":"c","event_type":"x","action":"jump","actor":{"id":"u"}}"#,
        r#"{"time":"2024-01-01T00:00:00Z","event_type":"x","action":"read","actor":{"id":"u"}}"#,
        r#"{"time":"2024-01-01T00:00:00Z","source_id":"","event_type":"x","action":"read","actor":{"id":"u"}}"#,
        r#"{"time":"yesterday","source_id":"d","event_type":"x","action":"read","actor":{"id":"u"}}"#,
        r#"{"time":"2024-01-01T00:00:00Z","source_id":"e","event_type":"x","action":"read","actor":{"id":"u","ip":"10.0.0.999"}}"#,
        r#"{"time":"2024-01-01T00:00:00Z","source_id":"f","event_type":"x","action":"read","actor":{"id":"u"},"extra":1}"#,
        r#"{"time":"2024-01-01T00:00:00Z","source_id":"g","event_type":"x","action":"read","actor":{"id":""}}"#,
        r#"{"time":"2024-01-01T00:00:00Z","source_id":"h","event_type":"x","action":"read","actor":{"id":"u"},"targets":[{"type":"t"}]}"#,
        r#"{"time":"2024-01-01T00:00:00Z","source_id":"i","source_id":"j","event_type":"x","action":"read","actor":{"id":"u"}}"#,
        r#"{"time":"2024-01-01T00:00:00Z","source_id":"k","event_type":"x","action":"read","actor":{"id":"u"},"changes":[{"field":""}]}"#,
        r#"{"time":"2024-01-01T00:00:00Z","source_id":7,"event_type":"x","action":"read","actor":{"id":"u"}}"#,
        r#"{"time":"2024-01-01T00:00:00Z","source_id":"l","event_type":"x","action":"read","actor":{"id":"u","location":{"latitude":"n"}}}"#,
    ];
    let mut fast_taken = 0;
    for line in lines {
        let v: Value = serde_json::from_str(line).expect("test lines are JSON");
        let slow = parse_ingest_line(&v, Some(line), &custom(), 5);
        match parse_ingest_line_fast(line, &custom(), 5) {
            None => {}
            Some(fast) => {
                fast_taken += 1;
                let slow = slow.expect("the validator accepts what the fast path accepts");
                let raw = |e: &Event| serde_json::from_str::<Value>(e.raw.get()).expect("raw");
                assert_eq!(raw(&fast), raw(&slow), "{line}");
                let mut fast = serde_json::to_value(&fast).expect("json");
                let mut slow = serde_json::to_value(&slow).expect("json");
                fast["raw"] = Value::Null;
                slow["raw"] = Value::Null;
                assert_eq!(fast, slow, "{line}");
            }
        }
    }
    assert_eq!(
        fast_taken, 3,
        "the three valid lines with a source id go the fast way"
    );
    assert_eq!(
        single_line_json("{\n\t\"a\": [1,\r\n 2]\n}"),
        "{\"a\": [1, 2]}"
    );
}

#[test]
fn minimal_line_gets_defaults_and_a_content_hash() {
    let v = json!({"time": "2024-01-01T00:00:00Z", "event_type": "app.login", "action": "login", "actor": {"id": "alice"}});
    let e = parse_ingest_line(&v, None, &custom(), 0).expect("valid");
    assert_eq!(e.category, Category::Other);
    assert_eq!(e.outcome, Outcome::Unknown);
    assert!(e.source_id.starts_with("sha256:"));
    let reordered = json!({"actor": {"id": "alice"}, "action": "login", "event_type": "app.login", "time": "2024-01-01T00:00:00Z", "id": "x"});
    assert_eq!(e.source_id, content_hash(&reordered));
}

#[test]
fn errors_name_the_field() {
    let cases = [
        (
            json!({"event_type": "x", "action": "login", "actor": {"id": "a"}}),
            "`time` is required",
        ),
        (
            json!({"time": "yesterday", "event_type": "x", "action": "login", "actor": {"id": "a"}}),
            "`time`: not an RFC 3339",
        ),
        (
            json!({"time": "2024-01-01T00:00:00Z", "event_type": "x", "action": "jump", "actor": {"id": "a"}}),
            "`action`: expected one of",
        ),
        (
            json!({"time": "2024-01-01T00:00:00Z", "event_type": "x", "action": "login", "actor": {}}),
            "`actor.id` is required",
        ),
        (
            json!({"time": "2024-01-01T00:00:00Z", "event_type": "x", "action": "login", "actor": {"id": 5}}),
            "`actor.id`: expected a string",
        ),
        (
            json!({"time": "2024-01-01T00:00:00Z", "event_type": "x", "action": "login", "actor": {"id": "a", "ip": "999.1.1.1"}}),
            "`actor.ip`",
        ),
        (
            json!({"time": "2024-01-01T00:00:00Z", "event_type": "x", "action": "login", "actor": {"id": "a"}, "colour": 1}),
            "unknown field `colour`",
        ),
        (
            json!({"time": "2024-01-01T00:00:00Z", "event_type": "x", "action": "login", "actor": {"id": "a"}, "targets": [{"id": "r"}]}),
            "`targets[0].type` is required",
        ),
        (json!([1, 2]), "line must be a JSON object"),
        (
            json!({"time": "1969-12-31T23:59:59Z", "event_type": "x", "action": "login", "actor": {"id": "a"}}),
            "`time`: outside the accepted range 1970-01-01T00:00:00Z",
        ),
        (
            json!({"time": "9999-12-31T23:59:59-05:00", "event_type": "x", "action": "login", "actor": {"id": "a"}}),
            "`time`: outside the accepted range",
        ),
    ];
    for (value, want) in cases {
        let got = parse_ingest_line(&value, None, &custom(), 0).expect_err("must be rejected");
        assert!(got.0.contains(want), "{value}: got {got}, want {want}");
    }
}
