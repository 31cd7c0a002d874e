//! Settings types shared by the bridge and every sink's configuration: secrets (`{ env = … }`,
//! `{ file = … }`, or a list of them for rotation; never inline) and human durations.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// Where one secret comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSecretRef")]
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

/// A secret reference as written: exactly one of `env` and `file`, nothing else (an untagged
/// enum took the first that matched and ignored the rest: `{ env = "A", file = "/b" }` read `A`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretRef {
    env: Option<String>,
    file: Option<PathBuf>,
}

impl TryFrom<RawSecretRef> for SecretRef {
    type Error = String;

    fn try_from(raw: RawSecretRef) -> Result<Self, String> {
        match (raw.env, raw.file) {
            (Some(env), None) => Ok(SecretRef::Env { env }),
            (None, Some(file)) => Ok(SecretRef::File { file }),
            (Some(_), Some(_)) => Err("a secret reference has either `env` or `file`, not both".into()),
            (None, None) => Err("a secret reference needs `env = \"NAME\"` or `file = \"/path\"`".into()),
        }
    }
}

/// One secret reference or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSecretRefs")]
pub enum SecretRefs {
    /// A single secret.
    One(SecretRef),
    /// Several active secrets (rotation).
    Many(Vec<SecretRef>),
}

/// [`SecretRefs`] as written, checked after parsing so a wrong reference keeps its own message
/// (an untagged enum of checked references only says that nothing matched).
#[derive(Deserialize)]
#[serde(untagged)]
enum RawSecretRefs {
    One(RawSecretRef),
    Many(Vec<RawSecretRef>),
}

impl TryFrom<RawSecretRefs> for SecretRefs {
    type Error = String;

    fn try_from(raw: RawSecretRefs) -> Result<Self, String> {
        Ok(match raw {
            RawSecretRefs::One(r) => SecretRefs::One(r.try_into()?),
            RawSecretRefs::Many(rs) => SecretRefs::Many(
                rs.into_iter()
                    .map(SecretRef::try_from)
                    .collect::<Result<_, _>>()?,
            ),
        })
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
