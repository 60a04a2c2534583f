//! Property tests of the parsers that outsiders feed (issue 7, "Beyond the list"): ingest lines,
//! webhook signatures, connector definitions, vendor pages, time and cursor parameters, and the
//! store's own bytes on disk. Each property runs a bounded number of cases (seconds in all);
//! `PROPTEST_CASES=100000` runs more. The checks themselves live in fuzz/src/lib.rs, shared with
//! the `cargo fuzz` targets (docs/FUZZING.md); the strategies here aim them at hostile but
//! structured inputs that random bytes would rarely reach.

#[path = "../../fuzz/src/lib.rs"]
mod checks;

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use serde_json::{json, Value};

use trailhub::schema::{parse_ingest_line, IntegrationRef};
use trailhub::store::block::{BlockView, Dictionaries, Packer};
use trailhub::store::postings::{decode_ranks, encode_ranks, Position};
use trailhub::store::segment::SegmentMeta;
use trailhub::time::{in_range, parse_rfc3339, MAX_TIME};

// ---------------------------------------------------------------------------------------------
// how much a parser allocates

/// Counts the bytes the calling thread holds while `measure` runs: the integration binary's
/// allocator, off (one thread-local read per allocation) except inside `measure`.
mod meter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Meter;

    thread_local! {
        static ON: Cell<bool> = const { Cell::new(false) };
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn note(delta: isize) {
        let _ = ON.try_with(|on| {
            if on.get() {
                let live = LIVE.get() + delta;
                LIVE.set(live);
                if live > PEAK.get() {
                    PEAK.set(live);
                }
            }
        });
    }

    // SAFETY: every call is passed to the system allocator unchanged; only a counter is kept.
    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on
            unsafe { System.alloc(layout) }
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size() as isize);
            // SAFETY: as for `alloc`
            unsafe { System.alloc_zeroed(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            note(-(layout.size() as isize));
            // SAFETY: `ptr` came from `System` through this allocator with this layout
            unsafe { System.dealloc(ptr, layout) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size as isize - layout.size() as isize);
            // SAFETY: as for `dealloc`, and `new_size` is the caller's to uphold
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }

    #[global_allocator]
    static METER: Meter = Meter;

    /// Runs `f` and returns the most bytes it held at once (allocations of this thread only).
    pub fn peak<R>(f: impl FnOnce() -> R) -> (R, usize) {
        LIVE.set(0);
        PEAK.set(0);
        ON.set(true);
        let out = f();
        ON.set(false);
        (out, PEAK.get().max(0) as usize)
    }
}

/// Runs one check and asserts that it held at most `fixed + per_byte × input` bytes at once:
/// a parser's memory must follow its input, not numbers written in it.
fn bounded(input: &[u8], fixed: usize, per_byte: usize, check: impl FnOnce(&[u8])) {
    let ((), peak) = meter::peak(|| check(input));
    let budget = fixed + per_byte * input.len();
    assert!(
        peak <= budget,
        "{peak} bytes held at once for {} bytes of input (budget {budget})",
        input.len()
    );
}

const MIB: usize = 1024 * 1024;

#[test]
fn the_meter_sees_allocations() {
    let ((), peak) = meter::peak(|| drop(std::hint::black_box(vec![1u8; 3 * MIB])));
    assert!(peak >= 3 * MIB, "{peak}");
    let ((), none) = meter::peak(|| ());
    assert_eq!(none, 0);
}

fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    // a failure prints its minimal input; a regression test then pins it by name
    config.failure_persistence = None;
    config
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// strategies: hostile values

/// Text a careless or hostile client might send: any unicode, controls, bidi overrides,
/// combining marks, NUL, lone-surrogate escapes (as JSON text), very long runs.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ".{0,40}",
        2 => "[\\x00-\\x1f\\x7f\"\\\\]{0,8}",
        1 => Just("\u{202e}evil\u{202c}\u{0301}\u{200b}\u{feff}".to_string()),
        1 => Just("💥🏳️‍🌈𝕏".to_string()),
        1 => Just("=HYPERLINK(\"http://evil\",\"x\")".to_string()),
        1 => (8180usize..8200).prop_map(|n| "é".repeat(n / 2) + &"x".repeat(n % 2)),
        1 => (250usize..260).prop_map(|n| "x".repeat(n)),
        1 => Just(String::new()),
    ]
}

/// Numbers as JSON text, including those no i64, u64 or f64 holds.
fn hostile_number() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        Just("1e400".to_string()),
        Just("-1e400".to_string()),
        Just("123456789012345678901234567890".to_string()),
        Just("-0".to_string()),
        Just("4.9e-324".to_string()),
        Just("1.7976931348623157e308".to_string()),
    ]
}

/// Times near and past every edge: the accepted range's ends, leap seconds, odd offsets,
/// nanoseconds, years no four digits hold, and garbage that looks like a time.
fn hostile_time() -> impl Strategy<Value = String> {
    let parts = (
        0u32..=10_000,
        0u32..=13,
        0u32..=32,
        0u32..=24,
        0u32..=60,
        0u32..=61,
        prop_oneof![Just(String::new()), "\\.[0-9]{1,12}"],
        prop_oneof![
            Just("Z".to_string()),
            Just("z".to_string()),
            Just("+23:59".to_string()),
            Just("-23:59".to_string()),
            Just("+24:00".to_string()),
            Just("-00:00".to_string()),
            Just(String::new()),
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, off)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{off}")
        });
    prop_oneof![
        4 => parts,
        1 => Just("9999-12-31T23:59:59.999999999Z".to_string()),
        1 => Just("9999-12-31T23:59:59.9999999-00:01".to_string()),
        1 => Just("0000-01-01T00:00:00+23:59".to_string()),
        1 => Just("1969-12-31T23:59:59.999999Z".to_string()),
        1 => Just("1970-01-01T00:00:00-00:00".to_string()),
        1 => Just("2016-12-31T23:59:60Z".to_string()),
        1 => "[0-9T:.+Z-]{0,30}",
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => "[0-9]{1,25}[smhdwy]?",
    ]
}

