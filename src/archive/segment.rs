//! The archive segment format: an evidence bundle, zstd-compressed, optionally encrypted.
//!
//! A plain segment is nothing but a zstd frame of the bundle's NDJSON, so the tools that check a
//! bundle check a segment after `zstd -d` (docs/INTEGRITY.md, "Archive segments"). An encrypted
//! segment is an envelope, then that same zstd stream encrypted with XChaCha20-Poly1305 in the
//! STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015):
//!
//! ```text
//! "TRAILHUB-ARCHIVE\0"  version (1)  key id (8)  nonce prefix (19, random)
//! chunk 0: 64 KiB of the zstd stream + 16-byte tag
//! ...
//! last chunk: 0..=64 KiB + tag, sealed with the STREAM "last" flag
//! ```
//!
//! Why STREAM and not one AEAD message: a segment can be gigabytes, and a restore must not hold
//! it in memory to authenticate it; each chunk is checked before any of its bytes are used. Each
//! chunk's nonce carries its position and whether it is the last, so chunks cannot be reordered,
//! dropped or cut off at a boundary without the reader noticing; the envelope is the associated
//! data of every chunk, so the version and key id cannot be swapped either.
//!
//! Reading trusts nothing: the zstd window and the total decompressed size are bounded (a small
//! file must not expand into unbounded memory or disk), lines are bounded by the bundle reader,
//! and every event is checked against the signed checkpoint before it is handed on.

use std::io::{self, BufRead, BufReader, Read, Write};

use chacha20poly1305::aead::generic_array::GenericArray;
use chacha20poly1305::aead::stream::{
    DecryptorBE32, EncryptorBE32, NewStream, StreamBE32, StreamPrimitive,
};
use chacha20poly1305::XChaCha20Poly1305;
use sha2::Digest as _;

use super::key::{ArchiveKey, KEY_ID_LEN};
use crate::evidence::bundle::{
    BundleError, BundleEvent, BundleHeader, BundleReader, VerifiedEvent,
};
use crate::evidence::checkpoint::Checkpoint;
use crate::evidence::note::NoteVerifier;

/// The first bytes of an encrypted segment.
pub const SEGMENT_MAGIC: &[u8; 17] = b"TRAILHUB-ARCHIVE\0";
/// The envelope layout this code writes and reads.
pub const SEGMENT_VERSION: u8 = 1;
/// Plaintext bytes per encrypted chunk: large enough that the 16-byte tags cost nothing, small
/// enough that a reader holds little.
pub const CHUNK_LEN: usize = 64 << 10;
/// What a restore decompresses at most unless told otherwise.
pub const DEFAULT_MAX_DECOMPRESSED: u64 = 4 << 30;
/// The largest zstd window a reader accepts (2^23 = 8 MiB of memory): one above what the writer
/// uses, far below what a crafted frame could ask for (zstd allows 2^31).
pub const WINDOW_LOG_MAX: u32 = 23;

/// The magic of a zstd frame (RFC 8878 section 3.1.1), which is what a plain segment starts with.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// STREAM's BE32 variant takes 5 of XChaCha20's 24 nonce bytes for the chunk counter and the
/// last-chunk flag; the rest is random per segment.
const NONCE_PREFIX_LEN: usize = 19;
const ENVELOPE_LEN: usize = SEGMENT_MAGIC.len() + 1 + KEY_ID_LEN + NONCE_PREFIX_LEN;
const TAG_LEN: usize = 16;
const SEALED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
/// Archives are written once and kept long: a denser level than the store's, still cheap.
const COMPRESSION_LEVEL: i32 = 9;
const WINDOW_LOG: u32 = 22;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("reading or writing the segment: {0}")]
    Io(io::Error),
    #[error("not an archive segment (neither a zstd frame nor an encrypted segment's envelope)")]
    NotASegment,
    #[error("archive segment version {0} is not {SEGMENT_VERSION}")]
    UnknownVersion(u8),
    #[error("the segment is encrypted with archive key {key_id}; configure that key")]
    KeyRequired { key_id: String },
    #[error("the segment is encrypted with archive key {key_id}, not {given}")]
    WrongKey { key_id: String, given: String },
    #[error("the segment is truncated: {0}")]
    Truncated(String),
    #[error("chunk {chunk} of the segment does not authenticate: the segment was altered, or cut short inside that chunk")]
    Altered { chunk: u64 },
    #[error("the segment decompresses to more than {limit} bytes: refused (a zstd bomb, or a limit to raise)")]
    TooLarge { limit: u64 },
    #[error("{0}")]
    Bundle(BundleError),
    #[error("line {line}: leaf {leaf} follows leaf {previous}; a segment holds its events in ascending leaf order, each once")]
    OutOfOrder { line: u64, leaf: u64, previous: u64 },
    #[error("leaf {leaf} pushed after leaf {previous}: a segment holds its events in ascending leaf order, each once")]
    PushedOutOfOrder { leaf: u64, previous: u64 },
    #[error("a segment holds at least one event")]
    NoEvents,
    #[error("{0:?} is not a segment name (segments/<first leaf, 20 digits>-<last leaf, 20 digits>.ndjson.zst[.enc])")]
    Name(String),
}

