//! Event → topic, key, headers and value (pure).

use hookbridge_sink_core::binding::{self, Origin, Prefix};
use hookbridge_sink_core::{Event, Mode, SinkError, Template};

/// A compiled record layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub topic: Template,
    pub key: Option<Template>,
    pub headers: Vec<(String, Template)>,
    pub mode: Mode,
}

/// Kafka's own rule for topic names: 1 to 249 of `[a-zA-Z0-9._-]`, and not `.` or `..`. A
/// rendered topic outside it is refused here (permanently) rather than by the broker.
pub fn legal_topic(topic: &str) -> bool {
    (1..=249).contains(&topic.len())
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// What to produce.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub key: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub value: Vec<u8>,
}

impl Layout {
    /// Builds the record for `event`.
    pub fn build(&self, event: &Event) -> Result<Record, SinkError> {
        let render = |what: &str, t: &Template| {
            t.render(event)
                .map_err(|e| SinkError::rejected(format!("{what} template {:?}: {e}", t.as_str())))
        };
        let topic = render("topic", &self.topic)?;
        if !legal_topic(&topic) {
            return Err(SinkError::rejected(format!("invalid topic name {topic:?}")));
        }
        let key = match &self.key {
            Some(t) => Some(render("key", t)?),
            // Design §2: the partitionkey extension, else the subject (per-company order for FIC).
            None => event.attribute("partitionkey").or_else(|| event.subject.clone()),
        };
        // The binding (sinks/core) says which headers; Kafka carries names and values as bytes,
        // as they are. The content type follows the attribute headers.
        let bound = binding::bind(event, self.mode, Prefix::Kafka, &self.headers)?;
        let mut headers = Vec::with_capacity(bound.headers.len() + 1);
        let mut rest = bound.headers.into_iter().peekable();
        while let Some(h) = rest.next_if(|h| h.origin == Origin::Attribute) {
            headers.push((h.name.as_str().to_owned(), h.value.into_owned().into_bytes()));
        }
        if let Some(ct) = bound.content_type {
            headers.push(("content-type".to_owned(), ct.into_owned().into_bytes()));
        }
        for h in rest {
            headers.push((h.name.as_str().to_owned(), h.value.into_owned().into_bytes()));
        }
        // A configured header name can be empty (found by the `messages` fuzz target): a record
        // header without a name is refused, permanently, rather than sent.
        if headers.iter().any(|(k, _)| k.is_empty()) {
            return Err(SinkError::rejected("a header with an empty name"));
        }
        let value = bound.body.to_vec();
        Ok(Record {
            topic,
            key,
            headers,
            value,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let mut e = Event::new("198:abc", "urn:s", "it.fic.clients.create");
        e.subject = Some("company:1".into());
        e.datacontenttype = Some("application/json".into());
        e.data = Some(bytes::Bytes::from_static(b"{\"ids\":[1]}"));
        e
    }

    fn layout(key: Option<&str>, mode: Mode) -> Layout {
        Layout {
            topic: Template::compile("fic.{type}").expect("t"),
            key: key.map(|k| Template::compile(k).expect("t")),
            headers: vec![("x-id".into(), Template::compile("{id}").expect("t"))],
            mode,
        }
    }

    #[test]
    fn binary_record_and_key_defaults() {
        let r = layout(None, Mode::Binary).build(&event()).expect("build");
        assert_eq!(r.topic, "fic.it.fic.clients.create");
        assert_eq!(r.key.as_deref(), Some("company:1"), "subject by default");
        assert_eq!(r.value, b"{\"ids\":[1]}");
        assert!(r.headers.contains(&("ce_id".into(), b"198:abc".to_vec())));
        assert!(r
            .headers
            .contains(&("content-type".into(), b"application/json".to_vec())));
        assert!(r.headers.contains(&("x-id".into(), b"198:abc".to_vec())));
        assert!(!r.headers.iter().any(|(k, _)| k == "ce_datacontenttype"));

        let mut e = event();
        e.extensions.insert("partitionkey".into(), "pk-1".into());
        assert_eq!(
            layout(None, Mode::Binary).build(&e).expect("b").key.as_deref(),
            Some("pk-1")
        );
        assert_eq!(
            layout(Some("{id}"), Mode::Binary)
                .build(&e)
                .expect("b")
                .key
                .as_deref(),
            Some("198:abc")
        );
        e.subject = None;
        e.extensions.clear();
        assert_eq!(layout(None, Mode::Binary).build(&e).expect("b").key, None);
    }

    #[test]
    fn structured_record() {
        let r = layout(None, Mode::Structured).build(&event()).expect("build");
        assert_eq!(
            r.headers[0],
            ("content-type".into(), b"application/cloudevents+json".to_vec())
        );
        let v: serde_json::Value = serde_json::from_slice(&r.value).expect("json");
        assert_eq!(v["id"], "198:abc");
    }
}
