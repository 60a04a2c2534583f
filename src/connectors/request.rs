//! The request a definition describes: the first page's URL (path, query, the since and until
//! parameters), its headers and auth (header, basic, or an OAuth2 bearer fetched as needed), and
//! the rule that credentials go only to the configured hosts
//!
//! Methods of `Transport`, kept apart from sending and classifying answers (`transport.rs`).

use std::time::Duration;

use super::definition::{Auth, HttpMethod, TimeParamFormat};
use super::oauth::{self, TokenError};
use super::paging::PostPosition;
use super::template::{escape_path_segment, no_escape, Values};
use super::transport::{Attempt, CycleError, Transport};
use crate::time::{Micros, MICROS_PER_SEC};

impl Transport {
    fn values<'a>(&'a self, time: Option<&'a str>) -> Values<'a> {
        Values {
            config: &self.config,
            credentials: Some(&self.credentials),
            time,
        }
    }

    fn base_url(&self) -> Result<reqwest::Url, CycleError> {
        let text = self
            .config
            .get("base_url")
            .ok_or_else(|| CycleError::Config("config.base_url is not set".into()))?;
        super::outbound::check_url(text, self.allow_insecure_http)
            .map_err(|m| CycleError::Config(format!("config.base_url: {m}")))
    }

    /// Every URL field must pass the outbound rule before anything is sent (a record saved
    /// before the rule, or edited on disk, must not send credentials in the clear).
    pub(super) fn check_outbound(&self) -> Result<(), CycleError> {
        super::outbound::check_config(&self.connector, &self.config, self.allow_insecure_http)
            .map_err(|(field, m)| CycleError::Config(format!("{field}: {m}")))
    }

    /// Whether a URL is one credentials may go to: an origin of one of the URL fields.
    pub(super) fn allowed_destination(&self, url: &reqwest::Url) -> bool {
        let wanted = super::outbound::origin(url);
        super::outbound::origins(&self.connector, &self.config)
            .values()
            .any(|o| *o == wanted)
    }

    /// The first request of a walk: the definition's path and query, plus the since parameter,
    /// and for a window (`request.until`) the until parameter.
    pub fn first_url(&self, since: Micros, until: Option<Micros>) -> Result<String, CycleError> {
        let mut url = self.base_url()?;
        let c = &self.poll.request;
        let path_template = c
            .path_choice
            .as_ref()
            .and_then(|(field, paths)| paths.get(self.config.get(field)?))
            .unwrap_or(&c.path);
        let path = path_template
            .render(&self.values(None), escape_path_segment)
            .ok_or_else(|| {
                CycleError::Config("request.path needs a config value that is not set".into())
            })?;
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        if c.method == HttpMethod::Post {
            // the body carries the time: the position is kept in the fragment (never sent)
            let time = format_time_param(since, c.since.format);
            let v = c
                .since
                .template
                .render(&self.values(Some(&time)), no_escape)
                .unwrap_or(time);
            url.set_fragment(Some(&super::paging::post_position(PostPosition::Since, &v)));
            return Ok(url.to_string());
        }
        {
            let mut q = url.query_pairs_mut();
            for (k, t) in &c.query {
                if let Some(v) = t.render(&self.values(None), no_escape) {
                    q.append_pair(k, &v);
                }
            }
            let time = format_time_param(since, c.since.format);
            if let Some(v) = c
                .since
                .template
                .render(&self.values(Some(&time)), no_escape)
            {
                q.append_pair(&c.since.param, &v);
            }
            if let (Some(spec), Some(until)) = (&c.until, until) {
                let time = format_time_param(until, spec.format);
                if let Some(v) = spec.template.render(&self.values(Some(&time)), no_escape) {
                    q.append_pair(&spec.param, &v);
                }
            }
        }
        Ok(url.to_string())
    }

    /// Only links to the configured host are followed: credentials never go elsewhere.
    pub(super) fn same_origin(&self, link: &str) -> Option<String> {
        let base = self.base_url().ok()?;
        let url = base.join(link).ok()?;
        if url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default()
        {
            Some(url.to_string())
        } else {
            tracing::warn!(integration = %self.id(), "next link points at another host; not followed");
            None
        }
    }

