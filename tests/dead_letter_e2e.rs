//! Dead letters, durable dedup and replay, end to end.
//!
//! - A sink that refuses permanently (an HTTP endpoint answering 400) sends its events to the
//!   dead-letter sink (JetStream, read back with async-nats) with the reason, the sink, the
//!   attempts and the last error — in sync mode (answered 200 `dead_lettered`) and in spool mode
//!   (refused, and retries exhausted). Without a dead-letter sink the event is parked in the
//!   spool, reported by `/admin/parked`, `/readyz` and `/metrics`, and `replay --parked`
//!   re-sends it.
//! - A duplicate posted after a restart is answered `duplicate` and not published again; one
//!   posted after the window is published.
//! - Replay of a time window re-publishes exactly those events; a dry run publishes nothing;
//!   with the server stopped, `hookbridge replay` works on the spool directly.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::start_full;
use serde_json::Value;
use warp::Filter;

fn unique(prefix: &str) -> String {
    common::unique_with(prefix, 'x')
}

fn nats_url() -> String {
    std::env::var("HOOKBRIDGE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// An HTTP endpoint: `/ok` records and answers 204, `/bad` answers 400, `/down` 503 (but records
/// and answers 204 for ids ending `-fine`: the endpoint is up, one event keeps failing), `/gate`
/// answers 400 until opened, then records and answers 204.
struct Receiver {
    addr: std::net::SocketAddr,
    got: Arc<Mutex<Vec<String>>>,
    gate: Arc<AtomicBool>,
    hits: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(AtomicBool::new(false));
        let (g, h, o) = (got.clone(), hits.clone(), gate.clone());
        let route = warp::path::param::<String>()
            .and(warp::header::optional::<String>("ce-id"))
            .map(move |path: String, id: Option<String>| {
                let id = id.unwrap_or_default();
                h.lock().expect("lock").push(format!("{path}:{id}"));
                let ok = match path.as_str() {
                    "ok" => true,
                    "gate" => o.load(Ordering::SeqCst),
                    "down" if id.ends_with("-fine") => true,
                    "down" => return warp::http::StatusCode::SERVICE_UNAVAILABLE,
                    _ => false,
                };
                if ok {
                    g.lock().expect("lock").push(id);
                    warp::http::StatusCode::NO_CONTENT
                } else {
                    warp::http::StatusCode::BAD_REQUEST
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Receiver {
            addr,
            got,
            gate,
            hits,
        }
    }

    fn got(&self) -> Vec<String> {
        self.got.lock().expect("lock").clone()
    }

    fn hits_of(&self, exact: &str) -> usize {
        self.hits
            .lock()
            .expect("lock")
            .iter()
            .filter(|h| *h == exact)
            .count()
    }

    async fn wait_for(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.got();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "only {got:?} of {n} arrived");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn post(url: &str, id: &str, ty: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "urn:dl")
        .header("ce-type", ty)
        .header("content-type", "application/json")
        .body(format!(r#"{{"n":"{id}"}}"#))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// A JetStream stream for dead letters; returns (subject prefix, stream name).
async fn dead_letter_stream(js: &jetstream::Context) -> (String, String) {
    let id = unique("dl");
    let stream = format!("HBDL_{id}");
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("hbdl.{id}.>")],
        ..Default::default()
    })
    .await
    .expect("stream");
    (format!("hbdl.{id}"), stream)
}

/// The dead letters in `stream`: ce-* headers of each message, by event id.
async fn dead_letters(
    js: &jetstream::Context,
    stream: &str,
    want: u64,
) -> Vec<std::collections::HashMap<String, String>> {
    let mut s = js.get_stream(stream).await.expect("stream");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = s.info().await.expect("info").state.messages;
        if n >= want {
            break;
        }
        assert!(Instant::now() < deadline, "{n} of {want} dead letters arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n = s.info().await.expect("info").state.messages;
    let mut out = Vec::new();
    for seq in 1..=n {
        let msg = s.get_raw_message(seq).await.expect("message");
        let mut map = std::collections::HashMap::new();
        for (k, vs) in msg.headers.iter() {
            if let Some(v) = vs.first() {
                map.insert(k.to_string(), v.as_str().to_owned());
            }
        }
        out.push(map);
    }
    out
}

#[tokio::test]
async fn sync_mode_permanent_failures_go_to_the_dead_letter_sink() {
    let rx = Receiver::start().await;
    let js = jetstream::new(async_nats::connect(nats_url()).await.expect("nats"));
    let (subject, stream) = dead_letter_stream(&js).await;
    let base = |dead_letter: bool| {
        format!(
            r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}
[sinks.good]
type = "http"
url = "http://{addr}/ok"
[sinks.bad]
type = "http"
url = "http://{addr}/bad"
[sinks.dlq]
type = "nats"
url = "{nats}"
subject = "{subject}.{{type}}"
jetstream = true
[[routes]]
types = ["t.**"]
sinks = ["good", "bad"]
{dl}
"#,
            addr = rx.addr,
            nats = nats_url(),
            dl = if dead_letter {
                "[dead_letter]\nsink = \"dlq\""
            } else {
                ""
            }
        )
    };
    let hb = start_full(&base(true), vec![], false).await;
    let (status, body) = post(&hb.url("/events"), "sync-1", "t.a").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("dead_lettered")),
        "{body}"
    );
    let receipts = body["events"][0]["receipts"].as_array().expect("receipts");
    assert!(receipts.iter().any(|r| r["sink"] == "good"), "{body}");
    assert!(
        receipts
            .iter()
            .any(|r| r["sink"] == "dlq" && r["dead_letter_for"] == "bad"),
        "{body}"
    );
    assert_eq!(rx.got(), vec!["sync-1"], "the good sink got it once");
    let letters = dead_letters(&js, &stream, 1).await;
    let l = &letters[0];
    assert_eq!(l.get("ce-id").map(String::as_str), Some("sync-1"), "{l:?}");
    assert_eq!(l.get("ce-type").map(String::as_str), Some("t.a"), "{l:?}");
    assert_eq!(l.get("ce-hbdlsink").map(String::as_str), Some("bad"), "{l:?}");
    assert_eq!(
        l.get("ce-hbdlreason").map(String::as_str),
        Some("rejected"),
        "{l:?}"
    );
    assert_eq!(l.get("ce-hbdlattempts").map(String::as_str), Some("1"), "{l:?}");
    assert!(l.get("ce-hbdlerror").is_some_and(|e| e.contains("400")), "{l:?}");
    // A retry of the same event is a duplicate: it was made safe by the dead-letter sink.
    let (status, body) = post(&hb.url("/events"), "sync-1", "t.a").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("duplicate")),
        "{body}"
    );
    hb.stop().await;

    // Without a dead-letter sink the same failure is a 500 and nothing goes anywhere else.
    let hb = start_full(&base(false), vec![], false).await;
    let (status, body) = post(&hb.url("/events"), "sync-2", "t.a").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (500, Some("sink_rejected")),
        "{body}"
    );
    hb.stop().await;
    let s = js
        .get_stream(&stream)
        .await
        .expect("stream")
        .info()
        .await
        .expect("info")
        .state
        .messages;
    assert_eq!(s, 1, "no dead letter without a dead-letter sink");
    js.delete_stream(&stream).await.expect("delete");
}

