//! Alerts: rules evaluated over every stored event — polls, webhooks and the ingest API alike,
//! since all of them reach the store through one pipeline — and the firings they make.
//!
//! - The store tells the engine of each batch of stored events on its indexer thread
//!   (`StoredObserver`). The engine's observer matches each event's index terms against the
//!   rules' filters there (a rule is indexed by one of its terms, so the cost per event does not
//!   grow with the number of rules) and hands the matches to the runner task.
//! - The runner reads a matched event back from the store, checks the schedule window, the value
//!   condition and the group, and feeds the rule's state (`eval`): counts in a sliding window of
//!   event time (so a late event counts where it happened), suppression per group.
//! - A firing is recorded as an `alert.fired` event of the `trailhub` integration and handed to
//!   the notification outbox (`Dispatch`); both are idempotent by the firing's id, which is a
//!   hash of the rule, the group and the event that fired it.
//! - The runner's cursor (the next sequence number to evaluate) and the rules' state are saved
//!   together; after a restart it replays from the cursor, reading what it missed from the
//!   store, and the same events decide the same firings, which are stored once.

pub mod eval;
pub mod rule;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::audit::AdminAction;
use crate::auth::Principal;
use crate::schema::{Action, Category, EventId, Outcome, Target};
use crate::store::prepare::Terms;
use crate::store::tail::TailEntry;
use crate::store::{Store, StoreError, StoredObserver};
use crate::time::{format_micros, now_micros, Micros, DAY};

use eval::{Hit, RuleState};
pub use rule::{Compiled, Rule, RuleError, RuleInput, MAX_RULES};

const TREE: &str = "alerts";
const KEY_CURSOR: &[u8] = b"cursor";
const KEY_STATE: &[u8] = b"state";
const KEY_FIRINGS: &[u8] = b"firings";
const RULE_PREFIX: &[u8] = b"r:";
const FIRING_PREFIX: &[u8] = b"f:";
const TIME_PREFIX: &[u8] = b"t:";
/// Firings kept in the history; the oldest go first (each is also a `trailhub` event).
pub const MAX_FIRINGS_KEPT: u64 = 100_000;
/// Most firings one history page lists.
pub const MAX_PAGE: usize = 200;
/// Batches of stored events waiting for the runner; past it the observer drops them and the
/// runner reads those events back from the store.
const QUEUE: usize = 1024;
/// How often the runner saves its cursor when nothing fired.
const SAVE_EVERY: Duration = Duration::from_secs(2);
/// The event types of the engine's own records, which rules never see (a rule on them would
/// fire on its own firings).
const OWN_TYPES: [&str; 2] = ["alert.", "notify."];

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("no alert rule with id {0:?}")]
    NoRule(String),
    #[error("no firing with id {0:?}")]
    NoFiring(String),
    #[error("at most {MAX_RULES} alert rules")]
    TooMany,
    #[error("{0}")]
    NothingToTest(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the alert state does not decode: {0}")]
    Corrupt(String),
}

impl From<sled::Error> for AlertError {
    fn from(e: sled::Error) -> Self {
        AlertError::Store(e.into())
    }
}

/// A notification queued for a firing on one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRef {
    pub channel: String,
    pub delivery: String,
}

/// A rule that fired, with the event that made it fire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firing {
    pub id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub rule_version: u64,
    pub priority: rule::Priority,
    /// The `group_by` value this firing is for ("" without one).
    pub group: String,
    /// Matching events in the window (1 for an event or value rule).
    pub count: u32,
    pub window_from: String,
    pub window_to: String,
    /// The event whose arrival fired the rule.
    pub event_id: String,
    pub event_time: String,
    pub message: String,
    pub fired_at: String,
    /// Made by `POST /api/v1/alerts/rules/{id}/test`, not by an event arriving.
    pub test: bool,
    pub deliveries: Vec<DeliveryRef>,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where firings are delivered (the notification outbox).
pub trait Dispatch: Send + Sync + 'static {
    /// Queues `firing`'s notification on each of its `channels`, durably, idempotently by the
    /// firing's id; one delivery per channel.
    fn dispatch<'a>(
        &'a self,
        firing: &'a Firing,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<DeliveryRef>, String>>;
    /// The channel exists (rules may name only those).
    fn channel_exists(&self, id: &str) -> bool;
    /// The delivery's status and attempts, for the history.
    fn delivery_status(&self, delivery: &str) -> Option<Value>;
}

/// The enabled rules, compiled, indexed by one of their terms.
pub struct RuleSet {
    rules: Vec<Arc<Compiled>>,
    /// Rules by the hash of the one term each is indexed by (its most selective).
    by_hash: FxHashMap<u64, Vec<u32>>,
    /// Per rule: its terms with their hashes, the indexed one first.
    terms: Vec<Vec<(Vec<u8>, u64)>>,
    /// The fields (first byte of a term) some rule is indexed by: an event's other terms are
    /// not looked up at all.
    fields: [bool; 256],
    unfiltered: Vec<u32>,
    /// The top-level keys of an event that the rules read before they fire (their groups and
    /// values, and what tells the hub's own records): an event is read back as those alone.
    /// None: some path may read any key, so events are read whole.
    keys: Option<Vec<String>>,
}

