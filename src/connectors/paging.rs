//! Pagination kinds beyond the link header and body cursor: helpers the engine calls

use serde_json::value::RawValue;

use super::engine::CycleError;
use super::path::JsonPath;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).expect("json")
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
