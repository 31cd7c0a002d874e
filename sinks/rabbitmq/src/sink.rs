//! Connection pool, reconnection, and the [`Sink`] implementation.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hookbridge_sink_core::binding::{compile, compile_headers};
use hookbridge_sink_core::{ErrorKind, Event, Receipt, Sink, SinkError};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::config::{RabbitConfig, UrlRef};
use crate::error::classify;
use crate::message::Layout;

/// After a failed connection attempt, publishes fail fast for this long instead of each trying
/// to connect again: a down broker gets one attempt per gap, not one per webhook.
const RECONNECT_GAP: Duration = Duration::from_millis(500);

/// One live connection and its confirm-mode channels.
struct Pool {
    connection: Connection,
    channels: Vec<Mutex<Channel>>,
}

/// Publishes events to RabbitMQ with publisher confirms.
pub struct RabbitSink {
    name: String,
    config: RabbitConfig,
    layout: Layout,
    url: String,
    current: RwLock<Option<Arc<Pool>>>,
    /// Serialises reconnection; holds the time of the last failed attempt.
    reconnect: tokio::sync::Mutex<Option<Instant>>,
    next: AtomicUsize,
}

impl RabbitSink {
    /// Builds the sink. No IO: the connection is made on first use.
    pub fn new(name: impl Into<String>, config: RabbitConfig) -> Result<Self, SinkError> {
        let url = match &config.url {
            None => "amqp://127.0.0.1:5672/%2f".to_owned(),
            Some(UrlRef::Plain(u)) => u.clone(),
            Some(UrlRef::Ref(r)) => r.resolve_text().map_err(SinkError::misconfigured)?,
        };
        let layout = Layout {
            exchange: compile(&config.exchange)?,
            routing_key: compile(&config.routing_key)?,
            headers: compile_headers(&config.headers)?,
            mode: config.mode,
            persistent: config.persistent,
            expiration_ms: config.expiration.map(|d| d.0.as_millis()),
            priority: config.priority,
        };
        Ok(RabbitSink {
            name: name.into(),
            config,
            layout,
            url,
            current: RwLock::new(None),
            reconnect: tokio::sync::Mutex::new(None),
            next: AtomicUsize::new(0),
        })
    }

    fn live(&self) -> Option<Arc<Pool>> {
        let guard = self.current.read().unwrap_or_else(PoisonError::into_inner);
        guard
            .as_ref()
            .filter(|p| p.connection.status().connected())
            .cloned()
    }

    /// The live pool, connecting if there is none (at most one attempt per [`RECONNECT_GAP`]).
    async fn pool(&self) -> Result<Arc<Pool>, SinkError> {
        if let Some(p) = self.live() {
            return Ok(p);
        }
        let mut last_failure = self.reconnect.lock().await;
        if let Some(p) = self.live() {
            return Ok(p); // another publish reconnected while we waited
        }
        if let Some(at) = *last_failure {
            if at.elapsed() < RECONNECT_GAP {
                return Err(SinkError::unavailable(
                    "RabbitMQ is unreachable (last attempt failed moments ago)",
                )
                .with_retry_after(Duration::from_secs(1)));
            }
        }
        let timeout = self
            .config
            .connect_timeout
            .map_or(crate::config::DEFAULT_CONNECT_TIMEOUT, |d| d.0);
        let result = match tokio::time::timeout(timeout, self.connect()).await {
            Ok(r) => r,
            Err(_) => Err(SinkError::timeout(format!(
                "connecting to RabbitMQ took longer than {timeout:?}"
            ))),
        };
        match result {
            Ok(pool) => {
                let pool = Arc::new(pool);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(pool.clone());
                *last_failure = None;
                tracing::info!(sink = %self.name, "RabbitMQ connected");
                Ok(pool)
            }
            Err(e) => {
                *last_failure = Some(Instant::now());
                tracing::warn!(sink = %self.name, error = %e, "RabbitMQ connection failed");
                Err(e)
            }
        }
    }