/// Any JSON value, as text, with hostile leaves.
fn hostile_json() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        hostile_number(),
        hostile_text().prop_map(|s| Value::String(s).to_string()),
        hostile_time().prop_map(|s| Value::String(s).to_string()),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((hostile_text(), inner), 0..6).prop_map(|kv| {
                let body: Vec<String> = kv
                    .into_iter()
                    .map(|(k, v)| format!("{}:{v}", Value::String(k)))
                    .collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    })
}

/// A line every rule accepts.
fn good_line() -> Value {
    json!({
        "time": "2024-05-01T12:00:00.123456Z",
        "source_id": "evt-1",
        "event_type": "app.login",
        "category": "authentication",
        "action": "login",
        "outcome": "success",
        "severity": "low",
        "actor": {"id": "u-1", "name": "Ada", "email": "ada@example.com", "type": "user",
                  "ip": "2001:db8::1", "user_agent": "curl/8",
                  "location": {"city": "Paris", "country": "FR", "latitude": 48.85, "longitude": 2.35}},
        "targets": [{"type": "repo", "id": "r-1", "name": "hub"}],
        "changes": [{"field": "role", "old": "viewer", "new": "admin"}],
        "session_id": "s-1",
        "description": "logged in",
        "raw": {"vendor": "payload"}
    })
}

/// The fields of an ingested line, as the error message spells them.
const LINE_FIELDS: &[&str] = &[
    "time",
    "source_id",
    "event_type",
    "category",
    "action",
    "outcome",
    "severity",
    "actor",
    "actor.id",
    "actor.name",
    "actor.email",
    "actor.type",
    "actor.ip",
    "actor.user_agent",
    "actor.location",
    "actor.location.city",
    "actor.location.latitude",
    "targets",
    "targets[0]",
    "targets[0].type",
    "targets[0].id",
    "targets[0].name",
    "changes",
    "changes[0]",
    "changes[0].field",
    "changes[0].new",
    "session_id",
    "description",
    "raw",
];

/// Sets the value at a path such as `actor.location.city` or `targets[0].id`.
fn set_path(line: &mut Value, path: &str, value: Value) {
    let mut at = line;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let (key, index) = match part.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (*part, None),
        };
        let last = i == parts.len() - 1;
        let obj = at.as_object_mut().expect("paths walk objects");
        if last && index.is_none() {
            obj.insert(key.to_string(), value);
            return;
        }
        at = obj.get_mut(key).expect("the good line has every path");
        if let Some(index) = index {
            if last {
                at.as_array_mut().expect("an array")[index] = value;
                return;
            }
            at = &mut at.as_array_mut().expect("an array")[index];
        }
    }
}

fn custom() -> IntegrationRef {
    trailhub::ingest::custom_integration()
}

// ---------------------------------------------------------------------------------------------
// ingest lines

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn ingest_any_bytes(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        bounded(&data, MIB, 64, checks::ingest_line);
    }

    #[test]
    fn ingest_lines_of_hostile_json(lines in prop::collection::vec(
        prop_oneof![
            2 => hostile_json(),
            1 => Just(good_line().to_string()),
            1 => "[\\[{\"a-z:,0-9\\]} ]{0,40}",
        ], 1..8),
        array in any::<bool>(),
    ) {
        let body = if array { format!("[{}]", lines.join(",")) } else { lines.join("\n") };
        bounded(body.as_bytes(), MIB, 64, checks::ingest_line);
    }

    /// One field of a good line replaced by anything: accepted and stored faithfully, or
    /// refused with a message that names that field.
    #[test]
    fn a_hostile_field_is_refused_by_its_name(
        field in prop::sample::select(LINE_FIELDS),
        value in hostile_json(),
    ) {
        let Ok(value) = serde_json::from_str::<Value>(&value) else {
            // 1e400 and friends: not JSON a client can send inside a line
            return Ok(());
        };
        let mut line = good_line();
        set_path(&mut line, field, value);
        match parse_ingest_line(&line, None, &custom(), checks::NOW) {
            Ok(event) => checks::assert_event_round_trips(&event),
            Err(e) => {
                checks::assert_clear_line_error(&e.0);
                // `targets[0]` may be refused as `targets[0].type`, `actor` as `actor.id`
                let named = e.0.contains(field)
                    || field.split('.').next().is_some_and(|top| e.0.contains(top));
                prop_assert!(named, "{field}: {}", e.0);
            }
        }
    }

    #[test]
    fn extreme_times_are_refused_or_kept_exactly(time in hostile_time()) {
        let mut line = good_line();
        set_path(&mut line, "time", Value::String(time.clone()));
        match parse_ingest_line(&line, None, &custom(), checks::NOW) {
            Ok(event) => {
                prop_assert!(in_range(event.time).is_some());
                prop_assert_eq!(Some(event.time), parse_rfc3339(&time));
                checks::assert_event_round_trips(&event);
            }
            Err(e) => prop_assert!(e.0.starts_with("`time`"), "{}", e.0),
        }
    }

    /// Nesting in `raw` or in a change: accepted up to serde_json's depth limit, a reason past it.
    #[test]
    fn deep_nesting_is_refused_with_a_reason(depth in 1usize..600, objects in any::<bool>(), in_raw in any::<bool>()) {
        let (open, close) = if objects { ("{\"a\":", "}") } else { ("[", "]") };
        let nested = format!("{}0{}", open.repeat(depth), close.repeat(depth));
        let mut line = good_line();
        set_path(&mut line, if in_raw { "raw" } else { "changes[0].new" }, json!("HOLE"));
        let text = line.to_string().replace("\"HOLE\"", &nested);
        let parsed = trailhub::ingest::parse_body(
            text.as_bytes(), trailhub::ingest::BodyFormat::Ndjson, &custom(), checks::NOW,
        ).expect("one line");
        if depth < 120 {
            prop_assert_eq!(parsed.events.len(), 1, "{:?}", parsed.rejected);
        } else if let Some(r) = parsed.rejected.first() {
            prop_assert!(r.error.starts_with("line is not valid JSON"), "{}", r.error);
        }
        bounded(text.as_bytes(), MIB, 64, checks::ingest_line);
    }
}

