//! The whole request handler (every source kind, routing, dedup, delivery to a blackhole sink)
//! on arbitrary method, path, query, headers and body. Every request to a webhook path is answered
//! with a JSON body whose code is one of `hookbridge::code::Code`, with that code's status (the
//! delivery contract); never a panic, never a 2xx for an unverified event.
#![no_main]

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use hookbridge::app::App;
use hookbridge::code::Code;
use hookbridge::ingress::handler::{handle, Listener, Role};
use http::Method;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 14] = [
    "/events", "/token", "/basic", "/hmac", "/github", "/stripe", "/svix", "/fic", "/jwths", "/jwtes",
    "/healthz", "/readyz", "/metrics", "/nope",
];
const METHODS: [Method; 4] = [Method::POST, Method::GET, Method::PUT, Method::HEAD];

fn runtime() -> &'static (tokio::runtime::Runtime, Arc<App>) {
    static RT: OnceLock<(tokio::runtime::Runtime, Arc<App>)> = OnceLock::new();
    RT.get_or_init(|| {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        let app = match App::build(hookbridge_fuzz::config().clone()) {
            Ok(a) => a,
            Err(e) => panic!("app: {e}"),
        };
        (rt, app)
    })
}

fuzz_target!(|data: &[u8]| {
    let [selector, method, rest @ ..] = data else {
        return;
    };
    let (rt, app) = runtime();
    let path = PATHS[usize::from(*selector) % PATHS.len()];
    let method = METHODS[usize::from(*method) % METHODS.len()].clone();
    // A query string rides in an `x-fuzz-query` header line, so it is fuzzed too.
    let (mut headers, body) = hookbridge_fuzz::request(rest);
    let query = headers
        .remove("x-fuzz-query")
        .and_then(|v| v.to_str().ok().map(str::to_owned));
    let source = app.source_at(path);
    let check = source.as_ref().map(|_| (headers.clone(), body.clone()));
    let stream = futures_util::stream::once(async move { Ok::<Bytes, warp::Error>(body) });
    let resp = rt.block_on(handle(
        app.clone(),
        Listener {
            role: Role::Main,
            probes: true,
            public: false,
        },
        method.clone(),
        path.to_owned(),
        query,
        headers,
        stream,
    ));
    let status = resp.status().as_u16();
    assert!(
        (200..600).contains(&status) && !(300..400).contains(&status) && !matches!(status, 410 | 411 | 429),
        "status {status} is outside the delivery contract"
    );
    let webhook = source.is_some() || path == "/nope";
    let (parts, body) = resp.into_parts();
    let body = match rt.block_on(body.collect()) {
        Ok(b) => b.to_bytes(),
        Err(e) => panic!("{path}: the body cannot be read: {e}"),
    };
    if webhook && method != Method::HEAD {
        // Every answer names its code (`status` of a success, `error.code` of a failure), and
        // the code is one the contract documents, answered with its own status. A verification
        // challenge's answer (`{"verification": …}`) is the one 200 without a code.
        let json: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => panic!("{path}: {status} with a body that is not JSON ({e})"),
        };
        let named = json["error"]["code"].as_str().or(json["status"].as_str());
        match named {
            Some(name) => {
                let code = Code::ALL.iter().find(|c| c.as_str() == name);
                assert!(
                    code.is_some_and(|c| c.surface().webhook() && c.status().as_u16() == status),
                    "{path}: {status} {name:?} is not a code of the delivery contract with that status"
                );
            }
            None => assert!(
                status == 200 && method == Method::GET && json.get("verification").is_some(),
                "{path}: {status} without a code: {json}"
            ),
        }
    }
    let resp = http::Response::from_parts(parts, ());
    // A 2xx to a webhook POST means its credentials verify (checked again, independently).
    if let (Some(source), Some((headers, body)), true) = (source, check, resp.status().is_success()) {
        if method == Method::POST {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            assert!(
                source.verifier.verify_now(&headers, &body, now).is_ok(),
                "{path} answered {status} to a request whose credentials do not verify"
            );
        }
    }
});
