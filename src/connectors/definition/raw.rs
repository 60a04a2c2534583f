//! The definition file as written: what serde reads from `connectors/<vendor>.toml` before any
//! check. Kept apart from the validated model so that the engine never sees an unchecked value:
//! every table denies unknown keys, every closed choice is an enum, and only `parse` and
//! `validate` touch these types.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::model::{
    ClientAuth, CursorKind, FieldKind, HttpMethod, LimitScope, OffsetUnit, Order, ResetFormat,
    TimeFormat, TimeParamFormat,
};
use crate::connectors::path::PathList;
use crate::schema::{Action, Category, Outcome, Severity};

/// The polling keys are each optional here: a file has all of them (the poll part) or none (a
/// push-only connector), which `RawDefinition::take_poll` sorts out with the missing key named.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefinition {
    pub(super) name: String,
    pub(super) title: String,
    pub(super) default_schedule: Option<String>,
    pub(super) default_backfill: Option<String>,
    pub(super) retention: Option<String>,
    #[serde(default)]
    pub(super) config: Vec<RawField>,
    #[serde(default)]
    pub(super) credentials: Vec<RawField>,
    pub(super) auth: Option<RawAuth>,
    pub(super) request: Option<RawRequest>,
    pub(super) pagination: Option<RawPagination>,
    pub(super) cursor: Option<RawCursor>,
    pub(super) rate_limit: Option<RawRateLimit>,
    pub(super) records: Option<RawRecords>,
    pub(super) map: Option<RawMap>,
    pub(super) webhook: Option<RawWebhook>,
    /// `true`: the vendor only pushes, and the file says so (no polling key may then be
    /// written); `false`: it is polled (every polling key must be). Absent: whichever the
    /// polling keys say.
    pub(super) push_only: Option<bool>,
}

/// The polling keys of a file, all present: what the poll part is checked from.
#[derive(Debug)]
pub(super) struct RawPoll {
    pub(super) default_schedule: String,
    pub(super) default_backfill: String,
    pub(super) auth: RawAuth,
    pub(super) request: RawRequest,
    pub(super) pagination: RawPagination,
    pub(super) cursor: RawCursor,
    pub(super) rate_limit: RawRateLimit,
    pub(super) records: RawRecords,
    pub(super) map: RawMap,
}

/// The top-level keys of the poll part, in the order they are checked.
pub(super) const POLLING_KEYS: [&str; 9] = [
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

impl RawDefinition {
    /// The polling keys the file writes, in the order they are checked.
    pub(super) fn polling_keys(&self) -> Vec<&'static str> {
        let present = [
            self.default_schedule.is_some(),
            self.default_backfill.is_some(),
            self.auth.is_some(),
            self.request.is_some(),
            self.pagination.is_some(),
            self.cursor.is_some(),
            self.rate_limit.is_some(),
            self.records.is_some(),
            self.map.is_some(),
        ];
        POLLING_KEYS
            .into_iter()
            .zip(present)
            .filter_map(|(key, present)| present.then_some(key))
            .collect()
    }

    /// Takes the polling keys out as one part: `Ok(None)` when the file writes none of them,
    /// `Err(key)` naming the first one missing when it writes some.
    pub(super) fn take_poll(&mut self) -> Result<Option<RawPoll>, &'static str> {
        if self.polling_keys().is_empty() {
            return Ok(None);
        }
        Ok(Some(RawPoll {
            default_schedule: self.default_schedule.take().ok_or("default_schedule")?,
            default_backfill: self.default_backfill.take().ok_or("default_backfill")?,
            auth: self.auth.take().ok_or("auth")?,
            request: self.request.take().ok_or("request")?,
            pagination: self.pagination.take().ok_or("pagination")?,
            cursor: self.cursor.take().ok_or("cursor")?,
            rate_limit: self.rate_limit.take().ok_or("rate_limit")?,
            records: self.records.take().ok_or("records")?,
            map: self.map.take().ok_or("map")?,
        }))
    }
}

