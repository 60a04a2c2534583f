//! Turning an `Event` into what the writer stores: its body bytes, index postings, search
//! tokens and rollup groups — all the CPU work, done before the single writer takes over

use rustc_hash::FxHashSet as HashSet;

use super::keys::{self, Dimension, Field};
use crate::schema::Event;
use crate::time::Micros;

/// `serde_json` writes an event with an empty id as this prefix; the id is spliced in at read
/// time from the sequence number, so the stored body is everything after it.
const EMPTY_ID_PREFIX: &[u8] = b"{\"id\":\"\",";

/// Raw payloads can be large: only this many search tokens are taken from one.
const MAX_RAW_TOKENS: usize = 32;
const MAX_TOKEN_LEN: usize = 64;

#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub time: Micros,
    pub integration: String,
    /// Integration and source id: what exactly-once is keyed by (`keys::dedup_identity`).
    pub identity: Vec<u8>,
    /// `keys::dedup_hash` of `identity`.
    pub hash: u64,
    /// The event's JSON after its `id` member, starting at `"time"`.
    pub body: Vec<u8>,
    /// Index terms this event is listed under (`keys::term`).
    pub terms: Vec<Vec<u8>>,
    pub groups: Vec<(Dimension, String)>,
}

pub fn prepare(event: &Event) -> PreparedEvent {
    // events are prepared before they have an id (it is their sequence number): serialise them
    // as they are, and only copy one that carries an id
    let mut json = if event.id.is_empty() {
        serde_json::to_vec(event)
    } else {
        let mut unsaved = event.clone();
        unsaved.id.clear();
        serde_json::to_vec(&unsaved)
    }
    .expect("an Event always serialises");
    debug_assert!(json.starts_with(EMPTY_ID_PREFIX));
    json.drain(..EMPTY_ID_PREFIX.len());
    let body = json;

    let mut terms: Vec<Vec<u8>> = Vec::with_capacity(64);
    let mut add = |f: Field, v: &str| {
        if !v.is_empty() {
            terms.push(keys::term_of(f, v));
        }
    };
    add(Field::Integration, &event.integration.id);
    add(Field::Connector, &event.integration.connector);
    add(Field::Actor, &event.actor.id);
    for v in [&event.actor.name, &event.actor.email]
        .into_iter()
        .flatten()
    {
        add(Field::Actor, v);
    }
    add(Field::Action, event.action.as_str());
    add(Field::Category, event.category.as_str());
    add(Field::Outcome, event.outcome.as_str());
    add(Field::EventType, &event.event_type);
    for t in &event.targets {
        add(Field::Target, &t.id);
        if let Some(name) = &t.name {
            add(Field::Target, name);
        }
    }
    if let Some(ip) = &event.actor.ip {
        add(Field::Ip, ip);
    }
    token_terms(event, &mut terms);
    terms.sort_unstable();
    terms.dedup();

    let groups = Dimension::ALL
        .iter()
        .map(|d| (*d, group_value(event, *d)))
        .collect();

    let identity = keys::dedup_identity(&event.integration.id, &event.source_id);
    PreparedEvent {
        time: event.time,
        integration: event.integration.id.clone(),
        hash: keys::dedup_hash(&identity),
        identity,
        body,
        terms,
        groups,
    }
}

/// The value an event is counted under in a histogram grouped by `d`.
pub fn group_value(event: &Event, d: Dimension) -> String {
    match d {
        Dimension::Total => String::new(),
        Dimension::Action => event.action.as_str().to_string(),
        Dimension::Category => event.category.as_str().to_string(),
        Dimension::Integration => event.integration.id.clone(),
        Dimension::Actor => keys::index_value(&event.actor.id),
        Dimension::Outcome => event.outcome.as_str().to_string(),
    }
}

/// The complete JSON of a stored event: its id spliced in front of the stored body.
pub fn full_json(seq: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 28);
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(format!("{seq:016x}").as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(body);
    out
}

/// The dedup identity of a stored event, read back from its body (the writer compares it with a
/// new event's when their hashes match).
pub fn stored_identity(seq: u64, body: &[u8]) -> Result<Vec<u8>, super::StoreError> {
    #[derive(serde::Deserialize)]
    struct Integration {
        id: String,
    }
    #[derive(serde::Deserialize)]
    struct Identity {
        integration: Integration,
        source_id: String,
    }
    let json = full_json(seq, body);
    let parsed: Identity = serde_json::from_slice(&json).map_err(|e| {
        super::StoreError::Corrupt(format!("event {seq:016x} does not decode: {e}"))
    })?;
    Ok(keys::dedup_identity(
        &parsed.integration.id,
        &parsed.source_id,
    ))
}

/// The chain hash of an event: SHA-256(previous hash ‖ the event's full JSON), computed without
/// assembling the JSON.
pub fn chain_hash_of(prev: &[u8; 32], seq: u64, body: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(prev);
    h.update(b"{\"id\":\"");
    h.update(format!("{seq:016x}").as_bytes());
    h.update(b"\",");
    h.update(body);
    h.finalize().into()
}

