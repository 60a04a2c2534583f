//! The segment format's tests: round trips, and every way a stored segment can be wrong.

use std::io::{Read, Write};

use super::*;
use crate::evidence::bundle::test_support::bundle_parts;
use crate::evidence::bundle::{verify_bundle, BundleError};
use crate::evidence::note::NoteSigner;

/// Events that do not compress away (a hash chain in each), so a segment of a few hundred spans
/// several encrypted chunks.
fn made_up_events(n: usize) -> Vec<String> {
    let mut noise = [0u8; 32];
    (0..n)
        .map(|i| {
            let mut filler = String::new();
            for _ in 0..24 {
                noise = sha2::Sha256::digest(noise).into();
                filler.push_str(&hex::encode(noise));
            }
            format!(
                r#"{{"id":"{i:016x}","actor":{{"id":"u{i}"}},"note":"é\"\\n","filler":"{filler}"}}"#
            )
        })
        .collect()
}

struct Fixture {
    signer: NoteSigner,
    events: Vec<String>,
    header: BundleHeader,
    lines: Vec<BundleEvent>,
}

/// A log of `n` events and the bundle of the leaves `pick` names.
fn fixture(n: usize, pick: impl IntoIterator<Item = usize>) -> Fixture {
    let signer = NoteSigner::generate("example.com/log").expect("key");
    let events = made_up_events(n);
    let (header, lines) = bundle_parts(&signer, &events, pick);
    Fixture {
        signer,
        events,
        header,
        lines,
    }
}

impl Fixture {
    fn segment(&self, key: Option<&ArchiveKey>) -> (Vec<u8>, SegmentSummary) {
        let mut out = Vec::new();
        let mut writer = SegmentWriter::new(&mut out, &self.header, key).expect("writer");
        for line in &self.lines {
            writer.push(line).expect("push");
        }
        let summary = writer.finish().expect("finish");
        (out, summary)
    }

    /// The bundle NDJSON the segment holds, written the way a bundle export writes it.
    fn bundle_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(&self.header).expect("json");
        out.push(b'\n');
        for line in &self.lines {
            out.extend(serde_json::to_vec(line).expect("json"));
            out.push(b'\n');
        }
        out
    }

    fn read(
        &self,
        segment: &[u8],
        key: Option<&ArchiveKey>,
    ) -> Result<Vec<VerifiedEvent>, SegmentError> {
        read_segment_events(segment, key, &self.signer.verifier())?.collect()
    }
}

fn key(byte: u8) -> ArchiveKey {
    ArchiveKey::from_bytes([byte; 32])
}

/// Where the last chunk of an encrypted segment of `len` bytes starts.
fn last_chunk_at(len: usize) -> usize {
    let body = len - ENVELOPE_LEN;
    let last = match body % SEALED_CHUNK_LEN {
        0 => SEALED_CHUNK_LEN,
        partial => partial,
    };
    len - last
}

#[test]
fn plain_and_encrypted_segments_give_back_every_event_byte_for_byte() {
    let f = fixture(500, (3..400).step_by(3));
    let archive_key = key(7);
    for key in [None, Some(&archive_key)] {
        let (segment, summary) = f.segment(key);
        let mut read =
            read_segment_events(segment.as_slice(), key, &f.signer.verifier()).expect("opens");
        assert_eq!(read.header().checkpoint, f.header.checkpoint);
        assert_eq!(read.checkpoint().size(), 500);
        assert_eq!(read.key_id(), key.map(|k| k.key_id()).as_deref());
        let events: Vec<VerifiedEvent> = read.by_ref().collect::<Result<_, _>>().expect("verifies");
        assert_eq!(events.len(), f.lines.len());
        for (event, line) in events.iter().zip(&f.lines) {
            let leaf = line.leaf_index as usize;
            assert_eq!(event.leaf_index, line.leaf_index);
            assert_eq!(event.event_bytes, f.events[leaf].as_bytes(), "leaf {leaf}");
        }
        assert!(read.next().is_none(), "the end stays the end");

        assert_eq!(summary.events, f.lines.len() as u64);
        assert_eq!((summary.first_leaf, summary.last_leaf), (3, 399));
        assert_eq!(summary.encrypted, key.is_some());
        assert_eq!(summary.raw_bytes, f.bundle_bytes().len() as u64);
        assert_eq!(summary.stored_bytes, segment.len() as u64);
        assert_eq!(summary.sha256, hex::encode(sha2::Sha256::digest(&segment)));
        let name: SegmentName = summary.name().parse().expect("its name parses");
        assert_eq!(
            (name.first_leaf, name.last_leaf, name.encrypted),
            (3, 399, key.is_some())
        );
    }
    // the encrypted one spans several chunks, and none of the events shows through
    let (sealed, _) = f.segment(Some(&archive_key));
    assert!(
        sealed.len() > ENVELOPE_LEN + SEALED_CHUNK_LEN,
        "{} bytes",
        sealed.len()
    );
    assert!(!sealed.windows(8).any(|w| w == b"example."));
}

