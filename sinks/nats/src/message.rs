//! Event → subject, headers and payload (pure).

use std::borrow::Cow;

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;
use hookbridge_sink_core::binding::{self, Name, Origin, Prefix};
use hookbridge_sink_core::{header_value_text, Event, Mode, SinkError, Template};

/// A compiled NATS message layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub subject: Template,
    pub headers: Vec<(String, Template)>,
    pub mode: Mode,
    pub jetstream: bool,
}

/// What to publish.
#[derive(Debug)]
pub struct Message {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

/// Longest subject published (NATS's control line is 4 KiB by default).
pub const MAX_SUBJECT: usize = 1024;

/// Most bytes of a message's header block. JetStream refuses headers over 64 KiB (error 10097:
/// the publish fails after the round trip, and was retried as if the server were down):
/// refused here, permanently, before anything is sent.
pub const MAX_HEADER_BLOCK: usize = 64_000;

/// A subject value with the characters a token cannot hold (whitespace, control characters,
/// wildcards) replaced by `_`.
pub fn escape_subject_value(value: &str) -> String {
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '*' || c == '>';
    if !value.contains(bad) {
        return value.to_owned();
    }
    value.chars().map(|c| if bad(c) { '_' } else { c }).collect()
}

/// A header value, percent-encoded as the binding asks, with a single allocation. The encoding
/// leaves only printable ASCII, so async-nats (which panics on CR or LF) always takes it.
fn header_value(text: &str) -> HeaderValue {
    match header_value_text(text) {
        Cow::Borrowed(s) => HeaderValue::from(s),
        Cow::Owned(s) => HeaderValue::from(s),
    }
}

/// A header name from outside (a kept request header, an extension, a configured header):
/// refused, naming it, if NATS cannot carry it — never a panic.
fn header_name(name: &str) -> Result<HeaderName, SinkError> {
    name.parse::<HeaderName>().map_err(|_| {
        SinkError::rejected(format!(
            "header name {:?} cannot be sent over NATS",
            name.escape_debug()
        ))
    })
}

impl Layout {
    /// Builds the message for `event`.
    pub fn build(&self, event: &Event) -> Result<Message, SinkError> {
        let subject = self
            .subject
            .render_with(event, escape_subject_value)
            .map_err(|e| SinkError::rejected(format!("subject template {:?}: {e}", self.subject.as_str())))?;
        if subject.split('.').any(str::is_empty) {
            return Err(SinkError::rejected(format!(
                "subject {:?} has an empty token",
                subject.escape_debug()
            )));
        }
        // A subject longer than the server's control line (4 KiB by default) drops the whole
        // connection, failing every publish in flight: refused, permanently, well before.
        if subject.len() > MAX_SUBJECT {
            return Err(SinkError::rejected(format!(
                "subject of {} bytes; at most {MAX_SUBJECT}",
                subject.len()
            )));
        }
        // The binding (sinks/core) says which headers; NATS's rules are applied here: every
        // value percent-encoded (async-nats panics on CR or LF), names it cannot carry refused.
        let bound = binding::bind(event, self.mode, Prefix::Http, &self.headers)?;
        let mut headers = HeaderMap::new();
        // "NATS/1.0\r\n" … "\r\n", then "name: value\r\n" per header; the message id's
        // (under 64 bytes) counted ahead.
        let content_type = bound.content_type.as_deref().map(header_value);
        let mut block = 12 + 64 + content_type.as_ref().map_or(0, |v| 16 + v.as_str().len());
        for h in bound.headers {
            let value = header_value(&h.value);
            block += h.name.as_str().len() + value.as_str().len() + 4;
            if block > MAX_HEADER_BLOCK {
                return Err(SinkError::rejected(format!(
                    "headers over {MAX_HEADER_BLOCK} bytes (the NATS server refuses more)"
                )));
            }
            let name = match h.name {
                Name::Static(n) => HeaderName::from_static(n),
                other => header_name(other.as_str())?,
            };
            match h.origin {
                Origin::Kept => headers.append(name, value),
                _ => headers.insert(name, value),
            }
        }
        if block > MAX_HEADER_BLOCK {
            return Err(SinkError::rejected(format!(
                "headers over {MAX_HEADER_BLOCK} bytes (the NATS server refuses more)"
            )));
        }
        if let Some(ct) = content_type {
            headers.insert(HeaderName::from_static("content-type"), ct);
        }
        if self.jetstream {
            // JetStream drops a re-sent id within the stream's duplicate window: the delivery
            // key (source name, CE source, id; a replay's own), so another producer's event with
            // the same id is not dropped, and no event text reaches the header.
            headers.insert(HeaderName::from_static("Nats-Msg-Id"), event.delivery_key());
        }
        let payload = bound.body;
        Ok(Message {
            subject,
            headers,
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let mut e = Event::new(
            "198:abc",
            "https://api-v2.fattureincloud.it",
            "it.fic.clients.create",
        );
        e.subject = Some("company:1 x".into());
        e.datacontenttype = Some("application/json".into());
        e.data = Some(Bytes::from_static(b"{\"ids\":[1]}"));
        e
    }

    fn layout(subject: &str, mode: Mode, jetstream: bool) -> Layout {
        Layout {
            subject: Template::compile(subject).expect("template"),
            headers: vec![("x-src".into(), Template::compile("{source}").expect("t"))],
            mode,
            jetstream,
        }
    }

    #[test]
    fn binary_message() {
        let m = layout("fic.{type}", Mode::Binary, true)
            .build(&event())
            .expect("build");
        assert_eq!(m.subject, "fic.it.fic.clients.create");
        assert_eq!(m.payload, Bytes::from_static(b"{\"ids\":[1]}"));
        let h = |k: &str| m.headers.get(k).map(|v| v.as_str().to_owned());
        assert_eq!(h("ce-id").as_deref(), Some("198:abc"));
        assert_eq!(h("ce-subject").as_deref(), Some("company:1%20x"));
        assert_eq!(h("content-type").as_deref(), Some("application/json"));
        assert_eq!(h("Nats-Msg-Id"), Some(event().delivery_key()));
        assert_eq!(h("x-src").as_deref(), Some("https://api-v2.fattureincloud.it"));
        assert_eq!(h("ce-datacontenttype"), None);
    }

    #[test]
    fn a_header_block_over_the_servers_limit_is_refused_permanently() {
        // JetStream refuses headers over 64 KiB after the round trip (seen: 5,000 extensions
        // retried as if the server were down); refused here instead.
        let mut e = event();
        for i in 0..5000 {
            e.extensions.insert(format!("e{i}"), format!("v{i}\r\n").into());
        }
        let err = layout("hooks.{type}", Mode::Binary, true)
            .build(&e)
            .expect_err("too many headers");
        assert!(
            !err.is_retryable() && err.to_string().contains("headers over"),
            "{err}"
        );
        let mut e = event();
        e.datacontenttype = Some("x".repeat(70_000));
        let err = layout("hooks.{type}", Mode::Binary, true)
            .build(&e)
            .expect_err("a huge content type");
        assert!(!err.is_retryable(), "{err}");
        let mut e = event();
        for i in 0..100 {
            e.extensions.insert(format!("e{i}"), "v".repeat(100).into());
        }
        layout("hooks.{type}", Mode::Binary, true)
            .build(&e)
            .expect("100 small extensions fit");
    }

    #[test]
    fn hostile_fields_never_panic_and_never_reach_a_header_raw() {
        // async-nats panics on CR or LF in a header: every field from outside is encoded.
        let mut e = event();
        e.id = "x\r\ninjected: 1".into();
        e.datacontenttype = Some("application/json\r\nPUB evil 0".into());
        e.extensions.insert("traceparent".into(), "00-\n-01".into());
        e.extensions.insert("partitionkey".into(), "a\rb".into());
        e.headers.push(("x-kept".into(), "v\r\nw".into()));
        for mode in [Mode::Binary, Mode::Structured] {
            let m = layout("fic.{type}", mode, true).build(&e).expect("build");
            for (name, values) in m.headers.iter() {
                for v in values {
                    assert!(
                        v.as_str().bytes().all(|b| (0x20..0x7f).contains(&b)),
                        "{name}: {:?}",
                        v.as_str()
                    );
                }
            }
        }
        // A header name NATS cannot carry is refused, not a panic.
        e.headers.push(("bad name:".into(), "v".into()));
        let err = layout("fic.{type}", Mode::Binary, true)
            .build(&e)
            .expect_err("refused");
        assert!(!err.is_retryable());
    }

    #[test]
    fn a_long_or_control_character_subject_is_refused_or_escaped() {
        let mut e = event();
        e.ty = "a".repeat(5000);
        let err = layout("fic.{type}", Mode::Binary, true)
            .build(&e)
            .expect_err("long");
        assert!(!err.is_retryable());
        e.ty = "t\0x\u{7f}y".into();
        let m = layout("fic.{type}", Mode::Binary, true)
            .build(&e)
            .expect("escaped");
        assert_eq!(m.subject, "fic.t_x_y");
    }

    #[test]
    fn premade_header_names_are_the_bindings_names() {
        for attr in hookbridge_sink_core::binding::PREMADE.iter().copied() {
            // The binding's premade names become NATS header names without a check
            // (`from_static`): each must be one, and be `ce-<attribute>`.
            let mut e = event();
            e.extensions.insert(attr.into(), "v".into());
            let m = layout("x", Mode::Binary, false).build(&e).expect(attr);
            assert!(m.headers.get(format!("ce-{attr}").as_str()).is_some(), "{attr}");
        }
        // Other extensions (and non-string values) still get `ce-<name>` headers.
        let mut e = event();
        e.extensions.insert(
            "companyid".into(),
            hookbridge_sink_core::ExtensionValue::Integer(108061),
        );
        e.extensions.insert("hbsource".into(), "fic".into());
        let m = layout("x", Mode::Binary, false).build(&e).expect("build");
        let h = |k: &str| m.headers.get(k).map(|v| v.as_str().to_owned());
        assert_eq!(h("ce-companyid").as_deref(), Some("108061"));
        assert_eq!(h("ce-hbsource").as_deref(), Some("fic"));
    }

    #[test]
    fn structured_message_and_core_mode() {
        let m = layout("x", Mode::Structured, false)
            .build(&event())
            .expect("build");
        assert_eq!(
            m.headers.get("content-type").map(|v| v.as_str()),
            Some("application/cloudevents+json")
        );
        assert!(m.headers.get("Nats-Msg-Id").is_none());
        assert!(m.headers.get("ce-id").is_none());
        let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("json");
        assert_eq!(v["id"], "198:abc");
    }

    #[test]
    fn subject_escaping_and_empty_tokens() {
        let m = layout("c.{subject}", Mode::Binary, false)
            .build(&event())
            .expect("build");
        assert_eq!(m.subject, "c.company:1_x");
        let mut e = event();
        e.subject = Some("a*b>c\td".into());
        assert_eq!(
            layout("{subject}", Mode::Binary, false)
                .build(&e)
                .expect("b")
                .subject,
            "a_b_c_d"
        );
        e.ty = "a..b".into();
        let err = layout("{type}", Mode::Binary, false)
            .build(&e)
            .expect_err("empty token");
        assert!(!err.is_retryable());
        let err = layout("x.{partitionkey}", Mode::Binary, false)
            .build(&event())
            .expect_err("missing");
        assert!(!err.is_retryable());
    }
}
