//! `auth.kind = "oauth2_client_credentials"`: access tokens from a token endpoint (the `oauth2`
//! crate's client credentials grant), cached per integration and credential set, fetched again
//! shortly before they expire and once when the API answers 401
//!
//! Tokens and client secrets are never logged or put in an error message: errors carry only
//! the token endpoint's status and its OAuth `error` code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, RequestTokenError, Scope,
    TokenResponse, TokenUrl,
};
use sha2::{Digest, Sha256};

use super::definition::{Auth, ClientAuth, JwtBearerSpec, OAuth2Spec};
use super::template::{no_escape, Values};

/// A token is refreshed when less than this is left of its life (or a tenth of it, if shorter).
const REFRESH_BEFORE: Duration = Duration::from_secs(120);
/// Lifetime assumed when the token endpoint gives no `expires_in`.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);
/// Largest token response read.
const MAX_TOKEN_BODY: usize = 1024 * 1024;

/// The token endpoint's status and Retry-After, as last answered.
type Seen = Option<(u16, Option<Duration>)>;

struct Cached {
    token: String,
    refresh_at: Instant,
}

/// Tokens by (integration, fingerprint of the rendered client settings): a credential change
/// makes a new key, so a rotated secret never reuses the old token.
fn cache() -> &'static Mutex<HashMap<String, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The token endpoint's settings for one integration, rendered from the definition.
pub struct TokenRequest {
    key: String,
    token_url: String,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
    audience: Option<String>,
    client_auth: ClientAuth,
    /// Set for the JWT bearer grant (then client_id and client_secret are empty).
    jwt: Option<JwtParts>,
}

struct JwtParts {
    issuer: String,
    subject: Option<String>,
    private_key: String,
}

