//! Starting and stopping a hub: data dir, store, bootstrap token, HTTP server, clean shutdown

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::auth::{BootstrapError, Tokens};
use crate::checkpoints::{Cadence, Checkpointer, KeyError, PublishError, Publisher, SigningKey};
use crate::config::{Secret, Settings};
use crate::connectors::integrations::Integrations;
use crate::connectors::{DefinitionError, Registry};
use crate::http::ConnectionLimits;
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::secrets::{MasterKey, SecretsError};
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
    let key = MasterKey::load(settings.master_key.as_ref(), &key_file)?;
    Ok(Integrations::new(
        store.integrations_tree().clone(),
        key,
        Registry::builtin()?,
    ))
}

pub async fn start(settings: Settings) -> Result<RunningHub, ServeError> {
    if let Some(token) = &settings.admin_token {
        crate::config::check_admin_token(token)?;
    }
    let store = open_store(&settings)?;
    let tokens = Tokens::new(store.tokens_tree().clone(), settings.admin_token.as_ref());
    let minted_admin_token = tokens.bootstrap(&settings.admin_token_path())?;
    let integrations = open_integrations(&settings, &store)?;
    if settings.master_key_inside_data_dir() {
        tracing::warn!(
            key_file = %settings.master_key_path().display(),
            "the master key is inside the data dir it protects: anyone with a copy of the data dir (a backup, a disk image) can open every stored credential; set master_key_file (TRAILHUB_MASTER_KEY_FILE) to a path outside it, or TRAILHUB_MASTER_KEY"
        );
    }
    let signing_key = Arc::new(SigningKey::load_or_create(&settings)?);
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
    let task = tokio::spawn(async move {
        crate::http::serve(listener, app, limits, metrics, async {
            let _ = stopped.await;
        })
        .await;
        // the scheduler's cycles finish the page in hand and commit before the store closes
        task_scheduler.shutdown().await;
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
