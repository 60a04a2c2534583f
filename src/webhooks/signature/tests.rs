//! Published test vectors (VENDORS.md §12) and, for every scheme, the ways a delivery must be
//! refused: tampered body, wrong secret, missing or malformed header, stale timestamp.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::hmac_header::{PayloadPart, TimestampRule};
use super::*;

const GITHUB_SECRET: &str = "It's a Secret to Everybody";
const GITHUB_BODY: &[u8] = b"Hello, World!";
const GITHUB_SIGNATURE: &str =
    "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
const GITHUB_DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const SLACK_TIMESTAMP: i64 = 1531420618;
const SLACK_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
const SLACK_SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const STANDARD_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
const STANDARD_TIMESTAMP: i64 = 1614265330;
const STANDARD_BODY: &[u8] = br#"{"test": 2432232314}"#;
const STANDARD_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

/// HMAC-SHA1 of the GitHub vector in base64, computed with
/// `printf 'Hello, World!' | openssl dgst -sha1 -hmac "It's a Secret to Everybody" -binary | base64`.
const SHA1_BASE64_SIGNATURE: &str = "AdwQ0Mg+cu0kYhnN2RZpZn/iylk=";

const OKTA_SECRET: &str = "Bearer okta-shared-8d1c1f0e";

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

fn secrets(values: &[&str]) -> Vec<Secret> {
    values.iter().map(|value| Secret::new(*value)).collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectorFile {
    webhook: SignatureScheme,
}

fn scheme_from_toml(text: &str) -> Result<SignatureScheme, String> {
    toml::from_str::<ConnectorFile>(text)
        .map(|file| file.webhook)
        .map_err(|error| error.to_string())
}

fn header(name: &'static str) -> HeaderName {
    HeaderName::from_static(name)
}

fn github_request(signature: &str) -> HeaderMap {
    headers(&[
        ("X-Hub-Signature-256", signature),
        ("X-GitHub-Delivery", GITHUB_DELIVERY),
        ("X-GitHub-Event", "ping"),
    ])
}

fn slack_request(timestamp: &str, signature: &str) -> HeaderMap {
    headers(&[
        ("X-Slack-Request-Timestamp", timestamp),
        ("X-Slack-Signature", signature),
    ])
}

fn standard_request(id: &str, timestamp: &str, signature: &str) -> HeaderMap {
    headers(&[
        ("webhook-id", id),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signature),
    ])
}

fn standard_vector_request() -> HeaderMap {
    standard_request(
        STANDARD_ID,
        &STANDARD_TIMESTAMP.to_string(),
        STANDARD_SIGNATURE,
    )
}

/// GitHub's scheme written as a generic definition, to run the published vector through it.
const GITHUB_AS_HMAC_HEADER: &str = r#"
[webhook]
scheme = "hmac_header"
header = "X-Hub-Signature-256"
prefix = "sha256="
algorithm = "sha256"
encoding = "hex"
id_header = "X-GitHub-Delivery"
"#;

/// Slack's scheme (the same shape as Zoom's) written as a generic definition.
const SLACK_AS_HMAC_HEADER: &str = r#"
[webhook]
scheme = "hmac_header"
header = "x-slack-signature"
prefix = "v0="
algorithm = "sha256"
encoding = "hex"
timestamp_header = "x-slack-request-timestamp"
signed_payload = "v0:{timestamp}:{body}"
tolerance_seconds = 300
"#;

/// Okta's event hooks written as a generic definition.
const OKTA_AS_SHARED_TOKEN: &str = r#"
[webhook]
scheme = "shared_token"
header = "authorization"
challenge_header = "x-okta-verification-challenge"
challenge_reply_field = "verification"
"#;

const SHA1_BASE64_HMAC_HEADER: &str = r#"
[webhook]
scheme = "hmac_header"
header = "x-signature"
algorithm = "sha1"
encoding = "base64"
"#;

/// The former scheme names, each of which stands for one `hmac_header` or `shared_token`
/// definition.
fn github() -> SignatureScheme {
    scheme_from_toml("[webhook]\nscheme = \"github\"\n").expect("github")
}

fn okta() -> SignatureScheme {
    scheme_from_toml("[webhook]\nscheme = \"okta_event_hook\"\n").expect("okta_event_hook")
}

fn slack_v0() -> SignatureScheme {
    scheme_from_toml("[webhook]\nscheme = \"slack_v0\"\n").expect("slack_v0")
}

// ---- parsing connector definitions ----

#[test]
fn each_named_scheme_parses_from_a_webhook_table() {
    for (name, expected) in [
        // former names: exactly their generic definitions
        (
            "github",
            scheme_from_toml(GITHUB_AS_HMAC_HEADER).expect("valid"),
        ),
        (
            "slack_v0",
            scheme_from_toml(SLACK_AS_HMAC_HEADER).expect("valid"),
        ),
        (
            "okta_event_hook",
            scheme_from_toml(OKTA_AS_SHARED_TOKEN).expect("valid"),
        ),
        ("standard_webhooks", SignatureScheme::StandardWebhooks),
    ] {
        let text = format!("[webhook]\nscheme = \"{name}\"\n");
        assert_eq!(scheme_from_toml(&text), Ok(expected), "{name}");
    }
}

#[test]
fn generic_definitions_parse_with_their_parameters() {
    for text in [
        GITHUB_AS_HMAC_HEADER,
        SLACK_AS_HMAC_HEADER,
        SHA1_BASE64_HMAC_HEADER,
    ] {
        let scheme = scheme_from_toml(text).expect("valid definition");
        assert!(matches!(scheme, SignatureScheme::HmacHeader(_)));
    }
    let Ok(SignatureScheme::HmacHeader(slack)) = scheme_from_toml(SLACK_AS_HMAC_HEADER) else {
        panic!("slack definition parses");
    };
    assert_eq!(slack.signature_header, header("x-slack-signature"));
    assert_eq!(
        slack.timestamp,
        Some(TimestampRule {
            header: header("x-slack-request-timestamp"),
            tolerance_seconds: 300,
        })
    );
    assert_eq!(
        slack.signed_payload,
        vec![
            PayloadPart::Literal("v0:".into()),
            PayloadPart::Timestamp,
            PayloadPart::Literal(":".into()),
            PayloadPart::Body,
        ]
    );
}

