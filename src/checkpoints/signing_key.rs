//! The checkpoint signing key: one Ed25519 key per log, kept in a file and the same across
//! restarts, because every checkpoint an auditor holds was signed with it
//!
//! The file holds the key as C2SP/Go sumdb `skey` text (`PRIVATE+KEY+<name>+<key id>+<key>`),
//! so other transparency-log tools can read it. It is `signing_key_file`
//! (`TRAILHUB_SIGNING_KEY_FILE`) if set, else `<data_dir>/signing.key`, created with mode 0600
//! on first start. The key's name is the log's origin (`log_origin`, else
//! `trailhub/<16 hex digits of the public key's SHA-256>`), and it is part of every checkpoint:
//! changing it means a new key, so a key file named otherwise is refused rather than renamed.
//!
//! Whoever can read this file can sign any history as this hub, so beside the data it vouches
//! for it proves little against whoever controls that disk: the hub warns at start when it is.
//!
//! Once the key was rotated (`trailhub keys rotate-signing`), the log's key history
//! ([`super::keyring`]) says which key the file must hold: the newest. The hub then refuses a
//! key file holding any other key (a key swapped in, or a retired one restored from a backup)
//! and never makes a new key in place of a missing one.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::keyring::{KeyStanding, Keyring, KeyringError};
use crate::config::{Settings, SIGNING_KEY_FILE};
use crate::evidence::note::{NoteError, NoteSigner, NoteVerifier, MAX_KEY_NAME_BYTES};
use crate::store::Store;

/// A key file longer than this is not a key: nothing more of it is read.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// Why the signing key could not be had. Messages name files, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read or create the checkpoint signing key {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the checkpoint signing key file {} does not hold a signing key ({reason}); it must hold one line PRIVATE+KEY+<name>+<key id>+<key>, as this hub writes it", path.display())]
    Malformed { path: PathBuf, reason: NoteError },
    #[error("the checkpoint signing key {} is for log origin {found:?}, but log_origin is {configured:?}: the origin is in every checkpoint the key signed, so changing it needs a new key (a key rotation); set log_origin to {found:?} to keep this key", path.display())]
    OriginMismatch {
        path: PathBuf,
        found: String,
        configured: String,
    },
    #[error("the checkpoint signing key file {} does not exist, but the data dir holds {}: move that file to {} (the checkpoints already handed out were signed with it, a new key would not match them)", configured.display(), found.display(), configured.display())]
    Misplaced { configured: PathBuf, found: PathBuf },
    #[error("log_origin {origin:?} cannot name a signing key: {reason}")]
    BadOrigin { origin: String, reason: NoteError },
    #[error("the OS random source failed: {0}")]
    Random(String),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("the checkpoint signing key file {} does not exist, but this log's checkpoints are signed by the key {newest} (after a key rotation): put its key file back at {}; a new key is not made in place of a rotated one (rotate with `trailhub keys rotate-signing`)", path.display(), path.display())]
    Missing { path: PathBuf, newest: String },
    #[error("the checkpoint signing key file {} holds the key {found}, which never signed this log: its keys are {known}, and the newest, {newest}, signs now. The key file was replaced, or belongs to another hub: put back the key file of {newest}", path.display())]
    NotInHistory {
        path: PathBuf,
        found: String,
        known: String,
        newest: String,
    },
    #[error("the checkpoint signing key file {} holds the key {found}, which `trailhub keys rotate-signing` retired at tree size {until}: the key {newest} signs this log now. A key file restored from an older backup? Put back the key file of {newest}", path.display())]
    Retired {
        path: PathBuf,
        found: String,
        until: u64,
        newest: String,
    },
    #[error("a `trailhub keys rotate-signing` (to the key {new}) was interrupted: run it again with the same settings to finish it (it may be run again safely), then start the hub")]
    RotationUnfinished { new: String },
}

/// The log's signing key, with the file it came from and the log's key history. `Debug` shows
/// the origin, key id and file, never the private key.
pub struct SigningKey {
    signer: NoteSigner,
    path: PathBuf,
    /// Never empty: for a key never rotated, this key from size 0.
    keyring: Keyring,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("origin", &self.signer.name())
            .field("key_id", &format_args!("{:08x}", self.signer.key_id()))
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Where `trailhub keys rotate-signing` writes a new key before renaming it over `path`.
pub fn pending_key_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".new");
    PathBuf::from(name)
}