impl Default for RuleSet {
    fn default() -> RuleSet {
        RuleSet {
            rules: Vec::new(),
            by_hash: FxHashMap::default(),
            terms: Vec::new(),
            fields: [false; 256],
            unfiltered: Vec::new(),
            keys: None,
        }
    }
}

/// How few events a term of this field is likely to match (lower: fewer): a rule is indexed by
/// its rarest-looking term, so that an event wakes few candidates (`action=login` alone would
/// wake every login's rules; `actor=alice` wakes hers).
fn selectivity(term: &[u8]) -> u8 {
    use crate::store::keys::Field;
    match crate::store::keys::term_field(term) {
        Some(Field::Actor | Field::Target | Field::Ip | Field::Token) => 0,
        Some(Field::EventType) => 1,
        Some(Field::Outcome) if term.get(1..) == Some(b"failure".as_slice()) => 2,
        Some(Field::Integration | Field::Connector) => 3,
        Some(Field::Action) => 4,
        _ => 5,
    }
}

impl RuleSet {
    fn new(rules: Vec<Arc<Compiled>>) -> RuleSet {
        let mut set = RuleSet {
            rules,
            ..RuleSet::default()
        };
        for (i, c) in set.rules.iter().enumerate() {
            let mut terms: Vec<(Vec<u8>, u64)> = c
                .terms
                .iter()
                .map(|t| (t.clone(), crate::store::prepare::term_hash(t)))
                .collect();
            terms.sort_by_key(|(t, _)| selectivity(t));
            match terms.first() {
                Some((t, h)) => {
                    set.by_hash.entry(*h).or_default().push(i as u32);
                    if let Some(&b) = t.first() {
                        set.fields[b as usize] = true;
                    }
                }
                None => set.unfiltered.push(i as u32),
            }
            set.terms.push(terms);
        }
        let mut keys = vec!["integration".to_string(), "event_type".to_string()];
        if set.rules.iter().all(|c| c.root_keys(&mut keys)) {
            keys.sort();
            keys.dedup();
            set.keys = Some(keys);
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules whose filter every term of an event with `terms` satisfies.
    fn matching(&self, terms: &Terms, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.unfiltered);
        if self.by_hash.is_empty() {
            return;
        }
        for (term, hash) in terms.iter() {
            if !term.first().is_some_and(|&b| self.fields[b as usize]) {
                continue;
            }
            let Some(candidates) = self.by_hash.get(&hash) else {
                continue;
            };
            for &i in candidates {
                let Some(rule_terms) = self.terms.get(i as usize) else {
                    continue;
                };
                if rule_terms
                    .first()
                    .is_some_and(|(t, _)| t.as_slice() == term)
                    && rule_terms[1..]
                        .iter()
                        .all(|(t, h)| terms.contains_hashed(t, *h))
                {
                    out.push(i);
                }
            }
        }
    }
}

/// Events of one stored batch that matched a rule's filter.
struct Batch {
    set: Arc<RuleSet>,
    first: u64,
    last: u64,
    matches: Vec<(u64, Micros, Vec<u32>)>,
}

#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    tree: sled::Tree,
    set: RwLock<Arc<RuleSet>>,
    /// The enabled rules compiled, by id (a change recompiles only its rule).
    compiled: std::sync::Mutex<BTreeMap<String, Arc<Compiled>>>,
    /// Rule changes one at a time (the count bound and the rule set swap).
    edit: tokio::sync::Mutex<()>,
    tx: mpsc::Sender<Batch>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<Batch>>>,
    dispatch: RwLock<Option<Arc<dyn Dispatch>>>,
}

struct Observer(Weak<Inner>);

impl StoredObserver for Observer {
    fn stored(&self, entries: &[TailEntry]) {
        let (Some(inner), Some(first), Some(last)) =
            (self.0.upgrade(), entries.first(), entries.last())
        else {
            return;
        };
        let set = inner.rule_set();
        let mut matches = Vec::new();
        if !set.is_empty() {
            let mut found = Vec::new();
            for e in entries {
                set.matching(&e.terms, &mut found);
                if !found.is_empty() {
                    matches.push((e.seq, e.time, found.clone()));
                }
            }
        }
        // a full queue drops the batch: the runner reads those events back from the store
        let _ = inner.tx.try_send(Batch {
            set,
            first: first.seq,
            last: last.seq,
            matches,
        });
    }
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, AlertError> {
    serde_json::from_slice(bytes).map_err(|e| AlertError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("alert records serialise")
}

fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("the OS random source is available");
    format!("{prefix}{}", hex::encode(b))
}

fn time_key(fired: Micros, id: &str) -> Vec<u8> {
    let mut k = TIME_PREFIX.to_vec();
    k.extend_from_slice(&(u64::MAX - fired.max(0) as u64).to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

fn prefixed(prefix: &[u8], id: &str) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(id.as_bytes());
    k
}

/// An event object with only `keys` of its top level, the other values skipped unbuilt (a
/// vendor's raw payload is often most of an event, and most rules never look into it).
fn project(json: &[u8], keys: &[String]) -> Result<Value, AlertError> {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    use std::borrow::Cow;

    struct Key<'de>(Cow<'de, str>);
    impl<'de> Deserialize<'de> for Key<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct KeyVisitor;
            impl<'de> Visitor<'de> for KeyVisitor {
                type Value = Key<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a key")
                }
                fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Borrowed(v)))
                }
                fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                    Ok(Key(Cow::Owned(v.to_string())))
                }
            }
            d.deserialize_str(KeyVisitor)
        }
    }
    struct Projection<'k>(&'k [String]);
    impl<'de> DeserializeSeed<'de> for Projection<'_> {
        type Value = Value;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Projection<'_> {
        type Value = Value;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an event object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
            let mut out = serde_json::Map::new();
            while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                if self.0.iter().any(|k| k.as_str() == key.as_ref()) {
                    out.insert(key.into_owned(), map.next_value::<Value>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(Value::Object(out))
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let v = Projection(keys)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v))
        .map_err(|e| AlertError::Corrupt(e.to_string()))?;
    Ok(v)
}

