use super::*;
use http::{HeaderName, HeaderValue};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

// providers.md §2.2
const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const SW_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
const SW_TS: i64 = 1649367553;
const SW_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
const SW_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

fn sw_keys() -> Vec<Vec<u8>> {
    vec![standard_webhooks::parse_secret(SW_SECRET).expect("secret")]
}

#[test]
fn standard_webhooks_vector_names_tolerance_and_rotation() {
    let ts = SW_TS.to_string();
    let h = headers(&[
        ("webhook-id", SW_ID),
        ("webhook-timestamp", &ts),
        ("webhook-signature", SW_SIG),
    ]);
    assert_eq!(standard_webhooks(&h, SW_BODY, SW_TS, &sw_keys(), 300), Ok(()));
    let svix = headers(&[
        ("svix-id", SW_ID),
        ("svix-timestamp", &ts),
        ("svix-signature", SW_SIG),
    ]);
    assert_eq!(standard_webhooks(&svix, SW_BODY, SW_TS, &sw_keys(), 300), Ok(()));
    // Several signatures, one valid; rotation: an old wrong key plus the right one.
    let listed = headers(&[
        ("webhook-id", SW_ID),
        ("webhook-timestamp", &ts),
        ("webhook-signature", &format!("v1,AAAA {SW_SIG}")),
    ]);
    let rotated = vec![vec![9u8; 24], sw_keys().remove(0)];
    assert_eq!(standard_webhooks(&listed, SW_BODY, SW_TS, &rotated, 300), Ok(()));
    // Tolerance edges: exactly 300 s either way passes, 301 fails, future included.
    assert_eq!(
        standard_webhooks(&h, SW_BODY, SW_TS + 300, &sw_keys(), 300),
        Ok(())
    );
    assert_eq!(
        standard_webhooks(&h, SW_BODY, SW_TS - 300, &sw_keys(), 300),
        Ok(())
    );
    assert_eq!(
        standard_webhooks(&h, SW_BODY, SW_TS + 301, &sw_keys(), 300),
        Err(VerifyError::TimestampOutOfRange)
    );
    assert_eq!(
        standard_webhooks(&h, SW_BODY, SW_TS - 301, &sw_keys(), 300),
        Err(VerifyError::TimestampOutOfRange)
    );
    // Tampered body, wrong key, empty body, missing and duplicated headers.
    assert_eq!(
        standard_webhooks(&h, b"{}", SW_TS, &sw_keys(), 300),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        standard_webhooks(&h, b"", SW_TS, &sw_keys(), 300),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        standard_webhooks(&h, SW_BODY, SW_TS, &[vec![1; 24]], 300),
        Err(VerifyError::BadSignature)
    );
    let missing = headers(&[("webhook-id", SW_ID), ("webhook-timestamp", &ts)]);
    assert_eq!(
        standard_webhooks(&missing, SW_BODY, SW_TS, &sw_keys(), 300),
        Err(VerifyError::MissingToken)
    );
    let mut dup = h.clone();
    dup.append("webhook-signature", HeaderValue::from_static("v1,AAAA"));
    assert_eq!(
        standard_webhooks(&dup, SW_BODY, SW_TS, &sw_keys(), 300),
        Err(VerifyError::BadSignature)
    );
    let bad_ts = headers(&[
        ("webhook-id", SW_ID),
        ("webhook-timestamp", "soon"),
        ("webhook-signature", SW_SIG),
    ]);
    assert_eq!(
        standard_webhooks(&bad_ts, SW_BODY, SW_TS, &sw_keys(), 300),
        Err(VerifyError::TimestampOutOfRange)
    );
}

// providers.md §2.3
#[test]
fn github_vector() {
    let secret = b"It's a Secret to Everybody".to_vec();
    let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    let h = headers(&[("x-hub-signature-256", sig)]);
    assert_eq!(
        github(&h, b"Hello, World!", std::slice::from_ref(&secret)),
        Ok(())
    );
    assert_eq!(
        github(&h, b"Hello, World!", &[b"old".to_vec(), secret.clone()]),
        Ok(())
    );
    assert_eq!(
        github(&h, b"Hello, World?", std::slice::from_ref(&secret)),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        github(&h, b"", std::slice::from_ref(&secret)),
        Err(VerifyError::BadSignature)
    );
    let sha1 = headers(&[("x-hub-signature-256", "sha1=757107ea")]);
    assert_eq!(
        github(&sha1, b"Hello, World!", std::slice::from_ref(&secret)),
        Err(VerifyError::BadSignature)
    );
    let not_hex = headers(&[("x-hub-signature-256", "sha256=zz")]);
    assert_eq!(
        github(&not_hex, b"Hello, World!", std::slice::from_ref(&secret)),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        github(&HeaderMap::new(), b"x", &[secret]),
        Err(VerifyError::MissingToken)
    );
}

