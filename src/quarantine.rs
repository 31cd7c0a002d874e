//! The quarantine: rejected requests (verification failed, unparseable, too large) sent to a
//! configured sink so operators can debug signature mismatches — with the reason code, source,
//! time, the non-secret headers and the body truncated to a bound. Rate-limited. The rejected
//! request still gets its 4xx: quarantining happens in the background and its failures are only
//! logged.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hookbridge_sink_core::{Event, ExtensionValue, SinkHandle};
use http::HeaderMap;
use serde_json::{json, Map, Value};

use crate::config::QuarantineConfig;
use crate::verify::SECRET_HEADERS;

/// The quarantine of one running configuration.
pub struct Quarantine {
    sink: SinkHandle,
    max_body: usize,
    per_second: f64,
    bucket: Mutex<(f64, Instant)>,
    publish_timeout: Duration,
}

/// One rejected request.
pub struct Rejected<'a> {
    /// Source name.
    pub source: &'a str,
    /// URL path.
    pub path: &'a str,
    /// Reason code of the answer.
    pub reason: &'a str,
    /// HTTP status answered.
    pub status: u16,
    /// Offending field, if any.
    pub field: Option<&'a str>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// The body, when it was read.
    pub body: Option<&'a Bytes>,
    /// The source verifier's own credential headers (never copied).
    pub credentials: &'a [String],
}

impl Quarantine {
    /// A quarantine publishing to `sink`.
    pub fn new(config: &QuarantineConfig, sink: SinkHandle, publish_timeout: Duration) -> Arc<Quarantine> {
        Arc::new(Quarantine {
            sink,
            max_body: config.max_body,
            per_second: f64::from(config.per_second),
            bucket: Mutex::new((f64::from(config.per_second), Instant::now())),
            publish_timeout,
        })
    }

    fn allow(&self) -> bool {
        let mut b = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let refill = now.duration_since(b.1).as_secs_f64() * self.per_second;
        b.0 = (b.0 + refill).min(self.per_second);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }

    /// The event describing a rejected request (pure).
    pub fn event(&self, r: &Rejected<'_>, received: &str, id: String) -> Event {
        let mut headers = Map::new();
        for (name, value) in r.headers {
            if SECRET_HEADERS.contains(&name.as_str())
                || r.credentials
                    .iter()
                    .any(|c| c.eq_ignore_ascii_case(name.as_str()))
            {
                continue;
            }
            let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
            headers.insert(name.as_str().to_owned(), Value::String(v));
        }
        let mut data = json!({
            "reason": r.reason,
            "status": r.status,
            "source": r.source,
            "path": r.path,
            "received": received,
            "headers": headers,
        });
        if let Some(f) = r.field {
            data["field"] = json!(f);
        }
        if let Some(body) = r.body {
            let kept = &body[..body.len().min(self.max_body)];
            data["body_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(kept));
            data["body_size"] = json!(body.len());
            data["body_truncated"] = json!(body.len() > self.max_body);
        }
        let mut e = Event::new(
            id,
            format!("hookbridge://{}", r.source),
            "dev.hookbridge.quarantine",
        );
        e.datacontenttype = Some("application/json".into());
        e.data = Some(Bytes::from(data.to_string()));
        e.extensions
            .insert("hbsource".into(), ExtensionValue::from(r.source));
        e.extensions
            .insert("hbreceived".into(), ExtensionValue::from(received));
        e.extensions
            .insert("hbreason".into(), ExtensionValue::from(r.reason));
        e
    }

    /// Sends a rejected request to the quarantine sink in the background (rate-limited).
    pub fn submit(self: &Arc<Self>, r: &Rejected<'_>) {
        if !self.allow() {
            metrics::counter!("hookbridge_quarantine_dropped_total").increment(1);
            return;
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let event = self.event(r, &crate::normalize::now_rfc3339(), format!("q-{nanos:x}"));
        let this = self.clone();
        tokio::spawn(async move {
            match crate::deliver::publish_timed(&this.sink, &event, this.publish_timeout).await {
                Ok(_) => metrics::counter!("hookbridge_quarantined_total").increment(1),
                Err(e) => tracing::warn!(error = %e, "quarantine publish failed"),
            }
        });
    }
}
