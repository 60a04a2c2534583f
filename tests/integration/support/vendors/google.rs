//! Google Workspace's admin activity reports: `POST /token` with an RS256 JWT assertion
//! (verified with the test public key), activities.list with `startTime`, `maxResults`,
//! `pageToken`/`nextPageToken`, newest first

use serde_json::{json, Value};

use super::super::emu::{records, token_form, EmuState, Page, Refusal, Request, Vendor};

pub struct Google;

const PAGE: &str = include_str!("../../../../fixtures/google_workspace/activities/page.json");
pub const TEST_KEY: &str = include_str!("../../../keys/test-only-service-account.pem");
const TEST_PUBLIC_KEY: &str = include_str!("../../../keys/test-only-service-account.pub.pem");

impl Vendor for Google {
    fn connector(&self) -> &'static str {
        "google_workspace"
    }

    fn config(&self, url: &str) -> Value {
        json!({"base_url": url, "token_url": format!("{url}/token"),
            "admin_email": "admin@example.com"})
    }

    /// The emulator's client id is the service account's email; its key is the test key.
    fn credentials(&self, client_id: &str, _secret: &str) -> Value {
        json!({"client_email": client_id, "private_key": TEST_KEY})
    }

    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value) {
        let page: Value = serde_json::from_str(PAGE).expect("fixture");
        let mut r = page["items"][(seq % 3) as usize].clone();
        let ms = micros / 1000;
        let time = super::super::emu::rfc3339_millis(micros);
        let qualifier = format!("{}", tag * 1_000_000 + seq);
        r["id"]["time"] = json!(time);
        r["id"]["uniqueQualifier"] = json!(qualifier);
        r["id"]["applicationName"] = json!("admin");
        let id = format!("admin/{time}/{qualifier}");
        (ms * 1000, id, r)
    }

    fn authorized(&self, req: &Request, state: &EmuState) -> bool {
        state.token_valid(req.bearer())
    }

    /// RFC 7523: the assertion must be an RS256 JWT signed by the service account's key, for
    /// the token URL, with the delegated subject and the reports scope.
    fn token(&self, req: &Request, state: &mut EmuState) -> Option<(u16, Value)> {
        let form = match token_form(req) {
            Ok(form) => form,
            Err(refused) => return Some(refused),
        };
        if form.get("grant_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:grant-type:jwt-bearer")
        {
            return Some((400, json!({"error": "unsupported_grant_type"})));
        }
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes())
            .expect("test public key");
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[format!("{}/token", state.base)]);
        validation.set_issuer(std::slice::from_ref(&state.client_id));
        let assertion = form.get("assertion").map(String::as_str).unwrap_or("");
        let claims = match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
            Ok(d) => d.claims,
            Err(_) => {
                return Some((
                    400,
                    json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
                ))
            }
        };
        if claims["sub"] != "admin@example.com"
            || claims["scope"] != "https://www.googleapis.com/auth/admin.reports.audit.readonly"
        {
            return Some((
                401,
                json!({"error": "unauthorized_client", "error_description": "Client is unauthorized to retrieve access tokens using this method."}),
            ));
        }
        let token = state.issue_token();
        Some((
            200,
            json!({"access_token": token, "expires_in": state.token_lifetime, "token_type": "Bearer"}),
        ))
    }

    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal> {
        if req.path != "/admin/reports/v1/activity/users/all/applications/admin" {
            return Err((404, format!("no route {}", req.path)));
        }
        let since = req.time("startTime")?;
        let n = req.page_size("maxResults", 1000, state);
        let offset = req.offset("pageToken", "p", state);
        let matching = state.events.since(since).until(req.until("endTime")?);
        let mut body = json!({"kind": "admin#reports#activities", "items": records(&matching.newest(offset, n))});
        if offset + n < matching.len() {
            body["nextPageToken"] = json!(format!("p{}", offset + n));
        }
        Ok(Page::body(body))
    }
}
