//! End to end: hookbridge forwarding to a local receiving server on an ephemeral port. The
//! outgoing Standard Webhooks signature is checked with the independent `standardwebhooks`
//! crate, not with hookbridge's own verifier.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::start;
use http::HeaderMap;
use serde_json::{json, Value};
use warp::Filter;

/// What the receiver answers next: a status, optional Retry-After, optional delay.
#[derive(Clone)]
struct Answer {
    status: u16,
    retry_after: Option<&'static str>,
    delay: Duration,
}

fn ok() -> Answer {
    Answer {
        status: 204,
        retry_after: None,
        delay: Duration::ZERO,
    }
}

#[derive(Default)]
struct Received {
    requests: Mutex<Vec<(String, String, HeaderMap, Bytes)>>,
    script: Mutex<VecDeque<Answer>>,
}

/// Starts the receiver; answers per script (then 204).
async fn receiver() -> (std::net::SocketAddr, Arc<Received>) {
    let state = Arc::new(Received::default());
    let s = state.clone();
    let route = warp::any()
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            move |method: http::Method, path: warp::path::FullPath, headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move {
                    s.requests.lock().expect("lock").push((
                        method.to_string(),
                        path.as_str().to_owned(),
                        headers,
                        body,
                    ));
                    let answer = s.script.lock().expect("lock").pop_front().unwrap_or_else(ok);
                    tokio::time::sleep(answer.delay).await;
                    let mut resp = warp::reply::Response::new(Vec::<u8>::new().into());
                    *resp.status_mut() = http::StatusCode::from_u16(answer.status).expect("status");
                    if let Some(r) = answer.retry_after {
                        resp.headers_mut()
                            .insert("retry-after", http::HeaderValue::from_static(r));
                    }
                    resp
                }
            },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (addr, state)
}

const WHSEC: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn config(target: &str, extra: &str) -> String {
    format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}

[sinks.forward]
type = "http"
url = "{target}"
timeout = "1s"
{extra}

[[routes]]
sinks = ["forward"]

[server]
publish_timeout = "3s"
"#
    )
}

async fn post(url: &str, id: &str) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "urn:test")
        .header("ce-type", "it.fic.clients.create")
        .header("ce-subject", "company:108061")
        .header("content-type", "application/json")
        .body(r#"{"ids":[3062300]}"#)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.json().await.expect("json"), headers)
}

#[tokio::test]
async fn binary_forwarding_with_headers_auth_and_an_independently_verified_signature() {
    let (addr, rx) = receiver().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("whsec");
    std::fs::write(&secret_file, WHSEC).expect("write");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "fwd-token\n").expect("write");
    let extra = format!(
        "method = \"PUT\"\nheaders = {{ x-company = \"{{subject}}\", x-static = \"yes\" }}\nauth = {{ bearer = {{ file = \"{}\" }} }}\nsign = {{ secret = {{ file = \"{}\" }} }}",
        token_file.display(),
        secret_file.display()
    );
    let hb = start(&config(&format!("http://{addr}/in/{{hbsource}}"), &extra), vec![]).await;
    let (status, body, _) = post(&hb.url("/events"), "198:abc").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"][0]["receipts"][0]["status"], 204);

    let requests = rx.requests.lock().expect("lock").clone();
    let (method, path, headers, received) = &requests[0];
    assert_eq!((method.as_str(), path.as_str()), ("PUT", "/in/ce"));
    assert_eq!(&received[..], br#"{"ids":[3062300]}"#);
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    assert_eq!(h("ce-id"), Some("198:abc"));
    assert_eq!(h("ce-type"), Some("it.fic.clients.create"));
    assert_eq!(h("ce-source"), Some("urn:test"));
    assert_eq!(h("ce-specversion"), Some("1.0"));
    assert_eq!(h("ce-subject"), Some("company:108061"));
    assert_eq!(h("ce-hbsource"), Some("ce"));
    assert_eq!(h("content-type"), Some("application/json"));
    // The delivery key (source name, CE source, id), not the bare id another producer may reuse.
    let mut keyed = hookbridge::sink::Event::new("198:abc", "urn:test", "t");
    keyed.extensions.insert("hbsource".into(), "ce".into());
    assert_eq!(h("idempotency-key"), Some(keyed.delivery_key().as_str()));
    assert_eq!(h("x-company"), Some("company:108061"));
    assert_eq!(h("x-static"), Some("yes"));
    assert_eq!(h("authorization"), Some("Bearer fwd-token"));
    // The independent reference implementation accepts the signature.
    let wh = standardwebhooks::Webhook::new(WHSEC).expect("secret");
    wh.verify(received, headers)
        .expect("standardwebhooks accepts hookbridge's signature");
    // And rejects it for a tampered body (the check is real).
    assert!(wh.verify(b"{\"ids\":[1]}", headers).is_err());
    hb.stop().await;
}

