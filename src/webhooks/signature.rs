//! Webhook signature schemes: how a delivery proves that it comes from whoever holds the
//! integration's secret, checked on the raw body before a single byte of it is parsed.
//!
//! A connector definition names its scheme in a `[webhook]` table, which deserialises into
//! the closed [`SignatureScheme`] enum and is validated on the way in: a generic HMAC
//! definition whose signed payload leaves out the body or the timestamp it claims to check
//! never loads. Every scheme takes a list of secrets so that an operator can rotate without
//! dropping deliveries: any secret that matches accepts, and [`Verified::matched_secret`] says
//! which one did, so the old secret can be removed once nothing uses it any more.
//!
//! MACs and shared tokens are compared in constant time. Rejections are a closed enum with
//! stable codes whose messages name headers and timestamps, never a secret or an expected
//! signature, so they are safe to log and to return to the sender.
//!
//! This file holds what every scheme shares (the scheme enum and its dispatch, the outcomes and
//! errors, reading headers); each mechanism has a file of its own: `hmac_header` (one HMAC in
//! one header, and the HMAC primitives), `shared_token` (the secret itself in a header, and its
//! GET handshake), `standard_webhooks` (standardwebhooks.com signatures).

mod hmac_header;
mod shared_token;
mod standard_webhooks;

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

pub use hmac_header::{HmacAlgorithm, HmacHeaderDefinition, HmacHeaderScheme, SignatureEncoding};
pub use shared_token::{HandshakeReply, SharedTokenDefinition, SharedTokenScheme};
pub use standard_webhooks::{new_standard_webhooks_secret, sign_standard_webhook};

use crate::config::Secret;
use shared_token::{handshake_reply, verify_shared_token};
use standard_webhooks::{standard_webhooks_key, verify_standard_webhooks};

/// Slack and the Standard Webhooks reference libraries both accept five minutes of clock skew
/// either way; the generic scheme uses the same unless its definition says otherwise.
pub const DEFAULT_TOLERANCE_SECONDS: u32 = 300;

/// Delivery ids become dedupe keys; a vendor's are GUID-sized, so anything far longer is junk.
const MAX_DELIVERY_ID_BYTES: usize = 256;

/// Vendors disagree on base64 padding; being lenient about it when decoding costs no safety,
/// because the decoded bytes still have to match a MAC.
const BASE64_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How a connector's webhook deliveries are authenticated.
///
/// Deserialises from a connector definition's `[webhook]` table, tagged by `scheme`:
///
/// ```toml
/// [webhook]
/// scheme = "hmac_header"       # or "shared_token", "standard_webhooks"
/// ```
///
/// A vendor's HMAC header (GitHub's, Slack's, Zoom's...) is `scheme = "hmac_header"` with the
/// fields of [`HmacHeaderDefinition`], written in its connector file: the scheme names a
/// mechanism, the connector says how its vendor uses it. `github`, `slack_v0` and
/// `okta_event_hook` are former names kept so that connector files written with them still
/// load; each is exactly one definition ([`HmacHeaderDefinition::former_github`],
/// [`HmacHeaderDefinition::former_slack_v0`], [`SharedTokenDefinition::former_okta_event_hook`]).
/// Unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "SchemeDefinition")]
pub enum SignatureScheme {
    /// No MAC: a header holds the shared secret itself (Okta event hooks), optionally with a
    /// GET handshake that echoes a challenge, see [`SignatureScheme::verification_handshake`].
    SharedToken(SharedTokenScheme),
    /// Standard Webhooks (standardwebhooks.com), symmetric `v1` signatures: HMAC-SHA256 keyed
    /// with the base64-decoded `whsec_` secret over `"{webhook-id}.{webhook-timestamp}.{body}"`.
    /// The scheme of the in-house `webhook` connector.
    StandardWebhooks,
    /// One HMAC in one header, as described by the connector definition.
    HmacHeader(HmacHeaderScheme),
}

/// The `[webhook]` table as written, before validation. The parameterless schemes are empty
/// struct variants, not unit variants, because serde lets a unit variant of an internally
/// tagged enum ignore extra keys, and `deny_unknown_fields` must catch a misplaced parameter.
#[derive(Debug, Deserialize)]
#[serde(tag = "scheme", deny_unknown_fields)]
enum SchemeDefinition {
    #[serde(rename = "github")]
    Github {},
    #[serde(rename = "slack_v0")]
    SlackV0 {},
    #[serde(rename = "okta_event_hook")]
    OktaEventHook {},
    #[serde(rename = "shared_token")]
    SharedToken(SharedTokenDefinition),
    #[serde(rename = "standard_webhooks")]
    StandardWebhooks {},
    #[serde(rename = "hmac_header")]
    HmacHeader(HmacHeaderDefinition),
}

impl TryFrom<SchemeDefinition> for SignatureScheme {
    type Error = SchemeError;

