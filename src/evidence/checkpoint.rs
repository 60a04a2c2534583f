//! Signed checkpoints: the log's tree head as a C2SP tlog-checkpoint body (origin, tree size,
//! base64 root hash, optional extension lines), carried in a signed note (`note.rs`).
//!
//! A checkpoint is what the hub hands out and what auditors keep: with it, inclusion and
//! consistency proofs show that an event is in the log and that the log only grew. Checkpoints
//! come back from outside (an auditor's saved copy), so reading one is strict and bounded.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::merkle::{Hash, HASH_LEN};
use super::note::{Note, NoteError, NoteSigner, NoteVerifier};

/// The longest checkpoint origin or extension line accepted.
pub const MAX_CHECKPOINT_LINE_BYTES: usize = 1024;
/// The most extension lines accepted in a checkpoint.
pub const MAX_EXTENSION_LINES: usize = 16;

/// Why a checkpoint was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("bad checkpoint: {0}")]
    Bad(&'static str),
    #[error("the checkpoint is for origin {got:?}, not {expected:?}")]
    WrongOrigin { expected: String, got: String },
}

/// A tree head as C2SP tlog-checkpoint writes it: the log's origin, its size and root hash,
/// and optional extension lines (which C2SP advises against; kept for reading others').
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

/// Checks a checkpoint line: non-empty, bounded, one line.
fn check_line(line: &str, what: &'static str) -> Result<(), CheckpointError> {
    if line.is_empty()
        || line.len() > MAX_CHECKPOINT_LINE_BYTES
        || line.chars().any(char::is_control)
    {
        return Err(CheckpointError::Bad(what));
    }
    Ok(())
}

impl Checkpoint {
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, CheckpointError> {
        check_line(origin, "the origin is empty, too long, or not one line")?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        })
    }

    /// Adds an extension line after the root hash.
    pub fn with_extension(mut self, line: &str) -> Result<Self, CheckpointError> {
        check_line(
            line,
            "an extension line is empty, too long, or not one line",
        )?;
        if self.extensions.len() == MAX_EXTENSION_LINES {
            return Err(CheckpointError::Bad("it has too many extension lines"));
        }
        self.extensions.push(line.to_string());
        Ok(self)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The note text: origin, size, base64 root hash and extension lines, each ending in a
    /// newline.
    pub fn text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Reads a checkpoint from a note's text (verified first, see [`Checkpoint::open`]).
    pub fn from_text(text: &str) -> Result<Self, CheckpointError> {
        let bad = CheckpointError::Bad;
        let body = text
            .strip_suffix('\n')
            .ok_or(bad("the text does not end with a newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad("it has fewer than three lines"));
        };
        let mut checkpoint = Checkpoint::new(origin, parse_size(size)?, parse_root(root)?)?;
        for line in lines {
            checkpoint = checkpoint.with_extension(line)?;
        }
        Ok(checkpoint)
    }

    /// A note of this checkpoint signed by `signer`, whose name should be the origin.
    pub fn sign(&self, signer: &NoteSigner) -> Result<Note, CheckpointError> {
        let mut note = Note::new(self.text())?;
        note.sign(signer);
        Ok(note)
    }

    /// Reads a signed checkpoint from outside: the note must be well formed, signed by a key
    /// in `trusted` (see [`Note::verify`]), and be for `origin`.
    pub fn open(
        input: &[u8],
        origin: &str,
        trusted: &[NoteVerifier],
    ) -> Result<Self, CheckpointError> {
        let note = Note::parse(input)?;
        note.verify(trusted)?;
        let checkpoint = Checkpoint::from_text(note.text())?;
        if checkpoint.origin != origin {
            let (expected, got) = (origin.to_string(), checkpoint.origin);
            return Err(CheckpointError::WrongOrigin { expected, got });
        }
        Ok(checkpoint)
    }
}

/// A tree size: ASCII decimal digits, no leading zero but for 0 itself, fitting a u64.
fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let bad = CheckpointError::Bad;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the tree size is not a decimal number"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(bad("the tree size has a leading zero"));
    }
    s.parse()
        .map_err(|_| bad("the tree size does not fit in 64 bits"))
}

