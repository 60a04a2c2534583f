//! `cargo +nightly fuzz run time_and_cursor`: see fuzz/src/lib.rs (`trailhub_fuzz::time_and_cursor`) for what it checks
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trailhub_fuzz::time_and_cursor(data));