/// An I/O error carries a segment error when it was raised inside the reading stack (a chunk
/// that does not authenticate, the size cap); it comes back out as that error.
impl From<io::Error> for SegmentError {
    fn from(e: io::Error) -> SegmentError {
        if !e.get_ref().is_some_and(|inner| inner.is::<SegmentError>()) {
            return SegmentError::Io(e);
        }
        let kind = e.kind();
        match e.into_inner().map(|inner| inner.downcast::<SegmentError>()) {
            Some(Ok(segment)) => *segment,
            Some(Err(other)) => SegmentError::Io(io::Error::new(kind, other)),
            None => SegmentError::Io(io::Error::from(kind)),
        }
    }
}

impl From<BundleError> for SegmentError {
    fn from(e: BundleError) -> SegmentError {
        match e {
            BundleError::Io(io) => SegmentError::from(io),
            other => SegmentError::Bundle(other),
        }
    }
}

/// A segment error raised inside `Read`/`Write`, to be taken back out by `From<io::Error>`.
fn carried(e: SegmentError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

// ---------------------------------------------------------------------------------------------
// names

/// Where a segment is kept: `segments/<first leaf>-<last leaf>.ndjson.zst`, `.enc` appended when
/// encrypted. Leaf indices are zero-padded to 20 digits (every u64), so names sort as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentName {
    pub first_leaf: u64,
    pub last_leaf: u64,
    pub encrypted: bool,
}

const NAME_PREFIX: &str = "segments/";
const PLAIN_SUFFIX: &str = ".ndjson.zst";
const ENCRYPTED_SUFFIX: &str = ".ndjson.zst.enc";

/// The object name of the segment holding leaves `first_leaf..=last_leaf`.
pub fn segment_name(first_leaf: u64, last_leaf: u64, encrypted: bool) -> String {
    SegmentName {
        first_leaf,
        last_leaf,
        encrypted,
    }
    .to_string()
}

impl std::fmt::Display for SegmentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let suffix = if self.encrypted {
            ENCRYPTED_SUFFIX
        } else {
            PLAIN_SUFFIX
        };
        write!(
            f,
            "{NAME_PREFIX}{:020}-{:020}{suffix}",
            self.first_leaf, self.last_leaf
        )
    }
}

impl std::str::FromStr for SegmentName {
    type Err = SegmentError;

