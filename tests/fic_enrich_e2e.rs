//! Enrichment end to end: FIC events on an `enrich = true` route get the resources behind their
//! ids from the FIC API simulator; deletes fetch nothing; a spent quota publishes un-enriched
//! events with a marker and loses none; the cache stops repeated fetches.

mod common;
#[path = "common/fic_sim.rs"]
mod fic_sim;

use common::start;
use fic_sim::{Sim, TOKEN};
use serde_json::{json, Value};

const PUB: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fic-test-pub.pem");
const URL: &str = "https://hooks.example.com/fic";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

async fn notify(hb: &str, id: &str, ty: &str, ids: &[u64]) -> (u16, Value) {
    let claims = json!({ "iss": "https://api-v2.fattureincloud.it", "aud": [URL], "sub": "company:7", "jti": id, "exp": now() + 600 });
    let token = fic_sim::sign(claims);
    let resp = reqwest::Client::new()
        .post(format!("{hb}/fic"))
        .header("authorization", format!("Bearer {token}"))
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "https://api-v2.fattureincloud.it")
        .header("ce-type", format!("it.fattureincloud.webhooks.{ty}"))
        .header("ce-subject", "company:7")
        .header("content-type", "application/json")
        .body(json!({ "data": { "ids": ids } }).to_string())
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

fn config(sim: &Sim, file: &std::path::Path, extra: &str) -> String {
    format!(
        r#"
[sources.fic]
path = "/fic"
kind = "fattureincloud"
public_url = "{URL}"
verify = {{ public_key = {{ file = "{PUB}" }}, allow_any_company = true }}
[sources.fic.api]
base_url = "{}"
token = {{ env = "HB_TEST_FIC_TOKEN" }}
cache_ttl = "30s"
{extra}
[sinks.file]
type = "file"
path = "{}"
[[routes]]
source = "fic"
types = ["it.fattureincloud.webhooks.entities.**", "it.fattureincloud.webhooks.issued_documents.**"]
sinks = ["file"]
enrich = true
"#,
        sim.url(),
        file.display()
    )
}

