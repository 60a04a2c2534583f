//! GitLab audit events: `PRIVATE-TOKEN`, `/api/v4/groups/:id/audit_events` or
//! `/api/v4/audit_events`, keyset (`pagination=keyset&order_by=id&sort=desc`), `created_after`,
//! `Link rel="next"`, ratelimit-* headers

use serde_json::{json, Value};

use super::super::emu::{
    rfc3339_millis, Budget, EmuEvent, EmuState, Page, Refusal, Request, Vendor,
};

pub struct Gitlab;

const PAGE: &str = include_str!("../../../../fixtures/gitlab/instance_audit_events/page.json");

fn numeric_id(e: &EmuEvent) -> u64 {
    e.id.parse().unwrap_or(0)
}

impl Vendor for Gitlab {
    fn connector(&self) -> &'static str {
        "gitlab"
    }

    fn config(&self, url: &str) -> Value {
        json!({"base_url": url, "group": "60"})
    }

    fn credentials(&self, _client_id: &str, secret: &str) -> Value {
        json!({"token": secret})
    }

    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value) {
        let page: Vec<Value> = serde_json::from_str(PAGE).expect("fixture");
        let mut r = page[seq as usize % page.len()].clone();
        // ids are integers, increasing with arrival
        let id = tag * 1_000_000 + seq;
        r["id"] = json!(id);
        r["created_at"] = json!(rfc3339_millis(micros));
        (micros / 1000 * 1000, id.to_string(), r)
    }

    fn authorized(&self, req: &Request, state: &EmuState) -> bool {
        req.header("private-token") == Some(state.secret.as_str())
    }

    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal> {
        let path = req.path;
        if path != "/api/v4/audit_events" && path != "/api/v4/groups/60/audit_events" {
            return Err((404, format!("no route {path}")));
        }
        for (k, v) in [
            ("pagination", "keyset"),
            ("order_by", "id"),
            ("sort", "desc"),
        ] {
            if req.param(k) != Some(v) {
                return Err((400, format!("keyset needs {k}={v}")));
            }
        }
        let since = req.time("created_after")?;
        let until = req.until("created_before")?;
        let before: u64 = req
            .param("cursor")
            .and_then(|c| c.strip_prefix('k'))
            .and_then(|c| c.parse().ok())
            .map(|c: u64| if state.repeat_across_pages { c + 1 } else { c })
            .unwrap_or(u64::MAX);
        let n = req.page_size("per_page", 20, state).min(100);
        let mut matching: Vec<&EmuEvent> = state
            .events
            .iter()
            .filter(|e| e.time >= since && e.time <= until && numeric_id(e) < before)
            .collect();
        matching.sort_by_key(|e| std::cmp::Reverse(numeric_id(e)));
        let page: Vec<&EmuEvent> = matching.iter().take(n).copied().collect();
        let link = match page.last() {
            Some(last) if matching.len() > page.len() => {
                let cursor = format!("k{}", last.id);
                let mut pairs: Vec<(&str, &str)> = req
                    .query
                    .iter()
                    .filter(|(k, _)| k.as_str() != "cursor")
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                pairs.sort();
                pairs.push(("cursor", cursor.as_str()));
                Some(super::super::emu::next_link(&state.base, path, &pairs))
            }
            _ => None,
        };
        Ok(Page::records(&page, link))
    }

    fn budget(&self) -> Option<Budget> {
        Some(Budget {
            headers: &[("ratelimit-remaining", "ratelimit-reset")],
            limit: None,
            remaining: 199,
        })
    }
}
