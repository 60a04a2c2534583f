//! 1Password's Events API (`auditevents`, `itemusages`, `signinattempts`): `POST` with
//! `{limit, start_time}` or `{cursor}`, answering `{cursor, has_more, items}` in arrival order;
//! the cursor is durable

use serde_json::{json, Value};

use super::super::emu::{records, stream_page, EmuState, Page, Refusal, Request, Vendor};

#[derive(Clone, Copy)]
pub enum OnePassword {
    AuditEvents,
    ItemUsages,
    SignInAttempts,
}

const AUDIT: &str = include_str!("../../../../fixtures/onepassword_audit/auditevents/page.json");
const ITEM_USAGES: &str =
    include_str!("../../../../fixtures/onepassword_itemusages/itemusages/page.json");
const SIGN_INS: &str =
    include_str!("../../../../fixtures/onepassword_signins/signinattempts/page.json");

/// Sign-in categories the connector maps to an outcome.
const SIGN_IN_CATEGORIES: [&str; 3] = ["success", "credentials_failed", "firewall_failed"];

impl OnePassword {
    fn feed(self) -> &'static str {
        match self {
            OnePassword::AuditEvents => "auditevents",
            OnePassword::ItemUsages => "itemusages",
            OnePassword::SignInAttempts => "signinattempts",
        }
    }
}

impl Vendor for OnePassword {
    fn connector(&self) -> &'static str {
        match self {
            OnePassword::AuditEvents => "onepassword_audit",
            OnePassword::ItemUsages => "onepassword_itemusages",
            OnePassword::SignInAttempts => "onepassword_signins",
        }
    }

    fn config(&self, url: &str) -> Value {
        json!({"base_url": url})
    }

    fn credentials(&self, _client_id: &str, secret: &str) -> Value {
        json!({"token": secret})
    }

    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value) {
        let fixture = match self {
            OnePassword::AuditEvents => AUDIT,
            OnePassword::ItemUsages => ITEM_USAGES,
            OnePassword::SignInAttempts => SIGN_INS,
        };
        let page: Value = serde_json::from_str(fixture).expect("fixture");
        let mut r = page["items"][0].clone();
        let secs = micros / 1_000_000;
        let id = format!("OP{tag:06}{seq:018}");
        r["uuid"] = json!(id);
        // RFC 3339 with an offset, as the API writes it
        let offset = chrono::FixedOffset::west_opt(3 * 3600).expect("offset");
        r["timestamp"] = json!(chrono::DateTime::from_timestamp(secs, 0)
            .expect("time")
            .with_timezone(&offset)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false));
        if let OnePassword::SignInAttempts = self {
            r["category"] = json!(SIGN_IN_CATEGORIES[seq as usize % SIGN_IN_CATEGORIES.len()]);
        }
        (secs * 1_000_000, id, r)
    }

    fn authorized(&self, req: &Request, state: &EmuState) -> bool {
        req.bearer() == state.secret
    }

    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal> {
        let route = format!("/api/v1/{}", self.feed());
        if *req.method != axum::http::Method::POST || req.path != route {
            return Err((404, format!("no route {} {}", req.method, req.path)));
        }
        let body: Value =
            serde_json::from_str(req.body).map_err(|_| (400, "body is not JSON".to_string()))?;
        // the cursor names the last item handed out and the start time of the stream
        let (after, since, limit) = match body.get("cursor") {
            Some(c) => {
                let text = c.as_str().unwrap_or("");
                let (seq, since) = text
                    .strip_prefix('c')
                    .and_then(|r| r.split_once('_'))
                    .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<i64>().ok()?)))
                    .ok_or((400, format!("invalid cursor {text}")))?;
                if body.as_object().map(|o| o.len()) != Some(1) {
                    return Err((400, "a cursor request has only the cursor".into()));
                }
                (seq, since, 1000)
            }
            None => {
                let limit = body["limit"].as_u64().unwrap_or(100) as usize;
                if !(1..=1000).contains(&limit) {
                    return Err((400, "limit must be 1 to 1000".into()));
                }
                let since = match body.get("start_time").and_then(Value::as_str) {
                    Some(t) => chrono::DateTime::parse_from_rfc3339(t)
                        .map_err(|_| (400, format!("bad start_time {t}")))?
                        .timestamp_micros(),
                    None => i64::MIN,
                };
                (0, since, limit)
            }
        };
        let n = limit.min(state.page_size).max(1);
        let (page, last, more) = stream_page(state, after, since, n);
        Ok(Page::body(json!({
            "cursor": format!("c{last}_{since}"),
            "has_more": more,
            "items": records(&page),
        })))
    }
}
