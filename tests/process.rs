//! The `hookbridge` binary as users run it: the built-in default with its printed curl command,
//! and graceful shutdown on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{body_of, read_response, status_of};
use tokio::io::AsyncWriteExt;

/// Starts the binary in `dir` and returns it with the address from its JSON "listening" log line.
fn spawn(
    dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Child, std::net::SocketAddr, std::thread::JoinHandle<Vec<String>>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookbridge"));
    cmd.args(args)
        .current_dir(dir)
        .env("HOOKBRIDGE_LOG_FORMAT", "json")
        .env_remove("HOOKBRIDGE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn hookbridge");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        assert!(Instant::now() < deadline, "hookbridge did not report listening");
        let line = lines.next().expect("stderr line").expect("read");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if v["fields"]["message"] == "hookbridge listening" {
            break v["fields"]["listen"]
                .as_str()
                .expect("listen")
                .parse()
                .expect("addr");
        }
    };
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect());
    (child, addr, rest)
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("hookbridge did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sigterm(child: &Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}

#[test]
fn builtin_default_prints_a_curl_that_lands_an_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The built-in default listens on 127.0.0.1:8080; move it to a free port for the test.
    let (mut child, addr, _) = spawn(
        dir.path(),
        &["serve"],
        &[("HOOKBRIDGE_SERVER__LISTEN", "127.0.0.1:0")],
    );
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    // Collect the printed quick start up to the tail command.
    let mut printed = String::new();
    while !printed.contains("tail -n1") {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).expect("stdout") > 0,
            "stdout ended: {printed}"
        );
        printed.push_str(&line);
    }
    let start = printed.find("curl ").expect("a curl command");
    let end = printed[start..].find("\n\n").map_or(printed.len(), |e| start + e);
    let curl = printed[start..end].replace("\\\n", " ");
    assert!(curl.contains(&addr.to_string()), "{curl}");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{curl} -sS"))
        .current_dir(dir.path())
        .output()
        .expect("run the printed curl");
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(
        answer.contains("\"status\":\"delivered\""),
        "{answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(dir.path().join("hookbridge-events.jsonl")).expect("events file");
    let event: serde_json::Value =
        serde_json::from_str(written.lines().next().expect("a line")).expect("json");
    assert_eq!(event["type"], "com.example.hello");
    assert_eq!(event["data"], serde_json::json!({"hello": "world"}));
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_refuses_new_ones_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, addr, logs) = spawn(
        dir.path(),
        &["serve"],
        &[("HOOKBRIDGE_SERVER__LISTEN", "127.0.0.1:0")],
    );

    // An in-flight request: headers and half the body sent, the rest held back.
    let body = br#"{"slow":true}"#;
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /events HTTP/1.1\r\nhost: x\r\nce-specversion: 1.0\r\nce-id: slow-1\r\nce-source: urn:t\r\nce-type: t.slow\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.expect("head");
    slow.write_all(&body[..5]).await.expect("half body");
    tokio::time::sleep(Duration::from_millis(300)).await;

    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A new request during the drain: 503 shutting_down.
    let resp = common::raw_request(
        addr,
        b"POST /events HTTP/1.1\r\nhost: x\r\nce-specversion: 1.0\r\nce-id: late-1\r\nce-source: urn:t\r\nce-type: t\r\ncontent-length: 0\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&resp), 503, "{resp}");
    assert_eq!(body_of(&resp)["error"]["code"], "shutting_down");
    assert!(resp.to_ascii_lowercase().contains("retry-after:"), "{resp}");

    // The in-flight request completes and is delivered.
    slow.write_all(&body[5..]).await.expect("rest of body");
    let resp = read_response(&mut slow).await;
    assert_eq!(status_of(&resp), 200, "{resp}");
    assert_eq!(body_of(&resp)["status"], "delivered");

    let status = tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(10)))
        .await
        .expect("join");
    assert!(
        status.success(),
        "exit status {status:?}; logs: {:?}",
        logs.join().ok()
    );
    let written = std::fs::read_to_string(dir.path().join("hookbridge-events.jsonl")).expect("events file");
    assert!(written.contains("\"id\":\"slow-1\""));
    assert!(!written.contains("late-1"));
}

/// Text logs: an event id or type with a line break is escaped, so a sender cannot forge a log
/// line (#26).
#[test]
fn an_id_with_a_line_break_cannot_forge_a_log_line() {
    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .arg("serve")
        .current_dir(dir.path())
        .env_remove("HOOKBRIDGE_CONFIG")
        .env_remove("HOOKBRIDGE_LOG_FORMAT")
        .env("HOOKBRIDGE_SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "hookbridge did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/events"))
            .header("ce-specversion", "1.0")
            .header("ce-id", "x%0AFORGED level=ERROR")
            .header("ce-source", "urn:log")
            .header("ce-type", "t%0DFORGED2")
            .body("{}")
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    sigterm(&child);
    wait_exit(&mut child, Duration::from_secs(20));
    let lines = lines.join().expect("stderr");
    assert!(
        lines.iter().any(|l| l.contains("FORGED level=ERROR")),
        "the event was logged: {lines:?}"
    );
    for l in &lines {
        assert!(!l.starts_with("FORGED"), "a forged log line: {l:?}");
        assert!(!l.contains('\r'), "a carriage return in a log line: {l:?}");
    }
}