/// A root hash: the standard base64 of exactly 32 bytes.
fn parse_root(s: &str) -> Result<Hash, CheckpointError> {
    let bad = CheckpointError::Bad;
    if s.len() != HASH_LEN.div_ceil(3) * 4 {
        return Err(bad("the root hash is not 44 characters of base64"));
    }
    let bytes = STANDARD
        .decode(s)
        .map_err(|_| bad("the root hash is not standard base64"))?;
    bytes
        .try_into()
        .map_err(|_| bad("the root hash is not 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "trailhub.example/log";

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::from_seed(name, &[seed; 32]).expect("valid name")
    }

    fn signed_checkpoint() -> (Checkpoint, String, NoteVerifier) {
        let key = signer(ORIGIN, 7);
        let checkpoint = Checkpoint::new(ORIGIN, 1234, [0xab; 32]).expect("valid origin");
        let note = checkpoint.sign(&key).expect("valid text").to_string();
        (checkpoint, note, key.verifier())
    }

    #[test]
    fn a_checkpoint_round_trips_and_has_the_c2sp_form() {
        let (checkpoint, note, verifier) = signed_checkpoint();
        let root_b64 = STANDARD.encode([0xab; 32]);
        let text = format!("{ORIGIN}\n1234\n{root_b64}\n");
        assert!(
            note.starts_with(&format!("{text}\n\u{2014} {ORIGIN} ")),
            "{note}"
        );
        assert!(note.ends_with('\n') && note.lines().count() == 5, "{note}");
        let opened = Checkpoint::open(note.as_bytes(), ORIGIN, std::slice::from_ref(&verifier));
        assert_eq!(opened, Ok(checkpoint));
        // the signature line carries the key id of the vkey
        let parsed = Note::parse(note.as_bytes()).expect("well formed");
        assert_eq!(parsed.signatures()[0].key_id, verifier.key_id());
        assert_eq!(parsed.signatures()[0].signature.len(), 64);

        let with_ext = Checkpoint::new(ORIGIN, 0, [0; 32])
            .and_then(|c| c.with_extension("extension one"))
            .and_then(|c| c.with_extension("two"))
            .expect("valid lines");
        let key = signer(ORIGIN, 7);
        let note = with_ext.sign(&key).expect("valid").to_string();
        assert!(note.contains("\nextension one\ntwo\n\n"));
        let opened = Checkpoint::open(note.as_bytes(), ORIGIN, &[key.verifier()]);
        assert_eq!(opened.as_ref().map(|c| c.extensions().len()), Ok(2));
        assert_eq!(opened, Ok(with_ext));
    }

    #[test]
    fn a_wrong_key_a_changed_body_or_another_origin_is_refused() {
        let (_, note, verifier) = signed_checkpoint();
        // same name, another key: its id differs, so the signature is not by a trusted key
        let other = signer(ORIGIN, 8).verifier();
        assert_ne!(other.key_id(), verifier.key_id());
        let err = Checkpoint::open(note.as_bytes(), ORIGIN, std::slice::from_ref(&other));
        assert_eq!(err, Err(CheckpointError::Note(NoteError::Unverified)));
        assert_eq!(
            Checkpoint::open(note.as_bytes(), ORIGIN, &[]),
            Err(CheckpointError::Note(NoteError::Unverified))
        );
        // a changed size, root or origin breaks the trusted key's signature
        for (from, to) in [
            ("\n1234\n", "\n1235\n"),
            ("q6ur", "q6uq"),
            ("example", "exbmple"),
        ] {
            let changed = note.replacen(from, to, 1);
            assert_ne!(changed, note);
            let err = Checkpoint::open(changed.as_bytes(), ORIGIN, std::slice::from_ref(&verifier));
            assert!(
                matches!(
                    err,
                    Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
                ),
                "{from}: {err:?}"
            );
        }
        // a changed signature too
        let sig_at = note.rfind(' ').expect("signature line") + 10;
        let mut bytes = note.clone().into_bytes();
        bytes[sig_at] = if bytes[sig_at] == b'A' { b'B' } else { b'A' };
        let err = Checkpoint::open(&bytes, ORIGIN, std::slice::from_ref(&verifier));
        assert!(
            matches!(
                err,
                Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
            ),
            "{err:?}"
        );
        // a good note, but for another log
        let err = Checkpoint::open(
            note.as_bytes(),
            "other.example/log",
            std::slice::from_ref(&verifier),
        );
        assert!(matches!(err, Err(CheckpointError::WrongOrigin { .. })));
    }

    #[test]
    fn unknown_signatures_are_ignored_and_cosigners_are_reported() {
        let (log, witness) = (signer(ORIGIN, 1), signer("witness.example/w1", 2));
        let mut note = Checkpoint::new(ORIGIN, 5, [1; 32])
            .and_then(|c| c.sign(&log))
            .expect("valid");
        note.sign(&witness);
        note.sign(&witness); // re-signing replaces, not duplicates
        assert_eq!(note.signatures().len(), 2);
        let wire = note.to_string();
        let trusted = [log.verifier()];
        assert!(Checkpoint::open(wire.as_bytes(), ORIGIN, &trusted).is_ok());
        let both = [witness.verifier(), log.verifier()];
        let parsed = Note::parse(wire.as_bytes()).expect("well formed");
        assert_eq!(parsed.verify(&both).map(|v| v.len()), Ok(2));
    }

    #[test]
    fn malformed_checkpoint_bodies_are_refused() {
        let root = STANDARD.encode([5u8; 32]);
        let body = |size: &str, root: &str| Checkpoint::from_text(&format!("o\n{size}\n{root}\n"));
        assert_eq!(body("0", &root).map(|c| c.size()), Ok(0));
        assert_eq!(
            body("18446744073709551615", &root).map(|c| c.size()),
            Ok(u64::MAX)
        );
        let refused = |r: Result<Checkpoint, CheckpointError>| match r {
            Err(CheckpointError::Bad(reason)) => reason,
            other => panic!("{other:?}"),
        };
        assert!(refused(body("01", &root)).contains("leading zero"));
        assert!(refused(body("", &root)).contains("decimal"));
        assert!(refused(body("-1", &root)).contains("decimal"));
        assert!(refused(body("+1", &root)).contains("decimal"));
        assert!(refused(body("1 ", &root)).contains("decimal"));
        assert!(refused(body("18446744073709551616", &root)).contains("64 bits"));
        assert!(refused(body("1", &root[1..])).contains("44"));
        assert!(refused(body("1", &STANDARD.encode([5u8; 33]))).contains("32 bytes"));
        assert!(refused(body("1", &format!("{}!", &root[..43]))).contains("base64"));
        assert!(refused(Checkpoint::from_text("o\n1\n")).contains("three"));
        assert!(refused(Checkpoint::from_text(&format!("\n1\n{root}\n"))).contains("origin"));
        assert!(refused(Checkpoint::from_text(&format!("o\n1\n{root}"))).contains("newline"));
        let blank_ext = format!("o\n1\n{root}\n\next\n");
        assert!(refused(Checkpoint::from_text(&blank_ext)).contains("extension"));
        let too_many = format!("o\n1\n{root}\n{}", "e\n".repeat(MAX_EXTENSION_LINES + 1));
        assert!(refused(Checkpoint::from_text(&too_many)).contains("too many"));
        let long = "o".repeat(MAX_CHECKPOINT_LINE_BYTES + 1);
        assert!(Checkpoint::new(&long, 1, [0; 32]).is_err());
        assert!(Checkpoint::new("a\nb", 1, [0; 32]).is_err());
    }
}
