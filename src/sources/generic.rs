//! `kind = "generic"`: any JSON webhook, its attributes taken from the request by a per-source
//! `mapping` (header, JSON pointer, constant or template), authenticated by a generic `verify`
//! table.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use hookbridge_sink_core::Event;
use http::HeaderMap;

use super::{Checked, Draft, Example, Kind, KindCheck, Provider};
use crate::normalize::mapping::{self, parse_template, Field, Mapping};
use crate::normalize::NormalizeError;
use crate::settings::raw::{FieldRaw, MappingRaw};
use crate::settings::Checker;

/// The registry entry.
pub const KIND: Kind = Kind {
    name: "generic",
    keys: &["mapping"],
    dedup_on_body: false,
    check,
};

fn check(k: &mut KindCheck<'_, '_>) -> Option<Checked> {
    let mapping = check_mapping(k.c, k.key, k.raw.mapping.as_ref());
    let verifier = k.generic_verifier();
    Some(Checked {
        verifier: verifier?,
        provider: Arc::new(Generic { mapping: mapping? }),
    })
}

/// A generic source.
#[derive(Debug)]
pub struct Generic {
    /// Where each attribute comes from.
    pub mapping: Mapping,
}

impl Provider for Generic {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn decode(&self, source: &str, headers: &HeaderMap, body: &Bytes) -> Result<Vec<Event>, NormalizeError> {
        mapping::decode(&self.mapping, source, headers, body).map(|e| vec![e])
    }

    fn example(&self, draft: &mut Draft, ty: Option<&str>, data: Option<&[u8]>, _: &Example) {
        let ty = ty.unwrap_or("com.example.hookbridge.test");
        draft.body = data.map_or_else(
            || {
                serde_json::json!({ "id": draft.id, "type": ty })
                    .to_string()
                    .into_bytes()
            },
            <[u8]>::to_vec,
        );
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

fn field(c: &mut Checker<'_>, key: String, raw: &FieldRaw) -> Option<Field> {
    Some(match raw {
        FieldRaw::Header { header } => Field::Header(header.to_ascii_lowercase()),
        FieldRaw::Pointer { pointer } => {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                c.error(key, format!("JSON pointer {pointer:?} must start with '/'"), None);
                return None;
            }
            Field::Pointer(pointer.clone())
        }
        FieldRaw::Value { value } => Field::Value(value.clone()),
        FieldRaw::Template { template } => match parse_template(template) {
            Ok(parts) => Field::Template(parts),
            Err(m) => {
                c.error(key, format!("bad template: {m}"), None);
                return None;
            }
        },
    })
}

/// `[sources.X.mapping]`: required.
fn check_mapping(c: &mut Checker<'_>, key: &str, raw: Option<&MappingRaw>) -> Option<Mapping> {
    let mkey = format!("{key}.mapping");
    let Some(m) = raw else {
        c.error(
            mkey,
            "a generic source needs a mapping",
            Some("e.g. mapping = { id = { pointer = \"/id\" }, type = { pointer = \"/type\" } }".into()),
        );
        return None;
    };
    let mut required = |name: &str, f: &Option<FieldRaw>| match f {
        Some(f) => field(c, format!("{mkey}.{name}"), f),
        None => {
            c.error(
                format!("{mkey}.{name}"),
                format!("missing required key `{name}`"),
                None,
            );
            None
        }
    };
    let id = required("id", &m.id);
    let ty = required("type", &m.ty);
    let mut optional =
        |name: &str, f: &Option<FieldRaw>| f.as_ref().map(|f| field(c, format!("{mkey}.{name}"), f));
    let source = optional("source", &m.source);
    let subject = optional("subject", &m.subject);
    let time = optional("time", &m.time);
    Some(Mapping {
        id: id?,
        ty: ty?,
        source: source.map(|f| f.ok_or(())).transpose().ok()?,
        subject: subject.map(|f| f.ok_or(())).transpose().ok()?,
        time: time.map(|f| f.ok_or(())).transpose().ok()?,
    })
}
