//! Faults on purpose: for each broker sink, in sync and in spool mode, a stream of webhooks while a
//! proxy between hookbridge and the broker cycles through close, stall, delay and refuse. Every
//! event answered 2xx must be read back from the broker (ids compared, duplicates counted, none
//! missing); a stalled broker gets 503 within the publish deadline; an overloaded hookbridge
//! answers 503 with Retry-After, keeps its memory bounded and recovers.

mod common;
#[path = "common/fault.rs"]
mod fault;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::start;
use fault::{Fault, FaultProxy};
use lapin::options::{BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

fn unique(prefix: &str) -> String {
    common::unique_with(prefix, 'x')
}

fn config(mode: &str, sink: &str, spool_dir: &std::path::Path) -> String {
    format!(
        r#"
[server]
publish_timeout = "2s"
request_timeout = "5s"
[sources.ce]
path = "/events"
kind = "cloudevents"
delivery = "{mode}"
verify = {{ kind = "none" }}
{sink}
[[routes]]
sinks = ["broker"]
[spool]
dir = "{}"
retry_initial = "50ms"
retry_max = "500ms"
"#,
        spool_dir.display()
    )
}

async fn post(client: &reqwest::Client, url: &str, id: &str) -> u16 {
    client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "urn:fault")
        .header("ce-type", "t.fault")
        .header("content-type", "application/json")
        .body(format!(r#"{{"id":"{id}"}}"#))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Posts `n` events while the proxy cycles through faults; returns the ids answered 2xx.
async fn stream_with_faults(
    url: &str,
    proxy: &FaultProxy,
    prefix: &str,
    n: usize,
) -> (Vec<String>, HashMap<u16, usize>) {
    let client = reqwest::Client::new();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let statuses = Arc::new(Mutex::new(HashMap::<u16, usize>::new()));
    let poster = {
        let (acked, statuses, url, prefix) =
            (acked.clone(), statuses.clone(), url.to_owned(), prefix.to_owned());
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for i in 0..n {
                let (client, acked, statuses, url) =
                    (client.clone(), acked.clone(), statuses.clone(), url.clone());
                let id = format!("{prefix}-{i}");
                tasks.push(tokio::spawn(async move {
                    let s = post(&client, &url, &id).await;
                    *statuses.lock().expect("lock").entry(s).or_default() += 1;
                    if (200..300).contains(&s) {
                        acked.lock().expect("lock").push(id);
                    }
                }));
                tokio::time::sleep(Duration::from_millis(70)).await;
            }
            for t in tasks {
                let _ = t.await;
            }
        })
    };
    let cycle = [
        (Fault::Pass, 300),
        (Fault::Close, 200),
        (Fault::Pass, 300),
        (Fault::Stall, 2500),
        (Fault::Pass, 300),
        (Fault::Delay(Duration::from_millis(100)), 500),
        (Fault::Refuse, 300),
        (Fault::Pass, 0),
    ];
    for (f, ms) in cycle {
        proxy.set(f);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    poster.await.expect("poster");
    proxy.set(Fault::Pass);
    let acked = acked.lock().expect("lock").clone();
    let statuses = statuses.lock().expect("lock").clone();
    (acked, statuses)
}

/// Waits until every acknowledged id has been read back; returns (read count, duplicates).
async fn assert_all_arrive<F, Fut>(acked: &[String], mut read: F) -> (usize, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        let got = read().await;
        let missing: Vec<&String> = acked.iter().filter(|id| !got.contains(id)).collect();
        if missing.is_empty() {
            let mut counts: HashMap<&String, usize> = HashMap::new();
            for g in &got {
                *counts.entry(g).or_default() += 1;
            }
            let dups = counts.values().map(|c| c - 1).sum();
            return (got.len(), dups);
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged but never read back: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

// ---------------------------------------------------------------- NATS JetStream

async fn nats_scenario(mode: &str) {
    let url = std::env::var("HOOKBRIDGE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let js = jetstream::new(async_nats::connect(&url).await.expect("connect"));
    let id = unique("f");
    let stream = format!("HBFAULT_{id}");
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("hbfault.{id}.>")],
        ..Default::default()
    })
    .await
    .expect("stream");
    let proxy = FaultProxy::start(url.trim_start_matches("nats://").parse().expect("addr")).await;
    let sink = format!(
        "[sinks.broker]\ntype = \"nats\"\nurl = \"nats://{}\"\nsubject = \"hbfault.{id}.{{type}}\"\njetstream = true\nmax_reconnect_delay = \"100ms\"\n",
        proxy.addr
    );
    let dir = tempfile::tempdir().expect("dir");
    let hb = start(&config(mode, &sink, dir.path()), vec![]).await;
    if mode == "sync" {
        stall_gives_503(&hb.url("/events"), &proxy).await;
    }
    let (acked, statuses) =
        stream_with_faults(&hb.url("/events"), &proxy, &format!("nats-{mode}"), 100).await;
    let read = || async {
        let mut s = js.get_stream(&stream).await.expect("stream");
        let total = s.info().await.expect("info").state.messages;
        let mut ids = Vec::new();
        for seq in 1..=total {
            if let Ok(m) = s.get_raw_message(seq).await {
                if let Some(v) = m.headers.get("ce-id") {
                    ids.push(v.as_str().to_owned());
                }
            }
        }
        ids
    };
    let (read_count, dups) = assert_all_arrive(&acked, read).await;
    println!(
        "nats {mode}: statuses {statuses:?}, {} acked, {read_count} read, {dups} duplicates",
        acked.len()
    );
    assert!(!acked.is_empty());
    hb.stop().await;
    let _ = js.delete_stream(&stream).await;
}

/// A broker that accepts but never acks: 503 within the publish deadline.
async fn stall_gives_503(url: &str, proxy: &FaultProxy) {
    let client = reqwest::Client::new();
    // Warm the connection first so the stall hits an established one.
    let _ = post(&client, url, &unique("warm")).await;
    proxy.set(Fault::Stall);
    let started = Instant::now();
    let status = post(&client, url, &unique("stalled")).await;
    let took = started.elapsed();
    proxy.set(Fault::Pass);
    assert_eq!(status, 503, "a stalled broker must not get a 2xx");
    assert!(
        took < Duration::from_millis(3500),
        "503 within the publish deadline (2s), took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_sync_under_faults() {
    nats_scenario("sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_spool_under_faults() {
    nats_scenario("spool").await;
}

// ---------------------------------------------------------------- RabbitMQ

async fn rabbit_scenario(mode: &str) {
    let host = std::env::var("HOOKBRIDGE_TEST_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1:5672".into());
    let conn = Connection::connect(
        &format!("amqp://guest:guest@{host}/%2f"),
        ConnectionProperties::default(),
    )
    .await
    .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    let exchange = unique("hbfault.x.");
    let queue = unique("hbfault.q.");
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
        .expect("exchange");
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
        .expect("queue");
    channel
        .queue_bind(
            ShortString::from(queue.clone()),
            ShortString::from(exchange.clone()),
            ShortString::from("#"),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let proxy = FaultProxy::start(host.parse().expect("addr")).await;
    let sink = format!(
        "[sinks.broker]\ntype = \"rabbitmq\"\nurl = \"amqp://guest:guest@{}/%2f\"\nexchange = \"{exchange}\"\nconfirm_timeout = \"1500ms\"\nconnect_timeout = \"1s\"\n",
        proxy.addr
    );
    let dir = tempfile::tempdir().expect("dir");
    let hb = start(&config(mode, &sink, dir.path()), vec![]).await;
    if mode == "sync" {
        stall_gives_503(&hb.url("/events"), &proxy).await;
    }
    let (acked, statuses) =
        stream_with_faults(&hb.url("/events"), &proxy, &format!("amqp-{mode}"), 100).await;
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let read = || {
        let (channel, queue, seen) = (channel.clone(), queue.clone(), seen.clone());
        async move {
            while let Ok(Some(m)) = channel
                .basic_get(ShortString::from(queue.clone()), BasicGetOptions { no_ack: true })
                .await
            {
                let id = match m
                    .delivery
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("cloudEvents_id").cloned())
                {
                    Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                    _ => continue,
                };
                seen.lock().expect("lock").push(id);
            }
            seen.lock().expect("lock").clone()
        }
    };
    let (read_count, dups) = assert_all_arrive(&acked, read).await;
    println!(
        "rabbitmq {mode}: statuses {statuses:?}, {} acked, {read_count} read, {dups} duplicates",
        acked.len()
    );
    assert!(!acked.is_empty());
    hb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_sync_under_faults() {
    rabbit_scenario("sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_spool_under_faults() {
    rabbit_scenario("spool").await;
}

// ---------------------------------------------------------------- Kafka (private tansu behind the proxy)

struct Tansu(Child);

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn kafka_scenario(mode: &str) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let proxy = FaultProxy::start(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    let tansu = Tansu(
        Command::new("tansu")
            .args([
                "--listener-url",
                &format!("tcp://127.0.0.1:{port}"),
                "--advertised-listener-url",
                &format!("tcp://{}", proxy.addr),
                "--storage-engine",
                "memory://tansu/",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu (scripts/test.sh installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let brokers = proxy.addr.to_string();
    let topic = unique("hbfault-");
    {
        use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
        let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .expect("admin");
        for r in admin
            .create_topics(
                &[NewTopic::new(&topic, 1, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("create")
        {
            r.expect("topic");
        }
    }
    let sink = format!(
        "[sinks.broker]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\nmessage_timeout = \"1500ms\"\n[sinks.broker.librdkafka]\n\"reconnect.backoff.max.ms\" = \"300\"\n\"socket.timeout.ms\" = \"2000\"\n"
    );
    let dir = tempfile::tempdir().expect("dir");
    let hb = start(&config(mode, &sink, dir.path()), vec![]).await;
    if mode == "sync" {
        stall_gives_503(&hb.url("/events"), &proxy).await;
    }
    let (acked, statuses) =
        stream_with_faults(&hb.url("/events"), &proxy, &format!("kafka-{mode}"), 100).await;
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", unique("hbfault-group"))
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)
        .expect("tpl");
    consumer.assign(&tpl).expect("assign");
    let consumer = Arc::new(Mutex::new(consumer));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let read = || {
        let (consumer, seen) = (consumer.clone(), seen.clone());
        async move {
            tokio::task::spawn_blocking(move || {
                let c = consumer.lock().expect("lock");
                while let Some(Ok(m)) = c.poll(Duration::from_millis(300)) {
                    if let Some(h) = m.headers() {
                        if let Some(id) = h.iter().find(|h| h.key == "ce_id").and_then(|h| h.value) {
                            seen.lock()
                                .expect("lock")
                                .push(String::from_utf8_lossy(id).into_owned());
                        }
                    }
                }
                seen.lock().expect("lock").clone()
            })
            .await
            .expect("join")
        }
    };
    let (read_count, dups) = assert_all_arrive(&acked, read).await;
    println!(
        "kafka {mode}: statuses {statuses:?}, {} acked, {read_count} read, {dups} duplicates",
        acked.len()
    );
    assert!(!acked.is_empty());
    hb.stop().await;
    // librdkafka's consumer close can block for its session timeout once its broker is gone;
    // the test process reclaims it at exit.
    std::mem::forget(consumer);
    drop(tansu);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sync_under_faults() {
    kafka_scenario("sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_spool_under_faults() {
    kafka_scenario("spool").await;
}

// ---------------------------------------------------------------- Overload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_with_a_stalled_sink_is_bounded_and_recovers() {
    let url = std::env::var("HOOKBRIDGE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let js = jetstream::new(async_nats::connect(&url).await.expect("connect"));
    let id = unique("o");
    let stream = format!("HBOVER_{id}");
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("hbover.{id}.>")],
        ..Default::default()
    })
    .await
    .expect("stream");
    let proxy = FaultProxy::start(url.trim_start_matches("nats://").parse().expect("addr")).await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg_path = dir.path().join("hb.toml");
    let sink = format!("[sinks.broker]\ntype = \"nats\"\nurl = \"nats://{}\"\nsubject = \"hbover.{id}.{{type}}\"\njetstream = true\n", proxy.addr);
    std::fs::write(&cfg_path, config("sync", &sink, &dir.path().join("spool")) + "\n").expect("config");
    let text = std::fs::read_to_string(&cfg_path)
        .expect("read")
        .replace("[server]\n", "[server]\nmax_in_flight = 8\n");
    std::fs::write(&cfg_path, text).expect("config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["serve", "--config"])
        .arg(&cfg_path)
        .env("HOOKBRIDGE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "hookbridge did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let addr = format!("http://127.0.0.1:{port}/events");
    let client = reqwest::Client::new();
    assert_eq!(post(&client, &addr, "warm").await, 200);
    proxy.set(Fault::Stall);
    let burst = |n: usize, tag: &'static str| {
        let (client, addr) = (client.clone(), addr.clone());
        async move {
            let results = futures_util::future::join_all((0..n).map(|i| {
                let (client, addr) = (client.clone(), addr.clone());
                async move {
                    let resp = client
                        .post(&addr)
                        .header("ce-specversion", "1.0")
                        .header("ce-id", format!("{tag}-{i}"))
                        .header("ce-source", "urn:o")
                        .header("ce-type", "t")
                        .send()
                        .await
                        .expect("post");
                    (resp.status().as_u16(), resp.headers().contains_key("retry-after"))
                }
            }))
            .await;
            results
        }
    };
    let warm = burst(64, "w").await;
    assert!(warm.iter().all(|(s, _)| *s == 503));
    let before = common::vm_rss_kib(child.id());
    for round in 0..5 {
        let results = burst(200, ["a", "b", "c", "d", "e"][round]).await;
        let overloaded = results.iter().filter(|(s, ra)| *s == 503 && *ra).count();
        assert_eq!(
            overloaded,
            results.len(),
            "every request refused with 503 + Retry-After while stalled"
        );
    }
    let after = common::vm_rss_kib(child.id());
    println!("overload: VmRSS {before} KiB → {after} KiB over 1,000 refused requests");
    assert!(
        after.saturating_sub(before) < 16 * 1024,
        "VmRSS grew {} KiB",
        after - before
    );
    // Recovery once the sink returns.
    proxy.set(Fault::Pass);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if post(&client, &addr, &unique("recovered")).await == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = js.delete_stream(&stream).await;
}
