//! Notification channels and the outbox, against real receivers on loopback: webhooks verified
//! with a Standard Webhooks check written here from the specification, a Slack-shaped receiver,
//! a real SMTP server (aiosmtpd); retries with the same `webhook-id`, `Retry-After`, permanent
//! failures, restarts and `kill -9` mid-attempt, the bounds, and secrets that never come out

use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;
use trailhub::config::Settings;
use trailhub::notify::{ChannelId, Message, NewDelivery};

use crate::support::hub::{
    captured_logs, cli, files_containing, free_port, start_hub_with, wait_ready, Api, HubProcess,
    ADMIN,
};
use crate::support::receiver::{Receiver, Reply, SmtpServer};

/// Retries in a test's time: 100 ms, 200 ms, 400 ms, ...
fn fast_notify(s: &mut Settings) {
    s.notify.retry_base = Duration::from_millis(100);
    s.notify.retry_max = Duration::from_secs(5);
    s.notify.timeout = Duration::from_secs(5);
    s.notify.connect_timeout = Duration::from_secs(2);
}

/// Checks a delivery as the Standard Webhooks specification tells a receiver to: the
/// timestamp within five minutes, then HMAC-SHA256 keyed with the base64-decoded `whsec_`
/// secret over `{webhook-id}.{webhook-timestamp}.{body}`, against each `v1,<base64>` entry of
/// the space-separated `webhook-signature`.
fn verify_standard_webhook(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> Result<(), String> {
    if id.is_empty() || id.contains('.') {
        return Err(format!("webhook-id {id:?}"));
    }
    let t: i64 = timestamp
        .parse()
        .map_err(|_| format!("webhook-timestamp {timestamp:?}"))?;
    if (now - t).abs() > 300 {
        return Err(format!(
            "webhook-timestamp {t} is more than 5 minutes from {now}"
        ));
    }
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|e| format!("secret: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    for entry in signatures.split(' ') {
        let Some(encoded) = entry.strip_prefix("v1,") else {
            continue;
        };
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            continue;
        };
        if mac.clone().verify_slice(&given).is_ok() {
            return Ok(());
        }
    }
    Err(format!("no v1 signature in {signatures:?} matches"))
}

pub(crate) fn verify_received(
    secret: &str,
    r: &crate::support::receiver::Received,
) -> Result<(), String> {
    verify_standard_webhook(
        secret,
        r.header("webhook-id"),
        r.header("webhook-timestamp"),
        r.header("webhook-signature"),
        &r.body,
        chrono::Utc::now().timestamp(),
    )
}

