//! Connection management and the [`Sink`] implementation.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::{self, message::PublishMessage};
use async_nats::{Client, ConnectOptions};
use async_trait::async_trait;
use hookbridge_sink_core::binding::{compile, compile_headers};
use hookbridge_sink_core::{Event, Receipt, Sink, SinkError};
use tokio::sync::OnceCell;

use crate::batch::{BatchError, Batcher};
use crate::config::NatsConfig;
use crate::error::publish_error;
use crate::message::Layout;

/// Publishes events to NATS.
pub struct NatsSink {
    name: String,
    config: NatsConfig,
    layout: Layout,
    client: OnceCell<Client>,
    /// One JetStream context for the sink's life: building one spawns its ack-handling task,
    /// which per event cost more CPU than the publish itself (BENCHMARKS.md).
    js: std::sync::OnceLock<jetstream::Context>,
    /// Hands each scheduler turn's publishes to async-nats together (one write; see `batch`).
    batcher: std::sync::OnceLock<Batcher>,
    stream_ready: OnceCell<()>,
    /// Flips to `true` on the first successful connection (from async-nats' event callback).
    ever_connected: tokio::sync::watch::Sender<bool>,
}

impl NatsSink {
    /// Builds the sink. No IO: the connection is made on first use and retried in the
    /// background. Fails only on a template that [`NatsConfig::validate`] would have rejected.
    pub fn new(name: impl Into<String>, config: NatsConfig) -> Result<Self, SinkError> {
        let layout = Layout {
            subject: compile(&config.subject)?,
            headers: compile_headers(&config.headers)?,
            mode: config.mode,
            jetstream: config.jetstream,
        };
        Ok(NatsSink {
            name: name.into(),
            config,
            layout,
            client: OnceCell::new(),
            js: std::sync::OnceLock::new(),
            batcher: std::sync::OnceLock::new(),
            stream_ready: OnceCell::new(),
            ever_connected: tokio::sync::watch::Sender::new(false),
        })
    }