/// RFC 7523's grant type.
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime asked for in a JWT assertion (Google's maximum).
const ASSERTION_LIFETIME_SECS: i64 = 3600;

/// Why no token was had.
#[derive(Debug)]
pub enum TokenError {
    /// The endpoint refused the client (400/401 `invalid_client`, `unauthorized_client`, ...).
    Rejected(String),
    /// Rate limited: wait this long (if said) and try again.
    RateLimited(Option<Duration>, String),
    /// 5xx, timeouts, connection faults, a body that does not parse: retry with backoff.
    Transient(String),
    /// The definition or configuration cannot make a request (a value unset, a bad URL).
    Config(String),
}

impl TokenRequest {
    /// Renders the spec; `None` names what is missing.
    pub fn new(
        integration: &str,
        spec: &OAuth2Spec,
        values: &Values<'_>,
    ) -> Result<TokenRequest, TokenError> {
        let render = |name: &str, t: &super::template::Template| {
            t.render(values, no_escape).ok_or_else(|| {
                TokenError::Config(format!(
                    "auth.{name} needs a config value or credential that is not set"
                ))
            })
        };
        let token_url = render("token_url", &spec.token_url)?;
        let client_id = render("client_id", &spec.client_id)?;
        let client_secret = render("client_secret", &spec.client_secret)?;
        let scope = spec
            .scope
            .as_ref()
            .map(|t| render("scope", t))
            .transpose()?;
        let audience = spec
            .audience
            .as_ref()
            .map(|t| render("audience", t))
            .transpose()?;
        let mut h = Sha256::new();
        for part in [
            integration,
            &token_url,
            &client_id,
            &client_secret,
            scope.as_deref().unwrap_or(""),
            audience.as_deref().unwrap_or(""),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        Ok(TokenRequest {
            key: hex::encode(h.finalize()),
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
            client_auth: spec.client_auth,
            jwt: None,
        })
    }

    /// Renders a JWT bearer spec.
    pub fn new_jwt(
        integration: &str,
        spec: &JwtBearerSpec,
        values: &Values<'_>,
    ) -> Result<TokenRequest, TokenError> {
        let render = |name: &str, t: &super::template::Template| {
            t.render(values, no_escape).ok_or_else(|| {
                TokenError::Config(format!(
                    "auth.{name} needs a config value or credential that is not set"
                ))
            })
        };
        let opt = |name: &str, t: &Option<super::template::Template>| {
            t.as_ref().map(|t| render(name, t)).transpose()
        };
        let token_url = render("token_url", &spec.token_url)?;
        let issuer = render("issuer", &spec.issuer)?;
        let private_key = render("private_key", &spec.private_key)?;
        let subject = opt("subject", &spec.subject)?;
        let scope = opt("scope", &spec.scope)?;
        let audience = opt("audience", &spec.audience)?;
        let mut h = Sha256::new();
        for part in [
            integration,
            &token_url,
            &issuer,
            &private_key,
            subject.as_deref().unwrap_or(""),
            scope.as_deref().unwrap_or(""),
            audience.as_deref().unwrap_or(""),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        Ok(TokenRequest {
            key: hex::encode(h.finalize()),
            token_url,
            client_id: String::new(),
            client_secret: String::new(),
            scope,
            audience,
            client_auth: ClientAuth::Body,
            jwt: Some(JwtParts {
                issuer,
                subject,
                private_key,
            }),
        })
    }

    /// RFC 7523: an RS256-signed assertion POSTed as `grant_type=...jwt-bearer&assertion=...`.
    async fn fetch_jwt(
        &self,
        http: &reqwest::Client,
        jwt: &JwtParts,
    ) -> Result<(String, Duration), TokenError> {
        #[derive(serde::Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            sub: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            scope: Option<&'a str>,
            aud: &'a str,
            iat: i64,
            exp: i64,
        }
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(jwt.private_key.as_bytes()).map_err(|_| {
                TokenError::Config("auth.private_key is not an RSA private key in PEM".into())
            })?;
        let now = crate::time::now_micros() / crate::time::MICROS_PER_SEC;
        let claims = Claims {
            iss: &jwt.issuer,
            sub: jwt.subject.as_deref(),
            scope: self.scope.as_deref(),
            aud: self.audience.as_deref().unwrap_or(&self.token_url),
            iat: now,
            exp: now + ASSERTION_LIFETIME_SECS,
        };
        let assertion = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .map_err(|_| TokenError::Config("the JWT assertion cannot be signed".into()))?;
        let response = http
            .post(&self.token_url)
            .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)])
            .send()
            .await
            .map_err(|e| {
                TokenError::Transient(if e.is_timeout() {
                    "token request timed out".into()
                } else {
                    "token request failed (connection error)".into()
                })
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .and_then(|s| Duration::try_from_secs_f64(s).ok());
        let body = response
            .bytes()
            .await
            .map_err(|_| TokenError::Transient("reading the token response failed".into()))?;
        if body.len() > MAX_TOKEN_BODY {
            return Err(TokenError::Transient("token response too large".into()));
        }
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        match status {
            200..=299 => {
                let token = parsed["access_token"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| {
                        TokenError::Transient("token response has no access_token".into())
                    })?;
                let lifetime = parsed["expires_in"]
                    .as_u64()
                    .filter(|s| *s > 0)
                    .map(Duration::from_secs)
                    .unwrap_or(DEFAULT_LIFETIME);
                Ok((token.to_string(), lifetime))
            }
            429 => Err(TokenError::RateLimited(
                retry_after,
                "token endpoint HTTP 429".into(),
            )),
            503 if retry_after.is_some() => Err(TokenError::RateLimited(
                retry_after,
                "token endpoint HTTP 503".into(),
            )),
            s if s >= 500 => Err(TokenError::Transient(format!("token endpoint HTTP {s}"))),
            s => {
                // the OAuth error code only (invalid_grant, unauthorized_client, ...)
                Err(TokenError::Rejected(
                    match parsed["error"].as_str().and_then(oauth_error_code) {
                        Some(code) => format!("token endpoint HTTP {s}: {code}"),
                        None => format!("token endpoint HTTP {s}"),
                    },
                ))
            }
        }
    }

    /// Forgets the cached token (the API answered 401 with it).
    /// Where the token is fetched (rendered from the definition and the integration's values).
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    pub fn invalidate(&self) {
        if let Ok(mut c) = cache().lock() {
            c.remove(&self.key);
        }
    }

    /// A valid access token: the cached one, or a new one from the token endpoint.
    pub async fn token(&self, http: &reqwest::Client) -> Result<String, TokenError> {
        if let Ok(c) = cache().lock() {
            if let Some(t) = c.get(&self.key) {
                if Instant::now() < t.refresh_at {
                    return Ok(t.token.clone());
                }
            }
        }
        let (token, lifetime) = self.fetch(http).await?;
        let margin = REFRESH_BEFORE.min(lifetime / 10);
        if let Ok(mut c) = cache().lock() {
            c.insert(
                self.key.clone(),
                Cached {
                    token: token.clone(),
                    refresh_at: Instant::now() + lifetime.saturating_sub(margin),
                },
            );
        }
        Ok(token)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<(String, Duration), TokenError> {
        if let Some(jwt) = &self.jwt {
            return self.fetch_jwt(http, jwt).await;
        }
        let token_url = TokenUrl::new(self.token_url.clone())
            .map_err(|_| TokenError::Config("auth.token_url is not a URL".into()))?;
        let client = BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.clone()))
            .set_token_uri(token_url)
            .set_auth_type(match self.client_auth {
                ClientAuth::Body => AuthType::RequestBody,
                ClientAuth::Basic => AuthType::BasicAuth,
            });
        let mut request = client.exchange_client_credentials();
        if let Some(scope) = &self.scope {
            for s in scope.split_whitespace() {
                request = request.add_scope(Scope::new(s.to_string()));
            }
        }
        if let Some(audience) = &self.audience {
            request = request.add_extra_param("audience", audience.clone());
        }
        // what the endpoint answered, for errors the crate reports without a status
        let seen: Arc<Mutex<Seen>> = Arc::new(Mutex::new(None));
        let send = {
            let seen = seen.clone();
            move |req: HttpRequest| {
                let http = http.clone();
                let seen = seen.clone();
                async move { send(&http, req, &seen).await }
            }
        };
        match request.request_async(&send).await {
            Ok(t) => {
                let lifetime = t
                    .expires_in()
                    .filter(|d| !d.is_zero())
                    .unwrap_or(DEFAULT_LIFETIME);
                Ok((t.access_token().secret().clone(), lifetime))
            }
            Err(e) => {
                let status = seen.lock().ok().and_then(|s| *s);
                Err(classify(e, status))
            }
        }
    }
}

