//! `hookbridge fic subscriptions` end to end against the FIC API simulator: create from routes,
//! verification through the real GET challenge, failures explained, JSON output.

mod common;
#[path = "common/fic_sim.rs"]
mod fic_sim;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use fic_sim::{Sim, TOKEN};
use serde_json::Value;

const PUB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fic-test-pub.pem");
const OTHER_PUB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/other-test-pub.pem");

/// hookbridge in-process with a FIC source whose public_url is its own address.
async fn hookbridge(
    dir: &std::path::Path,
    key: &str,
    method: &str,
) -> (std::path::PathBuf, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let text = format!(
        r#"
[server]
listen = "{addr}"
[sources.fic]
path = "/webhooks/fic"
kind = "fattureincloud"
public_url = "http://{addr}/webhooks/fic"
subscription = {{ verification_method = "{method}", mapping = "binary" }}
verify = {{ public_key = {{ file = "{key}" }}, allow_any_company = true }}
[sinks.file]
type = "file"
path = "{}"
[[routes]]
source = "fic"
types = ["it.fattureincloud.webhooks.issued_documents.*.create", "it.fattureincloud.webhooks.subscriptions.welcome"]
sinks = ["file"]
"#,
        dir.join("events.jsonl").display()
    );
    let path = dir.join("hb.toml");
    std::fs::write(&path, &text).expect("config");
    let config = hookbridge::config::load(Some(&path)).unwrap_or_else(|e| panic!("{e}"));
    let app = hookbridge::app::App::build(config).expect("build");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hookbridge::ingress::serve(app, listener, async {
        let _ = rx.await;
    }));
    (path, tx)
}

async fn cli(sim: &Sim, config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookbridge"));
    cmd.args(["fic", "subscriptions"])
        .args(args)
        .arg("--config")
        .arg(config)
        .env("FIC_API_URL", sim.url())
        .env("FIC_ACCESS_TOKEN", TOKEN)
        .env("FIC_COMPANY_ID", "108061");
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run"))
        .await
        .expect("join");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_from_routes_verifies_and_receives_the_welcome() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let (config, _stop) = hookbridge(dir.path(), PUB, "header").await;
    let (ok, out, err) = cli(
        &sim,
        &config,
        &["create", "--source", "fic", "--wait", "10s", "--json"],
    )
    .await;
    assert!(ok, "{out} {err}");
    let v: Value = serde_json::from_str(out.trim()).expect("--json output parses");
    assert_eq!(v["verified"], true);
    let types: Vec<&str> = v["subscription"]["types"]
        .as_array()
        .expect("types")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types.len(), 11, "{types:?}");
    assert!(types
        .iter()
        .all(|t| t.starts_with("it.fattureincloud.webhooks.issued_documents.") && t.ends_with(".create")));
    assert!(
        !types.iter().any(|t| t.contains("welcome")),
        "the control type is not requested"
    );
    assert!(v["warnings"][0].as_str().is_some_and(|w| w.contains("https")));
    // The welcome event was received, verified and written.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap_or_default();
        if text.contains("subscriptions.welcome") {
            assert!(text.contains("\"data\":{\"ids\":[]}"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no welcome event written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // list and show, table and JSON.
    let (ok, out, _) = cli(&sim, &config, &["list"]).await;
    assert!(ok && out.contains("SUB1") && out.contains("yes"), "{out}");
    let (ok, out, _) = cli(&sim, &config, &["show", "SUB1", "--json"]).await;
    assert!(ok);
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["data"]["verified"], true);
    let (ok, out, _) = cli(&sim, &config, &["delete", "SUB1"]).await;
    assert!(ok, "{out}");
    assert!(sim.state.lock().expect("lock").subs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_challenge_answer_is_reported_and_verify_resends_the_method() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    // hookbridge trusts another key: it refuses the simulator's GET (401), so no verification.
    let (config, _stop) = hookbridge(dir.path(), OTHER_PUB, "query").await;
    let (ok, out, err) = cli(&sim, &config, &["create", "--source", "fic", "--wait", "2s"]).await;
    assert!(!ok, "must fail: {out}");
    assert!(out.contains("not verified"), "{out} {err}");
    {
        let st = sim.state.lock().expect("lock");
        assert_eq!(st.verifications.len(), 1);
        let (_, method, status, verified) = &st.verifications[0];
        assert_eq!((method.as_str(), *status, *verified), ("query", 401, false));
    }
    // verify sends the method again (FIC does not remember it).
    let (ok, out, _) = cli(
        &sim,
        &config,
        &["verify", "SUB1", "--source", "fic", "--wait", "2s"],
    )
    .await;
    assert!(!ok);
    assert!(out.contains("verification of SUB1 requested (query)"), "{out}");
    let st = sim.state.lock().expect("lock");
    assert_eq!(st.verifications.len(), 2);
    assert_eq!(st.verifications[1].1, "query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_exhaustion_and_bad_token_are_explained() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let (config, _stop) = hookbridge(dir.path(), PUB, "header").await;
    sim.state.lock().expect("lock").quota_left = Some(0);
    let (ok, _, err) = cli(&sim, &config, &["list"]).await;
    assert!(!ok);
    assert!(
        err.contains("quota") && err.contains("retry after 3600 s"),
        "{err}"
    );

    let sim2 = Arc::new(Sim::start().await);
    let out = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["fic", "subscriptions", "list"])
        .env("FIC_API_URL", sim2.url())
        .env("FIC_ACCESS_TOKEN", "expired")
        .env("FIC_COMPANY_ID", "1")
        .output();
    let out = tokio::task::spawn_blocking(move || out.expect("run"))
        .await
        .expect("join");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("access token was refused"));
}
