//! The poll part: the polling keys of a file (`default_schedule`, `default_backfill`, `[auth]`,
//! `[request]`, `[pagination]`, `[cursor]`, `[rate_limit]`, `[records]`, `[map]`) checked into a
//! `Poll`, in one fixed order.

use std::collections::BTreeMap;

use super::Validator;
use crate::connectors::definition::model::{
    Auth, CursorKind, CursorSpec, FieldKind, FieldSpec, HttpMethod, Order, Pagination, Poll,
    RateLimitSpec, RecordsSpec, RequestSpec, SinceSpec,
};
use crate::connectors::definition::raw::{PaginationKind, RawPoll};
use crate::connectors::definition::DefinitionError;
use crate::connectors::template::TemplateScope;

impl Validator<'_> {
    /// The poll part, checked against the connector's config and credential fields.
    pub(super) fn poll(
        &self,
        mut raw: RawPoll,
        config: &[FieldSpec],
        credentials: &[FieldSpec],
    ) -> Result<Poll, DefinitionError> {
        crate::schedule::parse_schedule(&raw.default_schedule)
            .map_err(|m| self.err("default_schedule", m))?;
        let default_backfill = self.duration("default_backfill", &raw.default_backfill)?;
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
        Ok(Poll {
            default_schedule: raw.default_schedule,
            default_backfill,
            default_backfill_text: raw.default_backfill,
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
            map: self.mapping(raw.map)?,
        })
    }
}
