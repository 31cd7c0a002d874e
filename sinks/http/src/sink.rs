//! The pooled client and the [`Sink`] implementation.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use hookbridge_sink_core::binding::{compile, compile_headers};
use hookbridge_sink_core::settings::SecretRef;
use hookbridge_sink_core::{standard_webhooks, Event, Receipt, Sink, SinkError};
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::Method;

use crate::config::{Auth, HttpConfig};
use crate::request::{classify_status, Layout};

/// Forwards events over HTTP.
pub struct HttpSink {
    name: String,
    client: reqwest::Client,
    method: Method,
    layout: Layout,
    authorization: Option<HeaderValue>,
    /// The endpoint's host and port (the URL template's authority holds no field).
    endpoint: Option<(String, u16)>,
    /// The last retryable publish failure since the last success: when, and what.
    last_failure: std::sync::Mutex<Option<(Instant, String)>>,
}

/// A URL for logs and `/readyz`: no user, password or query (a query often holds an API key).
fn redacted(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let query = shown.query().is_some();
    shown.set_query(None);
    let mut text = shown.to_string();
    if query {
        text.push_str("?…");
    }
    text
}

/// Host and port of a URL template (fields replaced by a placeholder to parse it).
fn endpoint(template: &str) -> Option<(String, u16)> {
    let url = reqwest::Url::parse(&template.replace(['{', '}'], "_")).ok()?;
    Some((
        url.host_str()?.trim_matches(['[', ']']).to_owned(),
        url.port_or_known_default()?,
    ))
}

fn secret_text(r: &SecretRef) -> Result<String, SinkError> {
    r.resolve_text().map_err(SinkError::misconfigured)
}

impl HttpSink {
    /// Builds the sink and its keep-alive connection pool. No IO.
    pub fn new(name: impl Into<String>, config: HttpConfig) -> Result<Self, SinkError> {
        let redirect = if config.max_redirects == 0 {
            reqwest::redirect::Policy::none()
        } else {
            reqwest::redirect::Policy::limited(config.max_redirects)
        };
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(redirect)
            .timeout(config.timeout.map_or(crate::config::DEFAULT_TIMEOUT, |d| d.0))
            .connect_timeout(
                config
                    .connect_timeout
                    .map_or(crate::config::DEFAULT_CONNECT_TIMEOUT, |d| d.0),
            )
            .pool_max_idle_per_host(config.pool_max_idle_per_host.unwrap_or(16))
            .user_agent(concat!("hookbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| SinkError::misconfigured("cannot build the HTTP client").with_source(e))?;
        let authorization = match &config.auth {
            None => None,
            Some(Auth::Bearer(token)) => Some(format!("Bearer {}", secret_text(token)?)),
            Some(Auth::Basic { username, password }) => {
                let pair = format!("{username}:{}", secret_text(password)?);
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                ))
            }
        }
        .map(|v| {
            let mut v = HeaderValue::from_str(&v)
                .map_err(|_| SinkError::misconfigured("invalid characters in the auth secret"))?;
            v.set_sensitive(true);
            Ok::<_, SinkError>(v)
        })
        .transpose()?;
        let signing_key = match &config.sign {
            Some(s) => Some(
                standard_webhooks::parse_secret(&secret_text(&s.secret)?)
                    .map_err(SinkError::misconfigured)?,
            ),
            None => None,
        };
        let layout = Layout {
            url: compile(&config.url)?,
            headers: compile_headers(&config.headers)?,
            mode: config.mode,
            signing_key,
        };
        let method = if config.method.eq_ignore_ascii_case("PUT") {
            Method::PUT
        } else {
            Method::POST
        };
        Ok(HttpSink {
            name: name.into(),
            client,
            method,
            layout,
            authorization,
            endpoint: endpoint(&config.url),
            last_failure: std::sync::Mutex::new(None),
        })
    }
}

#[async_trait]
impl Sink for HttpSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    async fn publish(&self, event: &Event) -> Result<Receipt, SinkError> {
        let result = self.send(event).await;
        let mut last = self
            .last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &result {
            Ok(_) => *last = None,
            Err(e) if e.is_retryable() => *last = Some((Instant::now(), e.to_string())),
            Err(_) => {}
        }
        result
    }

    /// Down while the endpoint refuses connections (a probe that sends no event, so it has no
    /// side effect); the last failed publish is in the detail. A 5xx answer does not make the
    /// sink down: one event the receiver chokes on would take the instance out of service (the
    /// adversarial review sent one per 10 s and kept `/readyz` at 503).
    async fn health(&self) -> Result<(), SinkError> {
        let last = self
            .last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let last_text = |(_, m): &(Instant, String)| format!("; the last publish failed: {m}");
        if let Some((host, port)) = &self.endpoint {
            let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
            let error = match tokio::time::timeout(Duration::from_secs(2), connect).await {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("no answer within 2s".to_owned()),
            };
            if let Some(e) = error {
                let detail = last.as_ref().map(last_text).unwrap_or_default();
                return Err(SinkError::unavailable(format!(
                    "cannot connect to {host}:{port}: {e}{detail}"
                )));
            }
        }
        Ok(())
    }

    async fn shutdown(&self) {}
}

impl HttpSink {
    async fn send(&self, event: &Event) -> Result<Receipt, SinkError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let out = self.layout.build(event, now)?;
        // A rendered URL that does not parse never will for this event: permanent, so one such
        // event cannot hold up a spool queue.
        let url = reqwest::Url::parse(&out.url)
            .map_err(|e| SinkError::rejected(format!("the rendered URL is not a valid URL: {e}")))?;
        let shown = redacted(&url);
        let mut request = self.client.request(self.method.clone(), url);
        for (name, value) in &out.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| SinkError::misconfigured(format!("invalid header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| SinkError::rejected(format!("invalid value for header {name}")))?;
            request = request.header(name, value);
        }
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let response = request.body(out.body).send().await.map_err(|e| {
            // reqwest's error names the whole URL; the sink's own text names a redacted one.
            let e = e.without_url();
            if e.is_timeout() {
                SinkError::timeout(format!("{} {shown} timed out", self.method)).with_source(e)
            } else {
                SinkError::unavailable(format!("{} {shown} failed", self.method)).with_source(e)
            }
        })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        classify_status(status, retry_after.as_deref())?;
        // The receiver's status only: the URL (its path, a query key) goes back to no webhook
        // sender.
        Ok(Receipt::new(&self.name).with("status", status))
    }
}