/// Search tokens of an event: its normalised text fields in full, and the first string values
/// of its raw payload.
pub fn event_tokens(event: &Event) -> HashSet<String> {
    let mut terms = Vec::new();
    token_terms(event, &mut terms);
    terms
        .into_iter()
        .map(|t| String::from_utf8_lossy(&t[1..]).into_owned())
        .collect()
}

/// The token terms of an event (`keys::term(Field::Token, token)`), each once. Built without a
/// `String` per word: this runs for every event stored.
fn token_terms(event: &Event, out: &mut Vec<Vec<u8>>) {
    let mut seen: HashSet<u64> = HashSet::default();
    let texts = [
        Some(event.event_type.as_str()),
        Some(event.actor.id.as_str()),
        event.actor.name.as_deref(),
        event.actor.email.as_deref(),
        event.actor.ip.as_deref(),
        event.session_id.as_deref(),
        event.description.as_deref(),
    ];
    for text in texts.into_iter().flatten() {
        word_terms(text, 2, false, &mut seen, out);
    }
    for t in &event.targets {
        word_terms(&t.kind, 2, false, &mut seen, out);
        word_terms(&t.id, 2, false, &mut seen, out);
        if let Some(name) = &t.name {
            word_terms(name, 2, false, &mut seen, out);
        }
    }
    for c in &event.changes {
        word_terms(&c.field, 2, false, &mut seen, out);
        for v in [&c.old, &c.new] {
            if let serde_json::Value::String(s) = v {
                word_terms(s, 2, false, &mut seen, out);
            }
        }
    }
    // From the raw payload only words: tokens with digits there are mostly ids, counters and
    // timestamps, each nearly unique, and each would cost the store a key of its own.
    let from_fields = out.len();
    for value in json_string_values(event.raw.get()) {
        if out.len() - from_fields >= MAX_RAW_TOKENS {
            return;
        }
        word_terms(value, 3, true, &mut seen, out);
        out.truncate(from_fields + MAX_RAW_TOKENS.min(out.len() - from_fields));
    }
}

/// Pushes the term of each new word of `text`: runs of letters and digits (letters only when
/// `letters_only`), `min` to 64 characters, lowercased.
fn word_terms(
    text: &str,
    min: usize,
    letters_only: bool,
    seen: &mut HashSet<u64>,
    out: &mut Vec<Vec<u8>>,
) {
    use std::hash::BuildHasher;
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if word.len() < min {
            continue;
        }
        let ascii = word.is_ascii();
        let n = if ascii {
            word.len()
        } else {
            word.chars().count()
        };
        if !(min..=MAX_TOKEN_LEN).contains(&n)
            || (letters_only && !word.chars().all(char::is_alphabetic))
        {
            continue;
        }
        let mut term = Vec::with_capacity(1 + word.len());
        term.push(keys::Field::Token.code());
        if ascii {
            term.extend(word.bytes().map(|b| b.to_ascii_lowercase()));
        } else {
            term.extend_from_slice(word.to_lowercase().as_bytes());
        }
        if seen.insert(rustc_hash::FxBuildHasher.hash_one(&term)) {
            out.push(term);
        }
    }
}

/// Lowercased runs of letters and digits, 2 to 64 characters long. Queries are split the same
/// way, so `q=add_member` finds `org.add_member`.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut set = HashSet::default();
    tokenize_into(text, &mut set);
    let mut v: Vec<String> = set.into_iter().collect();
    v.sort();
    v
}

fn tokenize_into(text: &str, out: &mut HashSet<String>) {
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let n = word.chars().count();
        if (2..=MAX_TOKEN_LEN).contains(&n) {
            if word.chars().any(|c| c.is_uppercase()) {
                out.insert(word.to_lowercase());
            } else if !out.contains(word) {
                out.insert(word.to_string());
            }
        }
    }
}

/// The string values (not the keys) of a JSON text, found by a single scan without parsing.
/// Escape sequences act as separators, which is all a tokenizer needs.
fn json_string_values(json: &str) -> impl Iterator<Item = &str> {
    let bytes = json.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            if bytes[i] != b'"' {
                i += 1;
                continue;
            }
            let start = i + 1;
            let mut j = start;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(bytes.len());
            i = end + 1;
            let mut k = i;
            while k < bytes.len() && bytes[k].is_ascii_whitespace() {
                k += 1;
            }
            let is_key = k < bytes.len() && bytes[k] == b':';
            if !is_key {
                // Quotes are ASCII, so `start..end` are char boundaries.
                return json.get(start..end);
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_split_on_punctuation_and_skip_json_keys() {
        assert_eq!(
            tokenize("org.add_member Alice@Example.com x"),
            vec!["add", "alice", "com", "example", "member", "org"]
        );
        let values: Vec<&str> = json_string_values(
            r#"{"actor": "octocat", "n": 5, "esc": "a\"b", "list": ["repo.create"]}"#,
        )
        .collect();
        assert_eq!(values, vec!["octocat", "a\\\"b", "repo.create"]);
    }
}
