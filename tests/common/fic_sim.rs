//! A Fatture in Cloud API simulator for tests: the subscription endpoints with FIC's JSON shapes
//! and `RateLimit-*` headers; on create and verify it sends the real GET challenge to the sink
//! (accepting `http://` sinks, unlike FIC), then a signed welcome event.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use warp::Filter;

const KEY: &str = include_str!("../fixtures/fic-test-key.pem");

#[derive(Debug, Clone)]
pub struct Sub {
    pub id: String,
    pub sink: String,
    pub types: Vec<String>,
    pub verified: bool,
    pub mapping: String,
    /// The company the subscription belongs to.
    pub company: String,
}

#[derive(Default)]
pub struct State {
    pub subs: BTreeMap<String, Sub>,
    pub next: u32,
    /// Requests left before 403 over quota (`None`: unlimited).
    pub quota_left: Option<u32>,
    /// (subscription id, verification method, status the sink answered, verified?)
    pub verifications: Vec<(String, String, u16, bool)>,
    pub welcomes_sent: u32,
    /// Every authorised API request (refused over quota included), as "METHOD /path".
    pub requests: Vec<String>,
}

pub struct Sim {
    pub addr: std::net::SocketAddr,
    pub state: Arc<Mutex<State>>,
}

pub const TOKEN: &str = "sim-access-token";

impl Sim {
    pub async fn start() -> Sim {
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let route = warp::any()
            .and(warp::method())
            .and(warp::path::full())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .then(
                move |m: Method, p: warp::path::FullPath, h: HeaderMap, b: Bytes| {
                    let s = s.clone();
                    async move { handle(s, m, p.as_str().to_owned(), h, b).await }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Sim { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends a notification of `ty` (after `it.fattureincloud.webhooks.`) about `ids` to a
    /// verified subscription's sink, as FIC does: binary CloudEvents, the ids as data, and a
    /// bearer JWT signed with the test key (`aud` the sink, `sub` the company, `jti` the event
    /// id). Returns the sink's status.
    pub async fn notify(&self, sub: &str, event_id: &str, ty: &str, ids: &[u64]) -> u16 {
        let (sink, company, verified) = {
            let st = self.state.lock().expect("lock");
            let s = &st.subs[sub];
            (s.sink.clone(), s.company.clone(), s.verified)
        };
        assert!(verified, "FIC only notifies verified subscriptions");
        let subject = format!("company:{company}");
        let token = sign(
            json!({ "iss": "https://api-v2.fattureincloud.it", "aud": [sink], "iat": now(), "exp": now() + 3 * 3600, "sub": subject, "jti": event_id }),
        );
        reqwest::Client::new()
            .post(&sink)
            .header("authorization", format!("Bearer {token}"))
            .header("user-agent", "FattureInCloud/API-WEBHOOK")
            .header("ce-type", format!("it.fattureincloud.webhooks.{ty}"))
            .header("ce-specversion", "1.0")
            .header("ce-source", "https://api-v2.fattureincloud.it")
            .header("ce-id", event_id)
            .header("ce-subject", &subject)
            .header("ce-time", "2026-11-30T12:00:00Z")
            .header("content-type", "application/json")
            .body(json!({ "data": { "ids": ids } }).to_string())
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }
}

fn reply(status: u16, body: Value, extra: &[(&str, String)]) -> warp::reply::Response {
    let mut resp = warp::reply::Response::new(body.to_string().into());
    *resp.status_mut() = StatusCode::from_u16(status).expect("status");
    let h = resp.headers_mut();
    h.insert("content-type", "application/json".parse().expect("v"));
    h.insert("ratelimit-hourlylimit", "1000".parse().expect("v"));
    h.insert("ratelimit-hourlyremaining", "999".parse().expect("v"));
    h.insert("ratelimit-monthlylimit", "40000".parse().expect("v"));
    h.insert("ratelimit-monthlyremaining", "39999".parse().expect("v"));
    for (k, v) in extra {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
            v.parse().expect("v"),
        );
    }
    resp
}

fn sub_json(s: &Sub) -> Value {
    json!({ "id": s.id, "sink": s.sink, "verified": s.verified, "types": s.types, "config": { "mapping": s.mapping } })
}

async fn handle(
    state: Arc<Mutex<State>>,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
) -> warp::reply::Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {TOKEN}")) {
        return reply(401, json!({ "error": { "message": "Unauthorized" } }), &[]);
    }
    {
        let mut st = state.lock().expect("lock");
        st.requests.push(format!("{method} {path}"));
        if let Some(left) = st.quota_left.as_mut() {
            if *left == 0 {
                return reply(
                    403,
                    json!({ "error": { "message": "Too many requests: hourly quota exceeded" } }),
                    &[
                        ("retry-after", "3600".into()),
                        ("ratelimit-hourlyremaining", "0".into()),
                    ],
                );
            }
            *left -= 1;
        }
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["c", _, "subscriptions"]) => {
            let st = state.lock().expect("lock");
            reply(
                200,
                json!({ "data": st.subs.values().map(sub_json).collect::<Vec<_>>() }),
                &[],
            )
        }
        ("POST", ["c", cid, "subscriptions"]) => {
            let d = &req["data"];
            let Some(sink) = d["sink"].as_str() else {
                return reply(422, json!({ "error": { "message": "sink is required" } }), &[]);
            };
            let types: Vec<String> = d["types"]
                .as_array()
                .map(|t| t.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            let method = d["verification_method"].as_str().unwrap_or("header").to_owned();
            let sub = {
                let mut st = state.lock().expect("lock");
                st.next += 1;
                let sub = Sub {
                    id: format!("SUB{}", st.next),
                    sink: sink.to_owned(),
                    types,
                    verified: false,
                    mapping: d["config"]["mapping"].as_str().unwrap_or("binary").to_owned(),
                    company: cid.to_string(),
                };
                st.subs.insert(sub.id.clone(), sub.clone());
                sub
            };
            tokio::spawn(verify(state.clone(), sub.id.clone(), method, cid.to_string()));
            let warnings = if sink.starts_with("http://") {
                vec!["the simulator accepts http:// sinks; Fatture in Cloud requires https://"]
            } else {
                vec![]
            };
            reply(200, json!({ "data": sub_json(&sub), "warnings": warnings }), &[])
        }
        (m, ["c", cid, "subscriptions", id, rest @ ..]) => {
            let exists = state.lock().expect("lock").subs.contains_key(*id);
            if !exists {
                return reply(
                    404,
                    json!({ "error": { "message": "Subscription not found" } }),
                    &[],
                );
            }
            match (m, rest) {
                ("GET", []) => {
                    let st = state.lock().expect("lock");
                    reply(200, json!({ "data": sub_json(&st.subs[*id]) }), &[])
                }
                ("DELETE", []) => {
                    state.lock().expect("lock").subs.remove(*id);
                    reply(200, json!({}), &[])
                }
                ("PUT", []) => {
                    let mut st = state.lock().expect("lock");
                    let s = st.subs.get_mut(*id).expect("sub");
                    if let Some(t) = req["data"]["types"].as_array() {
                        s.types = t.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect();
                    }
                    reply(200, json!({ "data": sub_json(s) }), &[])
                }
                ("POST", ["verify"]) => {
                    // FIC does not remember the method: it must be sent every time.
                    let Some(method) = req["data"]["verification_method"].as_str() else {
                        return reply(
                            422,
                            json!({ "error": { "message": "verification_method is required" } }),
                            &[],
                        );
                    };
                    tokio::spawn(verify(
                        state.clone(),
                        id.to_string(),
                        method.to_owned(),
                        cid.to_string(),
                    ));
                    reply(200, json!({}), &[])
                }
                _ => reply(405, json!({ "error": { "message": "method not allowed" } }), &[]),
            }
        }
        // Resource endpoints (providers.md §1.7): any other GET under /c/{cid}/.
        ("GET", ["c", _, .., id]) if parts.len() >= 4 => {
            if *id == "404" {
                return reply(404, json!({ "error": { "message": "Not found" } }), &[]);
            }
            let numeric: Value = id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n));
            reply(
                200,
                json!({ "data": { "id": numeric, "name": format!("Resource {id}"), "path": path } }),
                &[],
            )
        }
        _ => reply(404, json!({ "error": { "message": "not found" } }), &[]),
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// An ES256 token over `claims` with the test key, as FIC signs its tokens.
pub fn sign(claims: Value) -> String {
    encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(KEY.as_bytes()).expect("key"),
    )
    .expect("sign")
}

