//! `kind = "cloudevents"`: any CloudEvents 1.0 HTTP producer (binary, structured or batch
//! mode), authenticated by a generic `verify` table.

use std::any::Any;

use bytes::Bytes;
use hookbridge_sink_core::Event;
use http::HeaderMap;

use super::{Checked, Draft, Example, Kind, KindCheck, Provider};
use crate::normalize::{cloudevents, NormalizeError};

/// The registry entry.
pub const KIND: Kind = Kind {
    name: "cloudevents",
    keys: &[],
    dedup_on_body: false,
    check,
};

fn check(k: &mut KindCheck<'_, '_>) -> Option<Checked> {
    Some(Checked {
        verifier: k.generic_verifier()?,
        provider: std::sync::Arc::new(CloudEvents),
    })
}

/// A CloudEvents source.
#[derive(Debug)]
pub struct CloudEvents;

/// The `ce-*` headers of a binary-mode example request.
pub fn binary_headers(draft: &mut Draft, source: &str, ty: &str, subject: Option<&str>) {
    draft.headers.extend([
        ("ce-specversion".into(), "1.0".into()),
        ("ce-id".into(), draft.id.clone()),
        ("ce-source".into(), source.to_owned()),
        ("ce-type".into(), ty.to_owned()),
    ]);
    if let Some(s) = subject {
        draft.headers.push(("ce-subject".into(), s.to_owned()));
    }
}

impl Provider for CloudEvents {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn decode(&self, _: &str, headers: &HeaderMap, body: &Bytes) -> Result<Vec<Event>, NormalizeError> {
        cloudevents::decode(headers, body)
    }

    fn example(&self, draft: &mut Draft, ty: Option<&str>, data: Option<&[u8]>, _: &Example) {
        let ty = ty.unwrap_or("com.example.hookbridge.test");
        binary_headers(draft, "hookbridge://send", ty, None);
        draft.body = data.unwrap_or(b"{}").to_vec();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