/// True when the signing key file is inside the data dir (the default).
pub fn inside_data_dir(settings: &Settings) -> bool {
    settings.inside_data_dir(&settings.signing_key_path())
}

/// The name of a new key when `log_origin` is not set: stable for the key, distinct between
/// keys, so two hubs' checkpoints are never mistaken for one log's.
fn default_origin(seed: &[u8; 32]) -> String {
    let public = ed25519_dalek::SigningKey::from_bytes(seed).verifying_key();
    let digest = Sha256::digest(public.as_bytes());
    format!("trailhub/{}", hex::encode(&digest[..8]))
}

impl SigningKey {
    /// The hub's key at start: the key file's, checked against the log's key history in
    /// `store`. With no history (the key was never rotated), as [`SigningKey::load_or_create`];
    /// with one, the file must hold its newest key. Refused while a rotation is unfinished.
    pub fn open(settings: &Settings, store: &Store) -> Result<SigningKey, KeyError> {
        let keyring = Keyring::load(store.settings_tree())?;
        if let Some(pending) = keyring.pending() {
            let new = keyring.newest().map(|k| k.vkey()).unwrap_or_default();
            tracing::error!(pending_file = %pending.pending_file.display(), "an interrupted `trailhub keys rotate-signing` was found");
            return Err(KeyError::RotationUnfinished { new });
        }
        let path = settings.signing_key_path();
        let stale = pending_key_path(&path);
        if stale.exists() {
            tracing::warn!(file = %stale.display(), "a key file left by an interrupted `trailhub keys rotate-signing` is not in use: delete it");
        }
        let Some(newest) = keyring.newest().map(|k| k.vkey()) else {
            return SigningKey::load_or_create(settings);
        };
        let Some(signer) = read_key_file(&path)? else {
            let in_data_dir = settings.data_dir.join(SIGNING_KEY_FILE);
            if settings.checkpoints.signing_key_file.is_some() && in_data_dir.exists() {
                return Err(KeyError::Misplaced {
                    configured: path,
                    found: in_data_dir,
                });
            }
            return Err(KeyError::Missing { path, newest });
        };
        let configured = settings.checkpoints.log_origin.as_deref();
        let key = SigningKey::checked(signer, path, configured)?;
        let found = key.vkey();
        match keyring.standing(&key.verifier()) {
            KeyStanding::Newest | KeyStanding::Unrecorded => Ok(SigningKey { keyring, ..key }),
            KeyStanding::Retired { until } => Err(KeyError::Retired {
                path: key.path,
                found,
                until,
                newest,
            }),
            KeyStanding::Foreign => Err(KeyError::NotInHistory {
                path: key.path,
                found,
                known: keyring
                    .entries()
                    .iter()
                    .map(|k| k.vkey())
                    .collect::<Vec<_>>()
                    .join(", "),
                newest,
            }),
        }
    }

    /// The key from the key file, or a new one written there (0600) when there is none. Knows
    /// nothing of a key history: the hub starts with [`SigningKey::open`].
    pub fn load_or_create(settings: &Settings) -> Result<SigningKey, KeyError> {
        let path = settings.signing_key_path();
        let in_data_dir = settings.data_dir.join(SIGNING_KEY_FILE);
        if settings.checkpoints.signing_key_file.is_some() && !path.exists() && in_data_dir.exists()
        {
            return Err(KeyError::Misplaced {
                configured: path,
                found: in_data_dir,
            });
        }
        let configured = settings.checkpoints.log_origin.as_deref();
        if let Some(signer) = read_key_file(&path)? {
            return SigningKey::checked(signer, path, configured);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        let name = configured.map_or_else(|| default_origin(&seed), str::to_string);
        let signer = NoteSigner::from_seed(&name, &seed).map_err(|reason| KeyError::BadOrigin {
            origin: name.clone(),
            reason,
        })?;
        let mut text = signer.skey();
        text.push('\n');
        match create_key_file(&path, text.as_bytes()) {
            Ok(()) => {
                tracing::info!(
                    path = %path.display(),
                    origin = %name,
                    "checkpoint signing key created; back it up and keep it apart from the data dir: checkpoints already handed out verify only with it"
                );
                let keyring = Keyring::default().or_original(&signer.verifier());
                Ok(SigningKey {
                    signer,
                    path,
                    keyring,
                })
            }
            // another process created it first: that one is the key
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                match read_key_file(&path)? {
                    Some(theirs) => SigningKey::checked(theirs, path, configured),
                    None => Err(KeyError::Io { path, source: e }),
                }
            }
            Err(source) => Err(KeyError::Io { path, source }),
        }
    }

