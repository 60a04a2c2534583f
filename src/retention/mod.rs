//! Retention: the policy, legal holds, and the job that purges what expired
//!
//! A run finds the events past their retention (`policy`), leaves out those a legal hold covers
//! and those restored lately, and purges them in batches. Each batch, in this order:
//!
//! 1. signs a checkpoint that covers it (the "checkpoint before" the purge);
//! 2. archives the batch's events with their proofs against that checkpoint, when an archive
//!    is configured and the policy asks for it (`archive`);
//! 3. records the purge as an event of the `trailhub` integration (`retention.purge`): the
//!    range, counts, cutoffs, checkpoint and archive objects;
//! 4. replaces the events by tombstones naming that record (`store::purge`), and flushes.
//!
//! A crash between 3 and 4 leaves a record whose events are still there; the next run purges
//! them under a record of its own. Nothing is removed before its record and archive are
//! durable.

pub mod archive;
pub mod policy;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::audit::{self, AdminAction};
use crate::auth::{Principal, Role};
use crate::checkpoints::Checkpointer;
use crate::schema::{Action, Category, Target};
use crate::store::keys::Field;
use crate::store::purge::PURGE_EVENT_TYPE;
use crate::store::query::Filter;
use crate::store::{Store, StoreError};
use crate::time::{format_micros, now_micros, Micros, DAY};

pub use policy::{Hold, Holds, NewHold, Policy};

const POLICY_KEY: &[u8] = b"retention.policy";
const HOLDS_KEY: &[u8] = b"retention.holds";
const LAST_RUN_KEY: &[u8] = b"retention.last_run";
/// Most events one purge takes: its record, archive segment and transactions stay bounded.
pub const PURGE_BATCH: usize = 20_000;
/// Most events one run purges; the next run goes on.
pub const RUN_MAX_EVENTS: u64 = 1_000_000;

/// Retention as configured (`[retention]` in the config file).
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// The policy until one is set through the API or CLI.
    pub policy: Policy,
    /// Time between runs.
    pub interval: Duration,
    /// A restored event is spared this long before retention applies to it again.
    pub restore_hold: Duration,
    pub archive: Option<archive::ArchiveSettings>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            policy: Policy::default(),
            interval: Duration::from_secs(3600),
            restore_hold: Duration::from_secs(30 * 86_400),
            archive: None,
        }
    }
}

impl RetentionSettings {
    /// The configured policy and pace (`[retention]`, `[archive]`) over the defaults, checked.
    pub fn from_config(c: &crate::config::RetentionConfig) -> Result<RetentionSettings, String> {
        let mut settings = RetentionSettings::default();
        let p = &mut settings.policy;
        if let Some(e) = c.enabled {
            p.enabled = e;
        }
        if let Some(d) = c.default_days {
            p.default_days = d;
        }
        for (k, d) in &c.categories {
            p.categories.insert(k.clone(), *d);
        }
        for (k, d) in &c.integrations {
            p.integrations.insert(k.clone(), *d);
        }
        if let Some(a) = c.archive_first {
            p.archive = a;
        }
        p.check().map_err(|e| format!("[retention]: {e}"))?;
        if let Some(secs) = c.interval_secs {
            if !(60..=7 * 86_400).contains(&secs) {
                return Err("[retention] interval_secs must be between 60 and 604800".into());
            }
            settings.interval = Duration::from_secs(secs);
        }
        if let Some(days) = c.restore_hold_days {
            if !(1..=3650).contains(&days) {
                return Err("[retention] restore_hold_days must be between 1 and 3650".into());
            }
            settings.restore_hold = Duration::from_secs(days * 86_400);
        }
        if let Some(table) = &c.archive {
            let archive = archive::ArchiveSettings::from_table(table)
                .map_err(|e| format!("[archive]: {e}"))?;
            settings.archive = Some(archive);
        }
        Ok(settings)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("archiving failed, nothing was purged: {0}")]
    Archive(String),
}

