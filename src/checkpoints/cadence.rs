//! Signing checkpoints as the log grows: every `every_events` events or every `interval`,
//! whichever comes first (and only when the log grew), a checkpoint of the durable tree is
//! signed, kept in the history and handed to the publishers; one more at shutdown.
//!
//! Only what is on disk is signed (`Store::durable_tree_head` waits for the group commit first): a checkpoint that
//! a crash could take back would later look like the hub rewrote its history. For the same
//! reason the hub refuses to sign a tree smaller than, or different from, one it signed before:
//! that happens only when the data dir was truncated, rewritten or restored from an older
//! backup, and a signature over it would fork the log. It says so instead, loudly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::history::{History, Stored, TIME_PREFIX};
use super::keyring::Keyring;
use super::publish::Publisher;
use super::signing_key::SigningKey;
use crate::evidence::checkpoint::Checkpoint;
use crate::evidence::note::NoteVerifier;
use crate::store::{Store, StoreError, TreeHead};
use crate::time::{format_micros, now_micros};

/// When checkpoints are signed.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub every_events: u64,
    pub interval: Duration,
}

/// How often the task looks at the log's size.
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// Why no checkpoint is being signed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Diverged {
    #[error("the log holds {have} events, fewer than the {signed} of checkpoint {signed} the hub signed: events were removed, or the data dir was restored from an older backup; no checkpoint will be signed until this is resolved")]
    Shorter { have: u64, signed: u64 },
    #[error("the log's first {signed} events no longer have the root of checkpoint {signed} the hub signed: the history it covers was rewritten; no checkpoint will be signed until this is resolved")]
    Rewritten { signed: u64 },
}

#[derive(Clone)]
pub struct Checkpointer {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    history: History,
    key: Arc<SigningKey>,
    cadence: Cadence,
    publisher: Option<Arc<Publisher>>,
    /// Serialises signing (the task, shutdown, tests).
    signing: tokio::sync::Mutex<()>,
    diverged: Mutex<Option<Diverged>>,
    stop: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Starts the signing task. Signed checkpoints go to `publisher`, which first gets what it
    /// missed while the hub was down.
    pub fn start(
        store: Store,
        key: Arc<SigningKey>,
        cadence: Cadence,
        publisher: Option<Arc<Publisher>>,
    ) -> Checkpointer {
        let history = History::new(store.checkpoints_tree().clone());
        let (stop, stopped) = watch::channel(false);
        let checkpointer = Checkpointer {
            inner: Arc::new(Inner {
                store,
                history,
                key,
                cadence: Cadence {
                    every_events: cadence.every_events.max(1),
                    interval: cadence.interval.max(Duration::from_secs(1)),
                },
                publisher,
                signing: tokio::sync::Mutex::new(()),
                diverged: Mutex::new(None),
                stop,
                task: Mutex::new(None),
            }),
        };
        let task = tokio::spawn(checkpointer.clone().run(stopped));
        if let Ok(mut t) = checkpointer.inner.task.lock() {
            *t = Some(task);
        }
        checkpointer
    }

    pub fn history(&self) -> &History {
        &self.inner.history
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.inner.key.verifier()
    }

    pub fn origin(&self) -> &str {
        self.inner.key.origin()
    }

    /// The log's signing keys, oldest first; the key signing now is the newest.
    pub fn keyring(&self) -> &Keyring {
        self.inner.key.keyring()
    }

    /// Why signing stopped, if it did.
    pub fn diverged(&self) -> Option<Diverged> {
        self.inner.diverged.lock().ok().and_then(|d| d.clone())
    }

