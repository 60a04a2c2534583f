//! Event blocks: how the log packs many events into one sled value
//!
//! sled costs about the same per key whatever the value's size, so the log stores a commit's
//! events together: one block per group commit (cut at `BLOCK_EVENTS`), keyed by the sequence
//! number of its first event. Inside a block, events are compressed in frames of `FRAME_EVENTS`
//! with zstd and a dictionary trained on the store's own events, so that small frames compress
//! almost as well as large ones (measured: 16-event frames with a dictionary ≈ 115 bytes per
//! 1.2 KiB event, like 1,024-event frames without) while reading one event decompresses only its
//! frame. A block also carries the chain hash after its last event.
//!
//! Value layout (all integers big-endian):
//! `version u8 | count u32 | chain hash [32] | frames u16 | per frame: events u16, dictionary u32,
//! compressed length u32, raw length u32 | frame bytes...`; a frame decompresses to
//! `varint length | first 8 bytes of the event's chain hash | body` per event, so that `verify`
//! names the first altered event, not just its block.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::StoreError;

/// Events per compressed frame: what one event read decompresses.
pub const FRAME_EVENTS: usize = 16;
/// Most events in one block (one sled value).
pub const BLOCK_EVENTS: usize = 256;
pub const BLOCK_VERSION: u8 = 2;
/// zstd level: the fast end, where compression costs less than the JSON work around it.
pub const LEVEL: i32 = 1;
/// Size of a trained dictionary.
pub const DICTIONARY_BYTES: usize = 64 * 1024;
/// Frames kept decompressed for readers.
const FRAME_CACHE: usize = 512;

const HEADER: usize = 1 + 4 + 32 + 2;
/// Bytes of each event's chain hash kept beside it.
pub const CHAIN_PREFIX: usize = 8;
const FRAME_ENTRY: usize = 2 + 4 + 4 + 4;

/// A zstd dictionary with its prepared forms. Dictionaries live as long as the process: they are
/// few (one per training) and compressors borrow them from every thread.
pub struct Dictionary {
    pub id: u32,
    pub raw: Vec<u8>,
    encoder: zstd::dict::EncoderDictionary<'static>,
    decoder: zstd::dict::DecoderDictionary<'static>,
}

impl Dictionary {
    pub fn new(id: u32, raw: Vec<u8>) -> &'static Dictionary {
        let encoder = zstd::dict::EncoderDictionary::copy(&raw, LEVEL);
        let decoder = zstd::dict::DecoderDictionary::copy(&raw);
        Box::leak(Box::new(Dictionary {
            id,
            raw,
            encoder,
            decoder,
        }))
    }
}

/// The store's dictionaries by id (0 = none), and the one new frames use.
#[derive(Default)]
pub struct Dictionaries {
    by_id: RwLock<HashMap<u32, &'static Dictionary>>,
    current: AtomicU64,
}

impl Dictionaries {
    pub fn add(&self, dict: &'static Dictionary, make_current: bool) {
        if let Ok(mut map) = self.by_id.write() {
            map.insert(dict.id, dict);
        }
        if make_current {
            self.current.store(u64::from(dict.id), Ordering::Release);
        }
    }

    pub fn get(&self, id: u32) -> Option<&'static Dictionary> {
        self.by_id.read().ok()?.get(&id).copied()
    }

    pub fn current(&self) -> Option<&'static Dictionary> {
        let id = self.current.load(Ordering::Acquire) as u32;
        if id == 0 {
            None
        } else {
            self.get(id)
        }
    }

    pub fn next_id(&self) -> u32 {
        self.by_id
            .read()
            .map(|m| m.keys().copied().max().unwrap_or(0) + 1)
            .unwrap_or(1)
    }
}

/// Trains a dictionary from sample event bodies; `None` when zstd finds too little to learn.
pub fn train(samples: &[Vec<u8>]) -> Option<Vec<u8>> {
    if samples.len() < 64 {
        return None;
    }
    zstd::dict::from_samples(samples, DICTIONARY_BYTES).ok()
}

