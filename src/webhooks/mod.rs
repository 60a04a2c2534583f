//! Webhook receivers: vendors and in-house apps push events to `POST /hooks/{integration_id}`
//! instead of waiting for the next poll. Nothing a delivery says is trusted until its
//! connector's signature scheme has verified it against the integration's secrets, so the
//! schemes live here, apart from the HTTP route, and carry no knowledge of any connector.

pub mod signature;

pub mod receiver;

pub use signature::{
    new_standard_webhooks_secret, okta_verification_reply, sign_standard_webhook, DeliveryId,
    HmacAlgorithm, HmacHeaderDefinition, HmacHeaderScheme, OktaVerificationReply, RejectReason,
    SchemeError, SecretError, SignatureEncoding, SignatureScheme, Verified,
    DEFAULT_TOLERANCE_SECONDS,
};
