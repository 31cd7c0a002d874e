//! End to end: CloudEvents webhooks into hookbridge on 127.0.0.1:0, read back from the file sink
//! (or a test sink), with every row of the delivery contract this build can reach.

mod common;

use std::time::Duration;

use common::{body_of, raw_request, start, status_of, FailingSink, MemorySink};
use hookbridge::sink::{SinkError, SinkHandle};
use serde_json::{json, Value};

fn file_config(path: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}

[sources.secured]
path = "/secured"
kind = "cloudevents"
verify = {{ kind = "token", tokens = {{ file = "{token}" }} }}

[sinks.file]
type = "file"
path = "{path}"

[[routes]]
sinks = ["file"]
{extra}
"#,
        path = path.display(),
        token = path.with_extension("token").display(),
    )
}

struct FileSetup {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl FileSetup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        std::fs::write(path.with_extension("token"), "s3cret\n").expect("token file");
        FileSetup { _dir: dir, path }
    }
    fn lines(&self) -> Vec<Value> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => t
                .lines()
                .map(|l| serde_json::from_str(l).expect("json line"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
    fn raw(&self) -> String {
        std::fs::read_to_string(&self.path).unwrap_or_default()
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn binary(url: &str, id: &str, ty: &str) -> reqwest::RequestBuilder {
    binary_from(url, "urn:test", id, ty)
}

fn binary_from(url: &str, source: &str, id: &str, ty: &str) -> reqwest::RequestBuilder {
    client()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", source)
        .header("ce-type", ty)
}

async fn send(rb: reqwest::RequestBuilder) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body: Value = resp.json().await.expect("json body");
    (status, body, headers)
}

#[tokio::test]
async fn binary_event_lands_with_attributes_extensions_and_exact_data() {
    let f = FileSetup::new();
    let hb = start(&file_config(&f.path, ""), vec![]).await;
    let data = "{ \"ids\" : [3062300],  \"note\": \"caf\u{e9}\\u00e9\" }";
    let (status, body, _) = send(
        binary(&hb.url("/events"), "198:f059b211", "com.example.created")
            .header("ce-subject", "company%3A108061")
            .header("ce-time", "2023-04-04T12:54:21+02:00")
            .header("ce-traceid", "abc")
            .header("content-type", "application/json")
            .body(data),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "delivered");
    assert_eq!(body["events"][0]["id"], "198:f059b211");
    assert_eq!(body["events"][0]["receipts"][0]["sink"], "file");
    assert_eq!(body["events"][0]["receipts"][0]["offset"], 0);

    let lines = f.lines();
    assert_eq!(lines.len(), 1);
    let e = &lines[0];
    assert_eq!(e["specversion"], "1.0");
    assert_eq!(e["id"], "198:f059b211");
    assert_eq!(e["source"], "urn:test");
    assert_eq!(e["type"], "com.example.created");
    assert_eq!(e["subject"], "company:108061");
    assert_eq!(e["time"], "2023-04-04T12:54:21+02:00");
    assert_eq!(e["datacontenttype"], "application/json");
    assert_eq!(e["traceid"], "abc");
    assert_eq!(e["hbsource"], "ce");
    assert_eq!(e["hbverifier"], "none");
    let received = e["hbreceived"].as_str().expect("hbreceived");
    assert!(time::OffsetDateTime::parse(received, &time::format_description::well_known::Rfc3339).is_ok());
    // Byte-identical data: the raw line embeds the body text unchanged.
    assert!(f.raw().contains(&format!("\"data\":{data}")), "{}", f.raw());
    hb.stop().await;
}

#[tokio::test]
async fn multi_line_json_data_stays_one_line_in_the_file() {
    let f = FileSetup::new();
    let hb = start(&file_config(&f.path, ""), vec![]).await;
    let data = "{\n  \"a\": 1,\r\n  \"b\": \"x\"\n}";
    let (status, body, _) = send(
        binary(&hb.url("/events"), "ml-1", "t")
            .header("content-type", "application/json")
            .body(data),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let raw = f.raw();
    assert_eq!(raw.lines().count(), 1, "{raw}");
    // Only JSON whitespace changed: same length, same value.
    assert!(raw.contains("{   \"a\": 1,    \"b\": \"x\" }"), "{raw}");
    assert_eq!(f.lines()[0]["data"], json!({"a": 1, "b": "x"}));
    hb.stop().await;
}

#[tokio::test]
async fn structured_and_batched_events_land() {
    let f = FileSetup::new();
    let hb = start(&file_config(&f.path, ""), vec![]).await;
    let structured = r#"{"specversion":"1.0","id":"s-1","source":"urn:s","type":"com.example.s","datacontenttype":"application/json","count":3,"data":{"a" :  [1, 2.50]}}"#;
    let (status, body, _) = send(
        client()
            .post(hb.url("/events"))
            .header("content-type", "application/cloudevents+json; charset=utf-8")
            .body(structured),
    )
    .await;
    assert_eq!((status, &body["status"]), (200, &json!("delivered")), "{body}");

    let batch = r#"[{"specversion":"1.0","id":"b-1","source":"urn:s","type":"com.example.b","data":{"n":1}},
                   {"specversion":"1.0","id":"b-2","source":"urn:s","type":"com.example.b","datacontenttype":"text/plain","data":"plain text"}]"#;
    let (status, body, _) = send(
        client()
            .post(hb.url("/events"))
            .header("content-type", "application/cloudevents-batch+json")
            .body(batch),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(body["events"][1]["status"], "delivered");

    let lines = f.lines();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["id"], "s-1");
    assert_eq!(lines[0]["count"], 3);
    assert_eq!(lines[0]["hbsource"], "ce");
    assert!(f.raw().contains(r#""data":{"a" :  [1, 2.50]}"#), "{}", f.raw());
    let ids: Vec<&str> = lines[1..].iter().filter_map(|l| l["id"].as_str()).collect();
    assert!(ids.contains(&"b-1") && ids.contains(&"b-2"), "{ids:?}");
    let text = lines.iter().find(|l| l["id"] == "b-2").expect("b-2");
    assert_eq!(text["data"], "plain text");
    hb.stop().await;
}

#[tokio::test]
async fn error_rows_answer_their_code_and_write_nothing() {
    let f = FileSetup::new();
    let hb = start(&file_config(&f.path, "[server]\nbody_limit = \"64B\""), vec![]).await;
    let url = hb.url("/events");
    let cases: Vec<(reqwest::RequestBuilder, u16, &str, Option<&str>)> = vec![
        (
            client()
                .post(&url)
                .header("content-type", "application/cloudevents+json")
                .body("{not json"),
            400,
            "malformed",
            None,
        ),
        (
            client()
                .post(&url)
                .header("ce-specversion", "1.0")
                .header("ce-id", "x")
                .header("ce-source", "urn:x"),
            400,
            "missing_attribute",
            Some("type"),
        ),
        (
            binary(&url, "x", "t").header("ce-subject", "%FF"),
            400,
            "malformed",
            Some("subject"),
        ),
        (
            binary(&url, "x", "t").body("x".repeat(65)),
            413,
            "body_too_large",
            None,
        ),
        (binary(&hb.url("/secured"), "x", "t"), 401, "missing_token", None),
        (
            binary(&hb.url("/secured"), "x", "t").header("authorization", "Bearer wrong"),
            401,
            "bad_signature",
            None,
        ),
        (binary(&hb.url("/nope"), "x", "t"), 404, "not_found", None),
        (client().get(&url), 405, "method_not_allowed", None),
        (client().put(&url), 405, "method_not_allowed", None),
    ];
    for (rb, want_status, want_code, want_field) in cases {
        let (status, body, _) = send(rb).await;
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["error"]["code"], want_code, "{body}");
        if let Some(field) = want_field {
            assert_eq!(body["error"]["field"], field, "{body}");
        }
    }
    // Exactly at the cap is accepted; the token source accepts its token.
    let (status, body, _) = send(binary(&url, "at-cap", "t").body("x".repeat(64))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) =
        send(binary(&hb.url("/secured"), "tok", "t").header("authorization", "Bearer s3cret")).await;
    assert_eq!(status, 200, "{body}");
    let lines = f.lines();
    let ids: Vec<&str> = lines.iter().filter_map(|l| l["id"].as_str()).collect();
    assert_eq!(ids, ["at-cap", "tok"]);
    assert_eq!(lines[1]["hbverifier"], "token");
    hb.stop().await;
}

#[tokio::test]
async fn chunked_body_over_the_cap_is_413_and_never_411() {
    let f = FileSetup::new();
    let hb = start(&file_config(&f.path, "[server]\nbody_limit = \"100B\""), vec![]).await;
    let head = "POST /events HTTP/1.1\r\nhost: x\r\nce-specversion: 1.0\r\nce-id: c1\r\nce-source: urn:x\r\nce-type: t\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";
    let mut over = head.as_bytes().to_vec();
    for _ in 0..3 {
        over.extend_from_slice(b"22\r\n");
        over.extend_from_slice(&[b'a'; 0x22]);
        over.extend_from_slice(b"\r\n");
    }
    over.extend_from_slice(b"0\r\n\r\n");
    let resp = raw_request(hb.addr, &over).await;
    assert_eq!(status_of(&resp), 413, "{resp}");
    assert_eq!(body_of(&resp)["error"]["code"], "body_too_large");

    // The same framing under the cap is accepted (no Content-Length needed: never 411).
    let mut under = head.as_bytes().to_vec();
    under.extend_from_slice(b"22\r\n");
    under.extend_from_slice(&[b'a'; 0x22]);
    under.extend_from_slice(b"\r\n0\r\n\r\n");
    let resp = raw_request(hb.addr, &under).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    let lines = f.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["data"], "a".repeat(0x22));
    hb.stop().await;
}

#[tokio::test]
async fn duplicate_is_answered_and_written_once() {
    let f = FileSetup::new();
    let hb = start(&file_config(&f.path, ""), vec![]).await;
    let url = hb.url("/events");
    let (s1, b1, _) = send(binary(&url, "dup-1", "t").body("{}")).await;
    let (s2, b2, _) = send(binary(&url, "dup-1", "t").body("{}")).await;
    assert_eq!((s1, &b1["status"]), (200, &json!("delivered")));
    assert_eq!((s2, &b2["status"]), (200, &json!("duplicate")), "{b2}");
    // Same id from another CloudEvents source is a different event.
    let (s3, b3, _) = send(binary_from(&url, "urn:other", "dup-1", "t").body("{}")).await;
    assert_eq!((s3, &b3["status"]), (200, &json!("delivered")), "{b3}");

    // Concurrent duplicates: exactly one is published.
    let reqs = (0..8).map(|_| send(binary(&url, "dup-2", "t").body("{}")));
    let results = futures_util::future::join_all(reqs).await;
    let delivered = results
        .iter()
        .filter(|(_, b, _)| b["status"] == "delivered")
        .count();
    let duplicate = results
        .iter()
        .filter(|(_, b, _)| b["status"] == "duplicate")
        .count();
    assert_eq!((delivered, duplicate), (1, 7));
    let ids: Vec<String> = f
        .lines()
        .iter()
        .filter_map(|l| l["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.iter().filter(|i| *i == "dup-1").count(), 2);
    assert_eq!(ids.iter().filter(|i| *i == "dup-2").count(), 1);
    hb.stop().await;
}

const TWO_SINKS: &str = r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = { kind = "none" }

[sinks.a]
type = "blackhole"
[sinks.b]
type = "blackhole"

[[routes]]
sinks = ["a", "b"]
"#;

#[tokio::test]
async fn retryable_failure_is_503_and_a_retry_publishes() {
    let flaky = FailingSink::new("a", 1, || {
        SinkError::unavailable("broker down").with_retry_after(Duration::from_secs(7))
    });
    let good = MemorySink::new("b");
    let hb = start(
        TWO_SINKS,
        vec![
            ("a", flaky.clone() as SinkHandle),
            ("b", good.clone() as SinkHandle),
        ],
    )
    .await;
    let url = hb.url("/events");
    let (status, body, headers) = send(binary(&url, "r-1", "t").body("{}")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "sink_unavailable");
    assert_eq!(headers["retry-after"], "7");
    assert!(flaky.inner.ids().is_empty());
    // The same event again: published (the failed attempt did not mark it seen).
    let (status, body, _) = send(binary(&url, "r-1", "t").body("{}")).await;
    assert_eq!((status, &body["status"]), (200, &json!("delivered")), "{body}");
    assert_eq!(flaky.inner.ids(), ["r-1"]);
    hb.stop().await;
}

#[tokio::test]
async fn permanent_failure_is_500_and_mixed_failures_are_503() {
    let rejecting = FailingSink::new("a", 1, || SinkError::rejected("too large for the broker"));
    let hb = start(TWO_SINKS, vec![("a", rejecting as SinkHandle)]).await;
    let (status, body, _) = send(binary(&hb.url("/events"), "p-1", "t").body("{}")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &json!("sink_rejected")),
        "{body}"
    );
    hb.stop().await;

    let rejecting = FailingSink::new("a", 1, || SinkError::rejected("no"));
    let down = FailingSink::new("b", 1, || SinkError::unavailable("down"));
    let hb = start(
        TWO_SINKS,
        vec![("a", rejecting as SinkHandle), ("b", down as SinkHandle)],
    )
    .await;
    let (status, body, headers) = send(binary(&hb.url("/events"), "p-2", "t").body("{}")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("sink_unavailable")),
        "{body}"
    );
    assert_eq!(headers["retry-after"], "5", "default retry_after");
    hb.stop().await;
}

#[tokio::test]
async fn slow_sink_hits_the_publish_deadline_with_503() {
    let slow = FailingSink::slow("a", Duration::from_secs(30));
    let cfg = format!("{TWO_SINKS}\n[server]\npublish_timeout = \"300ms\"\nrequest_timeout = \"5s\"\n");
    let hb = start(&cfg, vec![("a", slow as SinkHandle)]).await;
    let started = std::time::Instant::now();
    let (status, body, _) = send(binary(&hb.url("/events"), "slow-1", "t").body("{}")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("sink_unavailable")),
        "{body}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(body["events"][0]["errors"][0]["kind"], "timeout", "{body}");
    hb.stop().await;
}

#[tokio::test]
async fn overload_is_503_overloaded() {
    let slow = FailingSink::slow("a", Duration::from_millis(800));
    let cfg = format!("{TWO_SINKS}\n[server]\nmax_in_flight = 1\n");
    let hb = start(&cfg, vec![("a", slow as SinkHandle)]).await;
    let url = hb.url("/events");
    let first = tokio::spawn(send(binary(&url, "o-1", "t").body("{}")));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body, headers) = send(binary(&url, "o-2", "t").body("{}")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("overloaded")),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
    let (status, _, _) = first.await.expect("join");
    assert_eq!(status, 200);
    hb.stop().await;
}

const ROUTED: &str = r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = { kind = "none" }
[sources.other]
path = "/other"
kind = "cloudevents"
verify = { kind = "none" }

[sinks.created]
type = "blackhole"
[sinks.all_fic]
type = "blackhole"
[sinks.other_only]
type = "blackhole"
[sinks.fallback]
type = "blackhole"

[[routes]]
types = ["it.fic.*.create"]
sinks = ["created", "all_fic"]
[[routes]]
types = ["it.fic.**"]
sinks = ["all_fic"]
[[routes]]
source = "other"
types = ["x.*"]
sinks = ["other_only"]
"#;

#[tokio::test]
async fn routing_wildcards_union_and_unmatched_policies() {
    let sinks: Vec<_> = ["created", "all_fic", "other_only", "fallback"]
        .map(MemorySink::new)
        .into();
    let overrides = || {
        sinks
            .iter()
            .map(|s| (s.name.as_str(), s.clone() as SinkHandle))
            .collect::<Vec<_>>()
    };
    let hb = start(ROUTED, overrides()).await;
    let post = |path: &str, id: &str, ty: &str| send(binary(&hb.url(path), id, ty).body("{}"));
    assert_eq!(post("/events", "1", "it.fic.clients.create").await.0, 200);
    assert_eq!(post("/events", "2", "it.fic.clients.delete").await.0, 200);
    assert_eq!(post("/events", "3", "it.fic.a.b.create").await.0, 200);
    assert_eq!(post("/other", "4", "x.y").await.0, 200);
    let (status, body, _) = post("/events", "5", "x.y").await;
    assert_eq!((status, &body["status"]), (202, &json!("dropped")), "{body}");
    let (status, body, _) = post("/events", "6", "it.fic").await;
    assert_eq!((status, &body["status"]), (202, &json!("dropped")), "{body}");
    assert_eq!(
        sinks[0].ids(),
        ["1"],
        "created: only one segment between fic and create"
    );
    // Event 1 matched both rules and still reached all_fic once: the union has no repeats.
    assert_eq!(sinks[1].ids(), ["1", "2", "3"]);
    assert_eq!(sinks[2].ids(), ["4"]);
    hb.stop().await;

    let routed = format!("{ROUTED}\n[unmatched]\npolicy = \"route\"\nsinks = [\"fallback\"]\n");
    let hb = start(&routed, overrides()).await;
    let (status, body, _) = send(binary(&hb.url("/events"), "7", "x.y").body("{}")).await;
    assert_eq!((status, &body["status"]), (200, &json!("delivered")), "{body}");
    assert_eq!(sinks[3].ids(), ["7"]);
    hb.stop().await;
}

#[tokio::test]
async fn healthz_and_readyz_report_sink_state() {
    let down = FailingSink::new("a", 1000, || SinkError::unavailable("broker down"));
    let hb = start(TWO_SINKS, vec![("a", down as SinkHandle)]).await;
    let (status, body, _) = send(client().get(hb.url("/healthz"))).await;
    assert_eq!((status, &body["status"]), (200, &json!("ok")));
    let (status, body, _) = send(client().get(hb.url("/readyz"))).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["sinks"]["a"]["state"], "down");
    // On the webhook listener, states only: sink errors carry URLs and broker text (#27).
    assert!(body["sinks"]["a"].get("error").is_none(), "{body}");
    assert_eq!(body["sinks"]["b"]["state"], "up");
    hb.stop().await;

    // The probe listener has the detail.
    let down = FailingSink::new("a", 1000, || SinkError::unavailable("broker down"));
    let cfg = format!("{TWO_SINKS}\n[server]\nprobe_listen = \"127.0.0.1:9\"\n");
    let hb = common::start_listeners(&cfg, vec![("a", down as SinkHandle)], false, true).await;
    let probe = hb.probe_addr.expect("probe");
    let (status, body, _) = send(client().get(format!("http://{probe}/readyz"))).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["sinks"]["a"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("broker down")),
        "{body}"
    );
    hb.stop().await;

    let hb = start(TWO_SINKS, vec![]).await;
    let (status, body, _) = send(client().get(hb.url("/readyz"))).await;
    assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
    hb.stop().await;
}