/// An OAuth error code as the vendor wrote it, if it looks like one (RFC 6749: `invalid_grant`,
/// ...): kept whole or not at all, so that the scrubber still recognises a secret echoed there.
fn oauth_error_code(code: &str) -> Option<&str> {
    let plausible = (1..=64).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    plausible.then_some(code)
}

fn classify<RE: std::error::Error + 'static>(
    e: RequestTokenError<RE, oauth2::basic::BasicErrorResponse>,
    status: Seen,
) -> TokenError {
    match status {
        Some((429, wait)) => {
            return TokenError::RateLimited(wait, "token endpoint HTTP 429".into())
        }
        Some((503, Some(wait))) => {
            return TokenError::RateLimited(Some(wait), "token endpoint HTTP 503".into())
        }
        Some((s, _)) if s >= 500 => {
            return TokenError::Transient(format!("token endpoint HTTP {s}"))
        }
        _ => {}
    }
    let code = status.map(|(s, _)| s).unwrap_or(0);
    match e {
        // the OAuth error code only: descriptions are the vendor's free text
        RequestTokenError::ServerResponse(r) => {
            let error = r.error().to_string();
            TokenError::Rejected(match oauth_error_code(&error) {
                Some(e) => format!("token endpoint HTTP {code}: {e}"),
                None => format!("token endpoint HTTP {code}"),
            })
        }
        RequestTokenError::Request(_) => {
            TokenError::Transient("token request failed (connection error or timeout)".into())
        }
        RequestTokenError::Parse(..) if (200..300).contains(&code) => {
            TokenError::Transient("token response does not parse".into())
        }
        RequestTokenError::Parse(..) | RequestTokenError::Other(_) => {
            TokenError::Rejected(format!("token endpoint HTTP {code}"))
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SendError(String);

/// The crate's request sent with the connector HTTP client (no redirects, our User-Agent and
/// timeouts); the status and Retry-After are noted for `classify`.
async fn send(
    http: &reqwest::Client,
    req: HttpRequest,
    seen: &Mutex<Seen>,
) -> Result<HttpResponse, SendError> {
    let (parts, body) = req.into_parts();
    let mut builder = http.request(parts.method, parts.uri.to_string()).body(body);
    for (name, value) in parts.headers.iter() {
        builder = builder.header(name, value);
    }
    let mut response = builder.send().await.map_err(|e| {
        SendError(if e.is_timeout() {
            "timed out".into()
        } else {
            "connection error".into()
        })
    })?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|s| Duration::try_from_secs_f64(s).ok());
    if let Ok(mut s) = seen.lock() {
        *s = Some((status.as_u16(), retry_after));
    }
    let mut out = oauth2::http::Response::builder().status(status.as_u16());
    for (name, value) in response.headers() {
        out = out.header(name.as_str(), value.as_bytes());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|_| SendError("reading the token response failed".into()))?
    {
        if bytes.len() + chunk.len() > MAX_TOKEN_BODY {
            return Err(SendError("token response too large".into()));
        }
        bytes.extend_from_slice(&chunk);
    }
    out.body(bytes)
        .map_err(|_| SendError("token response headers are invalid".into()))
}

/// The token request an integration's auth describes (its values rendered).
pub fn token_request(
    integration: &str,
    auth: &Auth,
    values: &Values,
) -> Result<TokenRequest, TokenError> {
    match auth {
        Auth::OAuth2ClientCredentials(spec) => TokenRequest::new(integration, spec, values),
        Auth::OAuth2JwtBearer(spec) => TokenRequest::new_jwt(integration, spec, values),
        _ => Err(TokenError::Config(
            "this connector's auth fetches no tokens".into(),
        )),
    }
}