fn is_own_record(event: &Value) -> bool {
    event.pointer("/integration/id").and_then(Value::as_str)
        == Some(crate::audit::trailhub_integration().id.as_str())
        && event
            .get("event_type")
            .and_then(Value::as_str)
            .is_some_and(|t| OWN_TYPES.iter().any(|p| t.starts_with(p)))
}

/// The saved runner state: the next event to evaluate and each rule's state.
#[derive(Default, Serialize, Deserialize)]
struct Saved {
    states: HashMap<String, RuleState>,
}

impl Alerts {
    /// Opens the rules and history kept in `store`.
    pub fn open(store: Store) -> Result<Alerts, AlertError> {
        let tree = store.desk_tree(TREE)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let alerts = Alerts {
            inner: Arc::new(Inner {
                store,
                tree,
                set: RwLock::new(Arc::new(RuleSet::default())),
                compiled: std::sync::Mutex::new(BTreeMap::new()),
                edit: tokio::sync::Mutex::new(()),
                tx,
                rx: std::sync::Mutex::new(Some(rx)),
                dispatch: RwLock::new(None),
            }),
        };
        alerts.reload()?;
        Ok(alerts)
    }

    /// Plugs in the notification outbox.
    pub fn set_dispatch(&self, dispatch: Arc<dyn Dispatch>) {
        match self.inner.dispatch.write() {
            Ok(mut d) => *d = Some(dispatch),
            Err(p) => *p.into_inner() = Some(dispatch),
        }
    }

