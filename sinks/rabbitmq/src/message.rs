//! Event → exchange, routing key, properties and body (pure).

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
        let mut table = FieldTable::default();
        let (content_type, body) = match self.mode {
            Mode::Binary => {
                for (name, value) in event.attributes() {
                    if name != "datacontenttype" {
                        table.insert(ShortString::from(format!("cloudEvents_{name}")), long(&value));
                    }
                }
                (
                    event.datacontenttype.clone(),
                    event.data.as_deref().unwrap_or_default().to_vec(),
                )
            }
            Mode::Structured => (
                Some("application/cloudevents+json".to_owned()),
                event.to_structured_json(),
            ),
        };
        for (name, template) in &self.headers {
            table.insert(
                ShortString::from(name.clone()),
                long(&render("header", template)?),
            );
        }
        let mut props = BasicProperties::default()
            .with_message_id(ShortString::from(event.id.clone()))
            .with_timestamp(now)
            .with_headers(table);
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
    fn missing_template_field_is_permanent() {
        let mut l = layout(Mode::Binary);
        l.routing_key = Template::compile("{partitionkey}").expect("t");
        assert!(!l.build(&event(), 0).expect_err("missing").is_retryable());
    }
}
