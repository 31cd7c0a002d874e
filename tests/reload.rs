//! SIGHUP reload: a changed route takes effect for the next request; a broken configuration is
//! rejected with its errors logged and the old one keeps serving.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

fn config(dir: &std::path::Path, types: &str) -> String {
    format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}
[sinks.file]
type = "file"
path = "{}"
[[routes]]
types = [{types}]
sinks = ["file"]
"#,
        dir.join("events.jsonl").display()
    )
}

fn wait_for(lines: &mpsc::Receiver<Value>, message: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let v = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line {message:?}"));
        if v["fields"]["message"] == message {
            return v;
        }
    }
}

fn hup(pid: u32) {
    assert!(Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("kill")
        .success());
}

#[tokio::test]
async fn sighup_applies_a_changed_route_and_rejects_a_broken_config() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("hb.toml");
    std::fs::write(&path, config(dir.path(), "\"a.*\"")).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("HOOKBRIDGE_LOG_FORMAT", "json")
        .env("HOOKBRIDGE_SERVER__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx
                .send(serde_json::from_str::<Value>(&line).unwrap_or_default())
                .is_err()
            {
                break;
            }
        }
    });
    let listening = wait_for(&rx, "hookbridge listening");
    let addr = listening["fields"]["listen"].as_str().expect("listen").to_owned();
    let post = |ty: &'static str, id: &'static str| {
        reqwest::Client::new()
            .post(format!("http://{addr}/events"))
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-source", "urn:r")
            .header("ce-type", ty)
            .send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(post("b.x", "1").await.expect("post")),
        202,
        "b.* not routed yet: dropped"
    );

    std::fs::write(&path, config(dir.path(), "\"a.*\", \"b.*\"")).expect("config");
    hup(child.id());
    wait_for(&rx, "configuration reloaded");
    assert_eq!(
        status(post("b.x", "2").await.expect("post")),
        200,
        "the new route applies"
    );

    std::fs::write(&path, "[sources.ce]\npath = 42\n").expect("broken config");
    hup(child.id());
    let rejected = wait_for(&rx, "reload rejected: the running configuration stays");
    assert!(
        rejected["fields"]["errors"]
            .as_str()
            .is_some_and(|e| e.contains("sources.ce.path")),
        "{rejected}"
    );
    assert_eq!(
        status(post("b.x", "3").await.expect("post")),
        200,
        "the old configuration still serves"
    );
    assert_eq!(status(post("c.x", "4").await.expect("post")), 202);

    let written = std::fs::read_to_string(dir.path().join("events.jsonl")).expect("events");
    let ids: Vec<String> = written
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("json")["id"]
                .as_str()
                .expect("id")
                .to_owned()
        })
        .collect();
    assert_eq!(ids, ["2", "3"]);
    let _ = child.kill();
    let _ = child.wait();
}