    async fn options(&self) -> Result<ConnectOptions, SinkError> {
        let c = &self.config;
        let secret = |r: &hookbridge_sink_core::settings::SecretRef| {
            r.resolve_text().map_err(SinkError::misconfigured)
        };
        let max_delay = c.max_reconnect_delay.map_or(Duration::from_secs(2), |d| d.0);
        let connected = self.ever_connected.clone();
        let sink = self.name.clone();
        let mut opts = ConnectOptions::new()
            .event_callback(move |event| {
                match &event {
                    async_nats::Event::Connected => {
                        connected.send_replace(true);
                        tracing::info!(sink = %sink, "NATS connected");
                    }
                    async_nats::Event::Disconnected => tracing::warn!(sink = %sink, "NATS disconnected"),
                    other => tracing::debug!(sink = %sink, event = %other, "NATS event"),
                }
                async {}
            })
            .name(format!("hookbridge/{}", self.name))
            // Start while NATS is down; keep reconnecting forever, quickly, so a broker that
            // comes back is used again without restarting hookbridge.
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempts| {
                let ms = 50u64.saturating_mul(1 << attempts.min(10)) as u128;
                Duration::from_millis(ms.min(max_delay.as_millis()) as u64)
            })
            .connection_timeout(
                c.connect_timeout
                    .map_or(crate::config::DEFAULT_CONNECT_TIMEOUT, |d| d.0),
            );
        if let Some(t) = &c.token {
            opts = opts.token(secret(t)?);
        }
        if let (Some(user), Some(pass)) = (&c.user, &c.password) {
            opts = opts.user_and_password(user.clone(), secret(pass)?);
        }
        if let Some(n) = &c.nkey {
            opts = opts.nkey(secret(n)?);
        }
        if let Some(creds) = &c.credentials {
            opts = opts
                .credentials(&secret(creds)?)
                .map_err(|e| SinkError::misconfigured("invalid NATS credentials").with_source(e))?;
        }
        if let Some(tls) = &c.tls {
            opts = opts.require_tls(tls.required);
            if let Some(ca) = &tls.ca_file {
                opts = opts.add_root_certificates(ca.clone());
            }
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                opts = opts.add_client_certificate(cert.clone(), key.clone());
            }
        }
        Ok(opts)
    }

    async fn client(&self) -> Result<&Client, SinkError> {
        self.client
            .get_or_try_init(|| async {
                let opts = self.options().await?;
                // With retry_on_initial_connect this returns at once and connects in the
                // background.
                async_nats::connect_with_options(self.config.url.as_str(), opts)
                    .await
                    .map_err(|e| {
                        SinkError::misconfigured(format!("NATS url {:?}", self.config.url)).with_source(e)
                    })
            })
            .await
    }

    /// The connected client, or `Unavailable` at once while the connection is down (so the
    /// webhook gets a fast 503 instead of a message buffered in the client).
    async fn connected(&self, wait_first: bool) -> Result<&Client, SinkError> {
        let client = self.client().await?;
        if wait_first && client.connection_state() == State::Pending && !*self.ever_connected.borrow() {
            // The very first connection is still being made (lazy start): give it the connect
            // timeout rather than failing the first event. The publish deadline still bounds it.
            let timeout = self
                .config
                .connect_timeout
                .map_or(crate::config::DEFAULT_CONNECT_TIMEOUT, |d| d.0);
            let mut rx = self.ever_connected.subscribe();
            let _ = tokio::time::timeout(timeout, rx.wait_for(|c| *c)).await;
        }
        match client.connection_state() {
            State::Connected => Ok(client),
            state => Err(SinkError::unavailable(format!(
                "NATS {} is not connected ({state:?})",
                self.config.url
            ))),
        }
    }

    /// The sink's JetStream context (made on first use, inside the runtime).
    fn jetstream(&self, client: &Client) -> &jetstream::Context {
        self.js.get_or_init(|| jetstream::new(client.clone()))
    }

    async fn ensure_stream(&self, client: &Client) -> Result<(), SinkError> {
        let Some(spec) = &self.config.create_stream else {
            return Ok(());
        };
        self.stream_ready
            .get_or_try_init(|| async {
                let js = self.jetstream(client);
                let config = jetstream::stream::Config {
                    name: spec.name.clone(),
                    subjects: spec.subjects.clone(),
                    duplicate_window: spec.duplicate_window.map_or(Duration::from_secs(120), |d| d.0),
                    max_age: spec.max_age.map_or(Duration::ZERO, |d| d.0),
                    ..Default::default()
                };
                js.get_or_create_stream(config).await.map(|_| ()).map_err(|e| {
                    SinkError::unavailable(format!("cannot create stream {:?}", spec.name)).with_source(e)
                })
            })
            .await
            .map(|_| ())
    }

    async fn publish_jetstream(
        &self,
        client: &Client,
        m: crate::message::Message,
    ) -> Result<Receipt, SinkError> {
        self.ensure_stream(client).await?;
        let batcher = self
            .batcher
            .get_or_init(|| Batcher::spawn(self.jetstream(client).clone()));
        let mut publish = PublishMessage::build()
            .payload(m.payload)
            // `Nats-Msg-Id` is in the headers already: the delivery key, never the raw id.
            .headers(m.headers);
        if let Some(stream) = &self.config.expected_stream {
            publish = publish.expected_stream(stream);
        }
        let ack = batcher
            .publish(m.subject.clone(), publish)
            .await
            .map_err(|e| match e {
                BatchError::Publish(e) => publish_error(&m.subject, e),
                BatchError::Closed => SinkError::unavailable("the NATS sink is shutting down"),
            })?
            .await
            .map_err(|e| publish_error(&m.subject, e))?;
        Ok(Receipt::new(&self.name)
            .with("subject", m.subject)
            .with("stream", ack.stream)
            .with("sequence", ack.sequence)
            .with("duplicate", ack.duplicate))
    }
}

#[async_trait]
impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "nats"
    }

    async fn publish(&self, event: &Event) -> Result<Receipt, SinkError> {
        let message = self.layout.build(event)?;
        let client = self.connected(true).await?;
        if self.config.jetstream {
            return self.publish_jetstream(client, message).await;
        }
        let subject = message.subject.clone();
        client
            .publish_with_headers(message.subject, message.headers, message.payload)
            .await
            .map_err(|e| crate::error::core_publish_error(&subject, e))?;
        // Core NATS has no acknowledgement: flushing proves the server got the bytes, nothing
        // more. The receipt says so.
        client
            .flush()
            .await
            .map_err(|e| SinkError::unavailable("NATS flush").with_source(e))?;
        Ok(Receipt::new(&self.name)
            .with("subject", subject)
            .with("delivery", "at_most_once"))
    }

    async fn health(&self) -> Result<(), SinkError> {
        // Never waits: readiness probes must answer fast. The first call starts the connection.
        self.connected(false).await.map(|_| ())
    }

    async fn shutdown(&self) {
        if let Some(client) = self.client.get() {
            let _ = tokio::time::timeout(Duration::from_secs(5), client.flush()).await;
        }
    }
}
