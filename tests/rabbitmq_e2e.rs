//! End to end against RabbitMQ on 127.0.0.1:5672: events read back from a bound queue with lapin.
//! The outage goes through a TCP proxy inside the test; the shared broker is never stopped.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::time::{Duration, Instant};

use common::start;
use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{json, Value};

fn amqp_host() -> String {
    std::env::var("HOOKBRIDGE_TEST_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1:5672".into())
}

fn unique(prefix: &str) -> String {
    common::unique_with(prefix, '.')
}

/// A topic exchange and an exclusive queue bound with `binding`, on the shared broker.
struct Topology {
    _conn: Connection,
    channel: Channel,
    exchange: String,
    queue: String,
}

impl Topology {
    async fn new(binding: &str) -> Topology {
        let conn = Connection::connect(
            &format!("amqp://guest:guest@{}/%2f", amqp_host()),
            ConnectionProperties::default(),
        )
        .await
        .expect("connect to RabbitMQ");
        let channel = conn.create_channel().await.expect("channel");
        let exchange = unique("hbtest.x");
        let queue = unique("hbtest.q");
        channel
            .exchange_declare(
                ShortString::from(exchange.clone()),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare exchange");
        channel
            .queue_declare(
                ShortString::from(queue.clone()),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare queue");
        channel
            .queue_bind(
                ShortString::from(queue.clone()),
                ShortString::from(exchange.clone()),
                ShortString::from(binding.to_owned()),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        Topology {
            _conn: conn,
            channel,
            exchange,
            queue,
        }
    }

    async fn get(&self) -> Option<lapin::message::BasicGetMessage> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let msg = self
                .channel
                .basic_get(
                    ShortString::from(self.queue.clone()),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .expect("basic.get");
            if msg.is_some() || Instant::now() > deadline {
                return msg;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn cleanup(self) {
        let _ = self
            .channel
            .exchange_delete(
                ShortString::from(self.exchange.clone()),
                ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

fn config(url: &str, exchange: &str, extra: &str) -> String {
    format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}

[sinks.rabbit]
type = "rabbitmq"
url = "{url}"
exchange = "{exchange}"
routing_key = "{{hbsource}}.{{type}}"
{extra}

[[routes]]
sinks = ["rabbit"]
"#
    )
}

fn shared_url() -> String {
    format!("amqp://guest:guest@{}/%2f", amqp_host())
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

fn header(msg: &lapin::message::BasicGetMessage, key: &str) -> Option<String> {
    let headers = msg.delivery.properties.headers().as_ref()?;
    match headers.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        other => Some(format!("{other:?}")),
    }
}

#[tokio::test]
async fn binary_event_arrives_with_routing_key_properties_headers_and_body() {
    let topo = Topology::new("ce.#").await;
    let cfg = config(
        &shared_url(),
        &topo.exchange,
        "headers = { x-company = \"{subject}\" }",
    );
    let hb = start(&cfg, vec![]).await;
    let (status, body) = post(&hb.url("/events"), "198:abc", "it.fic.clients.create").await;
    assert_eq!(status, 200, "{body}");
    let receipt = &body["events"][0]["receipts"][0];
    assert_eq!(receipt["confirmed"], true);
    assert_eq!(receipt["routing_key"], "ce.it.fic.clients.create");

    let msg = topo.get().await.expect("a message in the queue");
    let d = &msg.delivery;
    assert_eq!(d.routing_key.as_str(), "ce.it.fic.clients.create");
    assert_eq!(d.exchange.as_str(), topo.exchange);
    assert_eq!(d.data, br#"{"ids":[3062300]}"#);
    let p = &d.properties;
    assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("198:abc"));
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(*p.delivery_mode(), Some(2), "persistent by default");
    assert!(p.timestamp().is_some());
    assert_eq!(header(&msg, "cloudEvents_id").as_deref(), Some("198:abc"));
    assert_eq!(
        header(&msg, "cloudEvents_type").as_deref(),
        Some("it.fic.clients.create")
    );
    assert_eq!(header(&msg, "cloudEvents_source").as_deref(), Some("urn:test"));
    assert_eq!(header(&msg, "cloudEvents_specversion").as_deref(), Some("1.0"));
    assert_eq!(
        header(&msg, "cloudEvents_subject").as_deref(),
        Some("company:108061")
    );
    assert_eq!(header(&msg, "cloudEvents_hbsource").as_deref(), Some("ce"));
    assert!(header(&msg, "cloudEvents_hbreceived").is_some());
    assert_eq!(header(&msg, "x-company").as_deref(), Some("company:108061"));
    hb.stop().await;
    topo.cleanup().await;
}

#[tokio::test]
async fn structured_mode_sends_the_envelope() {
    let topo = Topology::new("#").await;
    let cfg = config(
        &shared_url(),
        &topo.exchange,
        "mode = \"structured\"\npersistent = false\nexpiration = \"1m\"\npriority = 4",
    );
    let hb = start(&cfg, vec![]).await;
    let (status, body) = post(&hb.url("/events"), "s-1", "com.example.t").await;
    assert_eq!(status, 200, "{body}");
    let msg = topo.get().await.expect("message");
    let p = &msg.delivery.properties;
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/cloudevents+json")
    );
    assert_eq!(*p.delivery_mode(), None);
    assert_eq!(p.expiration().as_ref().map(|s| s.as_str()), Some("60000"));
    assert_eq!(*p.priority(), Some(4));
    let envelope: Value = serde_json::from_slice(&msg.delivery.data).expect("json");
    assert_eq!(envelope["id"], "s-1");
    assert_eq!(envelope["data"], json!({"ids": [3062300]}));
    assert!(header(&msg, "cloudEvents_id").is_none());
    hb.stop().await;
    topo.cleanup().await;
}

#[tokio::test]
async fn unroutable_and_missing_exchange_are_not_delivered() {
    let topo = Topology::new("nothing.matches.this").await;
    let hb = start(&config(&shared_url(), &topo.exchange, ""), vec![]).await;
    let (status, body) = post(&hb.url("/events"), "u-1", "t").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &json!("sink_rejected")),
        "{body}"
    );
    // The sender learns the sink and the kind of failure; the broker's text ("unroutable")
    // goes to the log only (#27).
    let failure = &body["events"][0]["errors"][0];
    assert!(
        failure["kind"].is_string() && failure["sink"].is_string(),
        "{body}"
    );
    assert!(failure.get("message").is_none(), "{body}");
    hb.stop().await;

    // A missing exchange closes the channel (NOT_FOUND): a permanent failure, and the next
    // publish on a fresh channel still works.
    let missing = unique("hbtest.missing");
    let cfg = format!(
        "{}\n[sinks.good]\ntype = \"rabbitmq\"\nurl = \"{}\"\nexchange = \"{}\"\nrouting_key = \"x\"\nmandatory = false\n",
        config(&shared_url(), &missing, "channels = 1"),
        shared_url(),
        topo.exchange
    );
    let hb = start(&cfg, vec![]).await;
    let (status, body) = post(&hb.url("/events"), "m-1", "t").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (500, &json!("sink_rejected")),
        "{body}"
    );
    hb.stop().await;
    let ok = config(&shared_url(), &topo.exchange, "mandatory = false\nchannels = 1");
    let hb = start(&ok, vec![]).await;
    let (status, body) = post(&hb.url("/events"), "m-2", "t").await;
    assert_eq!(status, 200, "{body}");
    hb.stop().await;
    topo.cleanup().await;
}

async fn wait_ready(url: &str, want: u16) {
    common::wait_status(url, want).await;
}

#[tokio::test]
async fn outage_through_a_proxy_gives_503_then_recovers() {
    let topo = Topology::new("#").await;
    let upstream = amqp_host().parse().expect("host:port");
    let proxy = proxy::Proxy::start(upstream).await;
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let hb = start(&config(&url, &topo.exchange, "confirm_timeout = \"2s\""), vec![]).await;
    let (status, body) = post(&hb.url("/events"), "p-1", "t").await;
    assert_eq!(status, 200, "{body}");

    proxy.cut();
    let (status, body) = post(&hb.url("/events"), "p-2", "t").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("sink_unavailable")),
        "{body}"
    );
    wait_ready(&hb.url("/readyz"), 503).await;
    let ready: Value = reqwest::get(hb.url("/readyz"))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["sinks"]["rabbit"]["state"], "down", "{ready}");

    proxy.restore();
    wait_ready(&hb.url("/readyz"), 200).await;
    let (status, body) = post(&hb.url("/events"), "p-2", "t").await;
    assert_eq!(status, 200, "{body}");

    let mut ids = Vec::new();
    while let Some(msg) = tokio::time::timeout(Duration::from_secs(1), topo.get())
        .await
        .ok()
        .flatten()
    {
        ids.push(
            msg.delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string())
                .unwrap_or_default(),
        );
    }
    assert!(
        ids.contains(&"p-1".to_owned()) && ids.contains(&"p-2".to_owned()),
        "{ids:?}"
    );
    hb.stop().await;
    topo.cleanup().await;
}

