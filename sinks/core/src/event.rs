//! The CloudEvents 1.0 envelope every source produces and every sink consumes.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The only CloudEvents version hookbridge speaks.
pub const SPEC_VERSION: &str = "1.0";

/// How a sink writes an event: CloudEvents *binary* (attributes in broker headers, data as the
/// body) or *structured* (the JSON envelope as the body, `application/cloudevents+json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Attributes as headers, data as the message body (default).
    #[default]
    Binary,
    /// The whole envelope as a JSON message body.
    Structured,
}

/// A CloudEvents extension attribute value. The HTTP binary binding carries every value as a
/// string; the JSON format can also carry integers and booleans, which are kept as such.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum ExtensionValue {
    /// A string (also URI, URI-reference, timestamp and binary values).
    String(String),
    /// A JSON integer.
    Integer(i64),
    /// A JSON boolean.
    Boolean(bool),
}

impl ExtensionValue {
    /// The value as it appears in a header or template.
    pub fn to_text(&self) -> String {
        match self {
            ExtensionValue::String(s) => s.clone(),
            ExtensionValue::Integer(i) => i.to_string(),
            ExtensionValue::Boolean(b) => b.to_string(),
        }
    }
}

impl From<&str> for ExtensionValue {
    fn from(s: &str) -> Self {
        ExtensionValue::String(s.to_owned())
    }
}

impl From<String> for ExtensionValue {
    fn from(s: String) -> Self {
        ExtensionValue::String(s)
    }
}

/// One event, normalised to CloudEvents 1.0.
///
/// `data` is kept byte-for-byte as received (the FIC source is the one documented exception).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `id`: unique within `source`.
    pub id: String,
    /// `source`: URI-reference of the producer.
    pub source: String,
    /// `specversion`: always `1.0`.
    pub specversion: String,
    /// `type`.
    pub ty: String,
    /// `subject`, if any.
    pub subject: Option<String>,
    /// `time` (RFC 3339), as received.
    pub time: Option<String>,
    /// `datacontenttype`, if any.
    pub datacontenttype: Option<String>,
    /// `dataschema`, if any.
    pub dataschema: Option<String>,
    /// Extension attributes, including hookbridge's own `hbsource`, `hbreceived`, `hbverifier`.
    pub extensions: BTreeMap<String, ExtensionValue>,
    /// The payload, exactly as received.
    pub data: Option<Bytes>,
    /// Request headers the source was configured to keep (`keep_headers`; never credentials or
    /// signatures). Broker sinks send them on as message headers under their own names; the
    /// file sink does not write them (a CloudEvents envelope has no place for them).
    pub headers: Vec<(String, String)>,
}

impl Event {
    /// A new event with the required attributes and nothing else.
    pub fn new(id: impl Into<String>, source: impl Into<String>, ty: impl Into<String>) -> Self {
        Event {
            id: id.into(),
            source: source.into(),
            specversion: SPEC_VERSION.to_owned(),
            ty: ty.into(),
            subject: None,
            time: None,
            datacontenttype: None,
            dataschema: None,
            extensions: BTreeMap::new(),
            data: None,
            headers: Vec::new(),
        }
    }

