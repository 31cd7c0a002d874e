//! Reading events back from the brokers with each broker's own client: the CloudEvents id of
//! every message seen so far, accumulated in a shared set (each call drains what arrived since).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rdkafka::consumer::BaseConsumer;

/// Ids seen so far, shared between polls.
pub type Seen = Arc<Mutex<BTreeSet<String>>>;

/// Creates `topic` (1 partition, replication 1), as the compose file's kafka-init does.
pub async fn create_topic(brokers: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin");
    for r in admin
        .create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create topic")
    {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// Deletes `topic` (best effort). Only once no other librdkafka client of the process uses it:
/// on tansu, a deletion under a live client's metadata cache crashed librdkafka.
pub async fn delete_topic(brokers: &str, topic: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let admin: Result<AdminClient<rdkafka::client::DefaultClientContext>, _> =
        rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create();
    if let Ok(admin) = admin {
        let _ = admin.delete_topics(&[topic], &AdminOptions::new()).await;
    }
}

/// A consumer of `topic` from its start, in a group of its own.
pub fn kafka_consumer(brokers: &str, topic: &str) -> Arc<BaseConsumer> {
    use rdkafka::consumer::Consumer;
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    Arc::new(consumer)
}

/// Polls `consumer` for half a second; the `ce_id` header of every record joins `seen`.
pub async fn kafka_ids(consumer: &Arc<BaseConsumer>, seen: &Seen) -> BTreeSet<String> {
    use rdkafka::message::{Headers, Message};
    let (consumer, seen) = (consumer.clone(), seen.clone());
    tokio::task::spawn_blocking(move || {
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            let Some(Ok(msg)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let id = msg.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "ce_id")
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            });
            if let Some(id) = id {
                seen.lock().expect("lock").insert(id);
            }
        }
        let ids = seen.lock().expect("lock").clone();
        ids
    })
    .await
    .expect("poll")
}

/// Gets every message waiting in `queue`; the `cloudEvents_id` header of each joins `seen`.
pub async fn rabbitmq_ids(channel: &lapin::Channel, queue: &str, seen: &Seen) -> BTreeSet<String> {
    use lapin::options::BasicGetOptions;
    use lapin::types::{AMQPValue, ShortString};
    while let Some(msg) = channel
        .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
    {
        let id = msg
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("cloudEvents_id").cloned());
        if let Some(AMQPValue::LongString(s)) = id {
            seen.lock().expect("lock").insert(s.to_string());
        }
    }
    let ids = seen.lock().expect("lock").clone();
    ids
}

/// Fetches what `consumer` has (up to 100 messages, 300 ms); the `ce-id` header of each joins
/// `seen`.
pub async fn nats_ids(
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    seen: &Seen,
) -> BTreeSet<String> {
    let mut batch = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_millis(300))
        .messages()
        .await
        .expect("fetch");
    while let Some(Ok(msg)) = batch.next().await {
        if let Some(id) = msg.headers.as_ref().and_then(|h| h.get("ce-id")) {
            seen.lock().expect("lock").insert(id.as_str().to_owned());
        }
        let _ = msg.ack().await;
    }
    let ids = seen.lock().expect("lock").clone();
    ids
}
