//! The `rabbitmq` sink: CloudEvents to RabbitMQ (AMQP 0-9-1) with **publisher confirms**.
//!
//! What "delivered" means here: the broker confirmed the publish (`basic.ack` in confirm mode).
//! A `basic.nack` is an error (retryable), and so is an unroutable `mandatory` message: RabbitMQ
//! returns it and then acks it, which lapin reports as `Confirmation::Ack(Some(returned))` — an
//! ack alone is not success (permanent failure: no queue is bound for that routing key).
//! Messages are persistent (delivery mode 2) by default.
//!
//! Binding: binary mode (default) puts every CloudEvents attribute in the `headers` table as
//! `cloudEvents_<attr>` and the data in the body, with `content_type` = `datacontenttype`;
//! structured mode sends the JSON envelope as `application/cloudevents+json`. `message_id` is the
//! event id; `timestamp` the publish time.
//!
//! Connections: lazy (hookbridge starts while RabbitMQ is down), re-established on the next
//! publish after a loss (attempts are spaced so a down broker is not hammered). A small pool of
//! confirm-mode channels carries many unconfirmed publishes at once.
//!
//! ```toml
//! [sinks.rabbit]
//! type = "rabbitmq"
//! url = { env = "AMQP_URL" }            # or "amqp://guest:guest@127.0.0.1:5672/%2f"
//! exchange = "hooks"
//! routing_key = "{hbsource}.{type}"
//! ```

mod config;
mod error;
/// The pure event → message builder, public for the fuzz targets (not a stable API).
#[doc(hidden)]
pub mod message;
mod sink;

pub use config::{ExchangeSpec, RabbitConfig, UrlRef};
pub use sink::RabbitSink;
