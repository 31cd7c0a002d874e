//! `[sinks.*]`: each dispatched on its `type` to the sink registry, its timeouts fitted to the
//! server's publish deadline.

use std::time::Duration;

use figment::value::Value;

use crate::registry::{self, SinkSpec};
use crate::settings::secret::SECRET_HINT;
use crate::settings::Checker;

/// One `[sinks.NAME]`.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// The table name.
    pub name: String,
    /// Type-specific settings.
    pub spec: SinkSpec,
}

pub(super) fn check_sinks(
    c: &mut Checker<'_>,
    value: Option<&Value>,
    publish_timeout: Option<Duration>,
) -> Vec<SinkConfig> {
    let mut sinks = Vec::new();
    for name in c.table_names(value, "sinks") {
        let key = format!("sinks.{name}");
        let ty = match c.figment().find_value(&format!("{key}.type")) {
            Ok(v) => v.as_str().map(str::to_owned),
            Err(_) => None,
        };
        let Some(ty) = ty else {
            c.error(
                format!("{key}.type"),
                "missing required key `type`",
                Some(format!(
                    "one of: {}",
                    registry::SINK_TYPES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            continue;
        };
        if let Err((message, hint)) = registry::check_type(&ty) {
            c.error(format!("{key}.type"), message, Some(hint));
            continue;
        }
        let Some(mut spec) = c.extract::<SinkSpec>(&key) else {
            continue;
        };
        if let Some(publish) = publish_timeout {
            fit_timeouts(c, &key, &mut spec, publish);
        }
        for (k, message) in spec.validate() {
            c.error(format!("{key}.{k}"), message, None);
        }
        if let Some(warning) = spec.inline_secret() {
            c.warn(
                format!("{key}.{}", warning.0),
                warning.1,
                Some(SECRET_HINT.into()),
            );
        }
        // Resolved here, as source secrets are: an unset variable fails `check`, not the first
        // publish (or `serve`).
        for (k, r) in spec.secrets() {
            if let Err(m) = r.resolve() {
                c.error(format!("{key}.{k}"), m, Some(SECRET_HINT.into()));
            }
        }
        sinks.push(SinkConfig { name, spec });
    }
    sinks
}

/// A sink's own time limit at or past `server.publish_timeout` does nothing (the publish deadline
/// cuts it first) and, for Kafka's `message_timeout`, lets a record land after the sender was
/// answered 503 — a duplicate on the provider's retry. An explicit one is refused; an unset one
/// gets its default or, when the deadline is shorter, four fifths of it.
fn fit_timeouts(c: &mut Checker<'_>, key: &str, spec: &mut SinkSpec, publish: Duration) {
    for (k, value, default) in spec.timeouts_mut() {
        match value {
            Some(d) if d.0 >= publish => c.error(
                format!("{key}.{k}"),
                format!(
                    "{} is not shorter than server.publish_timeout ({}), which would cut it first",
                    humantime::format_duration(d.0),
                    humantime::format_duration(publish)
                ),
                Some("lower it, or raise server.publish_timeout (and server.request_timeout)".into()),
            ),
            Some(_) => {}
            None => {
                *value = Some(hookbridge_sink_core::settings::HumanDuration(
                    default.min(publish * 4 / 5),
                ));
            }
        }
    }
}
