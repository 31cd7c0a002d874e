use super::*;
use base64::Engine as _;
use http::HeaderValue;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::json;

const KEY: &str = include_str!("../../../../tests/fixtures/fic-test-key.pem");
const PUB: &str = include_str!("../../../../tests/fixtures/fic-test-pub.pem");
const OTHER_KEY: &str = include_str!("../../../../tests/fixtures/other-test-key.pem");
const URL: &str = "https://hooks.example.com/webhooks/fic";
const NOW: u64 = 1_700_000_000;

fn verifier() -> FicVerifier {
    FicVerifier::new(PUB.as_bytes(), URL.into()).expect("key")
}

fn claims() -> Value {
    json!({
        "iss": FIC_ISSUER, "aud": [URL], "sub": "company:108061", "jti": "198:abc",
        "iat": NOW - 10, "exp": NOW + 3 * 3600, "aid": 4321,
    })
}

fn sign_with(key_pem: &str, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(key_pem.as_bytes()).expect("signing key");
    encode(&Header::new(Algorithm::ES256), claims, &key).expect("sign")
}

fn auth(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("value"),
    );
    h
}

fn with(f: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut c = claims();
    if let Some(m) = c.as_object_mut() {
        f(m);
    }
    c
}

#[test]
fn valid_token_yields_binding_claims() {
    let got = verifier().verify(&auth(&sign_with(KEY, &claims())), NOW, Purpose::Notification);
    assert_eq!(
        got,
        Ok(FicClaims {
            sub: Some("company:108061".into()),
            jti: Some("198:abc".into())
        })
    );
}

#[test]
fn claim_failures() {
    let cases: Vec<(&str, Value, VerifyError)> = vec![
        (
            "expired",
            with(|m| {
                m.insert("exp".into(), json!(NOW - 61));
            }),
            VerifyError::TokenExpired,
        ),
        (
            "no exp",
            with(|m| {
                m.remove("exp");
            }),
            VerifyError::TokenExpired,
        ),
        (
            "nbf future",
            with(|m| {
                m.insert("nbf".into(), json!(NOW + 120));
            }),
            VerifyError::TokenNotYetValid,
        ),
        (
            "wrong iss",
            with(|m| {
                m.insert("iss".into(), json!("https://evil.example"));
            }),
            VerifyError::IssuerMismatch,
        ),
        (
            "no iss",
            with(|m| {
                m.remove("iss");
            }),
            VerifyError::IssuerMismatch,
        ),
        (
            "no aud",
            with(|m| {
                m.remove("aud");
            }),
            VerifyError::AudienceMismatch,
        ),
        (
            "aud without url",
            with(|m| {
                m.insert("aud".into(), json!(["https://other.example/x"]));
            }),
            VerifyError::AudienceMismatch,
        ),
        (
            "aud prefix only",
            with(|m| {
                m.insert("aud".into(), json!([format!("{URL}/more")]));
            }),
            VerifyError::AudienceMismatch,
        ),
        (
            "no sub",
            with(|m| {
                m.remove("sub");
            }),
            VerifyError::SubjectMismatch,
        ),
        (
            "no jti",
            with(|m| {
                m.remove("jti");
            }),
            VerifyError::IdMismatch,
        ),
    ];
    for (name, c, want) in cases {
        let got = verifier().verify(&auth(&sign_with(KEY, &c)), NOW, Purpose::Notification);
        assert_eq!(got, Err(want), "{name}");
    }
}

#[test]
fn leeway_applies_to_exp_and_nbf() {
    let v = verifier();
    let c = with(|m| {
        m.insert("exp".into(), json!(NOW - 30));
        m.insert("nbf".into(), json!(NOW + 30));
    });
    assert!(v
        .verify(&auth(&sign_with(KEY, &c)), NOW, Purpose::Notification)
        .is_ok());
}

#[test]
fn audience_readings() {
    let v = verifier();
    for aud in [
        json!([URL]),
        json!(URL),
        json!(["x", format!("{URL}?x-fic-verification-challenge=1")]),
    ] {
        let c = with(|m| {
            m.insert("aud".into(), aud.clone());
        });
        assert!(
            v.verify(&auth(&sign_with(KEY, &c)), NOW, Purpose::Notification)
                .is_ok(),
            "{aud}"
        );
    }
}

#[test]
fn forged_tokens() {
    let v = verifier();
    let good = sign_with(KEY, &claims());
    // Other key.
    let other = sign_with(OTHER_KEY, &claims());
    // Tampered payload with the original signature.
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged_payload = b64.encode(
        serde_json::to_vec(&with(|m| {
            m.insert("sub".into(), json!("company:1"));
        }))
        .expect("json"),
    );
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    // HS256 "signed" with the public key as the secret.
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(PUB.as_bytes()).expect("secret"),
    )
    .expect("hs256");
    // alg: none.
    let none = format!("{}.{}.", b64.encode(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    for (name, token) in [
        ("other key", other),
        ("tampered", tampered),
        ("hs256", hs),
        ("none", none),
        ("garbage", "a.b.c".into()),
    ] {
        assert_eq!(
            v.verify(&auth(&token), NOW, Purpose::Notification),
            Err(VerifyError::BadSignature),
            "{name}"
        );
    }
}

#[test]
fn missing_or_malformed_authorization() {
    let v = verifier();
    let token = sign_with(KEY, &claims());
    let mut h = HeaderMap::new();
    assert_eq!(
        v.verify(&h, NOW, Purpose::Notification),
        Err(VerifyError::MissingToken)
    );
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&token).expect("v"),
    );
    assert_eq!(
        v.verify(&h, NOW, Purpose::Notification),
        Err(VerifyError::MissingToken)
    );
    h.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {token}")).expect("v"),
    );
    assert_eq!(
        v.verify(&h, NOW, Purpose::Notification),
        Err(VerifyError::MissingToken)
    );
    let mut two = auth(&token);
    two.append(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).expect("v"),
    );
    assert_eq!(
        v.verify(&two, NOW, Purpose::Notification),
        Err(VerifyError::MissingToken)
    );
}

