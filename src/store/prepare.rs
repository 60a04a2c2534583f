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

/// An event's index terms in one buffer, each with its hash: built without an allocation per
/// term, and looked up in the tail without hashing again.
#[derive(Debug, Clone, Default)]
pub struct Terms {
    bytes: Vec<u8>,
    /// (start, length, hash) of each term, distinct.
    spans: Vec<(u32, u32, u64)>,
    /// Open-addressing index over `spans` (span index + 1; 0 is empty), a power of two at least
    /// twice the spans: finding a duplicate is one probe, not a scan.
    slots: Vec<u32>,
}

/// The hash every term is looked up by (FxHash of its bytes).
pub fn term_hash(term: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(term)
}

impl Terms {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Adds a term unless it is there already.
    pub fn push(&mut self, term: &[u8]) {
        let hash = term_hash(term);
        self.push_hashed(term, hash);
    }

    fn push_hashed(&mut self, term: &[u8], hash: u64) {
        if (self.spans.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let mask = self.slots.len() - 1;
        let mut at = (hash as usize) & mask;
        loop {
            match self.slots[at] {
                0 => break,
                i => {
                    let (s, l, h) = self.spans[i as usize - 1];
                    if h == hash && &self.bytes[s as usize..(s + l) as usize] == term {
                        return;
                    }
                }
            }
            at = (at + 1) & mask;
        }
        self.spans
            .push((self.bytes.len() as u32, term.len() as u32, hash));
        self.slots[at] = self.spans.len() as u32;
        self.bytes.extend_from_slice(term);
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(128);
        self.slots = vec![0; size];
        for (i, (_, _, h)) in self.spans.iter().enumerate() {
            let mut at = (*h as usize) & (size - 1);
            while self.slots[at] != 0 {
                at = (at + 1) & (size - 1);
            }
            self.slots[at] = i as u32 + 1;
        }
    }

    pub fn contains_hashed(&self, term: &[u8], hash: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let mask = self.slots.len() - 1;
        let mut at = (hash as usize) & mask;
        while self.slots[at] != 0 {
            let (s, l, h) = self.spans[self.slots[at] as usize - 1];
            if h == hash && &self.bytes[s as usize..(s + l) as usize] == term {
                return true;
            }
            at = (at + 1) & mask;
        }
        false
    }

    /// Keeps the first `n` terms.
    pub fn truncate(&mut self, n: usize) {
        if n < self.spans.len() {
            self.bytes.truncate(self.spans[n].0 as usize);
            self.spans.truncate(n);
            let size = self.slots.len();
            self.slots.clear();
            self.slots.resize(size / 2, 0);
            self.grow();
        }
    }

    pub fn contains(&self, term: &[u8]) -> bool {
        self.contains_hashed(term, term_hash(term))
    }

    /// Each term and its hash.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], u64)> + '_ {
        self.spans
            .iter()
            .map(|(s, l, h)| (&self.bytes[*s as usize..(*s + *l) as usize], *h))
    }
}

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
    pub terms: Terms,
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

    let mut terms = Terms {
        bytes: Vec::with_capacity(1024),
        spans: Vec::with_capacity(64),
        slots: Vec::new(),
    };
    let mut add = |f: Field, v: &str| {
        if !v.is_empty() {
            terms.push(&keys::term_of(f, v));
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

/// `group_value` read from an event's JSON without decoding the rest of it (histograms count
/// partial hours and filtered ranges event by event).
pub fn group_value_of_json(json: &[u8], d: Dimension) -> Result<String, serde_json::Error> {
    use std::borrow::Cow;
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: Cow<'a, str>,
    }
    #[derive(serde::Deserialize)]
    struct Groups<'a> {
        #[serde(borrow)]
        action: Option<Cow<'a, str>>,
        #[serde(borrow)]
        category: Option<Cow<'a, str>>,
        #[serde(borrow)]
        outcome: Option<Cow<'a, str>>,
        #[serde(borrow)]
        integration: Option<Id<'a>>,
        #[serde(borrow)]
        actor: Option<Id<'a>>,
    }
    let g: Groups = serde_json::from_slice(json)?;
    let text = |v: Option<Cow<'_, str>>| v.map(Cow::into_owned).unwrap_or_default();
    Ok(match d {
        Dimension::Total => String::new(),
        Dimension::Action => text(g.action),
        Dimension::Category => text(g.category),
        Dimension::Outcome => text(g.outcome),
        Dimension::Integration => text(g.integration.map(|i| i.id)),
        Dimension::Actor => keys::index_value(&text(g.actor.map(|a| a.id))),
    })
}