/// Compresses frames; one per writing thread, its zstd context reused.
pub struct Packer {
    plain: zstd::bulk::Compressor<'static>,
    /// The compressor of one dictionary, by the dictionary's address (ids are per store).
    with_dict: Option<(usize, zstd::bulk::Compressor<'static>)>,
}

impl Packer {
    pub fn new() -> Result<Packer, StoreError> {
        let mut plain = zstd::bulk::Compressor::new(LEVEL).map_err(io)?;
        checksummed(&mut plain)?;
        Ok(Packer {
            plain,
            with_dict: None,
        })
    }

    fn compress(
        &mut self,
        raw: &[u8],
        dict: Option<&'static Dictionary>,
    ) -> Result<(u32, Vec<u8>), StoreError> {
        match dict {
            None => Ok((0, self.plain.compress(raw).map_err(io)?)),
            Some(d) => {
                let slot = std::ptr::from_ref::<Dictionary>(d) as usize;
                if self.with_dict.as_ref().map(|(at, _)| *at) != Some(slot) {
                    let mut c =
                        zstd::bulk::Compressor::with_prepared_dictionary(&d.encoder).map_err(io)?;
                    checksummed(&mut c)?;
                    self.with_dict = Some((slot, c));
                }
                let (_, c) = self.with_dict.as_mut().expect("set just above");
                Ok((d.id, c.compress(raw).map_err(io)?))
            }
        }
    }

    /// One block value holding `events` (body, chain hash after it; at most `BLOCK_EVENTS`).
    pub fn block(
        &mut self,
        events: &[(&[u8], [u8; 32])],
        dict: Option<&'static Dictionary>,
    ) -> Result<Vec<u8>, StoreError> {
        debug_assert!(!events.is_empty() && events.len() <= BLOCK_EVENTS);
        let hash = events[events.len() - 1].1;
        let slots: Vec<(&[u8], &[u8])> = events
            .iter()
            .map(|(body, chain)| (*body, &chain[..CHAIN_PREFIX]))
            .collect();
        self.pack(&slots, &hash, dict)
    }