    /// Reads the name's last path component, so a local copy's path (`/tmp/x/<name>`) parses as
    /// well as the object name.
    fn from_str(name: &str) -> Result<SegmentName, SegmentError> {
        let bad = || SegmentError::Name(name.to_string());
        let file = name.rsplit('/').next().unwrap_or(name);
        let (range, encrypted) = match file.strip_suffix(ENCRYPTED_SUFFIX) {
            Some(range) => (range, true),
            None => (file.strip_suffix(PLAIN_SUFFIX).ok_or_else(bad)?, false),
        };
        let (first, last) = range.split_once('-').ok_or_else(bad)?;
        let leaf = |digits: &str| {
            if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
                digits.parse::<u64>().ok()
            } else {
                None
            }
        };
        let first_leaf = leaf(first).ok_or_else(bad)?;
        let last_leaf = leaf(last).ok_or_else(bad)?;
        if first_leaf > last_leaf {
            return Err(bad());
        }
        Ok(SegmentName {
            first_leaf,
            last_leaf,
            encrypted,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// writing

/// What a finished segment holds: enough for the archiver to name it, record it, and check the
/// stored copy later without reading it back through the format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSummary {
    pub events: u64,
    pub first_leaf: u64,
    pub last_leaf: u64,
    pub encrypted: bool,
    /// The bundle NDJSON's length, header line included.
    pub raw_bytes: u64,
    /// The segment's length as written.
    pub stored_bytes: u64,
    /// SHA-256 of the bytes written, hex.
    pub sha256: String,
}

impl SegmentSummary {
    /// The segment's object name.
    pub fn name(&self) -> String {
        segment_name(self.first_leaf, self.last_leaf, self.encrypted)
    }
}

/// Writes one segment to `W` (a file, or `&mut File` to keep it for an fsync): the header at
/// `new`, one line per `push`, everything flushed and sealed at `finish`. A writer dropped
/// without `finish` leaves a segment that every reader refuses (an unfinished zstd frame, or no
/// last chunk).
pub struct SegmentWriter<W: Write> {
    encoder: zstd::stream::write::Encoder<'static, Sealer<W>>,
    encrypted: bool,
    events: u64,
    first_leaf: Option<u64>,
    last_leaf: Option<u64>,
    raw_bytes: u64,
    line: Vec<u8>,
}

impl<W: Write> SegmentWriter<W> {
    /// Starts a segment of the bundle `header` (whose checkpoint every pushed event's proof must
    /// be against), encrypted under `key` if one is given.
    pub fn new(
        out: W,
        header: &BundleHeader,
        key: Option<&ArchiveKey>,
    ) -> Result<SegmentWriter<W>, SegmentError> {
        let mut tally = Tally::new(out);
        let sealer = match key {
            None => Sealer::Plain(tally),
            Some(key) => {
                let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
                getrandom::fill(&mut nonce_prefix).expect("the OS random source is available");
                let envelope = envelope(SEGMENT_VERSION, &key.key_id_bytes(), &nonce_prefix);
                tally.write_all(&envelope)?;
                let encryptor =
                    EncryptorBE32::from_aead(key.cipher(), GenericArray::from_slice(&nonce_prefix));
                Sealer::Encrypted(ChunkSealer {
                    out: tally,
                    encryptor: Some(encryptor),
                    envelope,
                    chunk: Vec::with_capacity(SEALED_CHUNK_LEN),
                })
            }
        };
        let mut encoder = zstd::stream::write::Encoder::new(sealer, COMPRESSION_LEVEL)?;
        encoder.include_checksum(true)?;
        encoder.window_log(WINDOW_LOG)?;
        let mut writer = SegmentWriter {
            encoder,
            encrypted: key.is_some(),
            events: 0,
            first_leaf: None,
            last_leaf: None,
            raw_bytes: 0,
            line: Vec::new(),
        };
        writer.write_line(header)?;
        Ok(writer)
    }

    /// Appends one event; leaves must come in ascending order, each once (what makes the
    /// segment's name a true range, and a restore put each event back once).
    pub fn push(&mut self, event: &BundleEvent) -> Result<(), SegmentError> {
        if let Some(previous) = self.last_leaf {
            if event.leaf_index <= previous {
                return Err(SegmentError::PushedOutOfOrder {
                    leaf: event.leaf_index,
                    previous,
                });
            }
        }
        self.write_line(event)?;
        self.first_leaf.get_or_insert(event.leaf_index);
        self.last_leaf = Some(event.leaf_index);
        self.events += 1;
        Ok(())
    }

    fn write_line(&mut self, value: &impl serde::Serialize) -> Result<(), SegmentError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value).map_err(io::Error::from)?;
        self.line.push(b'\n');
        self.encoder.write_all(&self.line)?;
        self.raw_bytes += self.line.len() as u64;
        Ok(())
    }

