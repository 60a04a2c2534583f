//! `shared_token` schemes: Okta's event hooks (the token compared whole, rotation) and the GET
//! handshake that echoes a challenge.

use super::*;

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
