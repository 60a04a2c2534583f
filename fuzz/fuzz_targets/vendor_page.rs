//! `cargo +nightly fuzz run vendor_page`: see fuzz/src/lib.rs (`trailhub_fuzz::vendor_page`) for what it checks
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trailhub_fuzz::vendor_page(data));