/// What one run did (or, dry, would do).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunReport {
    pub started_at: String,
    pub finished_at: String,
    pub dry_run: bool,
    /// Events past their retention, held ones included.
    pub expired: u64,
    pub purged: u64,
    pub held: u64,
    /// Restored lately: spared for now.
    pub spared_restored: u64,
    pub by_category: BTreeMap<String, u64>,
    pub by_integration: BTreeMap<String, u64>,
    /// The `retention.purge` records written, by id.
    pub records: Vec<String>,
    pub archived_objects: Vec<archive::ArchivedObject>,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Set when the run hit `RUN_MAX_EVENTS`: the next run goes on.
    pub more: bool,
}

#[derive(Clone)]
pub struct Retention {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    checkpointer: Checkpointer,
    settings: RetentionSettings,
    archive: Option<archive::Archive>,
    /// One run at a time.
    running: tokio::sync::Mutex<()>,
    next_run: Mutex<Option<Micros>>,
}

/// Who the background runs act as, in their records.
fn system_principal() -> Principal {
    Principal {
        token_id: "system".into(),
        name: "retention".into(),
        role: Role::Admin,
    }
}

/// One expired event found by a run.
struct Expired {
    seq: u64,
    category: String,
    integration: String,
}

impl Retention {
    pub fn new(
        store: Store,
        checkpointer: Checkpointer,
        settings: RetentionSettings,
    ) -> Result<Retention, RetentionError> {
        let archive = match &settings.archive {
            Some(a) => Some(archive::Archive::new(a).map_err(RetentionError::Archive)?),
            None => None,
        };
        Ok(Retention {
            inner: Arc::new(Inner {
                store,
                checkpointer,
                settings,
                archive,
                running: tokio::sync::Mutex::new(()),
                next_run: Mutex::new(None),
            }),
        })
    }

    pub fn archive(&self) -> Option<&archive::Archive> {
        self.inner.archive.as_ref()
    }

    pub fn restore_hold(&self) -> Duration {
        self.inner.settings.restore_hold
    }

    /// The policy in force: the one set through the API or CLI, else the configured one.
    pub fn policy(&self) -> Result<Policy, RetentionError> {
        match self
            .inner
            .store
            .settings_tree()
            .get(POLICY_KEY)
            .map_err(StoreError::from)?
        {
            Some(v) => serde_json::from_slice(&v).map_err(|e| {
                StoreError::Corrupt(format!("the stored retention policy: {e}")).into()
            }),
            None => Ok(self.inner.settings.policy.clone()),
        }
    }

    pub async fn set_policy(&self, who: &Principal, policy: Policy) -> Result<(), RetentionError> {
        policy.check().map_err(RetentionError::Invalid)?;
        let before = self.policy()?;
        let json = serde_json::to_vec(&policy).map_err(|e| StoreError::Io(e.to_string()))?;
        self.inner
            .store
            .settings_tree()
            .insert(POLICY_KEY, json)
            .map_err(StoreError::from)?;
        audit::record(
            &self.inner.store,
            who,
            AdminAction {
                event_type: "retention.policy.update",
                action: Action::Update,
                category: Category::Configuration,
                target: None,
                description: "retention policy changed".into(),
                details: serde_json::json!({"before": before, "after": policy}),
            },
        )
        .await?;
        Ok(())
    }

