//! Requests from providers that do not send CloudEvents → one event, by a per-source mapping;
//! the same pieces ([`Request`], [`finish`]) make the provider presets in `crate::sources`.
//! `data` is the body, byte for byte, with the request's `Content-Type` as `datacontenttype`.

use bytes::Bytes;
use hookbridge_sink_core::Event;
use http::HeaderMap;
use serde_json::Value;

use super::NormalizeError;

/// Where one attribute comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// A request header.
    Header(String),
    /// A JSON pointer into the body.
    Pointer(String),
    /// A constant.
    Value(String),
    /// Literal text with header and pointer placeholders.
    Template(Vec<Part>),
}

/// A piece of a [`Field::Template`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Literal(String),
    /// `{header:NAME}`.
    Header(String),
    /// `{pointer:/path}`.
    Pointer(String),
}

/// Parses a template: `{header:NAME}` and `{pointer:/path}` placeholders.
pub fn parse_template(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        if start > 0 {
            parts.push(Part::Literal(rest[..start].to_owned()));
        }
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in {text:?}"))?
            + start;
        let inner = &rest[start + 1..end];
        parts.push(match inner.split_once(':') {
            Some(("header", name)) if !name.is_empty() => Part::Header(name.to_ascii_lowercase()),
            Some(("pointer", p)) if p.is_empty() || p.starts_with('/') => Part::Pointer(p.to_owned()),
            _ => {
                return Err(format!(
                    "unknown placeholder {{{inner}}}: use {{header:NAME}} or {{pointer:/path}}"
                ))
            }
        });
        rest = &rest[end + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    Ok(parts)
}

/// A source's mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// `id` (required).
    pub id: Field,
    /// `type` (required).
    pub ty: Field,
    /// `source`; `None` = `hookbridge://<source name>`.
    pub source: Option<Field>,
    /// `subject`.
    pub subject: Option<Field>,
    /// `time`.
    pub time: Option<Field>,
}

impl Mapping {
    fn uses_body(&self) -> bool {
        let uses = |f: &Field| match f {
            Field::Pointer(_) => true,
            Field::Template(parts) => parts.iter().any(|p| matches!(p, Part::Pointer(_))),
            _ => false,
        };
        [
            Some(&self.id),
            Some(&self.ty),
            self.source.as_ref(),
            self.subject.as_ref(),
            self.time.as_ref(),
        ]
        .into_iter()
        .flatten()
        .any(uses)
    }
}

/// The request being mapped: what provider presets read their attributes from.
pub struct Request<'a> {
    headers: &'a HeaderMap,
    json: Option<Value>,
}

impl<'a> Request<'a> {
    /// A request with its headers and, if the mapping reads it, its body as JSON.
    pub fn new(headers: &'a HeaderMap, json: Option<Value>) -> Self {
        Request { headers, json }
    }

    /// The single non-empty value of a header (two values are ambiguous: none).
    pub fn header(&self, name: &str) -> Option<String> {
        let mut values = self.headers.get_all(name).iter();
        let v = values.next()?;
        if values.next().is_some() {
            return None; // ambiguous
        }
        v.to_str().ok().map(str::to_owned).filter(|s| !s.is_empty())
    }

    /// The text at a JSON pointer: strings (non-empty), numbers and booleans.
    pub fn pointer(&self, p: &str) -> Option<String> {
        match self.json.as_ref()?.pointer(p)? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    fn resolve(&self, field: &Field) -> Option<String> {
        match field {
            Field::Header(h) => self.header(h),
            Field::Pointer(p) => self.pointer(p),
            Field::Value(v) => Some(v.clone()),
            Field::Template(parts) => {
                let mut out = String::new();
                for part in parts {
                    match part {
                        Part::Literal(l) => out.push_str(l),
                        Part::Header(h) => out.push_str(&self.header(h)?),
                        Part::Pointer(p) => out.push_str(&self.pointer(p)?),
                    }
                }
                Some(out)
            }
        }
    }
}

/// The body as JSON (`malformed` if it is not).
pub fn parse_json(body: &[u8]) -> Result<Value, NormalizeError> {
    serde_json::from_slice(body)
        .map_err(|e| NormalizeError::malformed(Some("data"), format!("the body is not JSON: {e}")))
}

/// A time attribute: RFC 3339 as is, unix seconds converted.
pub fn time_value(text: String) -> Result<String, NormalizeError> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(secs) = text.parse::<i64>() {
        return time::OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .ok_or_else(|| {
                NormalizeError::malformed(Some("time"), format!("{text} is not a valid unix time"))
            });
    }
    time::OffsetDateTime::parse(&text, &Rfc3339)
        .map(|_| text.clone())
        .map_err(|_| {
            NormalizeError::malformed(
                Some("time"),
                format!("time {text:?} is neither RFC 3339 nor unix seconds"),
            )
        })
}

