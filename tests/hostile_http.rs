//! Hostile HTTP against a real hookbridge process: slow headers and slow bodies (slowloris) are
//! cut off by the timeouts while normal requests keep being served; huge headers, chunked bodies
//! over the cap, invalid UTF-8 and bad percent-encoding in `ce-*`, duplicate `ce-*` and
//! `Authorization` headers, deeply nested JSON and replayed requests are each answered per the
//! delivery contract — with nothing published (the file sink is read back) and the process's
//! memory (VmRSS from /proc) bounded.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::{body_of, read_response, status_of};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const TOKEN: &str = "hostile-test-token";

struct Server {
    child: Child,
    addr: std::net::SocketAddr,
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("events.jsonl");
        let cfg = dir.path().join("hookbridge.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"
[server]
listen = "127.0.0.1:0"
body_limit = "64KiB"
header_read_timeout = "1s"
request_timeout = "1s"
publish_timeout = "500ms"
max_in_flight = 64

[sources.events]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}

[sources.token]
path = "/token"
kind = "cloudevents"
verify = {{ kind = "token", tokens = [{{ env = "HB_HOSTILE_TOKEN" }}] }}

[sources.sw]
path = "/sw"
kind = "standard-webhooks"
verify = {{ secret = {{ env = "HB_HOSTILE_SW" }}, tolerance = "5m" }}

[sinks.file]
type = "file"
path = "{}"

[[routes]]
sinks = ["file"]
"#,
                out.display()
            ),
        )
        .expect("config");
        let (child, addr) =
            common::spawn_serve(&cfg, &[("HB_HOSTILE_TOKEN", TOKEN), ("HB_HOSTILE_SW", SW_SECRET)]);
        Server {
            child,
            addr,
            out,
            _dir: dir,
        }
    }

    fn rss_kib(&self) -> u64 {
        common::vm_rss_kib(self.child.id())
    }

    /// Ids in the file sink.
    fn published(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| v["id"].as_str().map(str::to_owned))
            .collect()
    }

    async fn raw(&self, request: &[u8]) -> String {
        common::raw_request(self.addr, request).await
    }

    async fn good(&self, id: &str) -> u16 {
        let req = format!(
            "POST /events HTTP/1.1\r\nhost: x\r\nce-specversion: 1.0\r\nce-id: {id}\r\nce-source: urn:h\r\nce-type: t.ok\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
        );
        status_of(&self.raw(req.as_bytes()).await)
    }
}

/// Waits until the server closes `stream` (read returns 0 or an error); returns how long it took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn slowloris_headers_and_bodies_are_cut_off_with_bounded_memory() {
    let hb = Server::start();
    assert_eq!(hb.good("warm-up").await, 200);
    let before = hb.rss_kib();

    // 200 connections that never finish their headers, one byte at a time.
    let mut slow_headers = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(hb.addr).await.expect("connect");
        s.write_all(b"POST /events HTTP/1.1\r\nhost: x\r\nce-id: ")
            .await
            .expect("write");
        slow_headers.push(s);
    }
    // 50 connections whose bodies never finish.
    let mut slow_bodies = Vec::new();
    for i in 0..50 {
        let mut s = TcpStream::connect(hb.addr).await.expect("connect");
        let head = format!(
            "POST /events HTTP/1.1\r\nhost: x\r\nce-specversion: 1.0\r\nce-id: slow-{i}\r\nce-source: urn:h\r\nce-type: t.slow\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"a\":"
        );
        s.write_all(head.as_bytes()).await.expect("write");
        slow_bodies.push(s);
    }
    // Trickle: a byte now and then keeps a naive server waiting forever.
    for s in slow_headers.iter_mut().take(20) {
        let _ = s.write_all(b"1").await;
    }
    // Normal traffic is still served meanwhile.
    assert_eq!(hb.good("during-attack").await, 200);

    for s in &mut slow_bodies {
        let resp = read_response(s).await;
        assert_eq!(status_of(&resp), 503, "{resp}");
        assert_eq!(body_of(&resp)["error"]["code"], "request_timeout");
    }
    let mut cut = 0;
    for s in &mut slow_headers {
        if closed_within(s, Duration::from_secs(5)).await.is_some() {
            cut += 1;
        }
    }
    assert_eq!(
        cut, 200,
        "every slow-header connection is closed by the header read timeout"
    );
    let after = hb.rss_kib();
    println!("slowloris: VmRSS {before} KiB -> {after} KiB over 250 hostile connections");
    assert!(
        after < before + 16 * 1024,
        "VmRSS grew from {before} to {after} KiB"
    );
    assert_eq!(
        hb.published(),
        vec!["warm-up", "during-attack"],
        "nothing hostile was published"
    );
}