    /// A block of `slots` (body or tombstone, the chain prefix stored beside it) whose chain
    /// ends at `hash`: how a purge or a restore writes a block again around its changed slots.
    pub fn pack(
        &mut self,
        slots: &[(&[u8], &[u8])],
        hash: &[u8; 32],
        dict: Option<&'static Dictionary>,
    ) -> Result<Vec<u8>, StoreError> {
        let events = slots;
        let mut frames = Vec::with_capacity(events.len().div_ceil(FRAME_EVENTS));
        let mut raw = Vec::new();
        for chunk in events.chunks(FRAME_EVENTS) {
            raw.clear();
            for (body, chain) in chunk {
                put_varint(&mut raw, body.len() as u64);
                raw.extend_from_slice(&chain[..CHAIN_PREFIX]);
                raw.extend_from_slice(body);
            }
            let (dict_id, compressed) = self.compress(&raw, dict)?;
            frames.push((chunk.len() as u16, dict_id, compressed, raw.len() as u32));
        }
        let payload: usize = frames.iter().map(|f| f.2.len()).sum();
        let mut out = Vec::with_capacity(HEADER + frames.len() * FRAME_ENTRY + payload);
        out.push(BLOCK_VERSION);
        out.extend_from_slice(&(events.len() as u32).to_be_bytes());
        out.extend_from_slice(hash);
        out.extend_from_slice(&(frames.len() as u16).to_be_bytes());
        for (events, dict_id, compressed, raw_len) in &frames {
            out.extend_from_slice(&events.to_be_bytes());
            out.extend_from_slice(&dict_id.to_be_bytes());
            out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
            out.extend_from_slice(&raw_len.to_be_bytes());
        }
        for (_, _, compressed, _) in frames {
            out.extend_from_slice(&compressed);
        }
        Ok(out)
    }
}

/// Frames carry zstd's content checksum: a damaged frame fails to decode instead of yielding
/// other bytes (4 bytes per frame).
fn checksummed(c: &mut zstd::bulk::Compressor<'static>) -> Result<(), StoreError> {
    c.set_parameter(zstd::stream::raw::CParameter::ChecksumFlag(true))
        .map_err(io)
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(format!("compression: {e}"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("event block: {what}"))
}

/// One frame's place in a block.
#[derive(Debug, Clone, Copy)]
struct FrameEntry {
    first: u32,
    events: u16,
    dict: u32,
    offset: usize,
    len: usize,
    raw_len: usize,
}

/// One slot of a block: its body (or tombstone) and the chain prefix stored beside it.
pub type Slot = (Vec<u8>, [u8; CHAIN_PREFIX]);

/// A block value taken apart (without decompressing anything).
pub struct BlockView<'a> {
    pub count: u32,
    pub hash: [u8; 32],
    frames: Vec<FrameEntry>,
    bytes: &'a [u8],
}

impl<'a> BlockView<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<BlockView<'a>, StoreError> {
        if bytes.len() < HEADER || bytes[0] != BLOCK_VERSION {
            return Err(corrupt("unknown layout"));
        }
        let count = u32::from_be_bytes(bytes[1..5].try_into().expect("4 bytes"));
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[5..37]);
        let n = u16::from_be_bytes([bytes[37], bytes[38]]) as usize;
        let table_end = HEADER + n * FRAME_ENTRY;
        if bytes.len() < table_end {
            return Err(corrupt("frame table cut short"));
        }
        let mut frames = Vec::with_capacity(n);
        let mut offset = table_end;
        let mut first = 0u32;
        for i in 0..n {
            let e = &bytes[HEADER + i * FRAME_ENTRY..HEADER + (i + 1) * FRAME_ENTRY];
            let events = u16::from_be_bytes([e[0], e[1]]);
            let dict = u32::from_be_bytes(e[2..6].try_into().expect("4 bytes"));
            let len = u32::from_be_bytes(e[6..10].try_into().expect("4 bytes")) as usize;
            let raw_len = u32::from_be_bytes(e[10..14].try_into().expect("4 bytes")) as usize;
            frames.push(FrameEntry {
                first,
                events,
                dict,
                offset,
                len,
                raw_len,
            });
            first += u32::from(events);
            offset = offset
                .checked_add(len)
                .ok_or_else(|| corrupt("frame length"))?;
        }
        if offset != bytes.len() || first != count {
            return Err(corrupt("frames do not add up"));
        }
        Ok(BlockView {
            count,
            hash,
            frames,
            bytes,
        })
    }

    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// The frame holding the event at `index` in the block, and its index inside that frame.
    pub fn locate(&self, index: u32) -> Option<(usize, usize)> {
        if index >= self.count {
            return None;
        }
        let f = self.frames.partition_point(|f| f.first <= index) - 1;
        Some((f, (index - self.frames[f].first) as usize))
    }

    /// Decompresses one frame.
    pub fn decode_frame(
        &self,
        frame: usize,
        dicts: &Dictionaries,
    ) -> Result<DecodedFrame, StoreError> {
        let f = self
            .frames
            .get(frame)
            .ok_or_else(|| corrupt("no such frame"))?;
        let compressed = &self.bytes[f.offset..f.offset + f.len];
        let raw = decompress(compressed, f.raw_len, f.dict, dicts)?;
        DecodedFrame::parse(raw, usize::from(f.events))
    }

    /// Every slot of the block in order: its body (or tombstone) and its chain prefix.
    pub fn slots(&self, dicts: &Dictionaries) -> Result<Vec<Slot>, StoreError> {
        let mut out = Vec::with_capacity(self.count as usize);
        for i in 0..self.frames.len() {
            let frame = self.decode_frame(i, dicts)?;
            for j in 0..frame.len() {
                let mut prefix = [0u8; CHAIN_PREFIX];
                prefix.copy_from_slice(frame.chain_prefix(j));
                out.push((frame.body(j).to_vec(), prefix));
            }
        }
        Ok(out)
    }

    /// The dictionary the block's frames were compressed with (a rewrite keeps it).
    pub fn dictionary(&self, dicts: &Dictionaries) -> Option<&'static Dictionary> {
        self.frames
            .iter()
            .find(|f| f.dict != 0)
            .and_then(|f| dicts.get(f.dict))
    }

    /// Every body of the block, in order.
    pub fn bodies(&self, dicts: &Dictionaries) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut out = Vec::with_capacity(self.count as usize);
        for i in 0..self.frames.len() {
            let frame = self.decode_frame(i, dicts)?;
            for j in 0..frame.len() {
                out.push(frame.body(j).to_vec());
            }
        }
        Ok(out)
    }

    /// This block with one frame's decompressed bytes edited and compressed again: what someone
    /// with the disk and the source could do (tests use it to prove `verify` notices).
    pub fn with_frame_edited(
        &self,
        frame: usize,
        dicts: &Dictionaries,
        edit: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Vec<u8>, StoreError> {
        let f = self
            .frames
            .get(frame)
            .ok_or_else(|| corrupt("no such frame"))?;
        let mut raw = decompress(
            &self.bytes[f.offset..f.offset + f.len],
            f.raw_len,
            f.dict,
            dicts,
        )?;
        edit(&mut raw);
        let dict = if f.dict == 0 { None } else { dicts.get(f.dict) };
        let (_, compressed) = Packer::new()?.compress(&raw, dict)?;
        let mut out = self.bytes[..HEADER + self.frames.len() * FRAME_ENTRY].to_vec();
        let entry = HEADER + frame * FRAME_ENTRY;
        out[entry + 6..entry + 10].copy_from_slice(&(compressed.len() as u32).to_be_bytes());
        out[entry + 10..entry + 14].copy_from_slice(&(raw.len() as u32).to_be_bytes());
        for (i, other) in self.frames.iter().enumerate() {
            if i == frame {
                out.extend_from_slice(&compressed);
            } else {
                out.extend_from_slice(&self.bytes[other.offset..other.offset + other.len]);
            }
        }
        Ok(out)
    }
}

