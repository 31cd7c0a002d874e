//! OTLP export (cargo feature `otlp`; `scripts/test.sh` runs this test with it on, after the
//! workspace's default-feature run): a real hookbridge process exports its
//! spans to a local OTLP/HTTP receiver; the request's span is a child of the sender's
//! `traceparent`, and the published event carries that span's ids, so the exported trace is
//! connected end to end (#28).

#![cfg(feature = "otlp")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use warp::Filter;

/// Every span in the OTLP/JSON export requests received so far.
fn spans(received: &Mutex<Vec<Value>>) -> Vec<Value> {
    received
        .lock()
        .expect("lock")
        .iter()
        .flat_map(|req| req["resourceSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exported_span_is_a_child_of_the_sender_s_and_the_event_carries_it() {
    // A local OTLP/HTTP receiver (JSON encoding).
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let r = received.clone();
    let route = warp::post()
        .and(warp::path!("v1" / "traces"))
        .and(warp::body::bytes())
        .map(move |body: bytes::Bytes| {
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                r.lock().expect("lock").push(v);
            }
            warp::reply::with_header("{}", "content-type", "application/json")
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let collector = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());

    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("events.jsonl");
    let config = dir.path().join("hookbridge.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.ce]\npath = \"/events\"\nkind = \"cloudevents\"\nverify = {{ kind = \"none\" }}\n\
             [sinks.file]\ntype = \"file\"\npath = \"{}\"\n[[routes]]\nsinks = [\"file\"]\n",
            out.display()
        ),
    )
    .expect("config");
    let endpoint = format!("http://{collector}");
    let (mut child, addr) = common::spawn_serve(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = "00f067aa0ba902b7";
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/events"))
        .header("traceparent", format!("00-{trace}-{parent}-01"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "otlp-1")
        .header("ce-source", "urn:otlp")
        .header("ce-type", "t.otlp")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);

    let deadline = Instant::now() + Duration::from_secs(15);
    let webhook = loop {
        if let Some(s) = spans(&received).into_iter().find(|s| s["name"] == "webhook") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no webhook span exported: {:?}",
            received.lock().expect("lock")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let hex = |v: &Value| v.as_str().unwrap_or_default().to_ascii_lowercase();
    assert_eq!(hex(&webhook["traceId"]), trace, "{webhook}");
    assert_eq!(
        hex(&webhook["parentSpanId"]),
        parent,
        "the sender's span is the parent: {webhook}"
    );

    // The event's traceparent is hookbridge's exported span: a consumer's span is its child.
    let line = std::fs::read_to_string(&out).expect("events");
    let event: Value = serde_json::from_str(line.lines().next().expect("an event")).expect("json");
    let tp = event["traceparent"].as_str().expect("traceparent");
    assert_eq!(
        tp,
        format!("00-{trace}-{}-01", hex(&webhook["spanId"])),
        "{event}"
    );
}
