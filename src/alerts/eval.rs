//! The evaluation state of one rule: per group, the event times inside the count window's
//! horizon and when the group last fired. Pure: given the events in the order they are stored
//! it decides the same firings, which is what lets the engine replay from its saved cursor.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::rule::{Compiled, Condition};
use crate::time::{Micros, MICROS_PER_SEC};

/// Most groups one rule tracks; past it the group seen least recently is forgotten.
pub const MAX_GROUPS: usize = 10_000;
/// Most event times kept per group.
pub const MAX_TIMES: usize = 20_000;
/// Most event times kept per rule, over all its groups; past it the group seen least recently
/// is forgotten.
pub const MAX_RULE_TIMES: usize = 200_000;
/// How late an event may arrive and still count with the events around it: times are kept
/// this long behind the newest one (or two windows, if longer).
pub const LATE_HORIZON: Micros = 24 * 3600 * MICROS_PER_SEC;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupState {
    /// Event times of a count rule's matches within the horizon, ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<Micros>,
    /// Event time of the last firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired: Option<Micros>,
    /// The order in which groups were last seen (for forgetting the oldest).
    pub seen: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RuleState {
    pub version: u64,
    pub groups: HashMap<String, GroupState>,
    pub clock: u64,
    /// Event times kept over all groups.
    #[serde(default)]
    pub times: usize,
}

/// A firing decided: how many events and the window of event time they fell in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub count: u32,
    pub from: Micros,
    pub to: Micros,
}

impl RuleState {
    pub fn for_version(version: u64) -> RuleState {
        RuleState {
            version,
            ..RuleState::default()
        }
    }

    /// One matching event (filter, schedule and value condition already checked) of `group` at
    /// `time`: a firing, or none (below the threshold, or suppressed).
    pub fn offer(&mut self, rule: &Compiled, group: &str, time: Micros) -> Option<Hit> {
        self.clock += 1;
        if !self.groups.contains_key(group) && self.groups.len() >= MAX_GROUPS {
            self.forget_oldest();
        }
        let clock = self.clock;
        let state = self.groups.entry(group.to_string()).or_default();
        state.seen = clock;
        let hit = match rule.rule.condition {
            Condition::Event | Condition::Value { .. } => Some(Hit {
                count: 1,
                from: time,
                to: time,
            }),
            Condition::Count {
                threshold,
                window_secs,
            } => {
                let window = window_secs as Micros * MICROS_PER_SEC;
                let at = state.times.partition_point(|t| *t <= time);
                state.times.insert(at, time);
                let before = state.times.len() - 1;
                // keep what a late event can still need, and a bounded number
                if let Some(newest) = state.times.last().copied() {
                    let keep_from = newest.saturating_sub((2 * window).max(LATE_HORIZON));
                    let stale = state.times.partition_point(|t| *t < keep_from);
                    let excess = state.times.len().saturating_sub(MAX_TIMES);
                    state.times.drain(..stale.max(excess));
                }
                let after = state.times.len();
                let hit = burst(&state.times, time, window, threshold);
                self.times = (self.times + after).saturating_sub(before);
                while self.times > MAX_RULE_TIMES && self.groups.len() > 1 {
                    self.forget_oldest_except(group);
                }
                hit
            }
        };
        let hit = hit?;
        let state = self.groups.get_mut(group)?;
        let suppress = rule.rule.suppress_secs as Micros * MICROS_PER_SEC;
        if let Some(fired) = state.fired {
            if suppress > 0 && time.abs_diff(fired) < suppress as u64 {
                return None;
            }
        }
        state.fired = Some(time);
        Some(hit)
    }

    fn forget_oldest(&mut self) {
        self.forget_oldest_except("\u{0}never a group\u{0}");
    }

    fn forget_oldest_except(&mut self, keep: &str) {
        if let Some(oldest) = self
            .groups
            .iter()
            .filter(|(k, _)| k.as_str() != keep)
            .min_by_key(|(_, g)| g.seen)
            .map(|(k, _)| k.clone())
        {
            if let Some(g) = self.groups.remove(&oldest) {
                self.times = self.times.saturating_sub(g.times.len());
            }
        }
    }
}

