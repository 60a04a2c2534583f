//! A user agent string → browser, OS and device type: browsers through woothee's maintained
//! table, and the agents it does not know — SDKs, CLIs, HTTP libraries, which are most of what
//! calls an admin API — through their leading `product/version` token. Parsed agents are kept in
//! a bounded cache, since a page of events repeats a handful of agents many times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// Longest agent parsed; the rest of a longer one is ignored (vendors cap theirs near 512).
pub const MAX_PARSED_LEN: usize = 512;
/// Distinct agents kept parsed. Two generations of half this each: a hit in the old one moves
/// the agent to the new one, and a full new generation pushes the old one out, so the agents in
/// use stay and the cache never holds more than this.
pub const CACHE_ENTRIES: usize = 4096;

/// What an agent string says about the client. Absent parts are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserAgent {
    /// The browser, bot or client library (`Chrome`, `Googlebot`, `okta-sdk-python`).
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    /// The operating system (`Mac OSX`, `Windows 10`, `Android`, `iPhone`).
    pub os: Option<String>,
    pub os_version: Option<String>,
    /// `desktop`, `mobile`, `appliance`, `bot`, `api_client` or `unknown`.
    pub device_type: &'static str,
}

impl UserAgent {
    fn unknown() -> UserAgent {
        UserAgent {
            browser: None,
            browser_version: None,
            os: None,
            os_version: None,
            device_type: "unknown",
        }
    }
}

/// Parses agents, remembering the last few thousand.
pub struct AgentParser {
    parser: woothee::parser::Parser,
    cache: Mutex<Generations>,
}

#[derive(Default)]
struct Generations {
    new: HashMap<String, Arc<UserAgent>>,
    old: HashMap<String, Arc<UserAgent>>,
}

impl Default for AgentParser {
    fn default() -> Self {
        AgentParser::new()
    }
}

impl AgentParser {
    pub fn new() -> AgentParser {
        AgentParser {
            parser: woothee::parser::Parser::new(),
            cache: Mutex::new(Generations::default()),
        }
    }

    /// The parsed agent, `None` for an empty one.
    pub fn parse(&self, agent: &str) -> Option<Arc<UserAgent>> {
        let agent = clip(agent.trim(), MAX_PARSED_LEN);
        if agent.is_empty() {
            return None;
        }
        if let Ok(mut cache) = self.cache.lock() {
            if let Some(hit) = cache.new.get(agent) {
                return Some(hit.clone());
            }
            if let Some(hit) = cache.old.remove(agent) {
                cache.insert(agent, hit.clone());
                return Some(hit);
            }
        }
        // parsed outside the lock: a miss costs microseconds, and other readers need not wait
        let parsed = Arc::new(parse_uncached(&self.parser, agent));
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(agent, parsed.clone());
        }
        Some(parsed)
    }

    /// Agents in the cache now (for tests of its bound).
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .map(|c| c.new.len() + c.old.len())
            .unwrap_or(0)
    }
}

