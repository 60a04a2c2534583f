//! Scrubbing secrets out of text that came from outside (vendor error bodies and codes, pages,
//! webhook deliveries) before the hub stores, logs or shows it
//!
//! A vendor, or a proxy in front of it, may echo what it was sent: the `Authorization` header,
//! a token in an error message, a client secret in a form it quotes back. A [`Scrubber`] is
//! built from one integration's secrets (its credentials, the header values rendered from them,
//! the access tokens it fetched) and replaces each of them, in every form it is likely to be
//! echoed in, with `[redacted]`:
//!
//! - as is, and JSON-escaped (`\"`, `\\`, `\/`, control characters);
//! - percent-encoded (upper and lower case hex; `+` or `%20` for a space);
//! - base64 and base64url, at each of the three byte alignments, so the secret is found inside a
//!   longer encoded value too (`Basic base64(user:pass)`, a JSON document encoded whole).
//!
//! Values shorter than [`MIN_SECRET_LEN`] are not scrubbed: they would redact ordinary words, and
//! no vendor issues secrets that short (a client id such as `app` is an identifier, not a secret).

use std::borrow::Cow;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";
/// Secrets shorter than this are left alone.
pub const MIN_SECRET_LEN: usize = 8;

/// Finds and replaces a set of secrets in all their forms. Cheap to clone; `Debug` shows only
/// how many patterns it holds.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// The secrets as given (to extend the set).
    secrets: Arc<Vec<String>>,
    matcher: Option<Arc<AhoCorasick>>,
    /// The longest pattern, in bytes: a quote scrubs this much past its cut.
    longest: usize,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} secrets)", self.secrets.len())
    }
}

impl Scrubber {
    pub fn new<I, S>(secrets: I) -> Scrubber
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut kept: Vec<String> = secrets
            .into_iter()
            .map(|s| s.as_ref().to_string())
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .collect();
        kept.sort();
        kept.dedup();
        let mut patterns: Vec<String> = kept.iter().flat_map(|s| forms(s)).collect();
        patterns.sort();
        patterns.dedup();
        let longest = patterns.iter().map(String::len).max().unwrap_or(0);
        let matcher = (!patterns.is_empty()).then(|| {
            Arc::new(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&patterns)
                    .expect("literal patterns of bounded size always build"),
            )
        });
        Scrubber {
            secrets: Arc::new(kept),
            matcher,
            longest,
        }
    }

    /// The same set plus one more secret (an access token just fetched); `self` if it is known.
    pub fn with(&self, secret: &str) -> Scrubber {
        if secret.len() < MIN_SECRET_LEN || self.secrets.iter().any(|s| s == secret) {
            return self.clone();
        }
        Scrubber::new(self.secrets.iter().map(String::as_str).chain([secret]))
    }

    /// Whether the text holds a secret in any of its forms.
    pub fn contains(&self, text: &str) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(text))
    }

    /// The text with every secret replaced by `[redacted]`.
    pub fn scrub<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match &self.matcher {
            Some(m) if m.is_match(text) => Cow::Owned(m.replace_all_with_str(text)),
            _ => Cow::Borrowed(text),
        }
    }

    /// At most `max` bytes of the text, trimmed, for an error message: scrubbed before it is cut,
    /// so a secret straddling the cut does not leave its first half behind.
    pub fn quote(&self, text: &str, max: usize) -> String {
        let window = floor_char_boundary(text, max.saturating_add(self.longest));
        let scrubbed = self.scrub(&text[..window]);
        let end = floor_char_boundary(&scrubbed, max);
        scrubbed[..end].trim().to_string()
    }

    /// A JSON document with every secret replaced, still JSON: replaced in the text when that
    /// parses, else (a match cut through an escape sequence) in the parsed strings.
    pub fn scrub_json<'a>(&self, body: &'a str) -> Cow<'a, str> {
        if !self.contains(body) {
            return Cow::Borrowed(body);
        }
        let textual = self.scrub(body).into_owned();
        if serde_json::from_str::<serde::de::IgnoredAny>(&textual).is_ok() {
            return Cow::Owned(textual);
        }
        match serde_json::from_str::<serde_json::Value>(body) {
            Ok(mut value) => {
                self.scrub_value(&mut value);
                Cow::Owned(value.to_string())
            }
            // not JSON to begin with: the caller refuses it either way
            Err(_) => Cow::Owned(textual),
        }
    }

    fn scrub_value(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(s) => {
                if let Cow::Owned(clean) = self.scrub(s) {
                    *s = clean;
                }
            }
            Value::Number(n) => {
                if self.contains(&n.to_string()) {
                    *value = Value::String(REDACTED.into());
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_value(v)),
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    self.scrub_value(&mut v);
                    map.insert(self.scrub(&k).into_owned(), v);
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }
}

trait ReplaceAll {
    fn replace_all_with_str(&self, text: &str) -> String;
}

