//! `scheme = "hmac_header"`: one HMAC of a payload the definition describes, in one header —
//! how GitHub, Slack, Zoom and most vendors sign. Also the HMAC primitives (algorithms, the
//! constant-time match against several keys) that `standard_webhooks` uses as well.

use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use sha1::Sha1;
use sha2::Sha256;

use super::{
    check_freshness, optional_text, parse_delivery_id, parse_header_name, parse_unix_seconds,
    raw_keys, required_text, RejectReason, SchemeError, Verified, BASE64_ANY_PADDING,
    DEFAULT_TOLERANCE_SECONDS,
};
use crate::config::Secret;

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
    pub(super) signature_header: HeaderName,
    pub(super) prefix: String,
    pub(super) algorithm: HmacAlgorithm,
    pub(super) encoding: SignatureEncoding,
    pub(super) timestamp: Option<TimestampRule>,
    pub(super) id_header: Option<HeaderName>,
    pub(super) signed_payload: Vec<PayloadPart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TimestampRule {
    pub(super) header: HeaderName,
    pub(super) tolerance_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PayloadPart {
    Literal(String),
    Body,
    Timestamp,
    Id,
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

impl HmacHeaderScheme {
    pub(super) fn verify(
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
    pub(super) fn output_len(self) -> usize {
        match self {
            HmacAlgorithm::Sha256 => 32,
            HmacAlgorithm::Sha1 => 20,
        }
    }

    /// Index of the first key whose MAC over `payload` equals one of `candidates`.
    pub(super) fn first_matching_key(
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