/// What `POST /api/v1/events` accepts is stored and served back equal: through the real writer,
/// its zstd blocks and the read path.
#[test]
fn accepted_lines_are_stored_and_served_back_equal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = trailhub::store::Store::open(
        &dir.path().join("store"),
        &trailhub::store::StoreOptions::new(8 * 1024 * 1024, 0),
    )
    .expect("store");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let case = std::cell::Cell::new(0u64);
    let strategy = prop::collection::vec(
        (
            prop::sample::select(LINE_FIELDS),
            hostile_json(),
            hostile_time(),
        ),
        1..8,
    );
    let mut runner = proptest::test_runner::TestRunner::new(config(32));
    runner
        .run(&strategy, |lines| {
            let mut events = Vec::new();
            for (field, value, time) in lines {
                case.set(case.get() + 1);
                let case = case.get();
                let mut line = good_line();
                if let Ok(value) = serde_json::from_str::<Value>(&value) {
                    set_path(&mut line, field, value);
                }
                if case % 3 == 0 {
                    set_path(&mut line, "time", Value::String(time));
                }
                // distinct across cases, so that nothing is a duplicate of an earlier case
                set_path(
                    &mut line,
                    "source_id",
                    Value::String(format!("case-{case}")),
                );
                if let Ok(event) = parse_ingest_line(&line, None, &custom(), checks::NOW) {
                    events.push(event);
                }
            }
            let prepared = events
                .iter()
                .map(trailhub::store::prepare::prepare)
                .collect();
            let outcome = runtime
                .block_on(store.append(prepared, trailhub::store::Commit::default()))
                .expect("stored");
            prop_assert_eq!(outcome.stored.len(), events.len());
            for (index, seq) in outcome.stored {
                let served = store.event_json(seq).expect("read").expect("present");
                let mut want = serde_json::to_value(&events[index]).expect("serialises");
                want["id"] = Value::String(format!("{seq:016x}"));
                let got: Value = serde_json::from_slice(&served).expect("served JSON");
                prop_assert_eq!(got, want);
            }
            Ok(())
        })
        .expect("every accepted line reads back equal");
    store.shutdown().expect("shutdown");
}

// ---------------------------------------------------------------------------------------------
// webhook signatures

/// A header line for a header some scheme reads, with a value of the wrong kind: wrong lengths,
/// wrong case, other encodings, non-ASCII bytes, huge and negative timestamps.
fn hostile_header_line() -> impl Strategy<Value = Vec<u8>> {
    let names = prop::sample::select(vec![
        "x-hub-signature-256",
        "x-github-delivery",
        "x-slack-signature",
        "x-slack-request-timestamp",
        "authorization",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-zm-signature",
        "x-zm-request-timestamp",
        "x-signature",
        "x-delivery",
        "x-okta-verification-challenge",
    ]);
    let values = prop_oneof![
        "(sha256=|v0=|v1,|)[0-9a-fA-F]{0,70}",
        "(v1,[A-Za-z0-9+/=]{0,50} ?){0,4}",
        "[0-9]{0,25}",
        Just("-1".to_string()),
        Just("1714521600.5".to_string()),
        Just("+1714521600".to_string()),
        Just("99999999999".to_string()),
        Just("9223372036854775808".to_string()),
        "[ -~]{0,600}",
    ]
    .prop_map(String::into_bytes);
    let raw_bytes = prop::collection::vec(128u8..=255, 1..8);
    (names, prop_oneof![3 => values, 1 => raw_bytes]).prop_map(|(name, value)| {
        let mut line = format!("{name}: ").into_bytes();
        line.extend(value);
        line
    })
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn webhook_any_bytes(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        bounded(&data, MIB, 64, checks::webhook_signature);
    }

    /// Refused unless signed with the secret; signed, accepted exactly when the timestamp is
    /// fresh; one byte changed, refused.
    #[test]
    fn webhook_deliveries_verify_only_when_signed(
        headers in prop::collection::vec(hostile_header_line(), 0..6),
        ts in prop_oneof![
            Just(None),
            (-400i64..400).prop_map(|d| Some((checks::NOW / 1_000_000 + d).to_string())),
            "[0-9]{0,14}".prop_map(Some),
            Just(Some("-5".to_string())),
        ],
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            hostile_json().prop_map(String::into_bytes),
        ],
    ) {
        let mut data = Vec::new();
        for line in headers {
            data.extend(line);
            data.push(b'\n');
        }
        if let Some(ts) = ts {
            data.extend(format!("ts={ts}\n").into_bytes());
        }
        data.extend_from_slice(b"\n");
        data.extend(body);
        bounded(&data, MIB, 64, checks::webhook_signature);
    }

    /// Okta's shared token is compared whole: any other value, however close, is refused.
    #[test]
    fn okta_token_must_match_whole(cut in 0usize..60, extra in "[ -~]{0,3}") {
        let cases = checks::scheme_cases();
        let okta = cases.iter().find(|c| c.scheme.name() == "shared_token").expect("okta");
        let secrets = checks::webhook_secrets();
        let secret = secrets[1].expose();
        let presented = format!("{}{extra}", &secret[..cut.min(secret.len())]);
        let mut headers = http::HeaderMap::new();
        headers.insert("authorization", presented.parse().expect("visible ASCII"));
        let verdict = okta.scheme.verify(&secrets, &headers, b"{}", 0);
        prop_assert_eq!(verdict.is_ok(), presented == secret);
    }
}

