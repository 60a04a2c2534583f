//! The validated definition the engine runs: what `parse` hands out once every key of a file has
//! been checked. These are the types the rest of the hub names (`crate::connectors::definition::X`
//! re-exports them); the closed choices among them (`FieldKind`, `Order`, ...) are read straight
//! from the file by serde, so they derive `Deserialize` too.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::connectors::path::{JsonPath, PathList};
use crate::connectors::template::Template;
use crate::schema::{Action, ActorType, Category, Outcome, Severity};
use crate::time::Micros;

#[derive(Debug, Clone)]
pub struct FieldSpec {
    pub name: String,
    pub required: bool,
    pub description: String,
    pub default: Option<String>,
    /// The only values allowed; empty = any.
    pub choices: Vec<String>,
    pub kind: FieldKind,
    /// A credential whose value is scrubbed from vendor text (all but declared identifiers);
    /// never for config fields.
    pub secret: bool,
}

#[derive(Debug, Clone)]
pub struct SinceSpec {
    pub param: String,
    pub template: Template,
    pub format: TimeParamFormat,
}

#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub path: Template,
    /// `request.until`: the upper bound of a time window (GET, time cursors only).
    pub until: Option<SinceSpec>,
    pub method: HttpMethod,
    /// POST: the body that starts a walk, before the since field is added.
    pub body: serde_json::Map<String, serde_json::Value>,
    /// `request.path_choice`: (config field, its value → path); `path` when the value is unset.
    pub path_choice: Option<(String, BTreeMap<String, Template>)>,
    pub query: Vec<(String, Template)>,
    pub headers: Vec<(String, Template)>,
    pub since: SinceSpec,
}

#[derive(Debug, Clone)]
pub struct CursorSpec {
    pub kind: CursorKind,
    pub order: Order,
    pub overlap: Micros,
}

#[derive(Debug, Clone)]
pub struct RateLimitSpec {
    pub requests_per_minute: u32,
    pub burst: u32,
    pub remaining_header: Option<String>,
    pub reset_header: Option<String>,
    pub reset_format: ResetFormat,
    /// Body texts that make a 403 a rate limit rather than a refusal.
    pub body_markers: Vec<String>,
    /// Wait on a rate limit that names no time.
    pub default_wait: Micros,
    pub scope: LimitScope,
}

#[derive(Debug, Clone)]
pub struct RecordsSpec {
    /// Where the array of records is; `None` = the body is the array.
    pub path: Option<JsonPath>,
    /// A boolean that is `false` on an error answered with 2xx.
    pub error_flag: Option<JsonPath>,
    pub error_message: Option<JsonPath>,
    /// Vendor error codes (at `error_message`) that mean the credentials were refused.
    pub credential_errors: Vec<String>,
    /// Vendor error codes that mean a saved page cursor is no longer accepted.
    pub cursor_errors: Vec<String>,
}

/// A literal, or the value at a path: mapped through `table`, else taken as is when it is
/// already a word of the vocabulary, else `default`.
#[derive(Debug, Clone)]
pub enum Lookup<T> {
    Value(T),
    Path {
        path: PathList,
        table: BTreeMap<String, T>,
        default: T,
        parse: fn(&str) -> Option<T>,
    },
    /// The value of the first path that holds something (not null, not ""), else `default`:
    /// for records that say what an actor is by which object they fill in.
    Present {
        entries: Vec<(JsonPath, T)>,
        default: T,
    },
}

#[derive(Debug, Clone)]
pub struct ActorSpec {
    pub id: PathList,
    pub name: Option<PathList>,
    pub email: Option<PathList>,
    pub kind: Lookup<ActorType>,
    pub ip: Option<PathList>,
    pub user_agent: Option<PathList>,
    pub city: Option<PathList>,
    pub region: Option<PathList>,
    pub country: Option<PathList>,
    pub latitude: Option<PathList>,
    pub longitude: Option<PathList>,
}

#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// Map every element of this array (paths below are relative to the element).
    pub each: Option<JsonPath>,
    pub kind: Lookup<String>,
    pub id: PathList,
    pub name: Option<PathList>,
}

/// An object diff: each key of the objects at `old` and `new` whose values differ becomes a
/// change `{field: key, old, new}` (absent = null).
#[derive(Debug, Clone)]
pub struct ChangesSpec {
    /// Diff inside every element of this array (paths below are relative to the element).
    pub each: Option<JsonPath>,
    /// List mode: every element of this array is one change, named by `field`, with `old` and
    /// `new` read from the element as they are (Graph's `modifiedProperties`).
    pub list: Option<(JsonPath, JsonPath)>,
    /// Single mode: one change named by the value at this path, `old`/`new` as they are
    /// (GitLab's `details.change`/`from`/`to`); none when the name is absent.
    pub field: Option<JsonPath>,
    pub old: JsonPath,
    pub new: JsonPath,
}

#[derive(Debug, Clone)]
pub struct OutcomeSpec {
    pub path: Option<PathList>,
    pub success: Vec<String>,
    pub failure: Vec<String>,
    pub default: Outcome,
}

