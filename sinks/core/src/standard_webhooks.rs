//! Standard Webhooks signatures (<https://www.standardwebhooks.com>), the one implementation both
//! the HTTP sink (signing) and the verifier side use.
//!
//! `v1,<base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}"))>`, key = base64-decoded secret
//! without its `whsec_` prefix.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Decodes a `whsec_…` (or bare base64) secret into the HMAC key.
pub fn parse_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.trim().strip_prefix("whsec_").unwrap_or(secret.trim());
    let key = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("not a base64 Standard Webhooks secret: {e}"))?;
    if key.is_empty() {
        return Err("empty Standard Webhooks secret".to_owned());
    }
    Ok(key)
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value for one key: `v1,<base64>`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(key, id, timestamp, body).finalize().into_bytes();
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag))
}

/// Most signatures one header may carry (senders list one per active secret, during a rotation
/// two or three). A header with more is refused before any HMAC is computed: each candidate
/// would otherwise cost an HMAC over the whole body (tens of thousands of `v1,` entries held a
/// core for a minute).
pub const MAX_SIGNATURES: usize = 10;

/// Whether any `v1` entry of a space-separated `webhook-signature` value matches any key. Each
/// key's MAC is computed once and compared, in constant time, with the candidates of the right
/// length; a header with more than [`MAX_SIGNATURES`] entries is refused.
pub fn verify(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let entries = header.split(' ').filter(|e| !e.is_empty());
    if entries.clone().count() > MAX_SIGNATURES {
        return false;
    }
    let candidates: Vec<Vec<u8>> = entries
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| base64::engine::general_purpose::STANDARD.decode(sig).ok())
        .filter(|sig| sig.len() == 32)
        .collect();
    if candidates.is_empty() {
        return false;
    }
    let mut ok = false;
    for key in keys {
        let tag = mac(key, id, timestamp, body).finalize().into_bytes();
        for candidate in &candidates {
            ok |= constant_time_eq(&tag, candidate);
        }
    }
    ok
}

/// Compares two equal-length byte strings without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // providers.md §2.2 test vector.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    #[test]
    fn a_flood_of_candidates_is_refused_without_computing_them() {
        let key = parse_secret(SECRET).expect("secret");
        let mut header = "v1,AAAA ".repeat(MAX_SIGNATURES);
        header.push_str(SIG);
        assert!(
            !verify(std::slice::from_ref(&key), ID, TS, BODY, &header),
            "too many entries"
        );
        let few = format!("v1,AAAA v1, v2,xyz {SIG}");
        assert!(verify(std::slice::from_ref(&key), ID, TS, BODY, &few));
        // 60,000 entries over a 900 KB body: answered at once (one HMAC would take ~1 ms).
        let flood = "v1, ".repeat(60_000);
        let body = vec![b'x'; 900_000];
        let started = std::time::Instant::now();
        assert!(!verify(&[key.clone(), key], ID, TS, &body, &flood));
        assert!(
            started.elapsed() < std::time::Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn test_vector() {
        let key = parse_secret(SECRET).expect("secret");
        assert_eq!(sign(&key, ID, TS, BODY), SIG);
        assert!(verify(std::slice::from_ref(&key), ID, TS, BODY, SIG));
        assert!(verify(
            &[vec![1, 2, 3], key.clone()],
            ID,
            TS,
            BODY,
            &format!("v2,xx {SIG}")
        ));
        assert!(!verify(std::slice::from_ref(&key), ID, TS + 1, BODY, SIG));
        assert!(!verify(&[key], ID, TS, b"{}", SIG));
        assert!(parse_secret("whsec_!!").is_err());
    }
}
