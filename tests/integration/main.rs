//! The one integration-test binary: hub helpers, vendor emulators, and the suites

mod catalogue;
mod catalogue_emu;
mod conformance;
mod emulator;
mod helpers;
mod integrations_api;
mod polling;
mod process;