    async fn run(self, mut stopped: watch::Receiver<bool>) {
        self.catch_up().await;
        let mut last_signed = tokio::time::Instant::now();
        let mut last_size = match self.inner.history.latest() {
            Ok(latest) => latest.map(|s| s.size()),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the stored checkpoints");
                None
            }
        };
        let mut first = true;
        loop {
            let size = self.inner.store.tree_head().size;
            // an empty log is not signed: there is nothing to vouch for yet
            let grown = size > last_size.unwrap_or(0);
            let due = first
                || size >= last_size.unwrap_or(0) + self.inner.cadence.every_events
                || last_signed.elapsed() >= self.inner.cadence.interval;
            if grown && due {
                match self.sign_now().await {
                    Ok(Some(stored)) => {
                        last_size = Some(stored.size());
                        last_signed = tokio::time::Instant::now();
                    }
                    Ok(None) => {}
                    Err(e) => tracing::error!(error = %e, "signing a checkpoint failed"),
                }
            }
            first = false;
            tokio::select! {
                _ = tokio::time::sleep(LOOK_EVERY) => {}
                _ = stopped.changed() => break,
            }
        }
    }

    /// Signs a checkpoint of the durable tree if it grew since the last one; `None` when it did
    /// not (or when the log diverged from what was signed, see [`Diverged`]).
    pub async fn sign_now(&self) -> Result<Option<Stored>, StoreError> {
        let _one = self.inner.signing.lock().await;
        let head = self.inner.store.durable_tree_head().await?;
        let inner = self.inner.clone();
        let signed = tokio::task::spawn_blocking(move || inner.sign_blocking(head))
            .await
            .map_err(|e| StoreError::Io(format!("the signing task failed: {e}")))??;
        if signed.is_some() {
            // the checkpoint is on disk before anyone outside sees it
            self.inner.store.sync().await?;
        }
        if let (Some(stored), Some(publisher)) = (&signed, &self.inner.publisher) {
            if let Err(e) = publisher.publish(stored.size(), &stored.note).await {
                tracing::error!(size = stored.size(), error = %e, "publishing a checkpoint failed");
            }
        }
        Ok(signed)
    }

    /// Hands the publishers the checkpoints signed since the last one they all got.
    async fn catch_up(&self) {
        let Some(publisher) = &self.inner.publisher else {
            return;
        };
        let handovers: Vec<(u64, String)> = self
            .keyring()
            .entries()
            .iter()
            .filter_map(|e| e.handover().map(|h| (e.from_size(), h.to_string())))
            .collect();
        if let Err(e) = publisher.publish_handovers(handovers).await {
            tracing::error!(error = %e, "publishing a key hand-over failed");
        }
        let pending = publisher
            .pending_after()
            .map_err(|e| e.to_string())
            .and_then(|after| self.inner.history.after(after).map_err(|e| e.to_string()));
        let result = match pending {
            Ok(pending) => publisher
                .catch_up(pending.into_iter())
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::error!(error = %e, "publishing the checkpoints signed while the publishers were behind failed");
        }
    }

    /// Stops the task and signs what the log holds at the end.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
        if let Err(e) = self.sign_now().await {
            tracing::error!(error = %e, "signing the final checkpoint failed");
        }
    }
}

/// Why a log of `size` events (at least as many as were durable when `latest` was read) does
/// not extend `latest`, the newest checkpoint signed; `None` when it does.
pub(super) fn diverged_from(
    store: &Store,
    size: u64,
    latest: &Stored,
) -> Result<Option<Diverged>, StoreError> {
    if size < latest.size() {
        return Ok(Some(Diverged::Shorter {
            have: size,
            signed: latest.size(),
        }));
    }
    let root = store
        .root_at(latest.size())
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if &root != latest.checkpoint.root() {
        return Ok(Some(Diverged::Rewritten {
            signed: latest.size(),
        }));
    }
    Ok(None)
}

impl Inner {
    fn sign_blocking(&self, head: TreeHead) -> Result<Option<Stored>, StoreError> {
        if head.size == 0 {
            return Ok(None);
        }
        let latest = self.history.latest()?;
        if let Some(latest) = &latest {
            if head.size == latest.size() {
                return Ok(None);
            }
            // the new tree must extend the one signed last
            if let Some(why) = diverged_from(&self.store, head.size, latest)? {
                self.diverge(why);
                return Ok(None);
            }
        }
        let checkpoint = Checkpoint::new(self.key.origin(), head.size, head.root)
            .and_then(|c| {
                c.with_extension(&format!("{TIME_PREFIX}{}", format_micros(now_micros())))
            })
            .map_err(|e| StoreError::Corrupt(format!("cannot make a checkpoint: {e}")))?;
        let note = checkpoint
            .sign(self.key.signer())
            .map_err(|e| StoreError::Corrupt(format!("cannot sign a checkpoint: {e}")))?
            .to_string();
        self.history.put(head.size, &note)?;
        if let Ok(mut d) = self.diverged.lock() {
            *d = None;
        }
        tracing::debug!(size = head.size, "checkpoint signed");
        Stored::parse(&note).map(Some)
    }

    fn diverge(&self, why: Diverged) {
        let Ok(mut d) = self.diverged.lock() else {
            return;
        };
        // said once per change, not every look
        if d.as_ref().map(|w| w.to_string()) != Some(why.to_string()) {
            tracing::error!(problem = %why, "the log diverged from a checkpoint the hub signed");
        }
        *d = Some(why);
    }
}
