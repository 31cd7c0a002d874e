//! End to end: Fatture in Cloud webhooks with a test ES256 key pair standing in for FIC's.
//! Verification challenge, binary and structured notifications, and every way a token can be
//! wrong — each answered with its code and nothing written.

mod common;

use base64::Engine as _;
use common::start;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};

const KEY: &str = include_str!("fixtures/fic-test-key.pem");
const OTHER_KEY: &str = include_str!("fixtures/other-test-key.pem");
const PUB_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fic-test-pub.pem");
const PUBLIC_URL: &str = "https://hooks.example.com/webhooks/fic";
const EVENT_ID: &str = "198:f059b211-24f4-44ab-9859-b1613a9a0712";
const SUBJECT: &str = "company:108061";
const TYPE: &str = "it.fattureincloud.webhooks.entities.clients.create";

struct Setup {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        Setup { _dir: dir, path }
    }
    fn config(&self, verify_extra: &str) -> String {
        // An allow-list and allow_any_company contradict each other (check refuses both).
        let any = if verify_extra.contains("companies") || verify_extra.contains("app_ids") {
            ""
        } else {
            "allow_any_company = true"
        };
        format!(
            r#"
[sources.fic]
path = "/webhooks/fic"
kind = "fattureincloud"
public_url = "{PUBLIC_URL}"
[sources.fic.verify]
public_key = {{ file = "{PUB_PATH}" }}
{any}
{verify_extra}

[sinks.file]
type = "file"
path = "{}"

[[routes]]
source = "fic"
types = ["it.fattureincloud.webhooks.**"]
sinks = ["file"]
"#,
            self.path.display()
        )
    }
    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.path)
            .map(|t| {
                t.lines()
                    .map(|l| serde_json::from_str(l).expect("json"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn claims() -> Map<String, Value> {
    let now = now();
    let v = json!({
        "iss": "https://api-v2.fattureincloud.it",
        "aud": [PUBLIC_URL],
        "sub": SUBJECT,
        "jti": EVENT_ID,
        "iat": now,
        "exp": now + 3 * 3600,
        "aid": 4321,
    });
    v.as_object().cloned().expect("object")
}

fn sign(key: &str, claims: &Map<String, Value>) -> String {
    encode(
        &Header::new(Algorithm::ES256),
        claims,
        &EncodingKey::from_ec_pem(key.as_bytes()).expect("key"),
    )
    .expect("sign")
}

fn token() -> String {
    sign(KEY, &claims())
}

fn with(f: impl FnOnce(&mut Map<String, Value>)) -> String {
    let mut c = claims();
    f(&mut c);
    sign(KEY, &c)
}

fn binary(url: &str, auth: Option<&str>) -> reqwest::RequestBuilder {
    let mut rb = reqwest::Client::new()
        .post(url)
        .header("user-agent", "FattureInCloud/API-WEBHOOK")
        .header("ce-type", TYPE)
        .header("ce-time", "2023-04-04T12:54:21+02:00")
        .header("ce-subject", SUBJECT)
        .header("ce-specversion", "1.0")
        .header("ce-source", "https://api-v2.fattureincloud.it")
        .header("ce-id", EVENT_ID)
        .header("content-type", "application/json")
        .body(r#"{"data":{"ids":[3062300]}}"#);
    if let Some(a) = auth {
        rb = rb.header("authorization", a);
    }
    rb
}

async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = rb.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

#[tokio::test]
async fn verification_challenge_by_header_and_by_query() {
    let s = Setup::new();
    let hb = start(&s.config(""), vec![]).await;
    let url = hb.url("/webhooks/fic");
    let challenge = "0f5d1c3e9a7b4f28e6d0c1b2a3948576f0e1d2c3b4a5968778695a4b3c2d1e0f";
    let get = || {
        reqwest::Client::new()
            .get(&url)
            .header("user-agent", "FattureInCloud/API-WEBHOOK")
            .header(
                "authorization",
                format!(
                    "Bearer {}",
                    with(|c| {
                        c.remove("jti");
                        c.remove("sub");
                    })
                ),
            )
    };
    let resp = get()
        .header("x-fic-verification-challenge", challenge)
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({ "verification": challenge })
    );

    let resp = reqwest::Client::new()
        .get(format!("{url}?x-fic-verification-challenge={challenge}"))
        .header("authorization", format!("Bearer {}", token()))
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.json::<Value>().await.expect("json"),
        json!({ "verification": challenge })
    );

    // Bad challenge values, and a GET without a valid token.
    for bad in ["not allowed!", "<script>", &"a".repeat(257)] {
        let (status, body) = send(get().query(&[("x-fic-verification-challenge", bad)])).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("bad_challenge")),
            "{bad}"
        );
    }
    let (status, body) = send(get()).await;
    assert_eq!((status, &body["error"]["code"]), (400, &json!("bad_challenge")));
    let (status, body) = send(
        reqwest::Client::new()
            .get(&url)
            .header("x-fic-verification-challenge", challenge),
    )
    .await;
    assert_eq!((status, &body["error"]["code"]), (401, &json!("missing_token")));
    let (status, body) = send(
        reqwest::Client::new()
            .get(&url)
            .header("x-fic-verification-challenge", challenge)
            .header("authorization", format!("Bearer {}", sign(OTHER_KEY, &claims()))),
    )
    .await;
    assert_eq!((status, &body["error"]["code"]), (401, &json!("bad_signature")));
    assert!(s.lines().is_empty(), "a challenge publishes nothing");
    hb.stop().await;
}

#[tokio::test]
async fn challenge_without_token_when_switched_off() {
    let s = Setup::new();
    let hb = start(&s.config("challenge_requires_token = false"), vec![]).await;
    let resp = reqwest::Client::new()
        .get(hb.url("/webhooks/fic"))
        .header("x-fic-verification-challenge", "abc")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status().as_u16(), 200);
    hb.stop().await;
}

