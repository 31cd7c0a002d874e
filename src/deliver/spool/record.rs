//! What the spool stores: records and parked dead letters; and the listing of a replayed one.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use hookbridge_sink_core::{Event, ExtensionValue};
use serde::{Deserialize, Serialize};

/// One spooled event and the sinks it must reach (by name, so a restart with the same
/// configuration resumes correctly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Sink names.
    pub targets: Vec<String>,
    pub(super) id: String,
    pub(super) source: String,
    pub(super) specversion: String,
    #[serde(rename = "type")]
    pub(super) ty: String,
    pub(super) subject: Option<String>,
    pub(super) time: Option<String>,
    pub(super) datacontenttype: Option<String>,
    pub(super) dataschema: Option<String>,
    pub(super) extensions: BTreeMap<String, serde_json::Value>,
    pub(super) data_base64: Option<String>,
    pub(super) headers: Vec<(String, String)>,
}

impl Record {
    /// A record of `event` for `targets`.
    pub fn new(event: &Event, mut targets: Vec<String>) -> Self {
        // Each sink once: the backlog counts a record once per target.
        let mut seen = std::collections::BTreeSet::new();
        targets.retain(|t| seen.insert(t.clone()));
        Record {
            targets,
            id: event.id.clone(),
            source: event.source.clone(),
            specversion: event.specversion.clone(),
            ty: event.ty.clone(),
            subject: event.subject.clone(),
            time: event.time.clone(),
            datacontenttype: event.datacontenttype.clone(),
            dataschema: event.dataschema.clone(),
            extensions: event
                .extensions
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
                .collect(),
            data_base64: event
                .data
                .as_ref()
                .map(|d| base64::engine::general_purpose::STANDARD.encode(d)),
            headers: event.headers.clone(),
        }
    }

    /// The event id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The event type.
    pub fn ty(&self) -> &str {
        &self.ty
    }

    /// The hookbridge source it arrived on (`hbsource`).
    pub fn source_name(&self) -> Option<&str> {
        self.extensions.get("hbsource").and_then(|v| v.as_str())
    }

    /// When hookbridge received it (`hbreceived`).
    pub fn received(&self) -> Option<time::OffsetDateTime> {
        let text = self.extensions.get("hbreceived")?.as_str()?;
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
    }

    /// The event back.
    pub fn event(&self) -> Event {
        let mut e = Event::new(self.id.clone(), self.source.clone(), self.ty.clone());
        e.specversion = self.specversion.clone();
        e.subject = self.subject.clone();
        e.time = self.time.clone();
        e.datacontenttype = self.datacontenttype.clone();
        e.dataschema = self.dataschema.clone();
        for (k, v) in &self.extensions {
            let value = match v {
                serde_json::Value::Bool(b) => ExtensionValue::Boolean(*b),
                serde_json::Value::Number(n) => ExtensionValue::Integer(n.as_i64().unwrap_or_default()),
                serde_json::Value::String(s) => ExtensionValue::String(s.clone()),
                other => ExtensionValue::String(other.to_string()),
            };
            e.extensions.insert(k.clone(), value);
        }
        e.data = self
            .data_base64
            .as_ref()
            .and_then(|d| base64::engine::general_purpose::STANDARD.decode(d).ok())
            .map(Bytes::from);
        e.headers = self.headers.clone();
        e
    }
}

/// A dead letter kept in the spool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Parked {
    /// `rejected`, `exhausted`, `crashed` or `sink_removed`.
    pub reason: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
    /// The event (its `targets` name the sink it failed on).
    pub record: Record,
}

/// One event `replay` selected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Replayed {
    /// Its sequence number in the spool.
    pub seq: u64,
    /// Event id.
    pub id: String,
    /// Event type.
    pub r#type: String,
    /// The hookbridge source.
    pub source: Option<String>,
    /// When it was received.
    pub received: Option<String>,
    /// The sinks it is (or would be) re-published to.
    pub sinks: Vec<String>,
    /// Its new sequence number (not on a dry run).
    pub requeued_as: Option<u64>,
}

impl Replayed {
    /// The listing of record `seq` (not re-queued yet).
    pub fn of(seq: u64, record: &Record) -> Replayed {
        Replayed {
            seq,
            id: record.id.clone(),
            r#type: record.ty.clone(),
            source: record.source_name().map(str::to_owned),
            received: record
                .extensions
                .get("hbreceived")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            sinks: record.targets.clone(),
            requeued_as: None,
        }
    }
}

/// The one field of a record that deciding what to delete needs (cheaper than a whole record).
#[derive(Deserialize)]
pub(super) struct Targets {
    pub(super) targets: Vec<String>,
}
