//! JWT handling: the FIC ES256 verifier (notification and challenge tokens), generic JWT sources
//! with HS256 and ES256 keys and claim bindings, `kid` extraction and the FIC challenge value.
//! The input is the token itself, sent as `Authorization: Bearer <input>`.
#![no_main]

use hookbridge::sources::fic::verify::{challenge, FicVerifier, Purpose};
use hookbridge::sources::fic::Fic;
use hookbridge::verify::jwt;
use hookbridge_fuzz::{source, NOW};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(token) = std::str::from_utf8(rest) else {
        return;
    };
    let _ = jwt::kid_of(token);
    let mut headers = HeaderMap::new();
    let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) else {
        return;
    };
    headers.insert(http::header::AUTHORIZATION, value);
    match selector % 4 {
        0 | 1 => {
            let config = source("fic");
            let Some(fic) = config.provider_as::<Fic>() else {
                return;
            };
            let fic = &fic.verifier;
            let purpose = if selector % 4 == 0 {
                Purpose::Notification
            } else {
                Purpose::Challenge
            };
            if let Ok(claims) = fic.verify(&headers, NOW, purpose) {
                let _ = FicVerifier::check_event(&claims, "id", Some("company:1"));
            }
            let _ = challenge(&headers, Some(token));
        }
        2 => {
            let _ = source("jwths").verifier.verify_now(&headers, b"", NOW);
        }
        _ => {
            let _ = source("jwtes").verifier.verify_now(&headers, b"", NOW);
        }
    }
});
