//! `cargo +nightly fuzz run connector_definition`: see fuzz/src/lib.rs (`trailhub_fuzz::connector_definition`) for what it checks
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| trailhub_fuzz::connector_definition(data));
