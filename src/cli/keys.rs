//! `trailhub keys ...`: the hub's own keys. They change only on a stopped hub's data dir: a
//! running hub holds its keys in memory, and a key changed under it would leave it sealing (or
//! signing) with the old one. One subcommand per key; the steps that must survive a crash live
//! in the library (`connectors::integrations::rotation`, `server::resume_rotation`,
//! `checkpoints::key_handover`), so that the hub at start or a second run of the command
//! finishes what a first run left.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::admin::local_principal;
use super::close;
use crate::checkpoints::key_handover::{self, Resume as HandoverResume};
use crate::checkpoints::{Keyring, SigningKey};
use crate::config::Settings;
use crate::connectors::integrations::rotation::{self, PendingRotation, Resume};
use crate::secrets::KeySource;
use crate::server::{self, ServeError};
use crate::store::{Store, StoreError};

#[derive(Subcommand, Debug)]
pub(super) enum KeysCommand {
    /// Re-seal every integration's credentials under a new master key (the hub must be
    /// stopped); the old key file is kept as <key file>.old-<unix time>
    RotateMaster(RotateMasterArgs),
    /// Sign checkpoints with a new key from now on (the hub must be stopped): a hand-over
    /// checkpoint signed by the old and the new key names the new one; the old key file is
    /// kept as <key file>.old-<unix time>
    RotateSigning,
    /// For a master key lost for good: forget the credentials that do not open with the
    /// current one, so that the hub starts; each must then be set again (without --yes, only
    /// lists them)
    ForgetCredentials {
        /// Forget them (otherwise only list them)
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Args, Debug)]
pub(super) struct RotateMasterArgs {
    /// Where to write the new key [default: the current key file; with TRAILHUB_MASTER_KEY,
    /// no file: the new key is printed once]
    #[arg(long, value_name = "PATH")]
    new_key_file: Option<PathBuf>,
}

pub(super) async fn keys(settings: &Settings, command: &KeysCommand) -> anyhow::Result<ExitCode> {
    let what = match command {
        KeysCommand::RotateMaster(_) => "rotate-master",
        KeysCommand::RotateSigning => "rotate-signing",
        KeysCommand::ForgetCredentials { .. } => "forget-credentials",
    };
    let store = open_stopped(settings, what)?;
    let result = match command {
        KeysCommand::RotateMaster(args) => rotate_master(&store, settings, args).await,
        KeysCommand::RotateSigning => rotate_signing(&store, settings).await,
        KeysCommand::ForgetCredentials { yes } => forget_credentials(&store, settings, *yes).await,
    };
    close(store)?;
    result.map(|()| ExitCode::SUCCESS)
}

/// The data dir of a stopped hub; a running hub holding it is an error saying to stop it.
fn open_stopped(settings: &Settings, what: &str) -> anyhow::Result<Store> {
    if !settings.store_path().exists() {
        anyhow::bail!("no hub data in {}", settings.data_dir.display());
    }
    match server::open_store(settings) {
        Ok(store) => Ok(store),
        Err(ServeError::Store(_, StoreError::Locked(_))) => anyhow::bail!(
            "{} is held by a running hub: stop it first (`trailhub keys {what}` works on a stopped hub's data dir, like `trailhub migrate`)",
            settings.data_dir.display()
        ),
        Err(e) => Err(e.into()),
    }
}