    /// The key read from `path`, if its name is the configured origin (when one is).
    fn checked(
        signer: NoteSigner,
        path: PathBuf,
        configured: Option<&str>,
    ) -> Result<SigningKey, KeyError> {
        if let Some(configured) = configured {
            if signer.name() != configured {
                return Err(KeyError::OriginMismatch {
                    path,
                    found: signer.name().to_string(),
                    configured: configured.to_string(),
                });
            }
        }
        let keyring = Keyring::default().or_original(&signer.verifier());
        Ok(SigningKey {
            signer,
            path,
            keyring,
        })
    }

    pub fn signer(&self) -> &NoteSigner {
        &self.signer
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// The public key as C2SP `vkey` text, to hand to auditors and witnesses.
    pub fn vkey(&self) -> String {
        self.signer.verifier().vkey()
    }

    /// The log's origin: the key's name and the first line of its checkpoints.
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The file the key is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The log's signing keys, oldest first, this one the newest; for a key never rotated,
    /// this key alone, from size 0.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }
}

/// The key in `path`; `None` if there is no such file.
pub(super) fn read_key_file(path: &Path) -> Result<Option<NoteSigner>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    tighten(path, &file);
    let mut text = Zeroizing::new(String::new());
    file.take(MAX_KEY_FILE_BYTES)
        .read_to_string(&mut text)
        .map_err(io)?;
    // the longest skey: prefix, name, key id and the base64 of 33 bytes, with separators
    if text.trim().len() > "PRIVATE+KEY+".len() + MAX_KEY_NAME_BYTES + 64 {
        return Err(KeyError::Malformed {
            path: path.to_path_buf(),
            reason: NoteError::BadSignerKey("the file is longer than one key"),
        });
    }
    NoteSigner::from_skey(text.trim())
        .map(Some)
        .map_err(|reason| KeyError::Malformed {
            path: path.to_path_buf(),
            reason,
        })
}

/// A key file others may read is made the owner's alone. Failing that (a read-only secrets
/// mount, another owner) is worth a warning, not a refusal to start.
fn tighten(path: &Path, file: &std::fs::File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = file.metadata() else { return };
        if meta.permissions().mode() & 0o077 == 0 {
            return;
        }
        if let Err(e) = crate::auth::restrict_to_owner(path) {
            tracing::warn!(path = %path.display(), error = %e, "the checkpoint signing key file is readable by others and cannot be restricted to its owner");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, file);
}