// ---------------------------------------------------------------------------------------------
// connector definitions

fn builtin_definitions() -> &'static [(String, String)] {
    static FILES: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    FILES.get_or_init(read_builtin_definitions)
}

fn read_builtin_definitions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo().join("connectors")).expect("connectors/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = format!(
                "connectors/{}",
                path.file_name().expect("name").to_string_lossy()
            );
            out.push((name, std::fs::read_to_string(&path).expect("readable")));
        }
    }
    out.sort();
    out
}

#[derive(Debug, Clone)]
enum Mutation {
    /// Drop the n-th `key = value` line.
    DropKey(usize),
    /// Give the n-th key a value of another type.
    Retype(usize, &'static str),
    /// Give the n-th key a huge string.
    Huge(usize, usize),
    /// Repeat the n-th line.
    Repeat(usize),
    /// Add a key no table has, at the top.
    UnknownTopKey(String),
    /// Replace the n-th line with anything.
    Garbage(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::DropKey),
        (
            any::<usize>(),
            prop::sample::select(vec![
                "42",
                "-1",
                "true",
                "\"text\"",
                "[]",
                "[1, \"a\"]",
                "{}",
                "{ x = 1 }",
                "1979-05-27T07:32:00Z",
                "nan",
                "1e400",
                "9223372036854775808",
                "\"\"",
                "\"{config.nope}\"",
                "\"{unclosed\"",
                "\"$..[*\"",
            ])
        )
            .prop_map(|(n, v)| Mutation::Retype(n, v)),
        (any::<usize>(), 8_000usize..200_000).prop_map(|(n, len)| Mutation::Huge(n, len)),
        any::<usize>().prop_map(Mutation::Repeat),
        "[a-z_]{1,12}".prop_map(Mutation::UnknownTopKey),
        (any::<usize>(), "[ -~]{0,40}").prop_map(|(n, g)| Mutation::Garbage(n, g)),
    ]
}

/// The mutated text, and the key the mutation touched (if it touched one).
fn mutate(text: &str, m: &Mutation) -> (String, Option<String>) {
    let lines: Vec<&str> = text.lines().collect();
    let keyed: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start();
            !t.starts_with('#') && !t.starts_with('[') && t.contains(" = ")
        })
        .map(|(i, _)| i)
        .collect();
    let key_of = |i: usize| {
        lines[i]
            .split(" = ")
            .next()
            .unwrap_or("")
            .trim()
            .to_string()
    };
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    let touched = match m {
        Mutation::DropKey(n) => {
            let i = keyed[n % keyed.len()];
            out[i] = String::new();
            Some(key_of(i))
        }
        Mutation::Retype(n, v) => {
            let i = keyed[n % keyed.len()];
            out[i] = format!("{} = {v}", key_of(i));
            Some(key_of(i))
        }
        Mutation::Huge(n, len) => {
            let i = keyed[n % keyed.len()];
            out[i] = format!("{} = \"{}\"", key_of(i), "ẋ".repeat(len / 3));
            Some(key_of(i))
        }
        Mutation::Repeat(n) => {
            let i = n % lines.len();
            out.insert(i, lines[i].to_string());
            None
        }
        Mutation::UnknownTopKey(k) => {
            out.insert(0, format!("zz_{k} = 1"));
            Some(format!("zz_{k}"))
        }
        Mutation::Garbage(n, g) => {
            out[n % lines.len()] = g.clone();
            None
        }
    };
    (out.join("\n"), touched)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn definitions_of_any_text(text in prop_oneof![
        ".{0,400}",
        "(\\[[a-z_.]{0,12}\\]\n|[a-z_]{1,10} = (\"[ -~]{0,12}\"|[0-9]{1,4}|true|\\[\\])\n){0,20}",
    ]) {
        bounded(text.as_bytes(), 4 * MIB, 256, checks::connector_definition);
    }

    /// The real definitions, each with one mutation: loaded, or refused naming the file and a
    /// key; an unknown key is refused by its name.
    #[test]
    fn mutated_definitions_are_refused_naming_file_and_key(
        which in any::<prop::sample::Index>(),
        m in mutation(),
    ) {
        let files = builtin_definitions();
        let (file, text) = which.get(files);
        let (mutated, touched) = mutate(text, &m);
        match trailhub::connectors::definition::parse(file, &mutated) {
            Ok(_) => prop_assert!(
                !matches!(m, Mutation::UnknownTopKey(_)),
                "an unknown key was accepted"
            ),
            Err(e) => {
                prop_assert_eq!(&e.file, file);
                prop_assert!(!e.key.trim().is_empty() && !e.message.trim().is_empty(), "{}", e);
                if let (Mutation::UnknownTopKey(_), Some(k)) = (&m, &touched) {
                    prop_assert!(e.to_string().contains(k.as_str()), "{}", e);
                }
            }
        }
        bounded(mutated.as_bytes(), 4 * MIB, 256, checks::connector_definition);
    }
}

// ---------------------------------------------------------------------------------------------
// vendor pages

/// Every fixture page (JSON files under fixtures/<connector>/), with the index of its connector
/// in `checks::connectors()`.
fn fixture_pages() -> &'static [(usize, String)] {
    static PAGES: std::sync::OnceLock<Vec<(usize, String)>> = std::sync::OnceLock::new();
    PAGES.get_or_init(read_fixture_pages)
}