/// `trailhub keys rotate-master [--new-key-file PATH]`.
///
/// Opens every stored credential with the current master key (`TRAILHUB_MASTER_KEY`, else the
/// key file); if any does not open, stops with their names and changes nothing. Then:
/// 1. draws a new key and writes it to `<new key file>.new` (mode 0600, synced, directory
///    synced); with the old key from `TRAILHUB_MASTER_KEY` and no `--new-key-file`, to
///    `<master_key_file or <data_dir>/master.key>.new`, kept only until it is handed over;
/// 2. commits every re-sealed record and the marker `rotation: pending` (both fingerprints,
///    the files, and the credentials as sealed under the old key) in one sled batch, flushed;
/// 3. keeps the old key file as `<key file>.old-<unix time>` (0600) and renames the `.new`
///    file into place (a file given by `--new-key-file` replaces the old one: the old file is
///    then removed), or, for a key from the environment, prints the new key once;
/// 4. records the `master_key.rotate` audit event, then removes the marker, then a `.new` file
///    still there.
///
/// Where a kill leaves things, and how each recovers:
/// - before step 2 commits: nothing in the store changed; the old key opens everything. A
///   `.new` file may be left: not in use, the hub warns about it, the next run replaces it.
/// - after step 2, before the rename of step 3 (the key file still holds the old key, `.new`
///   the new one): the hub at its next start reads the marker, sees which file holds which key
///   by fingerprint, keeps the old key, renames `.new` into place, records the audit event and
///   starts with the new key. A second run of this command does the same. When the new key
///   goes elsewhere than the file the hub reads (`--new-key-file`), the hub refuses to start
///   and says to run this command again, then to point `master_key_file` at the new file.
/// - after step 2 with a key from the environment, before or after the key was printed: the
///   hub, still given the old key, refuses and says to run this command again, which prints
///   the same new key (the only case where it is shown twice); given the new key, the hub
///   finishes (marker and `.new` file removed).
/// - after the rename (or the print), before the marker is removed: the key file (or the
///   environment) already gives the new key; the hub and a second run only remove the marker
///   (the audit event may then be recorded twice, never lost).
/// - after the marker is removed, before the `.new` file of a hand-over is: a finished
///   rotation and a stale `.new` file holding the current key; the hub warns, the next run
///   replaces it.
///
/// If the new key is lost while the marker is pending (its `.new` file deleted before it was
/// moved) and the old key is still given, the hub or a second run rolls back: the credentials
/// sealed under the old key are put back from the marker, in one batch with its removal.
async fn rotate_master(
    store: &Store,
    settings: &Settings,
    args: &RotateMasterArgs,
) -> anyhow::Result<()> {
    let tree = store.integrations_tree();
    let source = server::key_source(settings);
    if let Some(marker) = rotation::pending(tree)? {
        println!(
            "an interrupted master key rotation (to the key with fingerprint {}) was found: finishing it; run the command again for another rotation",
            marker.new_fingerprint
        );
        return finish(
            store,
            &source,
            &marker,
            "finished by `trailhub keys rotate-master` after an interruption",
        )
        .await;
    }
    let Some(old) = source.read()? else {
        anyhow::bail!("there is no master key to rotate: {source} does not exist");
    };
    let (key_file, pending_file) = rotation::destination(
        &source,
        args.new_key_file.as_deref(),
        &settings.master_key_path(),
    )?;
    let plan = rotation::prepare(tree, &old, &source, key_file, pending_file)?;
    rotation::commit(tree, &plan)?;
    finish(
        store,
        &source,
        &plan.marker,
        "by `trailhub keys rotate-master`",
    )
    .await
}

/// Steps 3 and 4 of a rotation, from wherever a previous run stopped.
async fn finish(
    store: &Store,
    source: &KeySource,
    marker: &PendingRotation,
    how: &str,
) -> anyhow::Result<()> {
    let tree = store.integrations_tree();
    let who = local_principal();
    match rotation::diagnose(marker, source)? {
        Resume::Installed => {}
        Resume::Install => rotation::install(marker)?,
        Resume::HandOver(key) => {
            println!(
                "the old key came from TRAILHUB_MASTER_KEY, so the new key is shown here, once, and kept nowhere by the hub: put it in your secret store as TRAILHUB_MASTER_KEY now; the hub starts only with it from now on"
            );
            println!("new master key: {}", key.encoded().expose());
        }
        Resume::RollBack => {
            server::record_master_key_rotation(store, &who, marker, how, true).await?;
            rotation::rollback(tree, marker)?;
            println!(
                "the new key (fingerprint {}) was lost before it was moved into place: the rotation was rolled back, and the old key (fingerprint {}) opens the credentials again; run the command again to rotate",
                marker.new_fingerprint, marker.old_fingerprint
            );
            return Ok(());
        }
    }
    server::record_master_key_rotation(store, &who, marker, how, false).await?;
    rotation::complete(tree, marker)?;
    println!(
        "re-sealed {} credentials under the new master key, fingerprint {} (the old key's: {})",
        marker.resealed, marker.new_fingerprint, marker.old_fingerprint
    );
    match (&marker.key_file, source) {
        (Some(dest), KeySource::File(current)) if dest == current => {
            println!("the new key is in {} (mode 0600)", dest.display());
        }
        (Some(dest), KeySource::File(_)) => println!(
            "the new key is in {} (mode 0600): start the hub with master_key_file (TRAILHUB_MASTER_KEY_FILE) set to it",
            dest.display()
        ),
        (Some(dest), KeySource::Env(_)) => println!(
            "the new key is in {} (mode 0600): start the hub with TRAILHUB_MASTER_KEY_FILE set to it and without TRAILHUB_MASTER_KEY",
            dest.display()
        ),
        (None, _) => {}
    }
    match &marker.old_copy {
        Some(copy) => println!(
            "the old key is kept as {} (mode 0600): destroy it once no backup made with it is kept any more (the credentials in a backup open only with the key of its time)",
            copy.display()
        ),
        None => println!(
            "the old TRAILHUB_MASTER_KEY opens nothing any more: destroy it once no backup made with it is kept any more (the credentials in a backup open only with the key of its time)"
        ),
    }
    Ok(())
}