    fn dispatcher(&self) -> Option<Arc<dyn Dispatch>> {
        match self.inner.dispatch.read() {
            Ok(d) => d.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn rules(&self) -> Result<Vec<Rule>, AlertError> {
        let mut rules = Vec::new();
        for kv in self.inner.tree.scan_prefix(RULE_PREFIX) {
            let (_, v) = kv?;
            rules.push(decode::<Rule>(&v)?);
        }
        rules.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(rules)
    }

    pub fn rule(&self, id: &str) -> Result<Rule, AlertError> {
        match self.inner.tree.get(prefixed(RULE_PREFIX, id))? {
            Some(v) => decode(&v),
            None => Err(AlertError::NoRule(id.to_string())),
        }
    }

    /// Compiles the stored rules into the set the observer matches with.
    fn reload(&self) -> Result<(), AlertError> {
        let mut compiled = BTreeMap::new();
        for rule in self.rules()? {
            if let Some(c) = compile(&rule) {
                compiled.insert(rule.id.clone(), c);
            }
        }
        self.publish(|all| *all = compiled);
        Ok(())
    }

    /// Changes the compiled rules and swaps in the set made of them.
    fn publish(&self, change: impl FnOnce(&mut BTreeMap<String, Arc<Compiled>>)) {
        let mut all = match self.inner.compiled.lock() {
            Ok(a) => a,
            Err(p) => p.into_inner(),
        };
        change(&mut all);
        let set = Arc::new(RuleSet::new(all.values().cloned().collect()));
        match self.inner.set.write() {
            Ok(mut s) => *s = set,
            Err(p) => *p.into_inner() = set,
        }
    }

    /// `rule` is now as stored (or gone, when `None`).
    fn republish(&self, id: &str, rule: Option<&Rule>) {
        let compiled = rule.and_then(compile);
        self.publish(|all| match compiled {
            Some(c) => {
                all.insert(id.to_string(), c);
            }
            None => {
                all.remove(id);
            }
        });
    }

    fn check_channels(&self, rule: &Rule) -> Result<(), AlertError> {
        if rule.channels.is_empty() {
            return Ok(());
        }
        let dispatch = self.dispatcher();
        for (i, c) in rule.channels.iter().enumerate() {
            if !dispatch.as_ref().is_some_and(|d| d.channel_exists(c)) {
                return Err(RuleError {
                    field: format!("channels[{i}]"),
                    message: format!("no notification channel with id {c:?}"),
                }
                .into());
            }
        }
        Ok(())
    }

    async fn record_change(
        &self,
        who: &Principal,
        event_type: &str,
        action: Action,
        rule: &Rule,
        description: String,
    ) -> Result<(), AlertError> {
        crate::audit::record(
            &self.inner.store,
            who,
            AdminAction {
                event_type,
                action,
                category: Category::Configuration,
                target: Some(Target {
                    kind: "alert_rule".into(),
                    id: rule.id.clone(),
                    name: Some(rule.name.clone()),
                }),
                description,
                details: json!({"rule": rule}),
            },
        )
        .await?;
        Ok(())
    }

    /// The next sequence number: what a rule made or changed now first sees.
    fn next_seq(&self) -> u64 {
        self.inner.store.event_count() + 1
    }

    pub async fn create(&self, who: &Principal, input: RuleInput) -> Result<Rule, AlertError> {
        let _edit = self.inner.edit.lock().await;
        if self.inner.tree.scan_prefix(RULE_PREFIX).count() >= MAX_RULES {
            return Err(AlertError::TooMany);
        }
        let now = format_micros(now_micros());
        let rule = input.create(random_id("rul_"), &now, self.next_seq())?;
        self.check_channels(&rule)?;
        self.inner
            .tree
            .insert(prefixed(RULE_PREFIX, &rule.id), encode(&rule))?;
        self.inner.tree.flush_async().await?;
        self.republish(&rule.id, Some(&rule));
        self.record_change(
            who,
            "alert_rule.create",
            Action::Create,
            &rule,
            format!("alert rule {} ({}) created", rule.id, rule.name),
        )
        .await?;
        Ok(rule)
    }

    pub async fn update(
        &self,
        who: &Principal,
        id: &str,
        input: RuleInput,
    ) -> Result<Rule, AlertError> {
        let _edit = self.inner.edit.lock().await;
        let old = self.rule(id)?;
        let now = format_micros(now_micros());
        let mut rule = input.apply(old.clone(), &now, self.next_seq())?;
        rule.version = old.version + 1;
        self.check_channels(&rule)?;
        self.inner
            .tree
            .insert(prefixed(RULE_PREFIX, id), encode(&rule))?;
        self.inner.tree.flush_async().await?;
        self.republish(id, Some(&rule));
        self.record_change(
            who,
            "alert_rule.update",
            Action::Update,
            &rule,
            format!("alert rule {} ({}) changed", rule.id, rule.name),
        )
        .await?;
        Ok(rule)
    }

    pub async fn delete(&self, who: &Principal, id: &str) -> Result<(), AlertError> {
        let _edit = self.inner.edit.lock().await;
        let rule = self.rule(id)?;
        self.inner.tree.remove(prefixed(RULE_PREFIX, id))?;
        self.inner.tree.flush_async().await?;
        self.republish(id, None);
        self.record_change(
            who,
            "alert_rule.delete",
            Action::Delete,
            &rule,
            format!("alert rule {} ({}) deleted", rule.id, rule.name),
        )
        .await
    }

    fn rule_set(&self) -> Arc<RuleSet> {
        self.inner.rule_set()
    }

    /// Fires `id` by hand on `event_id` (or the newest event of the last 30 days its filter
    /// matches), delivering to its channels marked as a test.
    pub async fn test_fire(
        &self,
        who: &Principal,
        id: &str,
        event_id: Option<&str>,
    ) -> Result<Firing, AlertError> {
        let rule = self.rule(id)?;
        let compiled = Compiled::new(&rule)?;
        let store = &self.inner.store;
        let json = match event_id {
            Some(e) => {
                let seq = EventId::parse(e)
                    .ok_or_else(|| AlertError::NothingToTest(format!("no event with id {e:?}")))?;
                store
                    .event_json(seq.0)?
                    .ok_or_else(|| AlertError::NothingToTest(format!("no event with id {e:?}")))?
            }
            None => {
                let pairs: Vec<(String, String)> = rule.filter.clone().into_iter().collect();
                let now = now_micros();
                let mut request =
                    crate::timeline::parse(&pairs, &[], now).map_err(|e| RuleError {
                        field: format!("filter.{}", e.field),
                        message: e.message,
                    })?;
                request.filter.since = Some(now - 30 * DAY);
                let (page, _) = store.page(&request.filter, None, 1)?;
                page.into_iter().next().ok_or_else(|| {
                    AlertError::NothingToTest(
                        "no event of the last 30 days matches the rule's filter; name one with `event_id`".into(),
                    )
                })?
            }
        };
        let event: Value = decode(&json)?;
        let time = event
            .get("time")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_micros())
            .unwrap_or_else(now_micros);
        let hit = Hit {
            count: 1,
            from: time,
            to: time,
        };
        let group = compiled.group(&event);
        let mut firing = make_firing(&compiled, &hit, group, &event, true);
        firing.id = random_id("alt_test_");
        self.record_change(
            who,
            "alert_rule.test",
            Action::Execute,
            &rule,
            format!(
                "alert rule {} ({}) test-fired on event {}",
                rule.id, rule.name, firing.event_id
            ),
        )
        .await?;
        let fired = self
            .fire(vec![(firing, compiled.rule.channels.clone())])
            .await?;
        fired
            .into_iter()
            .next()
            .ok_or_else(|| AlertError::Corrupt("the test firing was not kept".into()))
    }

    /// Records firings (idempotent by id), queues their deliveries and keeps them in the
    /// history; answers them as kept.
    async fn fire(&self, firings: Vec<(Firing, Vec<String>)>) -> Result<Vec<Firing>, AlertError> {
        let inner = &self.inner;
        let mut events = Vec::with_capacity(firings.len());
        for (f, _) in &firings {
            events.push(crate::audit::system_event(
                "alerts",
                format!("alert.fired:{}", f.id),
                f.priority.severity(),
                Outcome::Success,
                AdminAction {
                    event_type: "alert.fired",
                    action: Action::Execute,
                    category: Category::System,
                    target: Some(Target {
                        kind: "alert_rule".into(),
                        id: f.rule_id.clone(),
                        name: Some(f.rule_name.clone()),
                    }),
                    description: f.message.clone(),
                    details: json!({
                        "firing": f.id,
                        "priority": f.priority,
                        "group": f.group,
                        "count": f.count,
                        "window_from": f.window_from,
                        "window_to": f.window_to,
                        "event_id": f.event_id,
                        "test": f.test,
                    }),
                },
            ));
        }
        crate::audit::commit(&inner.store, events).await?;
        let dispatch = self.dispatcher();
        let mut kept = Vec::with_capacity(firings.len());
        let mut batch = sled::Batch::default();
        let mut added = 0u64;
        for (mut f, channels) in firings {
            let key = prefixed(FIRING_PREFIX, &f.id);
            if let Some(old) = inner.tree.get(&key)? {
                // replayed after a restart: kept already
                kept.push(decode(&old)?);
                continue;
            }
            if !channels.is_empty() {
                match &dispatch {
                    Some(d) => match d.dispatch(&f, &channels).await {
                        Ok(refs) => f.deliveries = refs,
                        Err(e) => {
                            tracing::error!(firing = %f.id, error = %e, "alert not queued for delivery")
                        }
                    },
                    None => {
                        tracing::error!(firing = %f.id, "alert has channels but the hub has no outbox")
                    }
                }
            }
            let fired = chrono::DateTime::parse_from_rfc3339(&f.fired_at)
                .map(|t| t.timestamp_micros())
                .unwrap_or_else(|_| now_micros());
            batch.insert(time_key(fired, &f.id), f.id.as_bytes());
            batch.insert(key, encode(&f));
            added += 1;
            kept.push(f);
        }
        let total = inner
            .tree
            .get(KEY_FIRINGS)?
            .map(|v| crate::store::keys::decode_u64(&v))
            .unwrap_or(0)
            + added;
        batch.insert(KEY_FIRINGS, &total.to_be_bytes());
        inner.tree.apply_batch(batch)?;
        if total > MAX_FIRINGS_KEPT {
            self.prune(total - MAX_FIRINGS_KEPT)?;
        }
        inner.tree.flush_async().await?;
        Ok(kept)
    }

    /// Forgets the `n` oldest firings of the history.
    fn prune(&self, n: u64) -> Result<(), AlertError> {
        let tree = &self.inner.tree;
        let mut batch = sled::Batch::default();
        let mut removed = 0u64;
        for kv in tree.scan_prefix(TIME_PREFIX).rev().take(n as usize) {
            let (k, id) = kv?;
            batch.remove(k);
            let mut f = FIRING_PREFIX.to_vec();
            f.extend_from_slice(&id);
            batch.remove(f);
            removed += 1;
        }
        let total = tree
            .get(KEY_FIRINGS)?
            .map(|v| crate::store::keys::decode_u64(&v))
            .unwrap_or(0)
            .saturating_sub(removed);
        batch.insert(KEY_FIRINGS, &total.to_be_bytes());
        tree.apply_batch(batch)?;
        Ok(())
    }

    /// A page of the history, newest first: firings (of one rule, if given) with their
    /// deliveries' status; `after` is the `next_cursor` of the previous page.
    pub fn history(
        &self,
        rule: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Value>, Option<String>), AlertError> {
        let tree = &self.inner.tree;
        let start = match after {
            Some(c) => {
                let mut k = hex::decode(c).map_err(|_| AlertError::NoFiring(c.to_string()))?;
                if !k.starts_with(TIME_PREFIX) {
                    return Err(AlertError::NoFiring(c.to_string()));
                }
                k.push(0);
                k
            }
            None => TIME_PREFIX.to_vec(),
        };
        let mut out = Vec::new();
        let mut next = None;
        // a rule filter reads at most this many entries per page
        let mut budget = 20_000usize;
        for kv in tree.range(start..) {
            let (k, id) = kv?;
            if !k.starts_with(TIME_PREFIX) || budget == 0 {
                break;
            }
            budget -= 1;
            let Some(v) = tree.get(prefixed(FIRING_PREFIX, &String::from_utf8_lossy(&id)))? else {
                continue;
            };
            let firing: Firing = decode(&v)?;
            if rule.is_some_and(|r| r != firing.rule_id) {
                continue;
            }
            out.push(self.with_status(firing));
            if out.len() == limit {
                next = Some(hex::encode(&k));
                break;
            }
        }
        Ok((out, next))
    }

    pub fn firing(&self, id: &str) -> Result<Value, AlertError> {
        match self.inner.tree.get(prefixed(FIRING_PREFIX, id))? {
            Some(v) => Ok(self.with_status(decode(&v)?)),
            None => Err(AlertError::NoFiring(id.to_string())),
        }
    }

    fn with_status(&self, firing: Firing) -> Value {
        let dispatch = self.dispatcher();
        let mut v = json!(firing);
        if let (Some(d), Some(list)) = (
            dispatch,
            v.get_mut("deliveries").and_then(Value::as_array_mut),
        ) {
            for item in list {
                let status = item
                    .get("delivery")
                    .and_then(Value::as_str)
                    .and_then(|id| d.delivery_status(id));
                if let (Some(obj), Some(s)) = (item.as_object_mut(), status) {
                    obj.insert("status".into(), s);
                }
            }
        }
        v
    }

    /// Starts evaluating: installs the observer and runs the runner until `stop`.
    pub fn spawn(&self, stop: tokio::sync::watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        self.inner
            .store
            .observe(Arc::new(Observer(Arc::downgrade(&self.inner))));
        let rx = self.inner.rx.lock().ok().and_then(|mut r| r.take());
        let alerts = self.clone();
        tokio::spawn(async move {
            if let Some(rx) = rx {
                if let Err(e) = alerts.run(rx, stop).await {
                    tracing::error!(error = %e, "alert evaluation stopped");
                }
            }
        })
    }

    async fn run(
        &self,
        mut rx: mpsc::Receiver<Batch>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), AlertError> {
        let inner = &self.inner;
        let mut cursor = match inner.tree.get(KEY_CURSOR)? {
            Some(v) => crate::store::keys::decode_u64(&v),
            // a first start looks forward (rules are about what arrives from now on), but from
            // no later than the oldest rule's first event: a hub killed before its first save
            // still evaluates what its rules have seen stored since they were made
            None => self
                .rules()?
                .iter()
                .map(|r| r.from_seq)
                .fold(self.next_seq(), u64::min),
        };
        let mut saved: Saved = match inner.tree.get(KEY_STATE)? {
            Some(v) => decode(&v).unwrap_or_else(|e| {
                tracing::error!(error = %e, "alert state does not decode; counting starts over");
                Saved::default()
            }),
            None => Saved::default(),
        };
        if inner.tree.get(KEY_CURSOR)?.is_none() {
            self.save(cursor, &saved).await?;
        }
        let mut last_save = Instant::now();
        let mut dirty = true;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut fired = Vec::new();
            tokio::select! {
                batch = rx.recv() => {
                    let Some(batch) = batch else { break };
                    if batch.last < cursor {
                        continue;
                    }
                    if batch.first > cursor {
                        self.catch_up(&mut cursor, batch.first - 1, &mut saved, &mut fired).await?;
                    }
                    for (seq, time, rules) in &batch.matches {
                        if *seq >= cursor {
                            self.evaluate_or_say(&batch.set, *seq, *time, rules, &mut saved, &mut fired);
                        }
                    }
                    cursor = cursor.max(batch.last + 1);
                    dirty = true;
                }
                _ = tick.tick() => {
                    let head = inner.store.event_count();
                    if head >= cursor {
                        // batches the observer dropped, or stored before it was installed
                        self.catch_up(&mut cursor, head, &mut saved, &mut fired).await?;
                        dirty = true;
                    }
                }
                _ = stop.changed() => break,
            }
            let any = !fired.is_empty();
            if any {
                if let Err(e) = self.fire(fired).await {
                    // the cursor is not saved past them: the next start evaluates them again
                    tracing::error!(error = %e, "alert firings not recorded; evaluation stops until the next start");
                    return Err(e);
                }
            }
            // firings need no save of their own: a replay from the last saved cursor decides
            // the same firings, under the same ids, which every record of them is keyed by
            if dirty && last_save.elapsed() >= SAVE_EVERY {
                self.save(cursor, &saved).await?;
                dirty = false;
                last_save = Instant::now();
            }
        }
        self.save(cursor, &saved).await
    }

