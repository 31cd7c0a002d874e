//! Fatture in Cloud notifications → one canonical event (providers.md §1.3, design §2).
//!
//! FIC sends CloudEvents in binary mode (default) or structured mode; FIC's docs show both
//! `application/cloudevents+json` and `application/json` for structured, so it is detected by the
//! `application/cloudevents` prefix **or** by a JSON body with `specversion` and `type` while no
//! `ce-*` headers are present. Whatever the mode, `data` becomes `{"ids":[…]}` (`[]` when the body
//! has none, as the welcome event may), so consumers see one shape.

use bytes::Bytes;
use hookbridge_sink_core::Event;
use http::HeaderMap;
use serde_json::{Map, Value};

use crate::normalize::cloudevents::{self, BindingMode};
use crate::normalize::NormalizeError;

/// Whether a FIC request is in structured mode.
pub fn is_structured(headers: &HeaderMap, body: &[u8]) -> bool {
    match cloudevents::mode_of(headers) {
        BindingMode::Structured | BindingMode::Batch => true,
        BindingMode::Binary => {
            let has_ce_headers = headers.keys().any(|k| k.as_str().starts_with("ce-"));
            !has_ce_headers
                && serde_json::from_slice::<Map<String, Value>>(body)
                    .is_ok_and(|o| o.contains_key("specversion") && o.contains_key("type"))
        }
    }
}

/// Decodes one FIC notification.
pub fn decode(headers: &HeaderMap, body: &Bytes) -> Result<Event, NormalizeError> {
    if cloudevents::mode_of(headers) == BindingMode::Batch {
        return Err(NormalizeError::malformed(
            None,
            "Fatture in Cloud does not send batches",
        ));
    }
    let mut event = if is_structured(headers, body) {
        cloudevents::decode_structured(body)?
    } else {
        cloudevents::decode_binary(headers, body)?
    };
    let ids = ids(event.data.as_deref().unwrap_or_default())?;
    let canonical = serde_json::json!({ "ids": ids });
    event.data = Some(Bytes::from(serde_json::to_vec(&canonical).unwrap_or_default()));
    event.datacontenttype = Some("application/json".into());
    Ok(event)
}

/// The ids of a FIC payload: `{"data":{"ids":[…]}}` (binary body), `{"ids":[…]}` (structured
/// data), or none at all (`[]`).
fn ids(data: &[u8]) -> Result<Vec<Value>, NormalizeError> {
    if data.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_slice(data)
        .map_err(|e| NormalizeError::malformed(Some("data"), format!("the body is not JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(NormalizeError::malformed(
            Some("data"),
            "the data is not a JSON object",
        ));
    };
    let ids = match obj.get("data") {
        Some(Value::Object(inner)) => inner.get("ids"),
        Some(Value::Null) | None => obj.get("ids"),
        Some(_) => {
            return Err(NormalizeError::malformed(
                Some("data"),
                "data.data is not an object",
            ))
        }
    };
    match ids {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => {
            if list.iter().all(|v| v.is_number() || v.is_string()) {
                Ok(list.clone())
            } else {
                Err(NormalizeError::malformed(
                    Some("data"),
                    "ids must be numbers or strings",
                ))
            }
        }
        Some(_) => Err(NormalizeError::malformed(Some("data"), "ids is not a list")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn binary_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "198:f059b211-24f4-44ab-9859-b1613a9a0712"),
            ("ce-source", "https://api-v2.fattureincloud.it"),
            ("ce-type", "it.fattureincloud.webhooks.entities.clients.create"),
            ("ce-subject", "company:108061"),
            ("ce-time", "2023-04-04T12:54:21+02:00"),
            ("content-type", "application/json"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        h
    }

    const STRUCTURED: &[u8] = br#"{"id":"198:f059b211-24f4-44ab-9859-b1613a9a0712","source":"https://api-v2.fattureincloud.it","specversion":"1.0","type":"it.fattureincloud.webhooks.entities.clients.create","subject":"company:108061","time":"2023-04-04T12:54:21+02:00","datacontenttype":"application/json","data":{"ids":[3062300]}}"#;

    #[test]
    fn binary_and_structured_give_the_same_canonical_data() {
        let b = decode(
            &binary_headers(),
            &Bytes::from_static(br#"{"data":{"ids":[3062300]}}"#),
        )
        .expect("binary");
        for ct in ["application/cloudevents+json", "application/json"] {
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static(ct));
            let s = decode(&h, &Bytes::from_static(STRUCTURED)).expect(ct);
            assert_eq!(s.data, b.data, "{ct}");
            assert_eq!(
                (s.id.as_str(), s.subject.as_deref()),
                (b.id.as_str(), b.subject.as_deref())
            );
        }
        assert_eq!(b.data.as_deref(), Some(&br#"{"ids":[3062300]}"#[..]));
    }

    #[test]
    fn welcome_without_ids_and_shapes() {
        let cases: &[(&[u8], &str)] = &[
            (b"", r#"{"ids":[]}"#),
            (b"{}", r#"{"ids":[]}"#),
            (br#"{"data":{}}"#, r#"{"ids":[]}"#),
            (br#"{"ids":[1,2]}"#, r#"{"ids":[1,2]}"#),
            (br#"{"data":{"ids":[5,6,7]}}"#, r#"{"ids":[5,6,7]}"#),
        ];
        for (body, want) in cases {
            let e = decode(&binary_headers(), &Bytes::copy_from_slice(body)).expect("decode");
            assert_eq!(
                e.data.as_deref(),
                Some(want.as_bytes()),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn bad_bodies_are_malformed() {
        for body in [
            &b"not json"[..],
            b"[1]",
            br#"{"data":{"ids":"x"}}"#,
            br#"{"data":{"ids":[{}]}}"#,
        ] {
            let e = decode(&binary_headers(), &Bytes::copy_from_slice(body)).expect_err("malformed");
            assert_eq!(e.code.as_str(), "malformed", "{}", String::from_utf8_lossy(body));
        }
        let mut h = binary_headers();
        h.remove("ce-type");
        let e = decode(&h, &Bytes::from_static(b"{}")).expect_err("missing");
        assert_eq!(
            (e.code.as_str(), e.field.as_deref()),
            ("missing_attribute", Some("type"))
        );
    }
}
