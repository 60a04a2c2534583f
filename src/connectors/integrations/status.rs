//! Each integration's last known status (`s<id>` in the integrations tree): what the scheduler
//! and the engine record after every poll and the API shows. Kept apart from the records
//! because it changes on every cycle and is written by the engine, not by an admin.

use serde::{Deserialize, Serialize};

use super::{record_key, IntegrationError, Integrations, KEY_STATUS};
use crate::time::Micros;

/// Where an integration stands, as shown in its API object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Backfilling,
    Live,
    Error,
    Paused,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    pub last_poll_at: Option<Micros>,
    pub last_success_at: Option<Micros>,
    /// When a cycle last drained everything the vendor had.
    pub caught_up_at: Option<Micros>,
    pub last_error: Option<String>,
    pub backfill_done: bool,
    /// Oldest event time reached so far by the backfill.
    pub backfill_oldest: Option<Micros>,
    /// Start of the backfill window.
    pub backfill_from: Option<Micros>,
    pub polling: bool,
}

impl Status {
    pub fn state(&self, paused: bool) -> State {
        if paused {
            State::Paused
        } else if self.last_error.is_some() {
            State::Error
        } else if !self.backfill_done {
            State::Backfilling
        } else {
            State::Live
        }
    }

    /// Seconds since the hub last had everything the vendor had.
    pub fn lag_seconds(&self, now: Micros) -> Option<i64> {
        self.caught_up_at
            .map(|t| ((now - t) / crate::time::MICROS_PER_SEC).max(0))
    }
}

pub(super) fn status_key(id: &str) -> Vec<u8> {
    let mut k = vec![KEY_STATUS];
    k.extend_from_slice(id.as_bytes());
    k
}

impl Integrations {
    pub fn status(&self, id: &str) -> Result<Status, IntegrationError> {
        Ok(match self.tree.get(status_key(id))? {
            Some(v) => serde_json::from_slice(&v).unwrap_or_default(),
            None => Status::default(),
        })
    }

    /// Saves a status unless the integration was deleted meanwhile.
    pub fn save_status(&self, id: &str, status: &Status) -> Result<(), IntegrationError> {
        if self.tree.get(record_key(id))?.is_none() {
            return Ok(());
        }
        let value = serde_json::to_vec(status).expect("a status serialises");
        self.tree.insert(status_key(id), value)?;
        Ok(())
    }
}
