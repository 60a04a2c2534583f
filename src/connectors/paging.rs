//! Pagination kinds beyond the link header and body cursor: helpers the engine calls

use serde_json::value::RawValue;

use super::definition::{Connector, Pagination};
use super::engine::CycleError;
use super::path::JsonPath;

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
pub fn post_request(
    connector: &Connector,
    url: &str,
) -> Result<(String, serde_json::Value), CycleError> {
    let mut u =
        reqwest::Url::parse(url).map_err(|e| CycleError::Config(format!("page URL: {e}")))?;
    let fragment = u.fragment().unwrap_or("").to_string();
    u.set_fragment(None);
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&fragment).unwrap_or_default();
    let body = match pairs.first() {
        Some((k, v)) if k == PostPosition::Cursor.key() => {
            let Pagination::BodyCursor { param, .. } = &connector.pagination else {
                return Err(CycleError::Config(
                    "a cursor position needs pagination.kind = body_cursor".into(),
                ));
            };
            serde_json::json!({ param.as_str(): v })
        }
        Some((k, v)) if k == PostPosition::Since.key() => {
            let mut body = connector.request.body.clone();
            body.insert(
                connector.request.since.param.clone(),
                serde_json::Value::String(v.clone()),
            );
            serde_json::Value::Object(body)
        }
        _ => {
            return Err(CycleError::Config(
                "a POST position names neither a since time nor a cursor".into(),
            ))
        }
    };
    Ok((u.to_string(), body))
}

/// `body_cursor` for POST: the token at `path` becomes the next position; absent or empty =
/// none. (`param` is the body field the token goes back in, see `post_request`.)
pub fn post_next(url: &str, body: &str, path: &str, _param: &str) -> Option<String> {
    let parsed: serde_json::Value = serde_json::from_str(body).ok()?;
    let token = JsonPath::parse(path)
        .ok()?
        .get(&parsed)?
        .as_str()?
        .to_string();
    if token.is_empty() {
        return None;
    }
    let mut u = reqwest::Url::parse(url).ok()?;
    u.set_fragment(Some(&post_position(PostPosition::Cursor, &token)));
    Some(u.to_string())
}

/// `pagination.kind = "last_record"`: the request in hand with `param` set to the value at
/// `path` of the page's last record. An empty page (or a last record without the value) gives
/// the request unchanged: a `next_link` cursor keeps it and polls it again.
pub fn last_record_next(
    url: &str,
    records: &[Box<RawValue>],
    path: &str,
    param: &str,
) -> Result<Option<String>, CycleError> {
    let value = records.last().and_then(|last| {
        let parsed: serde_json::Value = serde_json::from_str(last.get()).ok()?;
        let v = JsonPath::parse(path).ok()?.get(&parsed)?.clone();
        match v {
            serde_json::Value::String(s) if !s.is_empty() => Some(s),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    });
    let Some(value) = value else {
        // nothing to move to: the same request is the position
        return Ok(Some(url.to_string()));
    };
    let mut u =
        reqwest::Url::parse(url).map_err(|e| CycleError::Config(format!("page URL: {e}")))?;
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != param)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(param, &value);
    Ok(Some(u.to_string()))
}

/// `pagination.kind = "offset"`: the request in hand with `param` advanced past this page; an
/// empty page has no next.
pub fn offset_next(
    url: &str,
    received: usize,
    param: &str,
    unit: super::definition::OffsetUnit,
    start: u64,
) -> Result<Option<String>, CycleError> {
    if received == 0 {
        return Ok(None);
    }
    let mut u =
        reqwest::Url::parse(url).map_err(|e| CycleError::Config(format!("page URL: {e}")))?;
    let current = u
        .query_pairs()
        .find(|(k, _)| k == param)
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap_or(start);
    let next = match unit {
        super::definition::OffsetUnit::Records => current.saturating_add(received as u64),
        super::definition::OffsetUnit::Pages => current.saturating_add(1),
    };
    let kept: Vec<(String, String)> = u
        .query_pairs()
        .filter(|(k, _)| k != param)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    u.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair(param, &next.to_string());
    Ok(Some(u.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).expect("json")
    }

    #[test]
    fn offsets_advance_by_records_or_pages() {
        use super::super::definition::OffsetUnit;
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
            "log_id",
            "from",
        )
        .expect("ok");
        assert_eq!(
            next.as_deref(),
            Some("https://t.example/api/v2/logs?take=100&from=900b")
        );
        let same =
            last_record_next("https://t.example/l?from=1", &[], "log_id", "from").expect("ok");
        assert_eq!(same.as_deref(), Some("https://t.example/l?from=1"));
    }
}