    fn try_from(definition: SchemeDefinition) -> Result<SignatureScheme, SchemeError> {
        Ok(match definition {
            SchemeDefinition::Github {} => SignatureScheme::HmacHeader(HmacHeaderScheme::try_from(
                HmacHeaderDefinition::former_github(),
            )?),
            SchemeDefinition::SlackV0 {} => SignatureScheme::HmacHeader(
                HmacHeaderScheme::try_from(HmacHeaderDefinition::former_slack_v0())?,
            ),
            SchemeDefinition::OktaEventHook {} => SignatureScheme::SharedToken(
                SharedTokenScheme::try_from(SharedTokenDefinition::former_okta_event_hook())?,
            ),
            SchemeDefinition::SharedToken(token) => {
                SignatureScheme::SharedToken(SharedTokenScheme::try_from(token)?)
            }
            SchemeDefinition::StandardWebhooks {} => SignatureScheme::StandardWebhooks,
            SchemeDefinition::HmacHeader(hmac) => {
                SignatureScheme::HmacHeader(HmacHeaderScheme::try_from(hmac)?)
            }
        })
    }
}

/// Why a `[webhook]` definition cannot be used. Reported when the connector loads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemeError {
    #[error("{field}: {value:?} is not a valid HTTP header name")]
    InvalidHeaderName { field: &'static str, value: String },
    #[error(
        "signed_payload: unknown placeholder {{{0}}} (known: {{body}}, {{timestamp}}, {{id}})"
    )]
    UnknownPlaceholder(String),
    #[error("signed_payload: a '{{' has no closing '}}'")]
    UnclosedPlaceholder,
    #[error("signed_payload: {{{0}}} appears more than once")]
    RepeatedPlaceholder(&'static str),
    #[error("signed_payload must contain {{body}}, or the signature would not cover the delivery")]
    BodyNotSigned,
    #[error(
        "timestamp_header is set but signed_payload has no {{timestamp}}: \
         an unsigned timestamp cannot stop replays"
    )]
    TimestampNotSigned,
    #[error("signed_payload uses {{timestamp}} but timestamp_header is not set")]
    TimestampHeaderMissing,
    #[error("signed_payload uses {{id}} but id_header is not set")]
    IdHeaderMissing,
    #[error("tolerance_seconds needs timestamp_header")]
    ToleranceWithoutTimestamp,
    #[error("tolerance_seconds must be at least 1")]
    ZeroTolerance,
    #[error("challenge_header and challenge_reply_field go together")]
    ChallengeHalfSet,
    #[error("challenge_reply_field must be 1 to 64 characters")]
    ChallengeReplyField,
}

fn parse_header_name(field: &'static str, value: &str) -> Result<HeaderName, SchemeError> {
    HeaderName::from_bytes(value.as_bytes()).map_err(|_| SchemeError::InvalidHeaderName {
        field,
        value: value.to_owned(),
    })
}

/// A delivery that passed its scheme's checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The vendor's id for this delivery, when the scheme has one: the idempotency key that
    /// lets a retried delivery be recognised before its events are normalised.
    pub delivery_id: Option<DeliveryId>,
    /// The signed Unix time, for schemes that sign one.
    pub timestamp: Option<i64>,
    /// Index into the secrets given to [`SignatureScheme::verify`] of the one that matched.
    pub matched_secret: usize,
}

/// A vendor's delivery id: visible ASCII, at most 256 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryId(String);

impl DeliveryId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a delivery was refused. Messages never contain a secret, an expected signature or the
/// signature that was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// The integration has no secret the scheme can use: the operator must act, the sender
    /// did nothing wrong.
    #[error("no usable webhook secret is configured for this integration")]
    NoSecretConfigured,
    #[error("missing header {header}")]
    MissingHeader { header: HeaderName },
    #[error("header {header} is malformed: {problem}")]
    MalformedHeader {
        header: HeaderName,
        problem: &'static str,
    },
    #[error("header {header} does not hold a signature in the expected form: {problem}")]
    MalformedSignature {
        header: HeaderName,
        problem: &'static str,
    },
    #[error("signature does not match any configured secret")]
    BadSignature,
    #[error("header {header} does not match any configured secret")]
    BadToken { header: HeaderName },
    #[error(
        "signed timestamp {timestamp} is more than {tolerance_seconds} s away from the hub's \
         clock ({now})"
    )]
    StaleTimestamp {
        timestamp: i64,
        now: i64,
        tolerance_seconds: u32,
    },
}

impl RejectReason {
    /// Stable snake_case code for the API error body, logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::NoSecretConfigured => "webhook_secret_not_configured",
            RejectReason::MissingHeader { .. } => "missing_header",
            RejectReason::MalformedHeader { .. } => "malformed_header",
            RejectReason::MalformedSignature { .. } => "malformed_signature",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::BadToken { .. } => "bad_token",
            RejectReason::StaleTimestamp { .. } => "stale_timestamp",
        }
    }

    /// True when the hub's configuration, not the request, is at fault.
    pub fn is_configuration_fault(&self) -> bool {
        matches!(self, RejectReason::NoSecretConfigured)
    }
}

/// Why a secret cannot serve a scheme. Checked when an operator stores or rotates a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("the webhook secret is empty")]
    Empty,
    #[error("a standard webhooks secret must be base64, optionally after a whsec_ prefix")]
    NotBase64,
}