    /// Ends the zstd frame, seals the last chunk and flushes `W`. A segment without events is
    /// refused: it would have no leaf range to be named by.
    pub fn finish(self) -> Result<SegmentSummary, SegmentError> {
        let (Some(first_leaf), Some(last_leaf)) = (self.first_leaf, self.last_leaf) else {
            return Err(SegmentError::NoEvents);
        };
        let mut tally = self.encoder.finish()?.finish()?;
        tally.out.flush()?;
        Ok(SegmentSummary {
            events: self.events,
            first_leaf,
            last_leaf,
            encrypted: self.encrypted,
            raw_bytes: self.raw_bytes,
            stored_bytes: tally.bytes,
            sha256: hex::encode(tally.sha256.finalize()),
        })
    }
}

fn envelope(
    version: u8,
    key_id: &[u8; KEY_ID_LEN],
    nonce_prefix: &[u8; NONCE_PREFIX_LEN],
) -> [u8; ENVELOPE_LEN] {
    let mut out = [0u8; ENVELOPE_LEN];
    let (magic, rest) = out.split_at_mut(SEGMENT_MAGIC.len());
    magic.copy_from_slice(SEGMENT_MAGIC);
    rest[0] = version;
    rest[1..1 + KEY_ID_LEN].copy_from_slice(key_id);
    rest[1 + KEY_ID_LEN..].copy_from_slice(nonce_prefix);
    out
}

/// Counts and hashes what reaches the output.
struct Tally<W> {
    out: W,
    bytes: u64,
    sha256: sha2::Sha256,
}

impl<W: Write> Tally<W> {
    fn new(out: W) -> Tally<W> {
        Tally {
            out,
            bytes: 0,
            sha256: sha2::Sha256::new(),
        }
    }
}

impl<W: Write> Write for Tally<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.sha256.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Where the zstd stream goes: straight out, or through the chunk sealer.
enum Sealer<W> {
    Plain(Tally<W>),
    Encrypted(ChunkSealer<Tally<W>>),
}

impl<W: Write> Sealer<W> {
    fn finish(self) -> io::Result<Tally<W>> {
        match self {
            Sealer::Plain(out) => Ok(out),
            Sealer::Encrypted(sealer) => sealer.finish(),
        }
    }
}

impl<W: Write> Write for Sealer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sealer::Plain(out) => out.write(buf),
            Sealer::Encrypted(sealer) => sealer.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sealer::Plain(out) => out.flush(),
            Sealer::Encrypted(sealer) => sealer.flush(),
        }
    }
}

/// Gathers plaintext into chunks of `CHUNK_LEN` and seals each once the next byte shows it is
/// not the last; `finish` seals what remains (possibly nothing) as the last chunk.
struct ChunkSealer<W> {
    out: W,
    /// `None` once the last chunk is sealed
    encryptor: Option<EncryptorBE32<XChaCha20Poly1305>>,
    envelope: [u8; ENVELOPE_LEN],
    chunk: Vec<u8>,
}

