//! One emulated API per vendor: each says how its vendor renders a page, pages, authenticates
//! and shapes its records; the core in `emu` does the rest

mod atlassian;
mod auth0;
mod cloudflare;
mod entra;
mod github;
mod gitlab;
mod google;
mod jira;
mod okta;
mod onepassword;
mod slack;

pub use atlassian::AtlassianAdmin;
pub use auth0::Auth0;
pub use cloudflare::Cloudflare;
pub use entra::Entra;
pub use github::Github;
pub use gitlab::Gitlab;
pub use google::{Google, TEST_KEY as GOOGLE_TEST_KEY};
pub use jira::Jira;
pub use okta::Okta;
pub use onepassword::OnePassword;
pub use slack::Slack;

use std::sync::Arc;

use super::emu::{Budget, Vendor};

/// GitHub, Okta and Slack budgets as the emulator has always advertised them: both spellings.
const BOTH_RATELIMIT_SPELLINGS: Budget = Budget {
    headers: &[
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
        ("x-rate-limit-remaining", "x-rate-limit-reset"),
    ],
    limit: None,
    remaining: 1000,
};

/// Every emulated vendor, one per polling connector it serves.
pub fn all() -> Vec<Arc<dyn Vendor>> {
    vec![
        Arc::new(AtlassianAdmin),
        Arc::new(Auth0),
        Arc::new(Cloudflare),
        Arc::new(Entra::Audits),
        Arc::new(Entra::SignIns),
        Arc::new(Github::Org),
        Arc::new(Github::Enterprise),
        Arc::new(Gitlab),
        Arc::new(Google),
        Arc::new(Jira),
        Arc::new(Okta),
        Arc::new(OnePassword::AuditEvents),
        Arc::new(OnePassword::ItemUsages),
        Arc::new(OnePassword::SignInAttempts),
        Arc::new(Slack),
    ]
}

/// The emulated vendor of a built-in connector, if there is one.
#[allow(dead_code)] // the conformance suite's; benches name their vendor
pub fn for_connector(connector: &str) -> Option<Arc<dyn Vendor>> {
    all().into_iter().find(|v| v.connector() == connector)
}