#[tokio::test]
async fn structured_forwarding() {
    let (addr, rx) = receiver().await;
    let extra =
        "mode = \"structured\"\nauth = { basic = { username = \"hb\", password = { env = \"PATH\" } } }";
    let hb = start(&config(&format!("http://{addr}/s"), extra), vec![]).await;
    let (status, body, _) = post(&hb.url("/events"), "s-1").await;
    assert_eq!(status, 200, "{body}");
    let requests = rx.requests.lock().expect("lock").clone();
    let (_, _, headers, received) = &requests[0];
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/cloudevents+json")
    );
    assert!(headers.get("ce-id").is_none());
    assert!(headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Basic ")));
    let envelope: Value = serde_json::from_slice(received).expect("json");
    assert_eq!(envelope["id"], "s-1");
    assert_eq!(envelope["data"], json!({"ids": [3062300]}));
    hb.stop().await;
}

#[tokio::test]
async fn receiver_failures_map_to_503_or_500_and_nothing_is_delivered() {
    let (addr, rx) = receiver().await;
    let hb = start(&config(&format!("http://{addr}/f"), ""), vec![]).await;
    let url = hb.url("/events");
    let cases: Vec<(Answer, u16, &str, Option<&str>)> = vec![
        (Answer { status: 500, ..ok() }, 503, "sink_unavailable", None),
        (
            Answer {
                status: 429,
                retry_after: Some("42"),
                ..ok()
            },
            503,
            "sink_unavailable",
            Some("42"),
        ),
        (Answer { status: 408, ..ok() }, 503, "sink_unavailable", None),
        (Answer { status: 400, ..ok() }, 500, "sink_rejected", None),
        (Answer { status: 301, ..ok() }, 500, "sink_rejected", None),
        (
            Answer {
                status: 200,
                delay: Duration::from_secs(3),
                ..ok()
            },
            503,
            "sink_unavailable",
            None,
        ),
    ];
    for (i, (answer, want_status, want_code, want_retry_after)) in cases.into_iter().enumerate() {
        rx.script.lock().expect("lock").push_back(answer);
        let started = Instant::now();
        let (status, body, headers) = post(&url, &format!("f-{i}")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "case {i}: {body}"
        );
        assert!(body.get("status").is_none(), "never reported delivered: {body}");
        if let Some(r) = want_retry_after {
            assert_eq!(headers["retry-after"], r);
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "case {i} took {:?}",
            started.elapsed()
        );
    }
    // The same event after the receiver recovers: delivered.
    let (status, body, _) = post(&url, "f-0").await;
    assert_eq!(status, 200, "{body}");
    hb.stop().await;
}

