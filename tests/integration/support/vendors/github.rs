//! GitHub's audit log (organization or enterprise): newest first, `phrase=created:>=<date>`,
//! `per_page`, a `Link rel="next"` that repeats the request with `after=`

use serde_json::{json, Value};

use super::super::emu::{Budget, EmuState, Page, Refusal, Request, Vendor};

#[derive(Clone, Copy)]
pub enum Github {
    /// `/orgs/{org}/audit-log`, the `github` connector
    Org,
    /// `/enterprises/{enterprise}/audit-log`, the `github_enterprise` connector (same shape)
    Enterprise,
}

const ACTIONS: [&str; 5] = [
    "repo.create",
    "org.add_member",
    "team.add_member",
    "repo.destroy",
    "git.clone",
];

impl Vendor for Github {
    fn connector(&self) -> &'static str {
        match self {
            Github::Org => "github",
            Github::Enterprise => "github_enterprise",
        }
    }

    fn config(&self, url: &str) -> Value {
        match self {
            Github::Org => json!({"base_url": url, "org": "octo-corp"}),
            Github::Enterprise => json!({"base_url": url, "enterprise": "octo-ent"}),
        }
    }

    fn credentials(&self, _client_id: &str, secret: &str) -> Value {
        json!({"token": secret})
    }

    fn record(&self, tag: u64, seq: u64, micros: i64) -> (i64, String, Value) {
        let ms = micros / 1000;
        let id = format!("gh-doc-{tag}-{seq:06}");
        let record = json!({
            "@timestamp": ms,
            "action": ACTIONS[seq as usize % ACTIONS.len()],
            "actor": "octocat",
            "created_at": ms,
            "_document_id": id,
            "org": "octo-corp",
            "user": "monalisa",
        });
        (ms * 1000, id, record)
    }

    fn authorized(&self, req: &Request, state: &EmuState) -> bool {
        req.authorization == format!("Bearer {}", state.secret)
    }

    fn page(&self, req: &Request, state: &EmuState) -> Result<Page, Refusal> {
        let since = req
            .param("phrase")
            .and_then(|p| p.strip_prefix("created:>="))
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
            .map(|d| {
                d.and_hms_opt(0, 0, 0)
                    .expect("midnight")
                    .and_utc()
                    .timestamp_micros()
            })
            .unwrap_or(i64::MIN);
        let matching = state.events.since(since);
        let offset = req.offset("after", "o", state);
        let n = req.page_size("per_page", state.page_size, state);
        let page = matching.newest(offset, n);
        // the request's own path and query with the next `after`, as GitHub does
        let link = (offset + page.len() < matching.len()).then(|| {
            let after = format!("o{}", offset + page.len());
            let mut pairs: Vec<(&str, &str)> = req
                .query
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "after" | "before"))
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            pairs.sort();
            pairs.push(("after", after.as_str()));
            super::super::emu::next_link(&state.base, req.path, &pairs)
        });
        Ok(Page::records(&page, link))
    }

    fn budget(&self) -> Option<Budget> {
        Some(super::BOTH_RATELIMIT_SPELLINGS)
    }
}
