//! `[webhook]`: how pushed deliveries are verified (the signature scheme and the credential
//! fields holding its secrets) and where their records are.

use super::Validator;
use crate::connectors::definition::model::{
    FieldSpec, RecordsSpec, WebhookSpec, WEBHOOK_BODY_BYTES_RANGE,
};
use crate::connectors::definition::raw::RawWebhook;
use crate::connectors::definition::DefinitionError;

impl Validator<'_> {
    pub(super) fn webhook(
        &self,
        w: RawWebhook,
        credentials: &[FieldSpec],
    ) -> Result<WebhookSpec, DefinitionError> {
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
            return Err(self.err("webhook.unified", "needs `records` (where the events are)"));
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
        Ok(WebhookSpec {
            signature: w.signature,
            secrets: w.secrets,
            records,
            unified: w.unified,
            max_body_bytes: w.max_body_bytes,
        })
    }
}
