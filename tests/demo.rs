//! The shipped demo delivers: `docker/hookbridge.toml` — the configuration `docker/compose.yaml`
//! mounts — run against this machine's brokers with the declarations the compose file makes
//! (the Kafka topic its kafka-init service creates; the RabbitMQ queue and NATS stream the
//! configuration declares itself), overriding only what a user overrides through `HOOKBRIDGE_…`
//! variables: hosts, names made unique for this run (removed afterwards), paths, the FIC public
//! key (FIC's published key cannot be signed for) and the company allow-list. Signed FIC events
//! posted to it are read back from all four sinks with each broker's own client.

mod common;
#[path = "common/fic_sim.rs"]
mod fic_sim;
#[path = "common/readback.rs"]
mod readback;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use figment::providers::Format;
use serde_json::json;

const PUB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fic-test-pub.pem");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/hookbridge.toml");

/// The demo's `public_url`, which FIC's token must name as its audience.
fn public_url() -> String {
    let text = std::fs::read_to_string(CONFIG).expect("config");
    let line = text
        .lines()
        .find(|l| l.starts_with("public_url"))
        .expect("public_url");
    line.split('"').nth(1).expect("quoted").to_owned()
}

async fn post_fic(base: &str, id: &str) -> (u16, serde_json::Value) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let claims = json!({ "iss": "https://api-v2.fattureincloud.it", "aud": [public_url()],
        "sub": "company:7", "jti": id, "exp": now + 600 });
    let token = fic_sim::sign(claims);
    let resp = reqwest::Client::new()
        .post(format!("{base}/webhooks/fic"))
        .header("authorization", format!("Bearer {token}"))
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "https://api-v2.fattureincloud.it")
        .header("ce-type", "it.fattureincloud.webhooks.entities.clients.create")
        .header("ce-subject", "company:7")
        .header("content-type", "application/json")
        .body(json!({ "data": { "ids": [1] } }).to_string())
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// Polls `read` (which returns the ids seen so far) until it has every one of `want`, 30 s at most.
async fn until_all<F, Fut>(what: &str, want: &BTreeSet<String>, mut read: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = BTreeSet<String>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = read().await;
        if want.is_subset(&seen) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: missing {:?}",
            want.difference(&seen).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_demo_delivers_to_every_sink() {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    use lapin::types::ShortString;

    let kafka = std::env::var("HOOKBRIDGE_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let amqp_host = std::env::var("HOOKBRIDGE_TEST_AMQP_HOST").unwrap_or_else(|_| "127.0.0.1:5672".into());
    let amqp = format!("amqp://guest:guest@{amqp_host}/%2f");
    let nats = std::env::var("HOOKBRIDGE_TEST_NATS").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let run = common::unique_with("hbdemo", '_');
    let (topic, exchange, queue) = (run.replace('_', "-"), format!("{run}.x"), format!("{run}.q"));
    let (stream, subjects) = (run.to_uppercase(), format!("[\"{run}.>\"]"));
    let dir = tempfile::tempdir().expect("dir");
    let path = |p: &str| dir.path().join(p).display().to_string();
    let archive = path("fic-events.jsonl");

    // What compose's kafka-init does: create the topic.
    readback::create_topic(&kafka, &topic).await;

    let amqp_url = format!("amqp://guest:guest@{amqp_host}/%2f");
    let nats_url = format!("nats://{nats}");
    let subject = format!("{run}.{{type}}");
    let (spool, dedup) = (path("spool"), path("dedup.redb"));
    let envs: Vec<(&str, &str)> = vec![
        ("HOOKBRIDGE_SERVER__LISTEN", "127.0.0.1:0"),
        ("HOOKBRIDGE_SERVER__PROBE_LISTEN", "127.0.0.1:0"),
        ("HOOKBRIDGE_SERVER__ADMIN_LISTEN", "127.0.0.1:0"),
        ("HOOKBRIDGE_SOURCES__FIC__VERIFY__PUBLIC_KEY__FILE", PUB),
        ("HOOKBRIDGE_SOURCES__FIC__VERIFY__COMPANIES", "[7]"),
        ("HOOKBRIDGE_SINKS__KAFKA__BROKERS", &kafka),
        ("HOOKBRIDGE_SINKS__KAFKA__TOPIC", &topic),
        ("HOOKBRIDGE_SINKS__RABBITMQ__URL", &amqp_url),
        ("HOOKBRIDGE_SINKS__RABBITMQ__EXCHANGE", &exchange),
        ("HOOKBRIDGE_SINKS__RABBITMQ__DECLARE_QUEUE__NAME", &queue),
        ("HOOKBRIDGE_SINKS__NATS__URL", &nats_url),
        ("HOOKBRIDGE_SINKS__NATS__SUBJECT", &subject),
        ("HOOKBRIDGE_SINKS__NATS__CREATE_STREAM__NAME", &stream),
        ("HOOKBRIDGE_SINKS__NATS__CREATE_STREAM__SUBJECTS", &subjects),
        ("HOOKBRIDGE_SINKS__ARCHIVE__PATH", &archive),
        ("HOOKBRIDGE_SPOOL__DIR", &spool),
        ("HOOKBRIDGE_DEDUP__PATH", &dedup),
    ];
    // Overrides replace what the file sets (a user's names and hosts); they add nothing the
    // demo needs to deliver. The one exception: the FIC key, compiled in when unset.
    let file = figment::Figment::from(figment::providers::Toml::file(CONFIG));
    for (var, _) in &envs {
        let key = var["HOOKBRIDGE_".len()..].to_lowercase().replace("__", ".");
        assert!(
            file.find_value(&key).is_ok() || key == "sources.fic.verify.public_key.file",
            "{var} overrides {key}, which docker/hookbridge.toml does not set"
        );
    }
    let (mut child, listeners) = common::spawn_serve_listeners(std::path::Path::new(CONFIG), &envs);
    let base = format!("http://{}", listeners["hookbridge listening"]);
    let probes = format!("http://{}", listeners["probes listening"]);

    let ids: BTreeSet<String> = (0..5).map(|i| format!("{run}:{i}")).collect();
    for id in &ids {
        let (status, body) = post_fic(&base, id).await;
        assert_eq!((status, &body["status"]), (202, &json!("spooled")), "{body}");
    }
    // A re-send of a delivered event is a duplicate (durable dedup is on in the shipped config).
    let first = ids.iter().next().expect("an id").clone();

    // Read back from every sink with its own client.
    let lines = || {
        let archive = archive.clone();
        async move {
            std::fs::read_to_string(&archive)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["id"].as_str().map(str::to_owned))
                .collect::<BTreeSet<_>>()
        }
    };
    until_all("file", &ids, lines).await;

    let conn = lapin::Connection::connect(&amqp, lapin::ConnectionProperties::default())
        .await
        .expect("amqp");
    let channel = conn.create_channel().await.expect("channel");
    let rabbit_seen = readback::Seen::default();
    until_all("rabbitmq", &ids, || {
        readback::rabbitmq_ids(&channel, &queue, &rabbit_seen)
    })
    .await;

    let client = async_nats::connect(&nats).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    // The NATS sink creates the stream at its first publish, which its spool forwarder makes
    // on its own schedule: wait for it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let created = loop {
        match js.get_stream(&stream).await {
            Ok(s) => break s,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the stream the demo config creates: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let consumer: async_nats::jetstream::consumer::PullConsumer = created
        .create_consumer(async_nats::jetstream::consumer::pull::Config::default())
        .await
        .expect("consumer");
    let nats_seen = readback::Seen::default();
    until_all("nats", &ids, || readback::nats_ids(&consumer, &nats_seen)).await;

    let consumer = readback::kafka_consumer(&kafka, &topic);
    let kafka_seen = readback::Seen::default();
    until_all("kafka", &ids, || readback::kafka_ids(&consumer, &kafka_seen)).await;

    // Everything delivered: a re-send is a duplicate, and the probe listener says ready.
    let (status, body) = post_fic(&base, &first).await;
    assert_eq!((status, &body["status"]), (200, &json!("duplicate")), "{body}");
    let ready = reqwest::get(format!("{probes}/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 200);
    let webhook_probe = reqwest::get(format!("{base}/readyz")).await.expect("readyz");
    assert_eq!(
        webhook_probe.status().as_u16(),
        404,
        "probes are not on the webhook port"
    );

    let _ = child.kill();
    let _ = child.wait();
    // Remove what this run made.
    // Every librdkafka client of this process that knows the topic goes first: deleting it on
    // tansu under a live consumer crashed librdkafka's metadata cache (SIGSEGV, seen in CI).
    drop(consumer);
    readback::delete_topic(&kafka, &topic).await;
    let _ = channel
        .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
        .await;
    let _ = channel
        .exchange_delete(ShortString::from(exchange), ExchangeDeleteOptions::default())
        .await;
    let _ = js.delete_stream(&stream).await;
}
