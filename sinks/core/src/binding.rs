//! The CloudEvents protocol binding, built once for every sink: which headers an event becomes
//! (binary-mode attribute headers, kept request headers, `traceparent`, configured template
//! headers), its content type and its body, per mode. Each sink supplies its protocol's header
//! prefix here and applies its own encoding rules to what comes out (percent-encoding for HTTP
//! and NATS, bytes for Kafka, AMQP long strings), so the four sinks cannot diverge on what they
//! send — they did: RabbitMQ dropped kept headers and `traceparent`.
//!
//! Values come out as the event has them (unencoded): a sink must encode or bound every one
//! before it reaches its protocol.

use std::borrow::Cow;

use bytes::Bytes;

use crate::{Event, Mode, SinkError, Template};

/// How a protocol names binary-mode attribute headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    /// `ce-<attribute>`: HTTP and NATS.
    Http,
    /// `ce_<attribute>`: Kafka.
    Kafka,
    /// `cloudEvents_<attribute>`: AMQP.
    Amqp,
}

impl Prefix {
    fn text(self) -> &'static str {
        match self {
            Prefix::Http => "ce-",
            Prefix::Kafka => "ce_",
            Prefix::Amqp => "cloudEvents_",
        }
    }
}

/// A header name: made once for the usual attributes (no allocation per event), else borrowed
/// from the event or the configuration, or formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name<'a> {
    /// A name known at compile time.
    Static(&'static str),
    /// A name from the event (a kept request header) or the configuration (a template header).
    Borrowed(&'a str),
    /// A prefixed extension name.
    Owned(String),
}

impl Name<'_> {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        match self {
            Name::Static(s) => s,
            Name::Borrowed(s) => s,
            Name::Owned(s) => s,
        }
    }
}

/// Where a header comes from (a sink may treat them differently, e.g. NATS appends repeated
/// kept headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A CloudEvents attribute (binary mode).
    Attribute,
    /// A request header the source keeps (`keep_headers`).
    Kept,
    /// W3C trace context.
    TraceParent,
    /// A header configured on the sink (`headers = { … }`).
    Template,
}

/// One header of the binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    /// Its name.
    pub name: Name<'a>,
    /// Its value, unencoded.
    pub value: Cow<'a, str>,
    /// Where it comes from.
    pub origin: Origin,
}

/// An event bound to a protocol in one mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound<'a> {
    /// The headers, in order: attributes (binary mode), kept request headers, `traceparent`,
    /// template headers.
    pub headers: Vec<Header<'a>>,
    /// The content type: `datacontenttype` in binary mode, `application/cloudevents+json` in
    /// structured mode.
    pub content_type: Option<Cow<'a, str>>,
    /// The body: the data (binary) or the whole envelope as JSON (structured).
    pub body: Bytes,
}

/// The content type of a structured-mode message.
pub const STRUCTURED: &str = "application/cloudevents+json";

/// Binds `event` in `mode`, with the sink's configured `templates` headers rendered. A template
/// field the event lacks is a permanent error naming the header.
pub fn bind<'a>(
    event: &'a Event,
    mode: Mode,
    prefix: Prefix,
    templates: &'a [(String, Template)],
) -> Result<Bound<'a>, SinkError> {
    let mut headers = Vec::with_capacity(16);
    let (content_type, body) = match mode {
        Mode::Binary => {
            for (name, value) in event.attribute_texts() {
                if name == "datacontenttype" {
                    continue;
                }
                let name = match attribute_name(prefix, name) {
                    Some(n) => Name::Static(n),
                    None => Name::Owned(format!("{}{name}", prefix.text())),
                };
                headers.push(Header {
                    name,
                    value,
                    origin: Origin::Attribute,
                });
            }
            (
                event.datacontenttype.as_deref().map(Cow::Borrowed),
                event.data.clone().unwrap_or_default(),
            )
        }
        Mode::Structured => (
            Some(Cow::Borrowed(STRUCTURED)),
            Bytes::from(event.to_structured_json()),
        ),
    };
    for (name, value) in &event.headers {
        headers.push(Header {
            name: Name::Borrowed(name),
            value: Cow::Borrowed(value),
            origin: Origin::Kept,
        });
    }
    if let Some(tp) = event.extensions.get("traceparent") {
        let value = match tp {
            crate::ExtensionValue::String(s) => Cow::Borrowed(s.as_str()),
            other => Cow::Owned(other.to_text()),
        };
        headers.push(Header {
            name: Name::Static("traceparent"),
            value,
            origin: Origin::TraceParent,
        });
    }
    for (name, template) in templates {
        let value = template
            .render(event)
            .map_err(|e| SinkError::rejected(format!("header {name}: {e}")))?;
        headers.push(Header {
            name: Name::Borrowed(name),
            value: Cow::Owned(value),
            origin: Origin::Template,
        });
    }
    Ok(Bound {
        headers,
        content_type,
        body,
    })
}

