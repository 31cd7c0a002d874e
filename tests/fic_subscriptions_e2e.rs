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
    hookbridge_with(dir, key, method, "").await
}

/// Like [`hookbridge`], with `api` (TOML keys of `[sources.fic.api]`) when not empty.
async fn hookbridge_with(
    dir: &std::path::Path,
    key: &str,
    method: &str,
    api: &str,
) -> (std::path::PathBuf, tokio::sync::oneshot::Sender<()>) {
    let api = if api.is_empty() {
        String::new()
    } else {
        format!("[sources.fic.api]\n{api}\n")
    };
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
{api}[sinks.file]
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
    let url = sim.url();
    run_cli(
        config,
        args,
        &[
            ("FIC_API_URL", &url),
            ("FIC_ACCESS_TOKEN", TOKEN),
            ("FIC_COMPANY_ID", "108061"),
        ],
    )
    .await
}

/// `hookbridge fic subscriptions ARGS --config CONFIG` with only `env` among the FIC_* variables.
async fn run_cli(config: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookbridge"));
    cmd.args(["fic", "subscriptions"])
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("FIC_API_URL")
        .env_remove("FIC_ACCESS_TOKEN")
        .env_remove("FIC_COMPANY_ID")
        .envs(env.iter().copied());
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

/// Runs the subscriptions tool with no FIC_* variables: what it needs comes from the source.
async fn cli_from_config(config: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    run_cli(config, args, &[("HB_TEST_SUBS_TOKEN", TOKEN)]).await
}

/// subscribe → verify → welcome → notification → sink, with the token, company and API URL
/// from `[sources.fic.api]` and every token signed by the simulator as FIC signs them (#28).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manager_reads_the_source_s_api_table_and_a_notification_reaches_the_sink() {
    std::env::set_var("HB_TEST_SUBS_TOKEN", TOKEN);
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let api = format!(
        "base_url = \"{}\"\ntoken = {{ env = \"HB_TEST_SUBS_TOKEN\" }}\ncompany_id = 108061",
        sim.url()
    );
    let (config, _stop) = hookbridge_with(dir.path(), PUB, "header", &api).await;
    let (ok, out, err) = cli_from_config(&config, &["create", "--source", "fic", "--wait", "10s"]).await;
    assert!(ok, "{out} {err}");
    assert_eq!(sim.state.lock().expect("lock").subs["SUB1"].company, "108061");
    // list names no source: the configuration's only FIC source with an api table.
    let (ok, out, err) = cli_from_config(&config, &["list"]).await;
    assert!(ok && out.contains("SUB1"), "{out} {err}");

    let status = sim
        .notify("SUB1", "2:n-1", "issued_documents.invoices.create", &[4242])
        .await;
    assert_eq!(status, 200);
    // The welcome is sent after FIC marks the subscription verified: it may still be on its way.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let events: Vec<Value> = loop {
        let text = std::fs::read_to_string(dir.path().join("events.jsonl")).unwrap_or_default();
        let events: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        if events
            .iter()
            .any(|e| e["type"] == "it.fattureincloud.webhooks.subscriptions.welcome")
        {
            break events;
        }
        assert!(std::time::Instant::now() < deadline, "no welcome: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let n = events
        .iter()
        .find(|e| e["id"] == "2:n-1")
        .expect("the notification");
    assert_eq!(n["data"]["ids"], serde_json::json!([4242]), "{n}");
    assert_eq!(n["subject"], "company:108061");
}

/// Waiting for a verification that never comes polls with a growing gap (500 ms, doubling up
/// to 16 s), not every 500 ms: each poll spends FIC quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_verification_polls_sparingly() {
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let (config, _stop) = hookbridge(dir.path(), OTHER_PUB, "header").await;
    let (ok, out, _) = cli(&sim, &config, &["create", "--source", "fic", "--wait", "6s"]).await;
    assert!(!ok, "{out}");
    let polls = sim
        .state
        .lock()
        .expect("lock")
        .requests
        .iter()
        .filter(|r| r.as_str() == "GET /c/108061/subscriptions/SUB1")
        .count();
    // 0, 0.5, 1.5, 3.5 s and the deadline at 6 s: 5 (every 500 ms would be 13).
    assert!((2..=6).contains(&polls), "{polls} polls in 6 s");
}