    /// The key brokers and receivers deduplicate this event on (JetStream's `Nats-Msg-Id`, the
    /// HTTP sink's `Idempotency-Key` and `webhook-id`): 32 hex digits of SHA-256 over the
    /// length-prefixed hookbridge source (`hbsource`), CloudEvents `source` and `id` (or, for a
    /// source that dedups on its body, `hbbodydigest`) — the key hookbridge's own dedup uses —
    /// and, for a copy made by `replay`, its `hbreplay` time, so
    /// a replay is not dropped as a duplicate of the original. Two producers reusing an id get
    /// different keys; no attacker-chosen text reaches the header.
    pub fn delivery_key(&self) -> String {
        use sha2::Digest as _;
        let text = |name: &str| match self.extensions.get(name) {
            Some(ExtensionValue::String(s)) => Cow::Borrowed(s.as_str()),
            Some(other) => Cow::Owned(other.to_text()),
            None => Cow::Borrowed(""),
        };
        // A source that dedups on its body (the id is not signed) keys on the body's digest.
        let (source, id) = match self.extensions.get("hbbodydigest") {
            Some(_) => (Cow::Borrowed("body"), text("hbbodydigest")),
            None => (
                Cow::Borrowed(self.source.as_str()),
                Cow::Borrowed(self.id.as_str()),
            ),
        };
        let mut h = sha2::Sha256::new();
        for part in [
            text("hbsource").as_ref(),
            source.as_ref(),
            id.as_ref(),
            text("hbreplay").as_ref(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        short_hex(&h.finalize())
    }

    /// The value of any context attribute or extension by its CloudEvents name, as text.
    pub fn attribute(&self, name: &str) -> Option<String> {
        match name {
            "id" => Some(self.id.clone()),
            "source" => Some(self.source.clone()),
            "specversion" => Some(self.specversion.clone()),
            "type" => Some(self.ty.clone()),
            "subject" => self.subject.clone(),
            "time" => self.time.clone(),
            "datacontenttype" => self.datacontenttype.clone(),
            "dataschema" => self.dataschema.clone(),
            other => self.extensions.get(other).map(ExtensionValue::to_text),
        }
    }

    /// Every attribute present (context attributes first, then extensions) as `(name, text)`:
    /// what binary-mode bindings put in headers.
    pub fn attributes(&self) -> Vec<(&str, String)> {
        self.attribute_texts()
            .map(|(name, value)| (name, value.into_owned()))
            .collect()
    }

    /// [`Event::attributes`] without copying: string values are borrowed, only integer and
    /// boolean extensions are formatted.
    pub fn attribute_texts(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
        let required = [
            ("id", Some(&self.id)),
            ("source", Some(&self.source)),
            ("specversion", Some(&self.specversion)),
            ("type", Some(&self.ty)),
            ("subject", self.subject.as_ref()),
            ("time", self.time.as_ref()),
            ("datacontenttype", self.datacontenttype.as_ref()),
            ("dataschema", self.dataschema.as_ref()),
        ];
        let context = required
            .into_iter()
            .filter_map(|(name, value)| Some((name, Cow::Borrowed(value?.as_str()))));
        let extensions = self.extensions.iter().map(|(name, value)| {
            let text = match value {
                ExtensionValue::String(s) => Cow::Borrowed(s.as_str()),
                other => Cow::Owned(other.to_text()),
            };
            (name.as_str(), text)
        });
        context.chain(extensions)
    }

    /// The CloudEvents JSON format (structured mode) of this event, as one line of JSON.
    ///
    /// JSON data (by `datacontenttype`, absent meaning JSON) is embedded verbatim as `data`, so
    /// its bytes survive unchanged; UTF-8 text types go in `data` as a string; anything else is
    /// base64 in `data_base64`.
    pub fn to_structured_json(&self) -> Vec<u8> {
        let data = self.data.as_deref();
        let json_data = data.and_then(|d| {
            let ct_is_json = self.datacontenttype.as_deref().is_none_or(is_json_content_type);
            if !ct_is_json {
                return None;
            }
            let text = std::str::from_utf8(d).ok()?;
            serde_json::from_str::<&RawValue>(text).ok()
        });
        let (text_data, base64_data) = match (data, json_data) {
            (Some(_), Some(_)) | (None, _) => (None, None),
            (Some(d), None) => {
                let is_text = self
                    .datacontenttype
                    .as_deref()
                    .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/"));
                match std::str::from_utf8(d) {
                    Ok(s) if is_text => (Some(s), None),
                    _ => (None, Some(base64::engine::general_purpose::STANDARD.encode(d))),
                }
            }
        };
        let envelope = Structured {
            specversion: &self.specversion,
            id: &self.id,
            source: &self.source,
            ty: &self.ty,
            subject: self.subject.as_deref(),
            time: self.time.as_deref(),
            datacontenttype: self.datacontenttype.as_deref(),
            dataschema: self.dataschema.as_deref(),
            extensions: &self.extensions,
            data_json: json_data,
            data_text: text_data,
            data_base64: base64_data,
        };
        // Serialising borrowed strings, integers, booleans and already-valid raw JSON cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }
}

/// Whether a media type is JSON: `application/json`, `text/json` or any `+json` suffix.
pub fn is_json_content_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

#[derive(Serialize)]
struct Structured<'a> {
    specversion: &'a str,
    id: &'a str,
    source: &'a str,
    #[serde(rename = "type")]
    ty: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    datacontenttype: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dataschema: Option<&'a str>,
    #[serde(flatten)]
    extensions: &'a BTreeMap<String, ExtensionValue>,
    #[serde(rename = "data", skip_serializing_if = "Option::is_none")]
    data_json: Option<&'a RawValue>,
    #[serde(rename = "data", skip_serializing_if = "Option::is_none")]
    data_text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        let mut e = Event::new("1", "urn:test", "com.example.created");
        e.subject = Some("company:1".into());
        e.extensions.insert("hbsource".into(), "ce".into());
        e.extensions.insert("count".into(), ExtensionValue::Integer(3));
        e
    }

    #[test]
    fn json_data_is_embedded_verbatim() {
        let mut e = event();
        e.datacontenttype = Some("application/json".into());
        e.data = Some(Bytes::from_static(b"{ \"a\" :  [1, 2.50] }"));
        let out = String::from_utf8(e.to_structured_json()).expect("utf8");
        assert!(out.contains(r#""data":{ "a" :  [1, 2.50] }"#), "{out}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert_eq!(v["type"], "com.example.created");
        assert_eq!(v["count"], 3);
        assert_eq!(v["hbsource"], "ce");
        assert!(v.get("data_base64").is_none());
    }

    #[test]
    fn binary_data_goes_to_base64_and_text_to_string() {
        let mut e = event();
        e.datacontenttype = Some("application/octet-stream".into());
        e.data = Some(Bytes::from_static(&[0, 159, 146, 150]));
        let v: serde_json::Value = serde_json::from_slice(&e.to_structured_json()).expect("json");
        assert_eq!(v["data_base64"], "AJ+Slg==");
        assert!(v.get("data").is_none());

        e.datacontenttype = Some("text/plain; charset=utf-8".into());
        e.data = Some(Bytes::from_static(b"hello"));
        let v: serde_json::Value = serde_json::from_slice(&e.to_structured_json()).expect("json");
        assert_eq!(v["data"], "hello");
    }

    #[test]
    fn invalid_json_with_json_type_is_not_corrupted() {
        let mut e = event();
        e.datacontenttype = Some("application/json".into());
        e.data = Some(Bytes::from_static(b"{not json"));
        let v: serde_json::Value = serde_json::from_slice(&e.to_structured_json()).expect("json");
        assert_eq!(v["data_base64"], "e25vdCBqc29u");
    }

    #[test]
    fn attributes_list_present_ones() {
        let e = event();
        let names: Vec<&str> = e.attributes().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "id",
                "source",
                "specversion",
                "type",
                "subject",
                "count",
                "hbsource"
            ]
        );
        assert_eq!(e.attribute("count").as_deref(), Some("3"));
        assert_eq!(e.attribute("time"), None);
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(is_json_content_type("application/vnd.api+json"));
        assert!(!is_json_content_type("text/plain"));
    }
}

/// Encodes a CloudEvents attribute value for a header, as the HTTP binding does: space, `"`, `%`,
/// control characters and everything outside ASCII are percent-encoded (UTF-8 bytes), so any
/// value survives header transports. Decoders that do not decode still see the plain ASCII text.
pub fn encode_header_value(value: &str) -> String {
    header_value_text(value).into_owned()
}

/// The first 128 bits of a digest as 32 lower-case hex digits (delivery keys, body digests).
pub fn short_hex(digest: &[u8]) -> String {
    let mut out = String::with_capacity(32);
    for b in digest.iter().take(16) {
        out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
        out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
    }
    out
}

/// [`encode_header_value`], borrowing `value` when nothing in it needs escaping (the usual case).
pub fn header_value_text(value: &str) -> Cow<'_, str> {
    let escaped = |b: u8| b == b' ' || b == b'"' || b == b'%' || !(0x21..0x7f).contains(&b);
    if !value.bytes().any(escaped) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if escaped(b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod header_tests {
    use super::encode_header_value;

    #[test]
    fn delivery_keys_differ_across_producers_and_replays() {
        use super::{Event, ExtensionValue};
        let mut a = Event::new("1", "urn:x", "t");
        a.extensions
            .insert("hbsource".into(), ExtensionValue::String("github".into()));
        let mut b = a.clone();
        b.extensions
            .insert("hbsource".into(), ExtensionValue::String("stripe".into()));
        let mut c = a.clone();
        c.source = "urn:y".into();
        let mut replay = a.clone();
        replay.extensions.insert(
            "hbreplay".into(),
            ExtensionValue::String("2026-11-30T00:00:00Z".into()),
        );
        let keys = [
            a.delivery_key(),
            b.delivery_key(),
            c.delivery_key(),
            replay.delivery_key(),
        ];
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(k.len(), 32);
            assert!(k.bytes().all(|b| b.is_ascii_hexdigit()), "{k}");
            for other in &keys[i + 1..] {
                assert_ne!(k, other);
            }
        }
        assert_eq!(a.delivery_key(), a.clone().delivery_key(), "stable");
        // Length prefixes: moving a byte between parts changes the key.
        let mut d = Event::new("b", "urn:xa", "t");
        d.extensions
            .insert("hbsource".into(), ExtensionValue::String("github".into()));
        let mut e = Event::new("ab", "urn:x", "t");
        e.extensions
            .insert("hbsource".into(), ExtensionValue::String("github".into()));
        assert_ne!(d.delivery_key(), e.delivery_key());
    }

    #[test]
    fn encodes_like_the_http_binding() {
        assert_eq!(encode_header_value("company:108061"), "company:108061");
        assert_eq!(encode_header_value("a b\"c%"), "a%20b%22c%25");
        assert_eq!(encode_header_value("café\n"), "caf%C3%A9%0A");
        assert!(matches!(
            super::header_value_text("it.fic.x"),
            std::borrow::Cow::Borrowed("it.fic.x")
        ));
    }
}