/// Completes an event: the body as `data`, its `Content-Type` as `datacontenttype`.
pub fn finish(mut event: Event, headers: &HeaderMap, body: &Bytes) -> Result<Event, NormalizeError> {
    event.datacontenttype = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    event.data = (!body.is_empty()).then(|| body.clone());
    Ok(event)
}

/// Applies a configured mapping.
pub fn decode(
    mapping: &Mapping,
    source_name: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Event, NormalizeError> {
    let json = if mapping.uses_body() {
        Some(parse_json(body)?)
    } else {
        None
    };
    let req = Request { headers, json };
    let id = req
        .resolve(&mapping.id)
        .ok_or_else(|| NormalizeError::missing("id"))?;
    let ty = req
        .resolve(&mapping.ty)
        .ok_or_else(|| NormalizeError::missing("type"))?;
    let source = match &mapping.source {
        Some(f) => req.resolve(f).ok_or_else(|| NormalizeError::missing("source"))?,
        None => format!("hookbridge://{source_name}"),
    };
    let mut event = Event::new(id, source, ty);
    event.subject = mapping.subject.as_ref().and_then(|f| req.resolve(f));
    event.time = mapping
        .time
        .as_ref()
        .and_then(|f| req.resolve(f))
        .map(time_value)
        .transpose()?;
    finish(event, headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::test_headers as headers;

    #[test]
    fn generic_mapping() {
        let m = Mapping {
            id: Field::Pointer("/event/id".into()),
            ty: Field::Template(
                parse_template("com.acme.{header:X-Kind}.{pointer:/event/action}").expect("t"),
            ),
            source: None,
            subject: Some(Field::Header("x-tenant".into())),
            time: Some(Field::Pointer("/event/at".into())),
        };
        let h = headers(&[
            ("x-kind", "order"),
            ("x-tenant", "t1"),
            ("content-type", "application/json"),
        ]);
        let body = Bytes::from_static(br#"{"event":{"id":42,"action":"paid","at":1700000000}}"#);
        let e = decode(&m, "acme", &h, &body).expect("decode");
        assert_eq!(
            (e.id.as_str(), e.ty.as_str(), e.source.as_str()),
            ("42", "com.acme.order.paid", "hookbridge://acme")
        );
        assert_eq!(e.subject.as_deref(), Some("t1"));
        assert_eq!(e.time.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(e.data.as_ref(), Some(&body));
        assert_eq!(e.datacontenttype.as_deref(), Some("application/json"));

        let no_id = Bytes::from_static(br#"{"event":{"action":"paid"}}"#);
        let err = decode(&m, "acme", &h, &no_id).expect_err("missing id");
        assert_eq!(
            (err.code.as_str(), err.field.as_deref()),
            ("missing_attribute", Some("id"))
        );
        let err = decode(&m, "acme", &headers(&[]), &body).expect_err("missing type");
        assert_eq!(err.field.as_deref(), Some("type"));
        let err = decode(&m, "acme", &h, &Bytes::from_static(b"not json")).expect_err("json");
        assert_eq!(err.code.as_str(), "malformed");
    }

    #[test]
    fn templates() {
        assert!(parse_template("a{b}").is_err());
        assert!(parse_template("a{header:").is_err());
        assert_eq!(parse_template("x").expect("t"), vec![Part::Literal("x".into())]);
    }
}