/// `[webhook]`: the vendor pushes deliveries to `/hooks/{integration_id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    /// `[webhook.signature]`: how a delivery proves it comes from the vendor.
    pub(super) signature: crate::webhooks::SignatureScheme,
    /// Credential fields holding the signing secret(s), current first (rotation).
    pub(super) secrets: Vec<String>,
    /// Where a delivery's records are (`data.events`); `""` = the body is the array (or one
    /// record); absent = deliveries only announce activity, and the hub polls at once instead.
    pub(super) records: Option<String>,
    /// Records are already unified events (an in-house application's): they are validated as
    /// `POST /api/v1/events` lines are, instead of going through `map`.
    #[serde(default)]
    pub(super) unified: bool,
    /// Largest delivery this vendor sends, bytes; larger ones are refused with `413` before
    /// their signature is checked. Defaults to the hub's `webhook_max_body_bytes` (1 MiB).
    pub(super) max_body_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawField {
    pub(super) name: String,
    #[serde(default)]
    pub(super) required: bool,
    #[serde(default)]
    pub(super) description: String,
    pub(super) default: Option<String>,
    /// The only values allowed (checked when an integration is saved).
    #[serde(default)]
    pub(super) choices: Vec<String>,
    /// `url`: an outbound URL (checked like `base_url`; changing its host needs the credentials
    /// again). `base_url` is always one.
    pub(super) kind: Option<FieldKind>,
    /// Credentials only: `false` for an identifier that vendors also write into their records
    /// (an account's email, an OAuth client id), which is then not scrubbed from vendor text.
    pub(super) secret: Option<bool>,
}