fn spool_config(rx: &Receiver, dir: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
delivery = "spool"
verify = {{ kind = "none" }}
[sinks.bad]
type = "http"
url = "http://{addr}/bad"
[sinks.down]
type = "http"
url = "http://{addr}/down"
[sinks.gate]
type = "http"
url = "http://{addr}/gate"
[sinks.ok]
type = "http"
url = "http://{addr}/ok"
[[routes]]
types = ["t.bad"]
sinks = ["bad"]
[[routes]]
types = ["t.down"]
sinks = ["down"]
[[routes]]
types = ["t.gate"]
sinks = ["gate"]
[[routes]]
types = ["t.ok.**"]
sinks = ["ok"]
[spool]
dir = "{dir}"
retry_initial = "20ms"
retry_max = "100ms"
max_attempts = 3
{extra}
"#,
        addr = rx.addr,
        dir = dir.display()
    )
}

#[tokio::test]
async fn spool_mode_dead_letters_rejected_and_exhausted_events() {
    let rx = Receiver::start().await;
    let js = jetstream::new(async_nats::connect(nats_url()).await.expect("nats"));
    let (subject, stream) = dead_letter_stream(&js).await;
    let dir = tempfile::tempdir().expect("dir");
    let extra = format!(
        "[sinks.dlq]\ntype = \"nats\"\nurl = \"{}\"\nsubject = \"{subject}.{{type}}\"\njetstream = true\n[dead_letter]\nsink = \"dlq\"",
        nats_url()
    );
    let hb = start_full(&spool_config(&rx, dir.path(), &extra), vec![], false).await;
    let (status, body) = post(&hb.url("/events"), "sp-bad", "t.bad").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (202, Some("spooled")),
        "{body}"
    );
    let (status, _) = post(&hb.url("/events"), "sp-down", "t.down").await;
    assert_eq!(status, 202);
    // `max_attempts` counts only while the sink takes other events: this one does.
    let (status, _) = post(&hb.url("/events"), "sp-down-fine", "t.down").await;
    assert_eq!(status, 202);
    let (status, _) = post(&hb.url("/events"), "sp-ok", "t.ok.x").await;
    assert_eq!(status, 202);
    let mut letters = dead_letters(&js, &stream, 2).await;
    letters.sort_by_key(|l| l.get("ce-id").cloned());
    let (bad, down) = (&letters[0], &letters[1]);
    assert_eq!(bad.get("ce-id").map(String::as_str), Some("sp-bad"), "{bad:?}");
    assert_eq!(
        bad.get("ce-hbdlreason").map(String::as_str),
        Some("rejected"),
        "{bad:?}"
    );
    assert_eq!(bad.get("ce-hbdlsink").map(String::as_str), Some("bad"), "{bad:?}");
    assert_eq!(
        bad.get("ce-hbdlattempts").map(String::as_str),
        Some("1"),
        "{bad:?}"
    );
    assert_eq!(down.get("ce-id").map(String::as_str), Some("sp-down"), "{down:?}");
    assert_eq!(
        down.get("ce-hbdlreason").map(String::as_str),
        Some("exhausted"),
        "{down:?}"
    );
    // max_attempts tries, then — the probe having gone through — one confirming try.
    assert_eq!(
        down.get("ce-hbdlattempts").map(String::as_str),
        Some("4"),
        "{down:?}"
    );
    assert!(
        down.get("ce-hbdlerror").is_some_and(|e| e.contains("503")),
        "{down:?}"
    );
    assert_eq!(
        rx.hits_of("down:sp-down"),
        4,
        "max_attempts tries and the confirming one"
    );
    let mut got = rx.wait_for(2).await;
    got.sort();
    got.dedup(); // the event behind it may arrive twice (once as the probe)
    assert_eq!(got, vec!["sp-down-fine", "sp-ok"]);
    hb.stop().await;
    js.delete_stream(&stream).await.expect("delete");
}