#[test]
fn unknown_scheme_is_rejected_and_the_error_lists_the_known_ones() {
    let error = scheme_from_toml("[webhook]\nscheme = \"stripe\"\n").unwrap_err();
    for known in [
        "github",
        "slack_v0",
        "okta_event_hook",
        "standard_webhooks",
        "hmac_header",
    ] {
        assert!(error.contains(known), "{error}");
    }
}

#[test]
fn unknown_fields_are_rejected_for_every_scheme() {
    let github = scheme_from_toml("[webhook]\nscheme = \"github\"\nheader = \"x-sig\"\n");
    assert!(github.unwrap_err().contains("unknown field"));
    let standard = scheme_from_toml("[webhook]\nscheme = \"standard_webhooks\"\ntolerance = 10\n");
    assert!(standard.unwrap_err().contains("unknown field"));
    let generic = scheme_from_toml(&format!("{SHA1_BASE64_HMAC_HEADER}digest = \"sha1\"\n"));
    assert!(generic.unwrap_err().contains("unknown field"));
}

#[test]
fn generic_definition_requires_algorithm_and_encoding() {
    let error = scheme_from_toml(
        "[webhook]\nscheme = \"hmac_header\"\nheader = \"x-sig\"\nencoding = \"hex\"\n",
    )
    .unwrap_err();
    assert!(error.contains("algorithm"), "{error}");
    let error = scheme_from_toml(
        "[webhook]\nscheme = \"hmac_header\"\nheader = \"x-sig\"\nalgorithm = \"md5\"\nencoding = \"hex\"\n",
    )
    .unwrap_err();
    assert!(error.contains("md5"), "{error}");
}

fn generic_definition(extra: &str) -> HmacHeaderDefinition {
    let text = format!("header = \"x-sig\"\nalgorithm = \"sha256\"\nencoding = \"hex\"\n{extra}");
    toml::from_str(&text).expect("definition syntax")
}

#[test]
fn generic_definitions_that_cannot_authenticate_are_refused() {
    let cases = [
        ("signed_payload = \"{timestamp}\"\ntimestamp_header = \"x-ts\"", SchemeError::BodyNotSigned),
        ("signed_payload = \"{nonce}.{body}\"", SchemeError::UnknownPlaceholder("nonce".into())),
        ("signed_payload = \"{body\"", SchemeError::UnclosedPlaceholder),
        ("signed_payload = \"{body}{body}\"", SchemeError::RepeatedPlaceholder("body")),
        ("timestamp_header = \"x-ts\"", SchemeError::TimestampNotSigned),
        ("signed_payload = \"{timestamp}.{body}\"", SchemeError::TimestampHeaderMissing),
        ("signed_payload = \"{id}.{body}\"", SchemeError::IdHeaderMissing),
        ("tolerance_seconds = 60", SchemeError::ToleranceWithoutTimestamp),
        (
            "timestamp_header = \"x-ts\"\nsigned_payload = \"{timestamp}.{body}\"\ntolerance_seconds = 0",
            SchemeError::ZeroTolerance,
        ),
        (
            "timestamp_header = \"x ts\"\nsigned_payload = \"{timestamp}.{body}\"",
            SchemeError::InvalidHeaderName {
                field: "timestamp_header",
                value: "x ts".into(),
            },
        ),
    ];
    for (extra, expected) in cases {
        assert_eq!(
            HmacHeaderScheme::try_from(generic_definition(extra)),
            Err(expected),
            "{extra}"
        );
    }
}

#[test]
fn definition_errors_surface_through_the_toml_parser() {
    let error = scheme_from_toml(
        "[webhook]\nscheme = \"hmac_header\"\nheader = \"x-sig\"\nalgorithm = \"sha256\"\nencoding = \"hex\"\nsigned_payload = \"{timestamp}\"\n",
    )
    .unwrap_err();
    assert!(
        error.contains("signed_payload must contain {body}"),
        "{error}"
    );
}

// ---- GitHub ----

#[test]
fn github_published_vector_is_accepted_with_its_delivery_id() {
    let verified = github()
        .verify(
            &secrets(&[GITHUB_SECRET]),
            &github_request(GITHUB_SIGNATURE),
            GITHUB_BODY,
            0,
        )
        .expect("published vector verifies");
    assert_eq!(
        verified.delivery_id.as_ref().map(DeliveryId::as_str),
        Some(GITHUB_DELIVERY)
    );
    assert_eq!(verified.timestamp, None);
    assert_eq!(verified.matched_secret, 0);
}

#[test]
fn github_accepts_uppercase_hex_and_a_missing_delivery_id() {
    let upper = format!(
        "sha256={}",
        GITHUB_SIGNATURE["sha256=".len()..].to_uppercase()
    );
    let request = headers(&[("X-Hub-Signature-256", &upper)]);
    let verified = github()
        .verify(&secrets(&[GITHUB_SECRET]), &request, GITHUB_BODY, 0)
        .expect("hex is case-insensitive");
    assert_eq!(verified.delivery_id, None);
}

#[test]
fn github_rejects_tampered_body_and_wrong_secret() {
    let scheme = github();
    let request = github_request(GITHUB_SIGNATURE);
    assert_eq!(
        scheme.verify(&secrets(&[GITHUB_SECRET]), &request, b"Hello, World?", 0),
        Err(RejectReason::BadSignature)
    );
    assert_eq!(
        scheme.verify(&secrets(&["not the secret"]), &request, GITHUB_BODY, 0),
        Err(RejectReason::BadSignature)
    );
}