/// A down endpoint is 503, and neither the answer nor the public `/readyz` carries any part of
/// its URL (providers show answer bodies in their dashboards); the private listener's `/readyz`
/// has the detail (#27).
#[tokio::test]
async fn unreachable_endpoint_is_503_and_its_url_never_reaches_the_sender() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let target = format!("http://127.0.0.1:{port}/internal/hooks?api_key=k3y-in-the-query");
    let secret_parts = ["internal", "k3y-in-the-query", "api_key", &port.to_string()];
    for probes in [false, true] {
        let extra = if probes {
            "\n[server]\nprobe_listen = \"127.0.0.1:9\""
        } else {
            ""
        };
        let cfg = config(&target, "").replace("[server]\n", "[server]\nprobe_listen = \"127.0.0.1:9\"\n");
        let cfg = if probes { cfg } else { config(&target, extra) };
        let hb = common::start_listeners(&cfg, vec![], false, probes).await;
        let resp = reqwest::Client::new()
            .post(hb.url("/events"))
            .header("ce-specversion", "1.0")
            .header("ce-id", "x-1")
            .header("ce-source", "urn:test")
            .header("ce-type", "t")
            .body("{}")
            .send()
            .await
            .expect("post");
        assert_eq!(resp.status().as_u16(), 503);
        let text = resp.text().await.expect("body");
        let body: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(body["error"]["code"], "sink_unavailable", "{body}");
        assert_eq!(body["events"][0]["errors"][0]["sink"], "forward", "{body}");
        for part in secret_parts {
            assert!(!text.contains(part), "{part:?} in the answer: {text}");
        }
        let ready_url = match hb.probe_addr {
            Some(a) => format!("http://{a}/readyz"),
            None => hb.url("/readyz"),
        };
        let ready = reqwest::get(&ready_url)
            .await
            .expect("readyz")
            .text()
            .await
            .expect("text");
        if probes {
            // The detail names the endpoint, with its query (an API key, here) redacted.
            assert!(
                ready.contains("/internal/hooks?…"),
                "the private /readyz has the detail: {ready}"
            );
            assert!(!ready.contains("k3y-in-the-query"), "{ready}");
        } else {
            for part in secret_parts {
                assert!(!ready.contains(part), "{part:?} in the public /readyz: {ready}");
            }
        }
        hb.stop().await;
    }
}

/// Event fields cannot steer the HTTP sink's target (a subject of `../../admin?x=` rewrote the
/// path, carrying hookbridge's credentials), and CR/LF in fields never breaks a request (#26).
#[tokio::test]
async fn event_fields_cannot_steer_the_target_or_break_the_request() {
    let (addr, rx) = receiver().await;
    let hb = start(
        &config(&format!("http://{addr}/in/{{subject}}?id={{id}}"), ""),
        vec![],
    )
    .await;
    let resp = reqwest::Client::new()
        .post(hb.url("/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "1&token=x#frag%0D%0A")
        .header("ce-source", "urn:test")
        .header("ce-type", "t.steer")
        .header("ce-subject", "../../admin?x=")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let (status, body, _) = post(&hb.url("/events"), "after").await;
    assert_eq!(status, 200, "{body}");
    let requests = rx.requests.lock().expect("lock").clone();
    let (_, path, headers, _) = &requests[0];
    assert_eq!(
        path, "/in/..%2F..%2Fadmin%3Fx%3D",
        "the subject stays one path segment"
    );
    assert!(headers.get("ce-id").is_some_and(|v| v.to_str().is_ok()));
    hb.stop().await;
}

/// `/readyz` says of each sink its state, since when, and its last error — kept after the sink
/// recovers, with the time it was seen (the error text only on the private listener) (#28).
#[tokio::test]
async fn readyz_reports_each_sink_s_state_since_when_and_its_last_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let cfg = config(&format!("http://127.0.0.1:{port}/in"), "")
        .replace("[server]\n", "[server]\nprobe_listen = \"127.0.0.1:9\"\n");
    let hb = common::start_listeners(&cfg, vec![], false, true).await;
    let ready_url = format!("http://{}/readyz", hb.probe_addr.expect("probe listener"));
    let read = || async {
        let v: Value = reqwest::get(&ready_url)
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json");
        v["sinks"]["forward"].clone()
    };
    let down = read().await;
    assert_eq!(down["state"], "down", "{down}");
    let since_down = humantime::parse_rfc3339(down["since"].as_str().expect("since")).expect("time");
    assert!(down["error"].as_str().is_some_and(|e| !e.is_empty()), "{down}");
    assert!(down["last_error"]["at"].as_str().is_some(), "{down}");

    // The endpoint comes up: the state changes (after the 1 s health cache), the last error stays.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("rebind");
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            drop(conn);
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let up = read().await;
    assert_eq!(up["state"], "up", "{up}");
    let since_up = humantime::parse_rfc3339(up["since"].as_str().expect("since")).expect("time");
    assert!(since_up >= since_down, "{down} then {up}");
    assert!(up.get("error").is_none(), "{up}");
    assert_eq!(
        up["last_error"], down["last_error"],
        "the last error is kept: {up}"
    );
    hb.stop().await;
}