/// The complete JSON of a stored event: its id spliced in front of the stored body.
pub fn full_json(seq: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 25);
    out.extend_from_slice(&id_prefix(seq));
    out.extend_from_slice(body);
    out
}

/// The stored body of an event's complete JSON: what follows its id member, which must name
/// `seq`.
pub fn body_of_full_json(seq: u64, json: &[u8]) -> Result<Vec<u8>, super::StoreError> {
    let prefix = id_prefix(seq);
    match json.strip_prefix(&prefix[..]) {
        Some(body) if !body.is_empty() => Ok(body.to_vec()),
        _ => Err(super::StoreError::Corrupt(format!(
            "the event given for {seq:016x} does not start with its id"
        ))),
    }
}

/// The leaf hash of a stored slot: computed from an event's body, or kept by its tombstone.
pub fn leaf_of_slot(seq: u64, slot: &[u8]) -> Result<[u8; 32], super::StoreError> {
    match super::block::Tombstone::parse(slot)? {
        Some(t) => Ok(t.leaf),
        None => Ok(leaf_hash_of(seq, slot)),
    }
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
    h.update(id_prefix(seq));
    h.update(body);
    h.finalize().into()
}

/// The event's Merkle leaf hash: SHA-256(0x00 ‖ its complete JSON), the bytes `full_json`
/// builds and the API serves, so that anyone holding an exported line can hash it.
pub fn leaf_hash_of(seq: u64, body: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(id_prefix(seq));
    h.update(body);
    h.finalize().into()
}

/// `{"id":"<seq as 16 hex digits>",`: what comes before the stored body in an event's JSON.
fn id_prefix(seq: u64) -> [u8; 25] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"{\"id\":\"0000000000000000\",";
    for (i, byte) in out[7..23].iter_mut().enumerate() {
        *byte = HEX[(seq >> (60 - 4 * i) & 0xf) as usize];
    }
    out
}

/// Search tokens of an event: its normalised text fields in full, and the first string values
/// of its raw payload.
pub fn event_tokens(event: &Event) -> HashSet<String> {
    let mut terms = Terms::default();
    token_terms(event, &mut terms);
    terms
        .iter()
        .map(|(t, _)| String::from_utf8_lossy(&t[1..]).into_owned())
        .collect()
}

/// The token terms of an event (`keys::term(Field::Token, token)`), each once. Built without a
/// `String` per word: this runs for every event stored.
fn token_terms(event: &Event, out: &mut Terms) {
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
        word_terms(text, 2, false, out);
    }
    for t in &event.targets {
        word_terms(&t.kind, 2, false, out);
        word_terms(&t.id, 2, false, out);
        if let Some(name) = &t.name {
            word_terms(name, 2, false, out);
        }
    }
    for c in &event.changes {
        word_terms(&c.field, 2, false, out);
        for v in [&c.old, &c.new] {
            if let serde_json::Value::String(s) = v {
                word_terms(s, 2, false, out);
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
        word_terms(value, 3, true, out);
        out.truncate(from_fields + MAX_RAW_TOKENS);
    }
}

/// Pushes the term of each new word of `text`: runs of letters and digits (letters only when
/// `letters_only`), `min` to 64 characters, lowercased. ASCII text (nearly all of it) is
/// scanned byte by byte and a word is hashed before any allocation; other text goes by chars.
fn word_terms(text: &str, min: usize, letters_only: bool, out: &mut Terms) {
    if !text.is_ascii() {
        return word_terms_unicode(text, min, letters_only, out);
    }
    let code = keys::Field::Token.code();
    let bytes = text.as_bytes();
    let mut lower = [0u8; MAX_TOKEN_LEN + 1];
    lower[0] = code;
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && !bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        let start = i;
        let mut letters = true;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            letters &= bytes[i].is_ascii_alphabetic();
            i += 1;
        }
        let n = i - start;
        if n < min || n > MAX_TOKEN_LEN || (letters_only && !letters) {
            continue;
        }
        for (d, b) in lower[1..=n].iter_mut().zip(&bytes[start..i]) {
            *d = b.to_ascii_lowercase();
        }
        out.push(&lower[..=n]);
    }
}