// providers.md §2.4
#[test]
fn stripe_vector() {
    let secret = b"whsec_test_secret".to_vec();
    let body = br#"{"id":"evt_test"}"#;
    let v1 = "13941114bb88ac44a76abcfddea5b92aa6182a4b63d8be3aae908a616083bd7e";
    let h = headers(&[("stripe-signature", &format!("t=1700000000,v1={v1}"))]);
    assert_eq!(
        stripe(&h, body, 1_700_000_000, std::slice::from_ref(&secret), 300),
        Ok(())
    );
    let several = headers(&[(
        "stripe-signature",
        &format!("t=1700000000,v0=abcd,v1={},v1={v1}", "00".repeat(32)),
    )]);
    assert_eq!(
        stripe(&several, body, 1_700_000_100, std::slice::from_ref(&secret), 300),
        Ok(())
    );
    assert_eq!(
        stripe(&h, body, 1_700_000_301, std::slice::from_ref(&secret), 300),
        Err(VerifyError::TimestampOutOfRange)
    );
    assert_eq!(
        stripe(&h, body, 1_699_999_600, std::slice::from_ref(&secret), 300),
        Err(VerifyError::TimestampOutOfRange)
    );
    assert_eq!(
        stripe(&h, b"{}", 1_700_000_000, std::slice::from_ref(&secret), 300),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        stripe(&h, body, 1_700_000_000, &[b"whsec_other".to_vec()], 300),
        Err(VerifyError::BadSignature)
    );
    for bad in [
        "v1=abc",
        "t=1700000000",
        "t=x,v1=00",
        "t=1700000000,t=1700000000,v1=00",
    ] {
        let h = headers(&[("stripe-signature", bad)]);
        assert_eq!(
            stripe(&h, body, 1_700_000_000, std::slice::from_ref(&secret), 300),
            Err(VerifyError::BadSignature),
            "{bad}"
        );
    }
}

#[test]
fn generic_hmac_variants() {
    let secret = b"It's a Secret to Everybody".to_vec();
    // GitHub expressed as a generic HMAC: same vector.
    let gh = GenericHmac {
        header: "x-sig".into(),
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: "sha256=".into(),
        signed: "{body}".into(),
        timestamp_header: None,
        tolerance: 300,
    };
    let h = headers(&[(
        "x-sig",
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    )]);
    assert_eq!(
        gh.verify(&h, b"Hello, World!", 0, std::slice::from_ref(&secret)),
        Ok(())
    );
    // Stripe expressed as a generic HMAC with a timestamp header.
    let st = GenericHmac {
        header: "x-sig".into(),
        algorithm: Algorithm::Sha256,
        encoding: Encoding::Hex,
        prefix: String::new(),
        signed: "{timestamp}.{body}".into(),
        timestamp_header: Some("x-ts".into()),
        tolerance: 300,
    };
    let h = headers(&[
        (
            "x-sig",
            "13941114bb88ac44a76abcfddea5b92aa6182a4b63d8be3aae908a616083bd7e",
        ),
        ("x-ts", "1700000000"),
    ]);
    assert_eq!(
        st.verify(
            &h,
            br#"{"id":"evt_test"}"#,
            1_700_000_000,
            &[b"whsec_test_secret".to_vec()]
        ),
        Ok(())
    );
    assert_eq!(
        st.verify(
            &h,
            br#"{"id":"evt_test"}"#,
            1_700_000_400,
            &[b"whsec_test_secret".to_vec()]
        ),
        Err(VerifyError::TimestampOutOfRange)
    );
    // SHA-1 / SHA-512 / base64, computed independently with openssl:
    //   printf 'abc' | openssl dgst -sha1 -hmac key  → 4fd0b215276ef12f2b3e4c8ecac2811498b656fc
    //   printf 'abc' | openssl dgst -sha512 -hmac key -binary | base64
    let s1 = GenericHmac {
        algorithm: Algorithm::Sha1,
        prefix: String::new(),
        ..gh.clone()
    };
    let h = headers(&[("x-sig", "4fd0b215276ef12f2b3e4c8ecac2811498b656fc")]);
    assert_eq!(s1.verify(&h, b"abc", 0, &[b"key".to_vec()]), Ok(()));
    let s512 = GenericHmac {
        algorithm: Algorithm::Sha512,
        encoding: Encoding::Base64,
        prefix: String::new(),
        ..gh.clone()
    };
    let h = headers(&[(
        "x-sig",
        "OSaiB8jEKwxBeSy9PhoaqvX3olcE9i38k5xJh9184GAAnFuxwkRzVbMhbxC1N+mvp7ZKTlORsNYxFy0Hk54Ieg==",
    )]);
    assert_eq!(s512.verify(&h, b"abc", 0, &[b"key".to_vec()]), Ok(()));
    assert_eq!(
        s512.verify(&h, b"abd", 0, &[b"key".to_vec()]),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn basic_auth() {
    let users = vec![
        ("hook".to_owned(), b"old-pass".to_vec()),
        ("hook".to_owned(), b"new-pass".to_vec()),
    ];
    let enc = |s: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(s));
    assert_eq!(
        basic(&headers(&[("authorization", &enc("hook:new-pass"))]), &users),
        Ok(())
    );
    assert_eq!(
        basic(&headers(&[("authorization", &enc("hook:old-pass"))]), &users),
        Ok(())
    );
    assert_eq!(
        basic(&headers(&[("authorization", &enc("hook:nope"))]), &users),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(
        basic(&headers(&[("authorization", "Bearer x")]), &users),
        Err(VerifyError::MissingToken)
    );
    assert_eq!(basic(&HeaderMap::new(), &users), Err(VerifyError::MissingToken));
}
