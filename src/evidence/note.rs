//! C2SP signed notes: text followed by signature lines, each naming a key, its 4-byte key id
//! and an Ed25519 signature over the text; and the key formats to publish a verifier key
//! (`vkey`) and to keep a signer key (`skey`) in, as Go's sumdb/note writes them.
//!
//! Checkpoints travel as signed notes, so that other transparency-log tools (sumdb/note,
//! witnesses) can check them without this code. Notes come from outside: parsing is strict
//! and bounded, and anything malformed is refused with the reason, nothing guessed.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroizing;

/// The largest note accepted: room for 16 signatures of nearly 5 kB (post-quantum ones), which
/// C2SP signed-note asks verifiers to accept.
pub const MAX_NOTE_BYTES: usize = 128 * 1024;
/// The most signature lines accepted in a note.
pub const MAX_SIGNATURES: usize = 64;
/// The longest key name accepted.
pub const MAX_KEY_NAME_BYTES: usize = 256;
/// The longest decoded signature (key id included) accepted from any algorithm.
pub const MAX_SIGNATURE_BYTES: usize = 8 * 1024;

/// The C2SP signed-note signature type of Ed25519.
const ED25519_TYPE: u8 = 0x01;
/// Starts every signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// Starts a signer key in Go's sumdb/note text form.
const SKEY_PREFIX: &str = "PRIVATE+KEY+";

/// Why a note or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("the note is {len} bytes, more than the {max} accepted")]
    TooLarge { len: usize, max: usize },
    #[error("the note is not valid UTF-8")]
    NotUtf8,
    #[error("the note has a control character other than newline at byte {at}")]
    ControlCharacter { at: usize },
    #[error("the note text does not end with a newline")]
    NoFinalNewline,
    #[error("no blank line separates the note's text from its signatures")]
    NoBlankLine,
    #[error("the note has no signature lines")]
    NoSignatures,
    #[error("the note has more than {max} signature lines")]
    TooManySignatures { max: usize },
    #[error("signature line {line}: {reason}")]
    BadSignatureLine { line: usize, reason: &'static str },
    #[error("bad key name: {0}")]
    BadKeyName(&'static str),
    #[error("bad verifier key: {0}")]
    BadVerifierKey(&'static str),
    #[error("bad signer key: {0}")]
    BadSignerKey(&'static str),
    #[error("the signature by {name:?} (key id {key_id:08x}) does not verify")]
    InvalidSignature { name: String, key_id: u32 },
    #[error("the note is not signed by any trusted key")]
    Unverified,
    #[error("the OS random source failed: {0}")]
    Random(String),
}

/// The key id of an Ed25519 key: the first 4 bytes, big-endian, of
/// SHA-256(name || 0x0A || 0x01 || public key), as C2SP signed-note recommends.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// Checks a key name: non-empty, bounded, and without spaces, plus signs or control characters.
/// Public so that settings naming a key (`log_origin`) are refused when read, not at first use.
pub fn check_key_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() {
        return Err(NoteError::BadKeyName("it is empty"));
    }
    if name.len() > MAX_KEY_NAME_BYTES {
        return Err(NoteError::BadKeyName("it is longer than 256 bytes"));
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(NoteError::BadKeyName(
            "it has a space, a plus sign or a control character",
        ));
    }
    Ok(())
}

/// Checks note text: bounded, no control characters but newline, ending in a newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.len() > MAX_NOTE_BYTES {
        let (len, max) = (text.len(), MAX_NOTE_BYTES);
        return Err(NoteError::TooLarge { len, max });
    }
    if let Some(at) = text.bytes().position(|b| b < 0x20 && b != b'\n') {
        return Err(NoteError::ControlCharacter { at });
    }
    if !text.ends_with('\n') {
        return Err(NoteError::NoFinalNewline);
    }
    Ok(())
}

/// One signature line: who signed, with which key id, and the signature bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    pub signature: Vec<u8>,
}

impl fmt::Display for NoteSignature {
    /// The signature line, without its newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut blob = self.key_id.to_be_bytes().to_vec();
        blob.extend_from_slice(&self.signature);
        write!(
            f,
            "{SIGNATURE_PREFIX}{} {}",
            self.name,
            STANDARD.encode(blob)
        )
    }
}

