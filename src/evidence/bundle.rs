//! Evidence bundles: events exported with what proves them, checkable offline with nothing but
//! the hub's public key (`trailhub verify --export FILE --key VKEY`, or a script per
//! docs/INTEGRITY.md).
//!
//! A bundle is NDJSON. The first line is the header: the format, the log's origin and the
//! signed checkpoint every proof is against. Each next line is one event: its leaf index, its
//! inclusion proof (hex hashes, RFC 9162 order), and the event's JSON **as a string**, so that
//! the exact bytes the leaf hash covers survive any JSON tooling on the way.
//!
//! ```text
//! {"trailhub_bundle":1,"origin":"trailhub/…","tree_size":377,"checkpoint":"trailhub/…\n377\n…"}
//! {"leaf_index":149,"proof":["9f…","03…"],"event":"{\"id\":\"0000000000000096\",…}"}
//! ```

use std::io::BufRead;

use serde::{Deserialize, Serialize};

use super::checkpoint::Checkpoint;
use super::merkle::{leaf_hash, verify_inclusion, Hash};
use super::note::NoteVerifier;

/// The bundle format this code writes and reads.
pub const BUNDLE_FORMAT: u32 = 1;
/// Longest line read from a bundle (an event with its proof).
pub const MAX_BUNDLE_LINE: usize = 16 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleHeader {
    pub trailhub_bundle: u32,
    pub origin: String,
    pub tree_size: u64,
    /// The signed checkpoint note every proof of the bundle is against.
    pub checkpoint: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BundleEvent {
    pub leaf_index: u64,
    pub proof: Vec<String>,
    /// The event's JSON, exactly the bytes its leaf hash covers.
    pub event: String,
}

impl BundleEvent {
    pub fn new(leaf_index: u64, proof: &[Hash], event_json: &[u8]) -> BundleEvent {
        BundleEvent {
            leaf_index,
            proof: proof.iter().map(hex::encode).collect(),
            event: String::from_utf8_lossy(event_json).into_owned(),
        }
    }
}

/// What a bundle proved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleReport {
    pub origin: String,
    pub tree_size: u64,
    pub events: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("reading the bundle: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error("the bundle is empty")]
    Empty,
}

fn bad(line: u64, reason: impl Into<String>) -> BundleError {
    BundleError::Line {
        line,
        reason: reason.into(),
    }
}

/// Reads one line of at most `MAX_BUNDLE_LINE` bytes; `None` at the end.
fn next_line(reader: &mut impl BufRead, line_no: u64) -> Result<Option<Vec<u8>>, BundleError> {
    use std::io::Read;
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(MAX_BUNDLE_LINE as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > MAX_BUNDLE_LINE {
        return Err(bad(line_no, format!("longer than {MAX_BUNDLE_LINE} bytes")));
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    }
    Ok(Some(line))
}

/// Checks a bundle: the checkpoint signed by `key` (and of its origin), then every event's
/// inclusion proof from its own bytes to the signed root. Fails at the first line that does not
/// verify.
pub fn verify_bundle(
    reader: impl BufRead,
    key: &NoteVerifier,
) -> Result<BundleReport, BundleError> {
    let mut bundle = BundleReader::open(reader, key)?;
    let mut events = 0;
    while bundle.next_event()?.is_some() {
        events += 1;
    }
    Ok(BundleReport {
        origin: bundle.checkpoint.origin().to_string(),
        tree_size: bundle.checkpoint.size(),
        events,
    })
}

/// One event of a bundle whose proof checked: its leaf index and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEvent {
    pub leaf_index: u64,
    pub event_bytes: Vec<u8>,
}

/// A bundle read line by line, each line checked as it is read: the one place the checks of a
/// bundle are written, for `verify_bundle` and for whoever needs the events themselves (an
/// archive restore), holding one event at a time.
pub struct BundleReader<R> {
    reader: R,
    header: BundleHeader,
    checkpoint: Checkpoint,
    line_no: u64,
    /// set at the first error: a reader does not go on past a line that failed
    failed: bool,
}

impl<R: BufRead> BundleReader<R> {
    /// Reads the header and checks its checkpoint against `key`; no event is read yet.
    pub fn open(mut reader: R, key: &NoteVerifier) -> Result<Self, BundleError> {
        let header = next_line(&mut reader, 1)?.ok_or(BundleError::Empty)?;
        let header: BundleHeader = serde_json::from_slice(&header)
            .map_err(|e| bad(1, format!("not a bundle header: {e}")))?;
        if header.trailhub_bundle != BUNDLE_FORMAT {
            return Err(bad(
                1,
                format!(
                    "bundle format {} is not {BUNDLE_FORMAT}",
                    header.trailhub_bundle
                ),
            ));
        }
        let checkpoint = Checkpoint::open(
            header.checkpoint.as_bytes(),
            key.name(),
            std::slice::from_ref(key),
        )
        .map_err(|e| {
            bad(
                1,
                format!("the checkpoint does not verify with the key: {e}"),
            )
        })?;
        if checkpoint.size() != header.tree_size || checkpoint.origin() != header.origin {
            return Err(bad(1, "the header does not match its checkpoint"));
        }
        Ok(BundleReader {
            reader,
            header,
            checkpoint,
            line_no: 1,
            failed: false,
        })
    }

    pub fn header(&self) -> &BundleHeader {
        &self.header
    }

    /// The reader the lines come from.
    pub fn get_ref(&self) -> &R {
        &self.reader
    }

    /// The signed checkpoint every proof is checked against.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The line number of the event last returned (1 before the first).
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// The next event, its proof checked; `None` at the end. Blank lines are skipped.
    pub fn next_event(&mut self) -> Result<Option<VerifiedEvent>, BundleError> {
        if self.failed {
            return Ok(None);
        }
        let result = self.read_event();
        self.failed = result.is_err();
        result
    }

    fn read_event(&mut self) -> Result<Option<VerifiedEvent>, BundleError> {
        loop {
            let Some(line) = next_line(&mut self.reader, self.line_no + 1)? else {
                return Ok(None);
            };
            self.line_no += 1;
            if line.is_empty() {
                continue;
            }
            return self.check_event(&line).map(Some);
        }
    }

    fn check_event(&self, line: &[u8]) -> Result<VerifiedEvent, BundleError> {
        let line_no = self.line_no;
        let entry: BundleEvent = serde_json::from_slice(line)
            .map_err(|e| bad(line_no, format!("not a bundle event: {e}")))?;
        let proof = entry
            .proof
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .and_then(|b| Hash::try_from(b.as_slice()).ok())
            })
            .collect::<Option<Vec<Hash>>>()
            .ok_or_else(|| bad(line_no, "a proof hash is not 32 bytes of hex"))?;
        verify_inclusion(
            &leaf_hash(entry.event.as_bytes()),
            entry.leaf_index,
            self.checkpoint.size(),
            &proof,
            self.checkpoint.root(),
        )
        .map_err(|e| {
            bad(
                line_no,
                format!(
                    "the event at leaf {} is not in the signed log: {e}",
                    entry.leaf_index
                ),
            )
        })?;
        Ok(VerifiedEvent {
            leaf_index: entry.leaf_index,
            event_bytes: entry.event.into_bytes(),
        })
    }
}

