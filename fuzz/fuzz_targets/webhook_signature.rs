//! `cargo +nightly fuzz run webhook_signature`: see fuzz/src/lib.rs (`trailhub_fuzz::webhook_signature`) for what it checks
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trailhub_fuzz::webhook_signature(data));