#[test]
fn a_plain_segment_is_a_zstd_frame_of_the_bundle() {
    let f = fixture(40, 0..40);
    let (segment, _) = f.segment(None);
    let bundle = zstd::stream::decode_all(segment.as_slice()).expect("plain zstd");
    assert_eq!(bundle, f.bundle_bytes());
    let report = verify_bundle(bundle.as_slice(), &f.signer.verifier()).expect("a bundle");
    assert_eq!(report.events, 40);
    // and the reader's output is exactly those bytes, ready for the bundle checker
    let mut opened = Vec::new();
    open_segment(segment.as_slice(), None)
        .expect("opens")
        .read_to_end(&mut opened)
        .expect("reads");
    assert_eq!(opened, bundle);
    // a plain segment needs no key, and a key given is not in the way
    assert_eq!(f.read(&segment, Some(&key(1))).expect("reads").len(), 40);
}

#[test]
fn every_flipped_byte_of_an_encrypted_segment_fails() {
    let f = fixture(180, 0..180);
    let key = key(9);
    let (segment, _) = f.segment(Some(&key));
    assert!(segment.len() > SEALED_CHUNK_LEN, "more than one chunk");
    let last = last_chunk_at(segment.len());
    // every byte of the envelope, both sides of every chunk boundary, the tags, and a spread
    // over the rest
    let mut positions: Vec<usize> = (0..ENVELOPE_LEN + 2).collect();
    let mut boundary = ENVELOPE_LEN;
    while boundary < segment.len() {
        positions.extend([boundary.saturating_sub(1), boundary, boundary + CHUNK_LEN]);
        boundary += SEALED_CHUNK_LEN;
    }
    positions.extend((0..segment.len()).step_by(499));
    positions.extend([last, segment.len() - 17, segment.len() - 1]);
    positions.retain(|&p| p < segment.len());
    for at in positions {
        let mut edited = segment.clone();
        edited[at] ^= 0x20;
        // the encryption alone refuses it, before any proof is looked at
        let opened = open_segment(edited.as_slice(), Some(&key))
            .and_then(|mut r| Ok(r.read_to_end(&mut Vec::new())?));
        assert!(opened.is_err(), "a flip at byte {at} passed");
    }
    // the untouched one still reads
    assert_eq!(f.read(&segment, Some(&key)).expect("reads").len(), 180);
}

#[test]
fn a_flipped_byte_in_a_chunk_is_named_by_its_chunk() {
    let f = fixture(300, 0..300);
    let key = key(9);
    let (mut segment, _) = f.segment(Some(&key));
    segment[ENVELOPE_LEN + SEALED_CHUNK_LEN + 100] ^= 1;
    let err = f.read(&segment, Some(&key)).expect_err("altered");
    assert!(matches!(err, SegmentError::Altered { chunk: 1 }), "{err}");
    assert!(err.to_string().contains("chunk 1"), "{err}");
}

