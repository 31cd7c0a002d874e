//! Review of the sources-registry refactor (#29): behaviour the refactor changed although it
//! must not (found by the adversarial review, seen failing on 6e325d6).

mod common;
#[path = "common/fic_sim.rs"]
mod fic_sim;

use common::start;
use serde_json::{json, Value};

const PUB_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fic-test-pub.pem");
const PUBLIC_URL: &str = "https://hooks.example.com/webhooks/fic";
const EVENT_ID: &str = "198:f059b211-24f4-44ab-9859-b1613a9a0712";
const TYPE: &str = "it.fattureincloud.webhooks.entities.clients.create";

/// Before the refactor, FIC's `check_event` compared `sub` (as text) with the event's subject
/// as two `Option`s: a token whose `sub` has no text (here `null`: present, so the `required`
/// check passes) and an event without a subject were equal, and the event was delivered.
/// `Verified::bind` refuses a binding whose claim has no text, so the same request is now
/// 401 `subject_mismatch`.
#[tokio::test]
async fn fic_token_with_untexted_sub_and_event_without_subject_is_still_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("events.jsonl");
    let config = format!(
        r#"
[sources.fic]
path = "/webhooks/fic"
kind = "fattureincloud"
public_url = "{PUBLIC_URL}"
[sources.fic.verify]
public_key = {{ file = "{PUB_PATH}" }}
allow_any_company = true

[sinks.file]
type = "file"
path = "{}"

[[routes]]
sinks = ["file"]
"#,
        path.display()
    );
    let hb = start(&config, vec![]).await;
    let t = fic_sim::now();
    let token = fic_sim::sign(json!({
        "iss": "https://api-v2.fattureincloud.it", "aud": [PUBLIC_URL],
        "sub": null, "jti": EVENT_ID, "iat": t, "exp": t + 3600,
    }));
    let resp = reqwest::Client::new()
        .post(hb.url("/webhooks/fic"))
        .header("authorization", format!("Bearer {token}"))
        .header("ce-specversion", "1.0")
        .header("ce-id", EVENT_ID)
        .header("ce-source", "https://api-v2.fattureincloud.it")
        .header("ce-type", TYPE)
        // no ce-subject
        .header("content-type", "application/json")
        .body(r#"{"data":{"ids":[1]}}"#)
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.expect("json");
    hb.stop().await;
    assert_eq!(status, 200, "old code delivered this request: {body}");
}

/// The same, at the function the refactor kept for it ("as the pipeline does"): the old
/// `check_event` returned `Ok` for (sub = None, subject = None).
#[test]
fn fic_check_event_without_sub_and_without_subject_passes_as_before() {
    use hookbridge::sources::fic::verify::{FicClaims, FicVerifier};
    let claims = FicClaims {
        sub: None,
        jti: Some("e1".into()),
    };
    assert_eq!(FicVerifier::check_event(&claims, "e1", None), Ok(()));
}
