//! End to end: a GitLab source (`kind = "gitlab"`), the provider added to show the shape of the
//! sources registry (#29). Requests are built the way GitLab sends them (`X-Gitlab-Token`,
//! `X-Gitlab-Event`, `Idempotency-Key`, `X-Gitlab-Event-UUID`), not by hookbridge's signer; the
//! signer (`hookbridge send`) is checked against the source separately.

mod common;

use common::{start, MemorySink};
use hookbridge::sink::SinkHandle;
use serde_json::Value;

const CONFIG: &str = r#"
[sources.gl]
path = "/gl"
kind = "gitlab"
keep_headers = ["X-Gitlab-Instance"]
verify = { secret = [{ env = "HB_TEST_GL_OLD" }, { env = "HB_TEST_GL" }] }

[sinks.mem]
type = "blackhole"

[[routes]]
sinks = ["mem"]
"#;

const BODY: &[u8] = br#"{"object_kind":"merge_request","object_attributes":{"action":"open","iid":7},"project":{"path_with_namespace":"group/project"}}"#;

fn set_env() {
    for (k, v) in [
        ("HB_TEST_GL_OLD", "old-gitlab-token"),
        ("HB_TEST_GL", "gl-token-2"),
    ] {
        // Every test in this binary sets identical values before reading them.
        std::env::set_var(k, v);
    }
}

async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn gitlab_events_are_checked_typed_and_deduplicated_on_the_idempotency_key() {
    set_env();
    let mem = MemorySink::new("mem");
    let hb = start(CONFIG, vec![("mem", mem.clone() as SinkHandle)]).await;
    let client = reqwest::Client::new();
    let hook = |token: Option<&str>, key: &str| {
        let mut rb = client
            .post(hb.url("/gl"))
            .header("content-type", "application/json")
            .header("user-agent", "GitLab/17.6.0")
            .header("x-gitlab-event", "Merge Request Hook")
            .header("x-gitlab-instance", "https://gitlab.example.com")
            .header("x-gitlab-event-uuid", format!("uuid-{key}"))
            .header("idempotency-key", key)
            .body(BODY);
        if let Some(t) = token {
            rb = rb.header("x-gitlab-token", t);
        }
        rb
    };
    let (status, b) = send(hook(Some("gl-token-2"), "k-1")).await;
    assert_eq!((status, b["status"].as_str()), (200, Some("delivered")), "{b}");
    // The token of before a rotation still passes.
    let (status, b) = send(hook(Some("old-gitlab-token"), "k-2")).await;
    assert_eq!(status, 200, "{b}");
    // GitLab's retry of k-1 carries the same Idempotency-Key.
    let (status, b) = send(hook(Some("gl-token-2"), "k-1")).await;
    assert_eq!((status, b["status"].as_str()), (200, Some("duplicate")), "{b}");
    let (status, b) = send(hook(Some("wrong"), "k-3")).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (401, Some("bad_signature")),
        "{b}"
    );
    let (status, b) = send(hook(None, "k-4")).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (401, Some("missing_token")),
        "{b}"
    );

    assert_eq!(mem.ids(), ["k-1", "k-2"], "the accepted events, once each");
    let events = mem.events.lock().expect("lock").clone();
    let e = &events[0];
    assert_eq!(e.ty, "com.gitlab.merge_request.open");
    assert_eq!(e.source, "hookbridge://gl");
    assert_eq!(e.subject.as_deref(), Some("group/project"));
    assert_eq!(e.data.as_deref(), Some(BODY));
    assert_eq!(e.attribute("hbverifier").as_deref(), Some("token"));
    // keep_headers: the listed one, never the token.
    assert_eq!(
        e.headers,
        vec![(
            "x-gitlab-instance".to_owned(),
            "https://gitlab.example.com".to_owned()
        )]
    );
    hb.stop().await;
}

#[test]
fn the_gitlab_token_header_is_never_kept() {
    set_env();
    let text = CONFIG.replace(
        "keep_headers = [\"X-Gitlab-Instance\"]",
        "keep_headers = [\"X-Gitlab-Token\"]",
    );
    let err = hookbridge::config::from_toml_str(&text, "inline").expect_err("refused");
    assert!(
        err.0
            .iter()
            .any(|e| e.key == "sources.gl.keep_headers[0]" && e.message.contains("credential")),
        "{err}"
    );
}

#[tokio::test]
async fn what_hookbridge_send_builds_for_a_gitlab_source_is_accepted() {
    set_env();
    let mem = MemorySink::new("mem");
    let hb = start(CONFIG, vec![("mem", mem.clone() as SinkHandle)]).await;
    let config = hookbridge::config::from_toml_str(CONFIG, "inline").expect("config");
    let opts = hookbridge::cli::send::Options {
        ty: Some("com.gitlab.pipeline".into()),
        url: Some(hb.url("/gl")),
        id: Some("send-1".into()),
        ..Default::default()
    };
    let req = hookbridge::cli::send::build(&config, "gl", &opts).expect("build");
    assert!(
        req.headers
            .iter()
            .any(|(h, v)| h == "x-gitlab-token" && v == "gl-token-2"),
        "the newest token: {:?}",
        req.headers
    );
    let mut rb = reqwest::Client::new().post(&req.url).body(req.body.clone());
    for (h, v) in &req.headers {
        rb = rb.header(h, v);
    }
    let (status, b) = send(rb).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(mem.ids(), ["send-1"]);
    assert_eq!(mem.events.lock().expect("lock")[0].ty, "com.gitlab.pipeline");
    hb.stop().await;
}
