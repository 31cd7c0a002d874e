//! Configuration loading and validation: every kind of error names its file and key.

use std::io::Write;
use std::process::Command;

use hookbridge::config::{self, ConfigErrors};

const BASE: &str = r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = { kind = "none" }

[sinks.out]
type = "blackhole"

[[routes]]
sinks = ["out"]
"#;

fn write(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    f.write_all(text.as_bytes()).expect("write");
    f
}

/// Loads `text` from a real file and returns its errors.
fn errors(text: &str) -> (ConfigErrors, String) {
    let f = write(text);
    let path = f.path().display().to_string();
    let errs = config::load(Some(f.path())).expect_err("config must be rejected");
    (errs, path)
}

fn assert_error(errs: &ConfigErrors, file: &str, key: &str, needle: &str) {
    let found = errs.0.iter().find(|e| e.key == key);
    let Some(e) = found else {
        panic!("no error for key {key:?} in:\n{errs}");
    };
    assert_eq!(e.origin, file, "origin of {key}");
    let text = e.to_string();
    assert!(text.contains(needle), "{text:?} should contain {needle:?}");
    assert!(text.starts_with(file), "{text:?} should start with the file name");
    assert!(text.contains(key), "{text:?} should name the key");
}

#[test]
fn example_config_parses_and_validates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example");
    let c = config::load(Some(std::path::Path::new(path))).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.sources.is_empty());
    assert!(!c.sinks.is_empty());
}

#[test]
fn builtin_default_is_valid() {
    let c = config::load(None).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.origin, "built-in default");
    assert_eq!(c.sources[0].path, "/events");
    assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
}

#[test]
fn unknown_keys_at_every_level() {
    let text = format!(
        "{BASE}\n[server]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n[sinks.two]\ntype = \"file\"\npath = \"x.jsonl\"\nfsyncc = true\n[extra]\na = 1\n"
    );
    let (errs, file) = errors(&text);
    assert_error(&errs, &file, "server.lisen", "unknown key `lisen`");
    assert_error(&errs, &file, "sinks.two.fsyncc", "unknown key `fsyncc`");
    assert_error(&errs, &file, "extra", "unknown key `extra`");
    // Every error is reported, not only the first.
    assert!(errs.0.len() >= 3, "{errs}");
}

#[test]
fn unknown_sink_in_route_lists_defined_sinks() {
    let text = BASE.replace("sinks = [\"out\"]", "sinks = [\"out\", \"kafka2\"]");
    let (errs, file) = errors(&text);
    assert_error(&errs, &file, "routes[0].sinks[1]", "no sink named \"kafka2\"");
    assert!(errs.to_string().contains("defined: out"), "{errs}");
}

#[test]
fn bad_patterns_are_reported_per_entry() {
    let text = BASE.replace(
        "sinks = [\"out\"]",
        "types = [\"a.**.b\", \"ok.*\", \"x*\"]\nsinks = [\"out\"]",
    );
    let (errs, file) = errors(&text);
    assert_error(
        &errs,
        &file,
        "routes[0].types[0]",
        "'**' may only be the last segment",
    );
    assert_error(&errs, &file, "routes[0].types[2]", "whole segments");
    assert!(!errs.has_key("routes[0].types[1]"));
}

#[test]
fn unreadable_secret_file() {
    let text = BASE.replace(
        "verify = { kind = \"none\" }",
        "verify = { kind = \"token\", tokens = [{ file = \"/nonexistent/token\" }] }",
    );
    let (errs, file) = errors(&text);
    assert_error(
        &errs,
        &file,
        "sources.ce.verify.tokens",
        "cannot read secret file /nonexistent/token",
    );
}

#[test]
fn unset_secret_env_var() {
    let text = BASE.replace(
        "verify = { kind = \"none\" }",
        "verify = { kind = \"token\", tokens = { env = \"HOOKBRIDGE_TEST_SURELY_UNSET\" } }",
    );
    let (errs, file) = errors(&text);
    assert_error(
        &errs,
        &file,
        "sources.ce.verify.tokens",
        "HOOKBRIDGE_TEST_SURELY_UNSET is not set",
    );
}