// serde ignores unknown keys of internally tagged enums, so the tagged tables are read as
// flat structs (which do deny them) and then checked into their enums.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    pub(super) kind: AuthKind,
    pub(super) header: Option<String>,
    pub(super) value: Option<String>,
    pub(super) username: Option<String>,
    pub(super) password: Option<String>,
    pub(super) token_url: Option<String>,
    pub(super) client_id: Option<String>,
    pub(super) client_secret: Option<String>,
    pub(super) scope: Option<String>,
    pub(super) audience: Option<String>,
    pub(super) client_auth: Option<ClientAuth>,
    pub(super) issuer: Option<String>,
    pub(super) subject: Option<String>,
    pub(super) private_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum AuthKind {
    Header,
    Basic,
    Oauth2ClientCredentials,
    Oauth2JwtBearer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPagination {
    pub(super) kind: PaginationKind,
    pub(super) path: Option<String>,
    pub(super) param: Option<String>,
    /// A boolean in the body that is `false` when the vendor has nothing more now.
    pub(super) more: Option<String>,
    /// `offset`: what the parameter counts (`records`, the default, or `pages`).
    pub(super) unit: Option<OffsetUnit>,
    /// `offset`: the value the first page has (0 for records; 1 for pages if not given).
    pub(super) start: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum PaginationKind {
    LinkHeader,
    BodyCursor,
    NextUrlInBody,
    LastRecord,
    Offset,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRequest {
    pub(super) path: String,
    #[serde(default)]
    pub(super) query: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    pub(super) since: RawSince,
    /// The upper bound of a time window, where the vendor takes one: backfills are then split
    /// into windows fetched concurrently.
    pub(super) until: Option<RawSince>,
    pub(super) path_choice: Option<RawPathChoice>,
    #[serde(default = "default_method")]
    pub(super) method: HttpMethod,
    /// POST only: constant fields of the body that starts a walk (the since field is added).
    pub(super) body: Option<toml::Table>,
}

fn default_method() -> HttpMethod {
    HttpMethod::Get
}

/// `[request.path_choice]`: the path picked by a config field's value (a named endpoint).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPathChoice {
    pub(super) config: String,
    pub(super) paths: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSince {
    pub(super) param: String,
    pub(super) template: String,
    pub(super) format: TimeParamFormat,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCursor {
    pub(super) kind: CursorKind,
    pub(super) order: Order,
    pub(super) overlap: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimit {
    pub(super) requests_per_minute: u32,
    pub(super) burst: Option<u32>,
    pub(super) remaining_header: Option<String>,
    pub(super) reset_header: Option<String>,
    #[serde(default = "default_reset_format")]
    pub(super) reset_format: ResetFormat,
    #[serde(default)]
    pub(super) body_markers: Vec<String>,
    pub(super) default_wait: String,
    #[serde(default = "default_scope")]
    pub(super) scope: LimitScope,
}

fn default_scope() -> LimitScope {
    LimitScope::Integration
}

fn default_reset_format() -> ResetFormat {
    ResetFormat::EpochSeconds
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecords {
    pub(super) path: String,
    pub(super) error_flag: Option<String>,
    pub(super) error_message: Option<String>,
    #[serde(default)]
    pub(super) credential_errors: Vec<String>,
    #[serde(default)]
    pub(super) cursor_errors: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMap {
    pub(super) source_id: PathList,
    /// A composite vendor id: these values joined with `/` (Google's `id.time` and
    /// `id.uniqueQualifier`); `source_id` is used when one of them is missing.
    #[serde(default)]
    pub(super) source_id_join: Vec<String>,
    pub(super) event_type: Option<PathList>,
    /// The event type when `event_type` finds nothing (or for endpoints with one kind of record).
    pub(super) default_event_type: Option<String>,
    pub(super) time: RawTime,
    pub(super) description: Option<PathList>,
    pub(super) session_id: Option<PathList>,
    pub(super) severity: Option<RawLookup>,
    pub(super) default_category: Category,
    pub(super) default_action: Action,
    pub(super) actor: RawActor,
    #[serde(default)]
    pub(super) targets: Vec<RawTarget>,
    #[serde(default)]
    pub(super) changes: Vec<RawChanges>,
    pub(super) outcome: RawOutcome,
    #[serde(default)]
    pub(super) classify: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTime {
    pub(super) path: PathList,
    pub(super) format: TimeFormat,
}

/// A literal `value`, or a `path` whose value is looked up in `table` (else `default`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLookup {
    pub(super) value: Option<String>,
    pub(super) path: Option<PathList>,
    /// The value of the first entry whose path holds something (`present`).
    #[serde(default)]
    pub(super) present: Vec<RawPresent>,
    #[serde(default)]
    pub(super) table: BTreeMap<String, String>,
    pub(super) default: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPresent {
    pub(super) path: String,
    pub(super) value: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawActor {
    pub(super) id: PathList,
    pub(super) name: Option<PathList>,
    pub(super) email: Option<PathList>,
    #[serde(rename = "type")]
    pub(super) kind: Option<RawLookup>,
    pub(super) ip: Option<PathList>,
    pub(super) user_agent: Option<PathList>,
    pub(super) city: Option<PathList>,
    pub(super) region: Option<PathList>,
    pub(super) country: Option<PathList>,
    pub(super) latitude: Option<PathList>,
    pub(super) longitude: Option<PathList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) each: Option<String>,
    #[serde(rename = "type")]
    pub(super) kind: RawLookup,
    pub(super) id: PathList,
    pub(super) name: Option<PathList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChanges {
    pub(super) each: Option<String>,
    pub(super) list: Option<String>,
    pub(super) field: Option<String>,
    pub(super) old: String,
    pub(super) new: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutcome {
    pub(super) path: Option<PathList>,
    #[serde(default)]
    pub(super) success: Vec<String>,
    #[serde(default)]
    pub(super) failure: Vec<String>,
    pub(super) default: Outcome,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(rename = "match")]
    pub(super) patterns: Vec<String>,
    pub(super) category: Category,
    pub(super) action: Action,
    pub(super) outcome: Option<Outcome>,
    pub(super) severity: Option<Severity>,
}
