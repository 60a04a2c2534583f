//! Jira's audit records: basic auth (`email:api_token`), `offset`/`limit`/`from`, newest first,
//! `{offset, limit, total, records}`

use serde_json::{json, Value};

use super::super::emu::{records, EmuState, Page, Refusal, Request, Vendor};

pub struct Jira;

const PAGE: &str = include_str!("../../../../fixtures/jira/auditing_record/page.json");

impl Vendor for Jira {
    fn connector(&self) -> &'static str {
        "jira"
    }

    fn config(&self, url: &str) -> Value {
        json!({"base_url": url})
    }

    fn credentials(&self, client_id: &str, secret: &str) -> Value {
        json!({"email": client_id, "api_token": secret})
    }

    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value) {
        let page: Value = serde_json::from_str(PAGE).expect("fixture");
        let mut r = page["records"][0].clone();
        let ms = micros / 1000;
        let id = tag * 1_000_000 + seq;
        r["id"] = json!(id);
        r["created"] = json!(chrono::DateTime::from_timestamp_millis(ms)
            .expect("time")
            .format("%Y-%m-%dT%H:%M:%S%.3f+0000")
            .to_string());
        (ms * 1000, id.to_string(), r)
    }

    fn authorized(&self, req: &Request, state: &EmuState) -> bool {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", state.client_id, state.secret));
        req.authorization == format!("Basic {basic}")
    }

    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal> {
        if req.path != "/rest/api/3/auditing/record" {
            return Err((404, format!("no route {}", req.path)));
        }
        let since = req.time("from")?;
        let offset = req.offset("offset", "", state);
        let limit = req.page_size("limit", 1000, state);
        let matching = state.events.since(since).until(req.until("to")?);
        let page = matching.newest(offset, limit);
        Ok(Page::body(
            json!({"offset": offset, "limit": limit, "total": matching.len(), "records": records(&page)}),
        ))
    }
}