/// Event-type glob patterns (`*` matches any run of characters) and what they classify as.
#[derive(Debug, Clone)]
pub struct Rule {
    pub patterns: Vec<String>,
    pub category: Category,
    pub action: Action,
    pub outcome: Option<Outcome>,
    pub severity: Option<Severity>,
}

#[derive(Debug, Clone)]
pub struct Mapping {
    pub source_id: PathList,
    pub source_id_join: Vec<JsonPath>,
    pub event_type: Option<PathList>,
    pub default_event_type: Option<String>,
    pub time: PathList,
    pub time_format: TimeFormat,
    pub description: Option<PathList>,
    pub session_id: Option<PathList>,
    pub severity: Lookup<Severity>,
    pub default_category: Category,
    pub default_action: Action,
    pub actor: ActorSpec,
    pub targets: Vec<TargetSpec>,
    pub changes: Vec<ChangesSpec>,
    pub outcome: OutcomeSpec,
    pub rules: Vec<Rule>,
}

/// A connector: what every one has (its name, fields and retention), and its two optional
/// parts, at least one of which is there: `poll`, how the hub fetches the vendor's records, and
/// `webhook`, how the vendor pushes them (or nudges a poll).
#[derive(Debug, Clone)]
pub struct Connector {
    pub name: String,
    pub title: String,
    /// Where the definition came from, for messages.
    pub file: String,
    pub retention: Option<Micros>,
    pub config: Vec<FieldSpec>,
    pub credentials: Vec<FieldSpec>,
    /// `None`: the vendor only pushes; integrations of this connector are never polled.
    /// Shared: a poll cycle holds it for its whole walk.
    pub poll: Option<Arc<Poll>>,
    pub webhook: Option<WebhookSpec>,
}

/// The poll part: when and how the hub fetches a vendor's records and turns them into events.
#[derive(Debug, Clone)]
pub struct Poll {
    pub default_schedule: String,
    pub default_backfill: Micros,
    /// `default_backfill` as written, for display.
    pub default_backfill_text: String,
    pub auth: Auth,
    pub auth_templates: Vec<Template>,
    pub request: RequestSpec,
    pub pagination: Pagination,
    /// `pagination.more`: where the body says whether more is to be had now.
    pub pagination_more: Option<JsonPath>,
    pub cursor: CursorSpec,
    pub rate_limit: RateLimitSpec,
    pub records: RecordsSpec,
    /// `[map]`: a vendor record → the unified event. Webhook deliveries that are not `unified`
    /// go through it too, which is why such a webhook needs the poll part.
    pub map: Mapping,
}

/// How the vendor's pushed deliveries are verified and read.
#[derive(Debug, Clone)]
pub struct WebhookSpec {
    pub signature: crate::webhooks::SignatureScheme,
    pub secrets: Vec<String>,
    /// `None`: deliveries only announce; each one nudges an immediate poll.
    pub records: Option<RecordsSpec>,
    /// Records are unified events, validated like `POST /api/v1/events` lines.
    pub unified: bool,
    /// The connector's own delivery size cap; `None`: the hub's `webhook_max_body_bytes`.
    pub max_body_bytes: Option<usize>,
}

/// Bounds of a connector's `[webhook] max_body_bytes`.
pub const WEBHOOK_BODY_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=64 * 1024 * 1024;

impl Connector {
    /// The vendor only pushes: there is nothing to poll (no poll part).
    pub fn push_only(&self) -> bool {
        self.poll.is_none()
    }

    pub fn config_field(&self, name: &str) -> Option<&FieldSpec> {
        self.config.iter().find(|f| f.name == name)
    }

    pub fn credential_field(&self, name: &str) -> Option<&FieldSpec> {
        self.credentials.iter().find(|f| f.name == name)
    }

    /// The values of the credentials that are secrets (not declared `secret = false`).
    pub fn secret_values<'a>(
        &'a self,
        credentials: &'a BTreeMap<String, crate::config::Secret>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        credentials
            .iter()
            .filter(|(name, _)| self.credential_field(name).is_none_or(|f| f.secret))
            .map(|(_, value)| value.expose())
    }

    /// The config fields that say where credentials go (`base_url` and every `kind = "url"`).
    pub fn url_fields(&self) -> impl Iterator<Item = &FieldSpec> {
        self.config.iter().filter(|f| f.kind == FieldKind::Url)
    }
}

// ---------------------------------------------------------------------------------------------
// How requests authenticate and page.

/// How a request proves who is asking.
#[derive(Debug, Clone)]
pub enum Auth {
    /// One header built from a template, e.g. `Authorization: SSWS {credentials.token}`.
    Header { header: String, value: String },
    /// HTTP basic auth from two templates.
    Basic { username: String, password: String },
    /// OAuth2 client credentials grant: a bearer token fetched from `token_url`, cached until
    /// shortly before it expires, fetched again once on a 401.
    OAuth2ClientCredentials(Box<OAuth2Spec>),
    /// OAuth2 JWT bearer grant (RFC 7523; Google service accounts with domain-wide
    /// delegation): an RS256 assertion signed with the private key is exchanged for a bearer
    /// token, cached and renewed like client-credentials tokens.
    OAuth2JwtBearer(Box<JwtBearerSpec>),
}

