//! Every source kind's decoding (CloudEvents binary, structured, batch; Fatture in Cloud; the
//! provider presets; a generic mapping) on arbitrary headers and bodies: every input is answered
//! with events or an error, never a panic. An event that decodes must also encode (structured
//! JSON, attribute list) without panicking. The first byte picks the source of the fuzz
//! configuration (one of every kind).
#![no_main]

use hookbridge::sources::fic::decode::is_structured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (headers, body) = hookbridge_fuzz::request(rest);
    let sources = &hookbridge_fuzz::config().sources;
    let source = &sources[usize::from(selector) % sources.len()];
    if source.provider.kind() == "fattureincloud" {
        let _ = is_structured(&headers, &body);
    }
    let events = source.provider.decode(&source.name, &headers, &body).ok();
    for e in events.into_iter().flatten() {
        let _ = e.to_structured_json();
        let _ = e.attributes();
    }
});