/// A signed note: text ending in a newline, a blank line, and one signature line per key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

impl Note {
    /// A note of `text`, not yet signed.
    pub fn new(text: impl Into<String>) -> Result<Self, NoteError> {
        let text = text.into();
        check_text(&text)?;
        Ok(Note {
            text,
            signatures: Vec::new(),
        })
    }

    /// Reads a signed note from outside. Only its form is checked here: call
    /// [`Note::verify`] before believing a word of the text.
    pub fn parse(input: &[u8]) -> Result<Self, NoteError> {
        if input.len() > MAX_NOTE_BYTES {
            let (len, max) = (input.len(), MAX_NOTE_BYTES);
            return Err(NoteError::TooLarge { len, max });
        }
        let s = std::str::from_utf8(input).map_err(|_| NoteError::NotUtf8)?;
        check_text(s)?;
        // the text ends at the last blank line; it may hold blank lines of its own
        let Some(blank) = s.rfind("\n\n") else {
            return Err(NoteError::NoBlankLine);
        };
        let (text, signature_lines) = (&s[..=blank], &s[blank + 2..]);
        let mut signatures = Vec::new();
        // the input ends in a newline, so the last piece is empty and not a line
        let lines = signature_lines.split('\n');
        for (n, line) in lines.take_while(|l| !l.is_empty()).enumerate() {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteError::TooManySignatures {
                    max: MAX_SIGNATURES,
                });
            }
            signatures.push(parse_signature_line(line, n + 1)?);
        }
        if signatures.is_empty() {
            return Err(NoteError::NoSignatures);
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// The signed text, final newline included.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Signs the text with `signer`, replacing an earlier signature by the same key.
    pub fn sign(&mut self, signer: &NoteSigner) {
        let signature = signer.sign(&self.text);
        self.signatures
            .retain(|s| (s.name.as_str(), s.key_id) != (signer.name(), signer.key_id()));
        self.signatures.push(signature);
    }

    /// Checks the signatures by the keys in `trusted`, as C2SP signed-note says: signatures
    /// by other keys are ignored, one by a trusted key that fails refuses the whole note, and
    /// at least one must verify. Returns the keys that signed.
    pub fn verify<'a>(
        &self,
        trusted: &'a [NoteVerifier],
    ) -> Result<Vec<&'a NoteVerifier>, NoteError> {
        let mut signed_by = Vec::new();
        for sig in &self.signatures {
            let Some(key) = trusted
                .iter()
                .find(|k| k.name == sig.name && k.key_id == sig.key_id)
            else {
                continue;
            };
            if !key.verifies(&self.text, &sig.signature) {
                let (name, key_id) = (sig.name.clone(), sig.key_id);
                return Err(NoteError::InvalidSignature { name, key_id });
            }
            if !signed_by.contains(&key) {
                signed_by.push(key);
            }
        }
        if signed_by.is_empty() {
            return Err(NoteError::Unverified);
        }
        Ok(signed_by)
    }
}

impl fmt::Display for Note {
    /// The note as sent: text, blank line, signature lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.text)?;
        for sig in &self.signatures {
            writeln!(f, "{sig}")?;
        }
        Ok(())
    }
}

fn parse_signature_line(line: &str, n: usize) -> Result<NoteSignature, NoteError> {
    let bad = |reason| NoteError::BadSignatureLine { line: n, reason };
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(bad("it does not start with an em dash and a space"))?;
    let (name, blob) = rest.split_once(' ').ok_or(bad(
        "it has no space between the key name and the signature",
    ))?;
    check_key_name(name)
        .map_err(|_| bad("the key name is empty, too long, or has a space or +"))?;
    // base64 of the largest signature, then no decoding of anything bigger
    if blob.len() > MAX_SIGNATURE_BYTES.div_ceil(3) * 4 {
        return Err(bad("the signature is too long"));
    }
    let blob = STANDARD
        .decode(blob)
        .map_err(|_| bad("the signature is not standard base64"))?;
    if blob.len() < 5 {
        return Err(bad("the signature is shorter than a key id and one byte"));
    }
    let (id, signature) = blob.split_at(4);
    Ok(NoteSignature {
        name: name.to_string(),
        key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
        signature: signature.to_vec(),
    })
}

