//! Starting and stopping a hub: data dir, store, bootstrap token, HTTP server, clean shutdown

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::auth::{BootstrapError, Principal, Tokens};
use crate::checkpoints::{Cadence, Checkpointer, KeyError, PublishError, Publisher, SigningKey};
use crate::config::{Secret, Settings};
use crate::connectors::integrations::rotation::{
    self, KeyCheck, PendingRotation, Resume, RotationError,
};
use crate::connectors::integrations::Integrations;
use crate::connectors::{DefinitionError, Registry};
use crate::http::ConnectionLimits;
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::secrets::{KeySource, MasterKey, SecretsError};
use crate::store::{Store, StoreError, StoreOptions};

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the data directory {0}: {1}")]
    DataDir(std::path::PathBuf, std::io::Error),
    #[error("cannot open the store in {0}: {1}")]
    Store(std::path::PathBuf, StoreError),
    #[error(transparent)]
    Bootstrap(#[from] BootstrapError),
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error(transparent)]
    MasterKey(#[from] SecretsError),
    #[error(transparent)]
    Rotation(#[from] RotationError),
    #[error("connector definition: {0}")]
    Definition(#[from] DefinitionError),
    #[error("server failed: {0}")]
    Server(std::io::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    SigningKey(#[from] KeyError),
    #[error("checkpoint publishing: {0}")]
    Publish(#[from] PublishError),
    #[error("retention: {0}")]
    Retention(#[from] crate::retention::RetentionError),
    #[error("notifications: {0}")]
    Notify(#[from] crate::notify::NotifyError),
    #[error("export jobs: {0}")]
    Jobs(#[from] crate::jobs::JobError),
    #[error("enrichment: {0}")]
    Enrichment(#[from] crate::enrich::GeoError),
}

/// A hub serving in the background of the current tokio runtime.
pub struct RunningHub {
    pub addr: SocketAddr,
    pub store: Store,
    /// The admin token minted on first start, if this start minted one.
    pub minted_admin_token: Option<Secret>,
    pub scheduler: Scheduler,
    /// The key checkpoints of this hub's log are signed with.
    pub signing_key: Arc<SigningKey>,
    /// Signs the log's checkpoints.
    pub checkpointer: Checkpointer,
    /// Notification channels and the delivery outbox.
    pub notifier: crate::notify::Notifier,
    /// Export jobs, reports and report schedules (the notification module connects report
    /// delivery here: `Jobs::set_delivery`).
    pub jobs: crate::jobs::Jobs,
    ready: Arc<AtomicBool>,
    shutdown_drain: std::time::Duration,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
}

pub fn open_store(settings: &Settings) -> Result<Store, ServeError> {
    create_private_dir(&settings.data_dir)
        .map_err(|e| ServeError::DataDir(settings.data_dir.clone(), e))?;
    let options = StoreOptions {
        max_queued_events: settings.max_queued_events,
        dedup_hash_mask: settings.dedup_hash_mask,
        seal_events: settings.seal_events,
        ..StoreOptions::new(
            settings.cache_mb.saturating_mul(1024 * 1024),
            settings.min_free_mb.saturating_mul(1024 * 1024),
        )
    };
    Store::open(&settings.store_path(), &options)
        .map_err(|e| ServeError::Store(settings.data_dir.clone(), e))
}

fn create_private_dir(path: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// The integrations of a data dir, with the master key that opens their credentials.
pub fn open_integrations(settings: &Settings, store: &Store) -> Result<Integrations, ServeError> {
    let key_file = settings.master_key_path();
    let in_data_dir = settings.data_dir.join(crate::secrets::MASTER_KEY_FILE);
    if settings.master_key.is_none()
        && settings.master_key_file.is_some()
        && !key_file.exists()
        && in_data_dir.exists()
    {
        return Err(SecretsError::Misplaced {
            configured: key_file.display().to_string(),
            found: in_data_dir.display().to_string(),
        }
        .into());
    }
    let tree = store.integrations_tree();
    // a missing key file is minted afresh only while nothing is sealed under some other key
    if settings.master_key.is_none() && !key_file.exists() {
        let sealed = rotation::sealed_count(tree)?;
        if sealed > 0 {
            return Err(RotationError::KeyMissing {
                path: key_file.display().to_string(),
                sealed,
            }
            .into());
        }
    }
    let key = MasterKey::load(settings.master_key.as_ref(), &key_file)?;
    if let KeyCheck::OpensNone { sealed, example } = rotation::check_key(tree, &key)? {
        return Err(rotation::wrong_key(&key_source(settings), &key, sealed, example).into());
    }
    let stale = rotation::with_suffix(&key_file, ".new");
    if stale.exists() {
        tracing::warn!(file = %stale.display(), "a key file left by an interrupted `trailhub keys rotate-master` is not in use: delete it");
    }
    Ok(Integrations::new(tree.clone(), key, Registry::builtin()?))
}

/// Where the master key is read from with these settings.
pub fn key_source(settings: &Settings) -> KeySource {
    KeySource::new(settings.master_key.as_ref(), &settings.master_key_path())
}

/// An interrupted `trailhub keys rotate-master` met at start (see `rotation`): finished when
/// all that is left is moving the new key to the key file the hub reads (or the key the hub was
/// given already is the new one), rolled back when the new key is lost and the hub was given
/// the old one; otherwise the hub refuses, saying what to run.
pub async fn resume_rotation(settings: &Settings, store: &Store) -> Result<(), ServeError> {
    let tree = store.integrations_tree();
    let Some(marker) = rotation::pending(tree)? else {
        return Ok(());
    };
    let source = key_source(settings);
    let unfinished = |marker: &PendingRotation| {
        let key = match &marker.key_file {
            None => "TRAILHUB_MASTER_KEY set to the new key it prints".to_string(),
            Some(f) => format!(
                "the key file {} (master_key_file / TRAILHUB_MASTER_KEY_FILE, and no TRAILHUB_MASTER_KEY)",
                f.display()
            ),
        };
        RotationError::Unfinished {
            new_fingerprint: marker.new_fingerprint.clone(),
            origin: source.to_string(),
            next: format!("run `trailhub keys rotate-master` with the same settings to finish it (it may be run again safely), then start the hub with {key}"),
        }
    };
    let hub = Principal {
        token_id: "hub-start".into(),
        name: "hub start (an interrupted master key rotation)".into(),
        role: crate::auth::Role::Admin,
    };
    match rotation::diagnose(&marker, &source)? {
        Resume::Installed => {}
        Resume::Install if marker.key_file.as_deref() == source.file() => {
            rotation::install(&marker)?;
        }
        Resume::RollBack => {
            record_master_key_rotation(store, &hub, &marker, "at hub start", true).await?;
            rotation::rollback(tree, &marker)?;
            tracing::warn!(old_fingerprint = %marker.old_fingerprint, lost_fingerprint = %marker.new_fingerprint, "an interrupted master key rotation was rolled back: its new key was lost before it was installed; the old key opens the credentials again");
            return Ok(());
        }
        Resume::Install | Resume::HandOver(_) => return Err(unfinished(&marker).into()),
    }
    if source.read()?.map(|k| k.fingerprint()).as_deref() != Some(&marker.new_fingerprint) {
        return Err(unfinished(&marker).into());
    }
    record_master_key_rotation(
        store,
        &hub,
        &marker,
        "finished at hub start after an interruption",
        false,
    )
    .await?;
    rotation::complete(tree, &marker)?;
    tracing::warn!(new_fingerprint = %marker.new_fingerprint, old_key_kept_as = ?marker.old_copy, "an interrupted master key rotation was finished: the new key is in place");
    Ok(())
}

/// The audit event of a master key rotation (`master_key.rotate`) or of its roll-back: counts,
/// fingerprints and files, never a key.
pub async fn record_master_key_rotation(
    store: &Store,
    who: &Principal,
    marker: &PendingRotation,
    how: &str,
    rolled_back: bool,
) -> Result<(), ServeError> {
    let n = marker.resealed;
    let (event_type, description) = if rolled_back {
        (
            "master_key.rotate_rollback",
            format!(
                "master key rotation rolled back ({how}): its new key {} was lost before it was installed; {n} credentials are sealed under {} again",
                marker.new_fingerprint, marker.old_fingerprint
            ),
        )
    } else {
        (
            "master_key.rotate",
            format!(
                "master key rotated ({how}): {n} credentials re-sealed under the key {} (was {})",
                marker.new_fingerprint, marker.old_fingerprint
            ),
        )
    };
    let shown = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    crate::audit::record(
        store,
        who,
        crate::audit::AdminAction {
            event_type,
            action: crate::schema::Action::Update,
            category: crate::schema::Category::Configuration,
            target: Some(crate::schema::Target {
                kind: "master_key".into(),
                id: marker.new_fingerprint.clone(),
                name: None,
            }),
            description,
            details: serde_json::json!({
                "resealed": n,
                "old_fingerprint": marker.old_fingerprint,
                "new_fingerprint": marker.new_fingerprint,
                "key_file": shown(&marker.key_file),
                "old_key_kept_as": shown(&marker.old_copy),
                "handed_over": marker.key_file.is_none(),
                "rolled_back": rolled_back,
            }),
        },
    )
    .await
    .map_err(|e| ServeError::Rotation(RotationError::Store(e)))
}

pub async fn start(settings: Settings) -> Result<RunningHub, ServeError> {
    if let Some(token) = &settings.admin_token {
        crate::config::check_admin_token(token)?;
    }
    // the MaxMind DB files are checked whole before anything is opened: a bad one stops here
    let enricher = Arc::new(crate::enrich::Enricher::open(
        settings.enrichment.city_mmdb.as_deref(),
        settings.enrichment.asn_mmdb.as_deref(),
    )?);
    for file in enricher.geo_files() {
        tracing::info!(%file, "geo enrichment database");
    }
    let store = open_store(&settings)?;
    // the master key is checked before anything else is done: a wrong one stops the start here
    let opened = match resume_rotation(&settings, &store).await {
        Ok(()) => open_integrations(&settings, &store),
        Err(e) => Err(e),
    };
    let integrations = match opened {
        Ok(i) => i,
        Err(e) => {
            let _ = store.shutdown();
            return Err(e);
        }
    };
    let tokens = Tokens::new(store.tokens_tree().clone(), settings.admin_token.as_ref());
    let minted_admin_token = tokens.bootstrap(&settings.admin_token_path())?;
    if settings.master_key_inside_data_dir() {
        tracing::warn!(
            key_file = %settings.master_key_path().display(),
            "the master key is inside the data dir it protects: anyone with a copy of the data dir (a backup, a disk image) can open every stored credential; set master_key_file (TRAILHUB_MASTER_KEY_FILE) to a path outside it, or TRAILHUB_MASTER_KEY"
        );
    }
    // the key file must hold the newest key of the log's key history (after a rotation)
    let signing_key = match SigningKey::open(&settings, &store) {
        Ok(key) => Arc::new(key),
        Err(e) => {
            let _ = store.shutdown();
            return Err(e.into());
        }
    };
    if crate::checkpoints::signing_key::inside_data_dir(&settings) {
        tracing::warn!(
            key_file = %signing_key.path().display(),
            "the checkpoint signing key is inside the data dir whose log it signs: anyone with access to that disk can rewrite the history and sign checkpoints for it; set signing_key_file (TRAILHUB_SIGNING_KEY_FILE) to a path outside it (another volume, a secrets mount)"
        );
    }
    tracing::info!(
        origin = %signing_key.origin(),
        vkey = %signing_key.vkey(),
        "checkpoint signing key (give the vkey to auditors and witnesses to verify checkpoints)"
    );
    let publisher = if settings.checkpoints.publish_dir.is_some()
        || settings.checkpoints.publish_url.is_some()
        || settings.checkpoints.publish_log
    {
        Some(Arc::new(Publisher::new(
            &settings.checkpoints,
            store.settings_tree().clone(),
        )?))
    } else {
        None
    };
    let checkpoint_cadence = Cadence {
        every_events: settings.checkpoints.every_events,
        interval: settings.checkpoints.interval,
    };
    let checkpointer = Checkpointer::start(
        store.clone(),
        signing_key.clone(),
        checkpoint_cadence,
        publisher,
    );
    let retention_settings = crate::retention::RetentionSettings::from_config(&settings.retention)
        .map_err(crate::retention::RetentionError::Invalid)?;
    let retention =
        crate::retention::Retention::new(store.clone(), checkpointer.clone(), retention_settings)?;
    let (retention_stop, retention_stopped) = tokio::sync::watch::channel(false);
    let retention_task = retention.spawn(retention_stopped);
    // the key that opened the integrations' credentials (checked above) seals channel secrets
    let notifier = MasterKey::load(settings.master_key.as_ref(), &settings.master_key_path())
        .map_err(ServeError::from)
        .and_then(|key| {
            crate::notify::Notifier::open(&store, key, settings.notify.clone())
                .map_err(ServeError::from)
        });
    let notifier = match notifier {
        Ok(n) => n,
        Err(e) => {
            let _ = store.shutdown();
            return Err(e);
        }
    };
    notifier.record_attempts_as_events().await;
    notifier.start().await;
    let alerts = crate::alerts::Alerts::open(store.clone()).map_err(|e| {
        ServeError::Store(store.path().to_path_buf(), StoreError::Io(e.to_string()))
    })?;
    let (alerts_stop, alerts_stopped) = tokio::sync::watch::channel(false);
    alerts.set_dispatch(std::sync::Arc::new(crate::alerts::NotifyDispatch::new(
        notifier.clone(),
    )));
    let alerts_task = alerts.spawn(alerts_stopped);
    // export jobs and reports: a job a crash left running is queued again before the runner starts
    let jobs = crate::jobs::Jobs::open(store.clone(), &settings.data_dir, settings.jobs.clone())?;
    let (jobs_stop, jobs_stopped) = tokio::sync::watch::channel(false);
    jobs.set_delivery(Arc::new(crate::jobs::NotifyReports::new(notifier.clone())));
    let jobs_task = jobs.spawn(jobs_stopped);
    let metrics = Arc::new(Metrics::new());
    let scheduler = Scheduler::start(
        store.clone(),
        integrations.clone(),
        metrics.clone(),
        settings.poll.clone(),
    );
    let ready = Arc::new(AtomicBool::new(false));
    let state = AppState {
        store: store.clone(),
        tokens,
        integrations,
        scheduler: scheduler.clone(),
        metrics: metrics.clone(),
        max_body_bytes: settings.max_body_bytes,
        webhook_max_body_bytes: settings.webhook_max_body_bytes,
        webhook_permits: Arc::new(tokio::sync::Semaphore::new(settings.webhook_concurrency)),
        min_free_bytes: settings.min_free_mb.saturating_mul(1024 * 1024),
        auth_throttle: Arc::new(crate::api::throttle::AuthThrottle::new(
            settings.auth_failure_limit,
            settings.auth_failure_window,
        )),
        ready: ready.clone(),
        started: Instant::now(),
        checkpointer: checkpointer.clone(),
        checkpoint_cadence,
        retention,
        alerts,
        notifier: notifier.clone(),
        jobs: jobs.clone(),
        enricher,
    };
    let app = api::router(state);
    let limits = ConnectionLimits {
        header_timeout: settings.header_timeout,
        body_timeout: settings.body_timeout,
        max_connections: settings.max_connections,
    };
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .map_err(|e| ServeError::Bind(settings.listen, e))?;
    let addr = listener.local_addr().map_err(ServeError::Server)?;
    ready.store(true, Ordering::SeqCst);
    let (stop, stopped) = oneshot::channel::<()>();
    let task_store = store.clone();
    let task_scheduler = scheduler.clone();
    let task_checkpointer = checkpointer.clone();
    let task_notifier = notifier.clone();
    let task = tokio::spawn(async move {
        crate::http::serve(listener, app, limits, metrics, async {
            let _ = stopped.await;
        })
        .await;
        // the scheduler's cycles finish the page in hand and commit before the store closes
        task_scheduler.shutdown().await;
        // the alert runner saves its cursor once the last polls are in (its last firings
        // queued in the outbox)
        let _ = alerts_stop.send(true);
        let _ = alerts_task.await;
        // attempts in flight end (or stay pending for the next start), their events recorded
        task_notifier.shutdown().await;
        // a retention run in progress finishes its batch (each batch is whole or not started)
        let _ = retention_stop.send(true);
        let _ = retention_task.await;
        // running export jobs and reports stop and go back to the queue for the next start
        let _ = jobs_stop.send(true);
        let _ = jobs_task.await;
        // what the last cycles committed is signed before the store closes
        task_checkpointer.shutdown().await;
        let closed = task_store.shutdown();
        tracing::info!("hub stopped");
        closed.map_err(|e| ServeError::Store(task_store.path().to_path_buf(), e))
    });
    tracing::info!(%addr, data_dir = %settings.data_dir.display(), events = store.event_count(), "hub listening");
    Ok(RunningHub {
        addr,
        store,
        minted_admin_token,
        scheduler,
        signing_key,
        checkpointer,
        notifier,
        jobs,
        ready,
        shutdown_drain: settings.shutdown_drain,
        stop: Some(stop),
        task,
    })
}

impl RunningHub {
    /// Answers `/readyz` with 503 and keeps serving for the drain time (`shutdown_drain_secs`),
    /// then stops accepting requests, lets those in flight finish, flushes and closes the store.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.ready.store(false, Ordering::SeqCst);
        if !self.shutdown_drain.is_zero() {
            tracing::info!(
                seconds = self.shutdown_drain.as_secs_f64(),
                "not ready: draining before the server stops"
            );
            tokio::time::sleep(self.shutdown_drain).await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ServeError::Server(std::io::Error::other(e))),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
