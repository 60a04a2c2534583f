//! The one integration-test binary: every test starts a real hub on 127.0.0.1 with a temp data
//! dir and drives it over HTTP

mod common;
mod crash;
mod disk_full;
mod events;
mod integrity;
mod schema;
