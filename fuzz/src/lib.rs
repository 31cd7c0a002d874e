//! Shared set-up for the fuzz targets: one configuration holding a source of every kind and
//! verifier (secrets from environment variables set here), all routed to a blackhole sink, and
//! the input format every request-shaped target uses.
//!
//! Input format: header lines `name: value` up to the first empty line (`\n\n`), then the body.
//! Lines that are not valid header names or values are skipped, as an HTTP server would refuse
//! them before hookbridge sees them.

use std::sync::OnceLock;

use bytes::Bytes;
use hookbridge::config::{Config, SourceConfig};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The fixed clock of the verifier targets (2026-01-01T00:00:00Z): signed timestamps in the
/// seeds are made for it.
pub const NOW: u64 = 1_767_225_600;

/// A P-256 public key (the test fixture of the jwt and cli tests).
const ES256_PUB: &str = include_str!("../../tests/fixtures/other-test-pub.pem");

/// The FIC test key pair's public half (the fic tests sign with its private half).
const FIC_PUB: &str = include_str!("../../tests/fixtures/fic-test-pub.pem");

/// Every source kind and verifier, each routed to the blackhole sink.
pub const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
body_limit = "64KiB"

[sources.events]
path = "/events"
kind = "cloudevents"
verify = { kind = "none" }

[sources.token]
path = "/token"
kind = "cloudevents"
verify = { kind = "token", tokens = [{ env = "HBFUZZ_TOKEN" }] }

[sources.basic]
path = "/basic"
kind = "cloudevents"
verify = { kind = "basic", users = [{ username = "hook", password = { env = "HBFUZZ_TOKEN" } }] }

[sources.hmac]
path = "/hmac"
kind = "generic"
mapping = { id = { pointer = "/id" }, type = { template = "com.acme.{header:x-kind}.{pointer:/event}" }, subject = { header = "x-tenant" }, time = { pointer = "/at" } }
verify = { kind = "hmac", secret = { env = "HBFUZZ_SECRET" }, header = "x-signature", prefix = "sha256=", signed = "{timestamp}.{body}", timestamp_header = "x-timestamp", tolerance = "5m" }

[sources.github]
path = "/github"
kind = "github"
verify = { secret = { env = "HBFUZZ_SECRET" } }

[sources.stripe]
path = "/stripe"
kind = "stripe"
verify = { secret = { env = "HBFUZZ_SECRET" }, tolerance = "5m" }

[sources.svix]
path = "/svix"
kind = "standard-webhooks"
verify = { secret = { env = "HBFUZZ_WHSEC" }, tolerance = "5m" }

[sources.gitlab]
path = "/gitlab"
kind = "gitlab"
verify = { secret = { env = "HBFUZZ_TOKEN" } }

[sources.fic]
path = "/fic"
kind = "fattureincloud"
public_url = "https://hooks.example.com/fic"
verify = { public_key = { env = "HBFUZZ_FIC_PUB" }, allow_any_company = true }

[sources.jwths]
path = "/jwths"
kind = "cloudevents"
verify = { kind = "jwt", algorithms = ["HS256"], key = { env = "HBFUZZ_SECRET" }, issuers = ["https://issuer"], audiences = ["hooks"], required = ["exp", "jti"], bind = { jti = "id" } }

[sources.jwtes]
path = "/jwtes"
kind = "cloudevents"
verify = { kind = "jwt", algorithms = ["ES256"], key = { env = "HBFUZZ_ES256_PUB" }, bind = { jti = "id", sub = "subject" } }

[sinks.hole]
type = "blackhole"

[[routes]]
types = ["**"]
sinks = ["hole"]

[dedup]
max_entries = 1000
"#;

/// The checked configuration (environment set first).
pub fn config() -> &'static Config {
    static CONFIG_ONCE: OnceLock<Config> = OnceLock::new();
    CONFIG_ONCE.get_or_init(|| {
        set_env();
        match hookbridge::config::from_toml_str(CONFIG, "fuzz.toml") {
            Ok(c) => c,
            Err(e) => panic!("the fuzz configuration does not check: {e}"),
        }
    })
}

/// Sets the secrets the configuration names.
pub fn set_env() {
    std::env::set_var("HBFUZZ_TOKEN", "fuzz-token");
    std::env::set_var("HBFUZZ_SECRET", "fuzz-secret");
    // base64 of "fuzz-standard-webhooks-key"
    std::env::set_var("HBFUZZ_WHSEC", "whsec_ZnV6ei1zdGFuZGFyZC13ZWJob29rcy1rZXk=");
    std::env::set_var("HBFUZZ_ES256_PUB", ES256_PUB);
    std::env::set_var("HBFUZZ_FIC_PUB", FIC_PUB);
}

/// The source named `name`.
pub fn source(name: &str) -> &'static SourceConfig {
    match config().sources.iter().find(|s| s.name == name) {
        Some(s) => s,
        None => panic!("no source {name} in the fuzz configuration"),
    }
}

/// Splits fuzz input into headers and body (see the module documentation).
pub fn request(data: &[u8]) -> (HeaderMap, Bytes) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (&data[..0], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = HeaderName::from_bytes(&line[..colon]);
        let value = HeaderValue::from_bytes(line[colon + 1..].trim_ascii());
        if let (Ok(n), Ok(v)) = (name, value) {
            headers.append(n, v);
        }
    }
    (headers, Bytes::copy_from_slice(body))
}
