//! Sealing integration credentials at rest: XChaCha20-Poly1305 under the hub's master key, with
//! the integration id as associated data (a sealed blob moved to another integration won't open)
//!
//! The master key comes from `TRAILHUB_MASTER_KEY` (32 bytes as base64 or hex), else from the
//! key file: `master_key_file` (`TRAILHUB_MASTER_KEY_FILE`) if set, else `<data_dir>/master.key`,
//! created with mode 0600 on first start. A key beside the data it protects protects nothing
//! from whoever copies the data dir (a backup, a disk image): the hub warns at start when it is.
//!
//! The key files themselves are handled here too: read without minting (`MasterKey::read`),
//! written beside their final place and moved in (`write_key_file`, `install_key_file`), kept
//! as a copy (`keep_key_copy`); `trailhub keys rotate-master` builds on these
//! (`connectors::integrations::rotation`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::config::Secret;

const SEALED_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
pub use crate::config::MASTER_KEY_FILE;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("TRAILHUB_MASTER_KEY must be 32 bytes written as base64 or hex")]
    BadEnvKey,
    #[error("{0} must hold 32 bytes written as base64 or hex")]
    BadKeyFile(String),
    #[error("cannot read or create the master key {0}: {1}")]
    Io(String, std::io::Error),
    #[error("sealed credentials do not open: wrong master key, or the data was altered")]
    Open,
    #[error("sealed credentials have an unknown layout")]
    Layout,
    #[error("the master key file {configured} does not exist, but the data dir holds {found}: move that file to {configured} (credentials sealed with it do not open with a new key)")]
    Misplaced { configured: String, found: String },
    #[error("the master key file {0} does not exist")]
    Missing(String),
}

/// Where the master key is read from: `TRAILHUB_MASTER_KEY`, or a key file. Shown in messages
/// (never the key).
#[derive(Debug, Clone)]
pub enum KeySource {
    Env(Secret),
    File(PathBuf),
}

impl KeySource {
    /// The environment value if given, else the key file.
    pub fn new(env_value: Option<&Secret>, key_file: &Path) -> KeySource {
        match env_value {
            Some(v) => KeySource::Env(v.clone()),
            None => KeySource::File(key_file.to_path_buf()),
        }
    }

    /// The key, without minting one when the file does not exist (`Ok(None)` then).
    pub fn read(&self) -> Result<Option<MasterKey>, SecretsError> {
        match self {
            KeySource::Env(v) => decode_key(v.expose())
                .map(|k| Some(MasterKey(k)))
                .ok_or(SecretsError::BadEnvKey),
            KeySource::File(path) => read_key_file(path),
        }
    }

    pub fn file(&self) -> Option<&Path> {
        match self {
            KeySource::Env(_) => None,
            KeySource::File(p) => Some(p),
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env(_) => f.write_str("TRAILHUB_MASTER_KEY (environment)"),
            KeySource::File(p) => write!(f, "the key file {}", p.display()),
        }
    }
}

/// The key in `path`, `None` if there is no such file.
pub fn read_key_file(path: &Path) -> Result<Option<MasterKey>, SecretsError> {
    let shown = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => decode_key(&text)
            .map(|k| Some(MasterKey(k)))
            .ok_or(SecretsError::BadKeyFile(shown)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SecretsError::Io(shown, e)),
    }
}

/// Writes `key` to `path` (mode 0600, synced, and its directory synced), replacing a file left
/// there: for the `<key file>.new` of a rotation, which is written before anything is sealed
/// under the key it holds.
pub fn write_key_file(path: &Path, key: &MasterKey) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    write_private(path, key.encoded().expose().as_bytes())?;
    sync_parent(path)
}

/// Moves the key file `from` to `to` (replacing it atomically), and syncs the directory.
pub fn install_key_file(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    sync_parent(to)
}

/// Keeps the key file `path` as `copy` too (a hard link, else a copy), mode 0600, synced.
pub fn keep_key_copy(path: &Path, copy: &Path) -> std::io::Result<()> {
    if std::fs::hard_link(path, copy).is_err() {
        let bytes = std::fs::read(path)?;
        write_private(copy, &bytes)?;
    }
    crate::auth::restrict_to_owner(copy)?;
    sync_parent(copy)
}

