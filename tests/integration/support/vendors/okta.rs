//! Okta's System Log in polling mode: persistence order, `since` then `after`, a next link on
//! every page (the last one too), `SSWS` tokens

use serde_json::{json, Value};

use super::super::emu::{Budget, EmuEvent, EmuState, Page, Refusal, Request, Vendor};

pub struct Okta;

const TEMPLATE: &str = include_str!("../../../../fixtures/okta/logs/page.json");

const ACTIONS: [&str; 4] = [
    "user.session.start",
    "user.lifecycle.create",
    "group.user_membership.add",
    "user.session.end",
];

impl Vendor for Okta {
    fn connector(&self) -> &'static str {
        "okta"
    }

    fn config(&self, url: &str) -> Value {
        json!({"base_url": url})
    }

    fn credentials(&self, _client_id: &str, secret: &str) -> Value {
        json!({"token": secret})
    }

    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value) {
        let template: Vec<Value> = serde_json::from_str(TEMPLATE).expect("fixture");
        let mut record = template[0].clone();
        let id = format!("okta-{tag}-{seq:06}-598c-11ef-8478-2b7584bf8d5a");
        record["uuid"] = json!(id);
        record["published"] = json!(super::super::emu::rfc3339_millis(micros));
        record["eventType"] = json!(ACTIONS[seq as usize % ACTIONS.len()]);
        (micros / 1000 * 1000, id, record)
    }

    fn authorized(&self, req: &Request, state: &EmuState) -> bool {
        req.authorization == format!("SSWS {}", state.secret)
    }

    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal> {
        let since = req.time("since").unwrap_or(i64::MIN);
        // a repeating vendor starts each page at the last record handed out, even when nothing
        // new came since: the walk must still end
        let after = req
            .param("after")
            .and_then(|a| a.strip_prefix('s'))
            .and_then(|a| a.parse::<u64>().ok())
            .map(|a| state.repeat_offset(a as usize) as u64)
            .unwrap_or(0);
        let n = req.page_size("limit", state.page_size, state);
        // persistence (insertion) order, so late events still come after `after`
        let page: Vec<&EmuEvent> = state
            .events
            .iter()
            .filter(|e| e.seq > after && e.time >= since)
            .take(n)
            .collect();
        let last = page.last().map(|e| e.seq).unwrap_or(after);
        let base = &state.base;
        let mut next = reqwest::Url::parse(&format!("{base}/api/v1/logs")).expect("url");
        next.query_pairs_mut()
            .append_pair("limit", &n.to_string())
            .append_pair("sortOrder", "ASCENDING")
            .append_pair("after", &format!("s{last}"));
        if let Some(since) = req.param("since") {
            next.query_pairs_mut().append_pair("since", since);
        }
        let link = format!("<{base}/api/v1/logs?self=1>; rel=\"self\", <{next}>; rel=\"next\"");
        Ok(Page::records(&page, Some(link)))
    }

    fn budget(&self) -> Option<Budget> {
        Some(super::BOTH_RATELIMIT_SPELLINGS)
    }
}