impl SignatureScheme {
    /// Checks one delivery. `secrets` are the integration's current secrets, any of which may
    /// match (rotation); empty or unusable ones are skipped. `body` must be the raw bytes as
    /// received. `now_unix` is the hub's clock in Unix seconds.
    pub fn verify(
        &self,
        secrets: &[Secret],
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Verified, RejectReason> {
        match self {
            SignatureScheme::SharedToken(scheme) => {
                verify_shared_token(secrets, headers, &scheme.header)
            }
            SignatureScheme::StandardWebhooks => {
                verify_standard_webhooks(secrets, headers, body, now_unix)
            }
            SignatureScheme::HmacHeader(scheme) => scheme.verify(secrets, headers, body, now_unix),
        }
    }

    /// The `scheme` value that names this scheme in a `[webhook]` table, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            SignatureScheme::SharedToken(_) => "shared_token",
            SignatureScheme::StandardWebhooks => "standard_webhooks",
            SignatureScheme::HmacHeader(_) => "hmac_header",
        }
    }

    /// The reply to a vendor's GET verification handshake on the webhook URL, or `None` when
    /// the scheme has no such handshake (the receiver should then refuse the GET).
    pub fn verification_handshake(
        &self,
        headers: &HeaderMap,
    ) -> Option<Result<HandshakeReply, RejectReason>> {
        match self {
            SignatureScheme::SharedToken(SharedTokenScheme {
                handshake: Some((challenge_header, field)),
                ..
            }) => Some(handshake_reply(headers, challenge_header, field)),
            SignatureScheme::SharedToken(_) => None,
            SignatureScheme::StandardWebhooks | SignatureScheme::HmacHeader(_) => None,
        }
    }

    /// Whether `secret` can ever verify a delivery under this scheme, so that a typo is caught
    /// when the secret is stored rather than as a stream of rejected deliveries.
    pub fn check_secret(&self, secret: &Secret) -> Result<(), SecretError> {
        match self {
            SignatureScheme::StandardWebhooks => standard_webhooks_key(secret).map(drop),
            SignatureScheme::SharedToken(_) | SignatureScheme::HmacHeader(_) => {
                if secret.expose().is_empty() {
                    Err(SecretError::Empty)
                } else {
                    Ok(())
                }
            }
        }
    }
}

/// The secrets as HMAC keys (or Okta tokens), with their positions. An empty secret is
/// skipped: anyone could compute a MAC with an empty key.
fn raw_keys(secrets: &[Secret]) -> Result<Vec<(usize, &[u8])>, RejectReason> {
    let keys: Vec<(usize, &[u8])> = secrets
        .iter()
        .enumerate()
        .filter(|(_, secret)| !secret.expose().is_empty())
        .map(|(index, secret)| (index, secret.expose().as_bytes()))
        .collect();
    if keys.is_empty() {
        return Err(RejectReason::NoSecretConfigured);
    }
    Ok(keys)
}

/// The one value of `name`. A repeated signature or timestamp header is refused rather than
/// guessed at: which copy a proxy keeps is not something to rely on.
fn single_value<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, RejectReason> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(RejectReason::MalformedHeader {
            header: name.clone(),
            problem: "sent more than once",
        });
    }
    if first.is_empty() {
        return Ok(None);
    }
    Ok(Some(first))
}

fn required_value<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<&'a HeaderValue, RejectReason> {
    single_value(headers, name)?.ok_or_else(|| RejectReason::MissingHeader {
        header: name.clone(),
    })
}

fn optional_text<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a str>, RejectReason> {
    single_value(headers, name)?
        .map(|value| {
            value.to_str().map_err(|_| RejectReason::MalformedHeader {
                header: name.clone(),
                problem: "not visible ASCII",
            })
        })
        .transpose()
}

fn required_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<&'a str, RejectReason> {
    optional_text(headers, name)?.ok_or_else(|| RejectReason::MissingHeader {
        header: name.clone(),
    })
}

fn parse_delivery_id(name: &HeaderName, text: &str) -> Result<DeliveryId, RejectReason> {
    if text.len() > MAX_DELIVERY_ID_BYTES {
        return Err(RejectReason::MalformedHeader {
            header: name.clone(),
            problem: "delivery id longer than 256 bytes",
        });
    }
    Ok(DeliveryId(text.to_owned()))
}

/// Whole Unix seconds, digits only: a sign, a fraction or milliseconds would mean the sender
/// speaks another scheme, and failing loudly beats a confusing stale-timestamp rejection.
fn parse_unix_seconds(name: &HeaderName, text: &str) -> Result<i64, RejectReason> {
    let malformed = || RejectReason::MalformedHeader {
        header: name.clone(),
        problem: "not a Unix time in whole seconds",
    };
    if text.len() > 11 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(malformed());
    }
    text.parse().map_err(|_| malformed())
}

fn check_freshness(timestamp: i64, now: i64, tolerance_seconds: u32) -> Result<(), RejectReason> {
    if timestamp.abs_diff(now) > u64::from(tolerance_seconds) {
        return Err(RejectReason::StaleTimestamp {
            timestamp,
            now,
            tolerance_seconds,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
