//! The properties every parser that outsiders feed must keep, one entry point per family: each
//! takes arbitrary bytes, runs them through the hub's own code and panics only when a property
//! is broken (a panic inside the hub counts too)
//!
//! Two builds use this one file: the `cargo fuzz` targets in `fuzz_targets/` (libFuzzer, for
//! long runs) and the property tests in `tests/integration/fuzz.rs`, which include it by path so
//! that `cargo test` type-checks and runs the very same checks on every change. It may
//! therefore use only `trailhub` and dependencies that the hub itself has.
//!
//! The properties: no panic; every refusal is an error with a message (naming the field, line,
//! header, file and key, or parameter where the API promises it); what is accepted is sane
//! (times in the accepted range, lines that round-trip through the store's encoding, signatures
//! that an independent HMAC agrees with). Allocation is bounded by libFuzzer's
//! `-malloc_limit_mb` in fuzz runs and by an allocation meter in the property tests. See
//! docs/FUZZING.md.

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;
use sha1::Sha1;
use sha2::Sha256;

use trailhub::config::Secret;
use trailhub::connectors::cursor::CursorState;
use trailhub::connectors::definition::{self, Connector, Pagination};
use trailhub::connectors::normalise::{page_records, RecordError};
use trailhub::connectors::paging::next_link;
use trailhub::connectors::paging::next_page;
use trailhub::connectors::ratelimit::RateGate;
use trailhub::connectors::ratelimit::RateHeaders;
use trailhub::connectors::{iso_duration, replay, Registry};
use trailhub::ingest::{custom_integration, parse_body, BodyFormat};
use trailhub::schema::{Event, MAX_STRING_LEN};
use trailhub::store::block::{get_varint, BlockView, Dictionaries, Packer};
use trailhub::store::bloom::Bloom;
use trailhub::store::postings::decode_ranks;
use trailhub::store::prepare::{full_json, prepare};
use trailhub::store::query::{bucket_starts, BucketSize, Position};
use trailhub::store::segment::SegmentMeta;
use trailhub::time::{in_range, parse_rfc3339, parse_time_or_ago, MAX_TIME, MIN_TIME};
use trailhub::timeline::{self, MAX_BUCKETS};
use trailhub::webhooks::signature::{sign_standard_webhook, SignatureScheme};

/// 2024-05-01T00:00:00Z: the hub's clock in every entry point, so that runs reproduce.
pub const NOW: i64 = 1_714_521_600_000_000;
const NOW_UNIX: i64 = NOW / 1_000_000;

/// `data` cut at its first empty line, like an HTTP message: header lines, then a body. No
/// empty line: all of it is the body.
pub fn split_message(data: &[u8]) -> (&[u8], &[u8]) {
    match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (&[], data),
    }
}