/// What a purged event leaves in its slot: enough to keep the log provable without its bytes.
///
/// A stored body is an event's JSON after its id member, so it starts with `"`; a tombstone
/// starts with `TOMBSTONE_MARK`, which no body can. Layout: `mark u8 | version u8 | leaf hash
/// [32] | purge event's seq u64` (42 bytes). The leaf hash keeps every Merkle proof and
/// `verify`'s tree working; the purge's seq names the `trailhub` event that recorded why.
///
/// The chain hash is not kept: past a tombstone, `verify` checks the rest of the block by the
/// Merkle tree alone and picks the chain up again from the block's stored hash (the slot's
/// chain prefix stays as it was, so a restored event fits it again). Nor is the dedup identity:
/// a vendor's event whose identity hash matches a purged slot counts as that event again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tombstone {
    pub leaf: [u8; 32],
    pub purge_seq: u64,
}

pub const TOMBSTONE_MARK: u8 = 0x00;
const TOMBSTONE_VERSION: u8 = 1;
pub const TOMBSTONE_BYTES: usize = 2 + 32 + 8;

impl Tombstone {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(TOMBSTONE_BYTES);
        out.push(TOMBSTONE_MARK);
        out.push(TOMBSTONE_VERSION);
        out.extend_from_slice(&self.leaf);
        out.extend_from_slice(&self.purge_seq.to_be_bytes());
        out
    }

    /// The tombstone in a slot, `None` when the slot holds an event.
    pub fn parse(slot: &[u8]) -> Result<Option<Tombstone>, StoreError> {
        if slot.first() != Some(&TOMBSTONE_MARK) {
            return Ok(None);
        }
        if slot.len() != TOMBSTONE_BYTES || slot[1] != TOMBSTONE_VERSION {
            return Err(corrupt("unknown tombstone layout"));
        }
        let mut leaf = [0u8; 32];
        leaf.copy_from_slice(&slot[2..34]);
        let purge_seq = u64::from_be_bytes(slot[34..42].try_into().expect("8 bytes"));
        Ok(Some(Tombstone { leaf, purge_seq }))
    }
}

