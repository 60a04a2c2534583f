//! `scheme = "shared_token"`: no MAC, a header holds the shared secret itself (Okta event
//! hooks), compared in constant time; optionally a GET handshake that echoes a challenge.

use http::{HeaderMap, HeaderName};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::{
    parse_header_name, raw_keys, required_text, required_value, RejectReason, SchemeError, Verified,
};
use crate::config::Secret;

/// A handshake's challenge is a short random string (Okta's is); echoing an arbitrarily long
/// header back is not something the handshake needs.
const MAX_CHALLENGE_BYTES: usize = 512;

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
pub(super) fn handshake_reply(
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

pub(super) fn verify_shared_token(
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