/// `name: value` lines as a header map; lines that are no valid header are left out (hyper
/// would refuse them before the hub saw them). Values may hold any byte HTTP allows, non-ASCII
/// included.
pub fn headers_from(head: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

// ---------------------------------------------------------------------------------------------
// ingest lines

/// A line's refusal starts with what is at fault: the field (`` `actor.ip`: ... ``,
/// ``unknown field `x` ``) or, when it is not even a JSON object, the line itself.
pub fn assert_clear_line_error(error: &str) {
    assert!(!error.trim().is_empty(), "a rejected line needs a reason");
    let named = error.starts_with('`')
        || error.starts_with("unknown field `")
        || error.starts_with("line ");
    assert!(
        named,
        "a rejected line's reason must start with the field or the line at fault: {error:?}"
    );
}

/// An accepted event is in range and survives the store's encoding: the JSON the store keeps
/// (`prepare`) and serves (`full_json`) reads back as the same event.
pub fn assert_event_round_trips(event: &Event) {
    assert!(
        in_range(event.time).is_some(),
        "time {} accepted",
        event.time
    );
    assert!(!event.source_id.is_empty(), "an event needs a source id");
    let served = full_json(7, &prepare(event).body);
    let back: Event = match serde_json::from_slice(&served) {
        Ok(e) => e,
        Err(e) => panic!(
            "a stored event does not read back: {e}: {}",
            String::from_utf8_lossy(&served)
        ),
    };
    let mut original = event.clone();
    original.id = "0000000000000007".into();
    let want = serde_json::to_value(&original).expect("an event serialises");
    let got = serde_json::to_value(&back).expect("an event serialises");
    assert_eq!(
        got, want,
        "an accepted line changed on its way through the store"
    );
}

/// `POST /api/v1/events` and `trailhub ingest` on any body, in every format.
pub fn ingest_line(data: &[u8]) {
    let integration = custom_integration();
    for format in [BodyFormat::Sniff, BodyFormat::Json, BodyFormat::Ndjson] {
        match parse_body(data, format, &integration, NOW) {
            Err(e) => assert!(!e.to_string().is_empty(), "a refused body needs a reason"),
            Ok(parsed) => {
                let lines = data.split(|b| *b == b'\n').count();
                for rejected in &parsed.rejected {
                    assert!(rejected.line >= 1, "lines are numbered from 1");
                    if format == BodyFormat::Ndjson {
                        assert!(rejected.line <= lines, "line {} of {lines}", rejected.line);
                    }
                    assert_clear_line_error(&rejected.error);
                }
                for event in &parsed.events {
                    assert_event_round_trips(event);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// webhook signatures

/// The secrets every scheme is configured with: the second one signs (a rotation in progress),
/// the first is empty and must be skipped, never match.
pub fn webhook_secrets() -> Vec<Secret> {
    vec![
        Secret::new(""),
        Secret::new("whsec_ZnV6ei13ZWJob29rLXNpZ25pbmctc2VjcmV0LTAxMjM0NTY3ODk="),
    ]
}

const SIGNING: usize = 1;

/// The headers a vendor sends for a body, a timestamp and a delivery id, signed with a secret.
pub type Signer =
    fn(secret: &str, body: &[u8], timestamp: &str, id: &str) -> Vec<(&'static str, String)>;

/// A scheme, and how a vendor would sign for it (an HMAC computed here, independently of the
/// hub's verifier; Standard Webhooks with the hub's own signer, which in-house apps use).
pub struct SchemeCase {
    pub scheme: SignatureScheme,
    /// Whether the body is covered (Okta sends a shared token, no MAC).
    pub signs_body: bool,
    /// Whether a timestamp header is signed and checked for freshness.
    pub signs_timestamp: bool,
    /// The header that carries the signed timestamp.
    pub timestamp_header: Option<&'static str>,
    /// A delivery-id header the MAC covers (changing it must break the signature).
    pub signed_id_header: Option<&'static str>,
    pub sign: Signer,
}

fn hmac256(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn hmac1(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

fn scheme(toml_text: &str) -> SignatureScheme {
    toml::from_str(toml_text).expect("the fuzz schemes are valid")
}

/// Every built-in scheme, and two `hmac_header` variants (SHA-256 hex with a signed timestamp;
/// SHA-1 base64 with a signed id).
pub fn scheme_cases() -> Vec<SchemeCase> {
    use base64::Engine as _;
    vec![
        SchemeCase {
            scheme: scheme(r#"scheme = "github""#),
            signs_body: true,
            signs_timestamp: false,
            timestamp_header: None,
            signed_id_header: None,
            sign: |secret, body, _, id| {
                vec![
                    (
                        "x-hub-signature-256",
                        format!(
                            "sha256={}",
                            hex::encode(hmac256(secret.as_bytes(), &[body]))
                        ),
                    ),
                    ("x-github-delivery", id.to_string()),
                ]
            },
        },
        SchemeCase {
            scheme: scheme(r#"scheme = "slack_v0""#),
            signs_body: true,
            signs_timestamp: true,
            timestamp_header: Some("x-slack-request-timestamp"),
            signed_id_header: None,
            sign: |secret, body, ts, _| {
                let mac = hmac256(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body]);
                vec![
                    ("x-slack-request-timestamp", ts.to_string()),
                    ("x-slack-signature", format!("v0={}", hex::encode(mac))),
                ]
            },
        },
        SchemeCase {
            scheme: scheme(r#"scheme = "okta_event_hook""#),
            signs_body: false,
            signs_timestamp: false,
            timestamp_header: None,
            signed_id_header: None,
            sign: |secret, _, _, _| vec![("authorization", secret.to_string())],
        },
        SchemeCase {
            scheme: scheme(r#"scheme = "standard_webhooks""#),
            signs_body: true,
            signs_timestamp: true,
            timestamp_header: Some("webhook-timestamp"),
            signed_id_header: Some("webhook-id"),
            sign: |secret, body, ts, id| {
                let seconds: i64 = ts.parse().unwrap_or(0);
                let signature = sign_standard_webhook(&Secret::new(secret), id, seconds, body)
                    .expect("the fuzz secret is base64");
                // a timestamp that is not plain digits is signed as sent, like a sender would
                let signature = if seconds.to_string() == ts {
                    signature
                } else {
                    let key = base64::engine::general_purpose::STANDARD
                        .decode(secret.trim_start_matches("whsec_"))
                        .expect("base64");
                    let mac = hmac256(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
                    format!(
                        "v1,{}",
                        base64::engine::general_purpose::STANDARD.encode(mac)
                    )
                };
                vec![
                    ("webhook-id", id.to_string()),
                    ("webhook-timestamp", ts.to_string()),
                    ("webhook-signature", signature),
                ]
            },
        },
        SchemeCase {
            scheme: scheme(
                r#"
                scheme = "hmac_header"
                header = "x-zm-signature"
                prefix = "v0="
                algorithm = "sha256"
                encoding = "hex"
                timestamp_header = "x-zm-request-timestamp"
                signed_payload = "v0:{timestamp}:{body}"
                "#,
            ),
            signs_body: true,
            signs_timestamp: true,
            timestamp_header: Some("x-zm-request-timestamp"),
            signed_id_header: None,
            sign: |secret, body, ts, _| {
                let mac = hmac256(secret.as_bytes(), &[b"v0:", ts.as_bytes(), b":", body]);
                vec![
                    ("x-zm-request-timestamp", ts.to_string()),
                    ("x-zm-signature", format!("v0={}", hex::encode(mac))),
                ]
            },
        },
        SchemeCase {
            scheme: scheme(
                r#"
                scheme = "hmac_header"
                header = "x-signature"
                algorithm = "sha1"
                encoding = "base64"
                id_header = "x-delivery"
                signed_payload = "{id}.{body}"
                "#,
            ),
            signs_body: true,
            signs_timestamp: false,
            timestamp_header: None,
            signed_id_header: Some("x-delivery"),
            sign: |secret, body, _, id| {
                let mac = hmac1(secret.as_bytes(), &[id.as_bytes(), b".", body]);
                vec![
                    ("x-delivery", id.to_string()),
                    (
                        "x-signature",
                        base64::engine::general_purpose::STANDARD.encode(mac),
                    ),
                ]
            },
        },
    ]
}

fn signed_headers(pairs: &[(&'static str, String)]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.insert(*name, HeaderValue::from_str(value).ok()?);
    }
    Some(headers)
}

/// A refusal names no secret and has a code and a message.
fn assert_clean_rejection(
    case: &SchemeCase,
    e: &trailhub::webhooks::signature::RejectReason,
    secrets: &[Secret],
) {
    let message = e.to_string();
    assert!(!e.code().is_empty() && !message.is_empty());
    for s in secrets.iter().filter(|s| !s.expose().is_empty()) {
        assert!(
            !message.contains(s.expose()),
            "{}: a rejection quotes the secret",
            case.scheme.name()
        );
    }
}

/// `POST /hooks/{id}` for every scheme: `data` is header lines, an empty line, the body.
///
/// - as sent, the delivery carries no signature made with the secret, so every scheme refuses
///   it with a clean reason (unless it happens to carry the right one, checked independently);
/// - signed by a vendor, the same body is accepted exactly when its timestamp is well formed
///   and fresh; with one byte of the body, the timestamp or the id changed, or signed with
///   another secret, it is refused.
pub fn webhook_signature(data: &[u8]) {
    let (head, body) = split_message(data);
    let headers = headers_from(head);
    let secrets = webhook_secrets();
    let signing = secrets[SIGNING].expose().to_string();
    // the clock and the signed time come from the input too: far past, far future, i64 edges
    let skew = data.first().map_or(0, |b| i64::from(*b as i8)) * 37;
    let now = if data.len() % 7 == 3 {
        i64::MAX - skew.abs()
    } else {
        NOW_UNIX
    };
    let ts_text = head
        .split(|b| *b == b'\n')
        .find_map(|l| l.strip_prefix(b"ts="))
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .unwrap_or_else(|| (now.saturating_add(skew)).to_string());
    let id = "msg_2fPq0mJcZ1";
    for case in scheme_cases() {
        let name = case.scheme.name();
        // the delivery as it came
        match case.scheme.verify(&secrets, &headers, body, now) {
            Err(e) => assert_clean_rejection(&case, &e, &secrets),
            Ok(v) => {
                // a MAC cannot be guessed: only Okta's shared token, sent as is, may pass
                assert_eq!(
                    v.matched_secret, SIGNING,
                    "{name}: the empty secret matched"
                );
                let token = headers.get("authorization").map(|h| h.as_bytes());
                assert!(
                    name == "shared_token" && token == Some(signing.as_bytes()),
                    "{name}: accepted a delivery not signed with the secret"
                );
            }
        }

        // the same body, signed
        let Some(signed) = signed_headers(&(case.sign)(&signing, body, &ts_text, id)) else {
            continue; // a timestamp no header can carry
        };
        let fresh = ts_text.len() <= 11
            && !ts_text.is_empty()
            && ts_text.bytes().all(|b| b.is_ascii_digit())
            && ts_text.parse::<i64>().is_ok_and(|t| t.abs_diff(now) <= 300);
        let verdict = case.scheme.verify(&secrets, &signed, body, now);
        match (&verdict, !case.signs_timestamp || fresh) {
            (Ok(v), true) => assert_eq!(v.matched_secret, SIGNING, "{name}"),
            (Err(e), false) => assert_clean_rejection(&case, e, &secrets),
            (Ok(_), false) => panic!("{name}: accepted a stale or malformed timestamp {ts_text:?}"),
            (Err(e), true) => panic!("{name}: refused a good signature: {e}"),
        }
        if verdict.is_err() {
            continue;
        }
        // one byte of the body changed
        if case.signs_body && !body.is_empty() {
            let mut tampered = body.to_vec();
            let at = usize::from(data[0]) % tampered.len();
            tampered[at] ^= 1 << (data.len() % 8);
            let e = case
                .scheme
                .verify(&secrets, &signed, &tampered, now)
                .expect_err("a changed body must not verify");
            assert_clean_rejection(&case, &e, &secrets);
        }
        // the signed timestamp moved by a second, the id changed, or another secret signed
        let mut variants: Vec<Vec<(&'static str, String)>> = vec![(case.sign)(
            "whsec_YW4tYXR0YWNrZXJzLWd1ZXNz", // another key, valid for every scheme
            body,
            &ts_text,
            id,
        )];
        if case.signs_timestamp {
            let moved = (ts_text.parse::<i64>().unwrap_or(0) + 1).to_string();
            let mut pairs = (case.sign)(&signing, body, &ts_text, id);
            for (k, v) in pairs.iter_mut() {
                if Some(*k) == case.timestamp_header {
                    *v = moved.clone();
                }
            }
            variants.push(pairs);
        }
        if let Some(signed_id) = case.signed_id_header {
            let mut pairs = (case.sign)(&signing, body, &ts_text, id);
            for (k, v) in pairs.iter_mut() {
                if *k == signed_id {
                    v.push('x');
                }
            }
            if pairs != (case.sign)(&signing, body, &ts_text, id) {
                variants.push(pairs);
            }
        }
        for pairs in variants {
            let Some(headers) = signed_headers(&pairs) else {
                continue;
            };
            let e = case
                .scheme
                .verify(&secrets, &headers, body, now)
                .expect_err("a tampered delivery must not verify");
            assert_clean_rejection(&case, &e, &secrets);
        }
    }
    // a handshake (Okta's) echoes a header: bounded, and only visible ASCII
    for case in scheme_cases() {
        if let Some(Ok(reply)) = case.scheme.verification_handshake(&headers) {
            assert!(reply.challenge.len() <= 512);
            assert!(serde_json::from_str::<serde_json::Value>(&reply.to_json()).is_ok());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// connector definitions

/// The file name every fuzzed definition is parsed under.
pub const DEFINITION_FILE: &str = "connectors/fuzzed.toml";

/// `trailhub connectors check` on any text: a definition loads, or is refused naming the file
/// and the key at fault. A definition that loads replays an empty page without a panic.
pub fn connector_definition(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match definition::parse(DEFINITION_FILE, &text) {
        Ok(connector) => {
            let _ = replay(&connector, "[]");
            let _ = replay(&connector, r#"{"data":[{}]}"#);
        }
        Err(e) => {
            assert_eq!(e.file, DEFINITION_FILE, "the error names the file");
            assert!(!e.key.trim().is_empty(), "the error names a key: {e}");
            assert!(!e.message.trim().is_empty(), "the error says why: {e}");
        }
    }
    // a `[webhook.signature]` table on its own
    let _ = toml::from_str::<SignatureScheme>(&text);
}

// ---------------------------------------------------------------------------------------------
// vendor pages

/// Every built-in connector, sorted by name (parsed once per process).
pub fn connectors() -> &'static [std::sync::Arc<Connector>] {
    static ALL: std::sync::OnceLock<Vec<std::sync::Arc<Connector>>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        Registry::builtin()
            .expect("the built-in definitions load")
            .all()
            .cloned()
            .collect()
    })
}

/// A vendor's answer through `trailhub connectors replay` and the engine's paging and
/// rate-limit reading: `data` is a connector selector (a first byte below 0x20, else the
/// length picks one, so that a fixture page is a seed as it is), header lines, an empty line
/// and the page body. Records are refused one by one with their index, accepted ones are in
/// range and round-trip through the store.
pub fn vendor_page(data: &[u8]) {
    let all = connectors();
    let (selector, rest) = match data.split_first() {
        Some((first, rest)) if *first < 0x20 => (usize::from(*first), rest),
        _ => (data.len(), data),
    };
    let connector = &all[selector % all.len()];
    let (head, body) = split_message(rest);
    let headers = headers_from(head);

    // headers: the next link, the rate limit
    if let Some(link) = next_link(&headers) {
        assert!(
            link.len() <= head.len(),
            "a next link comes from the header"
        );
    }
    // a push-only connector is never polled: only replay's refusal is checked for it
    let poll = connector.poll.as_deref();
    if let Some(poll) = poll {
        let rate = RateHeaders::read(&poll.rate_limit, &headers, NOW);
        let gate = RateGate::new(&poll.rate_limit, None);
        gate.observe(rate.remaining, rate.reset_in);
        if let Some(wait) = rate.retry_after.or(rate.reset_in) {
            gate.close_for(wait);
        }
        let _ = gate.next_wait();
        for now in [i64::MIN, 0, i64::MAX] {
            let _ = RateHeaders::read(&poll.rate_limit, &headers, now);
        }
    }

    // the body: records, normalised
    let body = String::from_utf8_lossy(body);
    match replay(connector, &body) {
        Err(e) => assert!(!e.to_string().trim().is_empty(), "a refused page says why"),
        Ok(results) => {
            let n = results.len();
            for (i, result) in results.into_iter().enumerate() {
                match result {
                    Ok(event) => {
                        assert!(event.event_type.len() <= MAX_STRING_LEN);
                        assert!(event.source_id.len() <= MAX_STRING_LEN.max(71));
                        assert_event_round_trips(&event);
                    }
                    Err(RecordError::Record { index, message }) => {
                        assert_eq!(index, i, "a record's error names its index");
                        assert!(index < n && !message.trim().is_empty());
                    }
                    Err(other) => panic!("record {i}: not a record error: {other}"),
                }
            }
        }
    }

    // paging helpers on what the page gave
    let Some(poll) = poll else {
        return;
    };
    let records = page_records(&body, &poll.records);
    let owned: Vec<Box<RawValue>> = records
        .map(|r| r.into_iter().map(|r| r.to_owned()).collect())
        .unwrap_or_default();
    // the request in hand: the engine only ever holds one it built or parsed as a URL
    let url = std::str::from_utf8(head)
        .ok()
        .and_then(|h| h.lines().next())
        .and_then(|first| reqwest::Url::parse(first).ok())
        .map_or_else(
            || "https://vendor.example/api/logs?limit=100&from=1".to_string(),
            |u| u.to_string(),
        );
    let checked = |next: Option<String>| {
        if let Some(next) = next {
            assert!(
                reqwest::Url::parse(&next).is_ok(),
                "a next page is a URL: {next}"
            );
        }
    };
    // every kind through the one entry point: links resolved against the request's host only
    let same_origin = |link: &str| {
        let base = reqwest::Url::parse(&url).ok()?;
        let u = base.join(link).ok()?;
        (u.host_str() == base.host_str()).then(|| u.to_string())
    };
    let headers = reqwest::header::HeaderMap::new();
    if let Ok(next) = next_page(poll, &url, &body, &headers, &owned, same_origin) {
        checked(next.next);
    }
    if let Pagination::Offset { param, .. } = &poll.pagination {
        // a page number at the top of its range must not overflow
        let mut top = reqwest::Url::parse(&url).expect("a URL");
        top.query_pairs_mut()
            .append_pair(param, &u64::MAX.to_string());
        let _ = next_page(poll, top.as_str(), &body, &headers, &owned, same_origin);
    }
}

// ---------------------------------------------------------------------------------------------
// time and cursor parameters

/// Query pairs from text: `&`-separated, the first `=` splits key from value, nothing decoded
/// (the API decodes percent escapes first; what arrives here is any string).
pub fn query_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

/// Every time and cursor parameter of `GET /api/v1/events` and the histogram, and the cursor
/// stored between poll cycles: refused naming the parameter, or accepted inside 1970..=9999,
/// and a histogram never has more than `MAX_BUCKETS` buckets.
pub fn time_and_cursor(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut pairs = query_pairs(&text);
    // the API also receives them percent-decoded
    if let Ok(decoded) = serde_urlencoded::from_str::<Vec<(String, String)>>(&text) {
        pairs.extend(decoded);
    }
    let extra = ["limit", "cursor", "bucket", "group_by"];
    for now in [NOW, MIN_TIME, MAX_TIME, i64::MIN, i64::MAX] {
        let request = match timeline::parse(&pairs, &extra, now) {
            Err(e) => {
                assert!(!e.message.trim().is_empty(), "`{}`: no reason", e.field);
                assert!(
                    e.field == "since" || pairs.iter().any(|(k, _)| *k == e.field),
                    "the error names a parameter that was given: {e}"
                );
                continue;
            }
            Ok(r) => r,
        };
        for t in [request.filter.since, request.filter.until]
            .into_iter()
            .flatten()
        {
            assert!(in_range(t).is_some(), "time {t} accepted");
        }
        if let Err(e) = request.limit() {
            assert_eq!(e.field, "limit");
        }
        match request.cursor() {
            Err(e) => assert_eq!(e.field, "cursor"),
            Ok(Some(p)) => assert!(in_range(p.time).is_some()),
            Ok(None) => {}
        }
        for size in [
            BucketSize::Minute,
            BucketSize::FiveMinutes,
            BucketSize::Hour,
            BucketSize::Day,
        ] {
            match timeline::histogram_range(&request.filter, size, now) {
                Err(e) => assert!(e.field == "since" || e.field == "bucket", "{e}"),
                Ok((since, until)) => {
                    assert!(since < until);
                    let buckets = bucket_starts(since, until, size)
                        .take(MAX_BUCKETS as usize + 10)
                        .count() as i64;
                    assert!(
                        buckets <= MAX_BUCKETS + 2,
                        "{buckets} buckets for [{since}, {until})"
                    );
                }
            }
        }
    }
    // the pieces on their own
    for (_, value) in &pairs {
        if let Some(p) = Position::decode(value) {
            assert_eq!(&p.encode(), value, "a cursor decodes from one text only");
        }
        for now in [NOW, i64::MIN, i64::MAX] {
            if let Ok(t) = parse_time_or_ago(value, now) {
                assert!(in_range(t).is_some());
            }
        }
        let _ = parse_rfc3339(value);
        if let Some(d) = iso_duration(value) {
            assert!(d >= 0, "a duration of {d}");
        }
        let _ = BucketSize::parse(value);
    }
    // the engine's cursor as stored between cycles
    let state = CursorState::decode(Some(data));
    let _ = state.summary();
}

// ---------------------------------------------------------------------------------------------
// the store's own bytes

/// What the store reads back from disk: an event block (and its frames), a posting list, a
/// segment description, a Bloom filter, a varint. A damaged value is an error, never a panic;
/// what decodes encodes back to the same bytes where the format is canonical.
pub fn store_blocks(data: &[u8]) {
    let dicts = Dictionaries::default();
    check_block(data, &dicts);

    // a well-formed block whose frame decompresses to `data`: reaches the frame parser, which
    // a random value would almost never get past zstd's checksum to
    if let Some((events, raw)) = data.split_first() {
        let bodies: Vec<Vec<u8>> = (0..usize::from(*events % 32).max(1))
            .map(|i| format!("{{\"n\":{i}}}").into_bytes())
            .collect();
        let refs: Vec<(&[u8], [u8; 32])> = bodies.iter().map(|b| (b.as_slice(), [9; 32])).collect();
        let mut packer = Packer::new().expect("a zstd context");
        let block = packer.block(&refs, None).expect("packs");
        let view = BlockView::parse(&block).expect("a packed block parses");
        let edited = view
            .with_frame_edited(0, &dicts, |frame| {
                frame.clear();
                frame.extend_from_slice(raw);
            })
            .expect("re-packs");
        check_block(&edited, &dicts);
    }

    match decode_ranks(data) {
        Ok(ranks) => {
            assert!(
                ranks.len() <= data.len().saturating_mul(8),
                "ranks out of nothing"
            );
            assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "ranks come sorted");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match SegmentMeta::decode(data) {
        Ok(meta) => {
            assert_eq!(meta.encode(), data, "a segment description is canonical");
            assert!(meta.chunks() > 0);
            let _ = meta.first();
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Some(bloom) = Bloom::from_bytes(data) {
        assert_eq!(bloom.to_bytes(), data);
        for h in data
            .chunks(8)
            .map(|c| c.iter().fold(0u64, |a, b| a << 8 | u64::from(*b)))
        {
            let _ = bloom.may_contain(h);
        }
    }
    let mut at = 0;
    while at < data.len() {
        let before = at;
        if get_varint(data, &mut at).is_none() {
            break;
        }
        assert!(at > before && at <= data.len());
    }
}

fn check_block(bytes: &[u8], dicts: &Dictionaries) {
    let view = match BlockView::parse(bytes) {
        Ok(v) => v,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let mut decoded = 0u64;
    for f in 0..view.frame_count() {
        match view.decode_frame(f, dicts) {
            Ok(frame) => {
                for i in 0..frame.len() {
                    let _ = frame.body(i);
                    let _ = frame.chain_prefix(i);
                }
                decoded += frame.len() as u64;
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    assert!(decoded <= u64::from(view.count));
    for index in [
        0,
        view.count / 2,
        view.count.saturating_sub(1),
        view.count,
        u32::MAX,
    ] {
        if let Some((f, i)) = view.locate(index) {
            assert!(f < view.frame_count());
            if let Ok(frame) = view.decode_frame(f, dicts) {
                if i < frame.len() {
                    let _ = frame.body(i);
                }
            }
        }
    }
    let _ = view.bodies(dicts);
}
