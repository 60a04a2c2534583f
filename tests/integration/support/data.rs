//! Test data: NDJSON bodies and varied, deterministic unified events

use serde_json::{json, Value};

pub fn ndjson(lines: &[Value]) -> String {
    let mut s = String::new();
    for l in lines {
        s.push_str(&l.to_string());
        s.push('\n');
    }
    s
}

/// A small deterministic generator (no rand dependency in tests).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() as usize) % items.len()]
    }
}

pub const ACTORS: &[(&str, &str, &str)] = &[
    ("u1", "Alice Liddell", "alice@example.com"),
    ("u2", "Bob Stone", "bob@example.com"),
    ("u3", "Carol Danvers", "carol@example.com"),
    ("u4", "Dave Grohl", "dave@example.com"),
];
pub const ACTIONS: &[&str] = &["create", "read", "update", "delete", "login"];
pub const OUTCOMES: &[&str] = &["success", "failure"];
pub const CATEGORIES: &[&str] = &["authentication", "data_change", "configuration"];
pub const REPOS: &[&str] = &["acme/web", "acme/api", "acme/infra"];
pub const IPS: &[&str] = &["10.0.0.1", "192.168.1.7", "2001:db8::1"];
pub const WORDS: &[&str] = &[
    "quarterly",
    "rotation",
    "emergency",
    "breakglass",
    "routine",
];

/// 2024-05-01T00:00:00Z in seconds.
pub const BASE_SECS: i64 = 1_714_521_600;

pub fn rfc3339(secs: i64, millis: i64) -> String {
    chrono::DateTime::from_timestamp(secs, (millis * 1_000_000) as u32)
        .expect("valid")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `n` varied events spread over `span_secs` after BASE, with source ids `{prefix}-{i}`.
pub fn varied_events(prefix: &str, n: usize, span_secs: i64, seed: u64) -> Vec<Value> {
    let mut rng = Lcg(seed);
    (0..n)
        .map(|i| {
            let (id, name, email) = *rng.pick(ACTORS);
            let action = *rng.pick(ACTIONS);
            let secs = BASE_SECS + (rng.next() as i64 % span_secs);
            let millis = (rng.next() % 1000) as i64;
            json!({
                "time": rfc3339(secs, millis),
                "source_id": format!("{prefix}-{i}"),
                "event_type": format!("repo.{action}"),
                "action": action,
                "category": *rng.pick(CATEGORIES),
                "outcome": *rng.pick(OUTCOMES),
                "actor": {"id": id, "name": name, "email": email, "type": "user", "ip": *rng.pick(IPS)},
                "targets": [{"type": "repo", "id": *rng.pick(REPOS)}],
                "description": format!("{} {name} did {action}", *rng.pick(WORDS)),
            })
        })
        .collect()
}

pub fn source_ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["source_id"].as_str().expect("source_id").to_string())
        .collect()
}

/// A JSON array of hex hashes (a proof) as hashes.
pub fn hex_hashes(v: &Value) -> Vec<trailhub::evidence::merkle::Hash> {
    v.as_array()
        .expect("hashes")
        .iter()
        .map(|h| {
            let bytes = hex::decode(h.as_str().expect("hex")).expect("hex");
            trailhub::evidence::merkle::Hash::try_from(bytes.as_slice()).expect("32 bytes")
        })
        .collect()
}

/// An event of `category`, `age_days` old, by `actor`.
pub fn aged(source_id: &str, category: &str, age_days: i64, actor: &str) -> Value {
    use sha2::Digest as _;
    json!({
        "time": trailhub::time::format_micros(trailhub::time::now_micros() - age_days * trailhub::time::DAY - 1_000_000),
        "source_id": source_id,
        "event_type": format!("test.{category}"),
        "action": "update",
        "category": category,
        "outcome": "success",
        "actor": {"id": actor, "name": actor, "type": "user", "ip": "10.0.0.1"},
        "targets": [{"type": "repo", "id": "acme/web"}],
        // like a vendor's request id: what makes real events compress to ~100 bytes, not ~40
        "description": format!("{actor} did something {age_days} days ago (request {})", hex::encode(sha2::Sha256::digest(source_id.as_bytes()))),
        "session_id": hex::encode(&sha2::Sha256::digest(actor.as_bytes())[..12]),
    })
}
