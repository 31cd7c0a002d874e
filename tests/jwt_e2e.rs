//! The generic `jwt` verifier with tokens made by an independent library (PyJWT), a JWKS served
//! by a local test server, and the quarantine for rejected requests.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{start, MemorySink};
use hookbridge::sink::SinkHandle;
use serde_json::{json, Value};
use warp::Filter;

fn pyjwt(now: u64) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scripts/pyjwt_tokens.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(now.to_string())
        .output()
        .expect("python3 (scripts/test.sh installs PyJWT)");
    assert!(
        out.status.success(),
        "PyJWT script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

async fn post(url: &str, token: &str, id: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "urn:jwt")
        .header("ce-type", "t")
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

fn source(name: &str, algs: &str, key: &str) -> String {
    format!(
        "[sources.{name}]\npath = \"/{name}\"\nkind = \"cloudevents\"\n[sources.{name}.verify]\nkind = \"jwt\"\nalgorithms = [{algs}]\n{key}\nissuers = [\"https://issuer.example\"]\naudiences = [\"hookbridge\"]\nrequired = [\"exp\", \"jti\"]\n"
    )
}

#[tokio::test]
async fn every_algorithm_family_with_pyjwt_tokens() {
    let data = pyjwt(now());
    let dir = tempfile::tempdir().expect("dir");
    let pem = |k: &str| write(dir.path(), k, data["pem"][k].as_str().expect("pem"));
    let secret = write(dir.path(), "secret", "shared-secret");
    let cfg = [
        source(
            "hs",
            "\"HS256\", \"HS512\"",
            &format!("key = {{ file = \"{secret}\" }}"),
        ),
        source(
            "rs",
            "\"RS256\", \"RS512\", \"PS256\"",
            &format!("key = {{ file = \"{}\" }}", pem("rsa")),
        ),
        source(
            "es256",
            "\"ES256\"",
            &format!("key = {{ file = \"{}\" }}", pem("ec256")),
        ),
        source(
            "es384",
            "\"ES384\"",
            &format!("key = {{ file = \"{}\" }}", pem("ec384")),
        ),
        source(
            "ed",
            "\"EdDSA\"",
            &format!("key = {{ file = \"{}\" }}", pem("ed")),
        ),
    ]
    .join("\n")
        + "\n[sinks.mem]\ntype = \"blackhole\"\n[[routes]]\nsinks = [\"mem\"]\n[dedup]\nenabled = false\n";
    let mem = MemorySink::new("mem");
    let hb = start(&cfg, vec![("mem", mem.clone() as SinkHandle)]).await;
    let cases = [
        ("hs", "HS256"),
        ("hs", "HS512"),
        ("rs", "RS256"),
        ("rs", "RS512"),
        ("rs", "PS256"),
        ("es256", "ES256"),
        ("es384", "ES384"),
        ("ed", "EdDSA"),
    ];
    for (src, alg) in cases {
        let token = data["tokens"][alg].as_str().expect("token");
        let (status, body) = post(&hb.url(&format!("/{src}")), token, "evt-1").await;
        assert_eq!(status, 200, "{alg}: {body}");
        // Tampered signature → 401.
        let mut bad = token.to_owned();
        let last = bad.pop().expect("char");
        bad.push(if last == 'A' { 'B' } else { 'A' });
        let (status, body) = post(&hb.url(&format!("/{src}")), &bad, "evt-1").await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &json!("bad_signature")),
            "{alg} tampered"
        );
    }
    // A token of another family is refused (algorithm pinned per source).
    let (status, _) = post(
        &hb.url("/es256"),
        data["tokens"]["RS256"].as_str().expect("t"),
        "evt-1",
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(mem.ids().len(), cases.len());
    hb.stop().await;
}