    async fn connect(&self) -> Result<Pool, SinkError> {
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(format!("hookbridge/{}", self.name)));
        let connection = Connection::connect(&self.url, props)
            .await
            .map_err(|e| classify("cannot connect to RabbitMQ", e))?;
        let mut channels = Vec::new();
        for _ in 0..self.config.channels.unwrap_or(4).max(1) {
            channels.push(Mutex::new(self.open_channel(&connection).await?));
        }
        if let (Some(spec), Some(first)) = (&self.config.declare_exchange, channels.first()) {
            let channel = first.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let kind = match spec.kind.as_str() {
                "direct" => ExchangeKind::Direct,
                "fanout" => ExchangeKind::Fanout,
                "headers" => ExchangeKind::Headers,
                _ => ExchangeKind::Topic,
            };
            let options = ExchangeDeclareOptions {
                durable: spec.durable,
                ..Default::default()
            };
            channel
                .exchange_declare(
                    ShortString::from(self.config.exchange.clone()),
                    kind,
                    options,
                    FieldTable::default(),
                )
                .await
                .map_err(|e| declare_failed("cannot declare the exchange", e))?;
        }
        if let (Some(spec), Some(first)) = (&self.config.declare_queue, channels.first()) {
            let channel = first.lock().unwrap_or_else(PoisonError::into_inner).clone();
            let name = ShortString::from(spec.name.clone());
            let options = QueueDeclareOptions {
                durable: spec.durable,
                ..Default::default()
            };
            channel
                .queue_declare(name.clone(), options, FieldTable::default())
                .await
                .map_err(|e| declare_failed("cannot declare the queue", e))?;
            channel
                .queue_bind(
                    name,
                    ShortString::from(self.config.exchange.clone()),
                    ShortString::from(spec.binding_key.clone()),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| declare_failed("cannot bind the queue", e))?;
        }
        Ok(Pool { connection, channels })
    }

    async fn open_channel(&self, connection: &Connection) -> Result<Channel, SinkError> {
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| classify("cannot open a channel", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| classify("cannot enable publisher confirms", e))?;
        Ok(channel)
    }

    /// A connected channel from the pool (round robin), reopening it if the broker closed it
    /// (e.g. after publishing to a missing exchange).
    async fn channel(&self, pool: &Pool) -> Result<Channel, SinkError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % pool.channels.len();
        let channel = pool.channels[i]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if channel.status().connected() {
            return Ok(channel);
        }
        let fresh = self.open_channel(&pool.connection).await?;
        *pool.channels[i].lock().unwrap_or_else(PoisonError::into_inner) = fresh.clone();
        Ok(fresh)
    }
}

#[async_trait]
impl Sink for RabbitSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    async fn publish(&self, event: &Event) -> Result<Receipt, SinkError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let m = self.layout.build(event, now)?;
        let pool = self.pool().await?;
        let channel = self.channel(&pool).await?;
        let options = BasicPublishOptions {
            mandatory: self.config.mandatory,
            ..Default::default()
        };
        let confirm = channel
            .basic_publish(
                ShortString::from(m.exchange.clone()),
                ShortString::from(m.routing_key.clone()),
                options,
                &m.body,
                m.properties,
            )
            .await
            .map_err(|e| classify("publish", e))?;
        let wait = self
            .config
            .confirm_timeout
            .map_or(crate::config::DEFAULT_CONFIRM_TIMEOUT, |d| d.0);
        let confirmation = tokio::time::timeout(wait, confirm)
            .await
            .map_err(|_| SinkError::timeout(format!("no publisher confirm within {wait:?}")))?
            .map_err(|e| classify("publisher confirm", e))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(Receipt::new(&self.name)
                .with("exchange", m.exchange)
                .with("routing_key", m.routing_key)
                .with("confirmed", true)),
            // RabbitMQ acks a returned mandatory message too: the ack alone is not success.
            Confirmation::Ack(Some(returned)) => Err(SinkError::rejected(format!(
                "unroutable: exchange {:?} has no queue bound for routing key {:?} ({} {})",
                m.exchange, m.routing_key, returned.reply_code, returned.reply_text
            ))),
            Confirmation::Nack(_) => Err(SinkError::new(ErrorKind::Nacked, "the broker nacked the message")),
            Confirmation::NotRequested => Err(SinkError::misconfigured(
                "publisher confirms are not enabled on the channel",
            )),
        }
    }

    async fn health(&self) -> Result<(), SinkError> {
        self.pool().await.map(|_| ())
    }

    async fn shutdown(&self) {
        let pool = self
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(pool) = pool {
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                pool.connection
                    .close(200, ShortString::from("hookbridge shutting down")),
            )
            .await;
        }
    }
}

/// A declaration refused at connect time (an existing queue or exchange with other settings, a
/// missing permission) is the sink being down — retryable, shown in `/readyz` — not a refusal
/// of each event: nothing about the event would change the answer.
fn declare_failed(what: &str, e: lapin::Error) -> SinkError {
    SinkError::unavailable(format!("{what}: {e}")).with_source(e)
}
