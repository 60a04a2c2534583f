//! Webhook signatures: vendors and in-house apps push events to `POST /hooks/{integration_id}`
//! (the route is `api::hooks`) instead of waiting for the next poll. Nothing a delivery says is
//! trusted until its connector's signature scheme has verified it against the integration's
//! secrets. This module is a pure library of those schemes, below `connectors` and `api`: it
//! imports nothing of the hub's but its `config::Secret`, and knows no connector.

pub mod signature;

pub use signature::{
    new_standard_webhooks_secret, okta_verification_reply, sign_standard_webhook, DeliveryId,
    HmacAlgorithm, HmacHeaderDefinition, HmacHeaderScheme, OktaVerificationReply, RejectReason,
    SchemeError, SecretError, SignatureEncoding, SignatureScheme, Verified,
    DEFAULT_TOLERANCE_SECONDS,
};