    async fn save(&self, cursor: u64, saved: &Saved) -> Result<(), AlertError> {
        let mut batch = sled::Batch::default();
        batch.insert(KEY_CURSOR, &cursor.to_be_bytes());
        batch.insert(KEY_STATE, encode(saved));
        self.inner.tree.apply_batch(batch)?;
        self.inner.tree.flush_async().await?;
        Ok(())
    }

    /// Evaluates stored events `cursor..=through` read back from the store.
    async fn catch_up(
        &self,
        cursor: &mut u64,
        through: u64,
        saved: &mut Saved,
        fired: &mut Vec<(Firing, Vec<String>)>,
    ) -> Result<(), AlertError> {
        let set = self.rule_set();
        let mut found = Vec::new();
        while *cursor <= through {
            let seq = *cursor;
            *cursor += 1;
            if set.is_empty() {
                *cursor = through + 1;
                break;
            }
            let event = match self.inner.store.event(seq) {
                Ok(Some(e)) => e,
                Ok(None) => continue,
                Err(e) => {
                    tracing::error!(event = %EventId(seq), error = %e, "event not evaluated by the alert rules");
                    continue;
                }
            };
            let prepared = crate::store::prepare(&event);
            set.matching(&prepared.terms, &mut found);
            if !found.is_empty() {
                self.evaluate_or_say(&set, seq, event.time, &found, saved, fired);
            }
            if seq % 1024 == 0 {
                tokio::task::yield_now().await;
            }
        }
        Ok(())
    }

