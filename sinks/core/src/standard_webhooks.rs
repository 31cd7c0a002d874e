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

/// Whether any `v1` entry of a space-separated `webhook-signature` value matches any key, in
/// constant time per comparison.
pub fn verify(keys: &[Vec<u8>], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let candidates: Vec<Vec<u8>> = header
        .split(' ')
        .filter_map(|entry| entry.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, sig)| base64::engine::general_purpose::STANDARD.decode(sig).ok())
        .collect();
    let mut ok = false;
    for key in keys {
        for candidate in &candidates {
            // verify_slice compares in constant time.
            ok |= mac(key, id, timestamp, body).verify_slice(candidate).is_ok();
        }
    }
    ok
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
