//! One attempt of a delivery on its channel: the signed webhook POST, the Slack POST, the SMTP
//! transaction; and what came back, as a `retry::Verdict` with an error safe to show
//!
//! No error here carries a secret or a whole URL: reqwest's errors are taken without their URL,
//! receivers' answers are quoted short and scrubbed of the channel's secrets.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde_json::json;

use super::channels::{ChannelRecord, Opened, Security};
use super::outbox::Delivery;
use super::retry::{classify_http, Verdict};
use super::ChannelKind;
use crate::time::{format_micros, Micros};

/// Most of a receiver's answer that is read.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Most of a receiver's answer quoted in an error.
const QUOTE_BYTES: usize = 200;
/// The webhook body's `type`.
pub const WEBHOOK_TYPE: &str = "trailhub.notification";

/// What an attempt came to.
pub(super) struct Sent {
    pub verdict: Verdict,
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl Sent {
    fn failed(verdict: Verdict, error: String) -> Sent {
        Sent {
            verdict,
            status: None,
            error: Some(error),
        }
    }
}

type Smtp = AsyncSmtpTransport<Tokio1Executor>;

pub(super) struct Sender {
    http: reqwest::Client,
    timeout: Duration,
    /// An SMTP transport (with its connection pool) per channel, rebuilt when the channel changes.
    smtp: Mutex<HashMap<super::ChannelId, (Micros, Smtp)>>,
}

/// The webhook body: Standard Webhooks' `type`, `timestamp` (when the delivery was enqueued)
/// and `data` (the message's JSON), with the subject, text and delivery id beside them.
pub fn webhook_body(d: &Delivery) -> Vec<u8> {
    let body = json!({
        "type": WEBHOOK_TYPE,
        "timestamp": format_micros(d.created_at),
        "delivery_id": d.id,
        "key": d.key,
        "subject": d.message.subject,
        "text": d.message.text,
        "data": d.message.json,
    });
    serde_json::to_vec(&body).expect("a JSON value serialises")
}

/// Slack's mrkdwn wants `&`, `<`, `>` escaped.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The Slack body: `text` (the notification's fallback) and blocks: a header with the subject,
/// a section with the text.
pub fn slack_body(d: &Delivery) -> Vec<u8> {
    let subject = d.message.subject.trim();
    let text = d.message.text.trim();
    let fallback = match (subject.is_empty(), text.is_empty()) {
        (false, false) => format!("*{}*\n{}", slack_escape(subject), slack_escape(text)),
        (false, true) => format!("*{}*", slack_escape(subject)),
        _ => slack_escape(text),
    };
    let mut blocks = Vec::new();
    if !subject.is_empty() {
        // a header's text is plain, at most 150 characters
        blocks.push(json!({"type": "header",
            "text": {"type": "plain_text", "text": truncate_chars(subject, 150)}}));
    }
    if !text.is_empty() {
        // a section's text is at most 3,000 characters
        blocks.push(json!({"type": "section",
            "text": {"type": "mrkdwn", "text": truncate_chars(&slack_escape(text), 3000)}}));
    }
    let body = json!({"text": truncate_chars(&fallback, 40_000), "blocks": blocks});
    serde_json::to_vec(&body).expect("a JSON value serialises")
}

/// The Standard Webhooks headers of a body: (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
pub fn webhook_headers(
    secret: &crate::config::Secret,
    id: &str,
    now_unix: i64,
    body: &[u8],
) -> Option<[(&'static str, String); 3]> {
    let signature =
        crate::webhooks::signature::sign_standard_webhook(secret, id, now_unix, body).ok()?;
    Some([
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", now_unix.to_string()),
        ("webhook-signature", signature),
    ])
}

/// reqwest's error, without its URL, with its causes.
fn http_error(e: reqwest::Error, destination: &str) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    let detail = causes.last().cloned().unwrap_or_else(|| e.to_string());
    format!("{what} ({destination}): {detail}")
}

impl Sender {
    pub(super) fn new(tuning: &crate::config::NotifyTuning) -> Sender {
        let http = reqwest::Client::builder()
            .user_agent(concat!("trailhub/", env!("CARGO_PKG_VERSION")))
            // a redirect is a failure: the channel's URL should be the final one
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(tuning.connect_timeout)
            .timeout(tuning.timeout)
            .build()
            .expect("an HTTP client with rustls builds");
        Sender {
            http,
            timeout: tuning.timeout,
            smtp: Mutex::new(HashMap::new()),
        }
    }