#[tokio::test]
async fn without_a_dead_letter_sink_events_are_parked_reported_and_replayable() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = spool_config(&rx, dir.path(), "[server]\nadmin_listen = \"127.0.0.1:9\"");
    let hb = start_full(&cfg, vec![], true).await;
    let admin = format!("http://{}", hb.admin_addr.expect("admin"));
    let (status, _) = post(&hb.url("/events"), "pk-1", "t.gate").await;
    assert_eq!(status, 202);
    let (status, _) = post(&hb.url("/events"), "pk-ok", "t.ok.y").await;
    assert_eq!(status, 202);
    // The refused event is parked and the sink's queue moves on.
    let deadline = Instant::now() + Duration::from_secs(15);
    let parked = loop {
        let v: Value = reqwest::get(format!("{admin}/admin/parked"))
            .await
            .expect("parked")
            .json()
            .await
            .expect("json");
        if v["parked"].as_array().is_some_and(|a| !a.is_empty()) {
            break v;
        }
        assert!(Instant::now() < deadline, "nothing parked: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let p = &parked["parked"][0];
    assert_eq!(
        (p["id"].as_str(), p["sink"].as_str(), p["reason"].as_str()),
        (Some("pk-1"), Some("gate"), Some("rejected")),
        "{parked}"
    );
    assert!(p["error"].as_str().is_some_and(|e| e.contains("400")), "{parked}");
    let ready: Value = reqwest::get(format!("{admin}/readyz"))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["spool"]["parked"], 1, "{ready}");
    let metrics = reqwest::get(format!("{admin}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hookbridge_spool_parked ") && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("hookbridge_dead_letters_total{") && l.contains("sink=\"gate\"")),
        "{metrics}"
    );
    assert_eq!(rx.wait_for(1).await, vec!["pk-ok"], "the queue moved on");

    // The endpoint is fixed; the parked event is replayed and leaves the parking.
    rx.gate.store(true, Ordering::SeqCst);
    let resp = reqwest::Client::new()
        .post(format!("{admin}/admin/replay"))
        .header("content-type", "application/json")
        .body(r#"{"parked": true}"#)
        .send()
        .await
        .expect("replay");
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["replayed"], 1, "{v}");
    let got = rx.wait_for(2).await;
    assert_eq!(got, vec!["pk-ok", "pk-1"]);
    let v: Value = reqwest::get(format!("{admin}/admin/parked"))
        .await
        .expect("parked")
        .json()
        .await
        .expect("json");
    assert_eq!(v["parked"], Value::Array(vec![]), "{v}");
    // Admin endpoints are not on the webhook listener.
    let status = reqwest::get(hb.url("/admin/parked"))
        .await
        .expect("get")
        .status()
        .as_u16();
    assert_eq!(status, 404);
    hb.stop().await;
}