#[test]
fn a_truncated_encrypted_segment_fails() {
    let f = fixture(300, 0..300);
    let key = key(3);
    let (segment, _) = f.segment(Some(&key));
    let last = last_chunk_at(segment.len());

    // the last chunk dropped: what is left ends on a chunk boundary, and still fails
    let err = f.read(&segment[..last], Some(&key)).expect_err("dropped");
    assert!(
        matches!(&err, SegmentError::Truncated(why) if why.contains("not its last")),
        "{err}"
    );
    // cut inside a chunk, anywhere
    for cut in [
        last + 1,
        segment.len() - 1,
        segment.len() - TAG_LEN,
        ENVELOPE_LEN + 10,
        ENVELOPE_LEN + SEALED_CHUNK_LEN - 1,
        ENVELOPE_LEN + SEALED_CHUNK_LEN + 5_000,
    ] {
        let err = f.read(&segment[..cut], Some(&key)).expect_err("cut");
        assert!(
            matches!(
                err,
                SegmentError::Truncated(_) | SegmentError::Altered { .. }
            ),
            "cut at {cut}: {err}"
        );
    }
    // no chunk at all, a cut envelope, nothing
    for cut in [ENVELOPE_LEN, ENVELOPE_LEN - 1, 5, 0] {
        let err = f.read(&segment[..cut], Some(&key)).expect_err("cut");
        assert!(
            matches!(err, SegmentError::Truncated(_)),
            "cut at {cut}: {err}"
        );
    }
    // and a byte appended after the last chunk is no better
    let mut longer = segment.clone();
    longer.push(0);
    assert!(f.read(&longer, Some(&key)).is_err());
}

#[test]
fn a_truncated_plain_segment_fails() {
    let f = fixture(100, 0..100);
    let (segment, _) = f.segment(None);
    for cut in [segment.len() - 1, segment.len() - 4, segment.len() / 2, 10] {
        assert!(
            f.read(&segment[..cut], None).is_err(),
            "cut at {cut} passed"
        );
    }
}

#[test]
fn the_last_chunk_may_be_empty_or_full_and_is_never_dropped_unseen() {
    let key = key(5);
    let env = envelope(SEGMENT_VERSION, &key.key_id_bytes(), &[4; NONCE_PREFIX_LEN]);
    for len in [0, 1, CHUNK_LEN - 1, CHUNK_LEN, CHUNK_LEN + 1, 2 * CHUNK_LEN] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut sealer = ChunkSealer {
            out: Vec::new(),
            encryptor: Some(EncryptorBE32::from_aead(
                key.cipher(),
                GenericArray::from_slice(&[4; NONCE_PREFIX_LEN]),
            )),
            envelope: env,
            chunk: Vec::new(),
        };
        // in odd-sized writes, so chunks fill across calls
        for piece in plaintext.chunks(1000) {
            sealer.write_all(piece).expect("write");
        }
        let sealed = sealer.finish().expect("finish");
        // a chunk is sealed once the next byte comes, so the last holds 1..=CHUNK_LEN bytes (0
        // only when there is nothing at all)
        let chunks = len.div_ceil(CHUNK_LEN).max(1);
        assert_eq!(sealed.len(), len + chunks * TAG_LEN, "{len} bytes");

        let mut opened = Vec::new();
        ChunkOpener::new(sealed.as_slice(), env, Some(&key))
            .expect("opener")
            .read_to_end(&mut opened)
            .expect("opens");
        assert_eq!(opened, plaintext, "{len} bytes");

        // dropping the last chunk is seen, even when what is left ends on a chunk boundary
        if len > 0 && len % CHUNK_LEN == 0 {
            let cut = &sealed[..sealed.len() - SEALED_CHUNK_LEN];
            let err = ChunkOpener::new(cut, env, Some(&key))
                .expect("opener")
                .read_to_end(&mut Vec::new())
                .map_err(SegmentError::from)
                .expect_err("truncated");
            assert!(matches!(err, SegmentError::Truncated(_)), "{err}");
        }
    }
}