#[test]
fn allow_lists() {
    let mut v = verifier();
    v.app_ids.insert("4321".into());
    v.companies.insert("company:108061".into());
    let token = sign_with(KEY, &claims());
    assert!(v.verify(&auth(&token), NOW, Purpose::Notification).is_ok());
    let wrong_app = sign_with(
        KEY,
        &with(|m| {
            m.insert("aid".into(), json!(1));
        }),
    );
    assert_eq!(
        v.verify(&auth(&wrong_app), NOW, Purpose::Notification),
        Err(VerifyError::NotAllowed)
    );
    let wrong_company = sign_with(
        KEY,
        &with(|m| {
            m.insert("sub".into(), json!("company:1"));
        }),
    );
    assert_eq!(
        v.verify(&auth(&wrong_company), NOW, Purpose::Notification),
        Err(VerifyError::NotAllowed)
    );
    // On the GET the allow-lists apply only when switched on.
    assert!(v.verify(&auth(&wrong_company), NOW, Purpose::Challenge).is_ok());
    v.challenge_checks_allow_lists = true;
    assert_eq!(
        v.verify(&auth(&wrong_company), NOW, Purpose::Challenge),
        Err(VerifyError::NotAllowed)
    );
}

#[test]
fn challenge_token_needs_no_sub_or_jti() {
    let c = with(|m| {
        m.remove("sub");
        m.remove("jti");
    });
    assert!(verifier()
        .verify(&auth(&sign_with(KEY, &c)), NOW, Purpose::Challenge)
        .is_ok());
}

#[test]
fn event_bindings() {
    let c = FicClaims {
        sub: Some("company:1".into()),
        jti: Some("id-1".into()),
    };
    assert_eq!(FicVerifier::check_event(&c, "id-1", Some("company:1")), Ok(()));
    assert_eq!(
        FicVerifier::check_event(&c, "id-2", Some("company:1")),
        Err(VerifyError::IdMismatch)
    );
    assert_eq!(
        FicVerifier::check_event(&c, "id-1", Some("company:2")),
        Err(VerifyError::SubjectMismatch)
    );
    assert_eq!(
        FicVerifier::check_event(&c, "id-1", None),
        Err(VerifyError::SubjectMismatch)
    );
}

#[test]
fn challenge_values() {
    let hex64 = "a".repeat(64);
    let h = |v: &str| {
        let mut h = HeaderMap::new();
        h.insert(CHALLENGE, HeaderValue::from_str(v).expect("v"));
        h
    };
    assert_eq!(challenge(&h(&hex64), None), Ok(hex64.clone()));
    assert_eq!(
        challenge(&HeaderMap::new(), Some(&format!("{CHALLENGE}={hex64}&x=1"))),
        Ok(hex64.clone())
    );
    assert_eq!(
        challenge(&h("A.b_c-9"), Some(&format!("{CHALLENGE}=A.b_c-9"))),
        Ok("A.b_c-9".into())
    );
    assert!(challenge(&h(&"a".repeat(256)), None).is_ok());
    for bad in ["", "has space", "<script>", "a/b", "\"quote\""] {
        let mut hm = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(bad) {
            hm.insert(CHALLENGE, v);
        }
        assert!(challenge(&hm, None).is_err(), "{bad:?}");
    }
    assert!(challenge(&h(&"a".repeat(257)), None).is_err());
    assert!(challenge(&HeaderMap::new(), Some(&format!("{CHALLENGE}=%3Cx%3E"))).is_err());
    assert!(
        challenge(&h("abc"), Some(&format!("{CHALLENGE}=abd"))).is_err(),
        "header and query differ"
    );
    assert!(challenge(&HeaderMap::new(), None).is_err());
}

#[test]
fn compiled_in_key_is_fics_published_p256_key() {
    // The base64 body as published in FIC's documentation (providers.md §1.4).
    let published = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE/RoHIjgY7hfXfY5p/Jy+K/FguMZ43TvZ9t4eN7+kxQ0MJzKtowv4CcYTFqrBm7hMB5ZWKnqLz24D6lQjSL0Ysw==";
    let body: String = FIC_PUBLIC_KEY_PEM
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    assert_eq!(body, published);
    let der = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .expect("base64");
    // SubjectPublicKeyInfo with id-ecPublicKey (1.2.840.10045.2.1) on prime256v1 (1.2.840.10045.3.1.7)
    // and a 65-byte uncompressed point.
    let ec_public_key = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    let prime256v1 = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    assert!(der.windows(ec_public_key.len()).any(|w| w == ec_public_key));
    assert!(der.windows(prime256v1.len()).any(|w| w == prime256v1));
    assert_eq!(der.len(), 91);
    assert_eq!(der[26], 0x04, "uncompressed point");
    assert!(FicVerifier::new(FIC_PUBLIC_KEY_PEM.as_bytes(), URL.into()).is_ok());
    // And it is a real ES256 verification key: a token signed by another key fails against it
    // with a signature error, not a key error.
    let v = FicVerifier::new(FIC_PUBLIC_KEY_PEM.as_bytes(), URL.into()).expect("key");
    assert_eq!(
        v.verify(&auth(&sign_with(KEY, &claims())), NOW, Purpose::Notification),
        Err(VerifyError::BadSignature)
    );
}
