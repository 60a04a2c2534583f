//! Signed checkpoints of the hub's Merkle log, and getting them out of the hub's reach
//!
//! A checkpoint proves only what its signer says and only to whoever kept a copy: the key must
//! be the hub's alone and stay the same across restarts ([`signing_key`]), and each checkpoint
//! must reach a place the hub's host cannot rewrite ([`publish`]), so that a history rewritten
//! on the host no longer matches what was published before.

mod files;
pub mod publish;
pub mod signing_key;

pub use publish::{PublishError, Publisher, Sink};
pub use signing_key::{KeyError, SigningKey};
