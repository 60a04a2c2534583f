//! TEMPORARY STUB (replaced by the segment branch)
#![allow(dead_code, unused_variables)]
pub mod segment {
    use crate::evidence::bundle::{BundleEvent, BundleHeader};
    #[derive(Clone)]
    pub struct ArchiveKey;
    impl ArchiveKey {
        pub fn load(p: &std::path::Path) -> Result<ArchiveKey, String> {
            todo!()
        }
    }
    pub struct SegmentSummary {
        pub events: u64,
        pub stored_bytes: u64,
        pub sha256: String,
    }
    pub struct SegmentWriter;
    impl SegmentWriter {
        pub fn new(
            o: Vec<u8>,
            h: &BundleHeader,
            k: Option<&ArchiveKey>,
        ) -> Result<SegmentWriter, String> {
            todo!()
        }
        pub fn push(&mut self, e: &BundleEvent) -> Result<(), String> {
            todo!()
        }
        pub fn finish(self) -> Result<(Vec<u8>, SegmentSummary), String> {
            todo!()
        }
    }
    pub fn segment_name(a: u64, b: u64, enc: bool) -> String {
        todo!()
    }
    pub struct VerifiedEvent {
        pub leaf_index: u64,
        pub event_bytes: Vec<u8>,
    }
    pub fn read_segment_events(
        r: &[u8],
        k: Option<&ArchiveKey>,
        v: &crate::evidence::note::NoteVerifier,
        f: impl FnMut(VerifiedEvent) -> Result<(), String>,
    ) -> Result<BundleHeader, String> {
        todo!()
    }
}
