//! CloudEvents 1.0 HTTP binding: binary, structured and batched modes.
//!
//! - `Content-Type: application/cloudevents-batch…` → a JSON array of structured events;
//! - `application/cloudevents…` → one structured event (JSON format);
//! - anything else → binary mode: attributes in percent-encoded `ce-*` headers, the body is the
//!   data and `Content-Type` its `datacontenttype`.
//!
//! Data is kept byte-for-byte: in structured mode JSON `data` is the exact text of the value.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use hookbridge_sink_core::{is_json_content_type, Event, ExtensionValue, SPEC_VERSION};
use http::HeaderMap;
use serde_json::value::RawValue;

use super::NormalizeError;

/// The HTTP binding mode of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingMode {
    /// `ce-*` headers.
    Binary,
    /// One JSON envelope.
    Structured,
    /// A JSON array of envelopes.
    Batch,
}

/// The mode a `Content-Type` selects.
pub fn mode_of(headers: &HeaderMap) -> BindingMode {
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_start()
        .to_ascii_lowercase();
    if ct.starts_with("application/cloudevents-batch") {
        BindingMode::Batch
    } else if ct.starts_with("application/cloudevents") {
        BindingMode::Structured
    } else {
        BindingMode::Binary
    }
}

/// Decodes a request into events (not yet stamped with hookbridge's extensions).
pub fn decode(headers: &HeaderMap, body: &Bytes) -> Result<Vec<Event>, NormalizeError> {
    match mode_of(headers) {
        BindingMode::Binary => decode_binary(headers, body).map(|e| vec![e]),
        BindingMode::Structured => decode_structured(body).map(|e| vec![e]),
        BindingMode::Batch => decode_batch(body),
    }
}

/// Binary mode.
pub fn decode_binary(headers: &HeaderMap, body: &Bytes) -> Result<Event, NormalizeError> {
    let mut attrs: BTreeMap<String, String> = BTreeMap::new();
    for name in headers.keys() {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        if !valid_attr_name(attr) {
            return Err(NormalizeError::malformed(
                Some(attr),
                format!("header {name}: CloudEvents attribute names are lower-case letters and digits"),
            ));
        }
        let mut values = headers.get_all(name).iter();
        let value = values.next().map(|v| v.as_bytes()).unwrap_or_default();
        if values.next().is_some() {
            return Err(NormalizeError::malformed(
                Some(attr),
                format!("header {name} appears more than once"),
            ));
        }
        // A `%` must start an escape (`%25` for itself): a stray one is a producer bug that a
        // lenient decoder would silently turn into a different attribute value.
        let stray = value
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'%' && !matches!(value.get(i + 1..i + 3), Some([a, b]) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit()));
        if stray {
            return Err(NormalizeError::malformed(
                Some(attr),
                format!("header {name} has a '%' that does not start a %XX escape"),
            ));
        }
        let decoded = percent_encoding::percent_decode(value)
            .decode_utf8()
            .map_err(|_| {
                NormalizeError::malformed(Some(attr), format!("header {name} is not percent-encoded UTF-8"))
            })?;
        attrs.insert(attr.to_owned(), decoded.into_owned());
    }
    let mut take = |name: &str| attrs.remove(name);
    let mut event = required(&mut take)?;
    event.subject = take("subject");
    event.time = take("time");
    event.dataschema = take("dataschema");
    if let Some(ct) = take("datacontenttype") {
        // Binary mode carries datacontenttype in Content-Type; a ce- header for it is invalid.
        let _ = ct;
        return Err(NormalizeError::malformed(
            Some("datacontenttype"),
            "in binary mode datacontenttype is the Content-Type header, not ce-datacontenttype",
        ));
    }
    event.datacontenttype = match headers.get(http::header::CONTENT_TYPE) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| NormalizeError::malformed(Some("datacontenttype"), "Content-Type is not ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    event.data = if body.is_empty() && event.datacontenttype.is_none() {
        None
    } else {
        Some(body.clone())
    };
    for (name, value) in attrs {
        event.extensions.insert(name, ExtensionValue::String(value));
    }
    check_values(&event)?;
    Ok(event)
}

/// The required attributes, from a lookup that removes them.
fn required(take: &mut impl FnMut(&str) -> Option<String>) -> Result<Event, NormalizeError> {
    let mut get = |name: &str| -> Result<String, NormalizeError> {
        match take(name) {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(NormalizeError::malformed(
                Some(name),
                format!("attribute {name:?} must not be empty"),
            )),
            None => Err(NormalizeError::missing(name)),
        }
    };
    let specversion = get("specversion")?;
    if specversion != SPEC_VERSION {
        return Err(NormalizeError::malformed(
            Some("specversion"),
            format!("unsupported specversion {specversion:?}; hookbridge accepts \"1.0\""),
        ));
    }
    let id = get("id")?;
    let source = get("source")?;
    let ty = get("type")?;
    Ok(Event::new(id, source, ty))
}

/// Checks attribute values the spec constrains.
fn check_values(event: &Event) -> Result<(), NormalizeError> {
    if let Some(t) = &event.time {
        if time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_err() {
            return Err(NormalizeError::malformed(
                Some("time"),
                format!("time {t:?} is not RFC 3339"),
            ));
        }
    }
    if event.subject.as_deref() == Some("") {
        return Err(NormalizeError::malformed(
            Some("subject"),
            "subject must not be empty",
        ));
    }
    Ok(())
}