/// Whether a slot holds a tombstone rather than an event.
pub fn is_tombstone(slot: &[u8]) -> bool {
    slot.first() == Some(&TOMBSTONE_MARK)
}

thread_local! {
    /// Decompressors by the address of their dictionary (0: none). Not by the dictionary's id:
    /// ids are per store, and one process may open several stores (a test suite, a CLI command
    /// beside a hub) whose dictionary 1 differ; a leaked dictionary's address is never reused.
    static DECOMPRESSORS: RefCell<HashMap<usize, zstd::bulk::Decompressor<'static>>> =
        RefCell::new(HashMap::new());
}

fn decompress(
    compressed: &[u8],
    raw_len: usize,
    dict: u32,
    dicts: &Dictionaries,
) -> Result<Vec<u8>, StoreError> {
    if raw_len > 64 * 1024 * 1024 {
        return Err(corrupt("frame too large"));
    }
    // `raw_len` is read from disk: before a buffer of that size is made, the frame's own header
    // (every frame the store writes records its size) must agree, so that a damaged length costs
    // no memory
    match zstd::zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(size)) if size != raw_len as u64 => return Err(corrupt("frame length differs")),
        Ok(_) => {}
        Err(_) => return Err(corrupt("frame is not zstd")),
    }
    let prepared = if dict == 0 {
        None
    } else {
        Some(
            dicts
                .get(dict)
                .ok_or_else(|| corrupt("names an unknown dictionary"))?,
        )
    };
    DECOMPRESSORS.with(|cell| {
        let mut map = cell.borrow_mut();
        let slot = prepared.map_or(0, |p| std::ptr::from_ref::<Dictionary>(p) as usize);
        let d = match map.entry(slot) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                match prepared {
                    None => zstd::bulk::Decompressor::new(),
                    Some(p) => zstd::bulk::Decompressor::with_prepared_dictionary(&p.decoder),
                }
                .map_err(io)?,
            ),
        };
        let raw = d
            .decompress(compressed, raw_len)
            .map_err(|e| corrupt(&format!("does not decompress: {e}")))?;
        if raw.len() != raw_len {
            return Err(corrupt("frame length differs"));
        }
        Ok(raw)
    })
}

/// A decompressed frame: its bodies, addressable by index.
pub struct DecodedFrame {
    data: Vec<u8>,
    /// (offset of the chain prefix, body length) per event.
    spans: Vec<(u32, u32)>,
}

