//! Event → URL, headers and body (pure), and response status → outcome.

use std::time::Duration;

use bytes::Bytes;
use hookbridge_sink_core::binding::{self, Origin, Prefix};
use hookbridge_sink_core::{encode_header_value, standard_webhooks, Event, Mode, SinkError, Template};

/// A compiled request layout.
#[derive(Debug, Clone)]
pub struct Layout {
    pub url: Template,
    pub headers: Vec<(String, Template)>,
    pub mode: Mode,
    /// Standard Webhooks key, if signing.
    pub signing_key: Option<Vec<u8>>,
}

/// What to send.
#[derive(Debug)]
pub struct Outgoing {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Layout {
    /// Builds the request for `event`, signed at unix time `now` when signing is on.
    pub fn build(&self, event: &Event, now: i64) -> Result<Outgoing, SinkError> {
        // Values are percent-encoded: an event field cannot steer the target (hookbridge's
        // bearer token and signature go wherever the URL points).
        let url = self
            .url
            .render_url(event)
            .map_err(|e| SinkError::rejected(format!("url template {:?}: {e}", self.url.as_str())))?;
        // The binding (sinks/core) says which headers; HTTP's rules are applied here: values
        // percent-encoded, the content type as the binding's HTTP `Content-Type`.
        let bound = binding::bind(event, self.mode, Prefix::Http, &self.headers)?;
        let mut headers = Vec::with_capacity(bound.headers.len() + 4);
        let mut rest = bound.headers.into_iter().peekable();
        while let Some(h) = rest.next_if(|h| h.origin == Origin::Attribute) {
            headers.push((h.name.as_str().to_owned(), encode_header_value(&h.value)));
        }
        if let Some(ct) = &bound.content_type {
            headers.push(("content-type".to_owned(), ct.clone().into_owned()));
        }
        let delivery_key = event.delivery_key();
        headers.push(("idempotency-key".to_owned(), delivery_key.clone()));
        for h in rest {
            headers.push((h.name.as_str().to_owned(), encode_header_value(&h.value)));
        }
        let body = bound.body;
        if let Some(key) = &self.signing_key {
            // The webhook id: the delivery key, header-safe and stable across re-sends (not
            // across replays), so receivers can deduplicate on it.
            let id = delivery_key;
            headers.push(("webhook-id".to_owned(), id.clone()));
            headers.push(("webhook-timestamp".to_owned(), now.to_string()));
            headers.push((
                "webhook-signature".to_owned(),
                standard_webhooks::sign(key, &id, now, &body),
            ));
        }
        Ok(Outgoing { url, headers, body })
    }
}

/// The outcome of a response status: `Ok` for 2xx, else the classified error.
pub fn classify_status(status: u16, retry_after: Option<&str>) -> Result<(), SinkError> {
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => {
            let mut e = SinkError::unavailable(format!("the endpoint answered {status}"));
            if let Some(after) = retry_after.and_then(parse_retry_after) {
                e = e.with_retry_after(after);
            }
            Err(e)
        }
        _ => Err(SinkError::rejected(format!("the endpoint answered {status}"))),
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert!(classify_status(200, None).is_ok());
        assert!(classify_status(204, None).is_ok());
        for s in [408, 429, 500, 502, 503] {
            assert!(classify_status(s, None).expect_err("fail").is_retryable(), "{s}");
        }
        for s in [301, 302, 400, 401, 404, 410, 422] {
            assert!(!classify_status(s, None).expect_err("fail").is_retryable(), "{s}");
        }
        let e = classify_status(429, Some("7")).expect_err("429");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(120));
        let e = classify_status(503, Some(&later)).expect_err("503");
        assert!(e.retry_after().is_some_and(|d| d > Duration::from_secs(100)));
    }

    #[test]
    fn binary_and_signed() {
        let mut e = Event::new("198:abc", "urn:s", "t.x");
        e.subject = Some("café".into());
        e.datacontenttype = Some("application/json".into());
        e.data = Some(Bytes::from_static(b"{}"));
        let layout = Layout {
            url: Template::compile("http://x/{type}").expect("t"),
            headers: vec![],
            mode: Mode::Binary,
            signing_key: Some(vec![1, 2, 3]),
        };
        let out = layout.build(&e, 1_700_000_000).expect("build");
        assert_eq!(out.url, "http://x/t.x");
        let h = |k: &str| out.headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(h("ce-subject"), Some("caf%C3%A9"));
        let key = e.delivery_key();
        assert_eq!(h("idempotency-key"), Some(key.as_str()));
        assert_eq!(h("webhook-id"), Some(key.as_str()));
        assert_eq!(h("webhook-timestamp"), Some("1700000000"));
        let sig = h("webhook-signature").expect("sig");
        assert!(standard_webhooks::verify(
            &[vec![1, 2, 3]],
            &key,
            1_700_000_000,
            b"{}",
            sig
        ));
    }
}