impl<W: Write> ChunkSealer<W> {
    fn seal_next(&mut self) -> io::Result<()> {
        let encryptor = self
            .encryptor
            .as_mut()
            .ok_or_else(|| io::Error::other("the segment's last chunk is already sealed"))?;
        encryptor
            .encrypt_next_in_place(&self.envelope, &mut self.chunk)
            .map_err(|_| io::Error::other("a segment holds at most 2^32 - 1 chunks"))?;
        self.out.write_all(&self.chunk)?;
        self.chunk.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        let encryptor = self
            .encryptor
            .take()
            .ok_or_else(|| io::Error::other("the segment's last chunk is already sealed"))?;
        encryptor
            .encrypt_last_in_place(&self.envelope, &mut self.chunk)
            .map_err(|_| io::Error::other("sealing the segment's last chunk"))?;
        self.out.write_all(&self.chunk)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ChunkSealer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.chunk.len() == CHUNK_LEN {
            self.seal_next()?;
        }
        let n = buf.len().min(CHUNK_LEN - self.chunk.len());
        self.chunk.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    /// A partial chunk stays buffered: sealing it would make it a chunk shorter than the rest,
    /// which the reader takes for the last.
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// reading

/// Bounds on what reading one segment may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentLimits {
    /// The most bytes the segment may decompress to (the bundle NDJSON).
    pub max_decompressed: u64,
    /// The largest zstd window accepted, as a power of two (the decoder's memory).
    pub window_log_max: u32,
}

impl Default for SegmentLimits {
    fn default() -> SegmentLimits {
        SegmentLimits {
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
            window_log_max: WINDOW_LOG_MAX,
        }
    }
}

/// A segment's bundle NDJSON, decrypted and decompressed as it is read. Its errors are
/// `io::Error`s that convert back into the [`SegmentError`] that raised them.
pub struct SegmentReader<R: Read> {
    inner: BufReader<Capped<zstd::stream::read::Decoder<'static, BufReader<Source<R>>>>>,
    key_id: Option<String>,
}

impl<R: Read> SegmentReader<R> {
    /// The id of the key the segment is encrypted with; `None` for a plain segment.
    pub fn key_id(&self) -> Option<&str> {
        self.key_id.as_deref()
    }
}

impl<R: Read> Read for SegmentReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

impl<R: Read> BufRead for SegmentReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.inner.consume(amount)
    }
}

/// [`open_segment_with`] with the default limits.
pub fn open_segment<R: Read>(
    reader: R,
    key: Option<&ArchiveKey>,
) -> Result<SegmentReader<R>, SegmentError> {
    open_segment_with(reader, key, SegmentLimits::default())
}

/// Opens a segment, plain or encrypted (told apart by their first bytes, not by the name): the
/// envelope is read and the key checked now, chunks are authenticated and decompressed as the
/// result is read. The result is a bundle, for `evidence::bundle::verify_bundle` or a line
/// reader; it ends only after the last chunk authenticated and the zstd frame ended.
pub fn open_segment_with<R: Read>(
    mut reader: R,
    key: Option<&ArchiveKey>,
    limits: SegmentLimits,
) -> Result<SegmentReader<R>, SegmentError> {
    let mut magic = [0u8; ZSTD_MAGIC.len()];
    let got = read_up_to(&mut reader, &mut magic)?;
    if got == 0 {
        return Err(SegmentError::Truncated("it is empty".to_string()));
    }
    let (source, key_id) = if got == magic.len() && magic == ZSTD_MAGIC {
        let plain = io::Cursor::new(magic).chain(reader);
        (Source::Plain(plain), None)
    } else if magic[..got] == SEGMENT_MAGIC[..got] {
        let mut envelope = [0u8; ENVELOPE_LEN];
        envelope[..got].copy_from_slice(&magic[..got]);
        let got = got + read_up_to(&mut reader, &mut envelope[got..])?;
        let magic_read = got.min(SEGMENT_MAGIC.len());
        if envelope[..magic_read] != SEGMENT_MAGIC[..magic_read] {
            return Err(SegmentError::NotASegment);
        }
        if got < ENVELOPE_LEN {
            return Err(SegmentError::Truncated(
                "it ends inside its envelope".to_string(),
            ));
        }
        let opener = ChunkOpener::new(reader, envelope, key)?;
        let key_id = hex::encode(opener.key_id);
        (Source::Encrypted(opener), Some(key_id))
    } else {
        return Err(SegmentError::NotASegment);
    };
    let mut decoder = zstd::stream::read::Decoder::with_buffer(BufReader::new(source))?;
    decoder.window_log_max(limits.window_log_max)?;
    let capped = Capped {
        inner: decoder,
        left: limits.max_decompressed,
        limit: limits.max_decompressed,
    };
    Ok(SegmentReader {
        inner: BufReader::new(capped),
        key_id,
    })
}

/// Reads until `buf` is full or the input ends; how many bytes were read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The zstd stream of a segment: its bytes as they are, or opened chunk by chunk.
enum Source<R> {
    Plain(io::Chain<io::Cursor<[u8; 4]>, R>),
    Encrypted(ChunkOpener<R>),
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(r) => r.read(buf),
            Source::Encrypted(r) => r.read(buf),
        }
    }
}

