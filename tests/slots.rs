//! Unauthenticated requests cannot hold the request slots authenticated traffic needs (#26):
//! header credentials are checked before the body is read and before a slot is taken, and
//! body-signed requests read their body under a separate, smaller pool of slots.

mod common;

use std::time::Duration;

use common::{start, MemorySink};
use hookbridge::sink::SinkHandle;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const CONFIG: &str = r#"
[server]
max_in_flight = 4
request_timeout = "20s"
body_timeout = "15s"

[sources.tok]
path = "/tok"
kind = "cloudevents"
verify = { kind = "token", tokens = { env = "HB_SLOTS_TOKEN" } }

[sources.gh]
path = "/gh"
kind = "github"
verify = { secret = { env = "HB_SLOTS_GH" } }

[sinks.mem]
type = "blackhole"

[[routes]]
sinks = ["mem"]
"#;

fn set_env() {
    // Every test in this binary sets identical values before reading them.
    std::env::set_var("HB_SLOTS_TOKEN", "s3cret-token");
    std::env::set_var("HB_SLOTS_GH", "gh-secret");
}

/// Opens a request that sends its headers and a first byte of a 1,000-byte body, then stalls.
async fn slow_upload(addr: std::net::SocketAddr, path: &str, auth: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n{auth}content-length: 1000\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_unauthenticated_uploads_leave_room_for_an_authenticated_webhook() {
    set_env();
    let mem = MemorySink::new("mem");
    let hb = start(CONFIG, vec![("mem", mem.clone() as SinkHandle)]).await;
    let mut held = Vec::new();
    // max_in_flight + 1 slow uploads to a body-signed source (they cannot be verified before
    // their body arrives), and as many with a wrong token.
    for _ in 0..5 {
        held.push(
            slow_upload(
                hb.addr,
                "/gh",
                "x-github-event: push\r\nx-github-delivery: d1\r\nx-hub-signature-256: sha256=00\r\n",
            )
            .await,
        );
        held.push(slow_upload(hb.addr, "/tok", "authorization: Bearer wrong\r\n").await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = reqwest::Client::new()
        .post(hb.url("/tok"))
        .header("authorization", "Bearer s3cret-token")
        .header("ce-specversion", "1.0")
        .header("ce-id", "auth-1")
        .header("ce-source", "urn:slots")
        .header("ce-type", "t.slots")
        .body("{}")
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    assert_eq!(
        status, 200,
        "an authenticated webhook while slow uploads are held: {body}"
    );
    // The wrong-token uploads were answered 401 at once, without waiting for their bodies.
    let mut refused = 0;
    for s in held.iter_mut().skip(1).step_by(2) {
        let reply = tokio::time::timeout(Duration::from_secs(2), common::read_response(s))
            .await
            .expect("a wrong token is answered without reading the body");
        assert_eq!(common::status_of(&reply), 401, "{reply}");
        refused += 1;
    }
    assert_eq!(refused, 5);
    drop(held);
    hb.stop().await;
}

#[tokio::test]
async fn a_body_slower_than_body_timeout_is_cut_off() {
    set_env();
    let cfg = CONFIG.replace("body_timeout = \"15s\"", "body_timeout = \"300ms\"");
    let hb = start(&cfg, vec![]).await;
    let mut s = slow_upload(
        hb.addr,
        "/gh",
        "x-github-event: push\r\nx-github-delivery: d1\r\nx-hub-signature-256: sha256=00\r\n",
    )
    .await;
    let reply = tokio::time::timeout(Duration::from_secs(3), common::read_response(&mut s))
        .await
        .expect("answered after body_timeout, not request_timeout");
    assert_eq!(common::status_of(&reply), 503, "{reply}");
    assert!(reply.contains("request_timeout"), "{reply}");
    hb.stop().await;
}