fn valid_attr_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Deepest JSON nesting accepted in a structured or batched body (serde_json's own limit for
/// parsed values; `data` is kept raw, so it is checked separately here). Deeper documents are
/// refused as malformed rather than handed to consumers whose parsers would fail on them.
pub const MAX_JSON_DEPTH: usize = 128;

/// Whether `json` nests arrays/objects deeper than `max` (a byte scan that skips strings; the
/// JSON itself is validated by the parser afterwards).
pub fn nests_deeper_than(json: &[u8], max: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

fn check_depth(body: &[u8]) -> Result<(), NormalizeError> {
    if nests_deeper_than(body, MAX_JSON_DEPTH) {
        return Err(NormalizeError::malformed(
            None,
            format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"),
        ));
    }
    Ok(())
}

/// Structured mode: one JSON object.
pub fn decode_structured(body: &[u8]) -> Result<Event, NormalizeError> {
    check_depth(body)?;
    let object: BTreeMap<String, &RawValue> = serde_json::from_slice(body).map_err(|e| {
        NormalizeError::malformed(None, format!("body is not a CloudEvents JSON object: {e}"))
    })?;
    from_object(object)
}

/// Most events one batched request may carry (more: 400 `malformed`).
pub const MAX_BATCH_EVENTS: usize = 100;

/// Batched mode: a JSON array of objects.
pub fn decode_batch(body: &[u8]) -> Result<Vec<Event>, NormalizeError> {
    check_depth(body)?;
    let items: Vec<BTreeMap<String, &RawValue>> = serde_json::from_slice(body).map_err(|e| {
        NormalizeError::malformed(None, format!("body is not a JSON array of CloudEvents: {e}"))
    })?;
    if items.is_empty() {
        return Err(NormalizeError::malformed(None, "empty batch"));
    }
    // Each event of a batch is delivered concurrently: one request must not fan out into
    // thousands of publishes.
    if items.len() > MAX_BATCH_EVENTS {
        return Err(NormalizeError::malformed(
            None,
            format!(
                "a batch holds at most {MAX_BATCH_EVENTS} events, this one {}",
                items.len()
            ),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, o)| {
            from_object(o).map_err(|mut e| {
                e.message = format!("event [{i}]: {}", e.message);
                e
            })
        })
        .collect()
}

/// `data` (JSON, or text by its content type) or `data_base64`, not both.
fn take_data(
    object: &mut BTreeMap<String, &RawValue>,
    datacontenttype: Option<&str>,
) -> Result<Option<Bytes>, NormalizeError> {
    let data = object.remove("data");
    let data_base64 = object.remove("data_base64");
    Ok(match (data, data_base64) {
        (Some(_), Some(_)) => {
            return Err(NormalizeError::malformed(
                Some("data"),
                "both data and data_base64 are present",
            ))
        }
        (Some(raw), None) if raw.get() == "null" => None,
        (Some(raw), None) => Some(data_bytes(raw, datacontenttype)),
        (None, Some(raw)) => {
            let text: String = serde_json::from_str(raw.get()).map_err(|_| {
                NormalizeError::malformed(Some("data_base64"), "data_base64 must be a string")
            })?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| {
                    NormalizeError::malformed(Some("data_base64"), format!("invalid base64: {e}"))
                })?;
            Some(Bytes::from(bytes))
        }
        (None, None) => None,
    })
}

fn from_object(mut object: BTreeMap<String, &RawValue>) -> Result<Event, NormalizeError> {
    let mut strings = |name: &str| -> Result<Option<String>, NormalizeError> {
        match object.remove(name) {
            None => Ok(None),
            Some(raw) if raw.get() == "null" => Ok(None),
            Some(raw) => serde_json::from_str::<String>(raw.get()).map(Some).map_err(|_| {
                NormalizeError::malformed(Some(name), format!("attribute {name:?} must be a string"))
            }),
        }
    };
    let mut err = None;
    let mut take = |name: &str| match strings(name) {
        Ok(v) => v,
        Err(e) => {
            err.get_or_insert(e);
            None
        }
    };
    let required_result = required(&mut take);
    let subject = take("subject");
    let time = take("time");
    let datacontenttype = take("datacontenttype");
    let dataschema = take("dataschema");
    if let Some(e) = err {
        return Err(e);
    }
    let mut event = required_result?;
    event.subject = subject;
    event.time = time;
    event.datacontenttype = datacontenttype;
    event.dataschema = dataschema;
    event.data = take_data(&mut object, event.datacontenttype.as_deref())?;
    for (name, raw) in object {
        if !valid_attr_name(&name) {
            return Err(NormalizeError::malformed(
                Some(&name),
                format!("{name:?}: CloudEvents attribute names are lower-case letters and digits"),
            ));
        }
        let value: serde_json::Value = serde_json::from_str(raw.get())
            .map_err(|e| NormalizeError::malformed(Some(&name), e.to_string()))?;
        let value = match value {
            serde_json::Value::Null => continue,
            serde_json::Value::String(s) => ExtensionValue::String(s),
            serde_json::Value::Bool(b) => ExtensionValue::Boolean(b),
            serde_json::Value::Number(n) if n.is_i64() => {
                ExtensionValue::Integer(n.as_i64().unwrap_or_default())
            }
            _ => {
                return Err(NormalizeError::malformed(
                    Some(&name),
                    format!("extension {name:?} must be a string, integer or boolean"),
                ))
            }
        };
        event.extensions.insert(name, value);
    }
    check_values(&event)?;
    Ok(event)
}

/// `data` of the JSON format: JSON content types keep the value's exact text; a JSON string with a
/// non-JSON content type is that string's content (e.g. `text/plain`).
fn data_bytes(raw: &RawValue, datacontenttype: Option<&str>) -> Bytes {
    let is_json = datacontenttype.is_none_or(is_json_content_type);
    if !is_json {
        if let Ok(s) = serde_json::from_str::<String>(raw.get()) {
            return Bytes::from(s);
        }
    }
    Bytes::copy_from_slice(raw.get().as_bytes())
}

#[cfg(test)]
mod tests;