/// Writes a new key file (0600), creating its directory (0700) if needed; never replaces one.
fn create_key_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = super::files::parent_dir(path);
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir)?;
    }
    super::files::create_new(path, bytes, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(data_dir: &Path) -> Settings {
        Settings::for_data_dir(data_dir)
    }

    #[test]
    fn a_key_is_created_once_private_and_read_back_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let s = settings(&data_dir);
        let first = SigningKey::load_or_create(&s).expect("created");
        let second = SigningKey::load_or_create(&s).expect("read back");
        assert_eq!(first.vkey(), second.vkey());
        assert_eq!(first.origin(), second.origin());
        assert_eq!(first.path(), data_dir.join(SIGNING_KEY_FILE));
        // trailhub/ and 16 hex digits of the public key's hash
        let suffix = first.origin().strip_prefix("trailhub/").expect("prefix");
        assert!(
            suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
            "{}",
            first.origin()
        );
        assert!(NoteVerifier::from_vkey(&first.vkey()).is_ok());
        assert!(inside_data_dir(&s));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                |p: &Path| std::fs::metadata(p).expect("exists").permissions().mode() & 0o777;
            assert_eq!(mode(first.path()), 0o600);
            assert_eq!(mode(&data_dir), 0o700, "the directory made for it");
            // a loosened file is tightened when read
            std::fs::set_permissions(first.path(), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
            SigningKey::load_or_create(&s).expect("read back");
            assert_eq!(mode(first.path()), 0o600);
        }
        // the private key shows in neither Debug form
        let skey = first.signer().skey();
        let secret_part = &skey[skey.len() - 20..];
        for shown in [format!("{first:?}"), format!("{:?}", first.signer())] {
            assert!(!shown.contains(secret_part), "{shown}");
        }
        let names: Vec<_> = std::fs::read_dir(&data_dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [SIGNING_KEY_FILE], "no temporary file is left");
    }

    #[test]
    fn log_origin_names_a_new_key_and_refuses_a_key_named_otherwise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = settings(dir.path());
        s.checkpoints.log_origin = Some("example.com/audit".into());
        let key = SigningKey::load_or_create(&s).expect("created");
        assert_eq!(key.origin(), "example.com/audit");
        assert!(key.vkey().starts_with("example.com/audit+"));
        s.checkpoints.log_origin = Some("example.com/other".into());
        let err = SigningKey::load_or_create(&s).expect_err("renamed origin");
        assert!(matches!(err, KeyError::OriginMismatch { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("example.com/audit") && message.contains("example.com/other"),
            "{message}"
        );
        // without log_origin the file's name is the origin
        s.checkpoints.log_origin = None;
        let again = SigningKey::load_or_create(&s).expect("read");
        assert_eq!(again.origin(), "example.com/audit");
        assert_eq!(again.vkey(), key.vkey());
        s.checkpoints.log_origin = Some("has space".into());
        let fresh = tempfile::tempdir().expect("tempdir");
        s.data_dir = fresh.path().to_path_buf();
        assert!(matches!(
            SigningKey::load_or_create(&s),
            Err(KeyError::BadOrigin { .. })
        ));
    }

    #[test]
    fn a_file_that_is_not_a_key_is_refused_naming_the_file_not_its_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = settings(dir.path());
        let path = s.signing_key_path();
        // looks like a key, with a wrong key id: its text must not be echoed
        let material = "c2VjcmV0LWtleS1tYXRlcmlhbC1ub3QtdG8tYmUtc2hvd24=";
        for text in [
            format!("PRIVATE+KEY+trailhub/x+00000000+{material}\n"),
            format!("{material}\n"),
            format!("{}\n", "A".repeat(5000)),
        ] {
            std::fs::write(&path, &text).expect("write");
            let err = SigningKey::load_or_create(&s).expect_err("not a key");
            assert!(matches!(err, KeyError::Malformed { .. }), "{err:?}");
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(shown.contains(&path.display().to_string()), "{shown}");
                assert!(!shown.contains(&material[..16]), "{shown}");
                assert!(!shown.contains("AAAAAAAA"), "{shown}");
            }
        }
        std::fs::write(&path, [0xff, 0xfe, b'\n']).expect("write");
        let err = SigningKey::load_or_create(&s).expect_err("not UTF-8");
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn a_key_left_in_the_data_dir_when_another_file_is_configured_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let mut s = settings(&data_dir);
        let original = SigningKey::load_or_create(&s).expect("created in the data dir");
        let outside = dir.path().join("keys").join("signing.key");
        s.checkpoints.signing_key_file = Some(outside.clone());
        assert!(!inside_data_dir(&s));
        let err = SigningKey::load_or_create(&s).expect_err("misplaced");
        assert!(matches!(err, KeyError::Misplaced { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&outside.display().to_string())
                && message.contains(&data_dir.join(SIGNING_KEY_FILE).display().to_string()),
            "{message}"
        );
        assert!(!outside.exists(), "no new key was made");
        // moved as told, it is the same key
        std::fs::create_dir_all(outside.parent().expect("parent")).expect("mkdir");
        std::fs::rename(original.path(), &outside).expect("move");
        let moved = SigningKey::load_or_create(&s).expect("read from its new place");
        assert_eq!(moved.vkey(), original.vkey());
    }
}
