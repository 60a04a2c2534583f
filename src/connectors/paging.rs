//! Every pagination kind in one place: where the walk goes after a page, read from the page's
//! body, headers and records; and how a POST walk's position is kept as a URL
//!
//! Pure over what the transport fetched, so every kind is tested without a vendor.

use reqwest::header::HeaderMap;
use serde_json::value::RawValue;

use super::definition::{HttpMethod, OffsetUnit, Pagination, Poll};
use super::path::JsonPath;

/// A page's paging data the hub cannot use (a URL that does not parse, a POST position that
/// names nothing): a configuration fault of the connector, said in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PagingError(pub String);

fn page_url(url: &str) -> Result<reqwest::Url, PagingError> {
    reqwest::Url::parse(url).map_err(|e| PagingError(format!("page URL: {e}")))
}

/// Where the walk goes after a page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Next {
    /// The next page's URL (same host only), or the position a `next_link` cursor keeps.
    pub next: Option<String>,
    /// `pagination.more` as the page said it (`Some(false)`: nothing more now).
    pub more: Option<bool>,
}

/// The next position after a page fetched from `url`. The body is parsed here at most once,
/// and only for the kinds that read it; `same_origin` resolves a link against the configured
/// host and refuses any other (credentials never leave for another host).
pub fn next_page(
    poll: &Poll,
    url: &str,
    body: &str,
    headers: &HeaderMap,
    records: &[Box<RawValue>],
    same_origin: impl Fn(&str) -> Option<String>,
) -> Result<Next, PagingError> {
    let reads_body = matches!(
        poll.pagination,
        Pagination::BodyCursor { .. } | Pagination::NextUrlInBody { .. }
    ) || poll.pagination_more.is_some();
    let parsed: serde_json::Value = if reads_body {
        serde_json::from_str(body).unwrap_or_default()
    } else {
        serde_json::Value::Null
    };
    let text_at = |path: &JsonPath| {
        path.get(&parsed)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .filter(|t| !t.is_empty())
    };
    let next = match &poll.pagination {
        Pagination::LinkHeader => next_link(headers).and_then(|l| same_origin(&l)),
        Pagination::BodyCursor { path, .. } if poll.request.method == HttpMethod::Post => {
            match text_at(path) {
                Some(token) => {
                    let mut u = page_url(url)?;
                    u.set_fragment(Some(&post_position(PostPosition::Cursor, &token)));
                    Some(u.to_string())
                }
                None => None,
            }
        }
        Pagination::BodyCursor { path, param } => match text_at(path) {
            Some(token) => Some(with_param(url, param, &token)?),
            None => None,
        },
        Pagination::Offset { param, unit, start } => {
            offset_next(url, records.len(), param, *unit, *start)?
        }
        Pagination::LastRecord { path, param } => last_record_next(url, records, path, param)?,
        Pagination::NextUrlInBody { path } => text_at(path).and_then(|l| same_origin(&l)),
        Pagination::None => None,
    };
    let more = poll
        .pagination_more
        .as_ref()
        .and_then(|p| p.get(&parsed)?.as_bool());
    Ok(Next { next, more })
}

/// `url` with the query parameter `param` set to `value` (replacing any earlier value).
fn with_param(url: &str, param: &str, value: &str) -> Result<String, PagingError> {
    let mut u = page_url(url)?;
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != param)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(param, value);
    Ok(u.to_string())
}

/// Where a POST walk stands. A POST endpoint's position is kept as its URL with the position in
/// the fragment (never sent): `#since=<time>` starts a walk, `#cursor=<token>` continues one,
/// so positions persist and compare like any next link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostPosition {
    Since,
    Cursor,
}

impl PostPosition {
    fn key(self) -> &'static str {
        match self {
            PostPosition::Since => "since",
            PostPosition::Cursor => "cursor",
        }
    }
}

/// The fragment for a position.
pub fn post_position(kind: PostPosition, value: &str) -> String {
    serde_urlencoded::to_string([(kind.key(), value)]).unwrap_or_default()
}

