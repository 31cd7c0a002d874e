//! The workers behind each command.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{json, Value};

use crate::drive::{self, Outcome, RunArgs, Worker};

/// A request built ahead of the run.
struct Prepared {
    id: String,
    uri: http::Uri,
    headers: http::HeaderMap,
    body: Bytes,
}

fn prepare(
    config: &std::path::Path,
    source: &str,
    url: Option<String>,
    key: Option<PathBuf>,
    n: usize,
    id_prefix: &str,
    body: Body<'_>,
) -> anyhow::Result<(Vec<Prepared>, hookbridge::config::Config)> {
    let config = hookbridge::config::load(Some(config)).map_err(|e| anyhow::anyhow!("{e}"))?;
    let key_pem = key.map(std::fs::read).transpose()?;
    let mut out = Vec::with_capacity(n);
    let mut opts = hookbridge::cli::send::Options {
        url,
        key_pem,
        ..Default::default()
    };
    for i in 0..n {
        let id = format!("{id_prefix}-{i}");
        // `--body-id`: the id also in the body, for a server that may not carry the request's
        // headers to the broker (the peers, scripts/bench_peers.py).
        opts.data = match body {
            Body::WithId => Some(format!(r#"{{"id":"{id}","data":{{}}}}"#).into_bytes()),
            Body::Shared(d) => Some(d.to_vec()),
            Body::Example => None,
        };
        opts.id = Some(id);
        let r = hookbridge::cli::send::build(&config, source, &opts).map_err(|e| anyhow::anyhow!(e))?;
        let mut headers = http::HeaderMap::new();
        for (k, v) in &r.headers {
            headers.append(
                http::HeaderName::from_bytes(k.as_bytes())?,
                http::HeaderValue::from_str(v)?,
            );
        }
        out.push(Prepared {
            id: format!("{id_prefix}-{i}"),
            uri: r.url.parse()?,
            headers,
            // A given body is kept once, shared by every request (a pool of 1 MiB bodies would not fit).
            body: match body {
                Body::Shared(d) if *d == r.body => d.clone(),
                _ => Bytes::from(r.body),
            },
        });
    }
    Ok((out, config))
}

/// One keep-alive HTTP/1.1 connection speaking raw bytes: each request is serialized before
/// the run, and the answer is read with a minimal parser (status line, `content-length`). A
/// full HTTP client (hyper's) cost the generator as much CPU per request as the bare-warp
/// baseline spends answering it, so the baseline measured the generator.
struct HttpWorker {
    addr: String,
    wire: Arc<Vec<Bytes>>,
    /// Sent after each of `wire` (the shared `--body-size` body, which `wire` then lacks).
    tail: Bytes,
    conn: Option<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

/// Serializes `p` as an HTTP/1.1 request for `authority` (without the body if not `with_body`).
fn serialize(p: &Prepared, authority: &str, with_body: bool) -> Bytes {
    let path = p.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut out = Vec::with_capacity(256 + p.body.len());
    out.extend_from_slice(format!("POST {path} HTTP/1.1\r\nhost: {authority}\r\n").as_bytes());
    for (k, v) in &p.headers {
        if k == http::header::CONTENT_LENGTH || k == http::header::HOST {
            continue;
        }
        out.extend_from_slice(k.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", p.body.len()).as_bytes());
    if with_body {
        out.extend_from_slice(&p.body);
    }
    Bytes::from(out)
}

/// The status and the length of a complete response head in `buf`, with its `content-length`
/// (`None` while the head is incomplete; `Err` for anything this parser does not speak).
fn parse_head(buf: &[u8]) -> Result<Option<(u16, usize, usize, bool)>, ()> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ())?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(())?;
    let (mut length, mut close) = (0usize, false);
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            return Err(());
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-length") {
            length = v.parse().map_err(|_| ())?;
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            return Err(());
        } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok(Some((status, end + 4, length, close)))
}

impl HttpWorker {
    async fn exchange(&mut self, request: &[u8], tail: &[u8]) -> std::io::Result<(u16, bool)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        if self.conn.is_none() {
            let stream = tokio::net::TcpStream::connect(&self.addr).await?;
            stream.set_nodelay(true)?;
            self.conn = Some(stream);
            self.buf.clear();
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        conn.write_all(request).await?;
        if !tail.is_empty() {
            conn.write_all(tail).await?;
        }
        loop {
            match parse_head(&self.buf) {
                Err(()) => return Err(std::io::ErrorKind::InvalidData.into()),
                Ok(Some((status, head, length, close))) if self.buf.len() >= head + length => {
                    self.buf.drain(..head + length);
                    return Ok((status, close));
                }
                Ok(_) => {}
            }
            let mut chunk = [0u8; 4096];
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[async_trait]
impl Worker for HttpWorker {
    async fn call(&mut self, i: usize) -> Outcome {
        let (wire, tail) = (self.wire.clone(), self.tail.clone());
        let Some(request) = wire.get(i) else {
            return Outcome::Error;
        };
        match self.exchange(request, &tail).await {
            Ok((status, close)) => {
                if close {
                    self.conn = None;
                }
                if (200..300).contains(&status) {
                    Outcome::Ok
                } else {
                    Outcome::Status(status)
                }
            }
            Err(_) => {
                self.conn = None;
                Outcome::Error
            }
        }
    }
}

/// How `load` makes its event ids and bodies.
#[derive(clap::Args, Debug, Clone)]
pub struct BodyArgs {
    /// Prefix of the generated event ids (unique per run).
    #[arg(long, default_value = "bench")]
    pub id_prefix: String,
    /// Also put the id in the body, `{"id":"<id>","data":{}}`, for a server that may not carry
    /// the request's headers to the broker (the peers); `readback --body-id` reads it there.
    #[arg(long, conflicts_with = "body_size")]
    pub body_id: bool,
    /// Pad the JSON body to this many bytes (`{"pad":"xxxx…"}`); one body shared by every
    /// pre-built request. Default: the source kind's example body.
    #[arg(long)]
    pub body_size: Option<usize>,
}

/// The body of the pre-built requests.
#[derive(Clone, Copy)]
enum Body<'a> {
    /// The source kind's example body (`hookbridge send`'s).
    Example,
    /// `{"id":"<id>","data":{}}` (`--body-id`).
    WithId,
    /// One padded body shared by every request (`--body-size`).
    Shared(&'a Bytes),
}

/// `load`.
pub async fn load(
    config: &std::path::Path,
    source: &str,
    url: Option<String>,
    key: Option<PathBuf>,
    run: &RunArgs,
    ids_out: Option<PathBuf>,
    args: &BodyArgs,
) -> anyhow::Result<Value> {
    let prepared_at = Instant::now();
    let data = args.body_size.map(padded).transpose()?;
    let body = match (&data, args.body_id) {
        (Some(d), _) => Body::Shared(d),
        (None, true) => Body::WithId,
        (None, false) => Body::Example,
    };
    let (requests, _) = prepare(config, source, url, key, run.pool, &args.id_prefix, body)?;
    let prepare_seconds = prepared_at.elapsed().as_secs_f64();
    let first = requests.first().ok_or_else(|| anyhow::anyhow!("empty pool"))?;
    let authority = first
        .uri
        .authority()
        .ok_or_else(|| anyhow::anyhow!("the URL has no host"))?
        .to_string();
    // With a shared body, each pre-built request is its head only and the body follows it.
    let shared = data.filter(|d| requests.iter().all(|p| p.body.as_ptr() == d.as_ptr()));
    let wire: Arc<Vec<Bytes>> = Arc::new(
        requests
            .iter()
            .map(|p| serialize(p, &authority, shared.is_none()))
            .collect(),
    );
    let tail = shared.unwrap_or_default();
    let ids: Vec<String> = requests.into_iter().map(|p| p.id).collect();
    let workers: Vec<Box<dyn Worker>> = (0..run.connections.max(1))
        .map(|_| {
            Box::new(HttpWorker {
                addr: authority.clone(),
                wire: wire.clone(),
                tail: tail.clone(),
                conn: None,
                buf: Vec::with_capacity(8192),
            }) as Box<dyn Worker>
        })
        .collect();
    let (mut summary, ok) = drive::run(workers, run).await;
    summary["prepare_seconds"] = json!(prepare_seconds);
    if let Some(path) = ids_out {
        let mut text = String::with_capacity(ok.len() * 16);
        for i in ok {
            if let Some(id) = ids.get(i as usize) {
                text.push_str(id);
                text.push('\n');
            }
        }
        std::fs::write(path, text)?;
    }
    Ok(summary)
}

/// A JSON body of exactly `n` bytes: `{"pad":"xxxx…"}`.
fn padded(n: usize) -> anyhow::Result<Bytes> {
    const EMPTY: usize = r#"{"pad":""}"#.len();
    anyhow::ensure!(n >= EMPTY, "--body-size must be at least {EMPTY}");
    Ok(Bytes::from(format!(r#"{{"pad":"{}"}}"#, "x".repeat(n - EMPTY))))
}

/// `verify`: the source's verifier alone, on this thread.
pub fn verify(
    config: &std::path::Path,
    source: &str,
    key: Option<PathBuf>,
    duration: Duration,
    pool: usize,
) -> anyhow::Result<Value> {
    let (requests, config) = prepare(config, source, None, key, pool, "verify", Body::Example)?;
    let src = config
        .sources
        .iter()
        .find(|s| s.name == source)
        .ok_or_else(|| anyhow::anyhow!("no source {source}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let cpu_before = drive::cpu_seconds();
    let started = Instant::now();
    let (mut n, mut failed) = (0u64, 0u64);
    'outer: loop {
        for p in requests.iter() {
            if src.verifier.verify_now(&p.headers, &p.body, now).is_err() {
                failed += 1;
            }
            n += 1;
            if n % 256 == 0 && started.elapsed() >= duration {
                break 'outer;
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    if failed > 0 {
        anyhow::bail!("{failed} of {n} pre-built requests did not verify");
    }
    Ok(json!({
        "verified": n,
        "seconds": wall,
        "rate": n as f64 / wall,
        "generator_cpu_seconds": drive::cpu_seconds() - cpu_before,
    }))
}

/// The CloudEvents attributes hookbridge's sinks write (binary mode) for the load's events,
/// except the id: the direct clients publish the same messages as hookbridge (#14), the
/// attributes hookbridge adds (`hbsource`, `hbreceived`, `hbverifier`, `traceparent`) included.
/// Names (with the binding's `prefix`) and values are made once per run: computing them is
/// hookbridge's work, not a client's, and the direct client runs on the server core.
fn same_attributes(prefix: &str) -> Arc<Vec<(String, String)>> {
    let received = hookbridge::normalize::now_rfc3339();
    let attrs = [
        ("specversion", "1.0"),
        ("source", "hookbridge://send"),
        ("type", "com.example.hookbridge.test"),
        ("hbsource", "events"),
        ("hbreceived", received.as_str()),
        ("hbverifier", "none"),
        ("traceparent", TRACEPARENT),
    ];
    Arc::new(
        attrs
            .iter()
            .map(|(n, v)| (format!("{prefix}{n}"), (*v).to_owned()))
            .collect(),
    )
}

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// The body `hookbridge-load` sends through hookbridge (`hookbridge send`'s default).
const BODY: &[u8] = b"{}";

struct NatsWorker {
    js: async_nats::jetstream::Context,
    subject: String,
    attrs: Arc<Vec<(String, String)>>,
    prefix: String,
}

#[async_trait]
impl Worker for NatsWorker {
    async fn call(&mut self, i: usize) -> Outcome {
        let mut headers = async_nats::HeaderMap::new();
        let id = format!("{}-{i}", self.prefix);
        headers.insert("ce-id", id.as_str());
        for (name, value) in self.attrs.iter() {
            headers.insert(name.as_str(), value.as_str());
        }
        headers.insert("content-type", "application/json");
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert("traceparent", TRACEPARENT);
        match self
            .js
            .publish_with_headers(self.subject.clone(), headers, Bytes::from_static(BODY))
            .await
        {
            Ok(ack) => match ack.await {
                Ok(_) => Outcome::Ok,
                Err(_) => Outcome::Error,
            },
            Err(_) => Outcome::Error,
        }
    }
}

struct RabbitWorker {
    channel: lapin::Channel,
    queue: String,
    attrs: Arc<Vec<(String, String)>>,
    prefix: String,
}

#[async_trait]
impl Worker for RabbitWorker {
    async fn call(&mut self, i: usize) -> Outcome {
        use lapin::types::{AMQPValue, FieldTable, ShortString};
        let id = format!("{}-{i}", self.prefix);
        let mut headers = FieldTable::default();
        // The CloudEvents AMQP binding's names, as the sink writes them.
        headers.insert(
            ShortString::from("cloudEvents_id"),
            AMQPValue::LongString(id.clone().into()),
        );
        for (name, value) in self.attrs.iter() {
            headers.insert(
                ShortString::from(name.as_str()),
                AMQPValue::LongString(value.clone().into()),
            );
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let props = lapin::BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(ShortString::from(id))
            .with_timestamp(now)
            .with_content_type(ShortString::from("application/json"))
            .with_headers(headers);
        let published = self
            .channel
            .basic_publish(
                ShortString::from(""),
                ShortString::from(self.queue.clone()),
                lapin::options::BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                BODY,
                props,
            )
            .await;
        match published {
            Ok(confirm) => match confirm.await {
                // Acked and not returned (mandatory): routed to the queue.
                Ok(lapin::Confirmation::Ack(None)) => Outcome::Ok,
                _ => Outcome::Error,
            },
            Err(_) => Outcome::Error,
        }
    }
}

struct KafkaWorker {
    producer: Arc<rdkafka::producer::FutureProducer>,
    topic: String,
    attrs: Arc<Vec<(String, String)>>,
    prefix: String,
}

#[async_trait]
impl Worker for KafkaWorker {
    async fn call(&mut self, i: usize) -> Outcome {
        use rdkafka::message::{Header, OwnedHeaders};
        let id = format!("{}-{i}", self.prefix);
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "ce_id",
            value: Some(id.as_str()),
        });
        for (name, value) in self.attrs.iter() {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_str()),
            });
        }
        let headers = headers
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            })
            .insert(Header {
                key: "traceparent",
                value: Some(TRACEPARENT),
            });
        // No key: the sink keys by `partitionkey` or the subject, and the load's events have neither.
        let record = rdkafka::producer::FutureRecord::<(), [u8]>::to(&self.topic)
            .payload(BODY)
            .headers(headers);
        match self.producer.send(record, Duration::from_secs(4)).await {
            Ok(_) => Outcome::Ok,
            Err(_) => Outcome::Error,
        }
    }
}

/// `publish`: the broker's client, directly.
pub async fn publish(
    broker: &str,
    url: &str,
    target: &str,
    run: &RunArgs,
    prefix: &str,
    ids_out: Option<PathBuf>,
) -> anyhow::Result<Value> {
    let n = run.connections.max(1);
    let workers: Vec<Box<dyn Worker>> = match broker {
        "nats" => {
            let attrs = same_attributes("ce-");
            let client = async_nats::connect(url).await?;
            let js = async_nats::jetstream::new(client);
            (0..n)
                .map(|_| {
                    Box::new(NatsWorker {
                        js: js.clone(),
                        subject: target.to_owned(),
                        attrs: attrs.clone(),
                        prefix: prefix.to_owned(),
                    }) as Box<dyn Worker>
                })
                .collect()
        }
        "rabbitmq" => {
            let attrs = same_attributes("cloudEvents_");
            let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
            // One confirm-mode channel per 8 publishers, as the sink's channel pool does.
            let mut channels = Vec::new();
            for _ in 0..n.div_ceil(8) {
                let ch = conn.create_channel().await?;
                ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
                    .await?;
                channels.push(ch);
            }
            (0..n)
                .map(|i| {
                    Box::new(RabbitWorker {
                        channel: channels[i % channels.len()].clone(),
                        queue: target.to_owned(),
                        attrs: attrs.clone(),
                        prefix: prefix.to_owned(),
                    }) as Box<dyn Worker>
                })
                .collect()
        }
        "kafka" => {
            let attrs = same_attributes("ce_");
            let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", url)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .set("message.timeout.ms", "4000")
                .set("queue.buffering.max.kbytes", "16384")
                .create()?;
            let producer = Arc::new(producer);
            (0..n)
                .map(|_| {
                    Box::new(KafkaWorker {
                        producer: producer.clone(),
                        topic: target.to_owned(),
                        attrs: attrs.clone(),
                        prefix: prefix.to_owned(),
                    }) as Box<dyn Worker>
                })
                .collect()
        }
        other => anyhow::bail!("unknown broker {other:?} (nats, rabbitmq, kafka)"),
    };
    // Warm up outside the clock (connection, Kafka's producer id, JetStream's stream lookup), as
    // hookbridge's sinks are warm when they are measured.
    let mut workers = workers;
    if let Some(w) = workers.first_mut() {
        let _ = w.call(run.pool + 1).await;
    }
    let (summary, ok) = drive::run(workers, run).await;
    if let Some(path) = ids_out {
        let text: String = ok.iter().map(|i| format!("{prefix}-{i}\n")).collect();
        std::fs::write(path, text)?;
    }
    Ok(summary)
}

/// The `"id"` of a JSON object body (`load --body-id`).
fn id_in_body(payload: &[u8]) -> Option<String> {
    if payload.first() != Some(&b'{') {
        return None;
    }
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get("id")?.as_str().map(str::to_owned)
}

/// The message's id: its id header, else the body's `"id"`; with `prefer_body`, the body's
/// first (so the check does not depend on how a peer maps HTTP headers to broker headers).
fn message_id(header: Option<String>, payload: &[u8], prefer_body: bool) -> Option<String> {
    if prefer_body {
        id_in_body(payload).or(header)
    } else {
        header.or_else(|| id_in_body(payload))
    }
}

/// `readback`: reads every message of the run back with the broker's client and checks that
/// each id in `ids` (answered 2xx) is there.
pub async fn readback(
    broker: &str,
    url: &str,
    target: &str,
    ids: &std::path::Path,
    idle: Duration,
    prefer_body: bool,
) -> anyhow::Result<Value> {
    let expected: std::collections::HashSet<String> =
        std::fs::read_to_string(ids)?.lines().map(str::to_owned).collect();
    let mut seen: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut total = 0u64;
    match broker {
        "nats" => {
            use futures_util::StreamExt;
            let js = async_nats::jetstream::new(async_nats::connect(url).await?);
            let stream = js.get_stream(target).await?;
            let consumer = stream
                .create_consumer(async_nats::jetstream::consumer::pull::Config {
                    ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
                    ..Default::default()
                })
                .await?;
            let mut messages = consumer.messages().await?;
            while let Ok(Some(Ok(m))) = tokio::time::timeout(idle, messages.next()).await {
                total += 1;
                let header = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("ce-id"))
                    .map(|v| v.as_str().to_owned());
                if let Some(id) = message_id(header, &m.payload, prefer_body) {
                    *seen.entry(id).or_default() += 1;
                }
            }
        }
        "rabbitmq" => {
            use futures_util::StreamExt;
            let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
            let ch = conn.create_channel().await?;
            let mut consumer = ch
                .basic_consume(
                    lapin::types::ShortString::from(target),
                    lapin::types::ShortString::from("readback"),
                    lapin::options::BasicConsumeOptions {
                        no_ack: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await?;
            while let Ok(Some(Ok(d))) = tokio::time::timeout(idle, consumer.next()).await {
                total += 1;
                let id = d
                    .properties
                    .headers()
                    .as_ref()
                    .and_then(|h| h.inner().get("cloudEvents_id").cloned())
                    .and_then(|v| match v {
                        lapin::types::AMQPValue::LongString(s) => Some(s.to_string()),
                        _ => None,
                    });
                if let Some(id) = message_id(id, &d.data, prefer_body) {
                    *seen.entry(id).or_default() += 1;
                }
            }
        }
        "kafka" => {
            use rdkafka::consumer::{Consumer, StreamConsumer};
            use rdkafka::message::{Headers, Message};
            let consumer: StreamConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", url)
                .set("group.id", format!("hbbench-readback-{}", std::process::id()))
                .set("auto.offset.reset", "earliest")
                .set("enable.auto.commit", "false")
                .create()?;
            consumer.subscribe(&[target])?;
            while let Ok(Ok(m)) = tokio::time::timeout(idle, consumer.recv()).await {
                total += 1;
                let header = m.headers().and_then(|h| {
                    h.iter()
                        .find(|hd| hd.key == "ce_id")
                        .and_then(|hd| hd.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                });
                if let Some(id) = message_id(header, m.payload().unwrap_or_default(), prefer_body) {
                    *seen.entry(id).or_default() += 1;
                }
            }
        }
        other => anyhow::bail!("unknown broker {other:?}"),
    }
    let missing: Vec<&String> = expected.iter().filter(|id| !seen.contains_key(*id)).collect();
    let duplicates: u64 = seen.values().map(|n| u64::from(n.saturating_sub(1))).sum();
    Ok(json!({
        "expected": expected.len(),
        "read": total,
        "missing": missing.len(),
        "missing_sample": missing.iter().take(5).collect::<Vec<_>>(),
        "duplicates": duplicates,
        "no_loss": missing.is_empty(),
    }))
}

/// `setup` / `teardown`: a JetStream stream (subjects `<subject>.>`), a durable RabbitMQ queue or
/// a Kafka topic for one scenario.
pub async fn setup(
    broker: &str,
    url: &str,
    target: &str,
    subject: &str,
    remove: bool,
) -> anyhow::Result<Value> {
    match broker {
        "nats" => {
            let js = async_nats::jetstream::new(async_nats::connect(url).await?);
            if remove {
                let _ = js.delete_stream(target).await;
            } else {
                js.create_stream(async_nats::jetstream::stream::Config {
                    name: target.to_owned(),
                    subjects: vec![format!("{subject}.>")],
                    ..Default::default()
                })
                .await?;
            }
        }
        "rabbitmq" => {
            let conn = lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
            let ch = conn.create_channel().await?;
            if remove {
                let _ = ch
                    .queue_delete(lapin::types::ShortString::from(target), Default::default())
                    .await;
            } else {
                ch.queue_declare(
                    lapin::types::ShortString::from(target),
                    lapin::options::QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await?;
            }
        }
        "kafka" => {
            use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
            let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", url)
                .create()?;
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            if remove {
                let _ = admin.delete_topics(&[target], &opts).await;
            } else {
                admin
                    .create_topics(&[NewTopic::new(target, 1, TopicReplication::Fixed(1))], &opts)
                    .await?;
            }
        }
        other => anyhow::bail!("unknown broker {other:?}"),
    }
    Ok(json!({ "broker": broker, "target": target, "removed": remove }))
}

#[cfg(test)]
mod tests {
    use super::{id_in_body, message_id};

    #[test]
    fn the_id_comes_from_the_body_or_the_header_as_asked() {
        let body = br#"{"id":"run-7","data":{}}"#;
        assert_eq!(id_in_body(body).as_deref(), Some("run-7"));
        assert_eq!(id_in_body(b"{}"), None);
        assert_eq!(id_in_body(b"not json"), None);
        let header = || Some("header-7".to_owned());
        assert_eq!(message_id(header(), body, true).as_deref(), Some("run-7"));
        assert_eq!(message_id(header(), body, false).as_deref(), Some("header-7"));
        assert_eq!(message_id(None, body, false).as_deref(), Some("run-7"));
        assert_eq!(message_id(header(), b"{}", true).as_deref(), Some("header-7"));
    }
}