impl DecodedFrame {
    fn parse(data: Vec<u8>, events: usize) -> Result<DecodedFrame, StoreError> {
        let mut spans = Vec::with_capacity(events);
        let mut at = 0usize;
        for _ in 0..events {
            let len = get_varint(&data, &mut at).ok_or_else(|| corrupt("frame lengths"))?;
            // the length is read from disk: any u64, so every step is checked
            let end = usize::try_from(len)
                .ok()
                .and_then(|len| len.checked_add(CHAIN_PREFIX))
                .and_then(|n| at.checked_add(n))
                .filter(|e| *e <= data.len());
            let end = end.ok_or_else(|| corrupt("frame body cut short"))?;
            // both fit: a frame is at most 64 MiB (`decompress`)
            spans.push((at as u32, (end - at - CHAIN_PREFIX) as u32));
            at = end;
        }
        if at != data.len() {
            return Err(corrupt("frame has trailing bytes"));
        }
        Ok(DecodedFrame { data, spans })
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn body(&self, i: usize) -> &[u8] {
        let (at, len) = self.spans[i];
        let start = at as usize + CHAIN_PREFIX;
        &self.data[start..start + len as usize]
    }

    /// The first bytes of the chain hash stored with event `i`.
    pub fn chain_prefix(&self, i: usize) -> &[u8] {
        let at = self.spans[i].0 as usize;
        &self.data[at..at + CHAIN_PREFIX]
    }

    fn bytes(&self) -> usize {
        self.data.len() + self.spans.len() * 8
    }
}

/// Recently decompressed frames, keyed by (block, frame), shared by every reader. A page of the
/// timeline or an export reads neighbouring events, which mostly share frames.
pub struct FrameCache {
    inner: Mutex<CacheInner>,
}

struct CacheInner {
    map: HashMap<(u64, u16), (Arc<DecodedFrame>, u64)>,
    tick: u64,
    bytes: usize,
}

impl Default for FrameCache {
    fn default() -> Self {
        FrameCache {
            inner: Mutex::new(CacheInner {
                map: HashMap::new(),
                tick: 0,
                bytes: 0,
            }),
        }
    }
}

impl FrameCache {
    pub fn get(&self, key: (u64, u16)) -> Option<Arc<DecodedFrame>> {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.map.get_mut(&key)?;
        entry.1 = tick;
        Some(entry.0.clone())
    }

    pub fn put(&self, key: (u64, u16), frame: Arc<DecodedFrame>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.tick += 1;
        let tick = inner.tick;
        inner.bytes += frame.bytes();
        if let Some((old, _)) = inner.map.insert(key, (frame, tick)) {
            inner.bytes -= old.bytes();
        }
        if inner.map.len() > FRAME_CACHE {
            // evict the older half in one pass: rare, and O(capacity)
            let mut ticks: Vec<u64> = inner.map.values().map(|(_, t)| *t).collect();
            ticks.sort_unstable();
            let cut = ticks[ticks.len() / 2];
            let mut freed = 0;
            inner.map.retain(|_, (f, t)| {
                let keep = *t > cut;
                if !keep {
                    freed += f.bytes();
                }
                keep
            });
            inner.bytes -= freed;
        }
    }

