//! Event → exchange, routing key, properties and body (pure).

use hookbridge_sink_core::binding::{self, Prefix};
use hookbridge_sink_core::{Event, Mode, SinkError, Template};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

/// A compiled message layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub exchange: Template,
    pub routing_key: Template,
    pub headers: Vec<(String, Template)>,
    pub mode: Mode,
    pub persistent: bool,
    pub expiration_ms: Option<u128>,
    pub priority: Option<u8>,
}

/// What to publish.
#[derive(Debug)]
pub struct Message {
    pub exchange: String,
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Vec<u8>,
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// AMQP 0-9-1 short strings (property values, header-table keys) hold at most 255 bytes; lapin
/// panics beyond that.
const SHORT_MAX: usize = 255;

/// Most bytes of the header table (one frame carries all properties; RabbitMQ's default frame
/// is 128 KiB).
const MAX_HEADER_TABLE: usize = 64 * 1024;

/// A header-table key: refused, naming it, if it cannot be a short string — never a panic.
fn key(name: &str) -> Result<ShortString, SinkError> {
    if name.len() > SHORT_MAX {
        return Err(SinkError::rejected(format!(
            "header name of {} bytes: AMQP allows {SHORT_MAX}",
            name.len()
        )));
    }
    Ok(ShortString::from(name.to_owned()))
}

impl Layout {
    /// Builds the message for `event` published at unix time `now`.
    pub fn build(&self, event: &Event, now: u64) -> Result<Message, SinkError> {
        let render = |what: &str, t: &Template| {
            t.render(event)
                .map_err(|e| SinkError::rejected(format!("{what} template {:?}: {e}", t.as_str())))
        };
        let exchange = render("exchange", &self.exchange)?;
        let routing_key = render("routing_key", &self.routing_key)?;
        if exchange.len() > 255 || routing_key.len() > 255 {
            return Err(SinkError::rejected(
                "exchange and routing key are limited to 255 bytes",
            ));
        }
        // The binding (sinks/core) says which headers — attributes, kept request headers and
        // W3C trace context, templates, as every broker sink sends them; AMQP's rules are
        // applied here: values are long strings, names short strings (at most 255 bytes).
        let bound = binding::bind(event, self.mode, Prefix::Amqp, &self.headers)?;
        let mut table = FieldTable::default();
        // The properties travel in one frame: a header table over the negotiated frame size
        // (128 KiB by default) makes RabbitMQ close the whole connection, failing every publish
        // in flight. Refused, permanently, well below it.
        let mut table_bytes = 0usize;
        for h in &bound.headers {
            table_bytes += 1 + h.name.as_str().len() + 5 + h.value.len();
            table.insert(key(h.name.as_str())?, long(&h.value));
        }
        if table_bytes > MAX_HEADER_TABLE {
            return Err(SinkError::rejected(format!(
                "headers of {table_bytes} bytes; AMQP properties hold at most {MAX_HEADER_TABLE} here"
            )));
        }
        let content_type = bound.content_type.map(|c| c.into_owned());
        let body = bound.body.to_vec();
        // The content type is a short string: one that does not fit travels in the table
        // (`cloudEvents_datacontenttype`) instead.
        let content_type = match content_type {
            Some(ct) if ct.len() > SHORT_MAX => {
                table.insert(ShortString::from("cloudEvents_datacontenttype"), long(&ct));
                None
            }
            other => other,
        };
        let mut props = BasicProperties::default().with_timestamp(now).with_headers(table);
        // `message_id` is a short string too: an id that does not fit is left out there (it is
        // still the `cloudEvents_id` header, or in the structured body).
        if event.id.len() <= SHORT_MAX {
            props = props.with_message_id(ShortString::from(event.id.clone()));
        }
        if let Some(ct) = content_type {
            props = props.with_content_type(ShortString::from(ct));
        }
        if self.persistent {
            props = props.with_delivery_mode(2);
        }
        if let Some(ms) = self.expiration_ms {
            props = props.with_expiration(ShortString::from(ms.to_string()));
        }
        if let Some(p) = self.priority {
            props = props.with_priority(p);
        }
        Ok(Message {
            exchange,
            routing_key,
            properties: props,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(mode: Mode) -> Layout {
        Layout {
            exchange: Template::compile("hooks").expect("t"),
            routing_key: Template::compile("{hbsource}.{type}").expect("t"),
            headers: vec![("x-company".into(), Template::compile("{subject}").expect("t"))],
            mode,
            persistent: true,
            expiration_ms: Some(60_000),
            priority: Some(3),
        }
    }

    fn event() -> Event {
        let mut e = Event::new("198:abc", "urn:s", "it.fic.clients.create");
        e.subject = Some("company:1".into());
        e.datacontenttype = Some("application/json".into());
        e.data = Some(bytes::Bytes::from_static(b"{\"ids\":[1]}"));
        e.extensions.insert("hbsource".into(), "fic".into());
        e
    }

    #[test]
    fn binary_message() {
        let m = layout(Mode::Binary)
            .build(&event(), 1_700_000_000)
            .expect("build");
        assert_eq!(
            (m.exchange.as_str(), m.routing_key.as_str()),
            ("hooks", "fic.it.fic.clients.create")
        );
        assert_eq!(m.body, b"{\"ids\":[1]}");
        let p = &m.properties;
        assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("198:abc"));
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(*p.timestamp(), Some(1_700_000_000));
        assert_eq!(p.expiration().as_ref().map(|s| s.as_str()), Some("60000"));
        assert_eq!(*p.priority(), Some(3));
        let headers = p.headers().as_ref().expect("headers");
        let get = |k: &str| headers.inner().get(k).cloned();
        assert_eq!(get("cloudEvents_id"), Some(long("198:abc")));
        assert_eq!(get("cloudEvents_hbsource"), Some(long("fic")));
        assert_eq!(get("x-company"), Some(long("company:1")));
        assert_eq!(get("cloudEvents_datacontenttype"), None);
    }

    #[test]
    fn structured_message() {
        let m = layout(Mode::Structured).build(&event(), 0).expect("build");
        assert_eq!(
            m.properties.content_type().as_ref().map(|s| s.as_str()),
            Some("application/cloudevents+json")
        );
        let v: serde_json::Value = serde_json::from_slice(&m.body).expect("json");
        assert_eq!(v["id"], "198:abc");
        let headers = m.properties.headers().as_ref().expect("headers");
        assert!(headers.inner().get("cloudEvents_id").is_none());
    }

    #[test]
    fn over_long_fields_are_omitted_or_refused_never_a_panic() {
        let mut e = event();
        e.id = "i".repeat(300);
        e.datacontenttype = Some(format!("application/{}", "x".repeat(300)));
        e.headers.push(("x-kept".into(), "kept".into()));
        e.extensions.insert("traceparent".into(), "00-abc-def-01".into());
        for mode in [Mode::Binary, Mode::Structured] {
            let m = layout(mode).build(&e, 0).expect("build");
            let p = &m.properties;
            assert!(
                p.message_id().is_none(),
                "a 300-byte id is left out of message_id"
            );
            let headers = p.headers().as_ref().expect("headers");
            let get = |k: &str| headers.inner().get(k).cloned();
            assert_eq!(get("x-kept"), Some(long("kept")), "kept headers in {mode:?}");
            assert_eq!(
                get("traceparent"),
                Some(long("00-abc-def-01")),
                "traceparent in {mode:?}"
            );
            if mode == Mode::Binary {
                assert!(p.content_type().is_none());
                assert_eq!(get("cloudEvents_id"), Some(long(&e.id)));
                assert!(get("cloudEvents_datacontenttype").is_some());
            }
            // Every short string fits (lapin panics on one that does not).
            assert!(headers.inner().keys().all(|k| k.as_str().len() <= SHORT_MAX));
        }
        let mut e = event();
        e.headers.push(("h".repeat(300), "v".into()));
        assert!(!layout(Mode::Binary)
            .build(&e, 0)
            .expect_err("refused")
            .is_retryable());
    }

    #[test]
    fn a_header_table_over_the_frame_is_refused() {
        let mut e = event();
        e.extensions
            .insert("big".into(), "b".repeat(200_000).as_str().into());
        for mode in [Mode::Binary, Mode::Structured] {
            let mut e = e.clone();
            if mode == Mode::Structured {
                e.headers.push(("x-big".into(), "b".repeat(200_000)));
            }
            let err = layout(mode).build(&e, 0).expect_err("too big");
            assert!(!err.is_retryable(), "{mode:?}");
        }
    }

    #[test]
    fn missing_template_field_is_permanent() {
        let mut l = layout(Mode::Binary);
        l.routing_key = Template::compile("{partitionkey}").expect("t");
        assert!(!l.build(&event(), 0).expect_err("missing").is_retryable());
    }
}