fn word_terms_unicode(text: &str, min: usize, letters_only: bool, out: &mut Terms) {
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        let n = word.chars().count();
        if !(min..=MAX_TOKEN_LEN).contains(&n)
            || (letters_only && !word.chars().all(char::is_alphabetic))
        {
            continue;
        }
        let mut term = Vec::with_capacity(1 + word.len());
        term.push(keys::Field::Token.code());
        term.extend_from_slice(word.to_lowercase().as_bytes());
        out.push(&term);
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
            let Some(open) = memchr::memchr(b'"', &bytes[i..]) else {
                i = bytes.len();
                return None;
            };
            let start = i + open + 1;
            // the closing quote: the next one not escaped
            let mut j = start;
            loop {
                match memchr::memchr2(b'"', b'\\', &bytes[j.min(bytes.len())..]) {
                    None => {
                        j = bytes.len();
                        break;
                    }
                    Some(k) if bytes[j + k] == b'\\' => j += k + 2,
                    Some(k) => {
                        j += k;
                        break;
                    }
                }
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

    /// The histogram's shortcut reads the same group values as the full decode.
    #[test]
    fn group_values_from_json_match_the_decoded_event() {
        let line = r#"{"time":"2024-05-01T10:00:00Z","source_id":"s1","event_type":"org.add_member","action":"grant","category":"user_management","outcome":"failure","actor":{"id":"00U-Mixed-CASE","name":"Ann \"A\" Lee","email":"a@x.io"},"raw":{"action":"not this","actor":{"id":"nor this"},"deep":[{"outcome":"x"}]}}"#;
        let integration = crate::ingest::custom_integration();
        let event =
            crate::schema::parse_ingest_line_fast(line, &integration, 0).expect("the line parses");
        let prepared = prepare(&event);
        let mut json = vec![b'{'];
        json.extend_from_slice(&prepared.body);
        for d in Dimension::ALL {
            assert_eq!(
                group_value_of_json(&json, d).expect("reads"),
                group_value(&event, d),
                "{d:?}"
            );
        }
    }

    #[test]
    fn terms_are_distinct_through_growth_and_truncation() {
        let mut t = Terms::default();
        for round in 0..3 {
            for i in 0..300 {
                t.push(format!("term{i}").as_bytes());
            }
            assert_eq!(t.len(), 300, "round {round}");
        }
        assert!(t.contains(b"term299") && !t.contains(b"term300"));
        t.truncate(10);
        assert_eq!(t.len(), 10);
        assert!(t.contains(b"term9") && !t.contains(b"term10"));
        t.push(b"term10");
        t.push(b"term3");
        assert_eq!(t.len(), 11);
        let all: Vec<&[u8]> = t.iter().map(|(b, _)| b).collect();
        assert_eq!(all[10], b"term10");
    }

    #[test]
    fn the_ascii_word_scanner_agrees_with_the_unicode_one() {
        let texts = [
            "org.add_member Alice@Example.com x 10.0.0.1 a1b2 ___ THIS-is-IT",
            "x".repeat(64).as_str(),
            "y".repeat(65).as_str(),
            "",
            "  ab  cd  ",
        ]
        .map(str::to_string);
        for text in &texts {
            for (min, letters) in [(2, false), (3, true)] {
                let (mut a, mut b) = (Terms::default(), Terms::default());
                word_terms(text, min, letters, &mut a);
                word_terms_unicode(text, min, letters, &mut b);
                assert_eq!(
                    a.iter().collect::<Vec<_>>(),
                    b.iter().collect::<Vec<_>>(),
                    "{text:?}"
                );
            }
        }
        let mut out = Terms::default();
        word_terms("Über straße ÉTÉ ÉTÉ", 2, false, &mut out);
        assert_eq!(out.len(), 3, "distinct terms only");
        assert_eq!(&out.iter().next().expect("one").0[1..], "über".as_bytes());
    }

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
