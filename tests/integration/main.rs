//! The one integration-test binary: every test starts a real hub on 127.0.0.1 with a temp data
//! dir and drives it over HTTP; vendors are emulated on loopback

mod alerts;
mod archive;
mod backfill;
mod catalogue;
mod collection_filters;
mod conformance;
mod console_e2e;
mod crash;
mod dashboard;
mod disk_full;
mod enrichment;
mod events;
mod evidence;
mod export_jobs;
mod fuzz;
mod hardening;
mod integrations_api;
mod integrity;
mod keys;
mod layering;
mod notify;
mod objects;
mod polling;
mod process;
mod reports;
mod retention;
mod route_matrix;
mod schema;
mod secret_leak;
mod signing_keys;
mod store;
mod support;
mod webhooks;
