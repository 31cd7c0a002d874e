//! The operator surface (#27): the admin API needs its own credential and a JSON body for
//! mutations; without a token it answers loopback Host names only; the probe listener serves
//! `/healthz`, `/readyz` and `/metrics` and never `/admin/*`; `check` refuses a non-loopback
//! admin listener without a token.

mod common;

use std::time::{Duration, Instant};

use common::start_listeners;
use serde_json::Value;

const TOKEN: &str = "admin-test-token-1";

fn config(dir: &std::path::Path, server: &str) -> String {
    format!(
        r#"
[server]
admin_listen = "127.0.0.1:9"
{server}

[sources.ce]
path = "/events"
kind = "cloudevents"
delivery = "spool"
verify = {{ kind = "none" }}

[spool]
dir = "{spool}"
retain = "1h"

[sinks.out]
type = "file"
path = "{out}"

[[routes]]
sinks = ["out"]

[dedup]
enabled = false
"#,
        spool = dir.join("spool").display(),
        out = dir.join("out.jsonl").display(),
    )
}

async fn post(hb: &common::Running, id: &str) {
    let resp = reqwest::Client::new()
        .post(hb.url("/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "urn:admin")
        .header("ce-type", "t.admin")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 202);
}

fn lines(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("out.jsonl"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

async fn wait_lines(dir: &std::path::Path, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines(dir) < n {
        assert!(Instant::now() < deadline, "{} of {n} lines", lines(dir));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// POSTs a replay of everything retained to the admin listener.
async fn replay(hb: &common::Running, auth: Option<&str>, content_type: &str) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .post(format!("http://{}/admin/replay", hb.admin_addr.expect("admin")))
        .header("content-type", content_type)
        .body("{}");
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    let resp = rb.send().await.expect("replay");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_needs_the_admin_token_and_a_json_body() {
    std::env::set_var("HB_ADMIN_TEST_TOKEN", TOKEN);
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(dir.path(), "admin_token = { env = \"HB_ADMIN_TEST_TOKEN\" }");
    let hb = start_listeners(&cfg, vec![], true, false).await;
    post(&hb, "a-1").await;
    post(&hb, "a-2").await;
    wait_lines(dir.path(), 2).await;

    let refused = [
        (None, "application/json", 401, "missing_token"),
        (Some("Bearer wrong"), "application/json", 401, "bad_token"),
        (Some(TOKEN), "application/json", 401, "missing_token"),
        (
            Some("Basic YWRtaW46YWRtaW4="),
            "application/json",
            401,
            "missing_token",
        ),
    ];
    for (auth, ct, want, code) in refused {
        let (status, body) = replay(&hb, auth, ct).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (want, Some(code)),
            "{auth:?}: {body}"
        );
    }
    let bearer = format!("Bearer {TOKEN}");
    // A form or text body (what a cross-site page can send without a preflight) is refused.
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let (status, body) = replay(&hb, Some(&bearer), ct).await;
        assert_eq!(status, 415, "{ct}: {body}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(lines(dir.path()), 2, "a refused replay re-queued nothing");
    // Listing the parked events needs the token too.
    let url = format!("http://{}/admin/parked", hb.admin_addr.expect("admin"));
    let status = reqwest::get(&url).await.expect("parked").status().as_u16();
    assert_eq!(status, 401);

    let (status, body) = replay(&hb, Some(&bearer), "application/json; charset=utf-8").await;
    assert_eq!((status, body["replayed"].as_u64()), (200, Some(2)), "{body}");
    wait_lines(dir.path(), 4).await;
    hb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_admin_api_answers_loopback_host_names_only() {
    let dir = tempfile::tempdir().expect("dir");
    let hb = start_listeners(&config(dir.path(), ""), vec![], true, false).await;
    post(&hb, "b-1").await;
    wait_lines(dir.path(), 1).await;
    let admin = hb.admin_addr.expect("admin");
    // A page whose DNS name was rebound to 127.0.0.1 sends its own name as Host.
    for host in ["evil.example", "evil.example:9090", "127.0.0.1.nip.io"] {
        let reply = common::raw_request(
            admin,
            format!(
                "POST /admin/replay HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(common::status_of(&reply), 403, "{host}: {reply}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lines(dir.path()), 1);
    for host in ["127.0.0.1", "localhost:9090", "[::1]:1"] {
        let reply = common::raw_request(
            admin,
            format!(
                "POST /admin/replay HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: 16\r\nconnection: close\r\n\r\n{{\"dry_run\":true}}"
            )
            .as_bytes(),
        )
        .await;
        assert_eq!(common::status_of(&reply), 200, "{host}: {reply}");
    }
    hb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_listener_serves_probes_and_metrics_and_never_the_admin_api() {
    std::env::set_var("HB_ADMIN_TEST_TOKEN", TOKEN);
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(
        dir.path(),
        "admin_token = { env = \"HB_ADMIN_TEST_TOKEN\" }\nprobe_listen = \"127.0.0.1:9\"",
    );
    let hb = start_listeners(&cfg, vec![], true, true).await;
    let probe = format!("http://{}", hb.probe_addr.expect("probe"));
    let admin = format!("http://{}", hb.admin_addr.expect("admin"));
    let get = |url: String| async move {
        let resp = reqwest::Client::new()
            .get(&url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("get");
        resp.status().as_u16()
    };
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get(format!("{probe}{path}")).await, 200, "probe {path}");
        // With a probe listener, neither the admin listener nor the webhook one serves them.
        assert_eq!(get(format!("{admin}{path}")).await, 404, "admin {path}");
        assert_eq!(get(hb.url(path)).await, 404, "main {path}");
    }
    for path in ["/admin/parked", "/admin/spool"] {
        assert_eq!(get(format!("{probe}{path}")).await, 404, "probe {path}");
        assert_eq!(get(hb.url(path)).await, 404, "main {path}");
        assert_eq!(get(format!("{admin}{path}")).await, 200, "admin {path}");
    }
    let resp = reqwest::Client::new()
        .post(format!("{probe}/admin/replay"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 404);
    hb.stop().await;
}

#[test]
fn check_refuses_a_public_admin_listener_without_a_token() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(dir.path(), "").replace(
        "admin_listen = \"127.0.0.1:9\"",
        "admin_listen = \"0.0.0.0:9090\"",
    );
    let errors = hookbridge::config::from_toml_str(&cfg, "test.toml")
        .expect_err("a public admin API without a token")
        .to_string();
    assert!(errors.contains("server.admin_token"), "{errors}");
    std::env::set_var("HB_ADMIN_TEST_TOKEN", TOKEN);
    let cfg = cfg.replace(
        "admin_listen = \"0.0.0.0:9090\"",
        "admin_listen = \"0.0.0.0:9090\"\nadmin_token = { env = \"HB_ADMIN_TEST_TOKEN\" }",
    );
    hookbridge::config::from_toml_str(&cfg, "test.toml").expect("with a token");
    let unset = cfg.replace("HB_ADMIN_TEST_TOKEN", "HB_ADMIN_TEST_UNSET");
    let errors = hookbridge::config::from_toml_str(&unset, "test.toml")
        .expect_err("an unset token variable")
        .to_string();
    assert!(errors.contains("HB_ADMIN_TEST_UNSET"), "{errors}");
}

/// The spool, the dedup table and the file sink's output hold events: created readable by their
/// owner only, whatever the umask (#27).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_hookbridge_creates_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(dir.path(), "").replace(
        "[dedup]\nenabled = false",
        &format!(
            "[dedup]\npath = \"{}\"",
            dir.path().join("state/dedup.redb").display()
        ),
    );
    let hb = start_listeners(&cfg, vec![], true, false).await;
    post(&hb, "m-1").await;
    wait_lines(dir.path(), 1).await;
    hb.stop().await;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    for file in ["spool/spool.redb", "state/dedup.redb", "out.jsonl"] {
        assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
    }
    for d in ["spool", "state"] {
        assert_eq!(mode(&dir.path().join(d)), 0o700, "{d}");
    }
}

/// Parked dead letters are bounded (`spool.max_parked`: at it new events get 503, nothing
/// accepted is dropped) and can be discarded — through the admin API with the token, and with
/// `hookbridge discard` on a stopped server's spool (#27).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_events_are_bounded_and_can_be_discarded() {
    use common::FailingSink;
    use hookbridge::sink::{SinkError, SinkHandle};
    std::env::set_var("HB_ADMIN_TEST_TOKEN", TOKEN);
    let dir = tempfile::tempdir().expect("dir");
    let cfg = config(dir.path(), "admin_token = { env = \"HB_ADMIN_TEST_TOKEN\" }").replace(
        "retain = \"1h\"",
        "retain = \"1h\"\nmax_parked = 2\nretry_initial = \"10ms\"\nretry_max = \"20ms\"",
    );
    let refusing = FailingSink::new("out", 1000, || SinkError::rejected("the receiver refuses it"));
    let hb = start_listeners(&cfg, vec![("out", refusing as SinkHandle)], true, false).await;
    let admin = format!("http://{}", hb.admin_addr.expect("admin"));
    let client = reqwest::Client::new();
    let spool_state = || async {
        let v: Value = client
            .get(format!("{admin}/admin/spool"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("spool")
            .json()
            .await
            .expect("json");
        v
    };
    post(&hb, "p-1").await;
    post(&hb, "p-2").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while spool_state().await["parked"] != 2 {
        assert!(Instant::now() < deadline, "{}", spool_state().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // At the bound: new events are refused (503), not parked without end.
    let resp = client
        .post(hb.url("/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "p-3")
        .header("ce-source", "urn:admin")
        .header("ce-type", "t.admin")
        .body("{}")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 503);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    let ready = client
        .get(format!("{admin}/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);

    let discard = |body: &'static str, auth: bool| {
        let mut rb = client
            .post(format!("{admin}/admin/discard"))
            .header("content-type", "application/json")
            .body(body);
        if auth {
            rb = rb.bearer_auth(TOKEN);
        }
        async move {
            let resp = rb.send().await.expect("discard");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    assert_eq!(discard("{}", false).await.0, 401, "the same credential as replay");
    // Deleting everything takes saying so.
    let (status, v) = discard("{}", true).await;
    assert_eq!((status, v["error"]["field"].as_str()), (400, Some("all")), "{v}");
    let (status, v) = discard(r#"{"dry_run": true}"#, true).await;
    assert_eq!(
        (status, v["matched"].as_u64(), v["discarded"].as_u64()),
        (200, Some(2), Some(0)),
        "{v}"
    );
    assert_eq!(spool_state().await["parked"], 2, "a dry run deletes nothing");
    let (status, v) = discard(r#"{"sink": "out", "type": "t.admin"}"#, true).await;
    assert_eq!((status, v["discarded"].as_u64()), (200, Some(2)), "{v}");
    assert_eq!(spool_state().await["parked"], 0);
    post(&hb, "p-4").await; // accepted again (and parked again: the sink still refuses)
    let deadline = Instant::now() + Duration::from_secs(10);
    while spool_state().await["parked"] != 1 {
        assert!(Instant::now() < deadline, "{}", spool_state().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hb.stop().await;

    // The CLI on the stopped server's spool.
    let cfg_path = dir.path().join("hookbridge.toml");
    std::fs::write(&cfg_path, &cfg).expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["discard", "--all", "--config"])
        .arg(&cfg_path)
        .arg("--json")
        .output()
        .expect("run discard");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["discarded"], 1, "{v}");
    let spool = hookbridge::deliver::spool::Spool::open(
        &dir.path().join("spool"),
        hookbridge::deliver::spool::Limits {
            max_events: 10,
            max_bytes: 1 << 20,
            max_parked: 10,
        },
    )
    .expect("open");
    assert_eq!(spool.parked(), 0);
}