fn read_fixture_pages() -> Vec<(usize, String)> {
    let connectors = checks::connectors();
    let mut out = Vec::new();
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|e| e == "json") {
                found.push(path);
            }
        }
    }
    for (i, c) in connectors.iter().enumerate() {
        let mut found = Vec::new();
        walk(&repo().join("fixtures").join(&c.name), &mut found);
        found.sort();
        for path in found {
            out.push((i, std::fs::read_to_string(&path).expect("fixture")));
        }
    }
    assert!(out.len() > 10, "fixtures found: {}", out.len());
    out
}

/// Replaces one value inside `v` (chosen by `pick`) with `new`.
fn replace_one(v: &mut Value, pick: &mut usize, new: &Value) -> bool {
    if *pick == 0 {
        *v = new.clone();
        return true;
    }
    *pick -= 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|x| replace_one(x, pick, new)),
        Value::Object(map) => map.values_mut().any(|x| replace_one(x, pick, new)),
        _ => false,
    }
}

fn hostile_rate_headers() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        Just("1e400".to_string()),
        Just("-1".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("18446744073709551616".to_string()),
        Just("9223372036854775807".to_string()),
        Just("0".to_string()),
        Just("Fri, 31 Dec 9999 23:59:59 GMT".to_string()),
        Just("Mon, 01 Jan 1900 00:00:00 GMT".to_string()),
        "[0-9.e+-]{0,25}",
    ];
    let name = prop::sample::select(vec![
        "retry-after",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
        "ratelimit-remaining",
        "ratelimit-reset",
    ]);
    let link = prop_oneof![
        Just("link: <https://vendor.example/next?after=2>; rel=\"next\"".to_string()),
        Just("link: <>; rel=next, <https://other.example/>; rel=\"prev next\"".to_string()),
        "link: [ -~]{0,80}",
        "link: (<[ -~]{0,20}>; rel=\"?(next|last)\"?, ?){0,5}",
    ];
    prop_oneof![
        3 => (name, number).prop_map(|(n, v)| format!("{n}: {v}")),
        1 => link,
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn vendor_pages_of_any_bytes(data in prop::collection::vec(any::<u8>(), 0..2048)) {
        bounded(&data, 2 * MIB, 64, checks::vendor_page);
    }

    /// Each connector's real pages with one value replaced by anything, under hostile paging
    /// and rate-limit headers.
    #[test]
    fn vendor_pages_with_one_hostile_value(
        which in any::<prop::sample::Index>(),
        pick in 0usize..200,
        value in hostile_json(),
        headers in prop::collection::vec(hostile_rate_headers(), 0..4),
    ) {
        let pages = fixture_pages();
        let (connector, page) = which.get(pages);
        let mut body = page.clone();
        if let (Ok(mut parsed), Ok(new)) = (
            serde_json::from_str::<Value>(page),
            serde_json::from_str::<Value>(&value),
        ) {
            let mut pick = pick;
            replace_one(&mut parsed, &mut pick, &new);
            body = parsed.to_string();
        } else if !value.is_empty() {
            // a number no parser holds, spliced in as text
            body = page.replacen("\"", &format!("{value},\""), 1);
        }
        let mut data = vec![*connector as u8];
        data.extend(headers.join("\n").into_bytes());
        data.extend_from_slice(b"\n\n");
        data.extend(body.into_bytes());
        bounded(&data, 2 * MIB, 64, checks::vendor_page);
    }
}

// ---------------------------------------------------------------------------------------------
// time and cursor parameters

fn hostile_param() -> impl Strategy<Value = (String, String)> {
    let key = prop::sample::select(vec![
        "since", "until", "cursor", "limit", "bucket", "group_by", "q", "action", "actor", "ip",
        "sincе", "",
    ]);
    let cursor = (any::<u8>(), any::<i64>(), any::<u64>(), 15usize..19).prop_map(|(v, t, s, n)| {
        use base64::Engine as _;
        let mut b = vec![v % 3];
        b.extend(((t as u64) ^ (1 << 63)).to_be_bytes());
        b.extend(s.to_be_bytes());
        b.resize(n, 0);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    });
    let value = prop_oneof![
        hostile_time(),
        cursor,
        Just(
            Position {
                time: MAX_TIME,
                seq: u64::MAX
            }
            .encode()
        ),
        Just(Position { time: -1, seq: 0 }.encode()),
        "[0-9]{0,22}",
        prop::sample::select(vec!["1m", "5m", "1h", "1d", "1w", "0s", "-1h"])
            .prop_map(String::from),
        hostile_text(),
    ];
    (key, value).prop_map(|(k, v)| (k.to_string(), v))
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn query_parameters_of_any_text(data in prop::collection::vec(any::<u8>(), 0..512)) {
        bounded(&data, MIB, 64, checks::time_and_cursor);
    }

    /// Times, durations, cursors, limits and buckets from their edges: refused naming the
    /// parameter, or in range with at most 10,000 histogram buckets.
    #[test]
    fn time_and_cursor_parameters(pairs in prop::collection::vec(hostile_param(), 0..5)) {
        let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        bounded(text.join("&").as_bytes(), MIB, 64, checks::time_and_cursor);
    }

    #[test]
    fn cursors_round_trip(time in any::<i64>(), seq in any::<u64>()) {
        let p = Position { time, seq };
        prop_assert_eq!(Position::decode(&p.encode()), Some(p));
    }
}

// ---------------------------------------------------------------------------------------------
// the store's bytes on disk

fn packed_block(bodies: &[Vec<u8>]) -> Vec<u8> {
    let refs: Vec<(&[u8], [u8; 32])> = bodies.iter().map(|b| (b.as_slice(), [3; 32])).collect();
    Packer::new()
        .expect("zstd")
        .block(&refs, None)
        .expect("packs")
}