#[test]
fn github_rejects_missing_and_malformed_signatures() {
    let scheme = github();
    let keys = secrets(&[GITHUB_SECRET]);
    // Only the legacy SHA-1 header: not accepted.
    let legacy = headers(&[("X-Hub-Signature", "sha1=0123")]);
    assert_eq!(
        scheme.verify(&keys, &legacy, GITHUB_BODY, 0),
        Err(RejectReason::MissingHeader {
            header: header("x-hub-signature-256")
        })
    );
    let hex = &GITHUB_SIGNATURE["sha256=".len()..];
    for (signature, problem) in [
        (hex.to_string(), "the scheme's prefix is missing"),
        (format!("sha1={hex}"), "the scheme's prefix is missing"),
        ("sha256=not-hex".to_string(), "not hex"),
        (
            format!("sha256={}", &hex[..62]),
            "wrong length for the scheme's HMAC",
        ),
    ] {
        assert_eq!(
            scheme.verify(&keys, &github_request(&signature), GITHUB_BODY, 0),
            Err(RejectReason::MalformedSignature {
                header: header("x-hub-signature-256"),
                problem,
            }),
            "{signature}"
        );
    }
}

#[test]
fn github_rejects_a_repeated_signature_header() {
    let request = headers(&[
        ("X-Hub-Signature-256", GITHUB_SIGNATURE),
        ("X-Hub-Signature-256", GITHUB_SIGNATURE),
    ]);
    assert_eq!(
        github().verify(&secrets(&[GITHUB_SECRET]), &request, GITHUB_BODY, 0),
        Err(RejectReason::MalformedHeader {
            header: header("x-hub-signature-256"),
            problem: "sent more than once",
        })
    );
}

#[test]
fn github_rotation_accepts_old_or_new_secret_and_says_which() {
    let request = github_request(GITHUB_SIGNATURE);
    let rotating = secrets(&["the new secret", GITHUB_SECRET]);
    let verified = github()
        .verify(&rotating, &request, GITHUB_BODY, 0)
        .expect("the old secret still verifies");
    assert_eq!(verified.matched_secret, 1);
    let rotated = secrets(&[GITHUB_SECRET, "the old secret"]);
    let verified = github()
        .verify(&rotated, &request, GITHUB_BODY, 0)
        .expect("the new secret verifies");
    assert_eq!(verified.matched_secret, 0);
}

// ---- Slack ----

#[test]
fn slack_published_vector_is_accepted() {
    let request = slack_request(&SLACK_TIMESTAMP.to_string(), SLACK_SIGNATURE);
    let verified = slack_v0()
        .verify(
            &secrets(&[SLACK_SECRET]),
            &request,
            SLACK_BODY,
            SLACK_TIMESTAMP,
        )
        .expect("published vector verifies");
    assert_eq!(verified.delivery_id, None);
    assert_eq!(verified.timestamp, Some(SLACK_TIMESTAMP));
}

#[test]
fn slack_window_is_five_minutes_either_way() {
    let scheme = slack_v0();
    let keys = secrets(&[SLACK_SECRET]);
    let request = slack_request(&SLACK_TIMESTAMP.to_string(), SLACK_SIGNATURE);
    for now in [SLACK_TIMESTAMP - 300, SLACK_TIMESTAMP + 300] {
        assert!(
            scheme.verify(&keys, &request, SLACK_BODY, now).is_ok(),
            "{now}"
        );
    }
    for now in [SLACK_TIMESTAMP - 301, SLACK_TIMESTAMP + 301] {
        assert_eq!(
            scheme.verify(&keys, &request, SLACK_BODY, now),
            Err(RejectReason::StaleTimestamp {
                timestamp: SLACK_TIMESTAMP,
                now,
                tolerance_seconds: 300,
            })
        );
    }
}

#[test]
fn slack_rejects_tampered_body_timestamp_and_wrong_secret() {
    let scheme = slack_v0();
    let keys = secrets(&[SLACK_SECRET]);
    let request = slack_request(&SLACK_TIMESTAMP.to_string(), SLACK_SIGNATURE);
    let mut tampered = SLACK_BODY.to_vec();
    tampered[0] = b'T';
    assert_eq!(
        scheme.verify(&keys, &request, &tampered, SLACK_TIMESTAMP),
        Err(RejectReason::BadSignature)
    );
    // A replayer cannot refresh the timestamp: it is part of what was signed.
    let refreshed = slack_request(&(SLACK_TIMESTAMP + 1000).to_string(), SLACK_SIGNATURE);
    assert_eq!(
        scheme.verify(&keys, &refreshed, SLACK_BODY, SLACK_TIMESTAMP + 1000),
        Err(RejectReason::BadSignature)
    );
    assert_eq!(
        scheme.verify(
            &secrets(&["8f742231b10e8888abcd99yyyzzz85a6"]),
            &request,
            SLACK_BODY,
            SLACK_TIMESTAMP
        ),
        Err(RejectReason::BadSignature)
    );
}

#[test]
fn slack_rejects_missing_and_malformed_headers() {
    let scheme = slack_v0();
    let keys = secrets(&[SLACK_SECRET]);
    let now = SLACK_TIMESTAMP;
    assert_eq!(
        scheme.verify(
            &keys,
            &headers(&[("X-Slack-Signature", SLACK_SIGNATURE)]),
            SLACK_BODY,
            now
        ),
        Err(RejectReason::MissingHeader {
            header: header("x-slack-request-timestamp")
        })
    );
    assert_eq!(
        scheme.verify(
            &keys,
            &headers(&[("X-Slack-Request-Timestamp", "1531420618")]),
            SLACK_BODY,
            now
        ),
        Err(RejectReason::MissingHeader {
            header: header("x-slack-signature")
        })
    );
    for timestamp in ["soon", "-1531420618", "1531420618.5", "1531420618000000"] {
        assert_eq!(
            scheme.verify(
                &keys,
                &slack_request(timestamp, SLACK_SIGNATURE),
                SLACK_BODY,
                now
            ),
            Err(RejectReason::MalformedHeader {
                header: header("x-slack-request-timestamp"),
                problem: "not a Unix time in whole seconds",
            }),
            "{timestamp}"
        );
    }
    let without_version = &SLACK_SIGNATURE["v0=".len()..];
    assert_eq!(
        scheme.verify(
            &keys,
            &slack_request("1531420618", without_version),
            SLACK_BODY,
            now
        ),
        Err(RejectReason::MalformedSignature {
            header: header("x-slack-signature"),
            problem: "the scheme's prefix is missing",
        })
    );
}

