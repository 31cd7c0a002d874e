//! The adversarial review of the operator-surface change (#27), kept as regression tests: each
//! failed on 5bdd58d (findings A–D, F) and passes now; the last is what held (path and header
//! tricks against the admin and probe listeners).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use warp::Filter;

const TOKEN: &str = "adv-admin-token-123";

fn spool_cfg(dir: &std::path::Path, server: &str) -> String {
    format!(
        r#"
[server]
{server}

[sources.ce]
path = "/events"
kind = "cloudevents"
delivery = "spool"
verify = {{ kind = "none" }}

[spool]
dir = "{spool}"
retain = "1h"

[sinks.out]
type = "file"
path = "{out}"

[[routes]]
sinks = ["out"]

[dedup]
enabled = false
"#,
        spool = dir.join("spool").display(),
        out = dir.join("out.jsonl").display(),
    )
}

/// A non-loopback address of this machine (what a remote attacker would connect to).
fn public_ip() -> std::net::IpAddr {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .expect("a non-loopback IPv4 address")
}

/// Finding A. The operator runs a public admin listener with a token, then edits the file to
/// take the admin API off the network (drops admin_listen and admin_token) and sends SIGHUP.
/// The bound 0.0.0.0 listener keeps serving /admin/*, now with the token-less rule: any remote
/// client that writes `Host: localhost` can replay (and discard) events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_drops_the_admin_token_must_not_open_the_bound_public_admin_listener() {
    std::env::set_var("HB_ADV_TOKEN", TOKEN);
    let dir = tempfile::tempdir().expect("dir");
    let before = spool_cfg(
        dir.path(),
        "admin_listen = \"0.0.0.0:9\"\nadmin_token = { env = \"HB_ADV_TOKEN\" }",
    );
    let after = spool_cfg(dir.path(), ""); // no admin_listen, no admin_token: valid for `check`
    let config = hookbridge::config::from_toml_str(&before, "t.toml").expect("config");
    let app = hookbridge::app::App::build_with(config, Default::default()).expect("build");
    let main = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin = tokio::net::TcpListener::bind("0.0.0.0:0").await.expect("bind");
    let admin_port = admin.local_addr().expect("addr").port();
    let live = hookbridge::ingress::Live::new(app);
    let listeners = hookbridge::ingress::Listeners {
        main,
        admin: Some(admin),
        probe: None,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(hookbridge::ingress::serve_live(live.clone(), listeners, async {
        let _ = rx.await;
    }));
    let remote = std::net::SocketAddr::new(public_ip(), admin_port);
    let attack = "GET /admin/parked HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
    let reply = common::raw_request(remote, attack.as_bytes()).await;
    assert_eq!(common::status_of(&reply), 401, "before the reload: {reply}");

    live.reload(hookbridge::config::from_toml_str(&after, "t.toml").expect("config"))
        .await
        .expect("reload");
    let reply = common::raw_request(remote, attack.as_bytes()).await;
    let replay = common::raw_request(
        remote,
        b"POST /admin/replay HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 16\r\nconnection: close\r\n\r\n{\"dry_run\":true}",
    )
    .await;
    let _ = tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    // Refused (403 admin_token_required): the listener is still bound to 0.0.0.0, and a
    // reload cannot move it, so the admin API there keeps needing a token.
    for r in [&reply, &replay] {
        assert!(
            matches!(common::status_of(r), 401 | 403),
            "after the reload, a remote client with `Host: localhost` and no token:\n{r}"
        );
    }
}

/// Finding B. Sync mode with a dead-letter sink: the 200 `dead_lettered` answer carries each
/// receipt's `error` — the sink's full error text — back to the webhook sender. An HTTP sink's
/// permanent error names its URL template (here with an API key in the query).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_lettered_answer_must_not_carry_sink_error_text() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}

[sinks.partner]
type = "http"
url = "http://10.1.2.3:8443/internal/hooks/{{tenant}}?api_key=SUPERSECRETKEY"

[sinks.dl]
type = "file"
path = "{dl}"

[[routes]]
sinks = ["partner"]

[dead_letter]
sink = "dl"

