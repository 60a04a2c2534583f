//! Evidence: the hub's stored events as the leaves of an RFC 9162 Merkle tree, with signed
//! checkpoints (C2SP tlog-checkpoint in a C2SP signed note) and inclusion and consistency
//! proofs, so that anyone holding a checkpoint can check that an event is in the log and that
//! the log only ever grew, without trusting the hub.
//!
//! This module is the pure core: hashing, the append-only tree, proofs and notes. It knows
//! nothing of the store; the store gives it leaf hashes and keeps the hashes proofs read,
//! through [`proof::HashSource`].

pub mod bundle;
pub mod checkpoint;
pub mod merkle;
pub mod note;
pub mod proof;
#[cfg(test)]
mod vectors;