#[test]
fn slack_rotation_accepts_any_configured_secret() {
    let request = slack_request(&SLACK_TIMESTAMP.to_string(), SLACK_SIGNATURE);
    let verified = slack_v0()
        .verify(
            &secrets(&["", "rotated-away", SLACK_SECRET]),
            &request,
            SLACK_BODY,
            SLACK_TIMESTAMP,
        )
        .expect("third secret matches");
    assert_eq!(verified.matched_secret, 2);
}

// ---- Okta event hooks ----

#[test]
fn okta_accepts_the_shared_secret_in_authorization() {
    let request = headers(&[("Authorization", OKTA_SECRET)]);
    let verified = okta()
        .verify(&secrets(&[OKTA_SECRET]), &request, b"{}", 0)
        .expect("shared secret matches");
    assert_eq!(verified.delivery_id, None);
    assert_eq!(verified.matched_secret, 0);
}

#[test]
fn okta_rejects_wrong_truncated_extended_and_missing_tokens() {
    let scheme = okta();
    let keys = secrets(&[OKTA_SECRET]);
    for presented in [
        "Bearer okta-shared-8d1c1f0f",
        "Bearer okta-shared-8d1c1f0",
        "Bearer okta-shared-8d1c1f0e0",
        "bearer okta-shared-8d1c1f0e",
    ] {
        assert_eq!(
            scheme.verify(&keys, &headers(&[("Authorization", presented)]), b"{}", 0),
            Err(RejectReason::BadToken {
                header: http::header::AUTHORIZATION
            }),
            "{presented}"
        );
    }
    assert_eq!(
        scheme.verify(&keys, &HeaderMap::new(), b"{}", 0),
        Err(RejectReason::MissingHeader {
            header: http::header::AUTHORIZATION
        })
    );
    assert_eq!(
        scheme.verify(&keys, &headers(&[("Authorization", "")]), b"{}", 0),
        Err(RejectReason::MissingHeader {
            header: http::header::AUTHORIZATION
        })
    );
}

#[test]
fn okta_body_is_not_signed_so_any_body_passes_with_the_token() {
    // Okta sends no MAC: the token is all there is. This pins that the hub does not pretend
    // otherwise (and that a body change is not mistaken for a bad token).
    let request = headers(&[("Authorization", OKTA_SECRET)]);
    assert!(okta()
        .verify(&secrets(&[OKTA_SECRET]), &request, b"anything", 0)
        .is_ok());
}

#[test]
fn okta_rotation_accepts_either_token() {
    let request = headers(&[("Authorization", "new-token")]);
    let verified = okta()
        .verify(&secrets(&[OKTA_SECRET, "new-token"]), &request, b"{}", 0)
        .expect("the new token matches");
    assert_eq!(verified.matched_secret, 1);
}

