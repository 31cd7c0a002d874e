//! End to end against NATS with JetStream on 127.0.0.1:4222 (and a private nats-server for the
//! outage): events read back with async-nats.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::start;
use futures_util::StreamExt;
use serde_json::{json, Value};

fn nats_url() -> String {
    std::env::var("HOOKBRIDGE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A name unique to this test run and call.
fn unique(prefix: &str) -> String {
    common::unique_with(prefix, 'x')
}

/// A stream capturing `hbtest.<id>.>`, deleted on drop of the returned guard's owner.
async fn stream(js: &jetstream::Context) -> (String, String) {
    let id = unique("t");
    let name = format!("HBTEST_{id}");
    js.create_stream(jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("hbtest.{id}.>")],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .expect("create stream");
    (name, format!("hbtest.{id}"))
}

fn config(url: &str, subject: &str, extra: &str) -> String {
    format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}

[sinks.nats]
type = "nats"
url = "{url}"
subject = "{subject}"
{extra}

[[routes]]
sinks = ["nats"]

[dedup]
enabled = false
"#
    )
}

async fn post(url: &str, id: &str, ty: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "urn:test")
        .header("ce-type", ty)
        .header("ce-subject", "company:108061")
        .header("content-type", "application/json")
        .body(r#"{"ids":[3062300]}"#);
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn jetstream_binary_event_is_stored_with_headers_and_deduplicated_by_id() {
    let client = async_nats::connect(nats_url()).await.expect("connect to NATS");
    let js = jetstream::new(client);
    let (name, prefix) = stream(&js).await;
    let cfg = config(
        &nats_url(),
        &format!("{prefix}.{{type}}"),
        &format!(
            "jetstream = true\nexpected_stream = \"{name}\"\nheaders = {{ x-hb-source = \"{{hbsource}}\" }}"
        ),
    );
    let hb = start(&cfg, vec![]).await;
    let (status, body) = post(
        &hb.url("/events"),
        "198:abc",
        "it.fic.clients.create",
        &[("ce-time", "2023-04-04T12:54:21+02:00")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let receipt = &body["events"][0]["receipts"][0];
    assert_eq!(receipt["stream"], name.as_str());
    assert_eq!(receipt["sequence"], 1);
    assert_eq!(receipt["subject"], format!("{prefix}.it.fic.clients.create"));

    let stream = js.get_stream(&name).await.expect("stream");
    let msg = stream.get_raw_message(1).await.expect("message 1");
    assert_eq!(msg.subject.as_str(), format!("{prefix}.it.fic.clients.create"));
    assert_eq!(&msg.payload[..], br#"{"ids":[3062300]}"#);
    let h = |k: &str| msg.headers.get(k).map(|v| v.as_str().to_owned());
    assert_eq!(h("ce-id").as_deref(), Some("198:abc"));
    assert_eq!(h("ce-type").as_deref(), Some("it.fic.clients.create"));
    assert_eq!(h("ce-source").as_deref(), Some("urn:test"));
    assert_eq!(h("ce-specversion").as_deref(), Some("1.0"));
    assert_eq!(h("ce-subject").as_deref(), Some("company:108061"));
    assert_eq!(h("ce-time").as_deref(), Some("2023-04-04T12:54:21+02:00"));
    assert_eq!(h("ce-hbsource").as_deref(), Some("ce"));
    assert_eq!(h("ce-hbverifier").as_deref(), Some("none"));
    assert!(h("ce-hbreceived").is_some());
    assert_eq!(h("content-type").as_deref(), Some("application/json"));
    // The delivery key (source name, CE source, id), not the bare id.
    let mut keyed = hookbridge::sink::Event::new("198:abc", "urn:test", "t");
    keyed.extensions.insert("hbsource".into(), "ce".into());
    assert_eq!(h("Nats-Msg-Id"), Some(keyed.delivery_key()));
    assert_eq!(h("x-hb-source").as_deref(), Some("ce"));

    // hookbridge's own dedup is off here: the re-send reaches JetStream, whose duplicate window
    // drops it. Stored once.
    let (status, body) = post(&hb.url("/events"), "198:abc", "it.fic.clients.create", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"][0]["receipts"][0]["duplicate"], true);
    let mut stream = js.get_stream(&name).await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 1);
    hb.stop().await;
    js.delete_stream(&name).await.expect("delete stream");
}

/// Many events in flight at once: the sink hands each scheduler turn's publishes to async-nats
/// together (sinks/nats/src/batch.rs). Every one must still get its own ack, and be stored once.
#[tokio::test]
async fn concurrent_events_are_each_acked_and_stored() {
    let client = async_nats::connect(nats_url()).await.expect("connect");
    let js = jetstream::new(client);
    let (name, prefix) = stream(&js).await;
    let cfg = config(&nats_url(), &format!("{prefix}.{{type}}"), "jetstream = true");
    let hb = start(&cfg, vec![]).await;
    let url = hb.url("/events");
    const N: usize = 300;
    let posts = (0..N).map(|i| {
        let url = url.clone();
        async move { post(&url, &format!("burst-{i}"), "com.example.burst", &[]).await }
    });
    let answers = futures_util::future::join_all(posts).await;
    let mut sequences = std::collections::BTreeSet::new();
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        let receipt = &body["events"][0]["receipts"][0];
        assert_eq!(receipt["duplicate"], false, "{body}");
        sequences.insert(receipt["sequence"].as_u64().expect("sequence"));
    }
    assert_eq!(sequences.len(), N, "each event its own stream sequence");

    let mut stream = js.get_stream(&name).await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, N as u64);
    let mut ids = std::collections::BTreeSet::new();
    for seq in 1..=N as u64 {
        let msg = stream.get_raw_message(seq).await.expect("message");
        ids.insert(msg.headers.get("ce-id").expect("ce-id").as_str().to_owned());
    }
    let want: std::collections::BTreeSet<String> = (0..N).map(|i| format!("burst-{i}")).collect();
    assert_eq!(ids, want);
    hb.stop().await;
    js.delete_stream(&name).await.expect("delete");
}

#[tokio::test]
async fn jetstream_structured_mode_stores_the_envelope() {
    let client = async_nats::connect(nats_url()).await.expect("connect");
    let js = jetstream::new(client);
    let (name, prefix) = stream(&js).await;
    let cfg = config(
        &nats_url(),
        &format!("{prefix}.all"),
        "jetstream = true\nmode = \"structured\"",
    );
    let hb = start(&cfg, vec![]).await;
    let (status, body) = post(&hb.url("/events"), "s-1", "com.example.t", &[]).await;
    assert_eq!(status, 200, "{body}");
    let msg = js
        .get_stream(&name)
        .await
        .expect("stream")
        .get_raw_message(1)
        .await
        .expect("msg");
    assert_eq!(
        msg.headers.get("content-type").map(|v| v.as_str()),
        Some("application/cloudevents+json")
    );
    let envelope: Value = serde_json::from_slice(&msg.payload).expect("json");
    assert_eq!(envelope["id"], "s-1");
    assert_eq!(envelope["type"], "com.example.t");
    assert_eq!(envelope["data"], json!({"ids": [3062300]}));
    assert_eq!(envelope["hbsource"], "ce");
    hb.stop().await;
    js.delete_stream(&name).await.expect("delete");
}

#[tokio::test]
async fn core_mode_reaches_a_subscriber_and_says_at_most_once() {
    let client = async_nats::connect(nats_url()).await.expect("connect");
    let subject = format!("hbcore.{}", unique("c"));
    let mut sub = client.subscribe(format!("{subject}.>")).await.expect("subscribe");
    client.flush().await.expect("flush");
    let cfg = config(&nats_url(), &format!("{subject}.{{subject}}"), "");
    let hb = start(&cfg, vec![]).await;
    let (status, body) = post(&hb.url("/events"), "c-1", "t", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"][0]["receipts"][0]["delivery"], "at_most_once");
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message in time")
        .expect("message");
    assert_eq!(msg.subject.as_str(), format!("{subject}.company:108061"));
    assert_eq!(&msg.payload[..], br#"{"ids":[3062300]}"#);
    let headers = msg.headers.expect("headers");
    assert_eq!(headers.get("ce-id").map(|v| v.as_str()), Some("c-1"));
    assert!(
        headers.get("Nats-Msg-Id").is_none(),
        "core mode has no JetStream id"
    );
    hb.stop().await;
}

#[tokio::test]
async fn uncaptured_subject_is_a_permanent_failure() {
    let cfg = config(
        &nats_url(),
        &format!("hbnostream.{}", unique("n")),
        "jetstream = true",
    );
    let hb = start(&cfg, vec![]).await;
    let (status, body) = post(&hb.url("/events"), "u-1", "t", &[]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &json!("sink_rejected")),
        "{body}"
    );
    // The sender learns the sink and the kind of failure; the broker's text ("no JetStream stream captures")
    // goes to the log only (#27).
    let failure = &body["events"][0]["errors"][0];
    assert!(
        failure["kind"].is_string() && failure["sink"].is_string(),
        "{body}"
    );
    assert!(failure.get("message").is_none(), "{body}");
    hb.stop().await;
}

/// A private nats-server with JetStream on a free port; killed on drop. Never the shared one.
struct PrivateNats {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl PrivateNats {
    fn new() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut n = PrivateNats {
            child: None,
            port,
            dir: tempfile::tempdir().expect("tempdir"),
        };
        n.start();
        n
    }
    fn start(&mut self) {
        let bin = ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("nats-server");
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a private nats-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn wait_ready(url: &str, want: u16) {
    common::wait_status(url, want).await;
}

#[tokio::test]
async fn outage_gives_503_and_recovers_without_restart() {
    let mut nats = PrivateNats::new();
    nats.stop(); // hookbridge must start while NATS is down
    let cfg = config(
        &nats.url(),
        "hbout.{type}",
        "jetstream = true\ncreate_stream = { name = \"HBOUT\", subjects = [\"hbout.>\"] }\nmax_reconnect_delay = \"200ms\"",
    );
    let hb = start(&cfg, vec![]).await;
    let (status, body) = post(&hb.url("/events"), "o-1", "t", &[]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("sink_unavailable")),
        "{body}"
    );
    let ready = reqwest::get(hb.url("/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);
    let ready: Value = ready.json().await.expect("json");
    assert_eq!(ready["sinks"]["nats"]["state"], "down", "{ready}");

    nats.start();
    wait_ready(&hb.url("/readyz"), 200).await;
    let (status, body) = post(&hb.url("/events"), "o-1", "t", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["events"][0]["receipts"][0]["stream"], "HBOUT");

    // Cut it off again mid-life: 503, then back.
    nats.stop();
    wait_ready(&hb.url("/readyz"), 503).await;
    let (status, body) = post(&hb.url("/events"), "o-2", "t", &[]).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("sink_unavailable")),
        "{body}"
    );
    nats.start();
    wait_ready(&hb.url("/readyz"), 200).await;
    let (status, body) = post(&hb.url("/events"), "o-2", "t", &[]).await;
    assert_eq!(status, 200, "{body}");

    // Both events are in the (file-backed) stream exactly once.
    let client = async_nats::connect(nats.url()).await.expect("connect private");
    let mut stream = jetstream::new(client).get_stream("HBOUT").await.expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 2);
    hb.stop().await;
}

/// Two sources reusing id `1` on one stream: JetStream keeps all
/// of them, because `Nats-Msg-Id` is the delivery key, not the bare id (#26).
#[tokio::test]
async fn producers_reusing_an_id_are_not_dropped_as_duplicates() {
    let js = jetstream::new(async_nats::connect(nats_url()).await.expect("connect"));
    let (name, prefix) = stream(&js).await;
    let cfg = config(&nats_url(), &format!("{prefix}.{{type}}"), "jetstream = true").replace(
        "[sinks.nats]",
        "[sources.other]\npath = \"/other\"\nkind = \"cloudevents\"\nverify = { kind = \"none\" }\n\n[sinks.nats]",
    );
    let hb = start(&cfg, vec![]).await;
    for path in ["/events", "/other"] {
        let (status, body) = post(&hb.url(path), "1", "t.reuse", &[]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["events"][0]["receipts"][0]["duplicate"], false,
            "{path}: {body}"
        );
    }
    let mut s = js.get_stream(&name).await.expect("stream");
    assert_eq!(s.info().await.expect("info").state.messages, 2);
    hb.stop().await;
    js.delete_stream(&name).await.expect("delete stream");
}

/// CR/LF in every field that reaches a NATS header, in sync and spool mode: answered, never a
/// panic, and ordinary events behind it still reach the stream (#26).
#[tokio::test]
async fn crlf_in_fields_never_stops_the_sink() {
    let js = jetstream::new(async_nats::connect(nats_url()).await.expect("connect"));
    let (name, prefix) = stream(&js).await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(&nats_url(), &format!("{prefix}.{{type}}"), "jetstream = true")
        .replace(
            "verify = { kind = \"none\" }",
            "verify = { kind = \"none\" }\nkeep_headers = [\"x-origin\"]",
        )
        .replace(
            "[sinks.nats]",
            &format!(
                "[sources.spooled]\npath = \"/spooled\"\nkind = \"cloudevents\"\ndelivery = \"spool\"\nverify = {{ kind = \"none\" }}\n\n[spool]\ndir = \"{}\"\nretry_initial = \"10ms\"\nretry_max = \"50ms\"\n\n[sinks.nats]",
                dir.path().display()
            ),
        );
    let hb = start(&cfg, vec![]).await;
    for (path, want) in [("/events", 200), ("/spooled", 202)] {
        let (status, body) = post(
            &hb.url(path),
            "x%0D%0Ainjected: 1",
            "t.crlf",
            &[("ce-partitionkey", "a%0Db"), ("ce-dataschema", "urn:x%0A")],
        )
        .await;
        assert_eq!(status, want, "{path}: {body}");
        for i in 0..3 {
            let (status, body) = post(&hb.url(path), &format!("ok-{path}-{i}"), "t.ok", &[]).await;
            assert_eq!(status, want, "{path}: {body}");
        }
    }
    let mut s = js.get_stream(&name).await.expect("stream");
    let deadline = Instant::now() + Duration::from_secs(15);
    while s.info().await.expect("info").state.messages < 8 {
        assert!(
            Instant::now() < deadline,
            "only {} of 8 stored",
            s.info().await.expect("info").state.messages
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hb.stop().await;
    js.delete_stream(&name).await.expect("delete stream");
}
