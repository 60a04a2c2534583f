//! `{config.org}`-style templates in definition files, checked against the declared fields at
//! load time so that a typo fails the file, not a poll

use std::collections::BTreeMap;

use crate::config::Secret;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Config(String),
    Credential(String),
    Time,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// What a template may refer to where it is used.
pub struct TemplateScope<'a> {
    pub config: &'a [&'a str],
    pub credentials: &'a [&'a str],
    pub time: bool,
}

/// Values to fill a template with.
pub struct Values<'a> {
    pub config: &'a BTreeMap<String, String>,
    pub credentials: Option<&'a BTreeMap<String, Secret>>,
    pub time: Option<&'a str>,
}

impl Template {
    pub fn parse(text: &str, scope: &TemplateScope<'_>) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('}')
                .ok_or_else(|| format!("{text:?}: `{{` without `}}`"))?;
            let name = &after[..close];
            let part = if name == "time" && scope.time {
                Part::Time
            } else if let Some(field) = name.strip_prefix("config.") {
                if !scope.config.contains(&field) {
                    return Err(format!(
                        "{text:?} refers to `{name}`, but no config field {field:?} is declared"
                    ));
                }
                Part::Config(field.to_string())
            } else if let Some(field) = name.strip_prefix("credentials.") {
                if !scope.credentials.contains(&field) {
                    return Err(format!(
                        "{text:?} refers to `{name}`, which is not a declared credential usable here"
                    ));
                }
                Part::Credential(field.to_string())
            } else {
                let mut allowed = vec!["{config.<field>}"];
                if !scope.credentials.is_empty() {
                    allowed.push("{credentials.<field>}");
                }
                if scope.time {
                    allowed.push("{time}");
                }
                return Err(format!(
                    "{text:?}: unknown placeholder `{{{name}}}` (allowed here: {})",
                    allowed.join(", ")
                ));
            };
            parts.push(part);
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("{text:?}: `}}` without `{{`"));
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The config field the template starts with, if it starts with one.
    pub fn leading_config(&self) -> Option<&str> {
        match self.parts.first()? {
            Part::Config(name) => Some(name),
            _ => None,
        }
    }

    /// The literal text the template starts with, if it starts with literal text.
    pub fn literal_prefix(&self) -> Option<&str> {
        match self.parts.first()? {
            Part::Literal(text) => Some(text),
            _ => None,
        }
    }

    pub fn uses_time(&self) -> bool {
        self.parts.contains(&Part::Time)
    }

    /// Fills the template; `None` when a value it needs is not set (an optional field).
    /// `escape` is applied to every substituted value, never to the literal text.
    pub fn render(&self, values: &Values<'_>, escape: fn(&str) -> String) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(s) => out.push_str(s),
                Part::Config(name) => out.push_str(&escape(values.config.get(name)?)),
                Part::Credential(name) => {
                    out.push_str(&escape(values.credentials?.get(name)?.expose()))
                }
                Part::Time => out.push_str(&escape(values.time?)),
            }
        }
        Some(out)
    }
}

pub fn no_escape(s: &str) -> String {
    s.to_string()
}

/// Percent-encodes everything but RFC 3986 unreserved characters: safe inside one path segment.
pub fn escape_path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
