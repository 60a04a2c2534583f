//! Published test vectors (VENDORS.md §12) and, for every scheme, the ways a delivery must be
//! refused: tampered body, wrong secret, missing or malformed header, stale timestamp.
//!
//! This file holds the vectors and helpers, the parsing of `[webhook]` tables and what must
//! hold for every scheme; each mechanism's own cases are in the file of its name beside it.

use super::hmac_header::{PayloadPart, TimestampRule};
use super::*;

mod hmac_header;
mod shared_token;
mod standard_webhooks;

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
