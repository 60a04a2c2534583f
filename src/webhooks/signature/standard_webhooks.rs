//! `scheme = "standard_webhooks"` (standardwebhooks.com, symmetric `v1`): HMAC-SHA256 keyed with
//! the base64-decoded `whsec_` secret over `"{webhook-id}.{webhook-timestamp}.{body}"`, the
//! scheme of the in-house `webhook` connector. Also the sender's side (signing a delivery,
//! minting a secret), which the integration tests and benchmarks use.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName};
use sha2::Sha256;

use super::hmac_header::HmacAlgorithm;
use super::{
    check_freshness, parse_delivery_id, parse_unix_seconds, required_text, RejectReason,
    SecretError, Verified, BASE64_ANY_PADDING, DEFAULT_TOLERANCE_SECONDS,
};
use crate::config::Secret;

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const WEBHOOK_SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

const STANDARD_WEBHOOKS_SECRET_PREFIX: &str = "whsec_";

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

pub(super) fn verify_standard_webhooks(
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

pub(super) fn standard_webhooks_key(secret: &Secret) -> Result<Vec<u8>, SecretError> {
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