impl Auth {
    /// The token endpoint's template, for the kinds that fetch tokens.
    pub fn token_url(&self) -> Option<&Template> {
        match self {
            Auth::OAuth2ClientCredentials(spec) => Some(&spec.token_url),
            Auth::OAuth2JwtBearer(spec) => Some(&spec.token_url),
            Auth::Header { .. } | Auth::Basic { .. } => None,
        }
    }

    /// Whether requests carry a bearer token fetched from a token endpoint.
    pub fn fetches_tokens(&self) -> bool {
        matches!(
            self,
            Auth::OAuth2ClientCredentials(_) | Auth::OAuth2JwtBearer(_)
        )
    }
}

/// `auth.kind = "oauth2_jwt_bearer"`: every value is a template.
#[derive(Debug, Clone)]
pub struct JwtBearerSpec {
    pub token_url: Template,
    /// `iss`: the service account's email.
    pub issuer: Template,
    /// `sub`: the user to act as (domain-wide delegation), if any.
    pub subject: Option<Template>,
    pub scope: Option<Template>,
    /// `aud`; the token URL when not given.
    pub audience: Option<Template>,
    /// RSA private key, PEM (PKCS#8 or PKCS#1).
    pub private_key: Template,
}

/// `auth.kind = "oauth2_client_credentials"`: every value is a template.
#[derive(Debug, Clone)]
pub struct OAuth2Spec {
    pub token_url: Template,
    pub client_id: Template,
    pub client_secret: Template,
    /// Space-separated scopes, if the vendor wants them (`https://graph.microsoft.com/.default`).
    pub scope: Option<Template>,
    /// Sent as the `audience` form field (Auth0's API identifier).
    pub audience: Option<Template>,
    pub client_auth: ClientAuth,
}

/// Where the next page is announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pagination {
    /// RFC 8288 `Link: <url>; rel="next"`.
    LinkHeader,
    /// A token in the body at `path`, sent back as the query parameter `param`; empty = done.
    /// (Paths are parsed once, when the definition loads.)
    BodyCursor { path: JsonPath, param: String },
    /// The whole next-page URL in the body at `path` (OData `@odata\.nextLink`), followed as
    /// is (same host only); absent or empty = done.
    NextUrlInBody { path: JsonPath },
    /// Checkpoint paging: the next page is the same request with the query parameter `param`
    /// set to the value at `path` of the page's last record (Auth0 `from=<log_id>`); an empty
    /// page keeps the request as it is (polled again by a `next_link` cursor).
    LastRecord { path: JsonPath, param: String },
    /// Offset or page-number paging: `param` (absent on the first request = `start`) advances by
    /// the records received (`Records`) or by one (`Pages`); an empty page ends the walk.
    Offset {
        param: String,
        unit: OffsetUnit,
        start: u64,
    },
    /// One page per request.
    None,
}

// ---------------------------------------------------------------------------------------------
// The closed choices a file names, read by serde as they are.

/// What a config field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    /// Where requests (or token requests) go: https only, unless the integration allows http
    /// for a loopback host; a change of its origin must come with the credentials.
    Url,
}

impl FieldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Url => "url",
        }
    }
}

/// How an OAuth2 client proves itself at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_id` and `client_secret` as form fields (`client_secret_post`).
    Body,
    /// HTTP basic auth (`client_secret_basic`).
    Basic,
}

/// What an offset parameter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffsetUnit {
    /// `offset=200`: records skipped (Jira `offset`/`limit`).
    Records,
    /// `page=3`: page number (Cloudflare `page`/`per_page`).
    Pages,
}

/// How pages are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum HttpMethod {
    /// Query parameters carry the since time and the page cursor.
    #[serde(rename = "GET")]
    Get,
    /// A JSON body carries them (`request.since.param` and `pagination.param` name body fields).
    #[serde(rename = "POST")]
    Post,
}

/// How a point in time is written into a query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeParamFormat {
    /// `2024-08-13` (UTC day; the overlap absorbs the rest)
    Date,
    /// `2024-08-13T15:58:20.353Z`
    Rfc3339,
    EpochSeconds,
    EpochMillis,
}

/// What is persisted between cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CursorKind {
    /// A time high-water mark; each walk re-queries from it minus the overlap.
    Time,
    /// The vendor's next-page link, polled again on every cycle (Okta polling mode); the time
    /// high-water mark is kept too, to restart from if the vendor refuses the link.
    NextLink,
}

/// The order the vendor returns events in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Ascending,
    NewestFirst,
}

/// Who shares a rate budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// Each integration has its own (budgets counted per token).
    Integration,
    /// Integrations of one connector on one vendor host share one (budgets counted per org
    /// host, as Okta's).
    Host,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetFormat {
    /// The reset header is the UTC epoch second when the window resets.
    EpochSeconds,
    /// The reset header is a number of seconds from now.
    DeltaSeconds,
}

/// How a vendor writes event times.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    EpochMillis,
    EpochSeconds,
    Rfc3339,
    /// RFC 3339, or ISO 8601 with an offset written without a colon (`+0000`, Jira).
    Iso8601,
}