    /// `evaluate`, an event that cannot be read being said and skipped, so that one bad event
    /// never stops the alerts for those after it.
    fn evaluate_or_say(
        &self,
        set: &RuleSet,
        seq: u64,
        time: Micros,
        rules: &[u32],
        saved: &mut Saved,
        fired: &mut Vec<(Firing, Vec<String>)>,
    ) {
        if let Err(e) = self.evaluate(set, seq, time, rules, saved, fired) {
            tracing::error!(event = %EventId(seq), error = %e, "event not evaluated by the alert rules");
        }
    }

    /// One stored event that matched `rules`' filters.
    fn evaluate(
        &self,
        set: &RuleSet,
        seq: u64,
        time: Micros,
        rules: &[u32],
        saved: &mut Saved,
        fired: &mut Vec<(Firing, Vec<String>)>,
    ) -> Result<(), AlertError> {
        // the event as the rules read it (only the keys they need), and whole once one fires
        let mut event: Option<(Vec<u8>, Value)> = None;
        let mut whole: Option<Value> = None;
        for &i in rules {
            let Some(c) = set.rules.get(i as usize) else {
                continue;
            };
            if seq < c.rule.from_seq || !c.armed_at(time) {
                continue;
            }
            if event.is_none() {
                let Some(json) = self.inner.store.event_json(seq)? else {
                    return Ok(());
                };
                let v = match &set.keys {
                    Some(keys) => project(&json, keys)?,
                    None => decode(&json)?,
                };
                if is_own_record(&v) {
                    return Ok(());
                }
                event = Some((json, v));
            }
            let Some((json, ev)) = event.as_ref() else {
                return Ok(());
            };
            if !c.value_holds(ev) {
                continue;
            }
            let group = c.group(ev);
            let state = saved
                .states
                .entry(c.rule.id.clone())
                .or_insert_with(|| RuleState::for_version(c.rule.version));
            if state.version != c.rule.version {
                *state = RuleState::for_version(c.rule.version);
            }
            if let Some(hit) = state.offer(c, &group, time) {
                if whole.is_none() {
                    whole = Some(match &set.keys {
                        Some(_) => decode(json)?,
                        None => ev.clone(),
                    });
                }
                if let Some(full) = whole.as_ref() {
                    let firing = make_firing(c, &hit, group, full, false);
                    fired.push((firing, c.rule.channels.clone()));
                }
            }
        }
        Ok(())
    }
}