[dedup]
enabled = false
"#,
        dl = dir.path().join("dl.jsonl").display()
    );
    let hb = common::start(&cfg, vec![]).await;
    // No `tenant` extension: the URL template cannot be rendered → rejected → dead-lettered.
    let resp = reqwest::Client::new()
        .post(hb.url("/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "dl-1")
        .header("ce-source", "urn:x")
        .header("ce-type", "t")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    hb.stop().await;
    assert_eq!(status, 200, "{text}");
    assert!(
        !text.contains("SUPERSECRETKEY") && !text.contains("10.1.2.3") && !text.contains("/internal/"),
        "the sender's answer carries the sink's URL: {text}"
    );
}

/// Finding C. HTTP sink health was "down" for 10 s after ONE retryable publish failure. An event
/// the receiver answers 5xx (a payload it chokes on) takes the whole instance out of readiness
/// although the endpoint takes every other event: one request per 10 s per replica keeps a
/// deployment unready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_the_receiver_chokes_on_must_not_make_the_instance_unready() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let route = warp::header::optional::<String>("ce-type").map(move |ty: Option<String>| {
        h.fetch_add(1, Ordering::SeqCst);
        if ty.as_deref() == Some("boom") {
            warp::http::StatusCode::INTERNAL_SERVER_ERROR
        } else {
            warp::http::StatusCode::NO_CONTENT
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let recv = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    let cfg = format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}

[sinks.partner]
type = "http"
url = "http://{recv}/hook"

[[routes]]
sinks = ["partner"]

[dedup]
enabled = false
"#
    );
    let hb = common::start(&cfg, vec![]).await;
    let client = reqwest::Client::new();
    let post = |ty: &'static str, id: &'static str| {
        client
            .post(hb.url("/events"))
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-source", "urn:x")
            .header("ce-type", ty)
            .header("content-type", "application/json")
            .body("{}")
            .send()
    };
    assert_eq!(post("ok", "c-1").await.expect("post").status().as_u16(), 200);
    assert_eq!(
        client
            .get(hb.url("/readyz"))
            .send()
            .await
            .expect("r")
            .status()
            .as_u16(),
        200
    );
    // One poison event from one sender.
    assert_eq!(post("boom", "c-2").await.expect("post").status().as_u16(), 503);
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the 1 s health cache
    let mut unready = 0;
    for _ in 0..3 {
        if client
            .get(hb.url("/readyz"))
            .send()
            .await
            .expect("r")
            .status()
            .as_u16()
            == 503
        {
            unready += 1;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The endpoint itself was fine all along.
    let ok_again = post("ok", "c-3").await.expect("post").status().as_u16();
    hb.stop().await;
    assert_eq!(ok_again, 200);
    assert_eq!(
        unready, 0,
        "/readyz answered 503 {unready} times in 3 s after one poison event"
    );
}

/// Finding D. A JWKS whose keys carry no `kid` (legal; the verifier tries every kid-less key)
/// and an issuer whose tokens name a `kid`: the first request fetches and is accepted, every
/// other one within `min_refresh` is answered 503 `keys_unavailable` (before this change: 200).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kid_less_jwks_keys_must_keep_verifying_tokens_that_name_a_kid() {
    use base64::Engine as _;
    let secret = b"jwks-shared-secret-of-32-bytes!!";
    let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let jwks = serde_json::json!({ "keys": [ { "kty": "oct", "k": k, "alg": "HS256" } ] }).to_string();
    let route = warp::path("jwks").map(move || jwks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    let cfg = format!(
        r#"
[sources.j]
path = "/j"
kind = "cloudevents"
[sources.j.verify]
kind = "jwt"
algorithms = ["HS256"]
jwks_url = "http://{addr}/jwks"
issuers = ["https://issuer.example"]
audiences = ["hookbridge"]

[sinks.mem]
type = "blackhole"

[[routes]]
sinks = ["mem"]

[dedup]
enabled = false
"#
    );
    let hb = common::start(&cfg, vec![]).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("2024-key".into());
    let claims = serde_json::json!({
        "iss": "https://issuer.example", "aud": "hookbridge", "exp": now + 600, "iat": now
    });
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret).expect("key"),
    )
    .expect("sign");
    let mut statuses = Vec::new();
    for i in 0..3 {
        let resp = reqwest::Client::new()
            .post(hb.url("/j"))
            .bearer_auth(&token)
            .header("ce-specversion", "1.0")
            .header("ce-id", format!("j-{i}"))
            .header("ce-source", "urn:x")
            .header("ce-type", "t")
            .send()
            .await
            .expect("post");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or_default();
        statuses.push((status, body["error"]["code"].clone()));
    }
    hb.stop().await;
    assert!(
        statuses.iter().all(|(s, _)| *s == 200),
        "the same valid token: {statuses:?}"
    );
}

