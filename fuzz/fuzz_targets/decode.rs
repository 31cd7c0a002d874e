//! CloudEvents (binary, structured, batch) and provider body decoding on arbitrary headers and
//! bodies: every input is answered with events or an error, never a panic. An event that decodes
//! must also encode (structured JSON, attribute list) without panicking.
#![no_main]

use hookbridge::normalize::{cloudevents, fic, mapping};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (headers, body) = hookbridge_fuzz::request(rest);
    let events = match selector % 6 {
        0 => cloudevents::decode(&headers, &body).ok(),
        1 => {
            let _ = fic::is_structured(&headers, &body);
            fic::decode(&headers, &body).ok().map(|e| vec![e])
        }
        2 => mapping::github("gh", &headers, &body).ok().map(|e| vec![e]),
        3 => mapping::stripe("st", &headers, &body).ok().map(|e| vec![e]),
        4 => mapping::standard_webhooks("sw", &headers, &body)
            .ok()
            .map(|e| vec![e]),
        _ => {
            let source = hookbridge_fuzz::source("hmac");
            let Some(m) = &source.mapping else { return };
            mapping::decode(m, "hmac", &headers, &body).ok().map(|e| vec![e])
        }
    };
    for e in events.into_iter().flatten() {
        let _ = e.to_structured_json();
        let _ = e.attributes();
    }
});
