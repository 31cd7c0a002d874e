//! Every signature-header parser and credential check (token, basic, generic HMAC with a signed
//! timestamp, GitHub, Stripe, Standard Webhooks) on arbitrary headers and bodies.
#![no_main]

use hookbridge_fuzz::{request, source, NOW};
use libfuzzer_sys::fuzz_target;

const SOURCES: [&str; 6] = ["token", "basic", "hmac", "github", "stripe", "svix"];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (headers, body) = request(rest);
    let source = source(SOURCES[usize::from(selector) % SOURCES.len()]);
    let _ = source.verifier.verify_now(&headers, &body, NOW);
});