impl ReplaceAll for AhoCorasick {
    fn replace_all_with_str(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        self.replace_all_with(text, &mut out, |_, _, dst| {
            dst.push_str(REDACTED);
            true
        });
        out
    }
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut end = at.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// The forms a secret may be echoed in.
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_string()];
    let json = serde_json::to_string(secret).expect("a string serialises");
    let json = &json[1..json.len() - 1];
    out.push(json.to_string());
    out.push(json.replace('/', "\\/"));
    for (upper, plus) in [(true, false), (false, false), (true, true)] {
        out.push(percent_encode(secret, upper, plus));
    }
    // the whole value encoded on its own, padding included (preferred: the longest match wins)
    for engine in [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE,
    ] {
        out.push(engine.encode(secret));
    }
    for shift in 0..3 {
        let core = base64_core(secret.as_bytes(), shift);
        if core.len() >= MIN_SECRET_LEN {
            out.push(core.replace('+', "-").replace('/', "_"));
            out.push(core);
        }
    }
    out
}

/// Every byte but RFC 3986 unreserved ones as `%XX`.
fn percent_encode(s: &str, upper: bool, plus_for_space: bool) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else if b == b' ' && plus_for_space {
            out.push('+');
        } else if upper {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push_str(&format!("%{b:02x}"));
        }
    }
    out
}

/// The base64 characters that depend only on `bytes` when they sit `shift` bytes (mod 3) into a
/// longer encoded value: the ones neither the bytes before nor the bytes after can change.
fn base64_core(bytes: &[u8], shift: usize) -> String {
    let mut shifted = vec![0u8; shift];
    shifted.extend_from_slice(bytes);
    let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&shifted);
    let start = (8 * shift).div_ceil(6);
    let end = (8 * (shift + bytes.len())) / 6;
    encoded.get(start..end).unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "s3cr3t/t0ken+with spaces&more";

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn every_form_is_scrubbed() {
        let scrubber = Scrubber::new([SECRET, "short"]);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
        let echoes = [
            format!("Authorization: Bearer {SECRET}"),
            format!(
                "{{\"echo\":{}}}",
                serde_json::to_string(SECRET).expect("json")
            ),
            format!("{{\"echo\":\"{}\"}}", SECRET.replace('/', "\\/")),
            format!("token={}", percent_encode(SECRET, true, false)),
            format!("token={}", percent_encode(SECRET, false, false)),
            format!("token={}", percent_encode(SECRET, true, true)),
            format!("seen {}", b64(SECRET)),
            format!("seen {url_safe}"),
            // basic auth: the secret as the password, at whatever alignment the user puts it
            format!("Authorization: Basic {}", b64(&format!("alice:{SECRET}"))),
            format!("Authorization: Basic {}", b64(&format!("bob:{SECRET}"))),
            format!("Authorization: Basic {}", b64(&format!("carol:{SECRET}"))),
            format!(
                "nested {}",
                b64(&format!("{{\"key\":\"{SECRET}\",\"n\":1}}"))
            ),
        ];
        for echo in &echoes {
            let clean = scrubber.scrub(echo);
            assert!(clean.contains(REDACTED), "{echo} → {clean}");
            assert!(!clean.contains(SECRET), "{clean}");
            assert!(!clean.contains(&b64(SECRET)[..12]), "{clean}");
        }
        assert_eq!(scrubber.scrub("short and fine"), "short and fine");
        assert!(matches!(scrubber.scrub("nothing here"), Cow::Borrowed(_)));
        assert!(format!("{scrubber:?}").contains("1 secrets"));
        assert!(!format!("{scrubber:?}").contains(SECRET));
    }

    #[test]
    fn a_quote_never_keeps_half_a_secret() {
        let scrubber = Scrubber::new([SECRET]);
        let text = format!("{}{SECRET}{}", "x".repeat(190), "y".repeat(50));
        let q = scrubber.quote(&text, 200);
        assert!(q.len() <= 200);
        assert!(!q.contains("s3cr3t"), "{q}");
        let text = format!("é{SECRET}");
        assert_eq!(scrubber.quote(&text, 1), "");
        assert_eq!(Scrubber::default().quote("abc", 2), "ab");
    }

    #[test]
    fn json_stays_json() {
        let scrubber = Scrubber::new(["nabcdefgh1", "12345678901"]);
        // a textual match would cut `\n` in two: the parsed strings are scrubbed instead
        let body = r#"[{"a":"x\nabcdefgh1","n":12345678901,"nabcdefgh1":true}]"#;
        let clean = scrubber.scrub_json(body);
        let v: serde_json::Value = serde_json::from_str(&clean).expect("still JSON");
        // `\n` + `abcdefgh1` decodes to a newline, not to the secret: it stays
        assert_eq!(v[0]["a"], "x\nabcdefgh1");
        assert_eq!(v[0]["n"], REDACTED);
        assert_eq!(v[0][REDACTED], true);
        assert!(!clean.contains("12345678901"), "{clean}");
        let body = r#"{"records":[{"token":"nabcdefgh1"}]}"#;
        assert_eq!(
            scrubber.scrub_json(body),
            r#"{"records":[{"token":"[redacted]"}]}"#
        );
        assert!(matches!(scrubber.scrub_json("{\"a\":1}"), Cow::Borrowed(_)));
    }

    #[test]
    fn a_token_learnt_later_is_scrubbed_too() {
        let scrubber = Scrubber::new(["client-secret-1"]);
        let more = scrubber.with("access-token-2");
        assert_eq!(
            more.scrub("client-secret-1 access-token-2"),
            "[redacted] [redacted]"
        );
        assert_eq!(scrubber.scrub("access-token-2"), "access-token-2");
    }
}
