//! Dotted paths into a vendor's JSON record (`actor.user.id`, `@timestamp`, `target.0.id`,
//! `@odata\.nextLink` for a key that holds a dot),
//! with indirect segments (`entity.{entity.type}.id`) for records keyed by their own type field

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    /// The key is the string found at this path (from the same root).
    Indirect(JsonPath),
    /// `[name=USER_EMAIL]`: the first element of an array whose `name` is that string
    /// (Google's `parameters[]`, lists of `{name, value}` pairs).
    Match {
        key: String,
        value: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    segments: Vec<Segment>,
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        if text.is_empty() {
            return Err("a path must not be empty".into());
        }
        let mut segments = Vec::new();
        let mut depth = 0usize;
        let mut start = 0usize;
        let bytes = text.as_bytes();
        let mut push = |s: &str| -> Result<(), String> {
            if s.is_empty() {
                return Err(format!("path {text:?} has an empty segment"));
            }
            if let Some(inner) = s.strip_prefix('[') {
                let (key, value) = inner
                    .strip_suffix(']')
                    .and_then(|i| i.split_once('='))
                    .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                    .ok_or_else(|| format!("path {text:?}: write a match as `[key=value]`"))?;
                segments.push(Segment::Match {
                    key: key.to_string(),
                    value: value.replace("\\.", "."),
                });
            } else if let Some(inner) = s.strip_prefix('{') {
                let inner = inner
                    .strip_suffix('}')
                    .ok_or_else(|| format!("path {text:?}: `{{` must close a whole segment"))?;
                segments.push(Segment::Indirect(JsonPath::parse(inner)?));
            } else if s.contains(['{', '}']) {
                return Err(format!("path {text:?}: braces must wrap a whole segment"));
            } else {
                segments.push(Segment::Key(s.replace("\\.", ".")));
            }
            Ok(())
        };
        let mut escaped = false;
        for (i, &b) in bytes.iter().enumerate() {
            if escaped {
                escaped = false;
                continue;
            }
            match b {
                // `\.` is a dot inside a key (`@odata\.nextLink`)
                b'\\' if bytes.get(i + 1) == Some(&b'.') => escaped = true,
                b'{' => depth += 1,
                b'}' => {
                    depth = depth
                        .checked_sub(1)
                        .ok_or_else(|| format!("path {text:?} has an unmatched `}}`"))?
                }
                b'.' if depth == 0 => {
                    push(&text[start..i])?;
                    start = i + 1;
                }
                _ => {}
            }
        }
        if depth != 0 {
            return Err(format!("path {text:?} has an unmatched `{{`"));
        }
        push(&text[start..])?;
        Ok(JsonPath { segments })
    }

    /// Whether every segment is a plain key (no indirection).
    pub fn is_plain(&self) -> bool {
        self.segments.iter().all(|s| matches!(s, Segment::Key(_)))
    }

    /// The plain keys of the path, in order (indirect segments are skipped).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Indirect(_) | Segment::Match { .. } => None,
        })
    }

    /// Adds the top-level keys this path reads (its first, and every indirect segment's) to
    /// `out`: an object holding only those keys answers `get` as the whole record does. False
    /// when the path does not start with a key.
    pub fn root_keys(&self, out: &mut Vec<String>) -> bool {
        let Some(Segment::Key(first)) = self.segments.first() else {
            return false;
        };
        out.push(first.clone());
        self.segments.iter().all(|s| match s {
            Segment::Indirect(p) => p.root_keys(out),
            _ => true,
        })
    }

    pub fn get<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        let mut current = root;
        for segment in &self.segments {
            if let Segment::Match { key, value } = segment {
                current = current.as_array()?.iter().find(|item| {
                    item.get(key.as_str()).and_then(Value::as_str) == Some(value.as_str())
                })?;
                continue;
            }
            let key: Cow<'_, str> = match segment {
                Segment::Key(k) => Cow::Borrowed(k.as_str()),
                Segment::Indirect(p) => Cow::Owned(p.get(root)?.as_str()?.to_string()),
                Segment::Match { .. } => continue,
            };
            current = match current {
                Value::Object(map) => map.get(key.as_ref())?,
                Value::Array(items) => items.get(key.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Candidate paths: the first that holds a non-empty value wins.
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "OneOrMany")]
pub struct PathList {
    texts: Vec<String>,
    paths: Vec<JsonPath>,
}

impl From<OneOrMany> for PathList {
    fn from(v: OneOrMany) -> Self {
        let texts = match v {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        PathList {
            texts,
            paths: Vec::new(),
        }
    }
}

impl PathList {
    /// Parses the texts; until then the list matches nothing.
    pub fn validated(mut self) -> Result<PathList, String> {
        if self.texts.is_empty() {
            return Err("give at least one path".into());
        }
        self.paths = self
            .texts
            .iter()
            .map(|t| JsonPath::parse(t))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    pub fn single(text: &str) -> Result<PathList, String> {
        PathList::from(OneOrMany::One(text.to_string())).validated()
    }

    /// The first value that is present, not null and not an empty string.
    pub fn value<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.paths.iter().find_map(|p| match p.get(root) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(v) => Some(v),
        })
    }

    /// The first value as text (numbers and booleans written out; objects and arrays skipped).
    pub fn text(&self, root: &Value) -> Option<String> {
        self.paths.iter().find_map(|p| match p.get(root)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_indexed_and_indirect_paths() {
        let v = serde_json::json!({
            "@timestamp": 5,
            "target": [{"id": "a"}, {"id": "b"}],
            "entity": {"type": "channel", "channel": {"id": "C1"}},
        });
        assert_eq!(
            JsonPath::parse("@timestamp").unwrap().get(&v),
            Some(&serde_json::json!(5))
        );
        assert_eq!(
            JsonPath::parse("target.1.id").unwrap().get(&v),
            Some(&serde_json::json!("b"))
        );
        let indirect = JsonPath::parse("entity.{entity.type}.id").unwrap();
        assert_eq!(indirect.get(&v), Some(&serde_json::json!("C1")));
        assert!(JsonPath::parse("a..b").is_err());
        let params =
            serde_json::json!({"p": [{"name": "A", "value": 1}, {"name": "B", "value": 2}]});
        assert_eq!(
            JsonPath::parse("p.[name=B].value").unwrap().get(&params),
            Some(&serde_json::json!(2))
        );
        assert_eq!(
            JsonPath::parse("p.[name=C].value").unwrap().get(&params),
            None
        );
        assert!(JsonPath::parse("p.[name].value").is_err());
        assert!(!JsonPath::parse("p.[name=B]").unwrap().is_plain());
        let dotted = serde_json::json!({"@odata.nextLink": "https://x/next", "a": {"b.c": 1}});
        assert_eq!(
            JsonPath::parse(r"@odata\.nextLink").unwrap().get(&dotted),
            Some(&serde_json::json!("https://x/next"))
        );
        assert_eq!(
            JsonPath::parse(r"a.b\.c").unwrap().get(&dotted),
            Some(&serde_json::json!(1))
        );
        assert!(JsonPath::parse("a.{b").is_err());
        let list = PathList::from(OneOrMany::Many(vec!["missing".into(), "@timestamp".into()]))
            .validated()
            .unwrap();
        assert_eq!(list.text(&v).as_deref(), Some("5"));
    }
}