/// Splits `<name>+<8 hex digits>+<base64>` (the base64 may itself hold a `+`).
fn split_key(text: &str) -> Option<(&str, u32, &str)> {
    let (name, rest) = text.split_once('+')?;
    let (hex, b64) = rest.split_once('+')?;
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((name, u32::from_str_radix(hex, 16).ok()?, b64))
}

/// An Ed25519 signing key with its name: what the hub signs checkpoints with. Its `Debug`
/// shows the name and key id only.
pub struct NoteSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl NoteSigner {
    /// A new key from the OS random source.
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| NoteError::Random(e.to_string()))?;
        Self::from_seed(name, &seed)
    }

    /// The key of a 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(NoteSigner {
            name: name.to_string(),
            key_id,
            key,
        })
    }

    /// Reads a signer key in Go's sumdb/note form,
    /// `PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>`.
    pub fn from_skey(skey: &str) -> Result<Self, NoteError> {
        let bad = NoteError::BadSignerKey;
        if skey.len() > SKEY_PREFIX.len() + MAX_KEY_NAME_BYTES + 64 {
            return Err(bad("it is too long"));
        }
        let rest = skey
            .strip_prefix(SKEY_PREFIX)
            .ok_or(bad("it does not start PRIVATE+KEY+"))?;
        let (name, id, b64) = split_key(rest).ok_or(bad("it is not name+keyid+key"))?;
        let bytes = Zeroizing::new(
            STANDARD
                .decode(b64)
                .map_err(|_| bad("the key is not base64"))?,
        );
        let (kind, seed) = bytes.split_first().ok_or(bad("the key is empty"))?;
        if *kind != ED25519_TYPE {
            return Err(bad("the key is not an Ed25519 key"));
        }
        let seed: &[u8; 32] = seed
            .try_into()
            .map_err(|_| bad("the key is not 32 bytes"))?;
        let signer = Self::from_seed(name, seed)?;
        if signer.key_id != id {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(signer)
    }

    /// The key in the form [`NoteSigner::from_skey`] reads. It is the secret: keep it so.
    pub fn skey(&self) -> Zeroizing<String> {
        let mut bytes = Zeroizing::new(vec![ED25519_TYPE]);
        bytes.extend_from_slice(self.key.as_bytes());
        let b64 = Zeroizing::new(STANDARD.encode(&*bytes));
        Zeroizing::new(format!(
            "{SKEY_PREFIX}{}+{:08x}+{}",
            self.name, self.key_id, *b64
        ))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The public half, to publish and to verify with.
    pub fn verifier(&self) -> NoteVerifier {
        let key = self.key.verifying_key();
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key,
        }
    }

    /// The signature line for `text` (which [`Note::new`] has checked).
    fn sign(&self, text: &str) -> NoteSignature {
        let signature = self.key.sign(text.as_bytes()).to_bytes().to_vec();
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature,
        }
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

/// A named Ed25519 public key that signatures are checked with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// The verifier of a name and 32-byte public key.
    pub fn from_public_key(name: &str, public_key: &[u8; 32]) -> Result<Self, NoteError> {
        check_key_name(name)?;
        let bad = NoteError::BadVerifierKey;
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| bad("not an Ed25519 point"))?;
        // a small-order key lets one signature pass for many messages
        if key.is_weak() {
            return Err(bad("the key is of small order"));
        }
        Ok(NoteVerifier {
            name: name.to_string(),
            key_id: key_id(name, public_key),
            key,
        })
    }

    /// Reads a verifier key, `<name>+<hex key id>+<base64(0x01 || public key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self, NoteError> {
        let bad = NoteError::BadVerifierKey;
        if vkey.len() > MAX_KEY_NAME_BYTES + 64 {
            return Err(bad("it is too long"));
        }
        let (name, id, b64) = split_key(vkey).ok_or(bad("it is not name+keyid+key"))?;
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| bad("the key is not base64"))?;
        let (kind, key) = bytes.split_first().ok_or(bad("the key is empty"))?;
        if *kind != ED25519_TYPE {
            return Err(bad("the key is not an Ed25519 key"));
        }
        let key: &[u8; 32] = key.try_into().map_err(|_| bad("the key is not 32 bytes"))?;
        let verifier = Self::from_public_key(name, key)?;
        if verifier.key_id != id {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(verifier)
    }

    /// The key in the form [`NoteVerifier::from_vkey`] reads, for publishing.
    pub fn vkey(&self) -> String {
        let mut bytes = vec![ED25519_TYPE];
        bytes.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(bytes)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Whether `signature` is this key's over `text` (strict RFC 8032 verification).
    fn verifies(&self, text: &str, signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let signature = Signature::from_bytes(&bytes);
        self.key.verify_strict(text.as_bytes(), &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::super::vectors::{GO_NOTE, GO_SKEY, GO_TEXT, GO_VKEY};
    use super::*;

    const NAME: &str = "trailhub.example/log";
    const TEXT: &str = "trailhub.example/log\n1234\nq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n";

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::from_seed(name, &[seed; 32]).expect("valid name")
    }

    /// A note of TEXT signed by the key of seed 7, and its verifier.
    fn signed_note() -> (String, NoteVerifier) {
        let key = signer(NAME, 7);
        let mut note = Note::new(TEXT).expect("valid text");
        note.sign(&key);
        (note.to_string(), key.verifier())
    }

    #[test]
    fn the_go_sumdb_note_example_is_reproduced_byte_for_byte() {
        let key = NoteSigner::from_skey(GO_SKEY).expect("the published signer key");
        assert_eq!(key.name(), "PeterNeumann");
        assert_eq!(key.key_id(), 0xc74f20a3);
        assert_eq!(key.verifier().vkey(), GO_VKEY);
        assert_eq!(*key.skey(), GO_SKEY);
        let mut note = Note::new(GO_TEXT).expect("valid text");
        note.sign(&key);
        assert_eq!(note.to_string(), GO_NOTE);

        let verifier = NoteVerifier::from_vkey(GO_VKEY).expect("the published verifier key");
        assert_eq!(
            verifier.key_id(),
            key_id("PeterNeumann", &verifier.public_key())
        );
        let parsed = Note::parse(GO_NOTE.as_bytes()).expect("well formed");
        assert_eq!(parsed.text(), GO_TEXT);
        let trusted = [verifier];
        assert_eq!(parsed.verify(&trusted), Ok(vec![&trusted[0]]));
        let altered = GO_NOTE.replace("cryptography", "cryptographY");
        let altered = Note::parse(altered.as_bytes()).expect("still well formed");
        assert!(matches!(
            altered.verify(&trusted),
            Err(NoteError::InvalidSignature { .. })
        ));
    }

    #[test]
    fn malformed_notes_are_refused_with_the_reason() {
        let (note, _) = signed_note();
        let sig_line = note.lines().last().expect("a signature line").to_string();
        let parse = |s: &str| Note::parse(s.as_bytes());
        assert!(parse(&note).is_ok());
        assert_eq!(
            parse(&note.replacen("\n\n", "\n", 1)),
            Err(NoteError::NoBlankLine)
        );
        assert_eq!(
            parse(note.trim_end_matches('\n')),
            Err(NoteError::NoFinalNewline)
        );
        assert_eq!(parse("a\n\n"), Err(NoteError::NoSignatures));
        assert_eq!(parse("a\r\n\n"), Err(NoteError::ControlCharacter { at: 1 }));
        assert_eq!(Note::parse(b"a\xff\n\n"), Err(NoteError::NotUtf8));
        let big = format!("{}\n\n{sig_line}\n", "x".repeat(MAX_NOTE_BYTES));
        assert!(matches!(parse(&big), Err(NoteError::TooLarge { .. })));
        let many = format!(
            "a\n\n{}",
            format!("{sig_line}\n").repeat(MAX_SIGNATURES + 1)
        );
        assert_eq!(
            parse(&many),
            Err(NoteError::TooManySignatures {
                max: MAX_SIGNATURES
            })
        );
        let line = |l: &str| parse(&format!("a\n\n{l}\n"));
        let reason = |l: &str| match line(l) {
            Err(NoteError::BadSignatureLine { line: 1, reason }) => reason,
            other => panic!("{l:?} gave {other:?}"),
        };
        let blob = sig_line.rsplit(' ').next().expect("blob").to_string();
        assert!(reason(&format!("- {NAME} {blob}")).contains("em dash"));
        assert!(reason(&format!("\u{2014}{NAME} {blob}")).contains("em dash"));
        assert!(reason(&format!("\u{2014} {NAME}")).contains("no space"));
        assert!(reason(&format!("\u{2014}  {blob}")).contains("key name"));
        assert!(reason(&format!("\u{2014} a+b {blob}")).contains("key name"));
        assert!(reason(&format!("\u{2014} a\u{a0}b {blob}")).contains("key name"));
        assert!(reason(&format!("\u{2014} {NAME} {blob} x")).contains("base64"));
        assert!(reason(&format!("\u{2014} {NAME} {}", &blob[1..])).contains("base64"));
        assert!(reason(&format!("\u{2014} {NAME} {}", blob.replace('=', ""))).contains("base64"));
        assert!(reason(&format!("\u{2014} {NAME} !{}", &blob[1..])).contains("base64"));
        assert!(reason(&format!("\u{2014} {NAME} AAAAAA==")).contains("shorter"));
        let huge = STANDARD.encode(vec![0u8; MAX_SIGNATURE_BYTES + 3]);
        assert!(reason(&format!("\u{2014} {NAME} {huge}")).contains("too long"));
        // blank lines inside the text are the text's: the last one separates
        let text = "a\n\nb\n";
        let mut multi = Note::new(text).expect("valid");
        multi.sign(&signer(NAME, 3));
        assert_eq!(
            parse(&multi.to_string()).map(|n| n.text().to_string()),
            Ok(text.into())
        );
    }

    #[test]
    fn keys_are_checked_when_read() {
        let vkey = |s: &str| match NoteVerifier::from_vkey(s) {
            Err(NoteError::BadVerifierKey(reason)) => reason,
            other => panic!("{s:?} gave {other:?}"),
        };
        let (name, rest) = GO_VKEY.split_once('+').expect("name");
        let (id, b64) = rest.split_once('+').expect("id");
        assert!(NoteVerifier::from_vkey(&format!("{name}+{}+{b64}", id.to_uppercase())).is_ok());
        assert!(vkey(&format!("{name}+c74f20a4+{b64}")).contains("does not match"));
        assert!(vkey(&format!("Peter+{id}+{b64}")).contains("does not match"));
        assert!(vkey(&format!("{name}+c74f20a+{b64}")).contains("name+keyid+key"));
        assert!(vkey(&format!("{name}++c74f20a+{b64}")).contains("name+keyid+key"));
        assert!(vkey(&format!("{name}+{id}")).contains("name+keyid+key"));
        assert!(vkey(&format!("{name}+{id}+{}", &b64[1..])).contains("base64"));
        assert!(vkey(&format!("{name}+{id}+")).contains("empty"));
        let mut raw = STANDARD.decode(b64).expect("base64");
        raw[0] = 0x02;
        assert!(vkey(&format!("{name}+{id}+{}", STANDARD.encode(&raw))).contains("Ed25519"));
        raw[0] = 0x01;
        raw.push(0);
        assert!(vkey(&format!("{name}+{id}+{}", STANDARD.encode(&raw))).contains("32 bytes"));
        assert!(vkey(&"a".repeat(400)).contains("too long"));
        // the identity point is a valid encoding of a key that anything verifies under
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let weak_id = key_id("w", &weak);
        let weak_vkey = format!(
            "w+{weak_id:08x}+{}",
            STANDARD.encode([&[1u8][..], &weak].concat())
        );
        assert!(vkey(&weak_vkey).contains("small order"));
        assert!(matches!(
            NoteVerifier::from_vkey(&format!("a b+{id}+{b64}")),
            Err(NoteError::BadKeyName(_))
        ));

        let skey = |s: &str| match NoteSigner::from_skey(s) {
            Err(NoteError::BadSignerKey(reason)) => reason,
            other => panic!("{s:?} gave {other:?}"),
        };
        assert!(skey(&GO_SKEY.replace("c74f20a3", "c74f20a2")).contains("does not match"));
        assert!(skey(&GO_SKEY.replace("PRIVATE+KEY+", "PUBLIC+KEY+")).contains("PRIVATE"));
        assert!(skey(&GO_SKEY[..GO_SKEY.len() - 1]).contains("base64"));
        assert!(skey(&"x".repeat(400)).contains("too long"));
        assert!(matches!(
            NoteSigner::from_seed("", &[0; 32]),
            Err(NoteError::BadKeyName(_))
        ));
        assert!(matches!(
            NoteSigner::from_seed(&"n".repeat(257), &[0; 32]),
            Err(NoteError::BadKeyName(_))
        ));
    }

    #[test]
    fn generated_keys_sign_verify_and_keep_their_secret_out_of_debug() {
        let key = NoteSigner::generate(NAME).expect("the OS random source");
        let again = NoteSigner::from_skey(&key.skey()).expect("its own form");
        assert_eq!(again.verifier(), key.verifier());
        assert_ne!(
            NoteSigner::generate(NAME).map(|k| k.verifier()),
            Ok(key.verifier())
        );
        let (debug, skey) = (format!("{key:?}"), key.skey());
        assert!(
            debug.contains(NAME) && !debug.contains(&skey[skey.len() - 20..]),
            "{debug}"
        );
        let vkey = key.verifier().vkey();
        assert_eq!(NoteVerifier::from_vkey(&vkey), Ok(key.verifier()));
        let mut note = Note::new(TEXT).expect("valid");
        note.sign(&key);
        let parsed = Note::parse(note.to_string().as_bytes()).expect("well formed");
        assert_eq!(parsed.verify(&[key.verifier()]).map(|v| v.len()), Ok(1));
        assert!(matches!(
            Note::new("no newline"),
            Err(NoteError::NoFinalNewline)
        ));
        assert!(matches!(
            Note::new("tab\there\n"),
            Err(NoteError::ControlCharacter { at: 3 })
        ));
    }
    #[test]
    fn a_wrong_key_a_changed_text_or_a_forged_line_is_refused() {
        let (note, verifier) = signed_note();
        let trusted = std::slice::from_ref(&verifier);
        let parse = |s: &str| Note::parse(s.as_bytes()).expect("well formed");
        assert_eq!(parse(&note).verify(trusted), Ok(vec![&verifier]));
        // same name, another key: its id differs, so the signature is not by a trusted key
        let other = signer(NAME, 8).verifier();
        assert_ne!(other.key_id(), verifier.key_id());
        assert_eq!(parse(&note).verify(&[other]), Err(NoteError::Unverified));
        assert_eq!(parse(&note).verify(&[]), Err(NoteError::Unverified));
        // any changed byte of the text breaks the trusted key's signature
        let text_len = TEXT.len();
        for at in 0..text_len {
            let mut bytes = note.clone().into_bytes();
            bytes[at] = if bytes[at] == b'7' { b'8' } else { b'7' };
            let Ok(changed) = Note::parse(&bytes) else {
                continue; // no longer a well-formed note (a newline was replaced)
            };
            let err = changed.verify(trusted);
            assert!(
                matches!(err, Err(NoteError::InvalidSignature { .. })),
                "{at}: {err:?}"
            );
        }
        // and so does a changed signature byte (past the key id)
        let sig_at = note.rfind(' ').expect("signature line") + 10;
        let mut bytes = note.clone().into_bytes();
        bytes[sig_at] = if bytes[sig_at] == b'A' { b'B' } else { b'A' };
        let err = Note::parse(&bytes).map(|n| n.verify(trusted).map(|v| v.len()));
        assert!(
            matches!(err, Ok(Err(NoteError::InvalidSignature { .. }))),
            "{err:?}"
        );
        // a forged line claiming the trusted key's name and id fails the whole note
        let mut forged = parse(&note);
        let mut fake = forged.signatures()[0].clone();
        fake.signature = vec![0; 64];
        forged.signatures.insert(0, fake);
        let err = forged.verify(trusted);
        assert!(matches!(err, Err(NoteError::InvalidSignature { .. })));
    }
}