/// The earliest window of `window` micros that holds `time` and at least `threshold` of
/// `times` (ascending, holding `time`).
fn burst(times: &[Micros], time: Micros, window: Micros, threshold: u32) -> Option<Hit> {
    let threshold = threshold as usize;
    let first = times.partition_point(|t| *t < time.saturating_sub(window));
    let last = times.partition_point(|t| *t <= time);
    for start in first..last {
        let from = times[start];
        let end = times.partition_point(|t| *t <= from.saturating_add(window));
        if end - start >= threshold {
            return Some(Hit {
                count: (end - start) as u32,
                from,
                to: times[end - 1],
            });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::RuleInput;
    use serde_json::json;

    fn compiled(v: serde_json::Value) -> Compiled {
        let rule = serde_json::from_value::<RuleInput>(v)
            .expect("input")
            .create("r".into(), "t", 1)
            .expect("valid");
        Compiled::new(&rule).expect("compiles")
    }

    const S: Micros = MICROS_PER_SEC;

    #[test]
    fn five_in_ten_minutes_fires_once_per_burst_and_per_group() {
        let rule = compiled(json!({"name": "brute force", "group_by": "actor.id",
            "condition": {"type": "count", "threshold": 5, "window_secs": 600}}));
        let mut st = RuleState::for_version(1);
        let base = 1_700_000_000 * S;
        for i in 0..4 {
            assert_eq!(st.offer(&rule, "ann", base + i * 60 * S), None);
        }
        // another actor's failures do not count for ann
        for i in 0..4 {
            assert_eq!(st.offer(&rule, "bob", base + i * S), None);
        }
        let hit = st
            .offer(&rule, "ann", base + 300 * S)
            .expect("the fifth fires");
        assert_eq!((hit.count, hit.from, hit.to), (5, base, base + 300 * S));
        // the same burst goes on: suppressed for the window
        assert_eq!(st.offer(&rule, "ann", base + 310 * S), None);
        // bob's fifth
        assert!(st.offer(&rule, "bob", base + 5 * S).is_some());
        // much later, a new burst fires again
        for i in 0..4 {
            assert_eq!(st.offer(&rule, "ann", base + 5000 * S + i * S), None);
        }
        assert!(st.offer(&rule, "ann", base + 5004 * S).is_some());
    }

    #[test]
    fn a_late_event_completes_a_window_in_the_past() {
        let rule = compiled(json!({"name": "r",
            "condition": {"type": "count", "threshold": 3, "window_secs": 60}}));
        let mut st = RuleState::for_version(1);
        let base = 1_700_000_000 * S;
        assert_eq!(st.offer(&rule, "", base), None);
        assert_eq!(st.offer(&rule, "", base + 3600 * S), None, "an hour later");
        assert_eq!(st.offer(&rule, "", base + 50 * S), None);
        // arrives last, happened between the first two: three within 60 s
        let hit = st
            .offer(&rule, "", base + 20 * S)
            .expect("late event completes the window");
        assert_eq!((hit.count, hit.from, hit.to), (3, base, base + 50 * S));
        // spread out events never fire
        let mut st = RuleState::for_version(1);
        for i in 0..10 {
            assert_eq!(st.offer(&rule, "", base + i * 61 * S), None);
        }
    }

    #[test]
    fn single_event_rules_fire_each_time_unless_suppressed_and_groups_are_bounded() {
        let rule = compiled(json!({"name": "lock", "group_by": "actor.id", "suppress_secs": 60}));
        let mut st = RuleState::for_version(1);
        assert!(st.offer(&rule, "a", 100 * S).is_some());
        assert!(st.offer(&rule, "a", 130 * S).is_none());
        assert!(st.offer(&rule, "b", 130 * S).is_some());
        assert!(st.offer(&rule, "a", 161 * S).is_some());
        for i in 0..(MAX_GROUPS + 10) {
            st.offer(&rule, &format!("g{i}"), 1000 * S);
        }
        assert_eq!(st.groups.len(), MAX_GROUPS);
    }
}
