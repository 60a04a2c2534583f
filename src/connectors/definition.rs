//! Connector definition files (`connectors/<vendor>.toml`): parsed strictly with serde, then
//! validated into the closed types the engine interprets, with errors naming file and key

use std::collections::BTreeMap;

use serde::Deserialize;

use super::path::{JsonPath, PathList};
use super::template::{Template, TemplateScope};
use crate::schema::{Action, ActorType, Category, Outcome, Severity};
use crate::time::Micros;

/// Why a definition file was refused; `key` is the dotted TOML key at fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}: `{key}`: {message}")]
pub struct DefinitionError {
    pub file: String,
    pub key: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// The file as written: every table denies unknown keys, every closed choice is an enum.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefinition {
    name: String,
    title: String,
    default_schedule: String,
    default_backfill: String,
    retention: Option<String>,
    #[serde(default)]
    config: Vec<RawField>,
    #[serde(default)]
    credentials: Vec<RawField>,
    auth: RawAuth,
    request: RawRequest,
    pagination: RawPagination,
    cursor: RawCursor,
    rate_limit: RawRateLimit,
    records: RawRecords,
    map: RawMap,
    webhook: Option<RawWebhook>,
    /// The vendor only pushes: no polling tables are written, and the hub never polls.
    #[serde(default)]
    push_only: bool,
}

/// What a push-only definition leaves out: inert polling tables that are never used (the
/// scheduler does not schedule push-only integrations) and a mapping that `webhook.unified`
/// replaces with the unified-event validator.
const PUSH_ONLY_STUB: &str = r#"
default_schedule = "0 0 0 1 1 *"
default_backfill = "P1D"
[auth]
kind = "header"
header = "X-Trailhub-Push-Only"
value = "push-only"
[request]
path = "/"
[request.since]
param = "since"
template = "{time}"
format = "rfc3339"
[pagination]
kind = "link_header"
[cursor]
kind = "time"
order = "ascending"
overlap = "PT0S"
[rate_limit]
requests_per_minute = 1
default_wait = "PT1M"
[records]
path = ""
[map]
source_id = "source_id"
event_type = "event_type"
default_category = "other"
default_action = "other"
[map.time]
path = "time"
format = "rfc3339"
[map.actor]
id = "actor.id"
[map.outcome]
default = "unknown"
"#;

const POLLING_KEYS: &[&str] = &[
    "default_schedule",
    "default_backfill",
    "auth",
    "request",
    "pagination",
    "cursor",
    "rate_limit",
    "records",
    "map",
];

/// `[webhook]`: the vendor pushes deliveries to `/hooks/{integration_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    /// `[webhook.signature]`: how a delivery proves it comes from the vendor.
    signature: crate::webhooks::SignatureScheme,
    /// Credential fields holding the signing secret(s), current first (rotation).
    secrets: Vec<String>,
    /// Where a delivery's records are (`data.events`); `""` = the body is the array (or one
    /// record); absent = deliveries only announce activity, and the hub polls at once instead.
    records: Option<String>,
    /// Records are already unified events (an in-house application's): they are validated as
    /// `POST /api/v1/events` lines are, instead of going through `map`.
    #[serde(default)]
    unified: bool,
    /// Largest delivery this vendor sends, bytes; larger ones are refused with `413` before
    /// their signature is checked. Defaults to the hub's `webhook_max_body_bytes` (1 MiB).
    max_body_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    description: String,
    default: Option<String>,
    /// The only values allowed (checked when an integration is saved).
    #[serde(default)]
    choices: Vec<String>,
    /// `url`: an outbound URL (checked like `base_url`; changing its host needs the credentials
    /// again). `base_url` is always one.
    kind: Option<FieldKind>,
    /// Credentials only: `false` for an identifier that vendors also write into their records
    /// (an account's email, an OAuth client id), which is then not scrubbed from vendor text.
    secret: Option<bool>,
}

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

