//! Auth0's Management API logs: client credentials with the API's `audience` at
//! `POST /oauth/token`; `GET /api/v2/logs` either `from=<log_id>&take=n` in log_id (arrival)
//! order with `Link rel="next"` (the same URL on an empty page), or a search
//! (`q=date:[t TO *]`, `sort=date:1`, `per_page`); x-ratelimit-* headers

use serde_json::{json, Value};

use super::super::emu::{
    client_credentials, rfc3339_millis, Budget, EmuEvent, EmuState, Page, Refusal, Request, Vendor,
};

pub struct Auth0;

const PAGE: &str = include_str!("../../../../fixtures/auth0/logs/page.json");

impl Vendor for Auth0 {
    fn connector(&self) -> &'static str {
        "auth0"
    }

    fn config(&self, url: &str) -> Value {
        json!({"base_url": url})
    }

    fn credentials(&self, client_id: &str, secret: &str) -> Value {
        json!({"client_id": client_id, "client_secret": secret})
    }

    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value) {
        let page: Vec<Value> = serde_json::from_str(PAGE).expect("fixture");
        let mut r = page[seq as usize % page.len()].clone();
        // fixed width: string order is arrival order, as Auth0's log ids
        let id = format!("900{tag:020}{seq:012}");
        r["_id"] = json!(id);
        r["log_id"] = json!(id);
        r["date"] = json!(rfc3339_millis(micros));
        (micros / 1000 * 1000, id, r)
    }

    fn authorized(&self, req: &Request, state: &EmuState) -> bool {
        state.token_valid(req.bearer())
    }

    fn token(&self, req: &Request, state: &mut EmuState) -> Option<(u16, Value)> {
        Some(client_credentials(req, state, |form, s| {
            form.get("audience") == Some(&format!("{}/api/v2/", s.base))
        }))
    }

    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal> {
        if let Some(from) = req.param("from") {
            // checkpoint: every other parameter but take is ignored
            let n = req
                .param("take")
                .and_then(|t| t.parse::<usize>().ok())
                .unwrap_or(50);
            if n > 100 {
                return Err((400, "take must be at most 100".into()));
            }
            let n = n.min(state.page_size).max(1);
            let mut after: Vec<&EmuEvent> = state
                .events
                .iter()
                .filter(|e| e.id.as_str() > from)
                .collect();
            after.sort_by(|a, b| a.id.cmp(&b.id));
            let mut page: Vec<&EmuEvent> = after.into_iter().take(n).collect();
            if state.repeat_across_pages && !page.is_empty() {
                if let Some(same) = state.events.iter().find(|e| e.id == *from) {
                    page.insert(0, same);
                    page.truncate(n);
                }
            }
            let last = page.last().map_or(from, |e| e.id.as_str());
            let take = req.param("take").unwrap_or("50");
            let link = super::super::emu::next_link(
                &state.base,
                "/api/v2/logs",
                &[("take", take), ("from", last)],
            );
            return Ok(Page::records(&page, Some(link)));
        }
        // search: q=date:[<t> TO *], sort=date:1, per_page ≤ 100, page 0 (no Link)
        let since = match req.param("q") {
            Some(text) => {
                let inner = text
                    .strip_prefix("date:[")
                    .and_then(|r| r.strip_suffix(" TO *]"))
                    .ok_or((400, format!("unsupported q {text}")))?;
                chrono::DateTime::parse_from_rfc3339(inner)
                    .map_err(|_| (400, format!("bad date {inner}")))?
                    .timestamp_micros()
            }
            None => i64::MIN,
        };
        if req.param("sort") != Some("date:1") {
            return Err((400, "the emulator expects sort=date:1".into()));
        }
        let n = req.page_size("per_page", 50, state);
        let page = state.events.since(since).oldest(0, n);
        Ok(Page::records(&page, None))
    }

    fn budget(&self) -> Option<Budget> {
        Some(Budget {
            headers: &[("x-ratelimit-remaining", "x-ratelimit-reset")],
            limit: Some(("x-ratelimit-limit", 50)),
            remaining: 49,
        })
    }
}