#[test]
fn bad_values_and_types() {
    let text = format!(
        "{BASE}\n[server]\nlisten = \"nowhere\"\nbody_limit = \"lots\"\nrequest_timeout = \"soon\"\n[unmatched]\npolicy = \"keep\"\n"
    );
    let (errs, file) = errors(&text);
    // The first serde error in [server] stops that table; its key is named.
    assert!(
        errs.has_key("server.body_limit") || errs.has_key("server.request_timeout"),
        "{errs}"
    );
    assert_error(&errs, &file, "unmatched.policy", "unknown policy \"keep\"");
    let text = format!("{BASE}\n[server]\nlisten = \"nowhere\"\n");
    let (errs, file) = errors(&text);
    assert_error(&errs, &file, "server.listen", "invalid address \"nowhere\"");
}

#[test]
fn sink_types() {
    let text = format!("{BASE}\n[sinks.z]\ntype = \"zeromq\"\n[sinks.n]\npath = \"x\"\n");
    let (errs, file) = errors(&text);
    assert_error(&errs, &file, "sinks.z.type", "unknown sink type \"zeromq\"");
    assert_error(&errs, &file, "sinks.n.type", "missing required key `type`");
}

#[test]
fn sources_need_a_verifier_and_valid_paths() {
    let text = BASE.replace("verify = { kind = \"none\" }\n", "")
        + "\n[sources.b]\npath = \"/events\"\nkind = \"cloudevents\"\nverify = { kind = \"none\" }\n"
        + "\n[sources.c]\npath = \"healthz\"\nkind = \"no-such-kind\"\nverify = { kind = \"nope\" }\n";
    let (errs, file) = errors(&text);
    assert_error(
        &errs,
        &file,
        "sources.ce.verify",
        "missing verifier configuration",
    );
    assert_error(&errs, &file, "sources.c.path", "invalid path");
    assert_error(
        &errs,
        &file,
        "sources.c.kind",
        "unknown source kind \"no-such-kind\"",
    );
    // [sources.b] and [sources.ce] share /events; whichever comes second is reported.
    assert!(errs.to_string().contains("is already used by source"), "{errs}");
}

