//! Checking a raw definition into the model, with errors naming file and key. `build` checks
//! the tables in one fixed order (a file with several faults always reports the same one
//! first): which parts the file has (polled, pushed, or both), what every connector has, then
//! each part. The larger sections it calls live beside it: `poll` (with `auth`, `paging`,
//! `window` and `mapping`) and `webhook`.

mod auth;
mod mapping;
mod paging;
mod poll;
mod webhook;
mod window;

use std::sync::Arc;

use super::model::{Connector, FieldKind, FieldSpec};
use super::raw::{RawDefinition, RawField};
use super::DefinitionError;
use crate::connectors::path::{JsonPath, PathList};
use crate::connectors::template::{Template, TemplateScope};
use crate::time::Micros;

pub(super) struct Validator<'a> {
    pub(super) file: &'a str,
}

impl Validator<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> DefinitionError {
        DefinitionError {
            file: self.file.to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    fn duration(&self, key: &str, text: &str) -> Result<Micros, DefinitionError> {
        crate::connectors::iso_duration(text)
            .ok_or_else(|| self.err(key, format!("not an ISO 8601 duration: {text:?}")))
    }

    fn template(
        &self,
        key: &str,
        text: &str,
        scope: &TemplateScope<'_>,
    ) -> Result<Template, DefinitionError> {
        Template::parse(text, scope).map_err(|m| self.err(key, m))
    }

    fn path(&self, key: &str, text: &str) -> Result<JsonPath, DefinitionError> {
        JsonPath::parse(text).map_err(|m| self.err(key, m))
    }

    fn paths(&self, key: &str, list: PathList) -> Result<PathList, DefinitionError> {
        list.validated().map_err(|m| self.err(key, m))
    }

    fn opt_paths(
        &self,
        key: &str,
        list: Option<PathList>,
    ) -> Result<Option<PathList>, DefinitionError> {
        list.map(|l| self.paths(key, l)).transpose()
    }

    fn fields(
        &self,
        key: &str,
        raw: Vec<RawField>,
        credentials: bool,
    ) -> Result<Vec<FieldSpec>, DefinitionError> {
        let mut out: Vec<FieldSpec> = Vec::new();
        for (i, f) in raw.into_iter().enumerate() {
            let k = format!("{key}[{i}]");
            if f.name.is_empty()
                || !f
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(self.err(&format!("{k}.name"), "must be lowercase snake_case"));
            }
            if out.iter().any(|o| o.name == f.name) {
                return Err(self.err(
                    &format!("{k}.name"),
                    format!("{:?} is declared twice", f.name),
                ));
            }
            if f.required && f.default.is_some() {
                return Err(self.err(&format!("{k}.default"), "a required field takes no default"));
            }
            if let Some(d) = &f.default {
                if !f.choices.is_empty() && !f.choices.contains(d) {
                    return Err(self.err(
                        &format!("{k}.default"),
                        format!("{d:?} is not one of `choices`"),
                    ));
                }
            }
            let kind = match (f.name.as_str(), f.kind) {
                ("base_url", None | Some(FieldKind::Url)) => FieldKind::Url,
                ("base_url", Some(FieldKind::Text)) => {
                    return Err(self.err(&format!("{k}.kind"), "`base_url` is always a URL"))
                }
                (_, kind) => kind.unwrap_or(FieldKind::Text),
            };
            if kind == FieldKind::Url && !f.choices.is_empty() {
                return Err(self.err(&format!("{k}.choices"), "a URL field takes no `choices`"));
            }
            if let (FieldKind::Url, Some(d)) = (kind, &f.default) {
                if !d.starts_with("https://") {
                    return Err(self.err(
                        &format!("{k}.default"),
                        "a URL field's default must be an https:// URL",
                    ));
                }
            }
            if !credentials && f.secret.is_some() {
                return Err(self.err(
                    &format!("{k}.secret"),
                    "applies to credentials only (config values are shown to viewers)",
                ));
            }
            out.push(FieldSpec {
                name: f.name,
                required: f.required,
                description: f.description,
                default: f.default,
                choices: f.choices,
                kind,
                secret: credentials && f.secret.unwrap_or(true),
            });
        }
        Ok(out)
    }

    pub(super) fn build(&self, mut raw: RawDefinition) -> Result<Connector, DefinitionError> {
        // which parts the file has comes first: a part missing a key, or no part at all, says
        // more than any fault inside one (`push_only = true` beside a polling key was refused
        // by `parse`, whatever the key held)
        let polling = raw.polling_keys();
        let poll = raw.take_poll().map_err(|key| {
            self.err(
                key,
                format!(
                    "missing: this file writes polling keys ({}), and a polled connector needs all of them",
                    polling.join(", ")
                ),
            )
        })?;
        match (&poll, &raw.webhook, raw.push_only) {
            (None, None, _) => {
                return Err(self.err(
                    "(file)",
                    "a connector is polled (default_schedule, default_backfill, [auth], [request], [pagination], [cursor], [rate_limit], [records], [map]), receives webhooks ([webhook]), or both: this file has neither",
                ))
            }
            (None, Some(_), Some(false)) => {
                return Err(self.err(
                    "push_only",
                    "false, but the file writes none of the polling keys (default_schedule, [auth], [request], ...)",
                ))
            }
            _ => {}
        }
        if raw.name.is_empty()
            || !raw
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            || !raw.name.starts_with(|c: char| c.is_ascii_lowercase())
        {
            return Err(self.err(
                "name",
                "must be a lowercase vendor noun, e.g. `okta` (or `vendor_stream`: `entra_signins`)",
            ));
        }
        if let Some(stem) = std::path::Path::new(self.file)
            .file_stem()
            .and_then(|s| s.to_str())
        {
            if stem != raw.name && self.file.ends_with(".toml") {
                return Err(self.err(
                    "name",
                    format!("{:?} does not match the file name {stem:?}", raw.name),
                ));
            }
        }
        let retention = raw
            .retention
            .as_deref()
            .map(|r| self.duration("retention", r))
            .transpose()?;
        let config = self.fields("config", raw.config, false)?;
        if !config.iter().any(|f| f.name == "base_url") {
            return Err(self.err("config", "every connector declares `base_url`"));
        }
        let credentials = self.fields("credentials", raw.credentials, true)?;
        if let Some(i) = credentials.iter().position(|f| f.kind == FieldKind::Url) {
            return Err(self.err(
                &format!("credentials[{i}].kind"),
                "only config fields are URLs (a URL says where credentials go; it is not one)",
            ));
        }
        let poll = poll
            .map(|p| self.poll(p, &config, &credentials))
            .transpose()?;
        let webhook = raw
            .webhook
            .map(|w| self.webhook(w, &credentials))
            .transpose()?;
        if let (None, Some(w)) = (&poll, &webhook) {
            // a nudge asks for a poll, and records that are not unified go through the
            // poll part's `[map]`
            if !w.unified || w.records.is_none() {
                return Err(self.err(
                    "webhook",
                    "a push-only connector (no polling keys) needs a [webhook] table with `records` and `unified = true`",
                ));
            }
        }
        Ok(Connector {
            name: raw.name,
            title: raw.title,
            file: self.file.to_string(),
            retention,
            config,
            credentials,
            poll: poll.map(Arc::new),
            webhook,
        })
    }
}
