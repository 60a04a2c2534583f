//! Webhook signatures: vendors and in-house apps push events to `POST /hooks/{integration_id}`
//! (the route is `api::hooks`) instead of waiting for the next poll. Nothing a delivery says is
//! trusted until its connector's signature scheme has verified it against the integration's
//! secrets. This module is a pure library of those schemes, below `connectors` and `api`: it
//! imports nothing of the hub's but its `config::Secret`, and knows no connector.

pub mod signature;

pub use signature::{
    new_standard_webhooks_secret, sign_standard_webhook, DeliveryId, HandshakeReply, HmacAlgorithm,
    HmacHeaderDefinition, HmacHeaderScheme, RejectReason, SchemeError, SecretError,
    SharedTokenDefinition, SharedTokenScheme, SignatureEncoding, SignatureScheme, Verified,
    DEFAULT_TOLERANCE_SECONDS,
};
