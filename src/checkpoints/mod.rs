//! Signed checkpoints of the hub's Merkle log, and getting them out of the hub's reach
//!
//! They are signed as the log grows ([`cadence`]) and kept by the hub ([`history`]).
//! A checkpoint proves only what its signer says and only to whoever kept a copy: the key must
//! be the hub's alone and stay the same across restarts ([`signing_key`]), and each checkpoint
//! must reach a place the hub's host cannot rewrite ([`publish`]), so that a history rewritten
//! on the host no longer matches what was published before. When the key must change, the new
//! one is handed over by a checkpoint both keys sign ([`key_handover`]), and the log's key
//! history says which key signed what ([`keyring`]).

pub mod cadence;
mod files;
pub mod history;
pub mod key_handover;
pub mod keyring;
pub mod publish;
pub mod signing_key;

pub use cadence::{Cadence, Checkpointer, Diverged};
pub use history::{History, Stored};
pub use keyring::{KeyEntry, Keyring, KeyringError};
pub use publish::{PublishError, Publisher, Sink};
pub use signing_key::{KeyError, SigningKey};