    pub fn holds(&self) -> Result<Vec<Hold>, RetentionError> {
        match self
            .inner
            .store
            .settings_tree()
            .get(HOLDS_KEY)
            .map_err(StoreError::from)?
        {
            Some(v) => serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("the stored legal holds: {e}")).into()),
            None => Ok(Vec::new()),
        }
    }

    fn save_holds(&self, holds: &[Hold]) -> Result<(), RetentionError> {
        let json = serde_json::to_vec(holds).map_err(|e| StoreError::Io(e.to_string()))?;
        self.inner
            .store
            .settings_tree()
            .insert(HOLDS_KEY, json)
            .map_err(StoreError::from)?;
        Ok(())
    }

    pub async fn add_hold(&self, who: &Principal, new: NewHold) -> Result<Hold, RetentionError> {
        new.check().map_err(RetentionError::Invalid)?;
        let _one = self.inner.running.lock().await;
        let mut holds = self.holds()?;
        if holds.len() >= policy::MAX_HOLDS {
            return Err(RetentionError::Conflict(format!(
                "at most {} legal holds at once",
                policy::MAX_HOLDS
            )));
        }
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| StoreError::Io(e.to_string()))?;
        let hold = Hold {
            id: format!("hold_{}", hex::encode(id)),
            reason: new.reason,
            integration: new.integration,
            filter: new.filter,
            created_at: format_micros(now_micros()),
            created_by: who.name.clone(),
        };
        holds.push(hold.clone());
        self.save_holds(&holds)?;
        audit::record(
            &self.inner.store,
            who,
            AdminAction {
                event_type: "retention.hold.create",
                action: Action::Create,
                category: Category::Configuration,
                target: Some(Target {
                    kind: "legal_hold".into(),
                    id: hold.id.clone(),
                    name: None,
                }),
                description: format!("legal hold placed: {}", hold.reason),
                details: serde_json::to_value(&hold).unwrap_or_default(),
            },
        )
        .await?;
        Ok(hold)
    }

    /// Lifts a hold; `false` when there is none with that id.
    pub async fn remove_hold(&self, who: &Principal, id: &str) -> Result<bool, RetentionError> {
        let _one = self.inner.running.lock().await;
        let mut holds = self.holds()?;
        let Some(at) = holds.iter().position(|h| h.id == id) else {
            return Ok(false);
        };
        let hold = holds.remove(at);
        self.save_holds(&holds)?;
        audit::record(
            &self.inner.store,
            who,
            AdminAction {
                event_type: "retention.hold.delete",
                action: Action::Delete,
                category: Category::Configuration,
                target: Some(Target {
                    kind: "legal_hold".into(),
                    id: hold.id.clone(),
                    name: None,
                }),
                description: format!("legal hold lifted: {}", hold.reason),
                details: serde_json::to_value(&hold).unwrap_or_default(),
            },
        )
        .await?;
        Ok(true)
    }

    pub fn last_run(&self) -> Result<Option<RunReport>, RetentionError> {
        match self
            .inner
            .store
            .settings_tree()
            .get(LAST_RUN_KEY)
            .map_err(StoreError::from)?
        {
            Some(v) => Ok(serde_json::from_slice(&v).ok()),
            None => Ok(None),
        }
    }

    pub fn next_run(&self) -> Option<Micros> {
        self.inner.next_run.lock().ok().and_then(|n| *n)
    }

    /// Finds what expired and, unless `dry_run`, purges it.
    pub async fn run(&self, who: &Principal, dry_run: bool) -> Result<RunReport, RetentionError> {
        let _one = self.inner.running.lock().await;
        let now = now_micros();
        let mut report = RunReport {
            started_at: format_micros(now),
            dry_run,
            ..RunReport::default()
        };
        let policy = self.policy()?;
        if !policy.enabled {
            report.finished_at = format_micros(now_micros());
            return Ok(report);
        }
        let store = self.inner.store.clone();
        let holds = Holds::new(&self.holds()?);
        let hold_micros =
            i64::try_from(self.inner.settings.restore_hold.as_micros()).unwrap_or(i64::MAX);
        let found = {
            let policy = policy.clone();
            tokio::task::spawn_blocking(move || {
                find_expired(&store, &policy, &holds, now, hold_micros)
            })
            .await
            .map_err(|e| StoreError::Io(format!("the retention scan failed: {e}")))??
        };
        let (expired, counts) = found;
        report.expired = counts.expired;
        report.held = counts.held;
        report.spared_restored = counts.spared;
        report.more = counts.more;
        for e in &expired {
            *report.by_category.entry(e.category.clone()).or_insert(0) += 1;
            *report
                .by_integration
                .entry(e.integration.clone())
                .or_insert(0) += 1;
        }
        if !dry_run {
            for batch in expired.chunks(PURGE_BATCH) {
                self.purge_batch(who, &policy, batch, now, &mut report)
                    .await?;
            }
            let json = serde_json::to_vec(&report).map_err(|e| StoreError::Io(e.to_string()))?;
            self.inner
                .store
                .settings_tree()
                .insert(LAST_RUN_KEY, json)
                .map_err(StoreError::from)?;
        }
        report.finished_at = format_micros(now_micros());
        Ok(report)
    }

    async fn purge_batch(
        &self,
        who: &Principal,
        policy: &Policy,
        batch: &[Expired],
        now: Micros,
        report: &mut RunReport,
    ) -> Result<(), RetentionError> {
        let store = &self.inner.store;
        let cp = &self.inner.checkpointer;
        cp.sign_now().await?;
        if let Some(why) = cp.diverged() {
            return Err(RetentionError::Conflict(format!(
                "no purge while checkpoint signing is stopped: {why}"
            )));
        }
        let checkpoint = cp.history().latest()?.ok_or_else(|| {
            RetentionError::Conflict("no checkpoint could be signed before the purge".into())
        })?;
        let mut seqs: Vec<u64> = batch
            .iter()
            .map(|e| e.seq)
            .filter(|s| *s <= checkpoint.size())
            .collect();
        seqs.sort_unstable();
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(());
        };
        let mut archived = Vec::new();
        if policy.archive {
            if let Some(archive) = &self.inner.archive {
                archived = archive
                    .write(store, &checkpoint, &seqs)
                    .await
                    .map_err(RetentionError::Archive)?;
            }
        }
        let mut by_category: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_integration: BTreeMap<&str, u64> = BTreeMap::new();
        for e in batch.iter().filter(|e| e.seq <= checkpoint.size()) {
            *by_category.entry(&e.category).or_insert(0) += 1;
            *by_integration.entry(&e.integration).or_insert(0) += 1;
        }
        let cutoffs: BTreeMap<String, Option<String>> = Category::ALL
            .iter()
            .map(|c| {
                let days = policy
                    .categories
                    .get(c.as_str())
                    .copied()
                    .unwrap_or(policy.default_days);
                (
                    c.as_str().to_string(),
                    days.map(|d| format_micros(now.saturating_sub(i64::from(d) * DAY))),
                )
            })
            .collect();
        let purge_seq = audit::record_seq(
            store,
            who,
            AdminAction {
                event_type: PURGE_EVENT_TYPE,
                action: Action::Delete,
                category: Category::System,
                target: None,
                description: format!(
                    "{} events purged by retention, {:016x}..={:016x}, under checkpoint {}",
                    seqs.len(),
                    first,
                    last,
                    checkpoint.size()
                ),
                details: serde_json::json!({
                    "events": seqs.len(),
                    "first_id": format!("{first:016x}"),
                    "last_id": format!("{last:016x}"),
                    "by_category": by_category,
                    "by_integration": by_integration,
                    "cutoffs": cutoffs,
                    "integration_days": policy.integrations,
                    "checkpoint": {
                        "tree_size": checkpoint.size(),
                        "root": hex::encode(checkpoint.checkpoint.root()),
                    },
                    "archive": archived,
                }),
            },
        )
        .await?;
        let outcome = store.purge(seqs, purge_seq).await?;
        store.flush().await?;
        report.purged += outcome.purged;
        report.bytes_before += outcome.bytes_before;
        report.bytes_after += outcome.bytes_after;
        report.records.push(format!("{purge_seq:016x}"));
        report.archived_objects.extend(archived);
        Ok(())
    }

    /// Runs the job every `interval` until `stop` fires; the first run comes one interval after
    /// start, so that a restart (or a hub started on old data to look at it) does not purge at
    /// once. `POST /api/v1/retention/run` runs it now.
    pub fn spawn(
        &self,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let wait = this.inner.settings.interval;
            loop {
                let at = now_micros().saturating_add(wait.as_micros() as i64);
                if let Ok(mut n) = this.inner.next_run.lock() {
                    *n = Some(at);
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return,
                }
                if *stop.borrow() {
                    return;
                }
                match this.run(&system_principal(), false).await {
                    Ok(r) if r.purged > 0 => tracing::info!(
                        purged = r.purged,
                        held = r.held,
                        records = r.records.len(),
                        "retention run purged expired events"
                    ),
                    Ok(r) => tracing::debug!(
                        expired = r.expired,
                        held = r.held,
                        "retention run: nothing to purge"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "retention run failed; it is tried again at the next interval")
                    }
                }
            }
        })
    }
}