/// A rename or a new file survives a crash only once its directory is synced too.
fn sync_parent(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// The key that seals every credential. Debug never shows it; its bytes are wiped on drop.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl Drop for MasterKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let t = text.trim();
    let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(t).ok()?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(t))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
            .ok()?
    };
    bytes.try_into().ok()
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey(bytes)
    }

    /// A new key from the OS random source.
    pub fn generate() -> MasterKey {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS random source is available");
        MasterKey(key)
    }

    /// The first 8 bytes of the key's SHA-256, hex: names a key in messages and audit events
    /// without giving it away.
    pub fn fingerprint(&self) -> String {
        use sha2::Digest as _;
        hex::encode(&sha2::Sha256::digest(self.0)[..8])
    }

    /// The key as written in a key file (hex). Only for the file and the one documented
    /// hand-over of a rotated `TRAILHUB_MASTER_KEY`.
    pub fn encoded(&self) -> Secret {
        Secret::new(hex::encode(self.0))
    }

    /// The key from the environment value if given, else from (or newly into) `key_file`.
    pub fn load(env_value: Option<&Secret>, key_file: &Path) -> Result<MasterKey, SecretsError> {
        if let Some(v) = env_value {
            return decode_key(v.expose())
                .map(MasterKey)
                .ok_or(SecretsError::BadEnvKey);
        }
        let path = key_file;
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                // a key file found readable by others is tightened, as the admin token file is
                crate::auth::restrict_to_owner(path)
                    .map_err(|e| SecretsError::Io(shown.clone(), e))?;
                decode_key(&text)
                    .map(MasterKey)
                    .ok_or(SecretsError::BadKeyFile(shown))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MasterKey::generate();
                write_private(path, key.encoded().expose().as_bytes())
                    .map_err(|e| SecretsError::Io(shown.clone(), e))?;
                tracing::info!(path = %shown, "master key created; back it up with the data dir, credentials do not open without it");
                Ok(key)
            }
            Err(e) => Err(SecretsError::Io(shown, e)),
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// `version ‖ nonce ‖ ciphertext+tag`, bound to `associated` (the integration id).
    pub fn seal(&self, plaintext: &[u8], associated: &str) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let sealed = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: associated.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8], associated: &str) -> Result<Vec<u8>, SecretsError> {
        if sealed.len() < 1 + NONCE_LEN + 16 || sealed[0] != SEALED_VERSION {
            return Err(SecretsError::Layout);
        }
        self.cipher()
            .decrypt(
                XNonce::from_slice(&sealed[1..1 + NONCE_LEN]),
                Payload {
                    msg: &sealed[1 + NONCE_LEN..],
                    aad: associated.as_bytes(),
                },
            )
            .map_err(|_| SecretsError::Open)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_bound_to_the_integration() {
        let key = MasterKey::from_bytes([7; 32]);
        let sealed = key.seal(b"{\"token\":\"hunter2\"}", "int_a");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            key.open(&sealed, "int_a").expect("opens"),
            b"{\"token\":\"hunter2\"}"
        );
        assert!(
            key.open(&sealed, "int_b").is_err(),
            "moved to another integration"
        );
        assert!(MasterKey::from_bytes([8; 32])
            .open(&sealed, "int_a")
            .is_err());
        let mut altered = sealed.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(key.open(&altered, "int_a").is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(MASTER_KEY_FILE);
        let a = MasterKey::load(None, &file).expect("created");
        let b = MasterKey::load(None, &file).expect("reused");
        assert_eq!(a.0, b.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(MASTER_KEY_FILE))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let env = Secret::new(hex::encode([3u8; 32]));
        assert_eq!(MasterKey::load(Some(&env), &file).expect("hex").0, [3; 32]);
        let env = Secret::new(base64::engine::general_purpose::STANDARD.encode([4u8; 32]));
        assert_eq!(MasterKey::load(Some(&env), &file).expect("b64").0, [4; 32]);
        assert!(MasterKey::load(Some(&Secret::new("short")), &file).is_err());
        assert!(format!("{a:?}").contains("redacted"));
    }
}