/// The endpoint to POST to and the JSON body for a position URL.
pub fn post_request(poll: &Poll, url: &str) -> Result<(String, serde_json::Value), PagingError> {
    let mut u = page_url(url)?;
    let fragment = u.fragment().unwrap_or("").to_string();
    u.set_fragment(None);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&fragment).unwrap_or_default();
    let body = match pairs.first() {
        Some((k, v)) if k == PostPosition::Cursor.key() => {
            let Pagination::BodyCursor { param, .. } = &poll.pagination else {
                return Err(PagingError(
                    "a cursor position needs pagination.kind = body_cursor".into(),
                ));
            };
            serde_json::json!({ param.as_str(): v })
        }
        Some((k, v)) if k == PostPosition::Since.key() => {
            let mut body = poll.request.body.clone();
            body.insert(
                poll.request.since.param.clone(),
                serde_json::Value::String(v.clone()),
            );
            serde_json::Value::Object(body)
        }
        _ => {
            return Err(PagingError(
                "a POST position names neither a since time nor a cursor".into(),
            ))
        }
    };
    Ok((u.to_string(), body))
}

/// `pagination.kind = "last_record"`: the request in hand with `param` set to the value at
/// `path` of the page's last record. An empty page (or a last record without the value) gives
/// the request unchanged: a `next_link` cursor keeps it and polls it again.
fn last_record_next(
    url: &str,
    records: &[Box<RawValue>],
    path: &JsonPath,
    param: &str,
) -> Result<Option<String>, PagingError> {
    let value = records.last().and_then(|last| {
        let parsed: serde_json::Value = serde_json::from_str(last.get()).ok()?;
        let v = path.get(&parsed)?.clone();
        match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    });
    match value {
        Some(value) => with_param(url, param, &value).map(Some),
        // nothing to move to: the same request is the position
        None => Ok(Some(url.to_string())),
    }
}

/// `pagination.kind = "offset"`: the request in hand with `param` advanced past this page; an
/// empty page has no next.
fn offset_next(
    url: &str,
    received: usize,
    param: &str,
    unit: OffsetUnit,
    start: u64,
) -> Result<Option<String>, PagingError> {
    if received == 0 {
        return Ok(None);
    }
    let current = page_url(url)?
        .query_pairs()
        .find(|(k, _)| k == param)
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(start);
    let next = match unit {
        OffsetUnit::Records => current.saturating_add(received as u64),
        OffsetUnit::Pages => current.saturating_add(1),
    };
    with_param(url, param, &next.to_string()).map(Some)
}