#[tokio::test]
async fn duplicates_are_remembered_across_a_restart_until_the_window_ends() {
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("events.jsonl");
    let cfg = format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}
[sinks.file]
type = "file"
path = "{}"
[[routes]]
sinks = ["file"]
[dedup]
window = "3s"
path = "{}"
"#,
        out.display(),
        dir.path().join("state/dedup.redb").display()
    );
    let count = |id: &str| {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["id"] == id))
            .count()
    };
    let hb = start_full(&cfg, vec![], false).await;
    let (status, body) = post(&hb.url("/events"), "dup-1", "t.x").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    let delivered_at = Instant::now();
    hb.stop().await;

    let hb = start_full(&cfg, vec![], false).await;
    let (status, body) = post(&hb.url("/events"), "dup-1", "t.x").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("duplicate")),
        "{body}"
    );
    assert_eq!(count("dup-1"), 1, "not published again after the restart");
    // After the window it is a new delivery.
    tokio::time::sleep(
        Duration::from_secs(3).saturating_sub(delivered_at.elapsed()) + Duration::from_millis(200),
    )
    .await;
    let (status, body) = post(&hb.url("/events"), "dup-1", "t.x").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("delivered")),
        "{body}"
    );
    assert_eq!(count("dup-1"), 2);
    hb.stop().await;
}

/// Runs `hookbridge replay` (without blocking the runtime the in-process server runs on).
async fn replay_cli(config: &std::path::Path, args: &[&str]) -> Value {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .arg("replay")
        .arg("--config")
        .arg(config)
        .args(args)
        .arg("--json")
        .output()
        .await
        .expect("run replay");
    assert!(
        out.status.success(),
        "replay {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json answer")
}

