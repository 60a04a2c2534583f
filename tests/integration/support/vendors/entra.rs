//! Microsoft Graph audit logs (`entra_audits`, `entra_signins`): client credentials at
//! `POST /{tenant}/oauth2/v2.0/token`, `GET /v1.0/auditLogs/{directoryAudits,signIns}` with
//! `$filter=<field> ge <t>`, `$top`, newest first, an absolute `@odata.nextLink` with `$skiptoken`

use serde_json::{json, Value};

use super::super::emu::{client_credentials, records, EmuState, Page, Refusal, Request, Vendor};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Entra {
    Audits,
    SignIns,
}

const AUDIT: &str = include_str!("../../../../fixtures/entra_audits/directory_audits/page.json");
const SIGNIN: &str = include_str!("../../../../fixtures/entra_signins/sign_ins/page.json");

/// Graph writes 7 fractional digits (100 ns ticks).
fn graph_time(t: i64, seq: u64) -> String {
    let dt = chrono::DateTime::from_timestamp_micros(t).expect("time");
    format!(
        "{}.{:06}{}Z",
        dt.format("%Y-%m-%dT%H:%M:%S"),
        t.rem_euclid(1_000_000),
        seq % 10
    )
}

impl Entra {
    fn time_field(self) -> &'static str {
        match self {
            Entra::Audits => "activityDateTime",
            Entra::SignIns => "createdDateTime",
        }
    }
}

impl Vendor for Entra {
    fn connector(&self) -> &'static str {
        match self {
            Entra::Audits => "entra_audits",
            Entra::SignIns => "entra_signins",
        }
    }

    fn config(&self, url: &str) -> Value {
        json!({"base_url": format!("{url}/v1.0"), "login_url": url,
            "tenant_id": "contoso.onmicrosoft.com"})
    }

    fn credentials(&self, client_id: &str, secret: &str) -> Value {
        json!({"client_id": client_id, "client_secret": secret})
    }

    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value) {
        match self {
            Entra::Audits => {
                let page: Value = serde_json::from_str(AUDIT).expect("fixture");
                let mut r = page["value"][0].clone();
                let id = format!("Directory_{tag}_{seq:06}");
                let activities = [
                    "Add member to group",
                    "Add user",
                    "Update user",
                    "Delete user",
                ];
                r["id"] = json!(id);
                r["activityDateTime"] = json!(graph_time(micros, seq));
                r["activityDisplayName"] = json!(activities[seq as usize % activities.len()]);
                (micros, id, r)
            }
            Entra::SignIns => {
                let page: Value = serde_json::from_str(SIGNIN).expect("fixture");
                let mut r = page["value"][0].clone();
                let id = format!("{tag:08x}-{seq:04x}-4ee5-be62-ff5a759b0100");
                r["id"] = json!(id);
                r["createdDateTime"] = json!(graph_time(micros, seq));
                (micros, id, r)
            }
        }
    }

    fn authorized(&self, req: &Request, state: &EmuState) -> bool {
        state.token_valid(req.bearer())
    }

    fn token(&self, req: &Request, state: &mut EmuState) -> Option<(u16, Value)> {
        Some(client_credentials(req, state, |form, _| {
            form.get("scope").map(String::as_str) == Some("https://graph.microsoft.com/.default")
        }))
    }

    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal> {
        let field = self.time_field();
        let since = match req.param("$filter") {
            Some(f) => {
                let parts: Vec<&str> = f.split_whitespace().collect();
                match parts.as_slice() {
                    [name, "ge", t] if *name == field => chrono::DateTime::parse_from_rfc3339(t)
                        .map_err(|_| (400, format!("bad datetime literal {t}")))?
                        .timestamp_micros(),
                    _ => return Err((400, format!("unsupported $filter {f}"))),
                }
            }
            None => i64::MIN,
        };
        if *self == Entra::Audits && req.param("$orderby") != Some("activityDateTime desc") {
            return Err((
                400,
                "the emulator expects $orderby=activityDateTime desc".into(),
            ));
        }
        let matching = state.events.since(since);
        let offset = req.offset("$skiptoken", "o", state);
        let n = req.page_size("$top", state.page_size, state);
        let page = matching.newest(offset, n);
        let base = &state.base;
        let mut body = json!({
            "@odata.context": format!("{base}/v1.0/$metadata#auditLogs"),
            "value": records(&page),
        });
        if offset + page.len() < matching.len() {
            let mut next = reqwest::Url::parse(&format!("{base}{}", req.path)).expect("url");
            next.query_pairs_mut()
                .append_pair("$top", &n.to_string())
                .append_pair("$skiptoken", &format!("o{}", offset + page.len()));
            for name in ["$filter", "$orderby"] {
                if let Some(v) = req.param(name) {
                    next.query_pairs_mut().append_pair(name, v);
                }
            }
            body["@odata.nextLink"] = json!(next.to_string());
        }
        Ok(Page::body(body))
    }
}
