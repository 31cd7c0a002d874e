//! `hookbridge::serve::run`, the entry point the binary's `serve` calls, driven in-process: it
//! binds the configured listener, lands a CloudEvent in a file sink, and returns `Ok` once the
//! shutdown future it was given resolves.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A port free on the loopback interface now (bound, then released for `run` to bind).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn config(port: u16, out: &Path) -> hookbridge::config::Config {
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"

[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}

[sinks.out]
type = "file"
path = "{out}"

[[routes]]
sinks = ["out"]
"#,
        out = out.display(),
    );
    hookbridge::config::from_toml_str(&toml, "serve_inprocess.toml").unwrap_or_else(|e| panic!("{e}"))
}

/// Posts one binary-mode CloudEvent, retrying while the listener is not bound yet.
async fn post_event(url: &str) -> reqwest::Response {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sent = client
            .post(url)
            .header("ce-specversion", "1.0")
            .header("ce-id", "inprocess-1")
            .header("ce-source", "urn:test:inprocess")
            .header("ce-type", "com.example.inprocess")
            .header("content-type", "application/json")
            .body(r#"{"hello":"world"}"#)
            .send()
            .await;
        match sent {
            Ok(resp) => return resp,
            Err(e) if e.is_connect() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("POST {url}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_lands_an_event_in_a_file_and_returns_on_shutdown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("events.jsonl");
    let port = free_port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hookbridge::serve::run(
        config(port, &out),
        None,
        false,
        async move {
            let _ = stopped.await;
        },
    ));

    let resp = post_event(&format!("http://127.0.0.1:{port}/events")).await;
    let status = resp.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        resp.text().await.unwrap_or_default()
    );
    let text = std::fs::read_to_string(&out).expect("the file sink's output");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(events.len(), 1, "{text}");
    assert_eq!(events[0]["id"], "inprocess-1");
    assert_eq!(events[0]["type"], "com.example.inprocess");
    assert_eq!(events[0]["source"], "urn:test:inprocess");
    assert!(!server.is_finished(), "run returned before its shutdown fired");

    stop.send(()).expect("run still waits for its shutdown");
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("run returns within 5 s of its shutdown")
        .expect("the server task");
    result.expect("run returns Ok");
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "the listener is closed once run returns"
    );
}
