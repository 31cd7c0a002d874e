//! End to end against a Kafka-protocol broker (tansu) on 127.0.0.1:9092, read back with an
//! rdkafka consumer. The outage uses a private tansu behind a TCP proxy inside the test, so the
//! shared broker is never stopped.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::start;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

fn brokers() -> String {
    std::env::var("HOOKBRIDGE_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

fn unique(prefix: &str) -> String {
    common::unique_with(prefix, '-')
}

/// Creates `topic` (tansu does not auto-create topics).
async fn create_topic(brokers: &str, topic: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topics");
    for r in results {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

struct Read {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<String>,
    headers: Vec<(String, String)>,
    value: Vec<u8>,
}

impl Read {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// Reads `n` records from partition 0 of `topic` from the beginning.
fn consume(brokers: &str, topic: &str, n: usize) -> Vec<Read> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("hbtest-group"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while out.len() < n && Instant::now() < deadline {
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let msg = msg.expect("consume");
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.push(Read {
            topic: msg.topic().to_owned(),
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            headers,
            value: msg.payload().unwrap_or_default().to_vec(),
        });
    }
    out
}

fn config(brokers: &str, topic: &str, extra: &str) -> String {
    format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}

[sinks.kafka]
type = "kafka"
brokers = "{brokers}"
topic = "{topic}"
{extra}

[[routes]]
sinks = ["kafka"]
"#
    )
}

async fn post(url: &str, id: &str, ty: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "urn:test")
        .header("ce-type", ty)
        .header("ce-subject", "company:108061")
        .header("content-type", "application/json")
        .body(r#"{"ids":[3062300]}"#)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn binary_events_are_read_back_with_key_headers_body_and_matching_receipts() {
    let base = unique("hbtest");
    let topic = format!("{base}.it.fic.clients.create");
    create_topic(&brokers(), &topic).await;
    let cfg = config(
        &brokers(),
        &format!("{base}.{{type}}"),
        "headers = { x-source-name = \"{hbsource}\" }",
    );
    let hb = start(&cfg, vec![]).await;
    let mut receipts = Vec::new();
    for id in ["k-1", "k-2"] {
        let (status, body) = post(&hb.url("/events"), id, "it.fic.clients.create").await;
        assert_eq!(status, 200, "{body}");
        receipts.push(body["events"][0]["receipts"][0].clone());
    }
    let records = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || consume(&brokers(), &topic, 2)
    })
    .await
    .expect("join");
    assert_eq!(records.len(), 2);
    for (r, receipt) in records.iter().zip(&receipts) {
        assert_eq!(receipt["topic"], r.topic.as_str());
        assert_eq!(receipt["partition"], r.partition);
        assert_eq!(receipt["offset"], r.offset);
        assert_eq!(
            r.key.as_deref(),
            Some("company:108061"),
            "key defaults to the subject"
        );
        assert_eq!(r.value, br#"{"ids":[3062300]}"#);
        assert_eq!(r.header("ce_type"), Some("it.fic.clients.create"));
        assert_eq!(r.header("ce_source"), Some("urn:test"));
        assert_eq!(r.header("ce_specversion"), Some("1.0"));
        assert_eq!(r.header("ce_subject"), Some("company:108061"));
        assert_eq!(r.header("ce_hbsource"), Some("ce"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("x-source-name"), Some("ce"));
    }
    assert_eq!(records[0].header("ce_id"), Some("k-1"));
    assert_eq!(records[1].header("ce_id"), Some("k-2"));
    hb.stop().await;
}

#[tokio::test]
async fn structured_mode_and_key_template() {
    let topic = unique("hbtest-s");
    create_topic(&brokers(), &topic).await;
    let hb = start(
        &config(&brokers(), &topic, "mode = \"structured\"\nkey = \"{id}\""),
        vec![],
    )
    .await;
    let (status, body) = post(&hb.url("/events"), "s-1", "com.example.t").await;
    assert_eq!(status, 200, "{body}");
    let records = tokio::task::spawn_blocking(move || consume(&brokers(), &topic, 1))
        .await
        .expect("join");
    let r = &records[0];
    assert_eq!(r.key.as_deref(), Some("s-1"));
    assert_eq!(r.header("content-type"), Some("application/cloudevents+json"));
    assert_eq!(r.header("ce_id"), None);
    let envelope: Value = serde_json::from_slice(&r.value).expect("json");
    assert_eq!(envelope["id"], "s-1");
    assert_eq!(envelope["data"], json!({"ids": [3062300]}));
    hb.stop().await;
}

#[tokio::test]
async fn missing_topic_is_a_permanent_failure_within_seconds() {
    let hb = start(&config(&brokers(), &unique("hbtest-missing"), ""), vec![]).await;
    let started = Instant::now();
    let (status, body) = post(&hb.url("/events"), "m-1", "t").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &json!("sink_rejected")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // The sender learns the sink and the kind of failure; the broker's text ("does not exist")
    // goes to the log only (#27).
    let failure = &body["events"][0]["errors"][0];
    assert!(
        failure["kind"].is_string() && failure["sink"].is_string(),
        "{body}"
    );
    assert!(failure.get("message").is_none(), "{body}");
    hb.stop().await;
}

/// A private tansu whose advertised address is the proxy's, so every byte goes through the proxy.
struct PrivateTansu {
    child: Child,
}

impl PrivateTansu {
    fn start(port: u16, advertised: std::net::SocketAddr) -> PrivateTansu {
        let child = Command::new("tansu")
            .args([
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://{advertised}"),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a private tansu (scripts/test.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "private tansu did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        PrivateTansu { child }
    }
}

impl Drop for PrivateTansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(url: &str, want: u16) {
    common::wait_status(url, want).await;
}

#[tokio::test]
async fn outage_through_a_proxy_gives_503_then_publishes_resume() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let upstream: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let proxy = proxy::Proxy::start(upstream).await;
    let _tansu = PrivateTansu::start(port, proxy.addr);
    let via_proxy = proxy.addr.to_string();
    let topic = unique("hbtest-outage");
    create_topic(&via_proxy, &topic).await;
    let extra = "message_timeout = \"2s\"\n[sinks.kafka.librdkafka]\n\"reconnect.backoff.max.ms\" = \"500\"";
    let cfg = config(&via_proxy, &topic, extra) + "\n[server]\npublish_timeout = \"3s\"\n";
    let hb = start(&cfg, vec![]).await;
    let (status, body) = post(&hb.url("/events"), "o-1", "t").await;
    assert_eq!(status, 200, "{body}");

    proxy.cut();
    let started = Instant::now();
    let (status, body) = post(&hb.url("/events"), "o-2", "t").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("sink_unavailable")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "503 within the publish deadline, took {:?}",
        started.elapsed()
    );
    wait_ready(&hb.url("/readyz"), 503).await;

    proxy.restore();
    wait_ready(&hb.url("/readyz"), 200).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = post(&hb.url("/events"), "o-2", "t").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "publishes did not resume: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ids: Vec<String> = tokio::task::spawn_blocking(move || consume(&via_proxy, &topic, 2))
        .await
        .expect("join")
        .iter()
        .filter_map(|r| r.header("ce_id").map(str::to_owned))
        .collect();
    assert!(
        ids.contains(&"o-1".to_owned()) && ids.contains(&"o-2".to_owned()),
        "{ids:?}"
    );
    hb.stop().await;
}

/// Hostile fields (CR/LF and 300-byte values in every attribute that becomes a Kafka header or
/// the key), in sync and spool mode: answered, never a panic, read back as sent, and an ordinary
/// event after each still goes through (#26).
#[tokio::test]
async fn hostile_fields_reach_kafka_and_never_stop_the_sink() {
    let base = unique("hbtest");
    let topic = format!("{base}.hostile");
    create_topic(&brokers(), &topic).await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(&brokers(), &topic, "").replace(
        "[sinks.kafka]",
        &format!(
            "[sources.spooled]\npath = \"/spooled\"\nkind = \"cloudevents\"\ndelivery = \"spool\"\nverify = {{ kind = \"none\" }}\n\n[spool]\ndir = \"{}\"\nretry_initial = \"10ms\"\nretry_max = \"100ms\"\n\n[sinks.kafka]",
            dir.path().display()
        ),
    );
    let hb = start(&cfg, vec![]).await;
    let long = "l".repeat(300);
    for (path, want) in [("/events", 200), ("/spooled", 202)] {
        let resp = reqwest::Client::new()
            .post(hb.url(path))
            .header("ce-specversion", "1.0")
            .header("ce-id", format!("x%0D%0Ainjected-{path}"))
            .header("ce-source", "urn:test")
            .header("ce-type", &long)
            .header("ce-subject", "a%0Ab")
            .header("ce-partitionkey", "p%0D")
            .header("content-type", format!("application/{long}"))
            .body("{}")
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status().as_u16(), want, "{path}");
        let (status, body) = post(&hb.url(path), &format!("ok{path}"), "t.ok").await;
        assert_eq!(status, want, "{path}: {body}");
    }
    let records = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || consume(&brokers(), &topic, 4)
    })
    .await
    .expect("join");
    assert_eq!(records.len(), 4);
    let ids: Vec<&str> = records.iter().filter_map(|r| r.header("ce_id")).collect();
    assert!(ids.contains(&"x\r\ninjected-/events"), "{ids:?}");
    assert!(ids.contains(&"ok/spooled"), "{ids:?}");
    let hostile = records
        .iter()
        .find(|r| r.header("ce_id") == Some("x\r\ninjected-/events"))
        .expect("hostile record");
    assert_eq!(
        hostile.key.as_deref(),
        Some("p\r"),
        "partitionkey as the key, as sent"
    );
    assert_eq!(hostile.header("ce_type"), Some(long.as_str()));
    hb.stop().await;
}
