//! What a job's run works with: its progress and stop flag (`Live`, shared with the API), the
//! test pace, and its files, written partial, hashed, synced and renamed into place

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use sha2::Digest;

use super::record::{Job, Output, Progress};
use super::writer::WriteError;
use super::Jobs;

/// The suffix of a file being written.
const PARTIAL: &str = ".partial";
/// Events between two checks of the test pause.
const PAUSE_EVERY: u64 = 1_000;

/// Why a running job is asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Stop {
    /// Deleted through the API: its record is gone, its partial file is removed.
    Deleted = 1,
    /// The hub is stopping: the job goes back to the queue and runs again at the next start.
    Shutdown = 2,
}

/// A running job's progress and stop flag, shared with the API.
#[derive(Default)]
pub struct Live {
    events: AtomicU64,
    /// `u64::MAX` until the estimate is known.
    estimated: AtomicU64,
    stop: AtomicU8,
}

impl Live {
    pub(super) fn new() -> Live {
        Live {
            events: AtomicU64::new(0),
            estimated: AtomicU64::new(u64::MAX),
            stop: AtomicU8::new(0),
        }
    }

    pub fn progress(&self) -> Progress {
        let estimated = self.estimated.load(Ordering::Relaxed);
        Progress {
            events: self.events.load(Ordering::Relaxed),
            estimated_total: (estimated != u64::MAX).then_some(estimated),
        }
    }

    pub(super) fn cancel(&self, why: Stop) {
        self.stop.store(why as u8, Ordering::SeqCst);
    }

    pub(super) fn stopped(&self) -> Option<Stop> {
        match self.stop.load(Ordering::SeqCst) {
            1 => Some(Stop::Deleted),
            2 => Some(Stop::Shutdown),
            _ => None,
        }
    }
}

/// What a job's run needs: where to write, its progress, the pace of tests.
pub struct RunContext<'a> {
    pub jobs: &'a Jobs,
    pub job: &'a Job,
    pub(super) live: &'a Live,
}

impl RunContext<'_> {
    pub fn store(&self) -> &crate::store::Store {
        self.jobs.store()
    }

    pub fn settings(&self) -> &crate::config::JobSettings {
        self.jobs.settings()
    }

    pub fn set_estimate(&self, total: u64) {
        self.live
            .estimated
            .store(total.min(u64::MAX - 1), Ordering::Relaxed);
    }

    /// After each event: counts it, pauses if tests asked, and says stop when the job was
    /// deleted or the hub is stopping.
    pub fn after_each(&self, events: u64) -> Result<(), String> {
        self.live.events.store(events, Ordering::Relaxed);
        if events % PAUSE_EVERY == 0 && !self.settings().test_pause.is_zero() {
            std::thread::sleep(self.settings().test_pause);
        }
        match self.live.stopped() {
            Some(Stop::Deleted) => Err("the job was deleted".into()),
            Some(Stop::Shutdown) => Err("the hub is stopping".into()),
            None => Ok(()),
        }
    }

    /// Writes the job's file of `format` through `write`: to `<id>.<format>.partial`, hashed as
    /// it goes, synced, then renamed into place (and the directory synced).
    pub fn write_file(
        &self,
        format: &str,
        write: impl FnOnce(&mut dyn Write) -> Result<(), WriteError>,
    ) -> Result<Output, WriteError> {
        let path = self.jobs.file_path(self.job, format);
        let partial = partial_path(&path);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)
            .map_err(|e| WriteError::Failed(format!("cannot create {}: {e}", partial.display())))?;
        let mut out = Hashing {
            inner: std::io::BufWriter::with_capacity(256 * 1024, file),
            hash: sha2::Sha256::new(),
            bytes: 0,
        };
        let written = write(&mut out).and_then(|()| {
            out.flush()?;
            out.inner.get_ref().sync_all()?;
            Ok(())
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &path)?;
        sync_dir(self.jobs.dir());
        Ok(Output {
            format: format.to_string(),
            bytes: out.bytes,
            sha256: hex::encode(out.hash.finalize()),
        })
    }
}

/// A writer that counts and hashes what passes through it.
struct Hashing<W: Write> {
    inner: W,
    hash: sha2::Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(data)?;
        self.hash.update(&data[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub(super) fn partial_path(path: &Path) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(PARTIAL);
    s.into()
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// What a finished run hands back.
pub struct Finished {
    pub outputs: Vec<Output>,
    pub events: u64,
    pub summary: Option<serde_json::Value>,
}

/// Deletes a job's files, finished or partial.
pub(super) fn remove_files(jobs: &Jobs, job: &Job) {
    for format in ["csv", "json", "ndjson", "pdf"] {
        let path = jobs.file_path(job, format);
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(partial_path(&path));
    }
}