#[derive(Debug, Clone)]
enum Damage {
    Flip(usize, u8),
    Cut(usize),
    Grow(Vec<u8>),
    Overwrite(usize, Vec<u8>),
    /// A count of zero and nothing else: an empty list, table or chunk.
    Emptied,
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Damage::Flip(i, x)),
        any::<usize>().prop_map(Damage::Cut),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(Damage::Grow),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..9))
            .prop_map(|(i, b)| Damage::Overwrite(i, b)),
        Just(Damage::Emptied),
    ]
}

fn apply(bytes: &mut Vec<u8>, d: &Damage) {
    if bytes.is_empty() {
        return;
    }
    let n = bytes.len();
    match d {
        Damage::Flip(i, x) => bytes[i % n] ^= x,
        Damage::Cut(i) => bytes.truncate(i % n),
        Damage::Grow(tail) => bytes.extend_from_slice(tail),
        Damage::Emptied => *bytes = vec![0],
        Damage::Overwrite(i, b) => {
            for (k, v) in b.iter().enumerate() {
                if let Some(slot) = bytes.get_mut((i % n) + k) {
                    *slot = *v;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn store_values_of_any_bytes(data in prop::collection::vec(any::<u8>(), 0..1024)) {
        bounded(&data, 8 * MIB, 64, checks::store_blocks);
    }

    /// A block with hostile frame contents (valid zstd, so the frame parser sees them): a
    /// length prefix near 2^64, fewer bytes than announced, trailing bytes.
    #[test]
    fn blocks_whose_frames_lie_about_their_lengths(
        events in 1u8..40,
        length in prop_oneof![
            any::<u64>(),
            (u64::MAX - 16)..=u64::MAX,
            (usize::MAX as u64 - 16)..=(usize::MAX as u64),
            0u64..300,
        ],
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut data = vec![events];
        trailhub::store::block::put_varint(&mut data, length);
        data.extend(tail);
        bounded(&data, 8 * MIB, 64, checks::store_blocks);
    }

    /// A good block reads back its bodies; damaged anywhere, it is an error or other bytes of
    /// the same size class, never a panic or a huge allocation.
    #[test]
    fn damaged_blocks_are_errors(
        bodies in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 1..40),
        damages in prop::collection::vec(damage(), 1..4),
    ) {
        let block = packed_block(&bodies);
        let dicts = Dictionaries::default();
        prop_assert_eq!(
            BlockView::parse(&block).expect("parses").bodies(&dicts).expect("bodies"),
            bodies.clone()
        );
        let mut damaged = block.clone();
        for d in &damages {
            apply(&mut damaged, d);
        }
        bounded(&damaged, 8 * MIB, 64, checks::store_blocks);
    }

    #[test]
    fn posting_lists_round_trip_and_survive_damage(
        ranks in prop::collection::btree_set(0u32..70_000, 0..300),
        extra in 0u32..1000,
        d in damage(),
    ) {
        let ranks: Vec<u32> = ranks.into_iter().collect();
        let universe = ranks.last().map_or(0, |r| r + 1) + extra;
        let encoded = encode_ranks(&ranks, universe);
        prop_assert_eq!(decode_ranks(&encoded).expect("decodes"), ranks);
        let mut damaged = encoded;
        apply(&mut damaged, &d);
        bounded(&damaged, MIB, 64, checks::store_blocks);
    }

    #[test]
    fn segment_descriptions_round_trip_and_survive_damage(
        first_seq in any::<u64>(),
        span in 0u64..1_000_000,
        count in 1u32..=65_536,
        chunks in prop::collection::vec((any::<i64>(), any::<u64>()), 1..20),
        buckets in prop::array::uniform16(any::<u16>()),
        d in damage(),
    ) {
        let mut fields = [0u16; trailhub::store::Field::ALL.len()];
        for (slot, b) in fields.iter_mut().zip(buckets) {
            *slot = b;
        }
        let chunk_first: Vec<Position> =
            chunks.iter().map(|(time, seq)| Position { time: *time, seq: *seq }).collect();
        let meta = SegmentMeta {
            first_seq,
            last_seq: first_seq.saturating_add(span),
            count,
            last: *chunk_first.last().expect("one chunk"),
            chunk_first,
            buckets: fields,
        };
        let encoded = meta.encode();
        prop_assert_eq!(SegmentMeta::decode(&encoded).expect("decodes"), meta);
        let mut damaged = encoded;
        apply(&mut damaged, &d);
        bounded(&damaged, MIB, 64, checks::store_blocks);
    }

    #[test]
    fn bloom_filters_keep_their_keys(keys in prop::collection::vec(any::<u64>(), 0..500)) {
        let mut bloom = trailhub::store::bloom::Bloom::with_capacity(keys.len());
        for k in &keys {
            bloom.insert(*k);
        }
        let back = trailhub::store::bloom::Bloom::from_bytes(&bloom.to_bytes()).expect("round trip");
        prop_assert!(keys.iter().all(|k| back.may_contain(*k)));
        bounded(&bloom.to_bytes(), MIB, 64, checks::store_blocks);
    }
}

/// The seeds of the fuzz targets (fuzz/seeds/<target>/) pass every check: they are what a long
/// fuzz run starts from, and a seed that fails here would stop it at once.
#[test]
fn fuzz_seeds_pass_every_check() {
    type Check = fn(&[u8]);
    let targets: [(&str, Check); 6] = [
        ("ingest_line", checks::ingest_line),
        ("webhook_signature", checks::webhook_signature),
        ("connector_definition", checks::connector_definition),
        ("vendor_page", checks::vendor_page),
        ("time_and_cursor", checks::time_and_cursor),
        ("store_blocks", checks::store_blocks),
    ];
    for (target, check) in targets {
        let dir = repo().join("fuzz/seeds").join(target);
        let mut seeds = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            let data = std::fs::read(&path).expect("seed");
            check(&data);
            seeds += 1;
        }
        assert!(seeds > 0, "{target} has no seeds");
    }
}

/// Writes the store_blocks seeds (binary: a packed block, a posting list in each encoding, a
/// segment description, a Bloom filter). Run after a format change:
/// `cargo test --test integration write_store_seeds -- --ignored`.
#[test]
#[ignore = "writes fuzz/seeds/store_blocks"]
fn write_store_seeds() {
    let dir = repo().join("fuzz/seeds/store_blocks");
    std::fs::create_dir_all(&dir).expect("seed dir");
    let bodies: Vec<Vec<u8>> = (0..20)
        .map(|i| format!(r#""time":"2024-01-01T00:00:{i:02}Z","source_id":"e{i}"}}"#).into_bytes())
        .collect();
    let mut bloom = trailhub::store::bloom::Bloom::with_capacity(10);
    bloom.insert(42);
    let meta = SegmentMeta {
        first_seq: 1,
        last_seq: 100,
        count: 100,
        chunk_first: vec![Position { time: 0, seq: 1 }],
        last: Position { time: 99, seq: 100 },
        buckets: [1; trailhub::store::Field::ALL.len()],
    };
    let seeds: [(&str, Vec<u8>); 5] = [
        ("seed-block", packed_block(&bodies)),
        ("seed-ranks-deltas", encode_ranks(&[1, 5, 900], 100_000)),
        (
            "seed-ranks-bitmap",
            encode_ranks(&[0, 1, 2, 3, 5, 8, 13], 16),
        ),
        ("seed-segment", meta.encode()),
        ("seed-bloom", bloom.to_bytes()),
    ];
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name), bytes).expect("seed written");
    }
}

/// One sled tree for the segment tables below (opening one per case would dominate the run).
fn segment_tree() -> &'static sled::Tree {
    static TREE: std::sync::OnceLock<(sled::Db, sled::Tree)> = std::sync::OnceLock::new();
    let (_, tree) = TREE.get_or_init(|| {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("temporary sled");
        let tree = db.open_tree("index").expect("tree");
        (db, tree)
    });
    tree
}

