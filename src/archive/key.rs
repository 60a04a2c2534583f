//! The archive key: the 32 bytes that encrypt archive segments, kept in a file of their own.
//!
//! It is not the master key. Segments leave the hub (a bucket, another team's storage) and are
//! read back by a restore that may run elsewhere, years later; the master key seals integration
//! credentials and is rotated on its own schedule. A key of its own can be handed to whoever
//! restores without handing over the credentials, and losing it loses only the archive.
//!
//! A segment names its key by [`ArchiveKey::key_id`], a hash of the key under a label of its
//! own, so that a restore given the wrong key says which one it needs without trying to decrypt.

use std::io::{Read, Write};
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::XChaCha20Poly1305;
use sha2::Digest as _;
use zeroize::{Zeroize, Zeroizing};

/// Bytes of the key id kept in an encrypted segment's envelope (16 hex digits when shown).
pub const KEY_ID_LEN: usize = 8;
/// A key file is 64 hex digits or 44 base64 characters and a newline; anything much larger is
/// not a key file (a wrong path, a device), and is refused before it is read into memory.
pub const MAX_KEY_FILE: u64 = 4096;
/// Hashed before the key for its id: an id computed the same way for another purpose (the
/// master key's fingerprint is a bare SHA-256) never matches this one.
const KEY_ID_LABEL: &[u8] = b"trailhub archive key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the archive key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the archive key file {path} is larger than {MAX_KEY_FILE} bytes: not a key file")]
    TooLarge { path: String },
    #[error("the archive key file {path} must hold 32 bytes written as 64 hex digits or base64")]
    Malformed { path: String },
    #[error("the archive key file {path} exists: it is not overwritten (segments encrypted with it would no longer open)")]
    Exists { path: String },
    #[error("cannot write the archive key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The key that encrypts archive segments. Debug shows its id only; its bytes are wiped on drop.
pub struct ArchiveKey {
    bytes: [u8; 32],
}

impl Drop for ArchiveKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl std::fmt::Debug for ArchiveKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveKey(<redacted>, id {})", self.key_id())
    }
}

impl ArchiveKey {
    pub fn from_bytes(bytes: [u8; 32]) -> ArchiveKey {
        ArchiveKey { bytes }
    }

    /// The key in `path`: 32 bytes as 64 hex digits or base64, surrounding whitespace allowed.
    pub fn load(path: &Path) -> Result<ArchiveKey, KeyError> {
        let shown = || path.display().to_string();
        let read_error = |source| KeyError::Read {
            path: shown(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let size = file.metadata().map_err(read_error)?.len();
        if size > MAX_KEY_FILE {
            return Err(KeyError::TooLarge { path: shown() });
        }
        // the length of a special file is not its content's: the read is bounded too
        let mut text = Zeroizing::new(Vec::new());
        file.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut text)
            .map_err(read_error)?;
        if text.len() as u64 > MAX_KEY_FILE {
            return Err(KeyError::TooLarge { path: shown() });
        }
        decode_key(&text)
            .map(ArchiveKey::from_bytes)
            .ok_or_else(|| KeyError::Malformed { path: shown() })
    }

    /// A new key from the OS random source, written to `path` as hex (mode 0600, synced). An
    /// existing file is never replaced.
    pub fn generate_to(path: &Path) -> Result<ArchiveKey, KeyError> {
        let shown = || path.display().to_string();
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        let key = ArchiveKey::from_bytes(bytes);
        bytes.zeroize();
        let mut text = Zeroizing::new(hex::encode(key.bytes));
        text.push('\n');
        write_new_private(path, text.as_bytes()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists { path: shown() }
            } else {
                KeyError::Write {
                    path: shown(),
                    source: e,
                }
            }
        })?;
        Ok(key)
    }

    /// The first 8 bytes of SHA-256("trailhub archive key" ‖ key), hex: names the key in
    /// segments and messages without giving it away.
    pub fn key_id(&self) -> String {
        hex::encode(self.key_id_bytes())
    }

    /// [`ArchiveKey::key_id`] as the bytes kept in a segment's envelope.
    pub fn key_id_bytes(&self) -> [u8; KEY_ID_LEN] {
        let digest = sha2::Sha256::new()
            .chain_update(KEY_ID_LABEL)
            .chain_update(self.bytes)
            .finalize();
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        id
    }

    /// The cipher under this key (which wipes its copy of the key on drop).
    pub(super) fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.bytes).into())
    }
}

fn decode_key(text: &[u8]) -> Option<[u8; 32]> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let text = std::str::from_utf8(text).ok()?.trim();
    let mut key = [0u8; 32];
    if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode_to_slice(text, &mut key).ok()?;
        return Some(key);
    }
    let decoded = Zeroizing::new(
        STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE.decode(text))
            .or_else(|_| STANDARD_NO_PAD.decode(text))
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .ok()?,
    );
    if decoded.len() != key.len() {
        return None;
    }
    key.copy_from_slice(&decoded);
    Some(key)
}

/// Creates `path` (failing if it exists) readable by its owner only, writes `bytes`, and syncs
/// the file and its directory, so that a key reported written survives a crash.
fn write_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_reads_as_hex_or_base64_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let hex_key = write(
            "hex",
            format!("  {}\n\n", hex::encode([7u8; 32])).as_bytes(),
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        let b64_key = write("b64", format!("{b64}\n").as_bytes());
        let a = ArchiveKey::load(&hex_key).expect("hex");
        let b = ArchiveKey::load(&b64_key).expect("base64");
        assert_eq!(a.key_id(), b.key_id());
        assert_eq!(a.key_id().len(), 16);
        assert_ne!(a.key_id(), ArchiveKey::from_bytes([8; 32]).key_id());

        for (name, text) in [
            ("short", hex::encode([7u8; 31]).into_bytes()),
            (
                "long",
                base64::engine::general_purpose::STANDARD
                    .encode([7u8; 33])
                    .into_bytes(),
            ),
            ("junk", b"not a key at all".to_vec()),
            ("empty", Vec::new()),
            ("binary", vec![0xff; 32]),
        ] {
            let err = ArchiveKey::load(&write(name, &text)).expect_err(name);
            assert!(matches!(err, KeyError::Malformed { .. }), "{name}: {err}");
        }
        let big = write("big", &vec![b'a'; MAX_KEY_FILE as usize + 1]);
        assert!(matches!(
            ArchiveKey::load(&big),
            Err(KeyError::TooLarge { .. })
        ));
        let missing = ArchiveKey::load(&dir.path().join("missing")).expect_err("missing");
        assert!(missing.to_string().contains("missing"), "{missing}");
    }

    #[test]
    fn a_generated_key_is_private_never_overwritten_and_never_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("archive.key");
        let key = ArchiveKey::generate_to(&path).expect("generated");
        let again = ArchiveKey::load(&path).expect("reads back");
        assert_eq!(key.key_id(), again.key_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let before = std::fs::read(&path).expect("read");
        let err = ArchiveKey::generate_to(&path).expect_err("exists");
        assert!(matches!(err, KeyError::Exists { .. }), "{err}");
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "left as it was"
        );

        // the key's text, in either spelling, is in no output
        let text = String::from_utf8(before).expect("utf8");
        let planted = hex::encode(key.bytes);
        assert_eq!(text.trim(), planted);
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.bytes);
        let shown = format!("{key:?} {key:#?} {err} {err:?}");
        assert!(
            !shown.contains(&planted) && !shown.contains(&b64),
            "{shown}"
        );
        assert!(shown.contains(&key.key_id()), "{shown}");
    }
}