#[tokio::test]
async fn admin_listener_takes_over_health_endpoints() {
    let cfg = format!("{TWO_SINKS}\n[server]\nadmin_listen = \"127.0.0.1:0\"\n");
    let hb = common::start_full(&cfg, vec![], true).await;
    let admin = hb.admin_addr.expect("admin");
    let (status, body, _) = send(client().get(format!("http://{admin}/readyz"))).await;
    assert_eq!((status, &body["status"]), (200, &json!("ready")), "{body}");
    let (status, _, _) = send(client().get(format!("http://{admin}/healthz"))).await;
    assert_eq!(status, 200);
    let (status, body, _) = send(client().get(hb.url("/readyz"))).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    // Webhooks are not served on the admin listener.
    let (status, _, _) = send(binary(&format!("http://{admin}/events"), "adm-1", "t").body("{}")).await;
    assert_eq!(status, 404);
    let (status, _, _) = send(binary(&hb.url("/events"), "adm-1", "t").body("{}")).await;
    assert_eq!(status, 200);
    hb.stop().await;
}

#[tokio::test]
async fn slow_request_body_gets_503_request_timeout() {
    let cfg = format!("{TWO_SINKS}\n[server]\nrequest_timeout = \"500ms\"\npublish_timeout = \"200ms\"\n");
    let hb = start(&cfg, vec![]).await;
    let mut stream = tokio::net::TcpStream::connect(hb.addr).await.expect("connect");
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(b"POST /events HTTP/1.1\r\nhost: x\r\nce-specversion: 1.0\r\nce-id: t1\r\nce-source: s\r\nce-type: t\r\ncontent-length: 10\r\n\r\n12345")
        .await
        .expect("write");
    let resp = common::read_response(&mut stream).await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert_eq!(body_of(&resp)["error"]["code"], "request_timeout");
    hb.stop().await;
}