#[tokio::test]
async fn binary_and_structured_notifications_land_with_the_same_canonical_data() {
    let s = Setup::new();
    let hb = start(&s.config(""), vec![]).await;
    let url = hb.url("/webhooks/fic");
    let (status, body) = send(binary(&url, Some(&format!("Bearer {}", token())))).await;
    assert_eq!((status, &body["status"]), (200, &json!("delivered")), "{body}");

    let structured = json!({
        "id": "199:aaaa", "source": "https://api-v2.fattureincloud.it", "specversion": "1.0",
        "type": TYPE, "subject": SUBJECT, "time": "2023-04-04T12:54:21+02:00",
        "datacontenttype": "application/json", "data": { "ids": [3062300] }
    });
    let tok = with(|c| {
        c.insert("jti".into(), json!("199:aaaa"));
    });
    // FIC's docs show both content types for structured mode.
    let (status, body) = send(
        reqwest::Client::new()
            .post(&url)
            .header("authorization", format!("Bearer {tok}"))
            .header("content-type", "application/cloudevents+json")
            .body(structured.to_string()),
    )
    .await;
    assert_eq!((status, &body["status"]), (200, &json!("delivered")), "{body}");
    let structured2 = {
        let mut v = structured.clone();
        v["id"] = json!("200:bbbb");
        v
    };
    let tok = with(|c| {
        c.insert("jti".into(), json!("200:bbbb"));
    });
    let (status, body) = send(
        reqwest::Client::new()
            .post(&url)
            .header("authorization", format!("Bearer {tok}"))
            .header("content-type", "application/json")
            .body(structured2.to_string()),
    )
    .await;
    assert_eq!((status, &body["status"]), (200, &json!("delivered")), "{body}");

    let lines = s.lines();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        assert_eq!(l["data"], json!({ "ids": [3062300] }), "{l}");
        assert_eq!(l["type"], TYPE);
        assert_eq!(l["subject"], SUBJECT);
        assert_eq!(l["hbsource"], "fic");
        assert_eq!(l["hbverifier"], "fattureincloud");
        assert_eq!(l["datacontenttype"], "application/json");
    }
    assert_eq!(lines[0]["id"], EVENT_ID);
    let raw = std::fs::read_to_string(&s.path).expect("file");
    assert_eq!(raw.matches(r#""data":{"ids":[3062300]}"#).count(), 3, "{raw}");

    // FIC re-sends (at-least-once): answered duplicate, not written again.
    let (status, body) = send(binary(&url, Some(&format!("Bearer {}", token())))).await;
    assert_eq!((status, &body["status"]), (200, &json!("duplicate")), "{body}");
    assert_eq!(s.lines().len(), 3);
    hb.stop().await;
}

#[tokio::test]
async fn welcome_event_without_ids_is_routable() {
    let s = Setup::new();
    let hb = start(&s.config(""), vec![]).await;
    let tok = with(|c| {
        c.insert("jti".into(), json!("1:welcome"));
    });
    let (status, body) = send(
        reqwest::Client::new()
            .post(hb.url("/webhooks/fic"))
            .header("authorization", format!("Bearer {tok}"))
            .header("ce-type", "it.fattureincloud.webhooks.subscriptions.welcome")
            .header("ce-subject", SUBJECT)
            .header("ce-specversion", "1.0")
            .header("ce-source", "https://api-v2.fattureincloud.it")
            .header("ce-id", "1:welcome")
            .header("content-type", "application/json")
            .body("{}"),
    )
    .await;
    assert_eq!((status, &body["status"]), (200, &json!("delivered")), "{body}");
    assert_eq!(s.lines()[0]["data"], json!({ "ids": [] }));
    hb.stop().await;
}

#[tokio::test]
async fn every_bad_request_gets_its_code_and_nothing_is_written() {
    let s = Setup::new();
    let hb = start(&s.config("app_ids = [4321]\ncompanies = [108061]"), vec![]).await;
    let url = hb.url("/webhooks/fic");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let good = token();
    let parts: Vec<&str> = good.split('.').collect();
    let forged = {
        let mut c = claims();
        c.insert("sub".into(), json!("company:999"));
        format!(
            "{}.{}.{}",
            parts[0],
            b64.encode(serde_json::to_vec(&c).expect("json")),
            parts[2]
        )
    };
    let hs256 = encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(&std::fs::read(PUB_PATH).expect("pub")).expect("secret"),
    )
    .expect("hs256");
    let alg_none = format!("{}.{}.", b64.encode(br#"{"alg":"none","typ":"JWT"}"#), parts[1]);
    let t = now();
    let bearer = |t: &str| Some(format!("Bearer {t}"));
    let cases: Vec<(&str, Option<String>, u16, &str)> = vec![
        ("forged signature", bearer(&forged), 401, "bad_signature"),
        (
            "other key",
            bearer(&sign(OTHER_KEY, &claims())),
            401,
            "bad_signature",
        ),
        ("hs256 with the public key", bearer(&hs256), 401, "bad_signature"),
        ("alg none", bearer(&alg_none), 401, "bad_signature"),
        (
            "expired",
            bearer(&with(|c| {
                c.insert("exp".into(), json!(t - 3600));
            })),
            401,
            "token_expired",
        ),
        (
            "nbf future",
            bearer(&with(|c| {
                c.insert("nbf".into(), json!(t + 3600));
            })),
            401,
            "token_not_yet_valid",
        ),
        (
            "wrong iss",
            bearer(&with(|c| {
                c.insert("iss".into(), json!("https://evil.example"));
            })),
            401,
            "issuer_mismatch",
        ),
        (
            "no aud",
            bearer(&with(|c| {
                c.remove("aud");
            })),
            401,
            "audience_mismatch",
        ),
        (
            "aud without our url",
            bearer(&with(|c| {
                c.insert("aud".into(), json!(["https://other.example/hook"]));
            })),
            401,
            "audience_mismatch",
        ),
        (
            "jti != id",
            bearer(&with(|c| {
                c.insert("jti".into(), json!("198:other"));
            })),
            401,
            "id_mismatch",
        ),
        (
            "company not allowed",
            bearer(&with(|c| {
                c.insert("sub".into(), json!("company:1"));
            })),
            401,
            "not_allowed",
        ),
        (
            "app not allowed",
            bearer(&with(|c| {
                c.insert("aid".into(), json!(1));
            })),
            401,
            "not_allowed",
        ),
        ("no authorization", None, 401, "missing_token"),
        (
            "malformed authorization",
            Some(format!("Token {good}")),
            401,
            "missing_token",
        ),
        ("empty bearer", Some("Bearer ".into()), 401, "missing_token"),
    ];
    for (name, auth, want_status, want_code) in cases {
        let (status, body) = send(binary(&url, auth.as_deref())).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (want_status, Some(want_code)),
            "{name}: {body}"
        );
    }
    // sub != subject: a token for another company (allowed) than the event's subject.
    let hb2_setup = Setup::new();
    let hb2 = start(&hb2_setup.config(""), vec![]).await;
    let (status, body) = send(binary(
        &hb2.url("/webhooks/fic"),
        bearer(&with(|c| {
            c.insert("sub".into(), json!("company:5"));
        }))
        .as_deref(),
    ))
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (401, &json!("subject_mismatch")),
        "{body}"
    );
    assert!(hb2_setup.lines().is_empty());
    hb2.stop().await;

    // Valid token, bad requests.
    let (status, body) = send(binary(&url, bearer(&good).as_deref()).body("not json")).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("malformed")),
        "{body}"
    );
    let no_type = reqwest::Client::new()
        .post(&url)
        .header("authorization", format!("Bearer {good}"))
        .header("ce-subject", SUBJECT)
        .header("ce-specversion", "1.0")
        .header("ce-source", "https://api-v2.fattureincloud.it")
        .header("ce-id", EVENT_ID)
        .header("content-type", "application/json")
        .body(r#"{"data":{"ids":[1]}}"#);
    let (status, body) = send(no_type).await;
    assert_eq!(
        (status, &body["error"]["code"], &body["error"]["field"]),
        (400, &json!("missing_attribute"), &json!("type"))
    );
    assert!(s.lines().is_empty(), "nothing may be written: {:?}", s.lines());

    // And the valid one still works on the same server.
    let (status, body) = send(binary(&url, bearer(&good).as_deref())).await;
    assert_eq!((status, &body["status"]), (200, &json!("delivered")), "{body}");
    assert_eq!(s.lines().len(), 1);
    hb.stop().await;
}
