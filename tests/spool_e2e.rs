//! Spool mode end to end: 202 while the broker is cut off and every event arrives after; SIGKILL
//! and restart lose nothing acknowledged; a full spool answers 503 with flat memory.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::collections::HashMap;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use common::start;
use serde_json::Value;
use warp::Filter;

fn unique(prefix: &str) -> String {
    common::unique_with(prefix, 'x')
}

async fn post(client: &reqwest::Client, url: &str, id: &str) -> (u16, Value) {
    let resp = client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "urn:spool")
        .header("ce-type", "t.spooled")
        .header("content-type", "application/json")
        .body(format!(r#"{{"n":"{id}"}}"#))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn broker_cut_off_events_are_accepted_and_all_arrive_after() {
    let nats_url =
        std::env::var("HOOKBRIDGE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(&nats_url).await.expect("connect");
    let js = jetstream::new(client);
    let id = unique("s");
    let stream = format!("HBSPOOL_{id}");
    js.create_stream(jetstream::stream::Config {
        name: stream.clone(),
        subjects: vec![format!("hbspool.{id}.>")],
        ..Default::default()
    })
    .await
    .expect("stream");
    let upstream = nats_url.trim_start_matches("nats://").parse().expect("addr");
    let proxy = proxy::Proxy::start(upstream).await;
    let dir = tempfile::tempdir().expect("dir");
    let cfg = format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
delivery = "spool"
verify = {{ kind = "none" }}
[sinks.nats]
type = "nats"
url = "nats://{}"
subject = "hbspool.{id}.{{type}}"
jetstream = true
max_reconnect_delay = "200ms"
[[routes]]
sinks = ["nats"]
[spool]
dir = "{}"
retry_initial = "50ms"
retry_max = "500ms"
"#,
        proxy.addr,
        dir.path().display()
    );
    proxy.cut();
    let hb = start(&cfg, vec![]).await;
    let http = reqwest::Client::new();
    let n = 60;
    for i in 0..n {
        let (status, body) = post(&http, &hb.url("/events"), &format!("e-{i}")).await;
        assert_eq!(
            (status, &body["status"]),
            (202, &Value::from("spooled")),
            "{body}"
        );
    }
    // NATS is unreachable: readiness is unaffected (spool-only sink), events wait on disk.
    let ready: Value = reqwest::get(hb.url("/readyz"))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["sinks"]["nats"]["state"], "down", "{ready}");
    assert_eq!(ready["spool"]["events"], n, "{ready}");

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut s = js.get_stream(&stream).await.expect("stream");
    loop {
        let got = s.info().await.expect("info").state.messages;
        if got >= n {
            break;
        }
        assert!(Instant::now() < deadline, "only {got} of {n} arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut seen: HashMap<String, u32> = HashMap::new();
    let total = s.info().await.expect("info").state.messages;
    for seq in 1..=total {
        let msg = s.get_raw_message(seq).await.expect("message");
        let id = msg
            .headers
            .get("ce-id")
            .map(|v| v.as_str().to_owned())
            .expect("ce-id");
        *seen.entry(id).or_default() += 1;
    }
    let missing: Vec<String> = (0..n)
        .map(|i| format!("e-{i}"))
        .filter(|id| !seen.contains_key(id))
        .collect();
    let duplicates: u32 = seen.values().map(|c| c - 1).sum();
    assert!(missing.is_empty(), "missing: {missing:?}");
    println!(
        "spool outage: {n} events, {} stored, {duplicates} duplicates",
        total
    );
    // The spool drains to empty.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready: Value = reqwest::get(hb.url("/readyz"))
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json");
        if ready["spool"]["events"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "spool did not drain: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hb.stop().await;
    js.delete_stream(&stream).await.expect("delete");
}

/// A receiver that refuses (503) until opened, recording accepted ids.
async fn receiver() -> (std::net::SocketAddr, Arc<AtomicBool>, Arc<Mutex<Vec<String>>>) {
    let open = Arc::new(AtomicBool::new(false));
    let got = Arc::new(Mutex::new(Vec::new()));
    let (o, g) = (open.clone(), got.clone());
    let route = warp::any()
        .and(warp::header::optional::<String>("ce-id"))
        .map(move |id: Option<String>| {
            if !o.load(Ordering::SeqCst) {
                return warp::http::StatusCode::SERVICE_UNAVAILABLE;
            }
            g.lock().expect("lock").push(id.unwrap_or_default());
            warp::http::StatusCode::NO_CONTENT
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (addr, open, got)
}

fn spawn(config: &std::path::Path) -> (Child, std::net::SocketAddr) {
    common::spawn_serve(config, &[])
}

fn sigkill(child: &mut Child) {
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

#[tokio::test]
async fn sigkill_mid_stream_loses_nothing_acknowledged() {
    let (addr, open, got) = receiver().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("hb.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
delivery = "spool"
verify = {{ kind = "none" }}
[sinks.out]
type = "http"
url = "http://{addr}/in"
[[routes]]
sinks = ["out"]
[spool]
dir = "{}"
retry_initial = "20ms"
retry_max = "200ms"
"#,
            dir.path().join("spool").display()
        ),
    )
    .expect("config");
    let http = reqwest::Client::new();
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..3 {
        let (mut child, hb) = spawn(&config);
        let url = format!("http://{hb}/events");
        // Concurrent posts; SIGKILL while they are in flight.
        let mut tasks = Vec::new();
        for i in 0..40 {
            let http = http.clone();
            let url = url.clone();
            let id = format!("r{round}-{i}");
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(i * 5)).await;
                let resp = http
                    .post(&url)
                    .header("ce-specversion", "1.0")
                    .header("ce-id", &id)
                    .header("ce-source", "urn:k")
                    .header("ce-type", "t")
                    .body("{}")
                    .send()
                    .await;
                (id, resp.map(|r| r.status().as_u16()).unwrap_or(0))
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        sigkill(&mut child);
        for t in tasks {
            let (id, status) = t.await.expect("join");
            if status == 202 {
                acknowledged.push(id);
            }
        }
    }
    assert!(
        !acknowledged.is_empty(),
        "some events must have been acknowledged before the kills"
    );
    // The receiver opens; a restarted hookbridge on the same spool delivers everything.
    open.store(true, Ordering::SeqCst);
    let (mut child, _) = spawn(&config);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let received = got.lock().expect("lock").clone();
        let missing: Vec<&String> = acknowledged.iter().filter(|id| !received.contains(id)).collect();
        if missing.is_empty() {
            println!(
                "sigkill: {} acknowledged, {} received (duplicates allowed)",
                acknowledged.len(),
                received.len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acknowledged but never delivered: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sigkill(&mut child);
}

#[tokio::test]
async fn full_spool_refuses_with_503_and_flat_memory() {
    let (addr, _open, _got) = receiver().await; // never opens: nothing drains
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("hb.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
delivery = "spool"
verify = {{ kind = "none" }}
[sinks.out]
type = "http"
url = "http://{addr}/in"
[[routes]]
sinks = ["out"]
[spool]
dir = "{}"
max_events = 10
"#,
            dir.path().join("spool").display()
        ),
    )
    .expect("config");
    let (mut child, hb) = spawn(&config);
    let url = format!("http://{hb}/events");
    let http = reqwest::Client::new();
    for i in 0..10 {
        assert_eq!(post(&http, &url, &format!("f-{i}")).await.0, 202);
    }
    let (status, body) = post(&http, &url, "over").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &Value::from("overloaded")),
        "{body}"
    );
    let ready = reqwest::get(format!("http://{hb}/readyz")).await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 503);

    async fn burst(http: &reqwest::Client, url: &str, n: usize) {
        let mut refused = 0;
        for chunk in 0..n / 8 {
            let ids: Vec<String> = (0..8).map(|j| format!("x-{chunk}-{j}")).collect();
            let results = futures_util::future::join_all(ids.iter().map(|id| post(http, url, id))).await;
            refused += results.iter().filter(|(s, _)| *s == 503).count();
        }
        assert_eq!(refused, n / 8 * 8);
    }
    burst(&http, &url, 1_000).await; // warm-up: steady-state buffers
    let before = common::vm_rss_kib(child.id());
    burst(&http, &url, 10_000).await;
    let after = common::vm_rss_kib(child.id());
    println!("VmRSS before {before} KiB, after {after} KiB over 10,000 refused requests");
    assert!(
        after.saturating_sub(before) < 8 * 1024,
        "VmRSS grew {} KiB",
        after - before
    );
    sigkill(&mut child);
}