/// Authenticates and decrypts one chunk at a time; no plaintext leaves before its chunk's tag
/// checked, and the input ends cleanly only after a chunk sealed as the last.
struct ChunkOpener<R> {
    input: R,
    /// `None` once the last chunk is opened
    decryptor: Option<DecryptorBE32<XChaCha20Poly1305>>,
    /// the same stream, position by position: tells a segment cut at a chunk boundary (its
    /// final chunk opens as a middle one) from an altered one
    diagnosis: StreamBE32<XChaCha20Poly1305>,
    envelope: [u8; ENVELOPE_LEN],
    key_id: [u8; KEY_ID_LEN],
    /// the opened chunk, and how much of it was read
    chunk: Vec<u8>,
    read: usize,
    /// the byte read past a full chunk to learn that another follows
    next_first: Option<u8>,
    index: u64,
    /// set at the first chunk that fails: nothing after it is read, and the reader never ends
    /// cleanly (an ending there could pass for the segment's end)
    failed: bool,
}

impl<R: Read> ChunkOpener<R> {
    fn new(
        input: R,
        envelope: [u8; ENVELOPE_LEN],
        key: Option<&ArchiveKey>,
    ) -> Result<ChunkOpener<R>, SegmentError> {
        let rest = &envelope[SEGMENT_MAGIC.len()..];
        if rest[0] != SEGMENT_VERSION {
            return Err(SegmentError::UnknownVersion(rest[0]));
        }
        let mut key_id = [0u8; KEY_ID_LEN];
        key_id.copy_from_slice(&rest[1..1 + KEY_ID_LEN]);
        let nonce_prefix = GenericArray::from_slice(&rest[1 + KEY_ID_LEN..]);
        let key = key.ok_or_else(|| SegmentError::KeyRequired {
            key_id: hex::encode(key_id),
        })?;
        if key.key_id_bytes() != key_id {
            return Err(SegmentError::WrongKey {
                key_id: hex::encode(key_id),
                given: key.key_id(),
            });
        }
        Ok(ChunkOpener {
            input,
            decryptor: Some(DecryptorBE32::from_aead(key.cipher(), nonce_prefix)),
            diagnosis: StreamBE32::from_aead(key.cipher(), nonce_prefix),
            envelope,
            key_id,
            chunk: Vec::with_capacity(SEALED_CHUNK_LEN),
            read: 0,
            next_first: None,
            index: 0,
            failed: false,
        })
    }

    /// Reads and opens the next chunk into `self.chunk`.
    fn open_next(&mut self) -> Result<(), SegmentError> {
        let Some(decryptor) = self.decryptor.as_mut() else {
            return Ok(());
        };
        self.chunk.clear();
        self.read = 0;
        self.chunk.extend(self.next_first.take());
        let wanted = (SEALED_CHUNK_LEN - self.chunk.len()) as u64;
        (&mut self.input)
            .take(wanted)
            .read_to_end(&mut self.chunk)?;
        if self.chunk.len() == SEALED_CHUNK_LEN {
            let mut probe = [0u8; 1];
            if read_up_to(&mut self.input, &mut probe)? == 1 {
                self.next_first = Some(probe[0]);
                decryptor
                    .decrypt_next_in_place(&self.envelope, &mut self.chunk)
                    .map_err(|_| SegmentError::Altered { chunk: self.index })?;
                self.index += 1;
                return Ok(());
            }
        }
        // the input ended: this must be the chunk sealed as the last
        if self.chunk.len() < TAG_LEN {
            return Err(SegmentError::Truncated(if self.chunk.is_empty() {
                format!("it ends before chunk {}", self.index)
            } else {
                format!("it ends inside chunk {}", self.index)
            }));
        }
        let sealed = (self.chunk.len() == SEALED_CHUNK_LEN).then(|| self.chunk.clone());
        let decryptor = self.decryptor.take().expect("checked above");
        if decryptor
            .decrypt_last_in_place(&self.envelope, &mut self.chunk)
            .is_err()
        {
            let position = u32::try_from(self.index).ok();
            let opens_as_middle = sealed.zip(position).is_some_and(|(mut sealed, position)| {
                self.diagnosis
                    .decrypt_in_place(position, false, &self.envelope, &mut sealed)
                    .is_ok()
            });
            return Err(if opens_as_middle {
                SegmentError::Truncated(format!(
                    "it ends after chunk {}, which is not its last",
                    self.index
                ))
            } else {
                SegmentError::Altered { chunk: self.index }
            });
        }
        self.index += 1;
        Ok(())
    }
}