#[test]
fn okta_handshake_echoes_the_challenge_as_json() {
    let request = headers(&[("X-Okta-Verification-Challenge", "q1Gx3Yc\"weird\\value")]);
    let reply = okta()
        .verification_handshake(&request)
        .expect("okta has a handshake")
        .expect("challenge present");
    assert_eq!(reply.challenge, "q1Gx3Yc\"weird\\value");
    let parsed: serde_json::Value = serde_json::from_str(&reply.to_json()).expect("valid JSON");
    assert_eq!(
        parsed,
        serde_json::json!({"verification": "q1Gx3Yc\"weird\\value"})
    );
    let plain = okta_handshake(&headers(&[("X-Okta-Verification-Challenge", "abc123")]))
        .expect("challenge present");
    assert_eq!(plain.to_json(), r#"{"verification":"abc123"}"#);
}

fn okta_handshake(request: &HeaderMap) -> Result<HandshakeReply, RejectReason> {
    okta()
        .verification_handshake(request)
        .expect("okta has a handshake")
}

#[test]
fn okta_handshake_without_a_sane_challenge_is_refused() {
    assert_eq!(
        okta_handshake(&HeaderMap::new()),
        Err(RejectReason::MissingHeader {
            header: header("x-okta-verification-challenge")
        })
    );
    let long = "a".repeat(513);
    assert_eq!(
        okta_handshake(&headers(&[("X-Okta-Verification-Challenge", &long)])),
        Err(RejectReason::MalformedHeader {
            header: header("x-okta-verification-challenge"),
            problem: "longer than 512 bytes",
        })
    );
}

#[test]
fn a_shared_token_scheme_without_a_challenge_has_no_handshake_and_half_a_challenge_is_refused() {
    let plain = scheme_from_toml("[webhook]\nscheme = \"shared_token\"\nheader = \"x-token\"\n")
        .expect("valid");
    let request = headers(&[("X-Okta-Verification-Challenge", "abc"), ("X-Token", "t")]);
    assert_eq!(plain.verification_handshake(&request), None);
    assert!(plain.verify(&secrets(&["t"]), &request, b"{}", 0).is_ok());
    assert!(plain
        .verify(
            &secrets(&["t"]),
            &headers(&[("Authorization", "t")]),
            b"{}",
            0
        )
        .is_err());
    for half in [
        "challenge_header = \"x-c\"\n",
        "challenge_reply_field = \"v\"\n",
        "challenge_header = \"x-c\"\nchallenge_reply_field = \"\"\n",
    ] {
        let text = format!("[webhook]\nscheme = \"shared_token\"\n{half}");
        assert!(scheme_from_toml(&text).is_err(), "{text}");
    }
}

#[test]
fn only_okta_has_a_get_handshake() {
    let request = headers(&[("X-Okta-Verification-Challenge", "abc")]);
    for scheme in [
        github(),
        slack_v0(),
        SignatureScheme::StandardWebhooks,
        scheme_from_toml(GITHUB_AS_HMAC_HEADER).expect("valid"),
    ] {
        assert_eq!(scheme.verification_handshake(&request), None, "{scheme:?}");
    }
}

// ---- Standard Webhooks ----

#[test]
fn standard_webhooks_published_vector_is_accepted() {
    let verified = SignatureScheme::StandardWebhooks
        .verify(
            &secrets(&[STANDARD_SECRET]),
            &standard_vector_request(),
            STANDARD_BODY,
            STANDARD_TIMESTAMP,
        )
        .expect("published vector verifies");
    assert_eq!(
        verified.delivery_id.as_ref().map(DeliveryId::as_str),
        Some(STANDARD_ID)
    );
    assert_eq!(verified.timestamp, Some(STANDARD_TIMESTAMP));
}

#[test]
fn sign_standard_webhook_reproduces_the_published_vector() {
    let signature = sign_standard_webhook(
        &Secret::new(STANDARD_SECRET),
        STANDARD_ID,
        STANDARD_TIMESTAMP,
        STANDARD_BODY,
    );
    assert_eq!(signature.as_deref(), Ok(STANDARD_SIGNATURE));
    let bare = STANDARD_SECRET.trim_start_matches("whsec_");
    let signature = sign_standard_webhook(
        &Secret::new(bare),
        STANDARD_ID,
        STANDARD_TIMESTAMP,
        STANDARD_BODY,
    );
    assert_eq!(signature.as_deref(), Ok(STANDARD_SIGNATURE));
}

#[test]
fn standard_webhooks_accepts_a_secret_without_its_prefix() {
    let bare = STANDARD_SECRET.trim_start_matches("whsec_");
    assert!(SignatureScheme::StandardWebhooks
        .verify(
            &secrets(&[bare]),
            &standard_vector_request(),
            STANDARD_BODY,
            STANDARD_TIMESTAMP
        )
        .is_ok());
}

#[test]
fn standard_webhooks_window_is_five_minutes_either_way() {
    let scheme = SignatureScheme::StandardWebhooks;
    let keys = secrets(&[STANDARD_SECRET]);
    let request = standard_vector_request();
    for now in [STANDARD_TIMESTAMP - 300, STANDARD_TIMESTAMP + 300] {
        assert!(scheme.verify(&keys, &request, STANDARD_BODY, now).is_ok());
    }
    for now in [STANDARD_TIMESTAMP - 301, STANDARD_TIMESTAMP + 301] {
        let rejected = scheme.verify(&keys, &request, STANDARD_BODY, now);
        assert_eq!(
            rejected,
            Err(RejectReason::StaleTimestamp {
                timestamp: STANDARD_TIMESTAMP,
                now,
                tolerance_seconds: 300,
            })
        );
    }
}

#[test]
fn standard_webhooks_rejects_tampering_with_body_id_or_timestamp() {
    let scheme = SignatureScheme::StandardWebhooks;
    let keys = secrets(&[STANDARD_SECRET]);
    let now = STANDARD_TIMESTAMP;
    let ts = STANDARD_TIMESTAMP.to_string();
    assert_eq!(
        scheme.verify(
            &keys,
            &standard_vector_request(),
            br#"{"test": 2432232315}"#,
            now
        ),
        Err(RejectReason::BadSignature)
    );
    let other_id = standard_request("msg_other", &ts, STANDARD_SIGNATURE);
    assert_eq!(
        scheme.verify(&keys, &other_id, STANDARD_BODY, now),
        Err(RejectReason::BadSignature)
    );
    let other_ts = standard_request(STANDARD_ID, &(now + 1).to_string(), STANDARD_SIGNATURE);
    assert_eq!(
        scheme.verify(&keys, &other_ts, STANDARD_BODY, now),
        Err(RejectReason::BadSignature)
    );
    let wrong = secrets(&["whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]);
    assert_eq!(
        scheme.verify(&wrong, &standard_vector_request(), STANDARD_BODY, now),
        Err(RejectReason::BadSignature)
    );
}

#[test]
fn standard_webhooks_rejects_missing_headers() {
    let scheme = SignatureScheme::StandardWebhooks;
    let keys = secrets(&[STANDARD_SECRET]);
    let ts = STANDARD_TIMESTAMP.to_string();
    let all = [
        ("webhook-id", STANDARD_ID),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", STANDARD_SIGNATURE),
    ];
    for missing in 0..all.len() {
        let present: Vec<(&str, &str)> = all
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != missing)
            .map(|(_, pair)| *pair)
            .collect();
        assert_eq!(
            scheme.verify(&keys, &headers(&present), STANDARD_BODY, STANDARD_TIMESTAMP),
            Err(RejectReason::MissingHeader {
                header: HeaderName::from_static(all[missing].0)
            })
        );
    }
}

#[test]
fn standard_webhooks_rejects_malformed_headers() {
    let scheme = SignatureScheme::StandardWebhooks;
    let keys = secrets(&[STANDARD_SECRET]);
    let now = STANDARD_TIMESTAMP;
    let ts = STANDARD_TIMESTAMP.to_string();
    assert_eq!(
        scheme.verify(
            &keys,
            &standard_request(STANDARD_ID, "1614265330000", STANDARD_SIGNATURE),
            STANDARD_BODY,
            now
        ),
        Err(RejectReason::MalformedHeader {
            header: header("webhook-timestamp"),
            problem: "not a Unix time in whole seconds",
        })
    );
    let asymmetric_only = "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    for signature in [
        "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        "v1,not base64!",
        "v1,AAAA",
        asymmetric_only,
    ] {
        assert_eq!(
            scheme.verify(
                &keys,
                &standard_request(STANDARD_ID, &ts, signature),
                STANDARD_BODY,
                now
            ),
            Err(RejectReason::MalformedSignature {
                header: header("webhook-signature"),
                problem: "no v1,<base64 HMAC-SHA256> entry",
            }),
            "{signature}"
        );
    }
    let long_id = "m".repeat(257);
    assert_eq!(
        scheme.verify(
            &keys,
            &standard_request(&long_id, &ts, STANDARD_SIGNATURE),
            STANDARD_BODY,
            now
        ),
        Err(RejectReason::MalformedHeader {
            header: header("webhook-id"),
            problem: "delivery id longer than 256 bytes",
        })
    );
}

#[test]
fn standard_webhooks_any_listed_signature_may_match() {
    let ts = STANDARD_TIMESTAMP.to_string();
    let listed = format!(
        "v1a,c29tZXRoaW5nIGVsc2U= v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {STANDARD_SIGNATURE}"
    );
    let verified = SignatureScheme::StandardWebhooks
        .verify(
            &secrets(&[STANDARD_SECRET]),
            &standard_request(STANDARD_ID, &ts, &listed),
            STANDARD_BODY,
            STANDARD_TIMESTAMP,
        )
        .expect("the last listed signature matches");
    assert_eq!(verified.matched_secret, 0);
}

#[test]
fn standard_webhooks_rotation_on_both_sides() {
    let scheme = SignatureScheme::StandardWebhooks;
    let ts = STANDARD_TIMESTAMP.to_string();
    let new_secret = new_standard_webhooks_secret();
    let new_signature =
        sign_standard_webhook(&new_secret, STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_BODY)
            .expect("fresh secret is valid");
    // The sender signs with both keys while the hub still only knows the old one...
    let both = format!("{new_signature} {STANDARD_SIGNATURE}");
    let request = standard_request(STANDARD_ID, &ts, &both);
    let old_only = vec![Secret::new(STANDARD_SECRET)];
    let verified = scheme
        .verify(&old_only, &request, STANDARD_BODY, STANDARD_TIMESTAMP)
        .expect("old key matches");
    assert_eq!(verified.matched_secret, 0);
    // ...then the hub knows both and the sender signs only with the new one.
    let request = standard_request(STANDARD_ID, &ts, &new_signature);
    let both_secrets = vec![Secret::new(STANDARD_SECRET), new_secret];
    let verified = scheme
        .verify(&both_secrets, &request, STANDARD_BODY, STANDARD_TIMESTAMP)
        .expect("new key matches");
    assert_eq!(verified.matched_secret, 1);
}

#[test]
fn standard_webhooks_skips_secrets_that_are_not_base64() {
    let scheme = SignatureScheme::StandardWebhooks;
    let request = standard_vector_request();
    assert_eq!(
        scheme.verify(
            &secrets(&["whsec_not base64!"]),
            &request,
            STANDARD_BODY,
            STANDARD_TIMESTAMP
        ),
        Err(RejectReason::NoSecretConfigured)
    );
    let verified = scheme
        .verify(
            &secrets(&["whsec_not base64!", STANDARD_SECRET]),
            &request,
            STANDARD_BODY,
            STANDARD_TIMESTAMP,
        )
        .expect("the usable secret matches");
    assert_eq!(verified.matched_secret, 1);
}

#[test]
fn new_standard_webhooks_secrets_are_prefixed_distinct_and_usable() {
    let first = new_standard_webhooks_secret();
    let second = new_standard_webhooks_secret();
    assert!(first.expose().starts_with("whsec_"));
    assert_ne!(first, second);
    assert_eq!(standard_webhooks_key(&first).map(|key| key.len()), Ok(32));
    assert_eq!(
        SignatureScheme::StandardWebhooks.check_secret(&first),
        Ok(())
    );
}

// ---- generic HMAC header ----

#[test]
fn generic_scheme_verifies_the_github_vector() {
    let scheme = scheme_from_toml(GITHUB_AS_HMAC_HEADER).expect("valid");
    let verified = scheme
        .verify(
            &secrets(&[GITHUB_SECRET]),
            &github_request(GITHUB_SIGNATURE),
            GITHUB_BODY,
            0,
        )
        .expect("vector verifies");
    assert_eq!(
        verified.delivery_id.as_ref().map(DeliveryId::as_str),
        Some(GITHUB_DELIVERY)
    );
    assert_eq!(
        scheme.verify(
            &secrets(&[GITHUB_SECRET]),
            &github_request(GITHUB_SIGNATURE),
            b"x",
            0
        ),
        Err(RejectReason::BadSignature)
    );
    assert_eq!(
        scheme.verify(
            &secrets(&["other"]),
            &github_request(GITHUB_SIGNATURE),
            GITHUB_BODY,
            0
        ),
        Err(RejectReason::BadSignature)
    );
}

#[test]
fn generic_scheme_verifies_the_slack_vector_with_its_window() {
    let scheme = scheme_from_toml(SLACK_AS_HMAC_HEADER).expect("valid");
    let keys = secrets(&["wrong", SLACK_SECRET]);
    let request = slack_request(&SLACK_TIMESTAMP.to_string(), SLACK_SIGNATURE);
    let verified = scheme
        .verify(&keys, &request, SLACK_BODY, SLACK_TIMESTAMP + 300)
        .expect("vector verifies within the window");
    assert_eq!(verified.timestamp, Some(SLACK_TIMESTAMP));
    assert_eq!(verified.matched_secret, 1);
    assert_eq!(
        scheme.verify(&keys, &request, SLACK_BODY, SLACK_TIMESTAMP - 301),
        Err(RejectReason::StaleTimestamp {
            timestamp: SLACK_TIMESTAMP,
            now: SLACK_TIMESTAMP - 301,
            tolerance_seconds: 300,
        })
    );
    assert_eq!(
        scheme.verify(&keys, &request, b"token=changed", SLACK_TIMESTAMP),
        Err(RejectReason::BadSignature)
    );
    assert_eq!(
        scheme.verify(
            &keys,
            &slack_request("2018-07-12T18:36:58Z", SLACK_SIGNATURE),
            SLACK_BODY,
            SLACK_TIMESTAMP
        ),
        Err(RejectReason::MalformedHeader {
            header: header("x-slack-request-timestamp"),
            problem: "not a Unix time in whole seconds",
        })
    );
    assert_eq!(
        scheme.verify(
            &keys,
            &headers(&[("X-Slack-Signature", SLACK_SIGNATURE)]),
            SLACK_BODY,
            SLACK_TIMESTAMP
        ),
        Err(RejectReason::MissingHeader {
            header: header("x-slack-request-timestamp")
        })
    );
}

#[test]
fn generic_scheme_honours_a_custom_tolerance() {
    let text = SLACK_AS_HMAC_HEADER.replace("tolerance_seconds = 300", "tolerance_seconds = 30");
    let scheme = scheme_from_toml(&text).expect("valid");
    let request = slack_request(&SLACK_TIMESTAMP.to_string(), SLACK_SIGNATURE);
    let keys = secrets(&[SLACK_SECRET]);
    assert!(scheme
        .verify(&keys, &request, SLACK_BODY, SLACK_TIMESTAMP + 30)
        .is_ok());
    assert!(matches!(
        scheme.verify(&keys, &request, SLACK_BODY, SLACK_TIMESTAMP + 31),
        Err(RejectReason::StaleTimestamp {
            tolerance_seconds: 30,
            ..
        })
    ));
}

#[test]
fn generic_scheme_sha1_base64() {
    let scheme = scheme_from_toml(SHA1_BASE64_HMAC_HEADER).expect("valid");
    let keys = secrets(&[GITHUB_SECRET]);
    let request = headers(&[("X-Signature", SHA1_BASE64_SIGNATURE)]);
    assert!(scheme.verify(&keys, &request, GITHUB_BODY, 0).is_ok());
    let unpadded = SHA1_BASE64_SIGNATURE.trim_end_matches('=');
    let request = headers(&[("X-Signature", unpadded)]);
    assert!(scheme.verify(&keys, &request, GITHUB_BODY, 0).is_ok());
    assert_eq!(
        scheme.verify(&keys, &request, b"Hello, World", 0),
        Err(RejectReason::BadSignature)
    );
    // A SHA-256 MAC where SHA-1 is configured is the wrong length, not a near miss.
    let request = headers(&[(
        "X-Signature",
        "dXEH6g6yUJ/CESIczphLijdXC211hsIsRvQ3nIsEPhc=",
    )]);
    assert_eq!(
        scheme.verify(&keys, &request, GITHUB_BODY, 0),
        Err(RejectReason::MalformedSignature {
            header: header("x-signature"),
            problem: "wrong length for the scheme's HMAC",
        })
    );
    assert_eq!(
        scheme.verify(&keys, &headers(&[("X-Signature", "%%%")]), GITHUB_BODY, 0),
        Err(RejectReason::MalformedSignature {
            header: header("x-signature"),
            problem: "not base64",
        })
    );
    assert_eq!(
        scheme.verify(&keys, &HeaderMap::new(), GITHUB_BODY, 0),
        Err(RejectReason::MissingHeader {
            header: header("x-signature")
        })
    );
}

#[test]
fn generic_scheme_with_a_signed_id_requires_the_id_and_binds_it() {
    let text = r#"
[webhook]
scheme = "hmac_header"
header = "x-signature"
algorithm = "sha256"
encoding = "hex"
id_header = "x-delivery"
signed_payload = "{id}.{body}"
"#;
    let scheme = scheme_from_toml(text).expect("valid");
    let keys = secrets(&["k"]);
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"k").expect("any key length");
    mac.update(b"d-1.payload");
    let signature = hex::encode(mac.finalize().into_bytes());
    let request = headers(&[("x-signature", &signature), ("x-delivery", "d-1")]);
    let verified = scheme
        .verify(&keys, &request, b"payload", 0)
        .expect("signed id verifies");
    assert_eq!(
        verified.delivery_id.as_ref().map(DeliveryId::as_str),
        Some("d-1")
    );
    let moved = headers(&[("x-signature", &signature), ("x-delivery", "d-2")]);
    assert_eq!(
        scheme.verify(&keys, &moved, b"payload", 0),
        Err(RejectReason::BadSignature)
    );
    let missing = headers(&[("x-signature", &signature)]);
    assert_eq!(
        scheme.verify(&keys, &missing, b"payload", 0),
        Err(RejectReason::MissingHeader {
            header: header("x-delivery")
        })
    );
}

