//! Producer management and the [`Sink`] implementation.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use hookbridge_sink_core::binding::{compile, compile_headers};
use hookbridge_sink_core::{Event, Receipt, Sink, SinkError};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::config::KafkaConfig;
use crate::error::classify;
use crate::message::Layout;

/// How long a metadata request (topic check, health) may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);

/// Publishes events to Kafka.
pub struct KafkaSink {
    name: String,
    client_config: ClientConfig,
    layout: Layout,
    producer: RwLock<Arc<FutureProducer>>,
    /// Topics confirmed to exist (checked once from metadata).
    known_topics: Mutex<HashSet<String>>,
}

impl KafkaSink {
    /// Builds the sink and its producer. No network IO: librdkafka connects in the background,
    /// so hookbridge starts while Kafka is down.
    pub fn new(name: impl Into<String>, config: KafkaConfig) -> Result<Self, SinkError> {
        let name = name.into();
        let layout = Layout {
            topic: compile(&config.topic)?,
            key: config.key.as_deref().map(compile).transpose()?,
            headers: compile_headers(&config.headers)?,
            mode: config.mode,
        };
        let client_config = client_config(&name, &config)?;
        let producer = create(&client_config)?;
        Ok(KafkaSink {
            name,
            client_config,
            layout,
            producer: RwLock::new(producer),
            known_topics: Mutex::new(HashSet::new()),
        })
    }

    fn producer(&self) -> Arc<FutureProducer> {
        self.producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// After a fatal error (idempotent producer sequence broken, producer fenced) the producer is
    /// unusable: build a new one, with a new producer id. Records in flight on the old one fail
    /// and are answered 503; the provider's retry goes through the new producer.
    fn replace_if_fatal(&self, producer: &Arc<FutureProducer>, error: &KafkaError) {
        let poisoned = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::Fatal
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::InvalidProducerIdMapping
            )
        );
        let fatal = producer.client().fatal_error();
        if poisoned || fatal.is_some() {
            let mut current = self.producer.write().unwrap_or_else(PoisonError::into_inner);
            if Arc::ptr_eq(&current, producer) {
                let reason = fatal.map_or_else(|| error.to_string(), |(_, r)| r);
                tracing::error!(sink = %self.name, %reason, "producer unusable: building a new producer");
                match create(&self.client_config) {
                    Ok(p) => *current = p,
                    Err(e) => tracing::error!(sink = %self.name, error = %e, "cannot build a new producer"),
                }
            }
        }
    }

    /// Checks from metadata that `topic` exists, once per topic; an unknown topic is a
    /// permanent failure at once instead of a wait for `topic.metadata.propagation.max.ms`.
    async fn check_topic(&self, producer: &Arc<FutureProducer>, topic: &str) -> Result<(), SinkError> {
        if self
            .known_topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(topic)
        {
            return Ok(());
        }
        let p = producer.clone();
        let t = topic.to_owned();
        let metadata =
            tokio::task::spawn_blocking(move || p.client().fetch_metadata(Some(&t), METADATA_TIMEOUT))
                .await
                .map_err(|e| SinkError::unavailable("metadata task failed").with_source(e))?
                .map_err(|e| classify(topic, e))?;
        let found = metadata.topics().iter().find(|m| m.name() == topic);
        match found.and_then(|m| m.error()) {
            None if found.is_some_and(|m| !m.partitions().is_empty()) => {
                self.known_topics
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(topic.to_owned());
                Ok(())
            }
            Some(code) => Err(classify(
                topic,
                KafkaError::MetadataFetch(RDKafkaErrorCode::from(code)),
            )),
            None => Err(SinkError::rejected(format!("topic {topic:?} does not exist"))),
        }
    }
}

fn client_config(name: &str, c: &KafkaConfig) -> Result<ClientConfig, SinkError> {
    let mut cfg = ClientConfig::new();
    for (k, v) in &c.librdkafka {
        cfg.set(k, v);
    }
    let ms = |d: Option<hookbridge_sink_core::settings::HumanDuration>, default: u64| {
        d.map_or(default, |d| d.0.as_millis() as u64).to_string()
    };
    cfg.set("bootstrap.servers", &c.brokers)
        .set("client.id", format!("hookbridge-{name}"))
        // A receipt must mean the in-sync replicas have the record.
        .set("acks", "all")
        .set("enable.idempotence", c.idempotence.to_string())
        // Give up well before the webhook's publish deadline, never librdkafka's 300 s.
        .set(
            "message.timeout.ms",
            ms(
                c.message_timeout,
                crate::config::DEFAULT_MESSAGE_TIMEOUT.as_millis() as u64,
            ),
        )
        // Bounded producer memory (librdkafka's default is 1 GiB).
        .set(
            "queue.buffering.max.kbytes",
            c.queue_max_kbytes.unwrap_or(16 * 1024).to_string(),
        )
        .set("linger.ms", ms(c.linger, 5));
    if let Some(b) = c.batch_size {
        cfg.set("batch.size", b.to_string());
    }
    if let Some(comp) = &c.compression {
        cfg.set("compression.type", comp);
    }
    let secret =
        |r: &hookbridge_sink_core::settings::SecretRef| r.resolve_text().map_err(SinkError::misconfigured);
    if let Some(p) = &c.sasl_password {
        cfg.set("sasl.password", secret(p)?);
    }
    if let Some(p) = &c.ssl_key_password {
        cfg.set("ssl.key.password", secret(p)?);
    }
    Ok(cfg)
}

fn create(cfg: &ClientConfig) -> Result<Arc<FutureProducer>, SinkError> {
    cfg.create::<FutureProducer>()
        .map(Arc::new)
        .map_err(|e| SinkError::misconfigured("cannot create the Kafka producer").with_source(e))
}

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "kafka"
    }

    async fn publish(&self, event: &Event) -> Result<Receipt, SinkError> {
        let record = self.layout.build(event)?;
        let producer = self.producer();
        self.check_topic(&producer, &record.topic).await?;
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k.as_str(),
                value: Some(v.as_slice()),
            });
        }
        let mut fr = FutureRecord::to(&record.topic)
            .payload(&record.value)
            .headers(headers);
        if let Some(k) = &record.key {
            fr = fr.key(k.as_str());
        }
        // Enqueue without blocking; many records are in flight, each awaits its own report.
        let delivery = producer.send_result(fr).map_err(|(e, _)| {
            self.replace_if_fatal(&producer, &e);
            classify(&record.topic, e)
        })?;
        let result = delivery
            .await
            .map_err(|_| SinkError::unavailable("the producer was dropped before reporting delivery"))?;
        match result {
            Ok(d) => Ok(Receipt::new(&self.name)
                .with("topic", record.topic)
                .with("partition", d.partition)
                .with("offset", d.offset)),
            Err((e, _)) => {
                self.replace_if_fatal(&producer, &e);
                Err(classify(&record.topic, e))
            }
        }
    }

    async fn health(&self) -> Result<(), SinkError> {
        let producer = self.producer();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map(|_| ())
        })
        .await
        .map_err(|e| SinkError::unavailable("metadata task failed").with_source(e))?
        .map_err(|e| SinkError::unavailable("Kafka is unreachable").with_source(e))
    }

    async fn shutdown(&self) {
        let producer = self.producer();
        let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(5))).await;
    }
}
