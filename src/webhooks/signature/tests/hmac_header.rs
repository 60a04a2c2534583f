//! `hmac_header` schemes: GitHub's and Slack's published vectors through their former scheme
//! names, and generic definitions (custom tolerance, SHA-1 base64, a signed delivery id).

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::*;

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