// ---- every scheme ----

fn every_scheme() -> Vec<SignatureScheme> {
    vec![
        github(),
        slack_v0(),
        okta(),
        SignatureScheme::StandardWebhooks,
        scheme_from_toml(GITHUB_AS_HMAC_HEADER).expect("valid"),
        scheme_from_toml(SLACK_AS_HMAC_HEADER).expect("valid"),
    ]
}

#[test]
fn scheme_names_are_the_values_a_webhook_table_uses() {
    for scheme in every_scheme() {
        let name = scheme.name();
        match &scheme {
            SignatureScheme::HmacHeader(_) => assert_eq!(name, "hmac_header"),
            SignatureScheme::SharedToken(_) => assert_eq!(name, "shared_token"),
            _ => assert_eq!(
                scheme_from_toml(&format!("[webhook]\nscheme = \"{name}\"\n")),
                Ok(scheme.clone())
            ),
        }
    }
}

#[test]
fn no_usable_secret_is_a_configuration_fault_for_every_scheme() {
    for scheme in every_scheme() {
        for configured in [vec![], secrets(&[""])] {
            let rejected = scheme.verify(&configured, &HeaderMap::new(), b"", 0);
            assert_eq!(
                rejected,
                Err(RejectReason::NoSecretConfigured),
                "{scheme:?}"
            );
            assert!(rejected.unwrap_err().is_configuration_fault());
        }
    }
}

