//! Checking a raw definition into the model, with errors naming file and key. `build` checks
//! the tables in one fixed order (a file with several faults always reports the same one
//! first); the larger sections it calls live beside it: `auth`, `paging`, `mapping` and
//! `webhook`.

mod auth;
mod mapping;
mod paging;
mod webhook;
mod window;

use std::collections::BTreeMap;

use super::model::{
    Auth, Connector, CursorKind, CursorSpec, FieldKind, FieldSpec, HttpMethod, Order, Pagination,
    RateLimitSpec, RecordsSpec, RequestSpec, SinceSpec,
};
use super::raw::{PaginationKind, RawDefinition, RawField};
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
        crate::schedule::parse_schedule(&raw.default_schedule)
            .map_err(|m| self.err("default_schedule", m))?;
        let default_backfill = self.duration("default_backfill", &raw.default_backfill)?;
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
        let config_names: Vec<&str> = config.iter().map(|f| f.name.as_str()).collect();
        let credential_names: Vec<&str> = credentials.iter().map(|f| f.name.as_str()).collect();
        let request_scope = TemplateScope {
            config: &config_names,
            credentials: &[],
            time: false,
        };
        let auth_scope = TemplateScope {
            config: &config_names,
            credentials: &credential_names,
            time: false,
        };
        let auth = self.auth(raw.auth, &config_names, &credential_names)?;
        if let Some(t) = auth.token_url() {
            // the host a secret is sent to must be set by a URL field (validated, and guarded
            // against silent changes) or fixed in the definition, never by a text field
            let by_url_field = t.leading_config().is_some_and(|name| {
                config
                    .iter()
                    .any(|f| f.name == name && f.kind == FieldKind::Url)
            });
            let fixed = t.literal_prefix().is_some_and(|p| {
                p.to_ascii_lowercase().starts_with("https://") && p[8..].contains('/')
            });
            if !by_url_field && !fixed {
                return Err(self.err(
                    "auth.token_url",
                    "must start with a URL config field (`{config.x}` where x has `kind = \"url\"`) or a fixed https:// URL with its path",
                ));
            }
        }
        if raw.pagination.kind != PaginationKind::Offset
            && (raw.pagination.unit.is_some() || raw.pagination.start.is_some())
        {
            return Err(self.err("pagination", "`unit` and `start` apply only to kind offset"));
        }
        let pagination_more = raw
            .pagination
            .more
            .as_deref()
            .map(|p| self.path("pagination.more", p))
            .transpose()?;
        let pagination = self.pagination(raw.pagination)?;
        let body = match (raw.request.method, raw.request.body.take()) {
            (HttpMethod::Get, Some(_)) => {
                return Err(self.err("request.body", "applies only to method POST"))
            }
            (HttpMethod::Get, None) => serde_json::Map::new(),
            (HttpMethod::Post, b) => {
                if !raw.request.query.is_empty() {
                    return Err(self.err(
                        "request.query",
                        "method POST sends its parameters in `request.body`",
                    ));
                }
                if !matches!(pagination, Pagination::BodyCursor { .. } | Pagination::None) {
                    return Err(self.err(
                        "pagination.kind",
                        "method POST pages with body_cursor (its `param` is a body field) or none",
                    ));
                }
                match serde_json::to_value(b.unwrap_or_default()) {
                    Ok(serde_json::Value::Object(m)) => m,
                    _ => return Err(self.err("request.body", "must be a table")),
                }
            }
        };
        let auth_templates = match &auth {
            Auth::Header { header, value } => {
                if header.is_empty() {
                    return Err(self.err("auth.header", "must name a header"));
                }
                vec![self.template("auth.value", value, &auth_scope)?]
            }
            Auth::Basic { username, password } => vec![
                self.template("auth.username", username, &auth_scope)?,
                self.template("auth.password", password, &auth_scope)?,
            ],
            // its templates live in the spec
            Auth::OAuth2ClientCredentials(_) | Auth::OAuth2JwtBearer(_) => Vec::new(),
        };
        let mut query = Vec::new();
        for (k, v) in &raw.request.query {
            query.push((
                k.clone(),
                self.template(&format!("request.query.{k}"), v, &request_scope)?,
            ));
        }
        let mut headers = Vec::new();
        for (k, v) in &raw.request.headers {
            if k.eq_ignore_ascii_case("authorization") {
                return Err(self.err(
                    &format!("request.headers.{k}"),
                    "credentials go in [auth], never in plain headers",
                ));
            }
            headers.push((
                k.clone(),
                self.template(&format!("request.headers.{k}"), v, &request_scope)?,
            ));
        }
        let path = self.template("request.path", &raw.request.path, &request_scope)?;
        let path_choice = match &raw.request.path_choice {
            None => None,
            Some(choice) => {
                let field = config
                    .iter()
                    .find(|f| f.name == choice.config)
                    .ok_or_else(|| {
                        self.err(
                            "request.path_choice.config",
                            format!("no config field {:?} is declared", choice.config),
                        )
                    })?;
                if field.choices.is_empty() {
                    return Err(self.err(
                        "request.path_choice.config",
                        format!("config field {:?} must declare `choices`", field.name),
                    ));
                }
                let mut paths = BTreeMap::new();
                for c in &field.choices {
                    let text = choice.paths.get(c).ok_or_else(|| {
                        self.err(
                            "request.path_choice.paths",
                            format!("no path for the choice {c:?}"),
                        )
                    })?;
                    let key = format!("request.path_choice.paths.{c}");
                    if !text.starts_with('/') {
                        return Err(self.err(&key, "must start with `/`"));
                    }
                    paths.insert(c.clone(), self.template(&key, text, &request_scope)?);
                }
                if let Some(extra) = choice.paths.keys().find(|k| !field.choices.contains(k)) {
                    return Err(self.err(
                        &format!("request.path_choice.paths.{extra}"),
                        format!(
                            "{extra:?} is not one of the choices of config.{}",
                            field.name
                        ),
                    ));
                }
                Some((field.name.clone(), paths))
            }
        };
        if !raw.request.path.starts_with('/') {
            return Err(self.err("request.path", "must start with `/`"));
        }
        let since_template = self.template(
            "request.since.template",
            &raw.request.since.template,
            &TemplateScope {
                config: &config_names,
                credentials: &[],
                time: true,
            },
        )?;
        if !since_template.uses_time() {
            return Err(self.err("request.since.template", "must contain `{time}`"));
        }
        let until = self.until(&raw.request, raw.cursor.kind, &config_names)?;
        if let Pagination::BodyCursor { param, .. } = &pagination {
            if param.is_empty() {
                return Err(self.err("pagination.param", "must name a query parameter"));
            }
        }
        if raw.cursor.kind == CursorKind::NextLink {
            if raw.cursor.order != Order::Ascending {
                return Err(self.err("cursor.order", "a `next_link` cursor needs `ascending` order: a newest-first walk cannot be resumed from its last link"));
            }
            if pagination == Pagination::None {
                return Err(self.err("cursor.kind", "a `next_link` cursor needs pagination"));
            }
        }
        let overlap = self.duration("cursor.overlap", &raw.cursor.overlap)?;
        if raw.rate_limit.requests_per_minute == 0 {
            return Err(self.err("rate_limit.requests_per_minute", "must be at least 1"));
        }
        let rate_limit = RateLimitSpec {
            requests_per_minute: raw.rate_limit.requests_per_minute,
            burst: raw.rate_limit.burst.unwrap_or(1).max(1),
            remaining_header: raw.rate_limit.remaining_header,
            reset_header: raw.rate_limit.reset_header,
            reset_format: raw.rate_limit.reset_format,
            body_markers: raw
                .rate_limit
                .body_markers
                .iter()
                .map(|m| m.to_lowercase())
                .collect(),
            default_wait: self.duration("rate_limit.default_wait", &raw.rate_limit.default_wait)?,
            scope: raw.rate_limit.scope,
        };
        let records = RecordsSpec {
            path: if raw.records.path.is_empty() {
                None
            } else {
                let path = self.path("records.path", &raw.records.path)?;
                if !path.is_plain() {
                    return Err(self.err("records.path", "must be plain keys (no `{...}`)"));
                }
                Some(path)
            },
            error_flag: raw
                .records
                .error_flag
                .as_deref()
                .map(|p| self.path("records.error_flag", p))
                .transpose()?,
            error_message: raw
                .records
                .error_message
                .as_deref()
                .map(|p| self.path("records.error_message", p))
                .transpose()?,
            credential_errors: raw.records.credential_errors,
            cursor_errors: raw.records.cursor_errors,
        };
        if !records.cursor_errors.is_empty() && records.error_message.is_none() {
            return Err(self.err(
                "records.cursor_errors",
                "needs `error_flag` and `error_message` to find the vendor's error code",
            ));
        }
        if !records.credential_errors.is_empty() && records.error_message.is_none() {
            return Err(self.err(
                "records.credential_errors",
                "needs `error_flag` and `error_message` to find the vendor's error code",
            ));
        }
        let map = self.mapping(raw.map)?;
        let webhook = raw
            .webhook
            .map(|w| self.webhook(w, &credentials))
            .transpose()?;
        Ok(Connector {
            name: raw.name,
            title: raw.title,
            file: self.file.to_string(),
            default_schedule: raw.default_schedule,
            default_backfill,
            default_backfill_text: raw.default_backfill,
            retention,
            config,
            credentials,
            auth,
            auth_templates,
            request: RequestSpec {
                path,
                path_choice,
                method: raw.request.method,
                body,
                query,
                headers,
                since: SinceSpec {
                    param: raw.request.since.param,
                    template: since_template,
                    format: raw.request.since.format,
                },
                until,
            },
            pagination,
            pagination_more,
            cursor: CursorSpec {
                kind: raw.cursor.kind,
                order: raw.cursor.order,
                overlap,
            },
            rate_limit,
            records,
            map,
            webhook,
            push_only: raw.push_only,
        })
    }
}