    pub(super) fn request(&self, url: &str) -> Result<reqwest::RequestBuilder, CycleError> {
        let mut req = match self.poll.request.method {
            HttpMethod::Get => self.http.get(url),
            HttpMethod::Post => {
                let (endpoint, body) = super::paging::post_request(&self.poll, url)
                    .map_err(|e| CycleError::Config(e.0))?;
                self.http.post(endpoint).json(&body)
            }
        };
        for (name, t) in &self.poll.request.headers {
            if let Some(v) = t.render(&self.values(None), no_escape) {
                req = req.header(name.as_str(), v);
            }
        }
        let missing = || CycleError::Config("a credential the connector needs is not set".into());
        req = match &self.poll.auth {
            Auth::Header { header, .. } => {
                let value = self.poll.auth_templates[0]
                    .render(&self.values(None), no_escape)
                    .ok_or_else(missing)?;
                let mut hv = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                    CycleError::Config("a credential holds characters a header cannot".into())
                })?;
                hv.set_sensitive(true);
                req.header(header.as_str(), hv)
            }
            // the bearer token is added by `attempt` (fetching it is async)
            Auth::OAuth2ClientCredentials(_) | Auth::OAuth2JwtBearer(_) => req,
            Auth::Basic { .. } => {
                let user = self.poll.auth_templates[0]
                    .render(&self.values(None), no_escape)
                    .ok_or_else(missing)?;
                let pass = self.poll.auth_templates[1]
                    .render(&self.values(None), no_escape)
                    .ok_or_else(missing)?;
                req.basic_auth(user, Some(pass))
            }
        };
        Ok(req)
    }
}

// OAuth2: a bearer header for a request, or what the attempt should do instead.
impl Transport {
    fn token_request(&self) -> Result<oauth::TokenRequest, TokenError> {
        let values = Values {
            config: &self.config,
            credentials: Some(&self.credentials),
            time: None,
        };
        let request = oauth::token_request(&self.integration.id, &self.poll.auth, &values)?;
        // the secret goes only to https (or an allowed loopback http) at a URL field's origin
        let url = super::outbound::check_destination(request.token_url(), self.allow_insecure_http)
            .map_err(|m| TokenError::Config(format!("auth.token_url: {m}")))?;
        let fixed = self
            .poll
            .auth
            .token_url()
            .and_then(|t| t.literal_prefix())
            .and_then(|p| reqwest::Url::parse(p).ok())
            .is_some_and(|u| super::outbound::origin(&u) == super::outbound::origin(&url));
        if !fixed && !self.allowed_destination(&url) {
            return Err(TokenError::Config(
                "auth.token_url: its host is not the host of a URL field".into(),
            ));
        }
        Ok(request)
    }

    /// `Authorization: Bearer <token>` (marked sensitive), fetching the token if needed.
    pub(super) async fn oauth2_bearer(&self) -> Result<reqwest::header::HeaderValue, Attempt> {
        let result = match self.token_request() {
            Ok(r) => r.token(&self.http).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(token) => {
                // scrubbed from whatever the vendor answers with it from now on
                self.learn_secret(&token);
                let mut hv = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| {
                        Attempt::Transient(
                            "the access token holds characters a header cannot".into(),
                        )
                    })?;
                hv.set_sensitive(true);
                Ok(hv)
            }
            // the OAuth error code is the vendor's text: it may echo the secret
            Err(TokenError::Rejected(m)) => Err(Attempt::Fatal(CycleError::CredentialsRejected(
                self.scrub(&m),
            ))),
            Err(TokenError::Config(m)) => Err(Attempt::Fatal(CycleError::Config(self.scrub(&m)))),
            Err(TokenError::Transient(m)) => Err(Attempt::Transient(self.scrub(&m))),
            Err(TokenError::RateLimited(wait, why)) => Err(Attempt::RateLimited(
                wait.unwrap_or(Duration::from_micros(
                    self.poll.rate_limit.default_wait.max(0) as u64,
                )),
                why,
            )),
        }
    }

    /// Drops the integration's cached token (the API refused it).
    pub(super) fn forget_oauth2_token(&self) {
        if let Ok(r) = self.token_request() {
            r.invalidate();
        }
    }
}

/// The smallest step a time written in `format` can tell apart.
pub fn time_param_step(format: TimeParamFormat) -> Micros {
    match format {
        TimeParamFormat::Date => 86_400 * MICROS_PER_SEC,
        TimeParamFormat::EpochSeconds => MICROS_PER_SEC,
        TimeParamFormat::Rfc3339 | TimeParamFormat::EpochMillis => 1000,
    }
}

pub fn format_time_param(t: Micros, format: TimeParamFormat) -> String {
    use chrono::{TimeZone, Utc};
    match format {
        TimeParamFormat::Date => Utc
            .timestamp_micros(t)
            .single()
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| "1970-01-01".into()),
        TimeParamFormat::Rfc3339 => Utc
            .timestamp_micros(t)
            .single()
            .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
            .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into()),
        TimeParamFormat::EpochSeconds => t.div_euclid(MICROS_PER_SEC).to_string(),
        TimeParamFormat::EpochMillis => t.div_euclid(1000).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_params() {
        let t = 1_723_564_700_353_000;
        assert_eq!(format_time_param(t, TimeParamFormat::Date), "2024-08-13");
        assert_eq!(
            format_time_param(t, TimeParamFormat::Rfc3339),
            "2024-08-13T15:58:20.353Z"
        );
        assert_eq!(
            format_time_param(t, TimeParamFormat::EpochSeconds),
            "1723564700"
        );
        assert_eq!(
            format_time_param(t, TimeParamFormat::EpochMillis),
            "1723564700353"
        );
    }
}
