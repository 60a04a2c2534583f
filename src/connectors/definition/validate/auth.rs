//! `[auth]`: which kind of credentials a request carries, each kind refusing the keys of the
//! others, and its templates checked against the declared config and credential fields.

use super::Validator;
use crate::connectors::definition::model::{Auth, ClientAuth, JwtBearerSpec, OAuth2Spec};
use crate::connectors::definition::raw::{AuthKind, RawAuth};
use crate::connectors::definition::DefinitionError;
use crate::connectors::template::TemplateScope;

impl Validator<'_> {
    pub(super) fn auth(
        &self,
        raw: RawAuth,
        config_names: &[&str],
        credential_names: &[&str],
    ) -> Result<Auth, DefinitionError> {
        let need = |v: Option<String>, key: &str| {
            v.ok_or_else(|| {
                self.err(
                    &format!("auth.{key}"),
                    format!("is required for kind {:?}", raw.kind),
                )
            })
        };
        let refuse = |present: bool, key: &str| {
            if present {
                Err(self.err(
                    &format!("auth.{key}"),
                    format!("does not apply to kind {:?}", raw.kind),
                ))
            } else {
                Ok(())
            }
        };
        let token_grant = matches!(
            raw.kind,
            AuthKind::Oauth2ClientCredentials | AuthKind::Oauth2JwtBearer
        );
        if !token_grant {
            refuse(raw.token_url.is_some(), "token_url")?;
            refuse(raw.scope.is_some(), "scope")?;
            refuse(raw.audience.is_some(), "audience")?;
        }
        if raw.kind != AuthKind::Oauth2ClientCredentials {
            refuse(raw.client_id.is_some(), "client_id")?;
            refuse(raw.client_secret.is_some(), "client_secret")?;
            refuse(raw.client_auth.is_some(), "client_auth")?;
        }
        if raw.kind != AuthKind::Oauth2JwtBearer {
            refuse(raw.issuer.is_some(), "issuer")?;
            refuse(raw.subject.is_some(), "subject")?;
            refuse(raw.private_key.is_some(), "private_key")?;
        }
        let oauth = matches!(
            raw.kind,
            AuthKind::Oauth2JwtBearer | AuthKind::Oauth2ClientCredentials
        );
        if oauth {
            // OAuth2 kinds send the fetched token; a header of their own would be ambiguous
            refuse(raw.header.is_some(), "header")?;
            refuse(raw.value.is_some(), "value")?;
            refuse(raw.username.is_some(), "username")?;
            refuse(raw.password.is_some(), "password")?;
        }
        let oauth_scope = TemplateScope {
            config: config_names,
            credentials: credential_names,
            time: false,
        };
        let t =
            |key: &str, text: String| self.template(&format!("auth.{key}"), &text, &oauth_scope);
        match raw.kind {
            AuthKind::Oauth2JwtBearer => Ok(Auth::OAuth2JwtBearer(Box::new(JwtBearerSpec {
                token_url: t("token_url", need(raw.token_url, "token_url")?)?,
                issuer: t("issuer", need(raw.issuer, "issuer")?)?,
                subject: raw.subject.map(|s| t("subject", s)).transpose()?,
                scope: raw.scope.map(|s| t("scope", s)).transpose()?,
                audience: raw.audience.map(|s| t("audience", s)).transpose()?,
                private_key: t("private_key", need(raw.private_key, "private_key")?)?,
            }))),
            AuthKind::Oauth2ClientCredentials => {
                Ok(Auth::OAuth2ClientCredentials(Box::new(OAuth2Spec {
                    token_url: t("token_url", need(raw.token_url, "token_url")?)?,
                    client_id: t("client_id", need(raw.client_id, "client_id")?)?,
                    client_secret: t("client_secret", need(raw.client_secret, "client_secret")?)?,
                    scope: raw.scope.map(|s| t("scope", s)).transpose()?,
                    audience: raw.audience.map(|s| t("audience", s)).transpose()?,
                    client_auth: raw.client_auth.unwrap_or(ClientAuth::Body),
                })))
            }
            AuthKind::Header => {
                refuse(raw.username.is_some(), "username")?;
                refuse(raw.password.is_some(), "password")?;
                Ok(Auth::Header {
                    header: need(raw.header, "header")?,
                    value: need(raw.value, "value")?,
                })
            }
            AuthKind::Basic => {
                refuse(raw.header.is_some(), "header")?;
                refuse(raw.value.is_some(), "value")?;
                Ok(Auth::Basic {
                    username: need(raw.username, "username")?,
                    password: need(raw.password, "password")?,
                })
            }
        }
    }
}