impl Generations {
    fn insert(&mut self, agent: &str, parsed: Arc<UserAgent>) {
        if self.new.len() >= CACHE_ENTRIES / 2 {
            self.old = std::mem::take(&mut self.new);
        }
        self.new.insert(agent.to_string(), parsed);
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends at a char boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn known(value: &str) -> Option<String> {
    (!value.is_empty() && value != woothee::woothee::VALUE_UNKNOWN).then(|| value.to_string())
}

fn parse_uncached(parser: &woothee::parser::Parser, agent: &str) -> UserAgent {
    let found = parser.parse(agent);
    let device_type = match found.as_ref().map(|r| r.category) {
        Some("pc") => "desktop",
        Some("smartphone" | "mobilephone") => "mobile",
        Some("appliance") => "appliance",
        Some("crawler") => "bot",
        // woothee's `misc` (HTTP libraries) and what it does not know at all
        _ => {
            return product_token(agent).unwrap_or_else(UserAgent::unknown);
        }
    };
    let Some(r) = found else {
        return UserAgent::unknown();
    };
    UserAgent {
        browser: known(r.name),
        browser_version: known(r.version),
        os: known(r.os),
        os_version: known(&r.os_version),
        device_type,
    }
}

/// The leading `product/version` token of a non-browser agent (RFC 9110's `product`), as SDKs
/// and CLIs write it: `okta-sdk-python/2.9`, `curl/8.5.0`, `Go-Auth0-SDK/latest`.
fn product_token(agent: &str) -> Option<UserAgent> {
    let first = agent.split_whitespace().next()?;
    let (product, version) = first.split_once('/')?;
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let starts_alnum = |s: &str| s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && starts_alnum(s) && s.chars().all(tchar)
    };
    if !ok(product, 64) || !ok(version, 32) {
        return None;
    }
    Some(UserAgent {
        browser: Some(product.to_string()),
        browser_version: Some(version.to_string()),
        os: None,
        os_version: None,
        device_type: "api_client",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(agent: &str) -> UserAgent {
        AgentParser::new()
            .parse(agent)
            .map(|a| (*a).clone())
            .expect("not empty")
    }

    #[test]
    fn browsers_come_from_the_table() {
        let a = parse(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
        );
        assert_eq!(a.browser.as_deref(), Some("Firefox"));
        assert_eq!(a.browser_version.as_deref(), Some("128.0"));
        assert_eq!(a.os.as_deref(), Some("Windows 10"));
        assert_eq!(a.device_type, "desktop");
        let a = parse("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1");
        assert_eq!(a.browser.as_deref(), Some("Safari"));
        assert_eq!(a.os.as_deref(), Some("iPhone"));
        assert_eq!(a.os_version.as_deref(), Some("17.5"));
        assert_eq!(a.device_type, "mobile");
        let a = parse("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
        assert_eq!(a.browser.as_deref(), Some("Googlebot"));
        assert_eq!(a.browser_version, None);
        assert_eq!(a.device_type, "bot");
    }

    #[test]
    fn api_clients_fall_back_to_their_product_token() {
        for (agent, product, version) in [
            ("okta-sdk-python/2.9", "okta-sdk-python", "2.9"),
            (
                "okta-sdk-golang/2.20.0 golang/go1.22",
                "okta-sdk-golang",
                "2.20.0",
            ),
            ("Go-Auth0-SDK/latest", "Go-Auth0-SDK", "latest"),
            ("curl/8.5.0", "curl", "8.5.0"),
            ("python-requests/2.31.0", "python-requests", "2.31.0"),
        ] {
            let a = parse(agent);
            assert_eq!(a.browser.as_deref(), Some(product), "{agent}");
            assert_eq!(a.browser_version.as_deref(), Some(version), "{agent}");
            assert_eq!(a.device_type, "api_client", "{agent}");
            assert_eq!(a.os, None);
        }
    }

    #[test]
    fn what_is_neither_is_unknown_and_empty_is_none() {
        for agent in [
            "Other 0.0.0 / Other 0.0.0",
            "/1.0",
            "x/",
            "a/b/c d",
            "\u{1F600}/1",
        ] {
            assert_eq!(parse(agent), UserAgent::unknown(), "{agent:?}");
        }
        let parser = AgentParser::new();
        assert_eq!(parser.parse("   "), None);
        assert_eq!(parser.parse(""), None);
    }

    #[test]
    fn a_long_agent_is_parsed_by_its_first_bytes() {
        let long = format!("curl/8.5.0 {}", "é".repeat(2000));
        let a = parse(&long);
        assert_eq!(a.browser.as_deref(), Some("curl"));
        assert_eq!(clip("aé", 2), "a");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(512))]

        /// Any agent a vendor sends parses without a panic into bounded fields of the closed
        /// device vocabulary; an API client's token comes back exactly.
        #[test]
        fn any_agent_parses_into_bounded_fields(
            agent in "(\\PC|[ /;()._-]){0,600}",
            product in "[A-Za-z][A-Za-z0-9._-]{0,20}",
            version in "[0-9][0-9.]{0,8}",
        ) {
            let parser = AgentParser::new();
            if let Some(a) = parser.parse(&agent) {
                for field in [&a.browser, &a.browser_version, &a.os, &a.os_version].into_iter().flatten() {
                    proptest::prop_assert!(field.len() <= MAX_PARSED_LEN);
                }
                proptest::prop_assert!(
                    ["desktop", "mobile", "appliance", "bot", "api_client", "unknown"].contains(&a.device_type)
                );
            }
            let client = format!("{product}/{version} {agent}");
            let a = parser.parse(&client).expect("not empty");
            if a.device_type == "api_client" {
                proptest::prop_assert_eq!(a.browser.as_deref(), Some(product.as_str()));
                proptest::prop_assert_eq!(a.browser_version.as_deref(), Some(version.as_str()));
            }
        }
    }

    #[test]
    fn the_cache_stays_within_its_bound_and_keeps_agents_in_use() {
        let parser = AgentParser::new();
        let hot = parser.parse("okta-sdk-python/2.9").expect("parsed");
        for i in 0..3 * CACHE_ENTRIES {
            parser.parse(&format!("client-{i}/1.0"));
            if i % 100 == 0 {
                // a hit returns the very value parsed first
                let again = parser.parse("okta-sdk-python/2.9").expect("parsed");
                assert!(Arc::ptr_eq(&hot, &again), "{i}");
            }
            assert!(parser.cached() <= CACHE_ENTRIES);
        }
    }
}