/// Compiles a sink's configured template; a bad one makes the sink misconfigured.
pub fn compile(text: &str) -> Result<Template, SinkError> {
    Template::compile(text).map_err(|e| SinkError::misconfigured(format!("template {text:?}: {e}")))
}

/// Compiles a sink's configured header templates (`headers = { name = "template" }`).
pub fn compile_headers(
    headers: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, Template)>, SinkError> {
    headers
        .iter()
        .map(|(name, text)| Ok((name.clone(), compile(text)?)))
        .collect()
}

/// Defines [`PREMADE`] and `attribute_name` from one list.
macro_rules! premade {
    ($($attr:literal),* $(,)?) => {
        /// The attributes every event has or hookbridge adds, whose prefixed header names are
        /// made at compile time (a sink's tests check each becomes a valid header name).
        pub const PREMADE: &[&str] = &[$($attr),*];

        /// The prefixed header name of a [`PREMADE`] attribute.
        fn attribute_name(prefix: Prefix, attribute: &str) -> Option<&'static str> {
            match (prefix, attribute) {
                $(
                    (Prefix::Http, $attr) => Some(concat!("ce-", $attr)),
                    (Prefix::Kafka, $attr) => Some(concat!("ce_", $attr)),
                    (Prefix::Amqp, $attr) => Some(concat!("cloudEvents_", $attr)),
                )*
                _ => None,
            }
        }
    };
}

premade!(
    "id",
    "source",
    "specversion",
    "type",
    "subject",
    "time",
    "dataschema",
    "hbsource",
    "hbreceived",
    "hbverifier",
    "traceparent",
    "tracestate",
    "partitionkey",
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ExtensionValue;

    fn event() -> Event {
        let mut e = Event::new("1", "urn:s", "t.x");
        e.subject = Some("sub".into());
        e.datacontenttype = Some("application/json".into());
        e.data = Some(Bytes::from_static(b"{}"));
        e.extensions
            .insert("traceparent".into(), ExtensionValue::String("00-a-b-01".into()));
        e.extensions.insert("n".into(), ExtensionValue::Integer(3));
        e.headers.push(("x-kept".into(), "k".into()));
        e
    }

    fn names(b: &Bound<'_>) -> Vec<String> {
        b.headers.iter().map(|h| h.name.as_str().to_owned()).collect()
    }

    #[test]
    fn binary_mode_has_every_attribute_then_kept_traceparent_and_templates() {
        let templates = vec![("x-t".to_owned(), Template::compile("{subject}").expect("t"))];
        for (prefix, p) in [
            (Prefix::Http, "ce-"),
            (Prefix::Kafka, "ce_"),
            (Prefix::Amqp, "cloudEvents_"),
        ] {
            let e = event();
            let b = bind(&e, Mode::Binary, prefix, &templates).expect("bind");
            let want: Vec<String> = [
                "id",
                "source",
                "specversion",
                "type",
                "subject",
                "n",
                "traceparent",
            ]
            .iter()
            .map(|a| format!("{p}{a}"))
            .chain(["x-kept", "traceparent", "x-t"].map(str::to_owned))
            .collect();
            assert_eq!(names(&b), want);
            assert_eq!(b.content_type.as_deref(), Some("application/json"));
            assert_eq!(&b.body[..], b"{}");
            assert_eq!(b.headers.last().map(|h| h.value.as_ref()), Some("sub"));
            assert!(
                matches!(b.headers[0].name, Name::Static(_)),
                "usual names are not allocated"
            );
        }
    }

    #[test]
    fn structured_mode_keeps_kept_headers_traceparent_and_templates() {
        let e = event();
        let b = bind(&e, Mode::Structured, Prefix::Amqp, &[]).expect("bind");
        assert_eq!(names(&b), ["x-kept", "traceparent"]);
        assert_eq!(b.content_type.as_deref(), Some(STRUCTURED));
        let v: serde_json::Value = serde_json::from_slice(&b.body).expect("json");
        assert_eq!(v["id"], "1");
    }

    #[test]
    fn every_premade_name_is_the_prefixed_attribute() {
        for attr in PREMADE.iter().copied() {
            for (prefix, p) in [
                (Prefix::Http, "ce-"),
                (Prefix::Kafka, "ce_"),
                (Prefix::Amqp, "cloudEvents_"),
            ] {
                assert_eq!(
                    attribute_name(prefix, attr),
                    Some(format!("{p}{attr}")).as_deref()
                );
            }
        }
        assert_eq!(attribute_name(Prefix::Http, "companyid"), None);
    }

    #[test]
    fn a_missing_template_field_is_a_permanent_error() {
        let templates = vec![("x-t".to_owned(), Template::compile("{partitionkey}").expect("t"))];
        let e = event();
        let err = bind(&e, Mode::Binary, Prefix::Http, &templates).expect_err("missing");
        assert!(!err.is_retryable());
    }
}