#[tokio::test]
async fn replay_of_a_time_window_republishes_exactly_those_events() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let admin_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let cfg = spool_config(
        &rx,
        &dir.path().join("spool"),
        &format!(
            "retain = \"1h\"\n[server]\nadmin_listen = \"127.0.0.1:{admin_port}\"\nadmin_token = {{ env = \"HB_DL_ADMIN_TOKEN\" }}"
        ),
    );
    // The CLI (a child process) reads the token from the same variable as the server.
    std::env::set_var("HB_DL_ADMIN_TOKEN", "dl-admin-token");
    let cfg_path = dir.path().join("hookbridge.toml");
    std::fs::write(&cfg_path, &cfg).expect("write config");
    // The in-process server binds the configured admin address so the CLI finds it.
    let config = hookbridge::config::from_toml_str(&cfg, "test.toml").expect("config");
    let app = hookbridge::app::App::build(config).expect("build");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let admin = tokio::net::TcpListener::bind(("127.0.0.1", admin_port))
        .await
        .expect("bind admin");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(hookbridge::ingress::serve_with_admin(
        app.clone(),
        listener,
        Some(admin),
        async {
            let _ = stop_rx.await;
        },
    ));
    let url = format!("http://{addr}/events");
    let batch = |name: &'static str| (0..3).map(move |i| format!("{name}-{i}"));
    for id in batch("early") {
        assert_eq!(post(&url, &id, "t.ok.a").await.0, 202);
    }
    rx.wait_for(3).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let since = time::OffsetDateTime::now_utc();
    for (i, id) in batch("mid").enumerate() {
        let ty = if i == 2 { "t.ok.b" } else { "t.ok.a" };
        assert_eq!(post(&url, &id, ty).await.0, 202);
    }
    rx.wait_for(6).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let until = time::OffsetDateTime::now_utc();
    for id in batch("late") {
        assert_eq!(post(&url, &id, "t.ok.a").await.0, 202);
    }
    rx.wait_for(9).await;
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .expect("format")
    };
    let (since, until) = (rfc(since), rfc(until));

    // Dry run: the window's three events are listed, nothing is published.
    let answer = replay_cli(&cfg_path, &["--since", &since, "--until", &until, "--dry-run"]).await;
    assert_eq!(
        (answer["matched"].as_u64(), answer["replayed"].as_u64()),
        (Some(3), Some(0)),
        "{answer}"
    );
    let mut listed: Vec<&str> = answer["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    listed.sort_unstable();
    assert_eq!(listed, vec!["mid-0", "mid-1", "mid-2"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 9, "a dry run publishes nothing");

    // The replay: exactly the window's events arrive again.
    let answer = replay_cli(&cfg_path, &["--since", &since, "--until", &until]).await;
    assert_eq!(answer["replayed"].as_u64(), Some(3), "{answer}");
    let got = rx.wait_for(12).await;
    let mut again: Vec<String> = got[9..].to_vec();
    again.sort_unstable();
    assert_eq!(again, vec!["mid-0", "mid-1", "mid-2"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 12, "nothing else was re-published");

    // A type filter, with the server stopped: the spool is replayed directly, and the next
    // start delivers it.
    stop_tx.send(()).expect("stop");
    server.await.expect("server");
    drop(app);
    let answer = replay_cli(
        &cfg_path,
        &["--since", &since, "--until", &until, "--type", "t.ok.b"],
    )
    .await;
    assert_eq!(answer["replayed"].as_u64(), Some(1), "{answer}");
    let hb = start_full(&cfg, vec![], false).await;
    let got = rx.wait_for(13).await;
    assert_eq!(got[12], "mid-2");
    // Bad filters are refused with the field named.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["replay", "--config"])
        .arg(&cfg_path)
        .args(["--since", "1h", "--sink", "nope"])
        .output()
        .await
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--sink: no sink named \"nope\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hb.stop().await;
}