/// Spool mode with `spool.strict_order`: a sequence posted across a broker outage is read back
/// from the queue in spool order (a retry may repeat an event, never put a later one first).
#[tokio::test]
async fn strict_order_survives_an_outage_in_spool_mode() {
    let topo = Topology::new("#").await;
    let upstream = amqp_host().parse().expect("host:port");
    let proxy = proxy::Proxy::start(upstream).await;
    let url = format!("amqp://guest:guest@{}/%2f", proxy.addr);
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(&url, &topo.exchange, "confirm_timeout = \"1s\"\nchannels = 4").replace(
        "verify = { kind = \"none\" }",
        "verify = { kind = \"none\" }\ndelivery = \"spool\"",
    ) + &format!(
        "[spool]\ndir = \"{}\"\nstrict_order = [\"rabbit\"]\nretry_initial = \"20ms\"\nretry_max = \"200ms\"\n",
        dir.path().display()
    );
    let hb = start(&cfg, vec![]).await;
    let n = 60;
    for i in 0..n {
        if i == n / 3 {
            proxy.cut();
        }
        if i == 2 * n / 3 {
            proxy.restore();
        }
        let (status, body) = post(&hb.url("/events"), &format!("{i:03}"), "t").await;
        assert_eq!(status, 202, "{body}");
    }
    let mut ids: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids.iter().collect::<std::collections::BTreeSet<_>>().len() < n && Instant::now() < deadline {
        if let Some(msg) = topo.get().await {
            ids.push(
                msg.delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
            );
        }
    }
    let distinct = ids.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(distinct, n, "every event arrives: {ids:?}");
    for pair in ids.windows(2) {
        assert!(
            pair[0] <= pair[1],
            "{} arrived after {}: {ids:?}",
            pair[1],
            pair[0]
        );
    }
    hb.stop().await;
    topo.cleanup().await;
}

