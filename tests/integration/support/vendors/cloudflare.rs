//! Cloudflare's account audit logs (v1): bearer token, `since`, `direction=asc`,
//! `page`/`per_page` until `result` is empty

use serde_json::{json, Value};

use super::super::emu::{records, EmuState, Page, Refusal, Request, Vendor};

pub struct Cloudflare;

const PAGE: &str = include_str!("../../../../fixtures/cloudflare/audit_logs/page.json");

impl Vendor for Cloudflare {
    fn connector(&self) -> &'static str {
        "cloudflare"
    }

    fn config(&self, url: &str) -> Value {
        json!({"base_url": url, "account_id": "acc123"})
    }

    fn credentials(&self, _client_id: &str, secret: &str) -> Value {
        json!({"token": secret})
    }

    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value) {
        let page: Value = serde_json::from_str(PAGE).expect("fixture");
        let mut r = page["result"][0].clone();
        let secs = micros / 1_000_000;
        let id = format!("d5b0f326-{tag:04x}-4452-8858-{seq:012x}");
        r["id"] = json!(id);
        r["when"] = json!(chrono::DateTime::from_timestamp(secs, 0)
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        (secs * 1_000_000, id, r)
    }

    fn authorized(&self, req: &Request, state: &EmuState) -> bool {
        req.bearer() == state.secret
    }

    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal> {
        if req.path != "/client/v4/accounts/acc123/audit_logs" {
            return Err((404, format!("no route {}", req.path)));
        }
        if req.param("direction") != Some("asc") {
            return Err((400, "the emulator expects direction=asc".into()));
        }
        let since = req.time("since")?;
        let page_no: usize = req
            .param("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1)
            .max(1);
        let per_page = req.page_size("per_page", 25, state);
        let matching = state.events.since(since).until(req.until("before")?);
        let skip = state.repeat_offset((page_no - 1) * per_page);
        let page = matching.oldest(skip, per_page);
        Ok(Page::body(
            json!({"success": true, "errors": [], "messages": [], "result": records(&page),
                "result_info": {"page": page_no, "per_page": per_page, "count": page.len(), "total_count": matching.len()}}),
        ))
    }
}
