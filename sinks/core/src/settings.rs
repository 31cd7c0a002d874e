//! Settings types shared by the bridge and every sink's configuration: secrets (`{ env = … }`,
//! `{ file = … }`, or a list of them for rotation; never inline) and human durations.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Where one secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// `{ env = "NAME" }`: the value of an environment variable.
    Env {
        /// Variable name.
        env: String,
    },
    /// `{ file = "/path" }`: a file's content, without a trailing newline.
    File {
        /// File path.
        file: PathBuf,
    },
}

/// One secret reference or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRefs {
    /// A single secret.
    One(SecretRef),
    /// Several active secrets (rotation).
    Many(Vec<SecretRef>),
}

/// What a secret written where a reference belongs is told: never its value (serde's own
/// message quotes it — "found string \"s3cret\"" — into `check`'s output and the reload log).
const NEVER_INLINE: &str =
    "a secret is { env = \"NAME\" } or { file = \"/path\" }, never written inline (the value is not shown)";

/// Reads a secret reference, or with `many` a list of them, by hand: exactly one of `env` and
/// `file` (an untagged enum took the first that matched and ignored the rest, and a derived
/// one quotes an inline value in its error).
struct RefVisitor {
    many: bool,
}

impl<'de> de::Visitor<'de> for RefVisitor {
    type Value = SecretRefs;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.many {
            "{ env = \"NAME\" }, { file = \"/path\" } or a list of them"
        } else {
            "{ env = \"NAME\" } or { file = \"/path\" }"
        })
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SecretRefs, A::Error> {
        let (mut env, mut file): (Option<String>, Option<PathBuf>) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "env" => env = Some(map.next_value()?),
                "file" => file = Some(map.next_value()?),
                other => {
                    map.next_value::<de::IgnoredAny>()?;
                    return Err(de::Error::custom(format!(
                        "unknown key `{other}` in a secret reference: use env or file"
                    )));
                }
            }
        }
        match (env, file) {
            (Some(env), None) => Ok(SecretRefs::One(SecretRef::Env { env })),
            (None, Some(file)) => Ok(SecretRefs::One(SecretRef::File { file })),
            (Some(_), Some(_)) => Err(de::Error::custom(
                "a secret reference has either `env` or `file`, not both",
            )),
            (None, None) => Err(de::Error::custom(
                "a secret reference needs env = \"NAME\" or file = \"/path\"",
            )),
        }
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<SecretRefs, A::Error> {
        if !self.many {
            return Err(de::Error::custom(
                "one secret reference here ({ env = \"NAME\" } or { file = \"/path\" }), not a list",
            ));
        }
        let mut refs = Vec::new();
        while let Some(r) = seq.next_element::<SecretRef>()? {
            refs.push(r);
        }
        Ok(SecretRefs::Many(refs))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRefs, E> {
        Err(E::custom(NEVER_INLINE))
    }

    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<SecretRefs, E> {
        Err(E::custom(NEVER_INLINE))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<SecretRefs, E> {
        Err(E::custom(NEVER_INLINE))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<SecretRefs, E> {
        Err(E::custom(NEVER_INLINE))
    }

    fn visit_i128<E: de::Error>(self, _: i128) -> Result<SecretRefs, E> {
        Err(E::custom(NEVER_INLINE))
    }

    fn visit_u128<E: de::Error>(self, _: u128) -> Result<SecretRefs, E> {
        Err(E::custom(NEVER_INLINE))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<SecretRefs, E> {
        Err(E::custom(NEVER_INLINE))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<SecretRefs, E> {
        Err(E::custom(NEVER_INLINE))
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_any(RefVisitor { many: false })? {
            SecretRefs::One(r) => Ok(r),
            SecretRefs::Many(_) => Err(de::Error::custom("one secret reference here, not a list")),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRefs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(RefVisitor { many: true })
    }
}

impl SecretRefs {
    /// The references as a list.
    pub fn refs(&self) -> Vec<&SecretRef> {
        match self {
            SecretRefs::One(r) => vec![r],
            SecretRefs::Many(v) => v.iter().collect(),
        }
    }
}

/// A resolved secret. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from raw bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(bytes.into())
    }

    /// The secret's bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl SecretRef {
    /// Reads the secret. The error says which variable or file is missing.
    pub fn resolve(&self) -> Result<Secret, String> {
        let value = match self {
            SecretRef::Env { env } => std::env::var(env).map_err(|e| match e {
                std::env::VarError::NotPresent => {
                    format!("environment variable {env} is not set")
                }
                std::env::VarError::NotUnicode(_) => {
                    format!("environment variable {env} is not valid UTF-8")
                }
            })?,
            SecretRef::File { file } => std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read secret file {}: {e}", file.display()))?,
        };
        let value = value.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(match self {
                SecretRef::Env { env } => format!("environment variable {env} is empty"),
                SecretRef::File { file } => format!("secret file {} is empty", file.display()),
            });
        }
        Ok(Secret::new(value.as_bytes()))
    }
}

impl SecretRef {
    /// Reads the secret as UTF-8 text (URLs, tokens, passwords handed to client libraries).
    pub fn resolve_text(&self) -> Result<String, String> {
        String::from_utf8(self.resolve()?.expose().to_vec()).map_err(|_| "the secret is not UTF-8".to_owned())
    }
}

/// The hint printed for malformed secret values.
pub const SECRET_HINT: &str =
    "a secret is { env = \"NAME\" } or { file = \"/path\" } or a list of them; never inline";

/// A duration written the human way (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration {s:?}: {e} (e.g. \"10s\", \"1m30s\", \"250ms\")"
                ))
            })
    }
}
