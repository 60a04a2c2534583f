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

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::config::Secret;

/// Slack and the Standard Webhooks reference libraries both accept five minutes of clock skew
/// either way; the generic scheme uses the same unless its definition says otherwise.
pub const DEFAULT_TOLERANCE_SECONDS: u32 = 300;

/// Delivery ids become dedupe keys; a vendor's are GUID-sized, so anything far longer is junk.
const MAX_DELIVERY_ID_BYTES: usize = 256;

/// A handshake's challenge is a short random string (Okta's is); echoing an arbitrarily long
/// header back is not something the handshake needs.
const MAX_CHALLENGE_BYTES: usize = 512;

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

const STANDARD_WEBHOOKS_SECRET_PREFIX: &str = "whsec_";

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

/// The fields of a `scheme = "hmac_header"` table.
///
/// ```toml
/// [webhook]
/// scheme = "hmac_header"
/// header = "x-zm-signature"
/// prefix = "v0="
/// algorithm = "sha256"
/// encoding = "hex"
/// timestamp_header = "x-zm-request-timestamp"
/// signed_payload = "v0:{timestamp}:{body}"
/// tolerance_seconds = 300
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacHeaderDefinition {
    /// The header that carries the signature.
    pub header: String,
    /// What precedes the encoded MAC in that header, such as `sha256=`; empty when nothing does.
    #[serde(default)]
    pub prefix: String,
    pub algorithm: HmacAlgorithm,
    pub encoding: SignatureEncoding,
    /// A header with the Unix time in seconds when the vendor signed the delivery.
    pub timestamp_header: Option<String>,
    /// What the MAC covers: literal text and the placeholders `{body}` (the raw body, exactly
    /// once), `{timestamp}` and `{id}` (those headers' text as sent). Defaults to `{body}`.
    pub signed_payload: Option<String>,
    /// How far the signed timestamp may be from the hub's clock, either way. Defaults to
    /// [`DEFAULT_TOLERANCE_SECONDS`] when there is a timestamp header.
    pub tolerance_seconds: Option<u32>,
    /// A header with the vendor's delivery id, returned for dedupe. Unless `{id}` is in
    /// `signed_payload` the id is not covered by the signature: a hint, not a proof.
    pub id_header: Option<String>,
}

/// The fields of a `scheme = "shared_token"` table.
///
/// ```toml
/// [webhook.signature]
/// scheme = "shared_token"
/// header = "authorization"                            # the default
/// challenge_header = "x-okta-verification-challenge"  # optional GET handshake
/// challenge_reply_field = "verification"              # answered {"verification": "<challenge>"}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedTokenDefinition {
    /// The header whose whole value must equal a secret. Defaults to `authorization`.
    pub header: Option<String>,
    /// A header in which the vendor sends a challenge with a GET on the webhook URL, answered
    /// with the challenge echoed as JSON.
    pub challenge_header: Option<String>,
    /// The JSON member the challenge is echoed in; required with `challenge_header`.
    pub challenge_reply_field: Option<String>,
}

impl SharedTokenDefinition {
    /// What the former scheme name `okta_event_hook` stands for (connectors/okta.toml spells it
    /// out).
    pub fn former_okta_event_hook() -> SharedTokenDefinition {
        SharedTokenDefinition {
            header: Some("authorization".into()),
            challenge_header: Some("x-okta-verification-challenge".into()),
            challenge_reply_field: Some("verification".into()),
        }
    }
}

/// A validated `shared_token` scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedTokenScheme {
    pub(crate) header: HeaderName,
    /// The challenge header and the reply's member.
    pub(crate) handshake: Option<(HeaderName, String)>,
}

impl TryFrom<SharedTokenDefinition> for SharedTokenScheme {
    type Error = SchemeError;