#[test]
fn an_encrypted_segment_names_the_key_it_needs() {
    let f = fixture(20, 0..20);
    let right = key(1);
    let wrong = key(2);
    let (segment, _) = f.segment(Some(&right));

    let err = f.read(&segment, None).expect_err("no key");
    assert_eq!(
        err.to_string(),
        format!(
            "the segment is encrypted with archive key {}; configure that key",
            right.key_id()
        )
    );
    let err = f.read(&segment, Some(&wrong)).expect_err("wrong key");
    assert!(matches!(err, SegmentError::WrongKey { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "the segment is encrypted with archive key {}, not {}",
            right.key_id(),
            wrong.key_id()
        )
    );
    // a key id edited to name the other key does not make the other key fit
    let mut relabelled = segment.clone();
    relabelled[SEGMENT_MAGIC.len() + 1..SEGMENT_MAGIC.len() + 1 + KEY_ID_LEN]
        .copy_from_slice(&wrong.key_id_bytes());
    let err = f.read(&relabelled, Some(&wrong)).expect_err("relabelled");
    assert!(matches!(err, SegmentError::Altered { chunk: 0 }), "{err}");

    let mut future = segment.clone();
    future[SEGMENT_MAGIC.len()] = 2;
    let err = f.read(&future, Some(&right)).expect_err("version 2");
    assert!(matches!(err, SegmentError::UnknownVersion(2)), "{err}");

    for junk in [
        &b"{\"trailhub_bundle\":1}\n"[..],
        b"TRAILHUB-ARCHIVX\0...",
        b"PK\x03\x04",
    ] {
        let err = f.read(junk, Some(&right)).expect_err("junk");
        assert!(matches!(err, SegmentError::NotASegment), "{err}");
    }
}

/// `mib` MiB of `filler` after `first_line`, written into one zstd frame a MiB at a time: a few
/// dozen KiB compressed.
fn compressed_bomb(first_line: &[u8], filler: u8, mib: usize) -> Vec<u8> {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
    encoder.write_all(first_line).expect("write");
    let block = vec![filler; 1 << 20];
    for _ in 0..mib {
        encoder.write_all(&block).expect("write");
    }
    encoder.finish().expect("finish")
}

#[test]
fn a_zstd_bomb_stops_at_the_cap() {
    let limits = SegmentLimits {
        max_decompressed: 64 << 20,
        ..SegmentLimits::default()
    };
    let bomb = compressed_bomb(b"", 0, 1024);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let mut reader = open_segment_with(bomb.as_slice(), None, limits).expect("a zstd frame");
    let err = std::io::copy(&mut reader, &mut std::io::sink()).expect_err("capped");
    let err = SegmentError::from(err);
    assert!(
        matches!(err, SegmentError::TooLarge { limit } if limit == 64 << 20),
        "{err}"
    );
    assert!(
        err.to_string().contains("more than 67108864 bytes"),
        "{err}"
    );
}

#[test]
fn a_bomb_of_blank_lines_stops_at_the_cap() {
    // blank lines are skipped by the bundle reader, so newlines after a good header reach no
    // line limit: the cap is what stops them
    let limits = SegmentLimits {
        max_decompressed: 256 << 10,
        ..SegmentLimits::default()
    };
    let f = fixture(3, 0..3);
    let mut header = serde_json::to_vec(&f.header).expect("json");
    header.push(b'\n');
    let bomb = compressed_bomb(&header, b'\n', 16);
    let err = read_segment_events_with(bomb.as_slice(), None, &f.signer.verifier(), limits)
        .expect("the header verifies")
        .collect::<Result<Vec<_>, _>>()
        .expect_err("capped");
    assert!(matches!(err, SegmentError::TooLarge { .. }), "{err}");
}

#[test]
fn a_frame_asking_for_a_huge_window_is_refused() {
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("encoder");
    encoder.window_log(WINDOW_LOG_MAX + 4).expect("window");
    let noise: Vec<u8> = (0..(4u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    encoder.write_all(&noise).expect("write");
    let frame = encoder.finish().expect("finish");
    let mut reader = open_segment(frame.as_slice(), None).expect("a zstd frame");
    assert!(std::io::copy(&mut reader, &mut std::io::sink()).is_err());
}

#[test]
fn an_edited_event_fails_its_proof_naming_the_line() {
    let mut f = fixture(30, 0..30);
    // the event on line 5 (leaf 3) changed, and the segment written anew around it
    f.lines[3].event = f.lines[3].event.replace("\"u3\"", "\"u4\"");
    let archive_key = key(6);
    for key in [None, Some(&archive_key)] {
        let (segment, _) = f.segment(key);
        let mut events =
            read_segment_events(segment.as_slice(), key, &f.signer.verifier()).expect("opens");
        for leaf in 0..3 {
            assert_eq!(
                events.next().expect("event").expect("verifies").leaf_index,
                leaf
            );
        }
        let err = events.next().expect("line 5").expect_err("edited");
        assert!(
            matches!(err, SegmentError::Bundle(BundleError::Line { line: 5, .. })),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("line 5: the event at leaf 3"),
            "{err}"
        );
        assert!(events.next().is_none(), "nothing after the failed line");
    }
}

#[test]
fn a_segment_signed_by_another_key_fails_at_its_header() {
    let f = fixture(5, 0..5);
    let (segment, _) = f.segment(None);
    let other = NoteSigner::generate("example.com/log").expect("key");
    let err = read_segment_events(segment.as_slice(), None, &other.verifier())
        .err()
        .expect("another signer");
    assert!(err.to_string().starts_with("line 1:"), "{err}");
}

#[test]
fn events_come_in_ascending_leaf_order_each_once() {
    let f = fixture(10, [2, 5, 5, 4]);
    let mut writer = SegmentWriter::new(Vec::new(), &f.header, None).expect("writer");
    writer.push(&f.lines[0]).expect("leaf 2");
    writer.push(&f.lines[1]).expect("leaf 5");
    for line in &f.lines[2..] {
        let err = writer.push(line).expect_err("not after 5");
        assert!(
            matches!(err, SegmentError::PushedOutOfOrder { previous: 5, .. }),
            "{err}"
        );
    }
    // a segment written out of order by other means is refused at the line
    let bundle = f.bundle_bytes();
    let segment = zstd::stream::encode_all(bundle.as_slice(), 3).expect("zstd");
    let err = f.read(&segment, None).expect_err("out of order");
    assert!(
        matches!(
            err,
            SegmentError::OutOfOrder {
                line: 4,
                leaf: 5,
                previous: 5
            }
        ),
        "{err}"
    );

    let writer = SegmentWriter::new(Vec::new(), &f.header, None).expect("writer");
    assert!(matches!(writer.finish(), Err(SegmentError::NoEvents)));
}

#[test]
fn segment_names_sort_as_numbers_and_parse_back() {
    assert_eq!(
        segment_name(1, 256, false),
        "segments/00000000000000000001-00000000000000000256.ndjson.zst"
    );
    assert_eq!(
        segment_name(1, 256, true),
        "segments/00000000000000000001-00000000000000000256.ndjson.zst.enc"
    );
    let mut names = [
        segment_name(1000, 2000, false),
        segment_name(9, 99, false),
        segment_name(u64::MAX, u64::MAX, false),
    ];
    names.sort();
    assert_eq!(names[0], segment_name(9, 99, false));
    for (first, last, encrypted) in [(0, 0, false), (1, 256, true), (7, u64::MAX, false)] {
        let name: SegmentName = segment_name(first, last, encrypted)
            .parse()
            .expect("parses");
        assert_eq!(
            name,
            SegmentName {
                first_leaf: first,
                last_leaf: last,
                encrypted
            }
        );
    }
    let local: SegmentName =
        "/tmp/restore/00000000000000000001-00000000000000000256.ndjson.zst.enc"
            .parse()
            .expect("a local copy");
    assert!(local.encrypted);
    for bad in [
        "segments/1-256.ndjson.zst",
        "segments/00000000000000000256-00000000000000000001.ndjson.zst",
        "segments/00000000000000000001-00000000000000000256.ndjson",
        "segments/00000000000000000001_00000000000000000256.ndjson.zst",
        "segments/99999999999999999999-99999999999999999999.ndjson.zst",
        "segments/+0000000000000000001-00000000000000000256.ndjson.zst",
        "",
    ] {
        assert!(bad.parse::<SegmentName>().is_err(), "{bad:?} parsed");
    }
}