#[test]
fn check_secret_catches_unusable_secrets_when_stored() {
    for scheme in every_scheme() {
        assert!(scheme.check_secret(&Secret::new("")).is_err(), "{scheme:?}");
    }
    let standard = SignatureScheme::StandardWebhooks;
    assert_eq!(
        standard.check_secret(&Secret::new("whsec_")),
        Err(SecretError::Empty)
    );
    assert_eq!(
        standard.check_secret(&Secret::new("whsec_not base64!")),
        Err(SecretError::NotBase64)
    );
    assert_eq!(standard.check_secret(&Secret::new(STANDARD_SECRET)), Ok(()));
    assert_eq!(github().check_secret(&Secret::new(GITHUB_SECRET)), Ok(()));
}

#[test]
fn rejection_codes_are_stable_snake_case() {
    let reasons = [
        (
            RejectReason::NoSecretConfigured,
            "webhook_secret_not_configured",
        ),
        (
            RejectReason::MissingHeader {
                header: header("x-a"),
            },
            "missing_header",
        ),
        (
            RejectReason::MalformedHeader {
                header: header("x-a"),
                problem: "p",
            },
            "malformed_header",
        ),
        (
            RejectReason::MalformedSignature {
                header: header("x-a"),
                problem: "p",
            },
            "malformed_signature",
        ),
        (RejectReason::BadSignature, "bad_signature"),
        (
            RejectReason::BadToken {
                header: header("authorization"),
            },
            "bad_token",
        ),
        (
            RejectReason::StaleTimestamp {
                timestamp: 1,
                now: 400,
                tolerance_seconds: 300,
            },
            "stale_timestamp",
        ),
    ];
    for (reason, code) in reasons {
        assert_eq!(reason.code(), code);
        assert!(!reason.is_configuration_fault() || code == "webhook_secret_not_configured");
    }
}

