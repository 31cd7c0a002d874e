//! hookbridge's sink contract: the CloudEvents [`Event`] envelope every source produces, the [`Sink`]
//! trait every broker plugin implements, [`Receipt`]s and classified [`SinkError`]s, and the
//! [`Template`]s sinks use for topics, subjects, keys and headers.
//!
//! This crate knows no broker and no HTTP server. Its one promise to the bridge: a sink's
//! [`Sink::publish`] returns `Ok` only once the destination has taken responsibility for the event,
//! so the bridge may answer the webhook with a 2xx.

pub mod binding;
mod blackhole;
mod error;
mod event;
pub mod private;
mod receipt;
pub mod settings;
mod sink;
pub mod standard_webhooks;
mod template;

pub use blackhole::{BlackholeConfig, BlackholeSink};
pub use error::{ErrorKind, SinkError};
pub use event::{
    encode_header_value, header_value_text, is_json_content_type, short_hex, Event, ExtensionValue, Mode,
    SPEC_VERSION,
};
pub use receipt::Receipt;
pub use sink::{Sink, SinkHandle};
pub use template::{Template, TemplateError};