/// `trailhub keys rotate-signing`: a new checkpoint signing key for the same log (same origin,
/// so same key name, another key id), handed over by a checkpoint both keys sign.
///
/// Reads the key file and checks that its key signs the log now (the newest of the log's key
/// history, or any key if it was never rotated), that the log holds events and extends every
/// checkpoint signed, and that a stored checkpoint of the durable tree's size has its root;
/// otherwise stops, changing nothing. Then:
/// 1. draws a new Ed25519 key named by the origin and signs the **hand-over checkpoint** of the
///    durable tree (`time` and `key-handover <new vkey>` extension lines) with the old key and
///    the new one; writes the new key to `<key file>.new` (0600, synced, directory synced);
/// 2. commits, in one sled transaction over the settings and checkpoints trees, flushed: the
///    key history with the new key (from the hand-over's size; the original key from size 0
///    first, on a first rotation) and a marker (`pending`: the files, the checkpoint the
///    hand-over replaces), and the hand-over as the checkpoint of its size;
/// 3. keeps the old key file as `<key file>.old-<unix time>` (0600; a copy, so that a key file
///    is in place at every moment) and renames `.new` over the key file, syncing the directory;
/// 4. records the `signing_key.rotate` audit event, then removes the marker.
///
/// Where a kill leaves things, and how each recovers:
/// - before step 2 commits: nothing in the store changed; the key file holds the old key, which
///   the hub starts with. A `.new` file may be left: in no history, the hub warns about it, the
///   next run replaces it.
/// - after step 2, before the rename of step 3 (an `.old-` copy may already be there): the
///   history says the new key signs, the key file still holds the old one. The hub refuses to
///   start, saying to run this command again; run again, it finds the marker, sees the new key
///   in `.new` and takes steps 3 and 4. Were `.new` lost meanwhile (deleted by hand), the run
///   rolls back instead: the history and the checkpoint the hand-over replaced are put back in
///   one transaction, and the old key signs on (`signing_key.rotate_rollback` is recorded).
/// - after the rename, before the marker is removed: the key file holds the new key; a second
///   run only records the audit event (which may then be recorded twice, never lost) and
///   removes the marker. Until then the hub refuses to start, as above.
///
/// Step 2 is the only write to the store before the marker, and the key file always holds a
/// key the history names, so no crash leaves the hub signing with a key auditors cannot tie to
/// the old one. The settings must be the same on the second run (the marker names the key
/// file; another one is refused).
async fn rotate_signing(store: &Store, settings: &Settings) -> anyhow::Result<()> {
    let keyring = Keyring::load(store.settings_tree())?;
    if keyring.pending().is_some() {
        println!(
            "an interrupted signing key rotation (to the key {}) was found: finishing it; run the command again for another rotation",
            keyring.newest().map(|k| k.vkey()).unwrap_or_default()
        );
        return finish_signing(
            store,
            settings,
            &keyring,
            "finished by `trailhub keys rotate-signing` after an interruption",
        )
        .await;
    }
    let path = settings.signing_key_path();
    let in_data_dir = settings.data_dir.join(crate::config::SIGNING_KEY_FILE);
    if keyring.is_empty() && !path.exists() && !in_data_dir.exists() {
        anyhow::bail!(
            "there is no checkpoint signing key to rotate: {} does not exist (the hub makes one at its first start)",
            path.display()
        );
    }
    // the checks of a hub start: the key file holds the key that signs the log now
    let key = SigningKey::open(settings, store)?;
    let plan = key_handover::prepare(store, &key)?;
    key_handover::commit(store, &plan)?;
    let keyring = Keyring::load(store.settings_tree())?;
    finish_signing(
        store,
        settings,
        &keyring,
        "by `trailhub keys rotate-signing`",
    )
    .await
}

