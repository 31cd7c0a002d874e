//! `hookbridge routes` and `hookbridge send` as users run them: `send` builds a request every
//! verifier kind accepts, against a running hookbridge.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::Value;

const PUB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fic-test-pub.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fic-test-key.pem");

fn config(events: &std::path::Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[sources.plain]
path = "/plain"
kind = "cloudevents"
verify = {{ kind = "none" }}

[sources.token]
path = "/token"
kind = "cloudevents"
verify = {{ kind = "token", tokens = [{{ env = "HBT_OLD" }}, {{ env = "HBT_TOKEN" }}] }}

[sources.basic]
path = "/basic"
kind = "cloudevents"
verify = {{ kind = "basic", users = [{{ username = "hook", password = {{ env = "HBT_PASS" }} }}] }}

[sources.acme]
path = "/acme"
kind = "generic"
mapping = {{ id = {{ pointer = "/id" }}, type = {{ pointer = "/type" }} }}
verify = {{ kind = "hmac", secret = {{ env = "HBT_HMAC" }}, header = "x-sig", algorithm = "sha512", encoding = "base64", prefix = "v1=", signed = "{{timestamp}}.{{body}}", timestamp_header = "x-ts" }}

[sources.github]
path = "/github"
kind = "github"
verify = {{ secret = {{ env = "HBT_GH" }} }}

[sources.stripe]
path = "/stripe"
kind = "stripe"
verify = {{ secret = {{ env = "HBT_STRIPE" }} }}

[sources.svix]
path = "/svix"
kind = "standard-webhooks"
verify = {{ secret = {{ env = "HBT_SW" }} }}

[sources.fic]
path = "/fic"
kind = "fattureincloud"
public_url = "https://hooks.example.com/fic"
verify = {{ public_key = {{ file = "{PUB}" }}, allow_any_company = true }}

[sources.jwths]
path = "/jwths"
kind = "cloudevents"
verify = {{ kind = "jwt", algorithms = ["HS256"], key = {{ env = "HBT_JWT" }}, issuers = ["https://issuer"], audiences = ["hooks"], required = ["exp", "jti"], bind = {{ jti = "id" }} }}

[sources.jwtes]
path = "/jwtes"
kind = "cloudevents"
verify = {{ kind = "jwt", algorithms = ["ES256"], key = {{ file = "{PUB}" }}, bind = {{ jti = "id", src = "source" }} }}

[sinks.file]
type = "file"
path = "{}"

[sinks.other]
type = "blackhole"

[[routes]]
sinks = ["file"]

[[routes]]
source = "fic"
types = ["it.fattureincloud.webhooks.*.*.create"]
sinks = ["other"]
"#,
        events.display()
    )
}

const ENV: &[(&str, &str)] = &[
    ("HBT_OLD", "old-token"),
    ("HBT_TOKEN", "new-token"),
    ("HBT_PASS", "hunter2"),
    ("HBT_HMAC", "acme-secret"),
    ("HBT_GH", "gh-secret"),
    ("HBT_STRIPE", "whsec_stripe"),
    ("HBT_SW", "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
    ("HBT_JWT", "jwt-shared-secret"),
];

fn hookbridge() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookbridge"));
    cmd.envs(ENV.iter().copied()).env_remove("HOOKBRIDGE_CONFIG");
    cmd
}

#[test]
fn send_is_accepted_by_every_verifier_kind() {
    let dir = tempfile::tempdir().expect("dir");
    let events = dir.path().join("events.jsonl");
    let cfg = dir.path().join("hb.toml");
    std::fs::write(&cfg, config(&events)).expect("config");
    let mut child = hookbridge()
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("HOOKBRIDGE_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr: std::net::SocketAddr = loop {
        let line = lines.next().expect("log line").expect("read");
        let v: Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "hookbridge listening" {
            break v["fields"]["listen"]
                .as_str()
                .expect("listen")
                .parse()
                .expect("addr");
        }
    };
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});

    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, "jwt-shared-secret\n").expect("secret");
    let sources = [
        "plain", "token", "basic", "acme", "github", "stripe", "svix", "fic", "jwths", "jwtes",
    ];
    for source in sources {
        let path = if source == "plain" {
            "/plain".to_owned()
        } else {
            format!("/{source}")
        };
        let mut cmd = hookbridge();
        cmd.args(["send", "--config"]).arg(&cfg).args([
            "--source",
            source,
            "--url",
            &format!("http://{addr}{path}"),
        ]);
        if source == "fic" {
            cmd.args(["--key", KEY, "--company", "108061"]);
        }
        if source == "jwtes" {
            cmd.args(["--key", KEY]);
        }
        if source == "jwths" {
            cmd.arg("--key").arg(&secret_file);
        }
        let out = cmd.output().expect("send");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("-> 200"),
            "{source}: {stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Without the test key, a FIC send explains what it needs.
    let out = hookbridge()
        .args(["send", "--config"])
        .arg(&cfg)
        .args(["--source", "fic"])
        .output()
        .expect("send");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--key"));

    let written = std::fs::read_to_string(&events).expect("events");
    let lines: Vec<Value> = written
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let verifiers: Vec<&str> = lines.iter().filter_map(|l| l["hbverifier"].as_str()).collect();
    assert_eq!(
        verifiers,
        [
            "none",
            "token",
            "basic",
            "hmac",
            "github",
            "stripe",
            "standard-webhooks",
            "fattureincloud",
            "jwt",
            "jwt"
        ]
    );
    assert_eq!(lines[7]["subject"], "company:108061");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn routes_explains_matches_and_the_unmatched_policy() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = dir.path().join("hb.toml");
    std::fs::write(&cfg, config(&dir.path().join("e.jsonl"))).expect("config");
    let run = |args: &[&str]| {
        let out = hookbridge()
            .args(["routes", "--config"])
            .arg(&cfg)
            .args(args)
            .output()
            .expect("routes");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, _) = run(&[
        "--type",
        "it.fattureincloud.webhooks.issued_documents.invoices.create",
        "--source",
        "fic",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("routes[0] matches (source: any, pattern: **) -> file"),
        "{out}"
    );
    assert!(
        out.contains(
            "routes[1] matches (source: fic, pattern: it.fattureincloud.webhooks.*.*.create) -> other"
        ),
        "{out}"
    );
    assert!(out.contains("sinks: file (file), other (blackhole)"), "{out}");
    let (ok, out, _) = run(&["--type", "x.y", "--source", "plain"]);
    assert!(ok);
    assert!(!out.contains("routes[1]"), "{out}");
    let (ok, _, err) = run(&["--type", "x", "--source", "nope"]);
    assert!(!ok);
    assert!(err.contains("no source named \"nope\""), "{err}");

    // An unmatched drop policy is explained.
    let text = "[sources.a]\npath = \"/a\"\nkind = \"cloudevents\"\nverify = { kind = \"none\" }\n[sinks.s]\ntype = \"blackhole\"\n[[routes]]\ntypes = [\"a.*\"]\nsinks = [\"s\"]\n";
    std::fs::write(&cfg, text).expect("config");
    let (ok, out, _) = run(&["--type", "b.c"]);
    assert!(ok);
    assert!(out.contains("policy = \"drop\""), "{out}");
}