#[derive(Default)]
struct Counts {
    expired: u64,
    held: u64,
    spared: u64,
    more: bool,
}

/// The expired events, category by category: a scan reaching back to the category's shortest
/// retention, each event then checked against its own rule, the holds and restores.
fn find_expired(
    store: &Store,
    policy: &Policy,
    holds: &Holds,
    now: Micros,
    restore_hold: Micros,
) -> Result<(Vec<Expired>, Counts), RetentionError> {
    let sealed = store.sealed_through()?;
    let restored = store.restored_ranges();
    let mut out = Vec::new();
    let mut counts = Counts::default();
    for category in Category::ALL {
        let Some(shortest) = policy.shortest_for(category.as_str()) else {
            continue;
        };
        let filter = Filter {
            since: None,
            until: Some(now.saturating_sub(i64::from(shortest) * DAY)),
            fields: vec![(Field::Category, category.as_str().to_string())],
        };
        for position in store.scan(&filter, None) {
            let position = position?;
            if position.seq > sealed {
                continue;
            }
            let Some(event) = store.event(position.seq)? else {
                continue;
            };
            // the records of earlier purges stay: every tombstone names one (`verify` checks)
            if event.event_type == PURGE_EVENT_TYPE
                && event.integration.id == crate::store::purge::SYSTEM_INTEGRATION
            {
                continue;
            }
            let Some(cutoff) = policy.cutoff(&event.integration.id, category.as_str(), now) else {
                continue;
            };
            if event.time >= cutoff {
                continue;
            }
            counts.expired += 1;
            if holds.holding(&event).is_some() {
                counts.held += 1;
                continue;
            }
            if restored
                .restored_at(position.seq)
                .is_some_and(|at| at.saturating_add(restore_hold) > now)
            {
                counts.spared += 1;
                continue;
            }
            out.push(Expired {
                seq: position.seq,
                category: category.as_str().to_string(),
                integration: event.integration.id,
            });
            if out.len() as u64 >= RUN_MAX_EVENTS {
                counts.more = true;
                return Ok((out, counts));
            }
        }
    }
    Ok((out, counts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, Settings};

    fn resolve(toml: &str) -> Result<RetentionSettings, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("trailhub.toml");
        std::fs::write(&path, toml).expect("write");
        let settings = Settings::resolve(Overrides {
            config: Some(path),
            ..Default::default()
        })
        .map_err(|e| e.to_string())?;
        RetentionSettings::from_config(&settings.retention)
    }

    #[test]
    fn the_config_file_sets_the_policy_and_the_archive_and_is_checked() {
        let s = resolve(
            "[retention]\ninterval_secs = 600\nrestore_hold_days = 7\ndefault_days = \"forever\"\n\
             [retention.categories]\nsystem = 30\nauthentication = \"forever\"\n\
             [retention.integrations]\nokta = 400\n\
             [archive]\ndir = \"/tmp/trailhub-archive-test\"\nkey_file = \"/etc/archive.key\"\n",
        )
        .expect("valid");
        assert_eq!(s.interval, Duration::from_secs(600));
        assert_eq!(s.restore_hold, Duration::from_secs(7 * 86_400));
        assert_eq!(s.policy.default_days, None);
        assert_eq!(s.policy.days_for("github", "system"), Some(30));
        assert_eq!(s.policy.days_for("github", "authentication"), None);
        assert_eq!(s.policy.days_for("okta", "authentication"), Some(400));
        // categories the file leaves out keep their defaults
        assert_eq!(s.policy.days_for("github", "data_change"), Some(365));
        let archive = s.archive.expect("archive");
        assert_eq!(
            archive.key_file.as_deref(),
            Some(std::path::Path::new("/etc/archive.key"))
        );
        assert_eq!(
            archive.target.dir.as_deref(),
            Some(std::path::Path::new("/tmp/trailhub-archive-test"))
        );
        // no [retention]: the defaults, no archive
        let s = resolve("").expect("valid");
        assert_eq!(s.policy, Policy::default());
        assert!(s.archive.is_none());

        for (toml, why) in [
            ("[retention.categories]\nsystem = 0\n", "0 days"),
            ("[retention.categories]\nlogins = 30\n", "unknown category"),
            ("[retention.categories]\nsystem = \"soon\"\n", "forever"),
            ("[retention]\ninterval_secs = 5\n", "interval_secs"),
            ("[retention]\nretain = true\n", "retain"),
            ("[archive]\ndirectory = \"/x\"\n", "directory"),
            ("[archive]\ndir = \"/x\"\nkey_file = 7\n", "key_file"),
        ] {
            let e = resolve(toml).expect_err(why);
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
