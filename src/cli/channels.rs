//! `trailhub channels`: the notification channels, through the running hub (its outbox sends
//! the test message, and every change is recorded in its log)

use std::process::ExitCode;

use clap::{Subcommand, ValueEnum};
use serde_json::{json, Map, Value};

use super::RemoteArgs;
use crate::config::{Secret, Settings};

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Kind {
    Webhook,
    Slack,
    Email,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum Security {
    None,
    Starttls,
    Tls,
}

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[arg(long)]
    name: String,
    #[arg(long, value_enum)]
    kind: Kind,
    /// webhook, slack: where to POST (a Slack incoming-webhook URL is itself a secret)
    #[arg(long, value_parser = clap::value_parser!(Secret))]
    url: Option<Secret>,
    /// webhook: the signing secret, whsec_<base64>
    #[arg(long, value_parser = clap::value_parser!(Secret))]
    secret: Option<Secret>,
    /// email: the SMTP server
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    port: Option<u32>,
    #[arg(long, value_enum)]
    security: Option<Security>,
    #[arg(long)]
    username: Option<String>,
    /// email: the SMTP password (better: TRAILHUB_SMTP_PASSWORD)
    #[arg(long, env = "TRAILHUB_SMTP_PASSWORD", hide_env_values = true, value_parser = clap::value_parser!(Secret))]
    password: Option<Secret>,
    #[arg(long)]
    from: Option<String>,
    /// A recipient, repeatable
    #[arg(long = "to")]
    to: Vec<String>,
    #[arg(long)]
    subject_prefix: Option<String>,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Subcommand, Debug)]
pub enum ChannelsCommand {
    /// List the channels (no secrets: only which are set)
    List {
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Add a channel; a webhook's signing secret is minted when not given, and shown once
    Add(Box<AddArgs>),
    /// Delete a channel (its delivery history stays)
    Remove {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Send a test message now and show how its first attempt went
    Test {
        id: String,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

async fn client(settings: &Settings, remote: &RemoteArgs) -> anyhow::Result<super::remote::Client> {
    super::hub_client(
        settings,
        remote,
        "its outbox sends, and every change is recorded in its log",
    )
    .await
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Webhook => "webhook",
        Kind::Slack => "slack",
        Kind::Email => "email",
    }
}

pub async fn channels(settings: &Settings, command: &ChannelsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ChannelsCommand::List { remote } => {
            let v = client(settings, remote)
                .await?
                .get_json("/api/v1/channels", &[])
                .await?;
            let channels = v["channels"].as_array().cloned().unwrap_or_default();
            if channels.is_empty() {
                println!("no channels");
            }
            for c in channels {
                let destination = match c["kind"].as_str() {
                    Some("email") => format!(
                        "{}:{} → {}",
                        c["host"].as_str().unwrap_or("?"),
                        c["port"],
                        c["to"]
                            .as_array()
                            .map(|t| t
                                .iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join(", "))
                            .unwrap_or_default()
                    ),
                    _ => c["url"].as_str().unwrap_or("?").to_string(),
                };
                println!(
                    "{}  {:<7}  {}  {}",
                    c["id"].as_str().unwrap_or("?"),
                    c["kind"].as_str().unwrap_or("?"),
                    c["name"].as_str().unwrap_or("?"),
                    destination
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ChannelsCommand::Add(add) => {
            let AddArgs {
                name,
                kind,
                url,
                secret,
                host,
                port,
                security,
                username,
                password,
                from,
                to,
                subject_prefix,
                remote,
            } = add.as_ref();
            let mut body = Map::new();
            body.insert("name".into(), json!(name));
            body.insert("kind".into(), json!(kind_name(*kind)));
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    body.insert(k.into(), v);
                }
            };
            put("url", url.as_ref().map(|s| json!(s.expose())));
            put("secret", secret.as_ref().map(|s| json!(s.expose())));
            put("host", host.as_ref().map(|h| json!(h)));
            put("port", port.map(|p| json!(p)));
            put(
                "security",
                security.map(|s| {
                    json!(match s {
                        Security::None => "none",
                        Security::Starttls => "starttls",
                        Security::Tls => "tls",
                    })
                }),
            );
            put("username", username.as_ref().map(|u| json!(u)));
            put("password", password.as_ref().map(|p| json!(p.expose())));
            put("from", from.as_ref().map(|f| json!(f)));
            put("to", (!to.is_empty()).then(|| json!(to)));
            put("subject_prefix", subject_prefix.as_ref().map(|p| json!(p)));
            let created = client(settings, remote)
                .await?
                .post_json("/api/v1/channels", &Value::Object(body))
                .await?;
            if created["secret"].is_string() {
                eprintln!("the signing secret below is shown once: give it to the receiver now (it verifies the webhook-signature header)");
            }
            super::print_json(&created)
        }
        ChannelsCommand::Remove { id, remote } => {
            client(settings, remote)
                .await?
                .delete(&format!("/api/v1/channels/{id}"))
                .await?;
            println!("channel {id} deleted");
            Ok(ExitCode::SUCCESS)
        }
        ChannelsCommand::Test { id, remote } => {
            let v = client(settings, remote)
                .await?
                .post_json(&format!("/api/v1/channels/{id}/test"), &json!({}))
                .await?;
            let delivered = v["delivered"].as_bool().unwrap_or(false);
            super::print_json(&v)?;
            Ok(if delivered {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