impl<R: Read> Read for ChunkOpener<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.read == self.chunk.len() {
            if self.failed {
                return Err(io::Error::other(
                    "an earlier chunk of the segment did not open",
                ));
            }
            if self.decryptor.is_none() {
                return Ok(0);
            }
            if let Err(e) = self.open_next() {
                self.failed = true;
                self.chunk.clear();
                self.read = 0;
                return Err(match e {
                    SegmentError::Io(io) => io,
                    other => carried(other),
                });
            }
        }
        let n = buf.len().min(self.chunk.len() - self.read);
        buf[..n].copy_from_slice(&self.chunk[self.read..self.read + n]);
        self.read += n;
        Ok(n)
    }
}

/// Fails once more than `limit` bytes come through: a zstd bomb stops here, at the limit, not
/// when memory or disk runs out.
struct Capped<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(carried(SegmentError::TooLarge { limit: self.limit })),
            };
        }
        let most = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..most])?;
        self.left -= n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// verified events

/// The events of a segment, each checked against the segment's signed checkpoint as it is read,
/// one at a time (a restore holds one event, not the segment). Stops at the first error.
pub struct SegmentEvents<R: Read> {
    bundle: BundleReader<SegmentReader<R>>,
    previous: Option<u64>,
    failed: bool,
}

impl<R: Read> SegmentEvents<R> {
    pub fn header(&self) -> &BundleHeader {
        self.bundle.header()
    }

    /// The checkpoint the events are proved against, its signature checked.
    pub fn checkpoint(&self) -> &Checkpoint {
        self.bundle.checkpoint()
    }

    /// The id of the key the segment is encrypted with; `None` for a plain segment.
    pub fn key_id(&self) -> Option<&str> {
        self.bundle_reader().key_id()
    }

    fn bundle_reader(&self) -> &SegmentReader<R> {
        self.bundle.get_ref()
    }

    fn next_event(&mut self) -> Result<Option<VerifiedEvent>, SegmentError> {
        let Some(event) = self.bundle.next_event()? else {
            return Ok(None);
        };
        if let Some(previous) = self.previous {
            if event.leaf_index <= previous {
                return Err(SegmentError::OutOfOrder {
                    line: self.bundle.line_no(),
                    leaf: event.leaf_index,
                    previous,
                });
            }
        }
        self.previous = Some(event.leaf_index);
        Ok(Some(event))
    }
}

impl<R: Read> Iterator for SegmentEvents<R> {
    type Item = Result<VerifiedEvent, SegmentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let result = self.next_event().transpose();
        self.failed = matches!(result, Some(Err(_)));
        result
    }
}

/// [`read_segment_events_with`] with the default limits.
pub fn read_segment_events<R: Read>(
    reader: R,
    key: Option<&ArchiveKey>,
    vkey: &NoteVerifier,
) -> Result<SegmentEvents<R>, SegmentError> {
    read_segment_events_with(reader, key, vkey, SegmentLimits::default())
}

/// Opens a segment and checks its header's checkpoint with `vkey`; the events follow from the
/// iterator, each proved from its own bytes to the signed root, in ascending leaf order.
pub fn read_segment_events_with<R: Read>(
    reader: R,
    key: Option<&ArchiveKey>,
    vkey: &NoteVerifier,
    limits: SegmentLimits,
) -> Result<SegmentEvents<R>, SegmentError> {
    let segment = open_segment_with(reader, key, limits)?;
    Ok(SegmentEvents {
        bundle: BundleReader::open(segment, vkey)?,
        previous: None,
        failed: false,
    })
}

#[cfg(test)]
#[path = "segment_tests.rs"]
mod tests;