/// Hostile fields (a 300-byte id, a 300-byte content type) are sent, not a panic; kept request
/// headers and `traceparent` arrive in both modes, as on every broker sink.
#[tokio::test]
async fn long_fields_kept_headers_and_traceparent_in_both_modes() {
    for mode in ["binary", "structured"] {
        let topo = Topology::new("#").await;
        let cfg = config(&shared_url(), &topo.exchange, &format!("mode = \"{mode}\"")).replace(
            "verify = { kind = \"none\" }",
            "verify = { kind = \"none\" }\nkeep_headers = [\"x-origin\"]",
        );
        let hb = start(&cfg, vec![]).await;
        let long_id = "i".repeat(300);
        let resp = reqwest::Client::new()
            .post(hb.url("/events"))
            .header("ce-specversion", "1.0")
            .header("ce-id", &long_id)
            .header("ce-source", "urn:test")
            .header("ce-type", "t.long")
            .header("content-type", format!("application/{}", "x".repeat(300)))
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .header("x-origin", "edge-1")
            .body("{}")
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, 200, "{mode}: {body}");
        let msg = topo.get().await.expect("a message in the queue");
        assert_eq!(header(&msg, "x-origin").as_deref(), Some("edge-1"), "{mode}");
        // The sender's trace, continued by hookbridge's own span.
        assert!(
            header(&msg, "traceparent")
                .is_some_and(|t| t.starts_with("00-0af7651916cd43dd8448eb211c80319c-")),
            "{mode}: {:?}",
            header(&msg, "traceparent")
        );
        if mode == "binary" {
            assert_eq!(header(&msg, "cloudEvents_id").as_deref(), Some(long_id.as_str()));
        }
        // An ordinary event still goes through on the same sink.
        let (status, body) = post(&hb.url("/events"), "after", "t").await;
        assert_eq!(status, 200, "{body}");
        hb.stop().await;
        topo.cleanup().await;
    }
}

/// `declare_queue` declares and binds a queue, so a fresh exchange delivers from the first
/// event; a queue that exists with other settings makes the sink down (503, retried), never a
/// permanent refusal of each event (#28).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_queue_binds_a_queue_and_a_conflicting_one_is_retryable() {
    let conn = Connection::connect(&shared_url(), ConnectionProperties::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    let exchange = unique("hbtest.dq.x");
    let queue = unique("hbtest.dq.q");
    let declare = format!(
        "declare_exchange = {{ kind = \"topic\", durable = false }}\n\
         declare_queue = {{ name = \"{queue}\", binding_key = \"#\", durable = false }}"
    );
    let hb = start(&config(&shared_url(), &exchange, &declare), vec![]).await;
    let (status, body) = post(&hb.url("/events"), "dq-1", "t.dq").await;
    assert_eq!(status, 200, "{body}");
    let msg = channel
        .basic_get(ShortString::from(queue.clone()), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("the event is in the declared queue");
    assert_eq!(header(&msg, "cloudEvents_id").as_deref(), Some("dq-1"));
    hb.stop().await;

    // The same queue declared durable this time: the broker refuses (PRECONDITION_FAILED).
    let conflicting = declare.replace(
        "binding_key = \"#\", durable = false",
        "binding_key = \"#\", durable = true",
    );
    let hb = start(&config(&shared_url(), &exchange, &conflicting), vec![]).await;
    let (status, body) = post(&hb.url("/events"), "dq-2", "t.dq").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("sink_unavailable")),
        "{body}"
    );
    hb.stop().await;
    let _ = channel
        .queue_delete(
            ShortString::from(queue),
            lapin::options::QueueDeleteOptions::default(),
        )
        .await;
    let _ = channel
        .exchange_delete(ShortString::from(exchange), ExchangeDeleteOptions::default())
        .await;
}