/// The `rel="next"` target of a `Link` header (RFC 8288), across one or several headers.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(text) = value.to_str() else { continue };
        for part in text.split(',') {
            let mut pieces = part.split(';');
            let Some(target) = pieces.next() else {
                continue;
            };
            let target = target.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim();
                p.strip_prefix("rel=")
                    .map(|r| {
                        r.trim_matches('"')
                            .split_whitespace()
                            .any(|r| r.eq_ignore_ascii_case("next"))
                    })
                    .unwrap_or(false)
            });
            if is_next {
                if let Some(url) = target.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
                    return Some(url.to_string());
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).expect("json")
    }

    #[test]
    fn offsets_advance_by_records_or_pages() {
        let next =
            offset_next("https://x/r?limit=3", 3, "offset", OffsetUnit::Records, 0).expect("ok");
        assert_eq!(next.as_deref(), Some("https://x/r?limit=3&offset=3"));
        let next = offset_next(
            "https://x/r?offset=3&limit=3",
            2,
            "offset",
            OffsetUnit::Records,
            0,
        )
        .expect("ok");
        assert_eq!(next.as_deref(), Some("https://x/r?limit=3&offset=5"));
        let next =
            offset_next("https://x/r?per_page=50", 50, "page", OffsetUnit::Pages, 1).expect("ok");
        assert_eq!(next.as_deref(), Some("https://x/r?per_page=50&page=2"));
        assert_eq!(
            offset_next("https://x/r?page=2", 0, "page", OffsetUnit::Pages, 1).expect("ok"),
            None
        );
    }

    #[test]
    fn last_record_sets_the_param() {
        let records = vec![raw(r#"{"log_id":"900a"}"#), raw(r#"{"log_id":"900b"}"#)];
        let next = last_record_next(
            "https://t.example/api/v2/logs?take=100&from=9000",
            &records,
            &JsonPath::parse("log_id").expect("path"),
            "from",
        )
        .expect("ok");
        assert_eq!(
            next.as_deref(),
            Some("https://t.example/api/v2/logs?take=100&from=900b")
        );
        let same = last_record_next(
            "https://t.example/l?from=1",
            &[],
            &JsonPath::parse("log_id").expect("path"),
            "from",
        )
        .expect("ok");
        assert_eq!(same.as_deref(), Some("https://t.example/l?from=1"));
    }
    #[test]
    fn link_header_next() {
        let mut h = HeaderMap::new();
        h.append(
            reqwest::header::LINK,
            "<https://x/api?after=1>; rel=\"self\", <https://x/api?after=2&b=c>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://x/api?after=2&b=c"));
        let mut h = HeaderMap::new();
        h.append(
            reqwest::header::LINK,
            "<https://x/a>; rel=\"self\"".parse().unwrap(),
        );
        assert_eq!(next_link(&h), None);
    }

    /// Every kind, through the built-in connector that uses it: (connector, page URL, body,
    /// Link header, records, expected next, expected more).
    #[test]
    fn next_page_for_every_kind() {
        let registry = super::super::Registry::builtin().expect("valid");
        let same = |l: &str| -> Option<String> {
            let base = reqwest::Url::parse("https://v.example/").expect("url");
            let u = base.join(l).ok()?;
            (u.host_str() == Some("v.example")).then(|| u.to_string())
        };
        // (connector, page URL, body, Link header, records, expected next, expected more)
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            Option<&'a str>,
            Vec<Box<RawValue>>,
            Option<&'a str>,
            Option<bool>,
        );
        let cases: Vec<Case> = vec![
            (
                "github",
                "https://v.example/a?x=1",
                "[]",
                Some("<https://v.example/a?after=2>; rel=\"next\""),
                vec![],
                Some("https://v.example/a?after=2"),
                None,
            ),
            (
                "github",
                "https://v.example/a",
                "[]",
                Some("<https://elsewhere.example/a?after=2>; rel=\"next\""),
                vec![],
                None,
                None,
            ),
            (
                "slack",
                "https://v.example/logs?limit=9&cursor=old",
                r#"{"response_metadata":{"next_cursor":"n2"}}"#,
                None,
                vec![],
                Some("https://v.example/logs?limit=9&cursor=n2"),
                None,
            ),
            (
                "slack",
                "https://v.example/logs",
                r#"{"response_metadata":{"next_cursor":""}}"#,
                None,
                vec![],
                None,
                None,
            ),
            (
                "entra_audits",
                "https://v.example/d",
                r#"{"@odata.nextLink":"https://v.example/d?$skiptoken=z"}"#,
                None,
                vec![],
                Some("https://v.example/d?$skiptoken=z"),
                None,
            ),
            (
                "onepassword_audit",
                "https://v.example/api/v1/auditevents#since=1",
                r#"{"cursor":"c9","has_more":false}"#,
                None,
                vec![],
                Some("https://v.example/api/v1/auditevents#cursor=c9"),
                Some(false),
            ),
            (
                "auth0",
                "https://v.example/api/v2/logs?take=100",
                "[]",
                None,
                vec![raw(r#"{"log_id":"7"}"#)],
                Some("https://v.example/api/v2/logs?take=100&from=7"),
                None,
            ),
            (
                "cloudflare",
                "https://v.example/audit_logs?page=2",
                r#"{"result":[]}"#,
                None,
                vec![raw("{}")],
                Some("https://v.example/audit_logs?page=3"),
                None,
            ),
            (
                "cloudflare",
                "https://v.example/audit_logs?page=2",
                r#"{"result":[]}"#,
                None,
                vec![],
                None,
                None,
            ),
        ];
        for (name, url, body, link, records, next, more) in cases {
            let connector = registry.get(name).expect("built in");
            let poll = connector.poll.as_ref().expect("a polled connector");
            let mut headers = HeaderMap::new();
            if let Some(l) = link {
                headers.insert(reqwest::header::LINK, l.parse().expect("header"));
            }
            let got = next_page(poll, url, body, &headers, &records, same).expect("pages");
            assert_eq!(got.next.as_deref(), next, "{name} {url}");
            assert_eq!(got.more, more, "{name} {url}");
        }
    }
}
