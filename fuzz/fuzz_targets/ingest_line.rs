//! `cargo +nightly fuzz run ingest_line`: see fuzz/src/lib.rs (`trailhub_fuzz::ingest_line`) for what it checks
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trailhub_fuzz::ingest_line(data));