    fn try_from(definition: SharedTokenDefinition) -> Result<SharedTokenScheme, SchemeError> {
        let header = parse_header_name(
            "header",
            definition.header.as_deref().unwrap_or("authorization"),
        )?;
        let handshake = match (
            definition.challenge_header,
            definition.challenge_reply_field,
        ) {
            (None, None) => None,
            (Some(name), Some(field)) if !field.is_empty() && field.len() <= 64 => {
                Some((parse_header_name("challenge_header", &name)?, field))
            }
            (Some(_), Some(_)) => return Err(SchemeError::ChallengeReplyField),
            _ => return Err(SchemeError::ChallengeHalfSet),
        };
        Ok(SharedTokenScheme { header, handshake })
    }
}

impl HmacHeaderDefinition {
    /// What the former scheme name `github` stands for (connectors/github.toml spells it out).
    pub fn former_github() -> HmacHeaderDefinition {
        HmacHeaderDefinition {
            header: "x-hub-signature-256".into(),
            prefix: "sha256=".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            timestamp_header: None,
            signed_payload: None,
            tolerance_seconds: None,
            id_header: Some("x-github-delivery".into()),
        }
    }

    /// What the former scheme name `slack_v0` stands for.
    pub fn former_slack_v0() -> HmacHeaderDefinition {
        HmacHeaderDefinition {
            header: "x-slack-signature".into(),
            prefix: "v0=".into(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            timestamp_header: Some("x-slack-request-timestamp".into()),
            signed_payload: Some("v0:{timestamp}:{body}".into()),
            tolerance_seconds: Some(DEFAULT_TOLERANCE_SECONDS),
            id_header: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    Sha256,
    /// Only for vendors that still sign with SHA-1; HMAC-SHA1 is not yet broken as a MAC.
    Sha1,
}

/// How the MAC bytes are written in the signature header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    /// Either case.
    Hex,
    /// Standard alphabet, padding optional.
    Base64,
}

/// A validated `hmac_header` scheme. Built only through [`HmacHeaderDefinition`], so its
/// signed payload always covers the body and, when there is one, the timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacHeaderScheme {
    signature_header: HeaderName,
    prefix: String,
    algorithm: HmacAlgorithm,
    encoding: SignatureEncoding,
    timestamp: Option<TimestampRule>,
    id_header: Option<HeaderName>,
    signed_payload: Vec<PayloadPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct TimestampRule {
    header: HeaderName,
    tolerance_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PayloadPart {
    Literal(String),
    Body,
    Timestamp,
    Id,
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

impl TryFrom<HmacHeaderDefinition> for HmacHeaderScheme {
    type Error = SchemeError;

    fn try_from(definition: HmacHeaderDefinition) -> Result<HmacHeaderScheme, SchemeError> {
        let signature_header = parse_header_name("header", &definition.header)?;
        let timestamp_header = definition
            .timestamp_header
            .as_deref()
            .map(|name| parse_header_name("timestamp_header", name))
            .transpose()?;
        let id_header = definition
            .id_header
            .as_deref()
            .map(|name| parse_header_name("id_header", name))
            .transpose()?;
        let signed_payload =
            parse_signed_payload(definition.signed_payload.as_deref().unwrap_or("{body}"))?;
        let signs_timestamp = signed_payload.contains(&PayloadPart::Timestamp);
        if signs_timestamp && timestamp_header.is_none() {
            return Err(SchemeError::TimestampHeaderMissing);
        }
        if timestamp_header.is_some() && !signs_timestamp {
            return Err(SchemeError::TimestampNotSigned);
        }
        if signed_payload.contains(&PayloadPart::Id) && id_header.is_none() {
            return Err(SchemeError::IdHeaderMissing);
        }
        let timestamp = match (timestamp_header, definition.tolerance_seconds) {
            (None, Some(_)) => return Err(SchemeError::ToleranceWithoutTimestamp),
            (None, None) => None,
            (Some(_), Some(0)) => return Err(SchemeError::ZeroTolerance),
            (Some(header), tolerance) => Some(TimestampRule {
                header,
                tolerance_seconds: tolerance.unwrap_or(DEFAULT_TOLERANCE_SECONDS),
            }),
        };
        Ok(HmacHeaderScheme {
            signature_header,
            prefix: definition.prefix,
            algorithm: definition.algorithm,
            encoding: definition.encoding,
            timestamp,
            id_header,
            signed_payload,
        })
    }
}

fn parse_header_name(field: &'static str, value: &str) -> Result<HeaderName, SchemeError> {
    HeaderName::from_bytes(value.as_bytes()).map_err(|_| SchemeError::InvalidHeaderName {
        field,
        value: value.to_owned(),
    })
}

fn parse_signed_payload(template: &str) -> Result<Vec<PayloadPart>, SchemeError> {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(PayloadPart::Literal(rest[..open].to_owned()));
        }
        let after_open = &rest[open + 1..];
        let close = after_open
            .find('}')
            .ok_or(SchemeError::UnclosedPlaceholder)?;
        let (part, name) = match &after_open[..close] {
            "body" => (PayloadPart::Body, "body"),
            "timestamp" => (PayloadPart::Timestamp, "timestamp"),
            "id" => (PayloadPart::Id, "id"),
            unknown => return Err(SchemeError::UnknownPlaceholder(unknown.to_owned())),
        };
        if parts.contains(&part) {
            return Err(SchemeError::RepeatedPlaceholder(name));
        }
        parts.push(part);
        rest = &after_open[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(PayloadPart::Literal(rest.to_owned()));
    }
    if !parts.contains(&PayloadPart::Body) {
        return Err(SchemeError::BodyNotSigned);
    }
    Ok(parts)
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

/// The reply to a vendor's GET handshake: `{"<field>": "<challenge>"}` (Okta:
/// `{"verification": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeReply {
    pub field: String,
    pub challenge: String,
}

impl HandshakeReply {
    pub fn to_json(&self) -> String {
        let mut reply = serde_json::Map::new();
        reply.insert(self.field.clone(), self.challenge.clone().into());
        serde_json::Value::Object(reply).to_string()
    }
}

/// Answers a GET handshake: the challenge header's value echoed back as JSON, which proves to
/// the vendor that this endpoint is the one it was registered with.
fn handshake_reply(
    headers: &HeaderMap,
    challenge_header: &HeaderName,
    field: &str,
) -> Result<HandshakeReply, RejectReason> {
    let challenge = required_text(headers, challenge_header)?;
    if challenge.len() > MAX_CHALLENGE_BYTES {
        return Err(RejectReason::MalformedHeader {
            header: challenge_header.clone(),
            problem: "longer than 512 bytes",
        });
    }
    Ok(HandshakeReply {
        field: field.to_owned(),
        challenge: challenge.to_owned(),
    })
}

/// The `webhook-signature` header value (`v1,<base64>`) that an in-house app sends with a
/// delivery, for a Standard Webhooks secret (`whsec_<base64>`, or the bare base64).
pub fn sign_standard_webhook(
    secret: &Secret,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, SecretError> {
    let key = standard_webhooks_key(secret)?;
    let timestamp = timestamp.to_string();
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&key).expect("HMAC accepts keys of any length");
    for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
        mac.update(part);
    }
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// A fresh Standard Webhooks secret: `whsec_` and 32 random bytes in base64, within the
/// specification's 24 to 64 bytes.
pub fn new_standard_webhooks_secret() -> Secret {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the OS random source is available");
    Secret::new(format!(
        "{STANDARD_WEBHOOKS_SECRET_PREFIX}{}",
        STANDARD.encode(key)
    ))
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

fn verify_shared_token(
    secrets: &[Secret],
    headers: &HeaderMap,
    header: &HeaderName,
) -> Result<Verified, RejectReason> {
    let keys = raw_keys(secrets)?;
    let header = header.clone();
    let presented = required_value(headers, &header)?;
    // Comparing digests keeps the comparison constant-time in the secret's length as well.
    let presented_digest = Sha256::digest(presented.as_bytes());
    let matched_secret = keys
        .iter()
        .find(|(_, key)| bool::from(Sha256::digest(key).ct_eq(&presented_digest)))
        .map(|(index, _)| *index)
        .ok_or(RejectReason::BadToken { header })?;
    Ok(Verified {
        delivery_id: None,
        timestamp: None,
        matched_secret,
    })
}

fn verify_standard_webhooks(
    secrets: &[Secret],
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
) -> Result<Verified, RejectReason> {
    let decoded: Vec<(usize, Vec<u8>)> = secrets
        .iter()
        .enumerate()
        .filter_map(|(index, secret)| Some((index, standard_webhooks_key(secret).ok()?)))
        .collect();
    if decoded.is_empty() {
        return Err(RejectReason::NoSecretConfigured);
    }
    let keys: Vec<(usize, &[u8])> = decoded
        .iter()
        .map(|(index, key)| (*index, key.as_slice()))
        .collect();
    let id = required_text(headers, &WEBHOOK_ID)?;
    let delivery_id = parse_delivery_id(&WEBHOOK_ID, id)?;
    let timestamp_text = required_text(headers, &WEBHOOK_TIMESTAMP)?;
    let timestamp = parse_unix_seconds(&WEBHOOK_TIMESTAMP, timestamp_text)?;
    let signatures =
        parse_standard_webhooks_signatures(required_text(headers, &WEBHOOK_SIGNATURE)?)?;
    check_freshness(timestamp, now_unix, DEFAULT_TOLERANCE_SECONDS)?;
    let payload = [id.as_bytes(), b".", timestamp_text.as_bytes(), b".", body];
    let matched_secret = HmacAlgorithm::Sha256
        .first_matching_key(&keys, &payload, &signatures)
        .ok_or(RejectReason::BadSignature)?;
    Ok(Verified {
        delivery_id: Some(delivery_id),
        timestamp: Some(timestamp),
        matched_secret,
    })
}

/// `webhook-signature` is a space-separated list of `<version>,<base64>` so that a sender can
/// sign with several keys during its own rotation. Only symmetric `v1` entries can be checked
/// here; other versions (`v1a` is ed25519) are skipped, and so are `v1` entries that do not
/// decode to a SHA-256 MAC, as the reference libraries do.
fn parse_standard_webhooks_signatures(text: &str) -> Result<Vec<Vec<u8>>, RejectReason> {
    let signatures: Vec<Vec<u8>> = text
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| BASE64_ANY_PADDING.decode(encoded).ok())
        .filter(|mac| mac.len() == HmacAlgorithm::Sha256.output_len())
        .collect();
    if signatures.is_empty() {
        return Err(RejectReason::MalformedSignature {
            header: WEBHOOK_SIGNATURE,
            problem: "no v1,<base64 HMAC-SHA256> entry",
        });
    }
    Ok(signatures)
}

impl HmacHeaderScheme {
    fn verify(
        &self,
        secrets: &[Secret],
        headers: &HeaderMap,
        body: &[u8],
        now_unix: i64,
    ) -> Result<Verified, RejectReason> {
        let keys = raw_keys(secrets)?;
        let signs_id = self.signed_payload.contains(&PayloadPart::Id);
        let id_text = match &self.id_header {
            Some(header) if signs_id => Some(required_text(headers, header)?),
            Some(header) => optional_text(headers, header)?,
            None => None,
        };
        let delivery_id = match (&self.id_header, id_text) {
            (Some(header), Some(text)) => Some(parse_delivery_id(header, text)?),
            _ => None,
        };
        let timestamp = match &self.timestamp {
            Some(rule) => {
                let text = required_text(headers, &rule.header)?;
                Some((text, parse_unix_seconds(&rule.header, text)?))
            }
            None => None,
        };
        let signature = required_text(headers, &self.signature_header)?;
        let mac = decode_signature(
            &self.signature_header,
            signature,
            &self.prefix,
            self.encoding,
            self.algorithm,
        )?;
        if let (Some(rule), Some((_, seconds))) = (&self.timestamp, timestamp) {
            check_freshness(seconds, now_unix, rule.tolerance_seconds)?;
        }
        let payload: Vec<&[u8]> = self
            .signed_payload
            .iter()
            .map(|part| match part {
                PayloadPart::Literal(text) => text.as_bytes(),
                PayloadPart::Body => body,
                PayloadPart::Timestamp => timestamp
                    .expect("{timestamp} is only accepted together with timestamp_header")
                    .0
                    .as_bytes(),
                PayloadPart::Id => id_text
                    .expect("{id} is only accepted together with id_header, then required")
                    .as_bytes(),
            })
            .collect();
        let matched_secret = self
            .algorithm
            .first_matching_key(&keys, &payload, &[mac])
            .ok_or(RejectReason::BadSignature)?;
        Ok(Verified {
            delivery_id,
            timestamp: timestamp.map(|(_, seconds)| seconds),
            matched_secret,
        })
    }
}

impl HmacAlgorithm {
    fn output_len(self) -> usize {
        match self {
            HmacAlgorithm::Sha256 => 32,
            HmacAlgorithm::Sha1 => 20,
        }
    }

    /// Index of the first key whose MAC over `payload` equals one of `candidates`.
    fn first_matching_key(
        self,
        keys: &[(usize, &[u8])],
        payload: &[&[u8]],
        candidates: &[Vec<u8>],
    ) -> Option<usize> {
        match self {
            HmacAlgorithm::Sha256 => first_matching_key::<Hmac<Sha256>>(keys, payload, candidates),
            HmacAlgorithm::Sha1 => first_matching_key::<Hmac<Sha1>>(keys, payload, candidates),
        }
    }
}

fn first_matching_key<M: Mac + KeyInit + Clone>(
    keys: &[(usize, &[u8])],
    payload: &[&[u8]],
    candidates: &[Vec<u8>],
) -> Option<usize> {
    keys.iter().find_map(|(index, key)| {
        let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
        for part in payload {
            mac.update(part);
        }
        // verify_slice compares in constant time and refuses a tag of the wrong length.
        candidates
            .iter()
            .any(|candidate| mac.clone().verify_slice(candidate).is_ok())
            .then_some(*index)
    })
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

fn standard_webhooks_key(secret: &Secret) -> Result<Vec<u8>, SecretError> {
    let text = secret.expose();
    let encoded = text
        .strip_prefix(STANDARD_WEBHOOKS_SECRET_PREFIX)
        .unwrap_or(text);
    if encoded.is_empty() {
        return Err(SecretError::Empty);
    }
    BASE64_ANY_PADDING
        .decode(encoded)
        .map_err(|_| SecretError::NotBase64)
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

fn decode_signature(
    name: &HeaderName,
    text: &str,
    prefix: &str,
    encoding: SignatureEncoding,
    algorithm: HmacAlgorithm,
) -> Result<Vec<u8>, RejectReason> {
    let malformed = |problem| RejectReason::MalformedSignature {
        header: name.clone(),
        problem,
    };
    let encoded = text
        .strip_prefix(prefix)
        .ok_or_else(|| malformed("the scheme's prefix is missing"))?;
    let mac = match encoding {
        SignatureEncoding::Hex => hex::decode(encoded).map_err(|_| malformed("not hex"))?,
        SignatureEncoding::Base64 => BASE64_ANY_PADDING
            .decode(encoded)
            .map_err(|_| malformed("not base64"))?,
    };
    if mac.len() != algorithm.output_len() {
        return Err(malformed("wrong length for the scheme's HMAC"));
    }
    Ok(mac)
}

#[cfg(test)]
mod tests;
