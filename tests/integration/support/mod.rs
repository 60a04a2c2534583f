//! The one test-support layer: the hub harness, the vendor emulators (a core and one vendor
//! per API), a real S3-protocol server (`s3`), receivers of notifications (`receiver`: HTTP and SMTP), a headless Chromium driver for the console
//! (`browser`) and test data; the integration tests use it, and the benches include it by
//! `#[path]`

pub mod browser;
pub mod data;
pub mod emu;
pub mod hub;
pub mod receiver;
pub mod s3;
pub mod vendors;
