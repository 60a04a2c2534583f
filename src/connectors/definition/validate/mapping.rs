//! `[map]`: how a vendor record becomes a unified event — paths, lookups into the closed
//! vocabularies, targets, changes and classification rules.

use std::collections::BTreeMap;

use super::Validator;
use crate::connectors::definition::model::{
    ActorSpec, ChangesSpec, Lookup, Mapping, OutcomeSpec, Rule, TargetSpec,
};
use crate::connectors::definition::raw::{RawLookup, RawMap};
use crate::connectors::definition::DefinitionError;
use crate::schema::{ActorType, Severity};

fn any_text(s: &str) -> Option<String> {
    Some(s.to_string())
}

impl Validator<'_> {
    fn lookup<T: Clone>(
        &self,
        key: &str,
        raw: RawLookup,
        parse: fn(&str) -> Option<T>,
        expected: &str,
    ) -> Result<Lookup<T>, DefinitionError> {
        let one = |k: &str, s: &str| {
            parse(s).ok_or_else(|| self.err(k, format!("{s:?} is not one of {expected}")))
        };
        if !raw.present.is_empty() {
            if raw.value.is_some() || raw.path.is_some() || !raw.table.is_empty() {
                return Err(self.err(key, "`present` takes no `value`, `path` or `table`"));
            }
            let mut entries = Vec::new();
            for (i, p) in raw.present.iter().enumerate() {
                let k = format!("{key}.present[{i}]");
                entries.push((
                    self.path(&format!("{k}.path"), &p.path)?,
                    one(&format!("{k}.value"), &p.value)?,
                ));
            }
            let default = one(
                &format!("{key}.default"),
                raw.default.as_deref().unwrap_or("unknown"),
            )?;
            return Ok(Lookup::Present { entries, default });
        }
        match (raw.value, raw.path) {
            (Some(v), None) => {
                if !raw.table.is_empty() || raw.default.is_some() {
                    return Err(self.err(key, "`value` takes no `table` or `default`"));
                }
                Ok(Lookup::Value(one(&format!("{key}.value"), &v)?))
            }
            (None, Some(path)) => {
                let mut table = BTreeMap::new();
                for (k, v) in &raw.table {
                    table.insert(k.clone(), one(&format!("{key}.table.{k}"), v)?);
                }
                let default = one(
                    &format!("{key}.default"),
                    raw.default.as_deref().unwrap_or("unknown"),
                )?;
                Ok(Lookup::Path {
                    path: self.paths(&format!("{key}.path"), path)?,
                    table,
                    default,
                    parse,
                })
            }
            _ => Err(self.err(key, "give exactly one of `value`, `path` or `present`")),
        }
    }

    pub(super) fn mapping(&self, m: RawMap) -> Result<Mapping, DefinitionError> {
        let a = m.actor;
        let actor = ActorSpec {
            id: self.paths("map.actor.id", a.id)?,
            name: self.opt_paths("map.actor.name", a.name)?,
            email: self.opt_paths("map.actor.email", a.email)?,
            kind: match a.kind {
                Some(k) => self.lookup(
                    "map.actor.type",
                    k,
                    ActorType::parse,
                    &ActorType::expected(),
                )?,
                None => Lookup::Value(ActorType::Unknown),
            },
            ip: self.opt_paths("map.actor.ip", a.ip)?,
            user_agent: self.opt_paths("map.actor.user_agent", a.user_agent)?,
            city: self.opt_paths("map.actor.city", a.city)?,
            region: self.opt_paths("map.actor.region", a.region)?,
            country: self.opt_paths("map.actor.country", a.country)?,
            latitude: self.opt_paths("map.actor.latitude", a.latitude)?,
            longitude: self.opt_paths("map.actor.longitude", a.longitude)?,
        };
        let mut targets = Vec::new();
        for (i, t) in m.targets.into_iter().enumerate() {
            let k = format!("map.targets[{i}]");
            targets.push(TargetSpec {
                each: t
                    .each
                    .as_deref()
                    .map(|p| self.path(&format!("{k}.each"), p))
                    .transpose()?,
                kind: self.lookup(&format!("{k}.type"), t.kind, any_text, "any text")?,
                id: self.paths(&format!("{k}.id"), t.id)?,
                name: self.opt_paths(&format!("{k}.name"), t.name)?,
            });
        }
        let mut changes = Vec::new();
        for (i, c) in m.changes.into_iter().enumerate() {
            let k = format!("map.changes[{i}]");
            let (list, field) = match (c.list.as_deref(), c.field.as_deref()) {
                (Some(l), Some(f)) => (
                    Some((
                        self.path(&format!("{k}.list"), l)?,
                        self.path(&format!("{k}.field"), f)?,
                    )),
                    None,
                ),
                (None, None) => (None, None),
                (Some(_), None) => {
                    return Err(self.err(&format!("{k}.field"), "is required with `list`"))
                }
                (None, Some(f)) => (None, Some(self.path(&format!("{k}.field"), f)?)),
            };
            changes.push(ChangesSpec {
                list,
                field,
                each: c
                    .each
                    .as_deref()
                    .map(|p| self.path(&format!("{k}.each"), p))
                    .transpose()?,
                old: self.path(&format!("{k}.old"), &c.old)?,
                new: self.path(&format!("{k}.new"), &c.new)?,
            });
        }
        let mut rules = Vec::new();
        for (i, r) in m.classify.into_iter().enumerate() {
            if r.patterns.is_empty() || r.patterns.iter().any(|p| p.is_empty()) {
                return Err(self.err(
                    &format!("map.classify[{i}].match"),
                    "needs at least one non-empty pattern",
                ));
            }
            rules.push(Rule {
                patterns: r.patterns,
                category: r.category,
                action: r.action,
                outcome: r.outcome,
                severity: r.severity,
            });
        }
        if m.event_type.is_none() && m.default_event_type.is_none() {
            return Err(self.err(
                "map.event_type",
                "give `event_type` paths, a `default_event_type`, or both",
            ));
        }
        if m.default_event_type.as_deref() == Some("") {
            return Err(self.err("map.default_event_type", "must not be empty"));
        }
        if m.outcome.path.is_none()
            && (!m.outcome.success.is_empty() || !m.outcome.failure.is_empty())
        {
            return Err(self.err("map.outcome", "`success`/`failure` values need a `path`"));
        }
        Ok(Mapping {
            source_id: self.paths("map.source_id", m.source_id)?,
            source_id_join: m
                .source_id_join
                .iter()
                .enumerate()
                .map(|(i, p)| self.path(&format!("map.source_id_join[{i}]"), p))
                .collect::<Result<_, _>>()?,
            event_type: self.opt_paths("map.event_type", m.event_type)?,
            default_event_type: m.default_event_type,
            time: self.paths("map.time.path", m.time.path)?,
            time_format: m.time.format,
            description: self.opt_paths("map.description", m.description)?,
            session_id: self.opt_paths("map.session_id", m.session_id)?,
            severity: match m.severity {
                Some(s) => {
                    self.lookup("map.severity", s, Severity::parse, &Severity::expected())?
                }
                None => Lookup::Value(Severity::Info),
            },
            default_category: m.default_category,
            default_action: m.default_action,
            actor,
            targets,
            changes,
            outcome: OutcomeSpec {
                path: self.opt_paths("map.outcome.path", m.outcome.path)?,
                success: m.outcome.success,
                failure: m.outcome.failure,
                default: m.outcome.default,
            },
            rules,
        })
    }
}
