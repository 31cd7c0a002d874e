//! The `token` verifier: a static shared secret in a header, compared in constant time against
//! every active token (several during a rotation).

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::VerifyError;
use hookbridge_sink_core::settings::Secret;

/// Checks `header` against `tokens`. For `authorization` the value must be `Bearer <token>`
/// (scheme case-insensitive); any other header carries the bare token. Two values of the header
/// are refused: which one would count is ambiguous.
pub fn verify(headers: &HeaderMap, header: &str, tokens: &[Secret]) -> Result<(), VerifyError> {
    let mut values = headers.get_all(header).iter();
    let value = values.next().ok_or(VerifyError::MissingToken)?;
    if values.next().is_some() {
        return Err(VerifyError::MissingToken);
    }
    let value = value.as_bytes();
    let presented = if header == "authorization" {
        bearer(value).ok_or(VerifyError::MissingToken)?
    } else {
        value
    };
    if presented.is_empty() {
        return Err(VerifyError::MissingToken);
    }
    // Compare digests so neither the content nor the length of a token leaks through timing;
    // check every token (no early exit) for the same reason.
    let presented = Sha256::digest(presented);
    let mut ok = subtle::Choice::from(0);
    for t in tokens {
        ok |= Sha256::digest(t.expose()).ct_eq(&presented);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(VerifyError::BadSignature)
    }
}

/// The credentials of `Bearer <credentials>`, if `value` has that shape.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let rest = rest.trim_ascii();
    (!rest.is_empty()).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Result<(), VerifyError>);

    #[test]
    fn table() {
        let tokens = [Secret::new("old-token"), Secret::new("new-token")];
        let cases: &[Case<'_>] = &[
            ("authorization", &[("authorization", "Bearer new-token")], Ok(())),
            ("authorization", &[("authorization", "bearer old-token")], Ok(())),
            (
                "authorization",
                &[("authorization", "Bearer wrong")],
                Err(VerifyError::BadSignature),
            ),
            (
                "authorization",
                &[("authorization", "Bearer new-token2")],
                Err(VerifyError::BadSignature),
            ),
            (
                "authorization",
                &[("authorization", "new-token")],
                Err(VerifyError::MissingToken),
            ),
            (
                "authorization",
                &[("authorization", "Bearer ")],
                Err(VerifyError::MissingToken),
            ),
            ("authorization", &[], Err(VerifyError::MissingToken)),
            (
                "authorization",
                &[
                    ("authorization", "Bearer new-token"),
                    ("authorization", "Bearer x"),
                ],
                Err(VerifyError::MissingToken),
            ),
            ("x-token", &[("x-token", "old-token")], Ok(())),
            (
                "x-token",
                &[("x-token", "Bearer old-token")],
                Err(VerifyError::BadSignature),
            ),
            (
                "x-token",
                &[("authorization", "Bearer old-token")],
                Err(VerifyError::MissingToken),
            ),
        ];
        for (header, hs, want) in cases {
            assert_eq!(verify(&headers(hs), header, &tokens), *want, "{header} {hs:?}");
        }
    }
}
