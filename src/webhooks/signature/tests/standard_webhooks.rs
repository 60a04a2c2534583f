//! `standard_webhooks`: the published vector, the five-minute window, tampering, malformed
//! headers, rotation on both sides, and the secrets the hub mints.

use super::*;

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