fn lines(file: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

fn fetches(sim: &Sim) -> Vec<String> {
    sim.state
        .lock()
        .expect("lock")
        .requests
        .iter()
        .filter(|r| r.starts_with("GET "))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enriched_routes_get_resources_deletes_fetch_nothing_and_the_cache_holds() {
    std::env::set_var("HB_TEST_FIC_TOKEN", TOKEN);
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("events.jsonl");
    let hb = start(&config(&sim, &file, ""), vec![]).await;
    let base = format!("http://{}", hb.addr);

    let (status, body) = notify(&base, "1:a", "entities.clients.create", &[11, 12]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = notify(&base, "1:b", "issued_documents.invoices.update", &[500]).await;
    assert_eq!(status, 200);
    let (status, _) = notify(&base, "1:c", "entities.clients.delete", &[11]).await;
    assert_eq!(status, 200);
    // Same ids again inside the cache window: no new fetch.
    let (status, _) = notify(&base, "1:d", "entities.clients.update", &[11, 12]).await;
    assert_eq!(status, 200);

    let got = lines(&file);
    assert_eq!(got.len(), 4);
    let first = &got[0];
    assert_eq!(first["data"]["ids"], json!([11, 12]));
    assert_eq!(first["data"]["resources"]["11"]["id"], 11);
    assert_eq!(
        first["data"]["resources"]["12"]["path"],
        "/c/7/entities/clients/12"
    );
    assert_eq!(first["hbenrich"], "complete");
    assert_eq!(
        got[1]["data"]["resources"]["500"]["path"],
        "/c/7/issued_documents/500"
    );
    assert_eq!(got[2]["data"], json!({ "ids": [11] }), "delete: not enriched");
    assert!(got[2].get("hbenrich").is_none());
    assert_eq!(got[3]["data"]["resources"]["12"]["id"], 12);

    let mut log = fetches(&sim);
    log.sort();
    assert_eq!(
        log,
        [
            "GET /c/7/entities/clients/11",
            "GET /c/7/entities/clients/12",
            "GET /c/7/issued_documents/500"
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>(),
        "one fetch per resource; none for the delete; none repeated in the cache window"
    );
    hb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_quota_publishes_unenriched_with_a_marker_or_503_when_asked() {
    std::env::set_var("HB_TEST_FIC_TOKEN", TOKEN);
    let sim = Sim::start().await;
    sim.state.lock().expect("lock").quota_left = Some(1);
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("events.jsonl");
    let hb = start(&config(&sim, &file, ""), vec![]).await;
    let base = format!("http://{}", hb.addr);
    for (i, id) in [21u64, 22, 23, 24].iter().enumerate() {
        let (status, body) = notify(&base, &format!("2:{i}"), "entities.clients.create", &[*id]).await;
        assert_eq!(status, 200, "{body}");
    }
    let got = lines(&file);
    assert_eq!(got.len(), 4, "none lost");
    assert_eq!(got[0]["hbenrich"], "complete");
    for g in &got[1..] {
        assert_eq!(g["hbenrich"], "skipped", "{g}");
        assert!(g["data"].get("resources").is_none());
    }
    // After the 403 with Retry-After, hookbridge stops asking.
    assert_eq!(fetches(&sim).len(), 2, "{:?}", fetches(&sim));
    hb.stop().await;

    // on_unavailable = "retry": 503 so FIC re-sends later; nothing published.
    let sim = Sim::start().await;
    sim.state.lock().expect("lock").quota_left = Some(0);
    let file2 = dir.path().join("retry.jsonl");
    let hb = start(&config(&sim, &file2, "on_unavailable = \"retry\""), vec![]).await;
    let (status, body) = notify(
        &format!("http://{}", hb.addr),
        "3:a",
        "entities.clients.create",
        &[31],
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("enrichment_unavailable")),
        "{body}"
    );
    assert!(lines(&file2).is_empty());
    hb.stop().await;
}

/// `/metrics` of the in-process hookbridge at `base`.
async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_counted_and_logged_not_silently_skipped() {
    std::env::set_var("HB_TEST_FIC_EXPIRED_TOKEN", "expired-token");
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("events.jsonl");
    let cfg = config(&sim, &file, "").replace("HB_TEST_FIC_TOKEN", "HB_TEST_FIC_EXPIRED_TOKEN");
    let hb = start(&cfg, vec![]).await;
    let base = format!("http://{}", hb.addr);
    for i in 0..3 {
        let (status, body) = notify(&base, &format!("4:{i}"), "entities.clients.create", &[40 + i]).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(lines(&file).iter().all(|l| l["hbenrich"] == "skipped"));
    let text = metrics(&base).await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("hookbridge_enrich_failures_total{")
                && l.contains("reason=\"unauthorized\"")
                && l.contains("source=\"fic\"")
        })
        .unwrap_or_else(|| panic!("no unauthorized enrichment failures counted:\n{text}"));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(text.contains("# HELP hookbridge_enrich_failures_total"), "{text}");
    hb.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_delivered_event_fetches_nothing_and_the_cache_is_capped() {
    std::env::set_var("HB_TEST_FIC_TOKEN", TOKEN);
    let sim = Sim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("events.jsonl");
    // No cache: only dedup can spare the second fetch.
    let cfg = config(&sim, &file, "").replace("cache_ttl = \"30s\"", "cache_ttl = \"0s\"");
    let hb = start(&cfg, vec![]).await;
    let base = format!("http://{}", hb.addr);
    let (status, body) = notify(&base, "5:a", "entities.clients.create", &[51]).await;
    assert_eq!((status, &body["status"]), (200, &json!("delivered")), "{body}");
    let (status, body) = notify(&base, "5:a", "entities.clients.create", &[51]).await;
    assert_eq!((status, &body["status"]), (200, &json!("duplicate")), "{body}");
    assert_eq!(
        fetches(&sim).len(),
        1,
        "the retry fetched again: {:?}",
        fetches(&sim)
    );
    hb.stop().await;

    // cache_max_entries = 1: a third resource pushes the first out, which is fetched again.
    let sim = Sim::start().await;
    let file = dir.path().join("capped.jsonl");
    let hb = start(&config(&sim, &file, "cache_max_entries = 1"), vec![]).await;
    let base = format!("http://{}", hb.addr);
    for (i, id) in [61u64, 62, 61].iter().enumerate() {
        let (status, body) = notify(&base, &format!("6:{i}"), "entities.clients.update", &[*id]).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(fetches(&sim).len(), 3, "{:?}", fetches(&sim));
    hb.stop().await;
}