    /// Forgets every frame of a block (its value is about to change).
    pub fn forget_block(&self, first_seq: u64) {
        if let Ok(mut inner) = self.inner.lock() {
            let mut freed = 0;
            inner.map.retain(|(b, _), (f, _)| {
                let keep = *b != first_seq;
                if !keep {
                    freed += f.bytes();
                }
                keep
            });
            inner.bytes -= freed;
        }
    }
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                format!(r#""time":"2024-01-01T00:00:{:02}Z","source_id":"evt-{i}","actor":{{"id":"u{}"}}}}"#, i % 60, i % 7)
                    .into_bytes()
            })
            .collect()
    }

    #[test]
    fn blocks_round_trip_with_and_without_a_dictionary() {
        let dicts = Dictionaries::default();
        let samples = bodies(2000);
        let raw = train(&samples).expect("trains");
        let dict = Dictionary::new(1, raw);
        dicts.add(dict, true);
        let mut packer = Packer::new().expect("packer");
        for d in [None, Some(dict)] {
            let input = bodies(37);
            let refs: Vec<(&[u8], [u8; 32])> =
                input.iter().map(|b| (b.as_slice(), [7; 32])).collect();
            let value = packer.block(&refs, d).expect("packs");
            let view = BlockView::parse(&value).expect("parses");
            assert_eq!(view.count, 37);
            assert_eq!(view.hash, [7; 32]);
            assert_eq!(view.frame_count(), 3);
            assert_eq!(view.locate(20), Some((1, 4)));
            assert_eq!(view.locate(37), None);
            let (f, i) = view.locate(36).expect("last");
            assert_eq!(
                view.decode_frame(f, &dicts).expect("frame").body(i),
                input[36].as_slice()
            );
            assert_eq!(view.bodies(&dicts).expect("bodies"), input);
        }
    }

    /// Two stores in one process (hubs in a test suite or a benchmark) each train their own
    /// dictionary 1: a thread that read one store's blocks reads the other's with the right
    /// dictionary (a cache by id answered "Dictionary mismatch" for the second store).
    #[test]
    fn two_stores_dictionaries_of_the_same_id_never_mix() {
        let mut packer = Packer::new().expect("packer");
        let mut stores = Vec::new();
        for variant in ["alpha", "omega"] {
            let samples: Vec<Vec<u8>> = (0..2000)
                .map(|i| {
                    format!(
                        r#"{{"{variant}":"{variant}-{i}","w":"{}"}}"#,
                        variant.repeat(i % 9)
                    )
                    .into_bytes()
                })
                .collect();
            let dicts = Dictionaries::default();
            let dict = Dictionary::new(1, train(&samples).expect("trains"));
            dicts.add(dict, true);
            let refs: Vec<(&[u8], [u8; 32])> = samples[..50]
                .iter()
                .map(|b| (b.as_slice(), [1; 32]))
                .collect();
            let value = packer.block(&refs, Some(dict)).expect("packs");
            stores.push((dicts, value, samples[..50].to_vec()));
        }
        for _ in 0..2 {
            for (dicts, value, want) in &stores {
                let view = BlockView::parse(value).expect("parses");
                assert_eq!(&view.bodies(dicts).expect("decodes"), want);
            }
        }
    }

    /// Found by the property tests (tests/integration/fuzz.rs): a frame whose first length
    /// prefix is near 2^64 overflowed `CHAIN_PREFIX + len` — a panic in a debug build, and in
    /// a release build a wrapped end that let `body()` slice far past the frame.
    #[test]
    fn a_frame_length_near_2_pow_64_is_corrupt_not_an_overflow() {
        let dicts = Dictionaries::default();
        let input = bodies(3);
        let refs: Vec<(&[u8], [u8; 32])> = input.iter().map(|b| (b.as_slice(), [0; 32])).collect();
        let value = Packer::new()
            .expect("packer")
            .block(&refs, None)
            .expect("packs");
        for len in [u64::MAX, u64::MAX - 7, u64::MAX - 8, usize::MAX as u64 - 3] {
            let damaged = BlockView::parse(&value)
                .expect("parses")
                .with_frame_edited(0, &dicts, |raw| {
                    raw.clear();
                    put_varint(raw, len);
                    raw.extend_from_slice(&[0; 16]);
                })
                .expect("re-packs");
            let view = BlockView::parse(&damaged).expect("the header is intact");
            match view.decode_frame(0, &dicts) {
                Err(StoreError::Corrupt(m)) => assert!(m.contains("cut short"), "{m}"),
                Err(e) => panic!("{len}: {e}"),
                Ok(_) => panic!("{len}: a frame of 16 bytes announced {len} and decoded"),
            }
        }
    }

    #[test]
    fn damaged_blocks_are_errors_not_panics() {
        let dicts = Dictionaries::default();
        let mut packer = Packer::new().expect("packer");
        let input = bodies(20);
        let refs: Vec<(&[u8], [u8; 32])> = input.iter().map(|b| (b.as_slice(), [0; 32])).collect();
        let value = packer.block(&refs, None).expect("packs");
        for cut in [0, 1, 10, HEADER, value.len() - 1] {
            assert!(BlockView::parse(&value[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = value.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0xff;
        let view = BlockView::parse(&flipped).expect("header intact");
        assert!(view.bodies(&dicts).is_err());
    }
}