#[tokio::test]
async fn oversized_and_malformed_requests_get_their_code_and_publish_nothing() {
    let hb = Server::start();
    let before = hb.rss_kib();
    let ce =
        "ce-specversion: 1.0\r\nce-source: urn:h\r\nce-type: t.bad\r\ncontent-type: application/json\r\n";

    // Huge headers: one 1 MiB header, then 500 headers — refused before the handler runs.
    let huge = format!(
        "POST /events HTTP/1.1\r\nhost: x\r\n{ce}ce-id: h1\r\nx-big: {}\r\ncontent-length: 2\r\n\r\n{{}}",
        "a".repeat(1 << 20)
    );
    let resp = hb.raw(huge.as_bytes()).await;
    assert_eq!(status_of(&resp), 431, "{resp}");
    let many: String = (0..500).map(|i| format!("x-h{i}: v\r\n")).collect();
    let resp = hb
        .raw(
            format!(
                "POST /events HTTP/1.1\r\nhost: x\r\n{ce}ce-id: h2\r\n{many}content-length: 2\r\n\r\n{{}}"
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(status_of(&resp), 431, "{resp}");

    let mut cases: Vec<(&str, Vec<u8>, u16, &str)> = Vec::new();
    // Chunked body over the 64 KiB cap: 413, never 411.
    let mut chunked =
        format!("POST /events HTTP/1.1\r\nhost: x\r\n{ce}ce-id: c1\r\ntransfer-encoding: chunked\r\n\r\n")
            .into_bytes();
    for _ in 0..20 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 8192, "7".repeat(8192)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    cases.push(("chunked over the cap", chunked, 413, "body_too_large"));
    // Invalid UTF-8 in a ce-* header.
    let mut bad_utf8 =
        format!("POST /events HTTP/1.1\r\nhost: x\r\n{ce}ce-id: u1\r\nce-subject: ").into_bytes();
    bad_utf8.extend_from_slice(&[0xff, 0xfe, 0x80]);
    bad_utf8.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\n{}");
    cases.push(("invalid UTF-8 in ce-subject", bad_utf8, 400, "malformed"));
    // Bad percent-encoding in a ce-* header.
    let pct =
        format!("POST /events HTTP/1.1\r\nhost: x\r\n{ce}ce-id: p%zz1\r\ncontent-length: 2\r\n\r\n{{}}");
    cases.push((
        "bad percent-encoding in ce-id",
        pct.into_bytes(),
        400,
        "malformed",
    ));
    // Duplicate ce-id.
    let dup = format!(
        "POST /events HTTP/1.1\r\nhost: x\r\n{ce}ce-id: d1\r\nce-id: d2\r\ncontent-length: 2\r\n\r\n{{}}"
    );
    cases.push(("duplicate ce-id", dup.into_bytes(), 400, "malformed"));
    // Duplicate Authorization on a token source (even when one of them is right).
    let auth = format!(
        "POST /token HTTP/1.1\r\nhost: x\r\n{ce}ce-id: a1\r\nauthorization: Bearer {TOKEN}\r\nauthorization: Bearer other\r\ncontent-length: 2\r\n\r\n{{}}"
    );
    cases.push(("duplicate Authorization", auth.into_bytes(), 401, "missing_token"));
    // Deeply nested JSON, structured mode.
    let nested = format!(
        "{{\"specversion\":\"1.0\",\"id\":\"n1\",\"source\":\"urn:h\",\"type\":\"t\",\"data\":{}{}}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let req = format!(
        "POST /events HTTP/1.1\r\nhost: x\r\ncontent-type: application/cloudevents+json\r\ncontent-length: {}\r\n\r\n{nested}",
        nested.len()
    );
    cases.push(("deeply nested JSON", req.into_bytes(), 400, "malformed"));

    for (what, request, status, code) in &cases {
        let resp = hb.raw(request).await;
        assert_eq!(status_of(&resp), *status, "{what}: {resp}");
        assert_eq!(body_of(&resp)["error"]["code"], *code, "{what}: {resp}");
    }
    // Repeat them all to see memory stays put.
    for _ in 0..20 {
        for (_, request, _, _) in &cases {
            hb.raw(request).await;
        }
        hb.raw(huge.as_bytes()).await;
    }
    let after = hb.rss_kib();
    println!(
        "hostile requests: VmRSS {before} KiB -> {after} KiB over {} requests",
        21 * (cases.len() + 1) + 1
    );
    assert!(
        after < before + 16 * 1024,
        "VmRSS grew from {before} to {after} KiB"
    );
    assert!(hb.published().is_empty(), "published: {:?}", hb.published());
}

#[tokio::test]
async fn replayed_requests_are_duplicates_or_refused_and_published_once() {
    let hb = Server::start();
    let client = reqwest::Client::new();
    let wh = standardwebhooks::Webhook::new(SW_SECRET).expect("secret");
    let body = br#"{"type":"user.created","data":{"id":1}}"#;
    let send = |id: &str, ts: i64, sig: String| {
        client
            .post(format!("http://{}/sw", hb.addr))
            .header("content-type", "application/json")
            .header("webhook-id", id.to_owned())
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(&body[..])
            .send()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let sig = wh.sign("msg_replayed", now, body).expect("sign");
    let first = send("msg_replayed", now, sig.clone()).await.expect("send");
    assert_eq!(first.status().as_u16(), 200);
    // The captured request, replayed byte for byte: answered duplicate, not published again.
    for _ in 0..5 {
        let again = send("msg_replayed", now, sig.clone()).await.expect("send");
        let status = again.status().as_u16();
        let v: Value = again.json().await.expect("json");
        assert_eq!((status, v["status"].as_str()), (200, Some("duplicate")), "{v}");
    }
    // A captured request replayed after the tolerance (a valid signature over an old
    // timestamp) is refused.
    let old = now - 3600;
    let sig = wh.sign("msg_old", old, body).expect("sign");
    let resp = send("msg_old", old, sig).await.expect("send");
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.expect("json");
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (401, Some("timestamp_out_of_range")),
        "{v}"
    );
    assert_eq!(hb.published(), vec!["msg_replayed"]);
}