impl Inner {
    fn rule_set(&self) -> Arc<RuleSet> {
        match self.set.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

/// An enabled rule compiled (none for a disabled one, or one this version refuses).
fn compile(rule: &Rule) -> Option<Arc<Compiled>> {
    if !rule.enabled {
        return None;
    }
    match Compiled::new(rule) {
        Ok(c) => Some(Arc::new(c)),
        // a rule stored by an older version that this one would refuse: skipped, said
        Err(e) => {
            tracing::error!(rule = %rule.id, error = %e, "alert rule does not compile; it is not evaluated");
            None
        }
    }
}

/// A firing of `c` by `event`; its id is a hash of the rule's version, the group and the event's
/// identity (integration and source id), so a replay finds the same one.
fn make_firing(c: &Compiled, hit: &Hit, group: String, event: &Value, test: bool) -> Firing {
    let text = |p: &str| event.pointer(p).map(rule::text_of).unwrap_or_default();
    let mut h = Sha256::new();
    for part in [
        c.rule.id.as_str(),
        &c.rule.version.to_string(),
        &group,
        &text("/integration/id"),
        &text("/source_id"),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    let id = format!("alt_{}", hex::encode(&h.finalize()[..12]));
    let mut context = event.clone();
    if let Some(obj) = context.as_object_mut() {
        obj.insert(
            "alert".into(),
            json!({
                "rule": c.rule.name,
                "rule_id": c.rule.id,
                "priority": c.rule.priority.as_str(),
                "count": hit.count,
                "group": group,
                "window_from": format_micros(hit.from),
                "window_to": format_micros(hit.to),
            }),
        );
    }
    Firing {
        id,
        rule_id: c.rule.id.clone(),
        rule_name: c.rule.name.clone(),
        rule_version: c.rule.version,
        priority: c.rule.priority,
        group,
        count: hit.count,
        window_from: format_micros(hit.from),
        window_to: format_micros(hit.to),
        event_id: text("/id"),
        event_time: text("/time"),
        message: c.message.render(&context),
        fired_at: format_micros(now_micros()),
        test,
        deliveries: Vec::new(),
    }
}

/// What a delivered notification carries: the firing and the event, in one JSON document.
pub fn notification_json(firing: &Firing) -> Value {
    json!({
        "type": "alert.fired",
        "firing": firing,
    })
}

/// Firings delivered through the notification outbox: one delivery per channel, keyed by the
/// firing's id so that a replayed firing is queued once.
pub struct NotifyDispatch {
    notifier: crate::notify::Notifier,
}

impl NotifyDispatch {
    pub fn new(notifier: crate::notify::Notifier) -> NotifyDispatch {
        NotifyDispatch { notifier }
    }
}

impl Dispatch for NotifyDispatch {
    fn dispatch<'a>(
        &'a self,
        firing: &'a Firing,
        channels: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<DeliveryRef>, String>> {
        Box::pin(async move {
            let subject: String = format!(
                "[{}] {}{}",
                firing.priority.as_str(),
                if firing.test { "TEST " } else { "" },
                firing.rule_name
            );
            let message = crate::notify::Message {
                subject,
                text: firing.message.clone(),
                json: notification_json(firing),
            };
            let mut refs = Vec::with_capacity(channels.len());
            let mut failed = Vec::new();
            for c in channels {
                let Some(channel) = crate::notify::ChannelId::parse(c) else {
                    failed.push(format!("{c}: not a channel id"));
                    continue;
                };
                match self
                    .notifier
                    .enqueue(crate::notify::NewDelivery {
                        key: firing.id.clone(),
                        channel,
                        message: message.clone(),
                    })
                    .await
                {
                    Ok(id) => refs.push(DeliveryRef {
                        channel: c.clone(),
                        delivery: id.as_str().to_string(),
                    }),
                    Err(e) => failed.push(format!("{c}: {e}")),
                }
            }
            if refs.is_empty() && !failed.is_empty() {
                return Err(failed.join("; "));
            }
            for f in failed {
                tracing::error!(firing = %firing.id, error = %f, "alert not queued on a channel");
            }
            Ok(refs)
        })
    }

    fn channel_exists(&self, id: &str) -> bool {
        crate::notify::ChannelId::parse(id)
            .is_some_and(|c| self.notifier.channels().get(&c).is_ok())
    }

    fn delivery_status(&self, delivery: &str) -> Option<Value> {
        let id = crate::notify::DeliveryId::parse(delivery)?;
        let d = self.notifier.delivery(&id).ok().flatten()?;
        let v = d.view(false);
        Some(json!({
            "status": v["status"],
            "attempt_count": v["attempt_count"],
            "attempts": v["attempts"],
            "finished_at": v["finished_at"],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_read_back_as_only_the_keys_the_rules_need() {
        let json = br#"{"id":"0a","event_type":"login","actor":{"id":"u1","ip":"10.0.0.1"},"raw":{"records":1500,"big":[1,2,{"x":"y"}]},"t\u0061rgets":[{"id":"d"}]}"#;
        let keys = vec!["actor".to_string(), "targets".to_string()];
        let v = project(json, &keys).expect("projects");
        assert_eq!(
            v,
            json!({"actor": {"id": "u1", "ip": "10.0.0.1"}, "targets": [{"id": "d"}]}),
            "an escaped key is matched as its text"
        );
        assert!(
            project(br#"{"actor":1} x"#, &keys).is_err(),
            "trailing bytes"
        );
        assert!(project(br#"[1]"#, &keys).is_err(), "not an object");
        assert!(project(br#"{"actor":"#, &keys).is_err(), "cut short");
    }

    #[test]
    fn a_rule_set_reads_the_keys_of_its_paths_and_whole_events_when_a_path_may_read_any() {
        let compiled = |body: Value| {
            let input: rule::RuleInput = serde_json::from_value(body).expect("input");
            let r = input
                .create("r1".into(), "2024-01-01T00:00:00Z", 1)
                .expect("rule");
            Arc::new(rule::Compiled::new(&r).expect("compiles"))
        };
        let set = RuleSet::new(vec![
            compiled(
                json!({"name": "a", "filter": {"action": "export"}, "group_by": "actor.id",
                "condition": {"type": "value", "field": "raw.{raw.kind}.n", "op": ">", "value": 1}}),
            ),
            compiled(json!({"name": "b", "filter": {"outcome": "failure"}})),
        ]);
        assert_eq!(
            set.keys,
            Some(vec![
                "actor".to_string(),
                "event_type".to_string(),
                "integration".to_string(),
                "raw".to_string()
            ])
        );
        let set = RuleSet::new(vec![compiled(
            json!({"name": "c", "group_by": "[name=x].value"}),
        )]);
        assert_eq!(set.keys, None);
    }
}
