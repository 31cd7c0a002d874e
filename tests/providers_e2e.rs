//! End to end: GitHub, Stripe, Standard Webhooks and generic HMAC/basic sources. Requests are
//! signed by implementations independent of hookbridge (`openssl dgst -hmac`, the
//! `standardwebhooks` reference crate); each kind accepts a correct signature and answers 401 for
//! a tampered body, a wrong secret and a stale timestamp, with nothing published.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{start, MemorySink};
use hookbridge::sink::SinkHandle;
use serde_json::Value;

/// HMAC computed by openssl, hex.
fn openssl_hmac(algo: &str, key: &str, data: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["dgst", &format!("-{algo}"), "-hmac", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child.stdin.take().expect("stdin").write_all(data).expect("write");
    let out = child.wait_with_output().expect("openssl output");
    let text = String::from_utf8(out.stdout).expect("utf8");
    text.rsplit("= ").next().expect("digest").trim().to_owned()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

const CONFIG: &str = r#"
[sources.gh]
path = "/gh"
kind = "github"
keep_headers = ["X-GitHub-Hook-ID", "User-Agent"]
verify = { secret = [{ env = "HB_TEST_GH_OLD" }, { env = "HB_TEST_GH" }] }

[sources.stripe]
path = "/stripe"
kind = "stripe"
verify = { secret = { env = "HB_TEST_STRIPE" } }

[sources.sw]
path = "/sw"
kind = "standard-webhooks"
verify = { secret = { env = "HB_TEST_SW" }, tolerance = "5m" }

[sources.acme]
path = "/acme"
kind = "generic"
mapping = { id = { pointer = "/event/id" }, type = { template = "com.acme.{header:x-acme-kind}" }, subject = { pointer = "/tenant" } }
[sources.acme.verify]
kind = "hmac"
secret = { env = "HB_TEST_ACME" }
header = "x-acme-signature"
algorithm = "sha512"
prefix = "v1="
signed = "{timestamp}:{body}"
timestamp_header = "x-acme-time"
tolerance = "2m"

[sources.basic]
path = "/basic"
kind = "cloudevents"
verify = { kind = "basic", users = [{ username = "hook", password = { env = "HB_TEST_BASIC" } }] }

[sinks.mem]
type = "blackhole"

[[routes]]
sinks = ["mem"]
"#;

const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

fn set_env() {
    // Each test process sets the same values; no test reads them differently.
    for (k, v) in [
        ("HB_TEST_GH_OLD", "old-github-secret"),
        ("HB_TEST_GH", "It's a Secret to Everybody"),
        ("HB_TEST_STRIPE", "whsec_test_secret"),
        ("HB_TEST_SW", SW_SECRET),
        ("HB_TEST_ACME", "acme-secret"),
        ("HB_TEST_BASIC", "hunter2"),
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

fn assert_code(got: (u16, Value), status: u16, code: &str) {
    assert_eq!(
        (got.0, got.1["error"]["code"].as_str()),
        (status, Some(code)),
        "{}",
        got.1
    );
}

#[tokio::test]
async fn every_provider_kind_accepts_good_signatures_and_rejects_bad_ones() {
    set_env();
    let mem = MemorySink::new("mem");
    let hb = start(CONFIG, vec![("mem", mem.clone() as SinkHandle)]).await;
    let client = reqwest::Client::new();

    // --- GitHub: HMAC-SHA256 by openssl; old and new secrets both pass (rotation).
    let body = br#"{"action":"opened","repository":{"full_name":"o/r"}}"#;
    let gh = |sig: String, body: &'static [u8], id: &str| {
        client
            .post(hb.url("/gh"))
            .header("content-type", "application/json")
            .header("x-github-event", "issues")
            .header("x-github-delivery", id)
            .header("x-github-hook-id", "77")
            .header("user-agent", "GitHub-Hookshot/abc")
            .header("x-hub-signature-256", sig)
            .body(body)
    };
    let good = format!(
        "sha256={}",
        openssl_hmac("sha256", "It's a Secret to Everybody", body)
    );
    let (status, b) = send(gh(good.clone(), body, "gh-1")).await;
    assert_eq!(status, 200, "{b}");
    // Another delivery (another body: GitHub events are deduplicated on the body they sign).
    let body2: &'static [u8] = br#"{"action":"edited","repository":{"full_name":"o/r"}}"#;
    let old = format!("sha256={}", openssl_hmac("sha256", "old-github-secret", body2));
    assert_eq!(send(gh(old, body2, "gh-2")).await.0, 200);
    assert_code(
        send(gh(good.clone(), br#"{"action":"closed"}"#, "gh-3")).await,
        401,
        "bad_signature",
    );
    let wrong = format!("sha256={}", openssl_hmac("sha256", "wrong", body));
    assert_code(send(gh(wrong, body, "gh-4")).await, 401, "bad_signature");
    assert_code(
        send(client.post(hb.url("/gh")).body(&body[..])).await,
        401,
        "missing_token",
    );

    // --- Stripe: v1 = HMAC-SHA256(whole whsec string, "t.body") by openssl.
    let body = br#"{"id":"evt_1","type":"invoice.paid","created":1700000000}"#;
    let stripe = |t: i64, key: &str, body: &'static [u8]| {
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(body);
        let v1 = openssl_hmac("sha256", key, &signed);
        client
            .post(hb.url("/stripe"))
            .header("content-type", "application/json")
            .header("stripe-signature", format!("t={t},v1={v1},v0=ignored"))
            .body(body)
    };
    let (status, b) = send(stripe(now(), "whsec_test_secret", body)).await;
    assert_eq!(status, 200, "{b}");
    assert_code(
        send(stripe(now() - 301, "whsec_test_secret", body)).await,
        401,
        "timestamp_out_of_range",
    );
    assert_code(
        send(stripe(now(), "whsec_other", body)).await,
        401,
        "bad_signature",
    );
    let mut tampered = stripe(now(), "whsec_test_secret", body).build().expect("request");
    *tampered.body_mut() = Some(reqwest::Body::from(
        &br#"{"id":"evt_1","type":"invoice.void"}"#[..],
    ));
    let resp = client.execute(tampered).await.expect("send");
    assert_eq!(resp.status().as_u16(), 401);

    // --- Standard Webhooks: signed by the reference crate.
    let body = br#"{"type":"user.created","data":{"id":1}}"#;
    let wh = standardwebhooks::Webhook::new(SW_SECRET).expect("secret");
    let sw = |id: &str, ts: i64, body: &'static [u8], sig: String| {
        client
            .post(hb.url("/sw"))
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body)
    };
    let t = now();
    let sig = wh.sign("msg_1", t, body).expect("sign");
    let (status, b) = send(sw("msg_1", t, body, sig.clone())).await;
    assert_eq!(status, 200, "{b}");
    assert_code(
        send(sw("msg_1", t, br#"{"type":"user.deleted"}"#, sig)).await,
        401,
        "bad_signature",
    );
    let stale = now() - 600;
    let stale_sig = wh.sign("msg_2", stale, body).expect("sign");
    assert_code(
        send(sw("msg_2", stale, body, stale_sig)).await,
        401,
        "timestamp_out_of_range",
    );
    let other = standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
    assert_code(
        send(sw("msg_3", t, body, other.sign("msg_3", t, body).expect("sign"))).await,
        401,
        "bad_signature",
    );

    // --- Generic HMAC-SHA512 over "{timestamp}:{body}" with a prefix, mapping from body/header.
    let body = br#"{"event":{"id":"a-1"},"tenant":"t9"}"#;
    let acme = |ts: i64, key: &str, body: &'static [u8], kind: &str| {
        let mut signed = format!("{ts}:").into_bytes();
        signed.extend_from_slice(body);
        client
            .post(hb.url("/acme"))
            .header("content-type", "application/json")
            .header("x-acme-kind", kind)
            .header("x-acme-time", ts.to_string())
            .header(
                "x-acme-signature",
                format!("v1={}", openssl_hmac("sha512", key, &signed)),
            )
            .body(body)
    };
    let (status, b) = send(acme(now(), "acme-secret", body, "order.paid")).await;
    assert_eq!(status, 200, "{b}");
    assert_code(
        send(acme(now() - 200, "acme-secret", body, "order.paid")).await,
        401,
        "timestamp_out_of_range",
    );
    assert_code(
        send(acme(now(), "nope", body, "order.paid")).await,
        401,
        "bad_signature",
    );
    // Signed correctly but the mapping finds no id → 400 naming the field.
    assert_code(
        send(acme(now(), "acme-secret", br#"{"tenant":"t9"}"#, "x")).await,
        400,
        "missing_attribute",
    );

    // --- Basic on a CloudEvents source.
    let ce = |user: &str, pass: &str, id: &str| {
        client
            .post(hb.url("/basic"))
            .basic_auth(user, Some(pass))
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-source", "urn:b")
            .header("ce-type", "t")
    };
    assert_eq!(send(ce("hook", "hunter2", "b-1")).await.0, 200);
    assert_code(send(ce("hook", "wrong", "b-2")).await, 401, "bad_signature");

    // Exactly the accepted requests were published, with the mapped attributes.
    let events = mem.events.lock().expect("lock").clone();
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["gh-1", "gh-2", "evt_1", "msg_1", "a-1", "b-1"]);
    let gh1 = &events[0];
    assert_eq!(gh1.ty, "com.github.issues.opened");
    assert_eq!(gh1.subject.as_deref(), Some("o/r"));
    assert_eq!(gh1.source, "hookbridge://gh");
    assert_eq!(
        gh1.data.as_deref(),
        Some(&br#"{"action":"opened","repository":{"full_name":"o/r"}}"#[..])
    );
    assert_eq!(gh1.attribute("hbverifier").as_deref(), Some("github"));
    // keep_headers: only the listed ones, never the signature.
    assert_eq!(
        gh1.headers,
        vec![
            ("x-github-hook-id".to_owned(), "77".to_owned()),
            ("user-agent".to_owned(), "GitHub-Hookshot/abc".to_owned())
        ]
    );
    assert_eq!(events[2].ty, "com.stripe.invoice.paid");
    assert_eq!(events[2].time.as_deref(), Some("2023-11-14T22:13:20Z"));
    assert_eq!(events[3].ty, "user.created");
    assert_eq!(events[4].ty, "com.acme.order.paid");
    assert_eq!(events[4].subject.as_deref(), Some("t9"));
    assert_eq!(events[4].attribute("hbverifier").as_deref(), Some("hmac"));
    hb.stop().await;
}

#[test]
fn keep_headers_refuses_credentials_and_signatures() {
    let text = r#"
[sources.gh]
path = "/gh"
kind = "github"
keep_headers = ["Authorization", "X-Hub-Signature-256", "x-ok"]
verify = { secret = { env = "PATH" } }
[sinks.b]
type = "blackhole"
[[routes]]
sinks = ["b"]
"#;
    let errs = hookbridge::config::from_toml_str(text, "t.toml").expect_err("refused");
    assert!(errs.has_key("sources.gh.keep_headers[0]"), "{errs}");
    assert!(errs.has_key("sources.gh.keep_headers[1]"), "{errs}");
    assert!(!errs.has_key("sources.gh.keep_headers[2]"), "{errs}");
}

/// Two unauthenticated requests whose signature headers carry thousands of candidates over a
/// 900 KB body (Standard Webhooks and Stripe): each is answered 401 promptly, and `/healthz`
/// answers meanwhile. Each candidate used to cost an HMAC over the body on a runtime worker
/// (#26: 62 s to answer, `/healthz` silent for 10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_signature_candidates_is_refused_promptly() {
    set_env();
    let mem = MemorySink::new("mem");
    let hb = start(CONFIG, vec![("mem", mem.clone() as SinkHandle)]).await;
    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let body = vec![b'x'; 900 * 1024];
    let sw_flood = "v1,AAAA ".repeat(8_000);
    let stripe_flood = format!("t={now},{}", "v1=00,".repeat(8_000));
    let started = std::time::Instant::now();
    let sw = client
        .post(hb.url("/sw"))
        .header("webhook-id", "msg_flood")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", sw_flood)
        .body(body.clone())
        .send();
    let stripe = client
        .post(hb.url("/stripe"))
        .header("stripe-signature", stripe_flood)
        .body(body)
        .send();
    let health = async {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let t = std::time::Instant::now();
        let r = reqwest::get(hb.url("/healthz")).await.expect("healthz");
        (r.status().as_u16(), t.elapsed())
    };
    let (sw, stripe, (health_status, health_took)) = tokio::join!(sw, stripe, health);
    let took = started.elapsed();
    for r in [sw.expect("sw"), stripe.expect("stripe")] {
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or_default();
        assert_eq!(
            (status, &body["error"]["code"]),
            (401, &Value::from("bad_signature")),
            "{body}"
        );
    }
    assert_eq!(health_status, 200);
    assert!(
        took < std::time::Duration::from_secs(2),
        "the floods took {took:?}"
    );
    assert!(
        health_took < std::time::Duration::from_secs(1),
        "/healthz took {health_took:?}"
    );
    assert!(mem.ids().is_empty());
    hb.stop().await;
}

/// GitHub signs only the body; the delivery id and event name are unsigned headers. A captured
/// delivery re-sent under a fresh id and another event name is a duplicate: dedup keys GitHub
/// events on the body's digest by default (`dedup_on = "body"`) (#26).
#[tokio::test]
async fn a_github_delivery_resent_under_fresh_ids_is_a_duplicate() {
    set_env();
    let mem = MemorySink::new("mem");
    let hb = start(CONFIG, vec![("mem", mem.clone() as SinkHandle)]).await;
    let client = reqwest::Client::new();
    let body: &'static [u8] = br#"{"action":"opened","number":7,"repository":{"full_name":"o/r"}}"#;
    let sig = format!(
        "sha256={}",
        openssl_hmac("sha256", "It's a Secret to Everybody", body)
    );
    let send_as = |id: &str, event: &str| {
        client
            .post(hb.url("/gh"))
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", sig.clone())
            .body(body)
    };
    let (status, first) = send(send_as("d-original", "issues")).await;
    assert_eq!(
        (status, first["status"].as_str()),
        (200, Some("delivered")),
        "{first}"
    );
    for (id, event) in [("d-forged-1", "issues"), ("d-forged-2", "deployment")] {
        let (status, again) = send(send_as(id, event)).await;
        assert_eq!(
            (status, again["status"].as_str()),
            (200, Some("duplicate")),
            "{again}"
        );
    }
    assert_eq!(mem.ids(), ["d-original"], "published once");
    hb.stop().await;
}

/// A sender cannot set the extensions that steer hookbridge's keys: a `ce-hbbodydigest` or
/// `ce-hbreplay` of its own is dropped, so it cannot make its event a duplicate of another, nor
/// get a re-send past the brokers' duplicate window (#26).
#[tokio::test]
async fn a_sender_cannot_set_hookbridges_key_extensions() {
    set_env();
    let mem = MemorySink::new("mem");
    let hb = start(CONFIG, vec![("mem", mem.clone() as SinkHandle)]).await;
    let client = reqwest::Client::new();
    for id in ["k-1", "k-2"] {
        let (status, body) = send(
            client
                .post(hb.url("/basic"))
                .basic_auth("hook", Some("hunter2"))
                .header("ce-specversion", "1.0")
                .header("ce-id", id)
                .header("ce-source", "urn:keys")
                .header("ce-type", "t.keys")
                .header("ce-hbbodydigest", "same-for-both")
                .header("ce-hbreplay", "2026-01-01T00:00:00Z")
                .body("{}"),
        )
        .await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("delivered")),
            "{id}: {body}"
        );
    }
    let events = mem.events.lock().expect("lock").clone();
    assert_eq!(events.len(), 2);
    for e in &events {
        assert!(!e.extensions.contains_key("hbbodydigest"), "{:?}", e.extensions);
        assert!(!e.extensions.contains_key("hbreplay"), "{:?}", e.extensions);
    }
    hb.stop().await;
}