impl<R: BufRead> Iterator for BundleReader<R> {
    type Item = Result<VerifiedEvent, BundleError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}

/// Signed bundles of made-up events, for the tests of this module and of the archive.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::evidence::note::NoteSigner;
    use crate::evidence::proof::{inclusion_proof, MemoryTree};

    /// A log of `events`, a checkpoint of it signed by `signer`, and the bundle lines of the
    /// leaves `pick` names (in that order).
    pub(crate) fn bundle_parts(
        signer: &NoteSigner,
        events: &[String],
        pick: impl IntoIterator<Item = usize>,
    ) -> (BundleHeader, Vec<BundleEvent>) {
        let mut tree = MemoryTree::new();
        for e in events {
            tree.push(leaf_hash(e.as_bytes())).expect("push");
        }
        let checkpoint = Checkpoint::new(signer.name(), tree.size(), tree.root())
            .expect("checkpoint")
            .sign(signer)
            .expect("sign");
        let header = BundleHeader {
            trailhub_bundle: BUNDLE_FORMAT,
            origin: signer.name().into(),
            tree_size: tree.size(),
            checkpoint: checkpoint.to_string(),
        };
        let lines = pick
            .into_iter()
            .map(|i| {
                let proof = inclusion_proof(&tree, i as u64, tree.size()).expect("proof");
                BundleEvent::new(i as u64, &proof, events[i].as_bytes())
            })
            .collect();
        (header, lines)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::bundle_parts;
    use super::*;
    use crate::evidence::note::NoteSigner;

    fn bundle(signer: &NoteSigner, events: &[String]) -> Vec<u8> {
        let (header, lines) = bundle_parts(signer, events, (0..events.len()).rev().step_by(2));
        let mut out = serde_json::to_vec(&header).expect("json");
        out.push(b'\n');
        for line in &lines {
            out.extend(serde_json::to_vec(line).expect("json"));
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn a_bundle_verifies_offline_and_fails_after_any_edit() {
        let signer = NoteSigner::generate("example.com/log").expect("key");
        let events: Vec<String> = (0..13)
            .map(|i| format!(r#"{{"id":"{i:016x}","actor":{{"id":"u{i}"}},"note":"é\"\\n"}}"#))
            .collect();
        let good = bundle(&signer, &events);
        let report = verify_bundle(good.as_slice(), &signer.verifier()).expect("verifies");
        assert_eq!(report.events, 7);
        assert_eq!(report.tree_size, 13);

        // every single-byte edit of the content fails (skipping edits JSON re-reads the same)
        let text = String::from_utf8(good.clone()).expect("utf8");
        let second_line = text.find('\n').expect("header") + 1;
        for at in (0..good.len()).step_by(7) {
            let mut edited = good.clone();
            edited[at] ^= 0x01;
            if edited[at] == b'\n' || good[at] == b'\n' {
                continue;
            }
            let result = verify_bundle(edited.as_slice(), &signer.verifier());
            assert!(
                result.is_err(),
                "edit at {at} (second line at {second_line}) passed"
            );
        }
        // another key does not vouch for it
        let other = NoteSigner::generate("example.com/log").expect("key");
        assert!(verify_bundle(good.as_slice(), &other.verifier()).is_err());
        assert!(matches!(
            verify_bundle(&b""[..], &signer.verifier()),
            Err(BundleError::Empty)
        ));
    }
}