/// FIC's verification: GET with the challenge and a bearer JWT; on success, a welcome event.
async fn verify(state: Arc<Mutex<State>>, id: String, method: String, cid: String) {
    let sink = state.lock().expect("lock").subs[&id].sink.clone();
    let challenge = format!("{:064x}", now() as u128 * 7919 + id.len() as u128);
    let token = sign(
        json!({ "iss": "https://api-v2.fattureincloud.it", "aud": [sink], "iat": now(), "exp": now() + 3 * 3600 }),
    );
    let client = reqwest::Client::new();
    let mut rb = client
        .get(if method == "query" {
            format!("{sink}?x-fic-verification-challenge={challenge}")
        } else {
            sink.clone()
        })
        .header("user-agent", "FattureInCloud/API-WEBHOOK")
        .header("authorization", format!("Bearer {token}"));
    if method == "header" {
        rb = rb.header("x-fic-verification-challenge", &challenge);
    }
    let (status, ok) = match rb.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, status == 200 && body["verification"] == challenge)
        }
        Err(_) => (0, false),
    };
    {
        let mut st = state.lock().expect("lock");
        st.verifications.push((id.clone(), method, status, ok));
        if let Some(s) = st.subs.get_mut(&id) {
            s.verified = ok;
        }
    }
    if ok {
        let event_id = format!("1:welcome-{id}");
        let subject = format!("company:{cid}");
        let token = sign(
            json!({ "iss": "https://api-v2.fattureincloud.it", "aud": [sink], "iat": now(), "exp": now() + 3 * 3600, "sub": subject, "jti": event_id }),
        );
        let sent = client
            .post(&sink)
            .header("authorization", format!("Bearer {token}"))
            .header("ce-type", "it.fattureincloud.webhooks.subscriptions.welcome")
            .header("ce-specversion", "1.0")
            .header("ce-source", "https://api-v2.fattureincloud.it")
            .header("ce-id", &event_id)
            .header("ce-subject", &subject)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success()) {
            state.lock().expect("lock").welcomes_sent += 1;
        }
    }
}