#[test]
fn none_verifier_on_public_listener_needs_opt_in() {
    let text = format!("{BASE}\n[server]\nlisten = \"0.0.0.0:8080\"\n");
    let (errs, file) = errors(&text);
    assert_error(
        &errs,
        &file,
        "sources.ce.verify.kind",
        "accepts events from anyone",
    );
    let ok = text.replace(
        "verify = { kind = \"none\" }",
        "verify = { kind = \"none\", allow_public = true }",
    );
    config::from_toml_str(&ok, "inline").unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn toml_syntax_error_names_the_file() {
    let (errs, file) = errors("[server\nlisten = 1");
    let text = errs.to_string();
    assert!(text.contains(&file), "{text}");
}

#[test]
fn missing_file_is_an_error() {
    let errs = config::load(Some(std::path::Path::new("/nonexistent/hookbridge.toml"))).expect_err("missing");
    assert!(
        errs.to_string().contains("/nonexistent/hookbridge.toml"),
        "{errs}"
    );
}

#[test]
fn publish_timeout_must_fit_in_request_timeout() {
    let text = format!("{BASE}\n[server]\nrequest_timeout = \"2s\"\npublish_timeout = \"3s\"\n");
    let (errs, file) = errors(&text);
    assert_error(
        &errs,
        &file,
        "server.publish_timeout",
        "must be shorter than server.request_timeout",
    );
}

fn check(path: &std::path::Path, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookbridge"));
    cmd.arg("check").arg("--config").arg(path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run hookbridge check")
}

#[test]
fn check_command_exit_codes_and_env_overrides() {
    let good = write(BASE);
    let out = check(good.path(), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // An environment override is applied (and validated, naming the variable).
    let out = check(good.path(), &[("HOOKBRIDGE_SERVER__LISTEN", "not-an-address")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("HOOKBRIDGE_SERVER__LISTEN"), "{stderr}");
    assert!(stderr.contains("server.listen"), "{stderr}");

    // A valid override passes, and one that fixes a broken file makes it valid.
    let out = check(good.path(), &[("HOOKBRIDGE_SERVER__LISTEN", "127.0.0.1:9999")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let broken = write(&BASE.replace("type = \"blackhole\"", "type = \"nope\""));
    let out = check(broken.path(), &[("HOOKBRIDGE_SINKS__OUT__TYPE", "blackhole")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Variables that are not a key of the file are not read as one: the secret the documented
    // `admin_token = { env = "HOOKBRIDGE_ADMIN_TOKEN" }` names, and what Kubernetes defines
    // for a Service called hookbridge.
    let with_token = write(&format!(
        "{BASE}\n[server]\nadmin_token = {{ env = \"HOOKBRIDGE_ADMIN_TOKEN\" }}\n"
    ));
    let out = check(
        with_token.path(),
        &[
            (
                "HOOKBRIDGE_ADMIN_TOKEN",
                "a-long-enough-admin-token-for-the-check",
            ),
            ("HOOKBRIDGE_SERVICE_HOST", "10.0.0.1"),
            ("HOOKBRIDGE_PORT", "tcp://10.0.0.1:8080"),
            ("HOOKBRIDGE_PORT_8080_TCP_PORT", "8080"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A variable shaped like an override whose first segment is no table: warned, not applied.
    let out = check(good.path(), &[("HOOKBRIDGE_SERVR__LISTEN", "not-an-address")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("HOOKBRIDGE_SERVR__LISTEN: not applied"),
        "{stderr}"
    );

    // Several errors: all printed, exit non-zero.
    let bad = write(&format!("{BASE}\n[server]\nlisen = 1\n[extra]\n"));
    let out = check(bad.path(), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 configuration errors"), "{stderr}");
}

const FIC: &str = r#"
[sources.fic]
path = "/webhooks/fic"
kind = "fattureincloud"

[sinks.out]
type = "blackhole"

[[routes]]
sinks = ["out"]
"#;

#[test]
fn fic_source_needs_public_url_and_a_valid_key() {
    let (errs, file) = errors(FIC);
    assert_error(
        &errs,
        &file,
        "sources.fic.public_url",
        "missing required key `public_url`",
    );

    let with_url = FIC.replace(
        "kind = \"fattureincloud\"",
        "kind = \"fattureincloud\"\npublic_url = \"https://hooks.example.com/webhooks/fic\"",
    );
    // Without an allow-list, any FIC customer could publish through this URL (#27).
    let (errs, file) = errors(&with_url);
    assert_error(&errs, &file, "sources.fic.verify.companies", "any FIC customer");
    // The default (compiled-in) key needs nothing more than an allow-list (or the opt-out).
    for verify in [
        "companies = [108061]",
        "app_ids = [\"42\"]",
        "allow_any_company = true",
    ] {
        let listed = format!("{with_url}\n[sources.fic.verify]\n{verify}\n");
        config::from_toml_str(&listed, "inline").unwrap_or_else(|e| panic!("{verify}: {e}"));
    }

    let bad_key = format!("{with_url}\n[sources.fic.verify]\npublic_key = \"not a pem\"\n");
    let (errs, file) = errors(&bad_key);
    assert_error(
        &errs,
        &file,
        "sources.fic.verify.public_key",
        "not an EC public key",
    );

    let missing_file =
        format!("{with_url}\n[sources.fic.verify]\npublic_key = {{ file = \"/nonexistent/fic.pem\" }}\n");
    let (errs, file) = errors(&missing_file);
    assert_error(
        &errs,
        &file,
        "sources.fic.verify.public_key",
        "/nonexistent/fic.pem",
    );

    let typo = format!("{with_url}\n[sources.fic.verify]\nleway = \"1m\"\n");
    let (errs, file) = errors(&typo);
    assert_error(&errs, &file, "sources.fic.verify.leway", "unknown key `leway`");
}

#[test]
fn bad_templates_name_the_key() {
    let text = format!(
        "{BASE}\n[sinks.bus]\ntype = \"nats\"\nsubject = \"fic.{{Type}}\"\nheaders = {{ x-a = \"{{id\" }}\n"
    );
    let (errs, file) = errors(&text);
    assert_error(&errs, &file, "sinks.bus.subject", "bad template");
    assert_error(&errs, &file, "sinks.bus.headers.x-a", "unclosed");
}

/// An HTTP sink URL template with a field in the host would let an event choose where the
/// sink's credentials go: refused at `check` (#26).
#[test]
fn a_field_in_the_http_sink_host_is_refused() {
    let bad = format!(
        "{BASE}\n[sinks.fwd]\ntype = \"http\"\nurl = \"https://{{subject}}.consumer.example/hooks\"\n"
    );
    let errs = config::from_toml_str(&bad, "inline").expect_err("refused");
    assert!(
        errs.0
            .iter()
            .any(|e| e.key == "sinks.fwd.url" && e.to_string().contains("host")),
        "{errs}"
    );
    let ok = format!(
        "{BASE}\n[sinks.fwd]\ntype = \"http\"\nurl = \"https://consumer.example/hooks/{{subject}}\"\n"
    );
    config::from_toml_str(&ok, "inline").unwrap_or_else(|e| panic!("{e}"));
}

/// `check` resolves every secret, sink secrets included (an unset NATS token, HTTP bearer,
/// signing secret, AMQP URL or Kafka SASL password passed `check` and failed at `serve` or on
/// every publish), lists unrelated errors of several tables in one run, and warns — without
/// failing — about a secret written inline (#27).
#[test]
fn check_resolves_sink_secrets_and_lists_every_error_in_one_run() {
    let text = format!(
        r#"{BASE}
[sinks.bus]
type = "nats"
subject = "hooks.{{type}}"
token = {{ env = "HB_CHECK_UNSET_NATS_TOKEN" }}

[sinks.fwd]
type = "http"
url = "https://consumer.example/hooks"
auth = {{ bearer = {{ env = "HB_CHECK_UNSET_BEARER" }} }}
sign = {{ secret = {{ file = "/nonexistent/hb-check-signing" }} }}

[sinks.rabbit]
type = "rabbitmq"
url = {{ env = "HB_CHECK_UNSET_AMQP_URL" }}
exchange = "x"

[sinks.kafka]
type = "kafka"
topic = "t"
sasl_password = {{ env = "HB_CHECK_UNSET_SASL" }}

[sources.fic]
path = "/fic"
kind = "fattureincloud"
public_url = "https://hooks.example.com/fic"

[server]
admin_listen = "0.0.0.0:9090"
"#
    );
    let file = write(&text);
    let out = check(file.path(), &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "sinks.bus.token",
        "HB_CHECK_UNSET_NATS_TOKEN",
        "sinks.fwd.auth.bearer",
        "sinks.fwd.sign.secret",
        "/nonexistent/hb-check-signing",
        "sinks.rabbit.url",
        "sinks.kafka.sasl_password",
        "sources.fic.verify.companies",
        "server.admin_token",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing from:\n{stderr}");
    }
    assert!(stderr.contains("7 configuration errors"), "{stderr}");

    // Inline secrets: a warning, and the configuration still passes.
    let inline = write(&format!(
        "{BASE}\n[sinks.rabbit]\ntype = \"rabbitmq\"\nurl = \"amqp://app:s3cret@broker.internal:5672/%2f\"\nexchange = \"x\"\n\n[sources.j]\npath = \"/j\"\nkind = \"cloudevents\"\nverify = {{ kind = \"jwt\", algorithms = [\"HS256\"], key = \"inline-hs-secret\" }}\n"
    ));
    let out = check(inline.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains("sinks.rabbit.url"),
        "{stderr}"
    );
    assert!(stderr.contains("sources.j.verify.key"), "{stderr}");
    let nats = write(&format!(
        "{BASE}\n[sinks.bus]\ntype = \"nats\"\nurl = \"nats://app:s3cret@nats.internal:4222\"\nsubject = \"x.{{type}}\"\n"
    ));
    let out = check(nats.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("sinks.bus.url"),
        "{stderr}"
    );
    // The local guest default is not a secret worth a warning.
    let guest = write(&format!(
        "{BASE}\n[sinks.rabbit]\ntype = \"rabbitmq\"\nurl = \"amqp://guest:guest@127.0.0.1:5672/%2f\"\nexchange = \"x\"\n"
    ));
    let out = check(guest.path(), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("warning"), "{stderr}");
}

#[test]
fn sink_timeouts_at_or_past_the_publish_deadline_are_refused_and_unset_ones_fit_under_it() {
    let sinks = r#"
[sinks.k]
type = "kafka"
topic = "t"
message_timeout = "5s"
[sinks.r]
type = "rabbitmq"
exchange = "x"
confirm_timeout = "6s"
connect_timeout = "1s"
[sinks.h]
type = "http"
url = "http://127.0.0.1:1/in"
timeout = "5s"
[sinks.n]
type = "nats"
subject = "s"
connect_timeout = "10s"
"#;
    let (errs, file) = errors(&format!("{BASE}{sinks}"));
    for key in [
        "sinks.k.message_timeout",
        "sinks.r.confirm_timeout",
        "sinks.h.timeout",
        "sinks.n.connect_timeout",
    ] {
        assert_error(&errs, &file, key, "not shorter than server.publish_timeout (5s)");
    }
    assert!(
        !errs.to_string().contains("sinks.r.connect_timeout"),
        "1s is fine: {errs}"
    );

    // Unset: the default (4 s), or four fifths of a shorter publish deadline.
    let f = write(&format!(
        "{BASE}[server]\npublish_timeout = \"2s\"\n[sinks.k]\ntype = \"kafka\"\ntopic = \"t\"\n"
    ));
    let cfg = config::load(Some(f.path())).expect("valid");
    let mut k = cfg.sinks.into_iter().find(|s| s.name == "k").expect("k").spec;
    let fitted: Vec<_> = k
        .timeouts_mut()
        .into_iter()
        .map(|(n, v, _)| (n, v.map(|d| d.0)))
        .collect();
    assert_eq!(
        fitted,
        [("message_timeout", Some(std::time::Duration::from_millis(1600)))]
    );
}

#[test]
fn kafka_passthrough_properties_hookbridge_sets_are_refused_with_the_key_to_use() {
    let text = format!(
        "{BASE}[sinks.k]\ntype = \"kafka\"\ntopic = \"t\"\n[sinks.k.librdkafka]\n\
         \"delivery.timeout.ms\" = \"60000\"\n\"linger.ms\" = \"100\"\n\"client.id\" = \"me\"\n\
         \"metadata.broker.list\" = \"other:9092\"\n\"enable.idempotence\" = \"false\"\n\
         \"queue.buffering.max.kbytes\" = \"1\"\n\"security.protocol\" = \"plaintext\"\n"
    );
    let (errs, file) = errors(&text);
    for (key, instead) in [
        ("delivery.timeout.ms", "message_timeout"),
        ("linger.ms", "linger"),
        ("client.id", "hookbridge-<sink>"),
        ("metadata.broker.list", "brokers"),
        ("enable.idempotence", "idempotence"),
        ("queue.buffering.max.kbytes", "queue_max_kbytes"),
    ] {
        assert_error(&errs, &file, &format!("sinks.k.librdkafka.{key}"), instead);
    }
    assert!(!errs.to_string().contains("security.protocol"), "{errs}");
}

/// Settings that would be accepted and do nothing are refused, each naming its key.
#[test]
fn settings_that_would_have_no_effect_are_refused() {
    std::env::set_var("HB_TEST_NOOP_SECRET", "a-secret-of-some-length");
    let pem = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fic-test-pub.pem");
    let sources = format!(
        r#"
[sources.jw]
path = "/jw"
kind = "cloudevents"
public_url = "https://hooks.example.com/jw"
verify = {{ kind = "jwt", algorithms = ["ES256"], key = {{ file = "{pem}" }}, refresh = "5m", leeway = "1500ms" }}
[sources.mac]
path = "/mac"
kind = "generic"
mapping = {{ id = {{ pointer = "/id" }}, type = {{ value = "t" }} }}
verify = {{ kind = "hmac", secret = {{ env = "HB_TEST_NOOP_SECRET" }}, header = "x-sig", tolerance = "5m" }}
[sources.fic]
path = "/fic"
kind = "fattureincloud"
public_url = "https://hooks.example.com/fic"
verify = {{ companies = [1], allow_any_company = true, challenge_requires_token = false, challenge_checks_allow_lists = true }}
[sources.fic.api]
token = {{ env = "HB_TEST_NOOP_SECRET" }}
max_concurrency = 0
[sinks.bus]
type = "nats"
subject = "s"
jetstream = true
headers = {{ Nats-Msg-Id = "{{id}}", content-type = "text/plain" }}
[sinks.web]
type = "http"
url = "http://127.0.0.1:1/in"
headers = {{ Idempotency-Key = "{{id}}", ce-id = "x" }}
[quarantine]
sink = "bus"
per_second = 0
"#
    );
    let (errs, file) = errors(&format!("{BASE}{sources}"));
    for (key, needle) in [
        ("sources.jw.public_url", "only fattureincloud"),
        ("sources.jw.verify.refresh", "only with jwks_url"),
        ("sources.mac.verify.tolerance", "without timestamp_header"),
        ("sources.fic.verify.allow_any_company", "contradict"),
        ("sources.fic.verify.challenge_checks_allow_lists", "no effect"),
        ("sources.fic.api.max_concurrency", "at least 1"),
        ("sinks.bus.headers.Nats-Msg-Id", "set by the sink itself"),
        ("sinks.bus.headers.content-type", "set by the sink itself"),
        ("sinks.web.headers.Idempotency-Key", "set by the sink itself"),
        ("sinks.web.headers.ce-id", "set by the sink itself"),
        ("quarantine.per_second", "at least 1"),
    ] {
        assert_error(&errs, &file, key, needle);
    }
    // A fraction of a second would be cut off: refused (after `refresh`, the JWT table stops, so
    // the leeway is checked on a source of its own).
    let leeway = format!(
        "{BASE}[sources.j2]\npath = \"/j2\"\nkind = \"cloudevents\"\nverify = {{ kind = \"jwt\", algorithms = [\"ES256\"], key = {{ file = \"{pem}\" }}, leeway = \"1500ms\" }}\n"
    );
    let (errs, file) = errors(&leeway);
    assert_error(
        &errs,
        &file,
        "sources.j2.verify.leeway",
        "whole number of seconds",
    );
}

/// `{ env = …, file = … }` was read as its first key, the second ignored: now refused.
#[test]
fn a_secret_reference_with_both_env_and_file_is_refused() {
    let text = BASE.replace(
        "verify = { kind = \"none\" }",
        "verify = { kind = \"token\", tokens = { env = \"HB_TEST_A\", file = \"/etc/b\" } }",
    );
    let (errs, _) = errors(&text);
    let text = errs.to_string();
    assert!(
        text.contains("sources.ce.verify") && text.contains("either `env` or `file`, not both"),
        "{errs}"
    );
}

/// Tables that do nothing in this configuration are warned about (not refused).
#[test]
fn spool_and_dedup_settings_that_do_nothing_are_warned_about() {
    let f = write(&format!(
        "{BASE}[spool]\ndir = \"/tmp/hb-unused-spool\"\n[dedup]\nenabled = false\nwindow = \"1h\"\n"
    ));
    let cfg = config::load(Some(f.path())).expect("valid");
    let warnings: Vec<String> = cfg.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("spool") && w.contains("never opened")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("dedup") && w.contains("do nothing")),
        "{warnings:?}"
    );
}

/// A secret written where a reference belongs is refused without its value in the message
/// (serde's own message quoted it into `check`'s output and the reload log).
#[test]
fn an_inline_secret_is_refused_without_showing_it() {
    let text = BASE.replace(
        "verify = { kind = \"none\" }",
        "verify = { kind = \"basic\", users = [{ username = \"u\", password = \"basic-SECRET-456\" }] }",
    ) + "[sinks.k]\ntype = \"kafka\"\ntopic = \"t\"\nsasl_password = \"kafka-SECRET-123\"\n\
         [sinks.h]\ntype = \"http\"\nurl = \"http://127.0.0.1:1/x\"\nauth = { bearer = 12345678 }\n";
    let (errs, _) = errors(&text);
    let shown = errs.to_string();
    for secret in ["basic-SECRET-456", "kafka-SECRET-123", "12345678"] {
        assert!(!shown.contains(secret), "{secret} shown: {shown}");
    }
    assert!(shown.contains("never written inline"), "{shown}");
    // The table is named (a tagged table's field path does not survive serde's buffering).
    assert!(shown.contains("sinks.k"), "{shown}");
    // Through an environment override too.
    let f = write(BASE);
    let out = check(
        f.path(),
        &[(
            "HOOKBRIDGE_SOURCES__CE__VERIFY",
            "{kind=\"token\",tokens=\"env-SECRET-789\"}",
        )],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && !stderr.contains("env-SECRET-789"),
        "{stderr}"
    );
}

/// Headers the HTTP sink writes only with `auth` or `sign` may be configured without them (a
/// custom scheme such as `ApiKey` has no other way in).
#[test]
fn an_http_authorization_header_without_auth_is_allowed() {
    let f = write(&format!(
        "{BASE}[sinks.h]\ntype = \"http\"\nurl = \"http://127.0.0.1:1/x\"\nheaders = {{ Authorization = \"ApiKey k\", webhook-id = \"{{id}}\" }}\n"
    ));
    config::load(Some(f.path())).unwrap_or_else(|e| panic!("{e}"));
}

/// A publish deadline too short to fit a sink timeout under (1 ms made Kafka's 0: "never time
/// out") and a Kafka linger that librdkafka would refuse are refused by check.
#[test]
fn a_tiny_publish_deadline_and_a_linger_past_the_message_timeout_are_refused() {
    let (errs, file) = errors(&format!("{BASE}[server]\npublish_timeout = \"1ms\"\n"));
    assert_error(&errs, &file, "server.publish_timeout", "at least 100ms");
    let (errs, file) = errors(&format!(
        "{BASE}[sinks.k]\ntype = \"kafka\"\ntopic = \"t\"\nlinger = \"3s\"\nmessage_timeout = \"2s\"\n"
    ));
    assert_error(&errs, &file, "sinks.k.linger", "shorter than message_timeout");
}