#[tokio::test]
async fn jwks_rotation_rate_limited_refresh_and_stale_cache() {
    let data = pyjwt(now());
    let fetches = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let served = Arc::new(Mutex::new(data["jwks1"].clone()));
    let (f, d, s) = (fetches.clone(), down.clone(), served.clone());
    let route = warp::path("jwks.json").map(move || {
        f.fetch_add(1, Ordering::SeqCst);
        if d.load(Ordering::SeqCst) {
            return warp::http::Response::builder()
                .status(503)
                .body(String::new())
                .expect("resp");
        }
        warp::http::Response::builder()
            .status(200)
            .body(s.lock().expect("lock").to_string())
            .expect("resp")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());

    let cfg = source(
        "j",
        "\"RS256\"",
        &format!("jwks_url = \"http://{addr}/jwks.json\"\nmin_refresh = \"1s\"\nbind = {{ jti = \"id\" }}"),
    )
        + "\n[sinks.mem]\ntype = \"blackhole\"\n[[routes]]\nsinks = [\"mem\"]\n[dedup]\nenabled = false\n";
    let hb = start(&cfg, vec![]).await;
    let url = hb.url("/j");
    let t = |k: &str| data["tokens"][k].as_str().expect("token").to_owned();

    assert_eq!(post(&url, &t("kid1"), "evt-1").await.0, 200);
    assert_eq!(fetches.load(Ordering::SeqCst), 1, "first use fetches once");
    assert_eq!(post(&url, &t("kid1"), "evt-1").await.0, 200);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "known kid: served from the cache"
    );
    // Binding jti == id.
    let (status, body) = post(&url, &t("wrong_jti"), "evt-1").await;
    assert_eq!((status, &body["error"]["code"]), (401, &json!("id_mismatch")));

    // Rotation: a new kid appears; exactly one refetch.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    *served.lock().expect("lock") = data["jwks2"].clone();
    assert_eq!(post(&url, &t("kid2"), "evt-1").await.0, 200);
    assert_eq!(fetches.load(Ordering::SeqCst), 2);

    // A burst of forged kids: at most one fetch per min_refresh.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let forged: Vec<String> = data["unknown_kids"]
        .as_array()
        .expect("list")
        .iter()
        .map(|v| v.as_str().expect("t").to_owned())
        .collect();
    let results = futures_util::future::join_all(forged.iter().map(|tok| post(&url, tok, "evt-1"))).await;
    // The request that fetched learns its kid is not in the fresh set (401); the others arrive
    // within min_refresh, when a kid not yet fetched may be a key just rotated in: 503, retry.
    assert!(results.iter().any(|(s, _)| *s == 401), "{results:?}");
    assert!(
        results
            .iter()
            .all(|(s, b)| *s == 401 || (*s == 503 && b["error"]["code"] == "keys_unavailable")),
        "{results:?}"
    );
    assert_eq!(fetches.load(Ordering::SeqCst), 3, "20 unknown kids, one fetch");
    for tok in &forged[..5] {
        assert_eq!(post(&url, tok, "evt-1").await.0, 503);
    }
    assert_eq!(fetches.load(Ordering::SeqCst), 3, "still within min_refresh");

    // The URL goes down: cached keys keep working; a kid it cannot fetch is 503, not 401.
    down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(&url, &forged[0], "evt-1").await.0, 503); // triggers a failed fetch
    assert_eq!(post(&url, &t("kid1"), "evt-1").await.0, 200);
    assert_eq!(post(&url, &t("kid2"), "evt-1").await.0, 200);
    hb.stop().await;
}

