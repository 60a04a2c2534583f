//! Atlassian Admin's organization events-stream: `GET /admin/v1/orgs/{org}/events-stream`,
//! `from` (epoch ms), `limit`, `sortOrder=asc` by processing (arrival) order, a `meta.next`
//! cursor also on the last page

use serde_json::{json, Value};

use super::super::emu::{records, stream_page, EmuState, Page, Refusal, Request, Vendor};

pub struct AtlassianAdmin;

const PAGE: &str = include_str!("../../../../fixtures/atlassian_admin/events_stream/page.json");

impl Vendor for AtlassianAdmin {
    fn connector(&self) -> &'static str {
        "atlassian_admin"
    }

    fn config(&self, url: &str) -> Value {
        json!({"base_url": url, "org_id": "org-1"})
    }

    fn credentials(&self, _client_id: &str, secret: &str) -> Value {
        json!({"api_key": secret})
    }

    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value) {
        let page: Value = serde_json::from_str(PAGE).expect("fixture");
        let mut r = page["data"][0].clone();
        let id = format!("ev-{tag}-{seq:08}");
        r["id"] = json!(id);
        r["attributes"]["time"] = json!(super::super::emu::rfc3339_millis(micros));
        (micros / 1000 * 1000, id, r)
    }

    fn authorized(&self, req: &Request, state: &EmuState) -> bool {
        req.bearer() == state.secret
    }

    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal> {
        if req.path != "/admin/v1/orgs/org-1/events-stream" {
            return Err((404, format!("no route {}", req.path)));
        }
        if req.param("sortOrder") != Some("asc") {
            return Err((400, "the emulator expects sortOrder=asc".into()));
        }
        // the cursor names the last event handed out and the stream's start (like the real
        // one, it keeps the query it was made for)
        let (after, since) = match req.param("cursor") {
            Some(c) => c
                .strip_prefix('a')
                .and_then(|r| r.split_once('_'))
                .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<i64>().ok()?)))
                .ok_or((400, format!("invalid cursor {c}")))?,
            None => {
                let from = req
                    .param("from")
                    .map(|f| {
                        f.parse::<i64>()
                            .map_err(|_| (400, format!("from is epoch ms: {f}")))
                    })
                    .transpose()?
                    .map(|ms| ms * 1000)
                    .unwrap_or(i64::MIN);
                (0, from)
            }
        };
        let n = req.page_size("limit", 100, state);
        let (page, last, _) = stream_page(state, after, since, n);
        Ok(Page::body(json!({
            "data": records(&page),
            "meta": {"next": format!("a{last}_{since}"), "page_size": page.len()},
            "links": {},
        })))
    }
}
