//! Unit tests of the integration records, requests and status.

use super::*;

#[test]
fn integration_requests_do_not_debug_print_credentials() {
    let planted = "planted-credential-value-1234";
    let new: NewIntegration = serde_json::from_value(serde_json::json!({
        "name": "acme", "connector": "okta", "config": {"base_url": "https://acme.okta.com"},
        "credentials": {"token": planted, "webhook_secret": planted},
    }))
    .expect("parses");
    let patch: IntegrationPatch =
        serde_json::from_value(serde_json::json!({"credentials": {"token": planted}}))
            .expect("parses");
    for shown in [
        format!("{new:?}"),
        format!("{patch:?}"),
        format!("{new:#?}"),
    ] {
        assert!(!shown.contains(planted), "{shown}");
        assert!(shown.contains("token"), "names are shown: {shown}");
    }
}
use crate::time::DAY;

fn record(backfill: Option<&str>) -> IntegrationRecord {
    IntegrationRecord {
        v: RECORD_VERSION,
        id: "int_x".into(),
        name: "x".into(),
        connector: "okta".into(),
        config: BTreeMap::new(),
        credential_names: Vec::new(),
        sealed_credentials: String::new(),
        schedule: None,
        backfill: backfill.map(str::to_string),
        idle_backoff: None,
        requests_per_minute: None,
        paused: false,
        allow_insecure_http: false,
        filters: Default::default(),
        created_at: 0,
        updated_at: 0,
    }
}

#[test]
fn backfill_is_clamped_to_retention() {
    let registry = Registry::builtin().expect("valid");
    let backfill = |name: &str, wanted: Option<&str>| {
        let c = registry.get(name).expect("built in");
        let poll = c.poll.as_ref().expect("a polled connector");
        record(wanted).backfill_micros(poll, c.retention)
    };
    assert_eq!(backfill("okta", Some("P30D")), 30 * DAY);
    assert_eq!(backfill("okta", Some("P2Y")), 90 * DAY);
    assert_eq!(backfill("okta", None), 7 * DAY);
    assert_eq!(backfill("slack", Some("P2Y")), 730 * DAY);
}

#[test]
fn status_states() {
    let mut s = Status::default();
    assert_eq!(s.state(false), State::Backfilling);
    s.backfill_done = true;
    assert_eq!(s.state(false), State::Live);
    s.last_error = Some("credentials rejected (HTTP 401)".into());
    assert_eq!(s.state(false), State::Error);
    assert_eq!(s.state(true), State::Paused);
    s.caught_up_at = Some(10 * crate::time::MICROS_PER_SEC);
    assert_eq!(s.lag_seconds(25 * crate::time::MICROS_PER_SEC), Some(15));
}
