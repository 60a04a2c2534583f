//! Writing the files checkpoints depend on (the signing key, published checkpoints) so that a
//! crash never leaves a half-written one and a second writer never silently replaces one
//!
//! The bytes go to a temporary file in the same directory and are synced; only then does the
//! file take its final name (a hard link, which refuses an existing name, or a rename where
//! replacing is the point), and the directory is synced so that the name survives a crash.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The directory holding `path` (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `path` holding `bytes`, failing with `AlreadyExists` if it exists (never replacing
/// it). `private`: mode 0600, for secrets.
pub(crate) fn create_new(path: &Path, bytes: &[u8], private: bool) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let temp = write_temp(dir, path, bytes, private)?;
    let linked = match std::fs::hard_link(&temp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        // a filesystem without hard links: rename, which replaces, so look first (a writer
        // racing in between is the only case left uncaught)
        Err(_) if path.exists() => Err(std::io::ErrorKind::AlreadyExists.into()),
        Err(_) => std::fs::rename(&temp, path),
    };
    // after a rename the temporary name is gone already
    let _ = std::fs::remove_file(&temp);
    linked?;
    sync_dir(dir)
}

/// Replaces `path` (or creates it) with `bytes` in one step: readers see the old or the new
/// content, never a mix.
pub(crate) fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent_dir(path);
    let temp = write_temp(dir, path, bytes, false)?;
    if let Err(e) = std::fs::rename(&temp, path) {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

/// A synced temporary file beside `path`, named so that listings of published files skip it.
fn write_temp(dir: &Path, path: &Path, bytes: &[u8], private: bool) -> std::io::Result<PathBuf> {
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(|e| std::io::Error::other(e.to_string()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.{}.tmp", hex::encode(nonce)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(&temp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    Ok(temp)
}

/// Makes a new or changed name in `dir` durable.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_new_never_replaces_and_replace_does() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.txt");
        create_new(&path, b"one", false).expect("created");
        let again = create_new(&path, b"two", false).expect_err("exists");
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).expect("read"), b"one");
        replace(&path, b"three").expect("replaced");
        assert_eq!(std::fs::read(&path).expect("read"), b"three");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["a.txt"], "no temporary file is left behind");
    }
}