/// Plants each scheme's secret, provokes every kind of rejection, and greps the messages and
/// Debug output for the secret and for the MAC the hub would have expected.
#[test]
fn rejections_never_reveal_the_secret_or_the_expected_signature() {
    let github_hex = &GITHUB_SIGNATURE["sha256=".len()..];
    let slack_hex = &SLACK_SIGNATURE["v0=".len()..];
    let standard_b64 = &STANDARD_SIGNATURE["v1,".len()..];
    let forbidden = [
        GITHUB_SECRET,
        SLACK_SECRET,
        STANDARD_SECRET,
        &STANDARD_SECRET["whsec_".len()..],
        OKTA_SECRET,
        "okta-shared",
        github_hex,
        slack_hex,
        standard_b64,
    ];
    let ts = SLACK_TIMESTAMP.to_string();
    let std_ts = STANDARD_TIMESTAMP.to_string();
    let cases: Vec<(SignatureScheme, &str, HeaderMap, &[u8], i64)> = vec![
        (
            github(),
            GITHUB_SECRET,
            github_request(GITHUB_SIGNATURE),
            &b"tampered"[..],
            0,
        ),
        (github(), GITHUB_SECRET, HeaderMap::new(), GITHUB_BODY, 0),
        (
            github(),
            GITHUB_SECRET,
            github_request("sha256=zz"),
            GITHUB_BODY,
            0,
        ),
        (
            slack_v0(),
            SLACK_SECRET,
            slack_request(&ts, SLACK_SIGNATURE),
            &b"x"[..],
            SLACK_TIMESTAMP,
        ),
        (
            slack_v0(),
            SLACK_SECRET,
            slack_request(&ts, SLACK_SIGNATURE),
            SLACK_BODY,
            0,
        ),
        (
            slack_v0(),
            SLACK_SECRET,
            slack_request("x", SLACK_SIGNATURE),
            SLACK_BODY,
            0,
        ),
        (
            okta(),
            OKTA_SECRET,
            headers(&[("Authorization", "Bearer okta-shared-guess")]),
            &b"{}"[..],
            0,
        ),
        (okta(), OKTA_SECRET, HeaderMap::new(), &b"{}"[..], 0),
        (
            SignatureScheme::StandardWebhooks,
            STANDARD_SECRET,
            standard_request(STANDARD_ID, &std_ts, STANDARD_SIGNATURE),
            &b"tampered"[..],
            STANDARD_TIMESTAMP,
        ),
        (
            SignatureScheme::StandardWebhooks,
            STANDARD_SECRET,
            standard_request(STANDARD_ID, &std_ts, STANDARD_SIGNATURE),
            STANDARD_BODY,
            0,
        ),
        (
            SignatureScheme::StandardWebhooks,
            STANDARD_SECRET,
            standard_request(STANDARD_ID, &std_ts, "v1,!!"),
            STANDARD_BODY,
            STANDARD_TIMESTAMP,
        ),
    ];
    let generic_github = scheme_from_toml(GITHUB_AS_HMAC_HEADER).expect("valid");
    let generic_slack = scheme_from_toml(SLACK_AS_HMAC_HEADER).expect("valid");
    let cases = cases.into_iter().chain([
        (
            generic_github.clone(),
            GITHUB_SECRET,
            github_request(GITHUB_SIGNATURE),
            &b"tampered"[..],
            0,
        ),
        (
            generic_github,
            GITHUB_SECRET,
            github_request("sha256="),
            GITHUB_BODY,
            0,
        ),
        (
            generic_slack.clone(),
            SLACK_SECRET,
            slack_request(&ts, SLACK_SIGNATURE),
            &b"x"[..],
            SLACK_TIMESTAMP,
        ),
        (
            generic_slack,
            SLACK_SECRET,
            slack_request(&ts, SLACK_SIGNATURE),
            SLACK_BODY,
            SLACK_TIMESTAMP + 301,
        ),
    ]);
    for (scheme, secret, request, body, now) in cases {
        let rejected = scheme
            .verify(&[Secret::new(secret)], &request, body, now)
            .expect_err("every case is a rejection");
        let shown = format!("{rejected} {rejected:?} {}", rejected.code());
        for needle in forbidden {
            assert!(!shown.contains(needle), "{shown:?} reveals {needle:?}");
        }
    }
}
