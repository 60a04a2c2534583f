//! Slack's audit logs: newest first, `oldest` and `latest` (epoch s, inclusive), `limit`, the next cursor in
//! `response_metadata.next_cursor`; bad tokens are a 200 with `ok: false`

use serde_json::{json, Value};

use super::super::emu::{records, Budget, EmuState, Page, Refusal, Request, Vendor};

pub struct Slack;

const TEMPLATE: &str = include_str!("../../../../fixtures/slack/logs/page.json");

const ACTIONS: [&str; 4] = [
    "user_login",
    "user_created",
    "file_downloaded",
    "channel_created",
];

impl Vendor for Slack {
    fn connector(&self) -> &'static str {
        "slack"
    }

    fn config(&self, url: &str) -> Value {
        json!({"base_url": url})
    }

    fn credentials(&self, _client_id: &str, secret: &str) -> Value {
        json!({"token": secret})
    }

    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value) {
        let secs = micros / 1_000_000;
        let template: Value = serde_json::from_str(TEMPLATE).expect("fixture");
        let mut record = template["entries"][0].clone();
        let id = format!("slack-{tag}-{seq:06}");
        record["id"] = json!(id);
        record["date_create"] = json!(secs);
        record["action"] = json!(ACTIONS[seq as usize % ACTIONS.len()]);
        (secs * 1_000_000, id, record)
    }

    fn authorized(&self, req: &Request, state: &EmuState) -> bool {
        req.authorization == format!("Bearer {}", state.secret)
    }

    fn unauthorized(&self) -> (u16, Value) {
        // the Web API answers 200 with an error code in the body
        (200, json!({"ok": false, "error": "invalid_auth"}))
    }

    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal> {
        let oldest = req
            .param("oldest")
            .and_then(|o| o.parse::<i64>().ok())
            .map(|o| o * 1_000_000)
            .unwrap_or(i64::MIN);
        // both bounds inclusive
        let latest = req
            .param("latest")
            .and_then(|l| l.parse::<i64>().ok())
            .map(|l| l.saturating_mul(1_000_000))
            .unwrap_or(i64::MAX);
        let matching = state.events.since(oldest).until(latest);
        let offset = req.offset("cursor", "c", state);
        let n = req.page_size("limit", state.page_size, state);
        let page = matching.newest(offset, n);
        let next = if offset + page.len() < matching.len() {
            format!("c{}", offset + page.len())
        } else {
            String::new()
        };
        Ok(Page::body(
            json!({"ok": true, "entries": records(&page), "response_metadata": {"next_cursor": next}}),
        ))
    }

    fn budget(&self) -> Option<Budget> {
        Some(super::BOTH_RATELIMIT_SPELLINGS)
    }
}
