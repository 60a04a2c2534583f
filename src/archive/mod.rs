//! Archives: the events retention is about to purge, kept outside the hub as segments that
//! prove themselves, so that purging the store does not purge the evidence.
//!
//! A segment is an evidence bundle (`evidence::bundle`: a signed checkpoint, then each event
//! with its inclusion proof and exact bytes), zstd-compressed, and encrypted when an archive key
//! is configured. Because it is a bundle, a restore trusts nothing of where the segment was kept:
//! every event is checked against the hub's public key before it goes back.
//!
//! This module is the format only ([`segment`]) and its key ([`key`]); which events are archived
//! when, where segments are stored and how a restore puts events back are decided above it.

pub mod key;
pub mod segment;

pub use key::{ArchiveKey, KeyError};
pub use segment::{
    open_segment, open_segment_with, read_segment_events, read_segment_events_with, segment_name,
    SegmentError, SegmentEvents, SegmentLimits, SegmentName, SegmentReader, SegmentSummary,
    SegmentWriter,
};
