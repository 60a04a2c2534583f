//! `cargo +nightly fuzz run store_blocks`: see fuzz/src/lib.rs (`trailhub_fuzz::store_blocks`) for what it checks
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trailhub_fuzz::store_blocks(data));
