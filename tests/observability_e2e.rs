//! `/metrics` moves as requests flow (scraped and parsed), and a `traceparent` sent in arrives in
//! the broker message.

mod common;

use std::time::Duration;

use common::start;
use futures_util::StreamExt;

/// Parses Prometheus text: `name{labels} value` → value, for one exact series.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, "}"));
            if n != name {
                return None;
            }
            let all = labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn scrape(url: &str) -> String {
    let resp = reqwest::get(url).await.expect("metrics");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .expect("ct")
        .starts_with("text/plain"));
    resp.text().await.expect("text")
}

const CONFIG: &str = r#"
[sources.obs]
path = "/obs"
kind = "cloudevents"
verify = { kind = "token", tokens = { env = "PATH" } }
[sinks.bh]
type = "blackhole"
[[routes]]
sinks = ["bh"]
"#;

#[tokio::test]
async fn metrics_move_as_requests_flow() {
    let hb = start(CONFIG, vec![]).await;
    let token = std::env::var("PATH").expect("PATH");
    let before = scrape(&hb.url("/metrics")).await;
    let post = |auth: Option<&str>, id: &str| {
        let mut rb = reqwest::Client::new()
            .post(hb.url("/obs"))
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-source", "urn:obs")
            .header("ce-type", "t");
        if let Some(a) = auth {
            rb = rb.header("authorization", format!("Bearer {a}"));
        }
        rb.send()
    };
    for id in ["m-1", "m-2", "m-1"] {
        assert_eq!(post(Some(&token), id).await.expect("post").status().as_u16(), 200);
    }
    assert_eq!(
        post(Some("wrong"), "m-3").await.expect("post").status().as_u16(),
        401
    );
    assert_eq!(post(None, "m-4").await.expect("post").status().as_u16(), 401);
    let after = scrape(&hb.url("/metrics")).await;
    let delta =
        |name: &str, labels: &[(&str, &str)]| sample(&after, name, labels) - sample(&before, name, labels);
    assert_eq!(
        delta(
            "hookbridge_requests_total",
            &[("source", "obs"), ("status", "200")]
        ),
        3.0,
        "{after}"
    );
    assert_eq!(
        delta(
            "hookbridge_requests_total",
            &[("source", "obs"), ("status", "401")]
        ),
        2.0
    );
    assert_eq!(
        delta(
            "hookbridge_verification_failures_total",
            &[("source", "obs"), ("reason", "bad_signature")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "hookbridge_verification_failures_total",
            &[("source", "obs"), ("reason", "missing_token")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "hookbridge_events_total",
            &[("source", "obs"), ("outcome", "delivered")]
        ),
        2.0
    );
    assert_eq!(
        delta(
            "hookbridge_events_total",
            &[("source", "obs"), ("outcome", "duplicate")]
        ),
        1.0
    );
    assert_eq!(delta("hookbridge_dedup_hits_total", &[("source", "obs")]), 1.0);
    assert_eq!(
        delta("hookbridge_publish_total", &[("sink", "bh"), ("result", "ok")]),
        2.0
    );
    assert_eq!(
        delta("hookbridge_publish_duration_seconds_count", &[("sink", "bh")]),
        2.0
    );
    assert_eq!(
        sample(
            &after,
            "hookbridge_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(after.contains("hookbridge_in_flight_requests"));
    hb.stop().await;
}

#[tokio::test]
async fn traceparent_sent_in_arrives_in_the_broker_message() {
    let url = std::env::var("HOOKBRIDGE_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let client = async_nats::connect(&url).await.expect("connect");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let subject = format!("hbtrace.{}.{nanos}", std::process::id());
    let mut sub = client.subscribe(subject.clone()).await.expect("subscribe");
    client.flush().await.expect("flush");
    let cfg = format!(
        "[sources.ce]\npath = \"/events\"\nkind = \"cloudevents\"\nverify = {{ kind = \"none\" }}\n[sinks.n]\ntype = \"nats\"\nurl = \"{url}\"\nsubject = \"{subject}\"\n[[routes]]\nsinks = [\"n\"]\n"
    );
    let hb = start(&cfg, vec![]).await;
    let resp = reqwest::Client::new()
        .post(hb.url("/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "tr-1")
        .header("ce-source", "urn:t")
        .header("ce-type", "t")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 200);
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("in time")
        .expect("message");
    let headers = msg.headers.expect("headers");
    let tp = headers
        .get("traceparent")
        .map(|v| v.as_str().to_owned())
        .expect("traceparent header");
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "same trace: {tp}"
    );
    assert_eq!(
        headers.get("ce-traceparent").map(|v| v.as_str().to_owned()),
        Some(tp)
    );
    hb.stop().await;
}