proptest! {
    #![proptest_config(config(256))]

    /// A segment's doc table and hashed buckets as read back from the index tree, damaged:
    /// sequence numbers past 2^64, counts that lie, bytes cut short. Errors, never a panic.
    #[test]
    fn damaged_segment_tables_are_errors(
        first_seq in prop_oneof![any::<u64>(), (u64::MAX - 8)..=u64::MAX, 0u64..10],
        local in prop_oneof![any::<u64>(), (u64::MAX - 8)..=u64::MAX, 0u64..10],
        count in prop_oneof![any::<u64>(), 0u64..5],
        raw in prop::collection::vec(any::<u8>(), 0..64),
        use_raw in any::<bool>(),
    ) {
        use trailhub::store::block::put_varint;
        use trailhub::store::keys;
        use trailhub::store::segment::{load_docs, term_ranks, KIND_BUCKET, KIND_DOCS};
        let tree = segment_tree();
        let meta = SegmentMeta {
            first_seq,
            last_seq: first_seq,
            count: 1,
            chunk_first: vec![Position { time: 0, seq: first_seq }],
            last: Position { time: 0, seq: first_seq },
            buckets: [1; trailhub::store::Field::ALL.len()],
        };
        let value = if use_raw {
            raw.clone()
        } else {
            let mut v = Vec::new();
            put_varint(&mut v, count);
            put_varint(&mut v, 5);
            put_varint(&mut v, local);
            v.extend_from_slice(&raw);
            v
        };
        tree.insert(keys::segment_data_key(meta.id(), KIND_DOCS, &0u16.to_be_bytes()), value.clone())
            .expect("insert");
        let term = keys::term(trailhub::store::Field::Token, "word");
        let bucket_key = keys::segment_data_key(
            meta.id(),
            KIND_BUCKET,
            &[trailhub::store::Field::Token.code(), 0, 0],
        );
        tree.insert(bucket_key, value).expect("insert");
        let ((), peak) = meter::peak(|| {
            if let Ok(docs) = load_docs(tree, &meta, 0) {
                assert!(docs.len() <= 64, "{} positions out of {} bytes", docs.len(), raw.len() + 30);
            }
            let _ = term_ranks(tree, &meta, &term);
        });
        prop_assert!(peak <= MIB, "{peak} bytes");
    }
}

/// A data dir with sealed segments, made once: events of several integrations over a day.
fn sealed_store_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = trailhub::store::StoreOptions::new(8 * MIB as u64, 0);
        options.seal_events = 64;
        let store =
            trailhub::store::Store::open(&dir.path().join("store"), &options).expect("store");
        let events: Vec<_> = (0..300)
            .map(|i| {
                let mut line = good_line();
                set_path(&mut line, "source_id", json!(format!("sealed-{i}")));
                set_path(
                    &mut line,
                    "time",
                    json!(trailhub::time::format_micros(checks::NOW + i * 60_000_000)),
                );
                set_path(&mut line, "actor.id", json!(format!("user-{}", i % 7)));
                let event = parse_ingest_line(&line, None, &custom(), checks::NOW).expect("valid");
                trailhub::store::prepare::prepare(&event)
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let commit = trailhub::store::Commit {
            cursor: None,
            durable: true,
            filtered: None,
        };
        runtime
            .block_on(store.append(events, commit))
            .expect("stored");
        // give the sealer its moment: segments are written by a background thread
        std::thread::sleep(std::time::Duration::from_millis(500));
        store.shutdown().expect("shutdown");
        dir
    })
    .path()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