    pub(super) async fn send(
        &self,
        channel: &ChannelRecord,
        opened: &Opened,
        d: &Delivery,
    ) -> Sent {
        let sent = match channel.kind {
            ChannelKind::Webhook => self.webhook(channel, opened, d).await,
            ChannelKind::Slack => self.slack(channel, opened, d).await,
            ChannelKind::Email => self.email(channel, opened, d).await,
        };
        // belt and braces: whatever a receiver or a library said goes through the scrubber
        Sent {
            error: sent.error.map(|e| opened.scrubber.scrub(&e).into_owned()),
            ..sent
        }
    }

    async fn webhook(&self, channel: &ChannelRecord, opened: &Opened, d: &Delivery) -> Sent {
        let (Some(url), Some(secret)) = (&opened.url, &opened.secret) else {
            return Sent::failed(
                Verdict::Permanent,
                "the channel has no URL or secret".into(),
            );
        };
        let body = webhook_body(d);
        let now = chrono::Utc::now().timestamp();
        let Some(headers) = webhook_headers(secret, d.id.as_str(), now, &body) else {
            return Sent::failed(
                Verdict::Permanent,
                "the channel's signing secret is not valid base64".into(),
            );
        };
        let mut request = self
            .http
            .post(url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        self.post(request.body(body), channel, opened).await
    }

    async fn slack(&self, channel: &ChannelRecord, opened: &Opened, d: &Delivery) -> Sent {
        let Some(url) = &opened.url else {
            return Sent::failed(Verdict::Permanent, "the channel has no URL".into());
        };
        let request = self
            .http
            .post(url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(slack_body(d));
        self.post(request, channel, opened).await
    }

    async fn post(
        &self,
        request: reqwest::RequestBuilder,
        channel: &ChannelRecord,
        opened: &Opened,
    ) -> Sent {
        let destination = channel.destination();
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Sent::failed(Verdict::Retry { wait: None }, http_error(e, &destination))
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        while body.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BYTES - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        let verdict = classify_http(
            status,
            retry_after.as_deref(),
            chrono::Utc::now().timestamp(),
        );
        let error = match verdict {
            Verdict::Delivered => None,
            _ => {
                let text = String::from_utf8_lossy(&body);
                let quoted = opened.scrubber.quote(&text, QUOTE_BYTES);
                let quoted: String = quoted
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect();
                let mut message = format!("HTTP {status} from {destination}");
                if (300..400).contains(&status) {
                    message.push_str(" (a redirect: set the channel's URL to where it points)");
                }
                if !quoted.is_empty() {
                    message.push_str(": ");
                    message.push_str(&quoted);
                }
                Some(message)
            }
        };
        Sent {
            verdict,
            status: Some(status),
            error,
        }
    }

    fn transport(&self, channel: &ChannelRecord, opened: &Opened) -> Result<Smtp, String> {
        if let Ok(cache) = self.smtp.lock() {
            if let Some((at, t)) = cache.get(&channel.id) {
                if *at == channel.updated_at {
                    return Ok(t.clone());
                }
            }
        }
        let c = &channel.config;
        let host = c.host.as_deref().ok_or("the channel has no SMTP host")?;
        let security = c.security.unwrap_or(Security::Starttls);
        let builder = match security {
            Security::None => Smtp::builder_dangerous(host),
            Security::Starttls => {
                Smtp::starttls_relay(host).map_err(|e| format!("SMTP host {host}: {e}"))?
            }
            Security::Tls => Smtp::relay(host).map_err(|e| format!("SMTP host {host}: {e}"))?,
        };
        let mut builder = builder
            .port(c.port.unwrap_or(security.default_port()))
            .timeout(Some(self.timeout))
            .pool_config(PoolConfig::new().max_size(4));
        if let (Some(user), Some(password)) = (&c.username, &opened.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
        }
        let transport = builder.build();
        if let Ok(mut cache) = self.smtp.lock() {
            // bounded by the channels; a changed channel replaces its entry
            cache.insert(channel.id.clone(), (channel.updated_at, transport.clone()));
        }
        Ok(transport)
    }

    async fn email(&self, channel: &ChannelRecord, opened: &Opened, d: &Delivery) -> Sent {
        let message = match email_message(channel, d) {
            Ok(m) => m,
            Err(e) => return Sent::failed(Verdict::Permanent, e),
        };
        let transport = match self.transport(channel, opened) {
            Ok(t) => t,
            Err(e) => return Sent::failed(Verdict::Permanent, e),
        };
        let destination = channel.destination();
        match tokio::time::timeout(self.timeout, transport.send(message)).await {
            Err(_) => Sent::failed(
                Verdict::Retry { wait: None },
                format!("timed out ({destination})"),
            ),
            Ok(Ok(reply)) => Sent {
                verdict: Verdict::Delivered,
                status: reply.code().to_string().parse().ok(),
                error: None,
            },
            Ok(Err(e)) => {
                let status = e.status().and_then(|c| c.to_string().parse().ok());
                // 5xx: the server refuses this mail for good; anything else may pass later
                let verdict = if e.is_permanent() {
                    Verdict::Permanent
                } else {
                    Verdict::Retry { wait: None }
                };
                let mut text = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    // lettre's message already holds its cause's text
                    let cause = s.to_string();
                    if !text.contains(&cause) {
                        text.push_str(": ");
                        text.push_str(&cause);
                    }
                    source = s.source();
                }
                let text = opened.scrubber.quote(&text, 300);
                Sent {
                    verdict,
                    status,
                    error: Some(format!("SMTP {destination}: {text}")),
                }
            }
        }
    }
}

/// The mail: from, to, the subject with the channel's prefix, the text; its `Message-ID` is the
/// delivery id, the same on every attempt.
fn email_message(channel: &ChannelRecord, d: &Delivery) -> Result<lettre::Message, String> {
    use lettre::message::header::ContentType;
    use lettre::message::Mailbox;
    let c = &channel.config;
    let parse = |a: &str| {
        a.parse::<Mailbox>()
            .map_err(|_| format!("{a:?} is not an email address"))
    };
    let from = parse(c.from.as_deref().ok_or("the channel has no from address")?)?;
    let subject: String = format!(
        "{}{}",
        c.subject_prefix.as_deref().unwrap_or(""),
        d.message.subject
    )
    .chars()
    .map(|ch| if ch.is_control() { ' ' } else { ch })
    .collect();
    let mut builder = lettre::Message::builder()
        .from(from)
        .subject(subject)
        .message_id(Some(format!("<{}@trailhub>", d.id)))
        .header(ContentType::TEXT_PLAIN);
    for to in c.to.iter().flatten() {
        builder = builder.to(parse(to)?);
    }
    builder
        .body(d.message.text.clone())
        .map_err(|e| format!("the mail cannot be built: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    /// The example of the Standard Webhooks specification (its reference libraries' test vector).
    #[test]
    fn webhook_headers_match_the_specifications_vector() {
        let secret = Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let headers = webhook_headers(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .expect("signs");
        assert_eq!(
            headers[0],
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek".into())
        );
        assert_eq!(headers[1], ("webhook-timestamp", "1614265330".into()));
        assert_eq!(
            headers[2],
            (
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=".into()
            )
        );
    }

    #[test]
    fn slack_text_is_escaped_and_blocks_are_bounded() {
        let d = Delivery {
            v: 1,
            id: super::super::DeliveryId("dlv_000000000000000000000000".into()),
            key: "k".into(),
            channel: super::super::ChannelId("ch_0000000000000000".into()),
            channel_kind: ChannelKind::Slack,
            message: super::super::Message {
                subject: "x".repeat(200),
                text: "a <b> & c".into(),
                json: serde_json::Value::Null,
            },
            status: super::super::DeliveryStatus::Pending,
            created_at: 0,
            next_at: 0,
            finished_at: None,
            attempts: vec![],
            attempt_count: 0,
        };
        let v: serde_json::Value = serde_json::from_slice(&slack_body(&d)).expect("json");
        assert_eq!(
            v["blocks"][0]["text"]["text"]
                .as_str()
                .map(|s| s.chars().count()),
            Some(150)
        );
        assert_eq!(v["blocks"][1]["text"]["text"], "a &lt;b&gt; &amp; c");
        assert!(v["text"]
            .as_str()
            .is_some_and(|t| t.ends_with("a &lt;b&gt; &amp; c")));
    }
}
