//! Where an event landed, as reported back in the webhook's JSON answer.

use serde::Serialize;
use serde_json::{Map, Value};

/// Proof that a sink's destination took responsibility for an event: the sink's name plus
/// destination-specific fields (topic/partition/offset, stream/sequence, exchange/routing key,
/// HTTP status, file offset). Serialises flat: `{"sink": "events", "offset": 123}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Receipt {
    /// The configured sink name.
    pub sink: String,
    /// Destination-specific detail.
    #[serde(flatten)]
    pub detail: Map<String, Value>,
}

impl Receipt {
    /// A receipt for sink `sink` with no detail yet.
    pub fn new(sink: impl Into<String>) -> Self {
        Receipt {
            sink: sink.into(),
            detail: Map::new(),
        }
    }

    /// Adds one detail field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.detail.insert(key.to_owned(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_flat() {
        let r = Receipt::new("events").with("offset", 42).with("path", "x.jsonl");
        let v = serde_json::to_value(&r).expect("serialise");
        assert_eq!(
            v,
            serde_json::json!({"sink": "events", "offset": 42, "path": "x.jsonl"})
        );
    }
}
