//! Trailhub: a self-hosted hub that collects SaaS audit logs, normalises them into one event
//! schema, stores them append-only and tamper-evident in sled, and serves a unified timeline

pub mod alerts;
pub mod api;
pub mod archive;
pub mod audit;
pub mod auth;
pub mod checkpoints;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod enrich;
pub mod evidence;
pub mod http;
pub mod ingest;
pub mod insight;
pub mod jobs;
pub mod metrics;
pub mod notify;
pub mod objects;
pub mod pipeline;
pub mod redact;
pub mod retention;
pub mod schedule;
pub mod scheduler;
pub mod schema;
pub mod secrets;
pub mod server;
pub mod spreadsheet;
pub mod store;
pub mod time;
pub mod timeline;
pub mod webhooks;
