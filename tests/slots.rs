//! Unauthenticated requests cannot hold the request slots authenticated traffic needs (#26):
//! header credentials are checked before the body is read and before a slot is taken, and
//! body-signed requests read their body under a separate, smaller pool of slots — one pool per
//! source, entered only with a well-formed signature header.

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

/// GitHub's headers for a delivery with signature `sig` (64 hex digits).
fn gh_headers(delivery: &str, sig: &str) -> String {
    format!("x-github-event: push\r\nx-github-delivery: {delivery}\r\nx-hub-signature-256: sha256={sig}\r\n")
}

/// A correctly signed GitHub delivery to `path`.
async fn signed_github(hb: &common::Running, path: &str, delivery: &str) -> (u16, serde_json::Value) {
    use hmac::Mac as _;
    let body = format!(r#"{{"delivery":"{delivery}"}}"#);
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"gh-secret").expect("key");
    mac.update(body.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let resp = reqwest::Client::new()
        .post(hb.url(path))
        .header("x-github-event", "push")
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", format!("sha256={sig}"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_body_signed_source_has_its_own_pre_authentication_pool() {
    set_env();
    let cfg = CONFIG.replace("max_in_flight = 4", "max_in_flight = 8\nmax_unauthenticated = 2")
        + "\n[sources.gh2]\npath = \"/gh2\"\nkind = \"github\"\nverify = { secret = { env = \"HB_SLOTS_GH\" } }\n";
    let hb = start(&cfg, vec![]).await;
    // Two slow, well-formed but unverifiable uploads fill /gh's pool: a third is overloaded.
    let mut held = Vec::new();
    for i in 0..2 {
        held.push(slow_upload(hb.addr, "/gh", &gh_headers(&format!("slow{i}"), &"0".repeat(64))).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = signed_github(&hb, "/gh", "third").await;
    assert_eq!(status, 503, "the pool of /gh is full: {body}");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    // Another body-signed source is not starved by the flood on /gh.
    let (status, body) = signed_github(&hb, "/gh2", "other-source").await;
    assert_eq!(status, 200, "a signed delivery to another source: {body}");
    // A malformed or missing signature header is refused at once, without a slot or the body.
    for headers in [gh_headers("bad", "00"), "x-github-event: push\r\n".to_owned()] {
        let mut s = slow_upload(hb.addr, "/gh", &headers).await;
        let reply = tokio::time::timeout(Duration::from_secs(2), common::read_response(&mut s))
            .await
            .expect("refused before the body");
        assert_eq!(common::status_of(&reply), 401, "{headers:?}: {reply}");
    }
    drop(held);
    // The slots are released: /gh takes a signed delivery again.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = signed_github(&hb, "/gh", "after").await;
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hb.stop().await;
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
        held.push(slow_upload(hb.addr, "/gh", &gh_headers("d1", &"0".repeat(64))).await);
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
    let mut s = slow_upload(hb.addr, "/gh", &gh_headers("d1", &"0".repeat(64))).await;
    let reply = tokio::time::timeout(Duration::from_secs(3), common::read_response(&mut s))
        .await
        .expect("answered after body_timeout, not request_timeout");
    assert_eq!(common::status_of(&reply), 503, "{reply}");
    assert!(reply.contains("request_timeout"), "{reply}");
    hb.stop().await;
}