/// The verifier above is the specification's, not the hub's: it accepts the specification's
/// published example and refuses it altered.
#[test]
fn the_test_verifier_accepts_the_specifications_example() {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (id, ts) = ("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330");
    let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    let body = br#"{"test": 2432232314}"#;
    assert_eq!(
        verify_standard_webhook(secret, id, ts, sig, body, 1614265330),
        Ok(())
    );
    assert!(
        verify_standard_webhook(secret, id, ts, sig, br#"{"test": 2432232315}"#, 1614265330)
            .is_err()
    );
    assert!(verify_standard_webhook(secret, id, ts, sig, body, 1614265330 + 301).is_err());
    let other = format!("v1,AAAA {sig}");
    assert_eq!(
        verify_standard_webhook(secret, id, ts, &other, body, 1614265330),
        Ok(())
    );
}

async fn create_channel(api: &Api, body: Value) -> Value {
    let (status, v) = api.json(Method::POST, "/api/v1/channels", Some(body)).await;
    assert_eq!(status, 201, "{v}");
    v
}

/// Waits until the delivery's status is `status`, answering it.
async fn wait_delivery(api: &Api, id: &str, status: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let d = api.get(&format!("/api/v1/deliveries/{id}")).await;
        if d["status"] == status {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "delivery {id} is not {status}: {d:#}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `notify.delivery` events of a delivery, waiting until there are `n`.
async fn delivery_events(api: &Api, id: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = api
            .get("/api/v1/events?integration=trailhub&event_type=notify.delivery&limit=1000")
            .await;
        let mut mine: Vec<Value> = page["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["raw"]["details"]["delivery_id"] == id)
            .collect();
        if mine.len() >= n {
            mine.sort_by_key(|e| e["raw"]["details"]["attempt"].as_u64());
            return mine;
        }
        assert!(
            Instant::now() < deadline,
            "{} events of {id}, waited for {n}",
            mine.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn message(subject: &str) -> Message {
    Message {
        subject: subject.into(),
        text: format!("{subject}: the text"),
        json: json!({"rule": "r1", "count": 5}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_is_signed_and_retried_with_the_same_id_until_delivered() {
    let receiver = Receiver::start(vec![Reply::status(500), Reply::status(500).body("busy")]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub_with(dir.path(), fast_notify).await;
    let api = Api::new(&hub);
    let channel = create_channel(
        &api,
        json!({"name": "soc", "kind": "webhook", "url": format!("{}/hook", receiver.url)}),
    )
    .await;
    let secret = channel["secret"]
        .as_str()
        .expect("minted secret shown once")
        .to_string();
    assert!(secret.starts_with("whsec_"));
    let id = channel["id"].as_str().expect("id").to_string();
    // shown once: never again
    let shown = api.get(&format!("/api/v1/channels/{id}")).await;
    assert!(
        shown.get("secret").is_none() && !shown.to_string().contains(&secret[6..]),
        "{shown}"
    );
    assert_eq!(shown["secrets_set"], json!(["url", "secret"]));

    let delivery = hub
        .notifier
        .enqueue(NewDelivery {
            key: "alert:r1:f1".into(),
            channel: ChannelId::parse(&id).expect("id"),
            message: message("5 failed logins"),
        })
        .await
        .expect("enqueued");
    let got = receiver.wait_for(3, 10).await;
    let d = wait_delivery(&api, delivery.as_str(), "delivered", 10).await;
    assert_eq!(got.len(), 3, "{got:?}");
    for r in &got {
        assert_eq!(r.path, "/hook");
        assert_eq!(
            r.header("webhook-id"),
            delivery.as_str(),
            "the same id on every attempt"
        );
        assert_eq!(r.header("content-type"), "application/json");
        verify_received(&secret, r).expect("signed per Standard Webhooks");
        assert!(verify_received("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", r).is_err());
    }
    let body = got[2].json();
    assert_eq!(body["type"], "trailhub.notification");
    assert_eq!(body["subject"], "5 failed logins");
    assert_eq!(body["data"], json!({"rule": "r1", "count": 5}));
    assert_eq!(body["delivery_id"], delivery.as_str());
    let outcomes: Vec<_> = d["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| {
            (
                a["number"].as_u64(),
                a["outcome"].as_str(),
                a["status"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (Some(1), Some("retrying"), Some(500)),
            (Some(2), Some("retrying"), Some(500)),
            (Some(3), Some("delivered"), Some(200)),
        ]
    );
    assert!(
        d["attempts"][1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("busy")),
        "{d}"
    );
    // backoff: the second retry waits about twice the first (100 ms, then 200 ms, + ≤ 25%)
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(
        gap1 >= Duration::from_millis(100) && gap2 >= Duration::from_millis(200),
        "{gap1:?} {gap2:?}"
    );

    // the same key to the same channel is the same delivery, and nothing more is sent
    let again = hub
        .notifier
        .enqueue(NewDelivery {
            key: "alert:r1:f1".into(),
            channel: ChannelId::parse(&id).expect("id"),
            message: message("5 failed logins"),
        })
        .await
        .expect("enqueued");
    assert_eq!(again, delivery);

    // every attempt is a trailhub event: failure, failure, success
    let events = delivery_events(&api, delivery.as_str(), 3).await;
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str(),
                e["raw"]["details"]["outcome"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (Some("failure"), Some("retrying")),
            (Some("failure"), Some("retrying")),
            (Some("success"), Some("delivered")),
        ]
    );
    let listed = api
        .get(&format!("/api/v1/deliveries?channel={id}&status=delivered"))
        .await;
    assert_eq!(listed["deliveries"][0]["id"], delivery.as_str());
    assert_eq!(receiver.received().len(), 3);
    hub.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_a_400_fails_for_good() {
    let limited = Receiver::start(vec![Reply::status(429).header("retry-after", "1")]).await;
    let refusing = Receiver::start(vec![Reply::status(400).body("no such hook"); 5]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub_with(dir.path(), fast_notify).await;
    let api = Api::new(&hub);
    let a = create_channel(
        &api,
        json!({"name": "limited", "kind": "slack", "url": format!("{}/services/a", limited.url)}),
    )
    .await;
    let b = create_channel(
        &api,
        json!({"name": "refusing", "kind": "webhook", "url": refusing.url}),
    )
    .await;

    let (status, tested) = api
        .json(
            Method::POST,
            &format!("/api/v1/channels/{}/test", a["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["delivered"], false);
    assert_eq!(tested["attempt"]["status"], 429);
    assert_eq!(tested["attempt"]["outcome"], "retrying");
    let got = limited.wait_for(2, 10).await;
    let gap = got[1].at - got[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 waited only {gap:?}"
    );
    wait_delivery(
        &api,
        tested["delivery_id"].as_str().expect("id"),
        "delivered",
        10,
    )
    .await;
    let slack = got[1].json();
    assert!(
        slack["text"]
            .as_str()
            .is_some_and(|t| t.contains("Trailhub test notification")),
        "{slack}"
    );
    assert_eq!(slack["blocks"][0]["type"], "header");

    let (status, tested) = api
        .json(
            Method::POST,
            &format!("/api/v1/channels/{}/test", b["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["attempt"]["outcome"], "failed");
    assert_eq!(tested["attempt"]["status"], 400);
    let d = wait_delivery(
        &api,
        tested["delivery_id"].as_str().expect("id"),
        "failed",
        5,
    )
    .await;
    assert_eq!(d["attempt_count"], 1);
    assert!(
        d["attempts"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("HTTP 400") && e.contains("no such hook")),
        "{d}"
    );
    // ten retry bases later, still the one attempt: a refusal is not retried
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(refusing.received().len(), 1);
    hub.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_a_real_smtp_server() {
    let smtp = SmtpServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub_with(dir.path(), fast_notify).await;
    let api = Api::new(&hub);
    let channel = create_channel(
        &api,
        json!({"name": "mail", "kind": "email", "host": "127.0.0.1", "port": smtp.port,
            "security": "none", "from": "Trailhub <trailhub@example.com>",
            "to": ["soc@example.com", "ciso@example.com"], "subject_prefix": "[audit] "}),
    )
    .await;
    assert_eq!(
        channel["to"],
        json!(["soc@example.com", "ciso@example.com"])
    );
    let id = channel["id"].as_str().expect("id");
    let (status, tested) = api
        .json(Method::POST, &format!("/api/v1/channels/{id}/test"), None)
        .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["delivered"], true, "{tested}");
    assert_eq!(tested["attempt"]["status"], 250);
    let mails = smtp.wait_for(1, 10).await;
    let mail = &mails[0];
    let delivery = tested["delivery_id"].as_str().expect("id");
    assert!(
        mail.contains("Subject: [audit] Trailhub test notification (mail)"),
        "{mail}"
    );
    assert!(
        mail.contains("From: ") && mail.contains("<trailhub@example.com>"),
        "{mail}"
    );
    assert!(
        mail.contains("soc@example.com") && mail.contains("ciso@example.com"),
        "{mail}"
    );
    assert!(
        mail.contains(&format!("Message-ID: <{delivery}@trailhub>")),
        "{mail}"
    );
    assert!(
        mail.contains("This is a test of the notification channel mail"),
        "{mail}"
    );

    // a server that is down: retried, not lost
    let closed = free_port();
    let down = create_channel(
        &api,
        json!({"name": "down", "kind": "email", "host": "127.0.0.1", "port": closed,
            "security": "none", "from": "trailhub@example.com", "to": ["soc@example.com"]}),
    )
    .await;
    let (_, tested) = api
        .json(
            Method::POST,
            &format!("/api/v1/channels/{}/test", down["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(tested["attempt"]["outcome"], "retrying", "{tested}");
    assert!(
        tested["attempt"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("SMTP 127.0.0.1:")),
        "{tested}"
    );
    hub.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_enqueued_while_the_receiver_is_down_arrives_once_after_a_restart() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub_with(dir.path(), fast_notify).await;
    let api = Api::new(&hub);
    let channel = create_channel(
        &api,
        json!({"name": "later", "kind": "webhook", "url": format!("http://127.0.0.1:{port}/in"),
            "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
    )
    .await;
    assert!(
        channel.get("secret").is_none(),
        "a given secret is not echoed"
    );
    let channel_id = ChannelId::parse(channel["id"].as_str().expect("id")).expect("id");
    let delivery = hub
        .notifier
        .enqueue(NewDelivery {
            key: "report:weekly:2026-12-07".into(),
            channel: channel_id.clone(),
            message: message("weekly access report"),
        })
        .await
        .expect("enqueued");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let d = api.get(&format!("/api/v1/deliveries/{delivery}")).await;
        if d["attempt_count"].as_u64() >= Some(2) {
            assert_eq!(d["status"], "pending");
            assert!(
                d["attempts"][0]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("could not connect")),
                "{d}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{d}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    hub.stop().await.expect("stops");

    let receiver = Receiver::start_on(port, vec![]).await;
    let hub = start_hub_with(dir.path(), fast_notify).await;
    let api = Api::new(&hub);
    let got = receiver.wait_for(1, 10).await;
    let d = wait_delivery(&api, delivery.as_str(), "delivered", 10).await;
    assert_eq!(got[0].header("webhook-id"), delivery.as_str());
    verify_received("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", &got[0]).expect("signed");
    assert!(d["attempt_count"].as_u64() >= Some(3), "{d}");
    // the key is remembered across the restart
    let again = hub
        .notifier
        .enqueue(NewDelivery {
            key: "report:weekly:2026-12-07".into(),
            channel: channel_id,
            message: message("weekly access report"),
        })
        .await
        .expect("enqueued");
    assert_eq!(again, delivery);
    // several retry bases on: it arrived exactly once
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 1);
    hub.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_in_flight_at_kill_9_is_made_again_with_the_same_id() {
    // the first request hangs (the hub dies while it waits); later ones are answered 200
    let receiver = Receiver::start(vec![Reply::status(200).delay(Duration::from_secs(60))]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("trailhub.toml");
    std::fs::write(
        &config,
        "[notify]\nretry_base_ms = 100\ntimeout_secs = 120\n",
    )
    .expect("config");
    let data = dir.path().join("data");
    let env = [("TRAILHUB_CONFIG", config.to_str().expect("path"))];
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let mut hub = HubProcess::spawn_with(&data, port, &env);
    wait_ready(&http, &url).await;
    let api = Api::at(&url, ADMIN);
    let channel = create_channel(
        &api,
        json!({"name": "crash", "kind": "webhook", "url": format!("{}/in", receiver.url)}),
    )
    .await;
    let secret = channel["secret"].as_str().expect("secret").to_string();
    let id = channel["id"].as_str().expect("id").to_string();
    let test_url = format!("{url}/api/v1/channels/{id}/test");
    // the test call waits on the hanging attempt; the hub dies under it
    let pending_test = tokio::spawn({
        let http = http.clone();
        async move {
            http.post(test_url)
                .bearer_auth(ADMIN)
                .send()
                .await
                .map(|r| r.status())
        }
    });
    let first = receiver.wait_for(1, 10).await;
    let webhook_id = first[0].header("webhook-id").to_string();
    hub.kill().expect("kill -9");
    let _ = hub.wait();
    let _ = pending_test.await;

    let _hub = HubProcess::spawn_with(&data, port, &env);
    wait_ready(&http, &url).await;
    let got = receiver.wait_for(2, 15).await;
    assert_eq!(
        got[1].header("webhook-id"),
        webhook_id,
        "the same delivery, made again"
    );
    verify_received(&secret, &got[1]).expect("signed");
    let d = wait_delivery(&api, &webhook_id, "delivered", 10).await;
    assert_eq!(
        d["attempts"].as_array().map(Vec::len),
        Some(1),
        "the cut attempt left no record: {d}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_bounds_are_answered_4xx() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub_with(dir.path(), fast_notify).await;
    let api = Api::new(&hub);
    let email = |extra: Value| {
        let mut v = json!({"name": "m", "kind": "email", "host": "smtp.example.com",
            "from": "a@example.com", "to": ["b@example.com"]});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    };
    let refused: Vec<(Value, u16, &str)> = vec![
        (
            json!({"name": "a", "kind": "webhook", "url": "ftp://example.com/x"}),
            400,
            "`url`",
        ),
        (
            json!({"name": "a", "kind": "webhook", "url": "example.com/x"}),
            400,
            "`url`",
        ),
        (
            json!({"name": "a", "kind": "webhook", "url": format!("https://example.com/{}", "a".repeat(2100))}),
            400,
            "`url`",
        ),
        (
            json!({"name": "x".repeat(101), "kind": "slack", "url": "https://example.com/x"}),
            400,
            "`name`",
        ),
        (
            json!({"name": "a", "kind": "pager", "url": "https://example.com/x"}),
            400,
            "expected one of",
        ),
        (
            json!({"name": "a", "kind": "slack", "url": "https://example.com/x", "colour": "red"}),
            400,
            "colour",
        ),
        (
            json!({"name": "a", "kind": "slack", "url": "https://example.com/x", "port": 25}),
            400,
            "`port`",
        ),
        (
            json!({"name": "a", "kind": "webhook", "url": "https://example.com/x", "secret": "whsec_dG9vIHNob3J0"}),
            400,
            "`secret`",
        ),
        (
            email(json!({"to": (0..51).map(|i| format!("u{i}@example.com")).collect::<Vec<_>>()})),
            400,
            "`to`",
        ),
        (email(json!({"to": ["not an address"]})), 400, "`to[0]`"),
        (email(json!({"from": "@"})), 400, "`from`"),
        (email(json!({"port": 0})), 400, "`port`"),
        (
            email(json!({"subject_prefix": "p".repeat(101)})),
            400,
            "`subject_prefix`",
        ),
        (
            email(json!({"username": "u", "password": "p".repeat(1025)})),
            400,
            "`password`",
        ),
        (
            email(json!({"security": "none", "username": "u", "password": "pw"})),
            400,
            "`security`",
        ),
    ];
    for (body, status, names) in refused {
        let (got, v) = api
            .json(Method::POST, "/api/v1/channels", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(names), "{body}: {message}");
    }
    // a body past 64 KiB is refused before it is read
    let (got, v) = api
        .json(Method::POST, "/api/v1/channels", Some(json!({"name": "big", "kind": "slack", "url": "https://example.com/x", "pad": "p".repeat(70_000)})))
        .await;
    assert_eq!(got, 413, "{v}");
    for i in 0..100 {
        create_channel(
            &api,
            json!({"name": format!("c{i}"), "kind": "slack", "url": "https://example.com/x"}),
        )
        .await;
    }
    let (got, v) = api
        .json(
            Method::POST,
            "/api/v1/channels",
            Some(json!({"name": "c100", "kind": "slack", "url": "https://example.com/x"})),
        )
        .await;
    assert_eq!(got, 409, "the 101st channel: {v}");
    let list = api.get("/api/v1/channels").await;
    let first = list["channels"][0]["id"].as_str().expect("id").to_string();
    let (got, _) = api
        .json(
            Method::POST,
            "/api/v1/channels",
            Some(json!({"name": "c1", "kind": "slack", "url": "https://example.com/x"})),
        )
        .await;
    assert_eq!(got, 409, "a name taken (and still 100)");
    let (got, _) = api
        .call(Method::DELETE, &format!("/api/v1/channels/{first}"), None)
        .await;
    assert_eq!(got, 204);
    let (got, v) = api
        .json(
            Method::POST,
            "/api/v1/channels",
            Some(json!({"name": "c1", "kind": "slack", "url": "https://example.com/x"})),
        )
        .await;
    assert_eq!(got, 409, "c1 is still taken: {v}");
    let mail = create_channel(
        &api,
        email(json!({"name": "mail", "username": "u", "password": "hunter2-hunter2"})),
    )
    .await;
    let mail_id = mail["id"].as_str().expect("id");
    let (got, v) = api
        .json(
            Method::PATCH,
            &format!("/api/v1/channels/{mail_id}"),
            Some(json!({"host": "smtp.elsewhere.example"})),
        )
        .await;
    assert_eq!(got, 422, "moving the server without its password: {v}");
    let (got, _) = api
        .json(Method::GET, "/api/v1/channels/ch_0000000000000000", None)
        .await;
    assert_eq!(got, 404);
    let (got, _) = api
        .json(Method::GET, "/api/v1/channels/nonsense", None)
        .await;
    assert_eq!(got, 404);
    for query in [
        "status=lost",
        "limit=0",
        "limit=1001",
        "channel=x",
        "color=red",
        "limit=5&limit=6",
    ] {
        let (got, v) = api
            .json(Method::GET, &format!("/api/v1/deliveries?{query}"), None)
            .await;
        assert_eq!(got, 400, "{query}: {v}");
    }
    // the outbox's own bounds: a key and a message past their limits
    let channel = ChannelId::parse(mail_id).expect("id");
    let too_long = hub
        .notifier
        .enqueue(NewDelivery {
            key: "k".repeat(201),
            channel: channel.clone(),
            message: message("s"),
        })
        .await;
    assert!(too_long.is_err());
    let mut big = message("s");
    big.text = "t".repeat(64 * 1024 + 1);
    assert!(hub
        .notifier
        .enqueue(NewDelivery {
            key: "k".into(),
            channel: channel.clone(),
            message: big
        })
        .await
        .is_err());
    let unknown = ChannelId::parse("ch_0000000000000000").expect("id");
    assert!(hub
        .notifier
        .enqueue(NewDelivery {
            key: "k".into(),
            channel: unknown,
            message: message("s")
        })
        .await
        .is_err());
    hub.stop().await.expect("stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_secrets_never_come_out() {
    const PLANTED: &str = "planted-notify-secret-5b1e0c";
    let signing = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(format!("{PLANTED}-signing-key-bytes"))
    );
    let signing_b64 = signing.trim_start_matches("whsec_").to_string();
    // receivers that echo what they were sent into their error answers
    let echo_hook = Receiver::start(vec![
        Reply::status(500).body(&format!(
            "no hook at /in?token={PLANTED}-query"
        ));
        3
    ])
    .await;
    let echo_slack = Receiver::start(vec![
        Reply::status(500).body(&format!(
            "bad url /services/T1/B2/{PLANTED}-slack"
        ));
        3
    ])
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub_with(dir.path(), fast_notify).await;
    let api = Api::new(&hub);
    let webhook = create_channel(
        &api,
        json!({"name": "hook", "kind": "webhook",
            "url": format!("{}/in?token={PLANTED}-query", echo_hook.url), "secret": signing}),
    )
    .await;
    let slack = create_channel(
        &api,
        json!({"name": "slack", "kind": "slack", "url": format!("{}/services/T1/B2/{PLANTED}-slack", echo_slack.url)}),
    )
    .await;
    let mail = create_channel(
        &api,
        json!({"name": "mail", "kind": "email", "host": "127.0.0.1", "port": free_port(),
            "security": "starttls", "username": "audit", "password": format!("{PLANTED}-password"),
            "from": "a@example.com", "to": ["b@example.com"]}),
    )
    .await;
    let mut outputs = vec![webhook.to_string(), slack.to_string(), mail.to_string()];
    for c in [&webhook, &slack, &mail] {
        let id = c["id"].as_str().expect("id");
        let (_, tested) = api
            .call(Method::POST, &format!("/api/v1/channels/{id}/test"), None)
            .await;
        outputs.push(tested);
        let (_, patched) = api
            .call(
                Method::PATCH,
                &format!("/api/v1/channels/{id}"),
                Some(json!({"name": format!("{} renamed", c["name"].as_str().unwrap_or(""))})),
            )
            .await;
        outputs.push(patched);
        outputs.push(
            api.call(Method::GET, &format!("/api/v1/channels/{id}"), None)
                .await
                .1,
        );
    }
    // a secret sent in the wrong field does not come back in the error
    let (status, wrong) = api
        .call(Method::POST, "/api/v1/channels", Some(json!({"name": "x", "kind": "slack", "url": "https://example.com/x", "port": format!("{PLANTED}-typo")})))
        .await;
    assert_eq!(status, 400);
    outputs.push(wrong);
    echo_hook.wait_for(3, 10).await;
    echo_slack.wait_for(3, 10).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    outputs.push(api.call(Method::GET, "/api/v1/channels", None).await.1);
    outputs.push(
        api.call(Method::GET, "/api/v1/deliveries?limit=1000", None)
            .await
            .1,
    );
    for d in api.get("/api/v1/deliveries?limit=1000").await["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        outputs.push(
            api.call(
                Method::GET,
                &format!("/api/v1/deliveries/{}", d["id"].as_str().unwrap_or("")),
                None,
            )
            .await
            .1,
        );
    }
    outputs.push(api.export("trailhub").await);
    let hub_arg = hub.url();
    let cli_dir = tempfile::tempdir().expect("tempdir");
    let webhook_id = webhook["id"].as_str().expect("id");
    for args in [
        vec!["channels", "list", "--hub", &hub_arg, "--token", ADMIN],
        vec![
            "channels", "test", webhook_id, "--hub", &hub_arg, "--token", ADMIN,
        ],
    ] {
        let (_, out) = cli(cli_dir.path(), &args);
        outputs.push(out);
    }
    hub.stop().await.expect("stops");
    outputs.push(captured_logs());
    let all = outputs.join("\n");
    assert!(
        all.contains("hook renamed") && all.contains("HTTP 500"),
        "the outputs were read"
    );
    for needle in [PLANTED, signing_b64.as_str()] {
        assert!(
            !all.contains(needle),
            "{needle} came out:\n{}",
            all.lines()
                .filter(|l| l.contains(needle))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert!(
        files_containing(dir.path(), PLANTED.as_bytes()).is_empty(),
        "sealed at rest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_lists_tests_and_removes_channels() {
    let receiver = Receiver::start(vec![]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hub = start_hub_with(dir.path(), fast_notify).await;
    let hub_arg = hub.url();
    let cli_dir = tempfile::tempdir().expect("tempdir");
    let remote = ["--hub", hub_arg.as_str(), "--token", ADMIN];
    let url = format!("{}/hook", receiver.url);
    let mut add = vec![
        "channels", "add", "--name", "cli hook", "--kind", "webhook", "--url", &url,
    ];
    add.extend(remote);
    let (ok, out) = cli(cli_dir.path(), &add);
    assert!(ok, "{out}");
    let start = out.find('{').expect("json");
    let created: Value = serde_json::Deserializer::from_str(&out[start..])
        .into_iter::<Value>()
        .next()
        .expect("a value")
        .expect("json");
    let secret = created["secret"].as_str().expect("shown once").to_string();
    let id = created["id"].as_str().expect("id").to_string();
    let mut list = vec!["channels", "list"];
    list.extend(remote);
    let (ok, out) = cli(cli_dir.path(), &list);
    assert!(ok && out.contains(&id) && out.contains("cli hook"), "{out}");
    assert!(!out.contains(&secret[6..]), "{out}");
    let mut test = vec!["channels", "test", id.as_str()];
    test.extend(remote);
    let (ok, out) = cli(cli_dir.path(), &test);
    assert!(ok, "{out}");
    assert!(out.contains("\"delivered\": true"), "{out}");
    let got = receiver.wait_for(1, 5).await;
    verify_received(&secret, &got[0]).expect("signed with the secret shown at creation");
    let mut remove = vec!["channels", "remove", id.as_str()];
    remove.extend(remote);
    let (ok, out) = cli(cli_dir.path(), &remove);
    assert!(ok, "{out}");
    let (ok, out) = cli(cli_dir.path(), &test);
    assert!(!ok && out.contains("404"), "{out}");
    hub.stop().await.expect("stops");
}
