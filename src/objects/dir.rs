//! The directory store: each object a file under one root, its key the relative path
//!
//! A reader (or a restore after a crash) must never see half an object, so a put writes a
//! temporary file beside the final one, syncs it, renames it into place and syncs the directory:
//! the object is the old one or the new one, never a torn mix. Temporary names contain `#`,
//! which no key may, so a listing skips them (and any other file that is not a valid key).
//!
//! The file system calls are blocking, so each operation runs on tokio's blocking pool.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{check_path, ObjectInfo, ObjectKey, ObjectsError};

/// Distinguishes the temporary files of concurrent puts in one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone)]
pub struct DirStore {
    root: Arc<PathBuf>,
}

impl DirStore {
    /// Uses `root` (created if missing) as the store's root.
    pub fn open(root: &Path) -> Result<DirStore, ObjectsError> {
        fs::create_dir_all(root).map_err(|e| {
            ObjectsError::Config(format!(
                "cannot create the directory {}: {e}",
                root.display()
            ))
        })?;
        Ok(DirStore {
            root: Arc::new(root.to_path_buf()),
        })
    }

    pub fn describe(&self) -> String {
        format!("dir:{}", self.root.display())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn io_error(&self, op: &'static str, key: &str) -> impl FnOnce(std::io::Error) -> ObjectsError {
        let target = self.describe();
        let key = key.to_string();
        move |source| ObjectsError::Io {
            target,
            op,
            key,
            source,
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        key: &str,
        work: impl FnOnce(&Path) -> Result<T, ObjectsError> + Send + 'static,
    ) -> Result<T, ObjectsError> {
        let root = Arc::clone(&self.root);
        let failed = self.io_error(op, key);
        tokio::task::spawn_blocking(move || work(&root))
            .await
            .map_err(|e| failed(std::io::Error::other(e.to_string())))?
    }

    pub async fn put(&self, key: &ObjectKey, bytes: Vec<u8>) -> Result<(), ObjectsError> {
        let failed = self.io_error("put", key.as_str());
        let rel = key.as_str().to_string();
        self.blocking("put", key.as_str(), move |root| {
            write_atomically(root, &rel, &bytes).map_err(failed)
        })
        .await
    }

    pub async fn get(&self, key: &ObjectKey, max_bytes: u64) -> Result<Vec<u8>, ObjectsError> {
        let target = self.describe();
        let failed = self.io_error("get", key.as_str());
        let rel = key.as_str().to_string();
        self.blocking("get", key.as_str(), move |root| {
            let path = root.join(&rel);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(ObjectsError::NotFound { target, key: rel })
                }
                Err(e) => return Err(failed(e)),
            };
            let too_large = || ObjectsError::TooLarge {
                target: target.clone(),
                key: rel.clone(),
                max: max_bytes,
            };
            let len = file.metadata().map(|m| m.len()).unwrap_or(0);
            if len > max_bytes {
                return Err(too_large());
            }
            // the length may change under us: read at most one byte past the bound to tell
            let mut bytes = Vec::with_capacity(len as usize);
            file.take(max_bytes.saturating_add(1))
                .read_to_end(&mut bytes)
                .map_err(failed)?;
            if bytes.len() as u64 > max_bytes {
                return Err(too_large());
            }
            Ok(bytes)
        })
        .await
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjectsError> {
        let failed = self.io_error("list", prefix);
        let prefix = prefix.to_string();
        self.blocking("list", &prefix.clone(), move |root| {
            // start at the deepest directory the prefix names, not at the root
            let start = match prefix.rfind('/') {
                Some(at) => &prefix[..at],
                None => "",
            };
            let mut out = Vec::new();
            walk(root, start, &mut out).map_err(failed)?;
            out.retain(|o| o.key.starts_with(&prefix));
            out.sort_by(|a, b| a.key.cmp(&b.key));
            Ok(out)
        })
        .await
    }

    pub async fn delete(&self, key: &ObjectKey) -> Result<(), ObjectsError> {
        let failed = self.io_error("delete", key.as_str());
        let rel = key.as_str().to_string();
        self.blocking("delete", key.as_str(), move |root| {
            let path = root.join(&rel);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(failed(e)),
            }
            if let Some(parent) = path.parent() {
                sync_dir(parent).map_err(failed)?;
            }
            Ok(())
        })
        .await
    }
}

/// Temp file beside the target, fsync, rename over it, fsync the directory. Directories the key
/// needs are created, and the directories that gained an entry are synced too.
fn write_atomically(root: &Path, rel: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = root.join(rel);
    let parent = path.parent().unwrap_or(root).to_path_buf();
    let created_dirs = !parent.is_dir();
    if created_dirs {
        fs::create_dir_all(&parent)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = parent.join(format!(
        "{name}.#tmp.{}.{}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, &path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(&parent)?;
    if created_dirs {
        // each new directory's entry lives in its parent: sync up to the root
        let mut dir = parent.as_path();
        while dir != root {
            match dir.parent() {
                Some(up) => {
                    sync_dir(up)?;
                    dir = up;
                }
                None => break,
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // directories cannot be opened for syncing here; the rename itself is what we have
    Ok(())
}

/// Every file under `root/rel` whose path is a valid key, recursively; symlinks are not
/// followed (they could lead out of the root).
fn walk(root: &Path, rel: &str, out: &mut Vec<ObjectInfo>) -> std::io::Result<()> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        // a prefix naming no directory lists nothing, as in S3
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let key = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if check_path(&format!("{key}/"), true).is_ok() {
                walk(root, &key, out)?;
            }
        } else if file_type.is_file() && check_path(&key, false).is_ok() {
            let size = entry.metadata()?.len();
            out.push(ObjectInfo { key, size });
        }
    }
    Ok(())
}