/// Steps 3 and 4 of a signing key rotation, from wherever a previous run stopped.
async fn finish_signing(
    store: &Store,
    settings: &Settings,
    keyring: &Keyring,
    how: &str,
) -> anyhow::Result<()> {
    let (Some(pending), [.., old, new]) = (keyring.pending(), keyring.entries()) else {
        anyhow::bail!("no signing key rotation is in progress");
    };
    let resume = key_handover::diagnose(keyring, &settings.signing_key_path())?;
    if resume == HandoverResume::RollBack {
        record_signing_rotation(store, keyring, how, true).await?;
        key_handover::rollback(store, keyring)?;
        println!(
            "the new key {} was lost before it was moved into place: the rotation was rolled back, and the key {} signs the log's checkpoints again; run the command again to rotate",
            new.vkey(),
            old.vkey()
        );
        return Ok(());
    }
    if resume == HandoverResume::Install {
        key_handover::install(keyring)?;
    }
    record_signing_rotation(store, keyring, how, false).await?;
    key_handover::complete(store, keyring)?;
    println!(
        "the checkpoints of log {} are signed by a new key from tree size {} on",
        new.verifier().name(),
        new.from_size()
    );
    println!("old key: {}", old.vkey());
    println!("new key: {}", new.vkey());
    println!(
        "the new private key is in {} (mode 0600); the old one is kept as {} (mode 0600) only in case something went wrong: nothing needs it to verify (its public key does), and whoever holds it can sign checkpoints that auditors holding only the old key accept, so destroy it once the hub runs with the new key and that key is backed up",
        pending.key_file.display(),
        pending.old_copy.display()
    );
    println!(
        "the hand-over checkpoint, signed by both keys (give it to everyone who holds the old key; the hub serves it as keys[].handover of GET /api/v1/checkpoints and as GET /api/v1/checkpoints/{}):",
        new.from_size()
    );
    print!("{}", new.handover().unwrap_or_default());
    Ok(())
}

/// The audit event of a signing key rotation (`signing_key.rotate`) or of its roll-back:
/// public keys and files, never a private key.
async fn record_signing_rotation(
    store: &Store,
    keyring: &Keyring,
    how: &str,
    rolled_back: bool,
) -> anyhow::Result<()> {
    let (Some(pending), [.., old, new]) = (keyring.pending(), keyring.entries()) else {
        anyhow::bail!("no signing key rotation is in progress");
    };
    let (event_type, description) = if rolled_back {
        (
            "signing_key.rotate_rollback",
            format!(
                "checkpoint signing key rotation rolled back ({how}): its new key {} was lost before it was installed; the key {} signs again",
                new.vkey(),
                old.vkey()
            ),
        )
    } else {
        (
            "signing_key.rotate",
            format!(
                "checkpoint signing key rotated ({how}): the key {} signs from tree size {} on (was {})",
                new.vkey(),
                new.from_size(),
                old.vkey()
            ),
        )
    };
    crate::audit::record(
        store,
        &local_principal(),
        crate::audit::AdminAction {
            event_type,
            action: crate::schema::Action::Update,
            category: crate::schema::Category::Configuration,
            target: Some(crate::schema::Target {
                kind: "signing_key".into(),
                id: new.vkey(),
                name: Some(new.verifier().name().to_string()),
            }),
            description,
            details: serde_json::json!({
                "old_public_key": old.vkey(),
                "new_public_key": new.vkey(),
                "from_size": new.from_size(),
                "key_file": pending.key_file.display().to_string(),
                "old_key_kept_as": pending.old_copy.display().to_string(),
                "rolled_back": rolled_back,
            }),
        },
    )
    .await?;
    Ok(())
}

/// `trailhub keys forget-credentials [--yes]`: for a master key lost for good, whose
/// credentials would otherwise keep the hub from starting.
async fn forget_credentials(store: &Store, settings: &Settings, yes: bool) -> anyhow::Result<()> {
    let tree = store.integrations_tree();
    let source = server::key_source(settings);
    let key = source.read()?;
    let shown_key = match &key {
        Some(k) => format!(
            "the master key from {source} (fingerprint {})",
            k.fingerprint()
        ),
        None => format!("any master key ({source} does not exist)"),
    };
    let listed = rotation::forget_unopenable(tree, key.as_ref(), false)?;
    if listed.is_empty() {
        println!("every stored credential opens with {shown_key}: nothing to forget");
        return Ok(());
    }
    if !yes {
        println!(
            "the credentials of {} integrations do not open with {shown_key}:",
            listed.len()
        );
        for name in &listed {
            println!("  {name}");
        }
        println!("if the key they were sealed with is lost for good, run again with --yes to forget them (then set each integration's credentials again); if it is not, restore it instead");
        return Ok(());
    }
    crate::audit::record(
        store,
        &local_principal(),
        crate::audit::AdminAction {
            event_type: "integration.credentials_forget",
            action: crate::schema::Action::Delete,
            category: crate::schema::Category::Configuration,
            target: None,
            description: format!(
                "the credentials of {} integrations were forgotten: they did not open with {shown_key}",
                listed.len()
            ),
            details: serde_json::json!({
                "integrations": listed,
                "key_fingerprint": key.as_ref().map(|k| k.fingerprint()),
            }),
        },
    )
    .await?;
    let forgotten = rotation::forget_unopenable(tree, key.as_ref(), true)?;
    println!(
        "forgot the credentials of {} integrations; set them again (PATCH /api/v1/integrations/ID or `trailhub integrations update ID --credential ...`) once the hub runs:",
        forgotten.len()
    );
    for name in &forgotten {
        println!("  {name}");
    }
    Ok(())
}
