//! The checker: extracts tables from the merged figment and collects every error and warning,
//! each with its origin (file or environment variable), full key path and a hint.

use figment::Figment;

use super::error::ConfigError;
use super::units;

impl<'a> Checker<'a> {
    /// A checker over `figment`; `origin` names the file (or `built-in default`).
    pub fn new(figment: &'a Figment, origin: &'a str) -> Self {
        Checker {
            figment,
            origin,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The merged figment.
    pub fn figment(&self) -> &'a Figment {
        self.figment
    }

    /// Resolves a list of secret references, each failure an error at `key`.
    pub fn secrets(&mut self, key: &str, refs: &super::secret::SecretRefs) -> Vec<Vec<u8>> {
        let list = refs.refs();
        if list.is_empty() {
            self.error(
                key,
                "no secret configured",
                Some(super::secret::SECRET_HINT.into()),
            );
        }
        let mut out = Vec::new();
        for r in list {
            match r.resolve() {
                Ok(s) => out.push(s.expose().to_vec()),
                Err(m) => self.error(key, m, Some(super::secret::SECRET_HINT.into())),
            }
        }
        out
    }

    /// The names of the named tables at `key` (`[sinks.NAME]`, `[sources.NAME]`); invalid names
    /// are recorded as errors and left out.
    pub fn table_names(&mut self, value: Option<&figment::value::Value>, key: &str) -> Vec<String> {
        let Some(value) = value else {
            return Vec::new();
        };
        let Some(dict) = value.as_dict() else {
            self.error(key, "must be a table of named entries", None);
            return Vec::new();
        };
        let mut names = Vec::new();
        for name in dict.keys() {
            if valid_name(name) {
                names.push(name.clone());
            } else {
                self.error(
                    format!("{key}.{name}"),
                    format!("invalid name {name:?}"),
                    Some("names use letters, digits, '_' and '-'".into()),
                );
            }
        }
        names
    }
}

/// A table name: letters, digits, `_` and `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Collects errors while walking the configuration.
pub struct Checker<'a> {
    figment: &'a Figment,
    origin: &'a str,
    /// Errors so far.
    pub errors: Vec<ConfigError>,
    /// Warnings so far.
    pub warnings: Vec<ConfigError>,
}

impl Checker<'_> {
    /// Where the value at `key` came from.
    pub fn origin_of(&self, key: &str) -> String {
        let meta = self.figment.find_metadata(key);
        describe_origin(meta, key, self.origin)
    }

    /// A duration that is used in whole seconds: a fraction would be cut off silently, so it is
    /// refused. Returns the seconds.
    pub fn whole_seconds(&mut self, key: &str, d: Option<units::HumanDuration>) -> Option<u64> {
        let d = d?.0;
        if d.subsec_nanos() != 0 {
            self.error(
                key.to_owned(),
                format!(
                    "{} is not a whole number of seconds",
                    humantime::format_duration(d)
                ),
                Some("JWT and signature clocks count in seconds: use e.g. \"1s\" or \"0s\"".into()),
            );
        }
        Some(d.as_secs())
    }

    /// A warning: the configuration works, but is unsafe (a secret written inline).
    pub fn warn(&mut self, key: impl Into<String>, message: impl Into<String>, hint: Option<String>) {
        let key = key.into();
        let mut e = ConfigError::new(self.origin_of(&key), key, message);
        e.hint = hint;
        self.warnings.push(e);
    }

    pub fn error(&mut self, key: impl Into<String>, message: impl Into<String>, hint: Option<String>) {
        let key = key.into();
        let mut e = ConfigError::new(self.origin_of(&key), key, message);
        e.hint = hint;
        self.errors.push(e);
    }

    /// Deserialises the table at `key`, recording serde errors with their full key path.
    pub fn extract<T: serde::de::DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        match self.figment.extract_inner::<T>(key) {
            Ok(v) => Some(v),
            Err(e) => {
                self.figment_error(e, key);
                None
            }
        }
    }

    pub fn figment_error(&mut self, e: figment::Error, prefix: &str) {
        for e in e {
            let (key, hint) = key_and_hint(&e, prefix);
            let origin = describe_origin(e.metadata.as_ref(), &key, self.origin);
            let mut ce = ConfigError::new(origin, key, kind_message(&e.kind));
            ce.hint = hint;
            self.errors.push(ce);
        }
    }
}

fn describe_origin(meta: Option<&figment::Metadata>, key: &str, default: &str) -> String {
    match meta {
        Some(m) => match &m.source {
            Some(figment::Source::File(p)) => p.display().to_string(),
            _ if m.name.contains("environment") => format!(
                "environment variable HOOKBRIDGE_{}",
                key.replace('.', "__").to_uppercase()
            ),
            _ => default.to_owned(),
        },
        None => default.to_owned(),
    }
}

fn kind_message(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(f, _) => format!("unknown key `{f}`"),
        Kind::MissingField(f) => format!("missing required key `{f}`"),
        Kind::UnknownVariant(v, _) => format!("unknown value `{v}`"),
        other => other.to_string(),
    }
}

fn key_and_hint(e: &figment::Error, prefix: &str) -> (String, Option<String>) {
    use figment::error::Kind;
    // figment appends the extraction prefix after the inner path; rebuild prefix-first.
    let prefix_parts: Vec<&str> = prefix.split('.').filter(|p| !p.is_empty()).collect();
    let mut inner: Vec<String> = e.path.clone();
    if inner.ends_with(&prefix_parts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        && !prefix_parts.is_empty()
    {
        inner.truncate(inner.len() - prefix_parts.len());
    }
    if inner.starts_with(&prefix_parts.iter().map(|s| s.to_string()).collect::<Vec<_>>()) {
        inner.drain(..prefix_parts.len());
    }
    let mut parts: Vec<String> = prefix_parts.iter().map(|s| s.to_string()).collect();
    parts.extend(inner);
    let (extra, hint) = match &e.kind {
        Kind::UnknownField(f, expected) => (
            Some(f.clone()),
            Some(format!("valid keys here: {}", expected.join(", "))),
        ),
        Kind::MissingField(f) => (Some(f.to_string()), None),
        Kind::UnknownVariant(_, expected) => (None, Some(format!("one of: {}", expected.join(", ")))),
        _ => (None, None),
    };
    if let Some(extra) = extra {
        // Some deserializers already put the offending field at the end of the path.
        if parts.last() != Some(&extra) {
            parts.push(extra);
        }
    }
    (parts.join("."), hint)
}
