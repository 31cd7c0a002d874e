//! A small client for FIC's subscription endpoints, with FIC's errors explained.

use std::time::Duration;

use serde_json::{json, Value};

/// FIC's API.
pub const DEFAULT_BASE_URL: &str = "https://api-v2.fattureincloud.it";

/// Where and as whom to call the API.
#[derive(Debug, Clone)]
pub struct Api {
    /// Base URL, default `https://api-v2.fattureincloud.it`.
    pub base_url: String,
    /// OAuth access token.
    pub token: String,
    /// Company id.
    pub company: String,
    client: reqwest::Client,
}

/// A failed call, explained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status (0 when the API could not be reached).
    pub status: u16,
    /// What happened and what to do.
    pub message: String,
    /// `Retry-After` seconds, when FIC sent one.
    pub retry_after: Option<u64>,
}

impl Api {
    /// A client.
    pub fn new(base_url: String, token: String, company: String) -> Api {
        Api {
            base_url: base_url.trim_end_matches('/').to_owned(),
            token,
            company,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap_or_default(),
        }
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/c/{}/subscriptions{rest}", self.base_url, self.company)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        url: String,
        body: Option<Value>,
    ) -> Result<Value, ApiError> {
        let mut rb = self.client.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b.to_string());
        }
        let resp = rb.send().await.map_err(|e| ApiError {
            status: 0,
            message: format!("cannot reach the Fatture in Cloud API at {}: {e}", self.base_url),
            retry_after: None,
        })?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let text = resp.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(explain(status, &body, retry_after))
    }

    /// `GET /c/{cid}/subscriptions`.
    pub async fn list(&self) -> Result<Value, ApiError> {
        self.call(reqwest::Method::GET, self.url(""), None).await
    }

    /// `GET /c/{cid}/subscriptions/{id}`.
    pub async fn show(&self, id: &str) -> Result<Value, ApiError> {
        self.call(reqwest::Method::GET, self.url(&format!("/{id}")), None)
            .await
    }

    /// `POST /c/{cid}/subscriptions`.
    pub async fn create(
        &self,
        sink: &str,
        types: &[String],
        method: &str,
        mapping: &str,
    ) -> Result<Value, ApiError> {
        let body = json!({ "data": { "sink": sink, "types": types, "verification_method": method, "config": { "mapping": mapping } } });
        self.call(reqwest::Method::POST, self.url(""), Some(body)).await
    }

    /// `PUT /c/{cid}/subscriptions/{id}`.
    pub async fn update(
        &self,
        id: &str,
        sink: &str,
        types: &[String],
        mapping: &str,
    ) -> Result<Value, ApiError> {
        let body = json!({ "data": { "sink": sink, "types": types, "config": { "mapping": mapping } } });
        self.call(reqwest::Method::PUT, self.url(&format!("/{id}")), Some(body))
            .await
    }

    /// `POST /c/{cid}/subscriptions/{id}/verify` — the method is sent every time: FIC does not
    /// remember it.
    pub async fn verify(&self, id: &str, method: &str) -> Result<Value, ApiError> {
        let body = json!({ "data": { "verification_method": method } });
        self.call(
            reqwest::Method::POST,
            self.url(&format!("/{id}/verify")),
            Some(body),
        )
        .await
    }

    /// `DELETE /c/{cid}/subscriptions/{id}`.
    pub async fn delete(&self, id: &str) -> Result<Value, ApiError> {
        self.call(reqwest::Method::DELETE, self.url(&format!("/{id}")), None)
            .await
    }
}

fn explain(status: u16, body: &Value, retry_after: Option<u64>) -> ApiError {
    let fic = body["error"]["message"]
        .as_str()
        .or_else(|| body["message"].as_str())
        .unwrap_or("")
        .to_owned();
    let code = body["error"]["code"].as_str().unwrap_or("").to_owned();
    let message = match status {
        401 => format!("the access token was refused ({fic}): create a new OAuth token and set FIC_ACCESS_TOKEN"),
        403 if retry_after.is_some() => format!(
            "over Fatture in Cloud's request quota (1,000/hour, 40,000/month per company and app): retry after {} s",
            retry_after.unwrap_or_default()
        ),
        403 if code == "NO_PERMISSION" || fic.to_lowercase().contains("scope") => format!(
            "the token lacks a permission the requested types need ({fic}): grant the app read scope on every type's resource and create a new token"
        ),
        403 => format!("forbidden ({fic}): check the company id and the token's scopes"),
        404 => format!("no such subscription or company ({fic})"),
        422 => format!("Fatture in Cloud refused the request: {fic}"),
        _ => format!("Fatture in Cloud answered {status}: {fic}"),
    };
    ApiError {
        status,
        message,
        retry_after,
    }
}