// serde ignores unknown keys of internally tagged enums, so the tagged tables are read as
// flat structs (which do deny them) and then checked into their enums.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    kind: AuthKind,
    header: Option<String>,
    value: Option<String>,
    username: Option<String>,
    password: Option<String>,
    token_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
    audience: Option<String>,
    client_auth: Option<ClientAuth>,
    issuer: Option<String>,
    subject: Option<String>,
    private_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum AuthKind {
    Header,
    Basic,
    Oauth2ClientCredentials,
    Oauth2JwtBearer,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPagination {
    kind: PaginationKind,
    path: Option<String>,
    param: Option<String>,
    /// A boolean in the body that is `false` when the vendor has nothing more now.
    more: Option<String>,
    /// `offset`: what the parameter counts (`records`, the default, or `pages`).
    unit: Option<OffsetUnit>,
    /// `offset`: the value the first page has (0 for records; 1 for pages if not given).
    start: Option<u64>,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PaginationKind {
    LinkHeader,
    BodyCursor,
    NextUrlInBody,
    LastRecord,
    Offset,
    None,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    path: String,
    #[serde(default)]
    query: BTreeMap<String, String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    since: RawSince,
    /// The upper bound of a time window, where the vendor takes one: backfills are then split
    /// into windows fetched concurrently.
    until: Option<RawSince>,
    path_choice: Option<RawPathChoice>,
    #[serde(default = "default_method")]
    method: HttpMethod,
    /// POST only: constant fields of the body that starts a walk (the since field is added).
    body: Option<toml::Table>,
}

fn default_method() -> HttpMethod {
    HttpMethod::Get
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

/// `[request.path_choice]`: the path picked by a config field's value (a named endpoint).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPathChoice {
    config: String,
    paths: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSince {
    param: String,
    template: String,
    format: TimeParamFormat,
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

/// Where the next page is announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pagination {
    /// RFC 8288 `Link: <url>; rel="next"`.
    LinkHeader,
    /// A token in the body at `path`, sent back as the query parameter `param`; empty = done.
    BodyCursor { path: String, param: String },
    /// The whole next-page URL in the body at `path` (OData `@odata\.nextLink`), followed as
    /// is (same host only); absent or empty = done.
    NextUrlInBody { path: String },
    /// Checkpoint paging: the next page is the same request with the query parameter `param`
    /// set to the value at `path` of the page's last record (Auth0 `from=<log_id>`); an empty
    /// page keeps the request as it is (polled again by a `next_link` cursor).
    LastRecord { path: String, param: String },
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCursor {
    kind: CursorKind,
    order: Order,
    overlap: String,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    requests_per_minute: u32,
    burst: Option<u32>,
    remaining_header: Option<String>,
    reset_header: Option<String>,
    #[serde(default = "default_reset_format")]
    reset_format: ResetFormat,
    #[serde(default)]
    body_markers: Vec<String>,
    default_wait: String,
    #[serde(default = "default_scope")]
    scope: LimitScope,
}

fn default_scope() -> LimitScope {
    LimitScope::Integration
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

fn default_reset_format() -> ResetFormat {
    ResetFormat::EpochSeconds
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetFormat {
    /// The reset header is the UTC epoch second when the window resets.
    EpochSeconds,
    /// The reset header is a number of seconds from now.
    DeltaSeconds,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecords {
    path: String,
    error_flag: Option<String>,
    error_message: Option<String>,
    #[serde(default)]
    credential_errors: Vec<String>,
    #[serde(default)]
    cursor_errors: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    source_id: PathList,
    /// A composite vendor id: these values joined with `/` (Google's `id.time` and
    /// `id.uniqueQualifier`); `source_id` is used when one of them is missing.
    #[serde(default)]
    source_id_join: Vec<String>,
    event_type: Option<PathList>,
    /// The event type when `event_type` finds nothing (or for endpoints with one kind of record).
    default_event_type: Option<String>,
    time: RawTime,
    description: Option<PathList>,
    session_id: Option<PathList>,
    severity: Option<RawLookup>,
    default_category: Category,
    default_action: Action,
    actor: RawActor,
    #[serde(default)]
    targets: Vec<RawTarget>,
    #[serde(default)]
    changes: Vec<RawChanges>,
    outcome: RawOutcome,
    #[serde(default)]
    classify: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTime {
    path: PathList,
    format: TimeFormat,
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

/// A literal `value`, or a `path` whose value is looked up in `table` (else `default`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLookup {
    value: Option<String>,
    path: Option<PathList>,
    /// The value of the first entry whose path holds something (`present`).
    #[serde(default)]
    present: Vec<RawPresent>,
    #[serde(default)]
    table: BTreeMap<String, String>,
    default: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPresent {
    path: String,
    value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActor {
    id: PathList,
    name: Option<PathList>,
    email: Option<PathList>,
    #[serde(rename = "type")]
    kind: Option<RawLookup>,
    ip: Option<PathList>,
    user_agent: Option<PathList>,
    city: Option<PathList>,
    region: Option<PathList>,
    country: Option<PathList>,
    latitude: Option<PathList>,
    longitude: Option<PathList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    each: Option<String>,
    #[serde(rename = "type")]
    kind: RawLookup,
    id: PathList,
    name: Option<PathList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChanges {
    each: Option<String>,
    list: Option<String>,
    field: Option<String>,
    old: String,
    new: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutcome {
    path: Option<PathList>,
    #[serde(default)]
    success: Vec<String>,
    #[serde(default)]
    failure: Vec<String>,
    default: Outcome,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    patterns: Vec<String>,
    category: Category,
    action: Action,
    outcome: Option<Outcome>,
    severity: Option<Severity>,
}

// ---------------------------------------------------------------------------------------------
// The validated definition the engine runs.

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

#[derive(Debug, Clone)]
pub struct Connector {
    pub name: String,
    pub title: String,
    /// Where the definition came from, for messages.
    pub file: String,
    pub default_schedule: String,
    pub default_backfill: Micros,
    /// `default_backfill` as written, for display.
    pub default_backfill_text: String,
    pub retention: Option<Micros>,
    pub config: Vec<FieldSpec>,
    pub credentials: Vec<FieldSpec>,
    pub auth: Auth,
    pub auth_templates: Vec<Template>,
    pub request: RequestSpec,
    pub pagination: Pagination,
    /// `pagination.more`: where the body says whether more is to be had now.
    pub pagination_more: Option<JsonPath>,
    pub cursor: CursorSpec,
    pub rate_limit: RateLimitSpec,
    pub records: RecordsSpec,
    pub map: Mapping,
    pub webhook: Option<WebhookSpec>,
    /// The vendor only pushes; integrations of this connector are never polled.
    pub push_only: bool,
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

/// Parses and validates one definition file.
pub fn parse(file: &str, text: &str) -> Result<Connector, DefinitionError> {
    let push_only = toml::from_str::<toml::Table>(text)
        .ok()
        .and_then(|t| t.get("push_only").and_then(toml::Value::as_bool))
        .unwrap_or(false);
    if push_only {
        return parse_push_only(file, text);
    }
    let raw: RawDefinition = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    Validator { file }.build(raw)
}

/// A TOML or serde error as a `DefinitionError` naming the key where it sits.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> DefinitionError {
    let message = e.message().trim();
    let message = match e.span() {
        // toml says nothing for some syntax errors (`name = ` with no value): say where
        _ if !message.is_empty() => message.to_string(),
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|b| **b == b'\n').count() + 1;
            let column = before.len()
                - before
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(0, |i| i + 1)
                + 1;
            format!("not valid TOML at line {line}, column {column}")
        }
        None => "not valid TOML".to_string(),
    };
    DefinitionError {
        file: file.to_string(),
        key: e
            .span()
            .map(|s| key_at(text, s.start))
            .unwrap_or_else(|| "(file)".into()),
        message,
    }
}

/// A push-only definition: the polling tables must be absent, and inert ones stand in for them.
fn parse_push_only(file: &str, text: &str) -> Result<Connector, DefinitionError> {
    let err = |key: &str, message: String| DefinitionError {
        file: file.to_string(),
        key: key.to_string(),
        message,
    };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    for key in POLLING_KEYS {
        if table.contains_key(*key) {
            return Err(err(
                key,
                "a push_only connector is never polled: leave this out".into(),
            ));
        }
    }
    let stub: toml::Table =
        toml::from_str(PUSH_ONLY_STUB).expect("the push-only stub is valid TOML");
    table.extend(stub);
    let raw: RawDefinition = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| err("(file)", e.message().trim().to_string()))?;
    let connector = Validator { file }.build(raw)?;
    match &connector.webhook {
        Some(w) if w.unified && w.records.is_some() => Ok(connector),
        _ => Err(err(
            "webhook",
            "a push_only connector needs a [webhook] table with `records` and `unified = true`"
                .into(),
        )),
    }
}

/// The `[table]` heading and key on the line where a parse error sits, for the message.
fn key_at(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let table = before
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            l.starts_with('[')
                .then(|| l.trim_matches(|c| c == '[' || c == ']').to_string())
        })
        .unwrap_or_default();
    let line = text[before.rfind('\n').map(|i| i + 1).unwrap_or(0)..]
        .lines()
        .next()
        .unwrap_or("");
    let key = match line.trim_start() {
        comment if comment.starts_with('#') => "",
        _ => line.split('=').next().unwrap_or("").trim(),
    };
    match (table.is_empty(), key.is_empty() || key.starts_with('[')) {
        // nowhere to point: a required top-level key missing from a file with no tables
        (true, _) if key.is_empty() => "(file)".to_string(),
        (true, _) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

fn any_text(s: &str) -> Option<String> {
    Some(s.to_string())
}

struct Validator<'a> {
    file: &'a str,
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
        super::iso_duration(text)
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

    fn auth(
        &self,
        raw: RawAuth,
        config_names: &[&str],
        credential_names: &[&str],
    ) -> Result<Auth, DefinitionError> {
        let need = |v: Option<String>, key: &str| {
            v.ok_or_else(|| {
                self.err(
                    &format!("auth.{key}"),
                    format!("is required for kind {:?}", raw.kind),
                )
            })
        };
        let refuse = |present: bool, key: &str| {
            if present {
                Err(self.err(
                    &format!("auth.{key}"),
                    format!("does not apply to kind {:?}", raw.kind),
                ))
            } else {
                Ok(())
            }
        };
        let token_grant = matches!(
            raw.kind,
            AuthKind::Oauth2ClientCredentials | AuthKind::Oauth2JwtBearer
        );
        if !token_grant {
            refuse(raw.token_url.is_some(), "token_url")?;
            refuse(raw.scope.is_some(), "scope")?;
            refuse(raw.audience.is_some(), "audience")?;
        }
        if raw.kind != AuthKind::Oauth2ClientCredentials {
            refuse(raw.client_id.is_some(), "client_id")?;
            refuse(raw.client_secret.is_some(), "client_secret")?;
            refuse(raw.client_auth.is_some(), "client_auth")?;
        }
        if raw.kind != AuthKind::Oauth2JwtBearer {
            refuse(raw.issuer.is_some(), "issuer")?;
            refuse(raw.subject.is_some(), "subject")?;
            refuse(raw.private_key.is_some(), "private_key")?;
        }
        let oauth = matches!(
            raw.kind,
            AuthKind::Oauth2JwtBearer | AuthKind::Oauth2ClientCredentials
        );
        if oauth {
            // OAuth2 kinds send the fetched token; a header of their own would be ambiguous
            refuse(raw.header.is_some(), "header")?;
            refuse(raw.value.is_some(), "value")?;
            refuse(raw.username.is_some(), "username")?;
            refuse(raw.password.is_some(), "password")?;
        }
        let oauth_scope = TemplateScope {
            config: config_names,
            credentials: credential_names,
            time: false,
        };
        let t =
            |key: &str, text: String| self.template(&format!("auth.{key}"), &text, &oauth_scope);
        match raw.kind {
            AuthKind::Oauth2JwtBearer => Ok(Auth::OAuth2JwtBearer(Box::new(JwtBearerSpec {
                token_url: t("token_url", need(raw.token_url, "token_url")?)?,
                issuer: t("issuer", need(raw.issuer, "issuer")?)?,
                subject: raw.subject.map(|s| t("subject", s)).transpose()?,
                scope: raw.scope.map(|s| t("scope", s)).transpose()?,
                audience: raw.audience.map(|s| t("audience", s)).transpose()?,
                private_key: t("private_key", need(raw.private_key, "private_key")?)?,
            }))),
            AuthKind::Oauth2ClientCredentials => {
                Ok(Auth::OAuth2ClientCredentials(Box::new(OAuth2Spec {
                    token_url: t("token_url", need(raw.token_url, "token_url")?)?,
                    client_id: t("client_id", need(raw.client_id, "client_id")?)?,
                    client_secret: t("client_secret", need(raw.client_secret, "client_secret")?)?,
                    scope: raw.scope.map(|s| t("scope", s)).transpose()?,
                    audience: raw.audience.map(|s| t("audience", s)).transpose()?,
                    client_auth: raw.client_auth.unwrap_or(ClientAuth::Body),
                })))
            }
            AuthKind::Header => {
                refuse(raw.username.is_some(), "username")?;
                refuse(raw.password.is_some(), "password")?;
                Ok(Auth::Header {
                    header: need(raw.header, "header")?,
                    value: need(raw.value, "value")?,
                })
            }
            AuthKind::Basic => {
                refuse(raw.header.is_some(), "header")?;
                refuse(raw.value.is_some(), "value")?;
                Ok(Auth::Basic {
                    username: need(raw.username, "username")?,
                    password: need(raw.password, "password")?,
                })
            }
        }
    }

    fn pagination(&self, raw: RawPagination) -> Result<Pagination, DefinitionError> {
        match raw.kind {
            PaginationKind::BodyCursor => Ok(Pagination::BodyCursor {
                path: raw.path.ok_or_else(|| {
                    self.err("pagination.path", "is required for kind body_cursor")
                })?,
                param: raw.param.ok_or_else(|| {
                    self.err("pagination.param", "is required for kind body_cursor")
                })?,
            }),
            PaginationKind::Offset => {
                if raw.path.is_some() {
                    return Err(self.err("pagination.path", "does not apply to kind offset"));
                }
                let param = raw
                    .param
                    .ok_or_else(|| self.err("pagination.param", "is required for kind offset"))?;
                if param.is_empty() {
                    return Err(self.err("pagination.param", "must name a query parameter"));
                }
                let unit = raw.unit.unwrap_or(OffsetUnit::Records);
                let start = raw.start.unwrap_or(match unit {
                    OffsetUnit::Records => 0,
                    OffsetUnit::Pages => 1,
                });
                Ok(Pagination::Offset { param, unit, start })
            }
            PaginationKind::LastRecord => {
                let path = raw.path.ok_or_else(|| {
                    self.err("pagination.path", "is required for kind last_record")
                })?;
                let param = raw.param.ok_or_else(|| {
                    self.err("pagination.param", "is required for kind last_record")
                })?;
                self.path("pagination.path", &path)?;
                if param.is_empty() {
                    return Err(self.err("pagination.param", "must name a query parameter"));
                }
                Ok(Pagination::LastRecord { path, param })
            }
            PaginationKind::NextUrlInBody => {
                if raw.param.is_some() {
                    return Err(self.err(
                        "pagination.param",
                        "does not apply to kind next_url_in_body (the URL is followed as is)",
                    ));
                }
                let path = raw.path.ok_or_else(|| {
                    self.err("pagination.path", "is required for kind next_url_in_body")
                })?;
                self.path("pagination.path", &path)?;
                Ok(Pagination::NextUrlInBody { path })
            }
            kind => {
                if raw.path.is_some() || raw.param.is_some() {
                    return Err(self.err(
                        "pagination",
                        format!("`path` and `param` apply only to kind body_cursor, not {kind:?}"),
                    ));
                }
                Ok(if kind == PaginationKind::LinkHeader {
                    Pagination::LinkHeader
                } else {
                    Pagination::None
                })
            }
        }
    }

    fn build(&self, mut raw: RawDefinition) -> Result<Connector, DefinitionError> {
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
        let until = match &raw.request.until {
            None => None,
            Some(u) => {
                let template = self.template(
                    "request.until.template",
                    &u.template,
                    &TemplateScope {
                        config: &config_names,
                        credentials: &[],
                        time: true,
                    },
                )?;
                if !template.uses_time() {
                    return Err(self.err("request.until.template", "must contain `{time}`"));
                }
                if u.param.is_empty() || u.param == raw.request.since.param {
                    return Err(self.err(
                        "request.until.param",
                        "must name a query parameter other than request.since.param",
                    ));
                }
                if raw.request.method != HttpMethod::Get {
                    return Err(self.err(
                        "request.until",
                        "a time window is sent as query parameters: it needs method = \"GET\"",
                    ));
                }
                if raw.cursor.kind != CursorKind::Time {
                    return Err(self.err(
                        "request.until",
                        "backfill windows need a `time` cursor (a `next_link` cursor's position is the vendor's link)",
                    ));
                }
                Some(SinceSpec {
                    param: u.param.clone(),
                    template,
                    format: u.format,
                })
            }
        };
        if let Pagination::BodyCursor { path, param } = &pagination {
            self.path("pagination.path", path)?;
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
        let webhook = match raw.webhook {
            None => None,
            Some(w) => {
                if w.secrets.is_empty() {
                    return Err(self.err("webhook.secrets", "name at least one credential field"));
                }
                for name in &w.secrets {
                    if !credentials.iter().any(|f: &FieldSpec| &f.name == name) {
                        return Err(self.err(
                            "webhook.secrets",
                            format!("`{name}` is not a declared credential"),
                        ));
                    }
                }
                let records = match w.records {
                    None => None,
                    Some(p) => Some(RecordsSpec {
                        path: if p.is_empty() {
                            None
                        } else {
                            Some(self.path("webhook.records", &p)?)
                        },
                        error_flag: None,
                        error_message: None,
                        credential_errors: Vec::new(),
                        cursor_errors: Vec::new(),
                    }),
                };
                if w.unified && records.is_none() {
                    return Err(
                        self.err("webhook.unified", "needs `records` (where the events are)")
                    );
                }
                if let Some(n) = w.max_body_bytes {
                    if !WEBHOOK_BODY_BYTES_RANGE.contains(&n) {
                        return Err(self.err(
                            "webhook.max_body_bytes",
                            format!(
                                "must be between {} and {} bytes",
                                WEBHOOK_BODY_BYTES_RANGE.start(),
                                WEBHOOK_BODY_BYTES_RANGE.end()
                            ),
                        ));
                    }
                }
                Some(WebhookSpec {
                    signature: w.signature,
                    secrets: w.secrets,
                    records,
                    unified: w.unified,
                    max_body_bytes: w.max_body_bytes,
                })
            }
        };
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

    fn mapping(&self, m: RawMap) -> Result<Mapping, DefinitionError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB: &str = include_str!("../../connectors/github.toml");

    #[test]
    fn builtin_definitions_load() {
        for (file, text) in super::super::BUILTIN {
            parse(file, text).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_table() {
        let text = GITHUB.replace(
            "[pagination]\nkind = \"link_header\"",
            "[pagination]\nkind = \"link_header\"\nfoo = 1",
        );
        let e = parse("connectors/github.toml", &text).expect_err("unknown key");
        assert!(e.to_string().contains("connectors/github.toml"), "{e}");
        assert!(e.to_string().contains("pagination"), "{e}");
        assert!(e.to_string().contains("foo"), "{e}");
    }

    /// Found by the property tests (tests/integration/fuzz.rs): an empty file was refused
    /// with an empty key, `connectors/x.toml: ``: missing field `name``.
    #[test]
    fn an_error_with_no_place_in_the_file_names_the_file_as_its_key() {
        for text in ["", "\n\n", "# only a comment\n"] {
            let e = parse("connectors/x.toml", text).expect_err("nothing to load");
            assert_eq!(e.key, "(file)", "{text:?}: {e}");
            assert!(e.message.contains("name"), "{e}");
        }
    }

    /// Found by the property tests: `name = ` (no value) was refused with an empty message,
    /// `connectors/x.toml: `name`: ` — the toml crate gives no message for it.
    #[test]
    fn a_toml_syntax_error_always_says_something() {
        for text in [
            "name = ",
            "title = \"x\"\nname = ",
            "push_only = true\nname = ",
        ] {
            let e = parse("connectors/x.toml", text).expect_err("not TOML");
            assert_eq!(e.key, "name", "{text:?}: {e}");
            assert!(
                e.message.starts_with("not valid TOML at line"),
                "{text:?}: {e}"
            );
        }
    }

    #[test]
    fn closed_enums_refuse_unknown_variants() {
        let text = GITHUB.replace("kind = \"link_header\"", "kind = \"page_number\"");
        let e = parse("connectors/github.toml", &text).expect_err("unknown pagination");
        assert!(e.to_string().contains("page_number"), "{e}");
    }

    #[test]
    fn template_refs_are_checked() {
        let text = GITHUB.replace("{config.org}", "{config.organisation}");
        let e = parse("connectors/github.toml", &text).expect_err("undeclared");
        assert_eq!(e.key, "request.path");
        assert!(e.message.contains("organisation"), "{e}");
        let text = GITHUB.replace("Bearer {credentials.token}", "Bearer {credentials.pat}");
        let e = parse("connectors/github.toml", &text).expect_err("undeclared credential");
        assert_eq!(e.key, "auth.value");
    }

    /// A token endpoint's host must come from a URL field (validated, guarded against silent
    /// changes) or be fixed in the file: a text field must not be able to move it.
    #[test]
    fn token_hosts_come_from_url_fields() {
        const ENTRA: &str = include_str!("../../connectors/entra_audits.toml");
        let entra = parse("connectors/entra_audits.toml", ENTRA).expect("valid");
        let urls: Vec<&str> = entra.url_fields().map(|f| f.name.as_str()).collect();
        assert_eq!(urls, ["base_url", "login_url"]);
        let text = ENTRA.replace(
            "name = \"login_url\"\nkind = \"url\"",
            "name = \"login_url\"",
        );
        let e = parse("connectors/entra_audits.toml", &text).expect_err("text field as host");
        assert_eq!(e.key, "auth.token_url");
        let text = ENTRA.replace(
            "token_url = \"{config.login_url}/",
            "token_url = \"https://{config.tenant_id}.example.com/",
        );
        let e = parse("connectors/entra_audits.toml", &text).expect_err("host from a text field");
        assert_eq!(e.key, "auth.token_url");
        let text = ENTRA.replace(
            "token_url = \"{config.login_url}/",
            "token_url = \"https://login.example.com/",
        );
        parse("connectors/entra_audits.toml", &text).expect("a fixed https host");
        let text = ENTRA.replace(
            "default = \"https://login.microsoftonline.com\"",
            "default = \"http://login.microsoftonline.com\"",
        );
        let e = parse("connectors/entra_audits.toml", &text).expect_err("http default");
        assert!(e.key.ends_with(".default"), "{e}");
        let text = GITHUB.replace("name = \"token\"\n", "name = \"token\"\nkind = \"url\"\n");
        let e = parse("connectors/github.toml", &text).expect_err("credential as URL");
        assert!(e.key.starts_with("credentials["), "{e}");
        let text = GITHUB.replace("name = \"org\"\n", "name = \"org\"\nsecret = false\n");
        let e = parse("connectors/github.toml", &text).expect_err("secret on a config field");
        assert!(e.key.ends_with(".secret"), "{e}");
        assert!(entra
            .credential_field("client_secret")
            .is_some_and(|f| f.secret));
        assert!(entra
            .credential_field("client_id")
            .is_some_and(|f| !f.secret));
    }

    #[test]
    fn bad_vocabulary_is_named() {
        let text = GITHUB.replace("category = \"data_access\"", "category = \"reading\"");
        let e = parse("connectors/github.toml", &text).expect_err("bad category");
        assert!(e.to_string().contains("reading"), "{e}");
        let text = GITHUB.replace("overlap = \"PT10M\"", "overlap = \"10 minutes\"");
        let e = parse("connectors/github.toml", &text).expect_err("bad duration");
        assert_eq!(e.key, "cursor.overlap");
    }
}