/// A JWKS URL that is down while nothing is cached: a well-formed token is 503
/// `keys_unavailable` with Retry-After (the sender retries; 401 made it drop the event), and
/// once the URL is back the same token is accepted (#27).
#[tokio::test]
async fn jwks_down_with_nothing_cached_is_503_keys_unavailable_then_recovers() {
    let data = pyjwt(now());
    let down = Arc::new(AtomicBool::new(true));
    let d = down.clone();
    let jwks = data["jwks1"].clone();
    let route = warp::path("jwks.json").map(move || {
        let status = if d.load(Ordering::SeqCst) { 503 } else { 200 };
        warp::http::Response::builder()
            .status(status)
            .body(jwks.to_string())
            .expect("resp")
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    let cfg = source(
        "j",
        "\"RS256\"",
        &format!("jwks_url = \"http://{addr}/jwks.json\"\nmin_refresh = \"1s\""),
    )
        + "\n[sinks.mem]\ntype = \"blackhole\"\n[[routes]]\nsinks = [\"mem\"]\n[dedup]\nenabled = false\n";
    let hb = start(&cfg, vec![]).await;
    let url = hb.url("/j");
    let token = data["tokens"]["kid1"].as_str().expect("token").to_owned();
    let resp = reqwest::Client::new()
        .post(&url)
        .header("authorization", format!("Bearer {token}"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "evt-1")
        .header("ce-source", "urn:jwt")
        .header("ce-type", "t")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["code"], "keys_unavailable", "{body}");
    // Within min_refresh: still 503 (no refetch yet), never 401.
    assert_eq!(post(&url, &token, "evt-1").await.0, 503);
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = post(&url, &token, "evt-1").await;
    assert_eq!(status, 200, "{body}");
    hb.stop().await;
}

#[test]
fn jwks_urls_must_be_https_unless_loopback() {
    for (url, ok) in [
        ("https://issuer.example/jwks.json", true),
        ("http://127.0.0.1:8080/jwks.json", true),
        ("http://localhost/jwks.json", true),
        ("http://[::1]:80/jwks.json", true),
        ("http://issuer.example/jwks.json", false),
        ("http://10.0.0.1/jwks.json", false),
        ("ftp://issuer.example/jwks.json", false),
    ] {
        let cfg = source("j", "\"RS256\"", &format!("jwks_url = \"{url}\""))
            + "\n[sinks.mem]\ntype = \"blackhole\"\n[[routes]]\nsinks = [\"mem\"]\n";
        let result = hookbridge::config::from_toml_str(&cfg, "test.toml");
        assert_eq!(
            result.is_ok(),
            ok,
            "{url}: {:?}",
            result.err().map(|e| e.to_string())
        );
    }
}

#[tokio::test]
async fn quarantine_receives_rejected_requests_without_secrets() {
    let cfg = "[sources.ce]\npath = \"/ce\"\nkind = \"cloudevents\"\nverify = { kind = \"token\", tokens = { env = \"PATH\" } }\n\
               [sinks.out]\ntype = \"blackhole\"\n[sinks.quarantine]\ntype = \"blackhole\"\n\
               [[routes]]\nsinks = [\"out\"]\n[quarantine]\nsink = \"quarantine\"\nmax_body = \"8B\"\n[server]\nbody_limit = \"64B\"\n";
    let q = MemorySink::new("quarantine");
    let out = MemorySink::new("out");
    let hb = start(
        cfg,
        vec![
            ("quarantine", q.clone() as SinkHandle),
            ("out", out.clone() as SinkHandle),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let resp = client
        .post(hb.url("/ce"))
        .header("authorization", "Bearer wrong")
        .header("x-hub-signature-256", "sha256=00")
        .header("cookie", "session=secret")
        .header("x-debug", "visible")
        .header("ce-specversion", "1.0")
        .header("ce-id", "q1")
        .header("ce-source", "urn:q")
        .header("ce-type", "t")
        .body("0123456789abcdef")
        .send()
        .await
        .expect("post");
    assert_eq!(
        resp.status().as_u16(),
        401,
        "the rejected request still gets its 401"
    );
    // An authenticated request with a body over the limit (an unauthenticated one is refused
    // on its headers, before its body is read).
    let resp = client
        .post(hb.url("/ce"))
        .header(
            "authorization",
            format!("Bearer {}", std::env::var("PATH").expect("PATH")),
        )
        .body("x".repeat(100))
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 413);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while q.ids().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "quarantine got {:?}",
            q.ids()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = q.events.lock().expect("lock").clone();
    let first: Value = serde_json::from_slice(events[0].data.as_deref().expect("data")).expect("json");
    assert_eq!(first["reason"], "bad_signature");
    assert_eq!(first["status"], 401);
    assert_eq!(first["source"], "ce");
    assert_eq!(first["headers"]["x-debug"], "visible");
    for secret in ["authorization", "x-hub-signature-256", "cookie"] {
        assert!(first["headers"].get(secret).is_none(), "{secret} leaked: {first}");
    }
    // Refused on its headers: the body was never read, so there is none to keep.
    assert!(first.get("body_base64").is_none_or(Value::is_null), "{first}");
    assert_eq!(events[0].ty, "dev.hookbridge.quarantine");
    let second: Value = serde_json::from_slice(events[1].data.as_deref().expect("data")).expect("json");
    assert_eq!(second["reason"], "body_too_large");
    assert!(out.ids().is_empty());
    hb.stop().await;

    // Quarantine off: nothing is sent anywhere.
    let off = cfg.replace("[quarantine]\nsink = \"quarantine\"\nmax_body = \"8B\"\n", "");
    let q2 = MemorySink::new("quarantine");
    let hb = start(&off, vec![("quarantine", q2.clone() as SinkHandle)]).await;
    let resp = client
        .post(hb.url("/ce"))
        .header("authorization", "Bearer wrong")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(q2.ids().is_empty());
    hb.stop().await;
}

/// A verifier's own credential header (here a custom token header) is never copied into the
/// quarantine, even when the credential was valid and the request refused for another reason,
/// and it cannot be kept (#26, #27 item 2).
#[tokio::test]
async fn the_quarantine_never_copies_a_custom_credential_header() {
    let cfg = "[sources.ce]\npath = \"/ce\"\nkind = \"cloudevents\"\nverify = { kind = \"token\", header = \"x-webhook-token\", tokens = { env = \"PATH\" } }\n\
               [sinks.out]\ntype = \"blackhole\"\n[sinks.quarantine]\ntype = \"blackhole\"\n\
               [[routes]]\nsinks = [\"out\"]\n[quarantine]\nsink = \"quarantine\"\n";
    let q = MemorySink::new("quarantine");
    let hb = start(cfg, vec![("quarantine", q.clone() as SinkHandle)]).await;
    let token = std::env::var("PATH").expect("PATH");
    let resp = reqwest::Client::new()
        .post(hb.url("/ce"))
        .header("x-webhook-token", &token)
        .header("content-type", "application/cloudevents+json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(resp.status().as_u16(), 400);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while q.ids().is_empty() {
        assert!(std::time::Instant::now() < deadline, "nothing quarantined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = q.events.lock().expect("lock").clone();
    let text = String::from_utf8_lossy(events[0].data.as_deref().expect("data")).into_owned();
    assert!(
        !text.contains(&token),
        "the token leaked into the quarantine: {text}"
    );
    assert!(!text.contains("x-webhook-token"), "{text}");
    hb.stop().await;
    // And it cannot be kept.
    let kept = cfg.replace(
        "kind = \"cloudevents\"\n",
        "kind = \"cloudevents\"\nkeep_headers = [\"X-Webhook-Token\"]\n",
    );
    let errs = hookbridge::config::from_toml_str(&kept, "inline").expect_err("refused");
    assert!(
        errs.0.iter().any(|e| e.key == "sources.ce.keep_headers[0]"),
        "{errs}"
    );
}