/// Finding F. `check` insists on admin_token for a non-loopback admin listener, yet that
/// listener answers /readyz (with each sink's error text) and /metrics to anyone, token or not,
/// unless probe_listen is set. The HTTP sink's error text carries the rendered URL, query key
/// included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_admin_listener_must_not_show_error_text_without_the_token() {
    std::env::set_var("HB_ADV_TOKEN", TOKEN);
    let cfg = r#"
[server]
admin_listen = "0.0.0.0:9"
admin_token = { env = "HB_ADV_TOKEN" }

[sources.ce]
path = "/events"
kind = "cloudevents"
verify = { kind = "none" }

[sinks.partner]
type = "http"
url = "http://127.0.0.1:1/hooks?api_key=SUPERSECRETKEY"

[[routes]]
sinks = ["partner"]

[dedup]
enabled = false
"#;
    let hb = common::start_listeners(cfg, vec![], true, false).await;
    let resp = reqwest::Client::new()
        .post(hb.url("/events"))
        .header("ce-specversion", "1.0")
        .header("ce-id", "f-1")
        .header("ce-source", "urn:x")
        .header("ce-type", "t")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("post");
    let webhook_answer = resp.text().await.expect("text");
    let admin = hb.admin_addr.expect("admin");
    let readyz = reqwest::get(format!("http://{admin}/readyz"))
        .await
        .expect("readyz")
        .text()
        .await
        .expect("text");
    hb.stop().await;
    assert!(!webhook_answer.contains("SUPERSECRETKEY"), "{webhook_answer}");
    assert!(
        !readyz.contains("SUPERSECRETKEY"),
        "unauthenticated /readyz on the token-protected admin listener: {readyz}"
    );
}

/// Held (control): path and header tricks against the admin and probe listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_path_and_header_tricks_held() {
    std::env::set_var("HB_ADV_TOKEN", TOKEN);
    let dir = tempfile::tempdir().expect("dir");
    let cfg = spool_cfg(
        dir.path(),
        "admin_listen = \"127.0.0.1:9\"\nadmin_token = { env = \"HB_ADV_TOKEN\" }",
    );
    let hb = common::start_listeners(&cfg, vec![], true, true).await;
    let admin = hb.admin_addr.expect("admin");
    let probe = hb.probe_addr.expect("probe");
    let body = "{\"dry_run\":true}";
    let req = |target: &str, extra: &str| {
        format!(
            "POST {target} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let mut got = Vec::new();
    for target in [
        "/admin/replay/",
        "//admin/replay",
        "/admin/%72eplay",
        "/ADMIN/replay",
        "/admin/./replay",
        "/admin/../admin/replay",
        "http://localhost/admin/replay",
        "/admin/replay?x=1",
        "/admin/replay#x",
    ] {
        for (addr, name) in [(admin, "admin"), (probe, "probe"), (hb.addr, "main")] {
            let r = common::raw_request(addr, req(target, "").as_bytes()).await;
            got.push((name, target.to_owned(), "", common::status_of(&r)));
        }
    }
    for extra in [
        format!("authorization: Bearer wrong\r\nauthorization: Bearer {TOKEN}\r\n"),
        format!("authorization: Bearer {TOKEN}\r\nauthorization: Bearer {TOKEN}\r\n"),
        format!("authorization: Bearer  {TOKEN}x\r\n"),
        format!("authorization: bearer{TOKEN}\r\n"),
        "authorization: Bearer \r\n".to_owned(),
    ] {
        let r = common::raw_request(admin, req("/admin/replay", &extra).as_bytes()).await;
        got.push(("admin", "/admin/replay".into(), "hdr", common::status_of(&r)));
    }
    hb.stop().await;
    for g in &got {
        eprintln!("{g:?}");
    }
    assert!(got.iter().all(|(_, _, _, s)| *s != 200), "{got:?}");
}