proptest! {
    #![proptest_config(config(12))]

    /// A data dir whose sealed segments were damaged on disk (their doc tables, posting lists,
    /// hashed buckets or descriptions): the store opens or refuses to, and every read answers
    /// or fails with an error, never a panic.
    #[test]
    fn damaged_segments_on_disk_are_errors(
        pick in any::<prop::sample::Index>(),
        doc_tables_only in any::<bool>(),
        d in damage(),
    ) {
        let pristine = sealed_store_dir().join("store");
        let dir = tempfile::tempdir().expect("temp dir");
        let copy = dir.path().join("store");
        copy_dir(&pristine, &copy);
        {
            let db = trailhub::store::open_db(&copy, 8 << 20).expect("sled");
            let index = db.open_tree(trailhub::store::keys::TREE_INDEX).expect("index");
            let segment_keys: Vec<sled::IVec> = index
                .iter()
                .keys()
                .filter_map(Result::ok)
                .filter(|k| {
                    k.first().is_some_and(|b| {
                        *b == trailhub::store::keys::SEGMENT || *b == trailhub::store::keys::SEGMENT_DATA
                    })
                })
                .collect();
            // doc tables are few among the keys but read by every query: pick them half the time
            let doc_tables: Vec<sled::IVec> = segment_keys
                .iter()
                .filter(|k| k.get(9) == Some(&trailhub::store::segment::KIND_DOCS))
                .cloned()
                .collect();
            let segment_keys = if doc_tables_only { doc_tables } else { segment_keys };
            prop_assume!(!segment_keys.is_empty());
            let key = pick.get(&segment_keys);
            let mut value = index.get(key).expect("get").expect("present").to_vec();
            apply(&mut value, &d);
            index.insert(key, value).expect("insert");
            db.flush().expect("flush");
        }
        let mut options = trailhub::store::StoreOptions::new(8 * MIB as u64, 0);
        options.seal_events = 64;
        if let Ok(store) = trailhub::store::Store::open(&copy, &options) {
            use trailhub::store::query::Filter;
            use trailhub::store::Field;
            for filter in [
                Filter::default(),
                Filter::default().with(Field::Actor, "user-3"),
                Filter::default().with(Field::Token, "logged"),
                Filter { since: Some(checks::NOW + 3_600_000_000), until: Some(checks::NOW + 7_200_000_000), fields: Vec::new() },
            ] {
                if let Ok((events, _)) = store.page(&filter, None, 1000) {
                    prop_assert!(events.len() <= 300);
                }
                let _ = store.histogram(
                    &filter,
                    checks::NOW,
                    checks::NOW + 86_400_000_000,
                    trailhub::store::query::BucketSize::Hour,
                    trailhub::store::keys::Dimension::Action,
                );
            }
            let _ = store.shutdown();
        }
    }
}

/// Found by `damaged_segments_on_disk_are_errors`: a sealed segment whose doc table chunk reads
/// back empty made the planner compute rank `0 - 1` (a panic in a debug build, a wrapped rank in
/// release). It is a corruption error now, and the page says so.
#[test]
fn an_emptied_doc_table_is_an_error_not_an_underflow() {
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("store");
    copy_dir(&sealed_store_dir().join("store"), &copy);
    {
        let db = trailhub::store::open_db(&copy, 8 << 20).expect("sled");
        let index = db
            .open_tree(trailhub::store::keys::TREE_INDEX)
            .expect("index");
        let doc_table = index
            .iter()
            .keys()
            .filter_map(Result::ok)
            .find(|k| {
                k.first() == Some(&trailhub::store::keys::SEGMENT_DATA)
                    && k.get(9) == Some(&trailhub::store::segment::KIND_DOCS)
            })
            .expect("a sealed segment");
        index.insert(doc_table, vec![0u8]).expect("insert");
        db.flush().expect("flush");
    }
    let mut options = trailhub::store::StoreOptions::new(8 * MIB as u64, 0);
    options.seal_events = 64;
    let store = trailhub::store::Store::open(&copy, &options).expect("opens");
    let filter = trailhub::store::query::Filter::default();
    match store.page(&filter, None, 1000) {
        Err(trailhub::store::StoreError::Corrupt(m)) => assert!(m.contains("doc table"), "{m}"),
        Err(e) => panic!("another error: {e}"),
        Ok((events, _)) => panic!(
            "{} events from a segment without its doc table",
            events.len()
        ),
    }
    store.shutdown().expect("shutdown");
}

/// Found by `damaged_blocks_are_errors` and the allocation meter: a damaged frame length in a
/// block's table (one flipped bit can make it tens of MiB) was allocated in full before zstd
/// looked at the frame. The frame's own header is checked first now.
#[test]
fn a_damaged_frame_length_costs_no_memory() {
    let bodies: Vec<Vec<u8>> = (0..20)
        .map(|i| format!("{{\"n\":{i}}}").into_bytes())
        .collect();
    let mut block = packed_block(&bodies);
    // the first frame's raw length: header (39 bytes), then events u16, dict u32, len u32
    let raw_len_at = 39 + 2 + 4 + 4;
    block[raw_len_at..raw_len_at + 4].copy_from_slice(&(60u32 << 20).to_be_bytes());
    let dicts = Dictionaries::default();
    let view = BlockView::parse(&block).expect("the table still adds up");
    let (result, peak) = meter::peak(|| view.decode_frame(0, &dicts).map(|f| f.len()));
    assert!(
        result.is_err(),
        "a frame that lies about its length decoded"
    );
    assert!(
        peak < 8 * MIB,
        "{peak} bytes held to read a {} byte block",
        block.len()
    );
}
