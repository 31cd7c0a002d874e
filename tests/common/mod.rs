//! Shared helpers for end-to-end tests: hookbridge in-process on 127.0.0.1:0, test sinks, raw
//! HTTP for the requests reqwest will not send (chunked bodies, slow bodies).
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hookbridge::app::App;
use hookbridge::sink::{Event, Receipt, Sink, SinkError, SinkHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A running in-process hookbridge.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub admin_addr: Option<std::net::SocketAddr>,
    pub probe_addr: Option<std::net::SocketAddr>,
    pub app: Arc<App>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Signals shutdown and waits for the server to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops in time")
            .expect("server task");
    }

    /// Sends the shutdown signal without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    pub async fn join(self) {
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops in time")
            .expect("server task");
    }
}

/// Starts hookbridge with `toml` (listen is forced to 127.0.0.1:0) and sink overrides.
pub async fn start(toml: &str, overrides: Vec<(&str, SinkHandle)>) -> Running {
    start_full(toml, overrides, false).await
}

/// Like [`start`], with an admin listener on 127.0.0.1:0 when `admin` is set (the config must
/// set `server.admin_listen` for the main listener to stop serving health endpoints).
pub async fn start_full(toml: &str, overrides: Vec<(&str, SinkHandle)>, admin: bool) -> Running {
    start_listeners(toml, overrides, admin, false).await
}

async fn bind_if(wanted: bool) -> Option<tokio::net::TcpListener> {
    if wanted {
        Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind"))
    } else {
        None
    }
}

/// Like [`start_full`], with a probe listener on 127.0.0.1:0 too when `probe` is set.
pub async fn start_listeners(
    toml: &str,
    overrides: Vec<(&str, SinkHandle)>,
    admin: bool,
    probe: bool,
) -> Running {
    let config = hookbridge::config::from_toml_str(toml, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let app = App::build_with(
        config,
        overrides.into_iter().map(|(n, s)| (n.to_owned(), s)).collect(),
    )
    .expect("build sinks");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let admin_listener = bind_if(admin).await;
    let probe_listener = bind_if(probe).await;
    let admin_addr = admin_listener
        .as_ref()
        .map(|l| l.local_addr().expect("admin addr"));
    let probe_addr = probe_listener
        .as_ref()
        .map(|l| l.local_addr().expect("probe addr"));
    let (tx, rx) = oneshot::channel::<()>();
    let listeners = hookbridge::ingress::Listeners {
        main: listener,
        admin: admin_listener,
        probe: probe_listener,
    };
    let task = tokio::spawn(hookbridge::ingress::serve_live(
        hookbridge::ingress::Live::new(app.clone()),
        listeners,
        async {
            let _ = rx.await;
        },
    ));
    Running {
        addr,
        admin_addr,
        probe_addr,
        app,
        stop: Some(tx),
        task,
    }
}

/// Records every event it acks.
#[derive(Default)]
pub struct MemorySink {
    pub name: String,
    pub events: Mutex<Vec<Event>>,
}

impl MemorySink {
    pub fn new(name: &str) -> Arc<Self> {
        Arc::new(MemorySink {
            name: name.to_owned(),
            events: Mutex::new(Vec::new()),
        })
    }
    pub fn ids(&self) -> Vec<String> {
        self.events
            .lock()
            .expect("lock")
            .iter()
            .map(|e| e.id.clone())
            .collect()
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "memory"
    }
    async fn publish(&self, event: &Event) -> Result<Receipt, SinkError> {
        let mut events = self.events.lock().expect("lock");
        events.push(event.clone());
        Ok(Receipt::new(&self.name).with("index", events.len() - 1))
    }
    async fn health(&self) -> Result<(), SinkError> {
        Ok(())
    }
    async fn shutdown(&self) {}
}

/// Fails its first `failures` publishes with `make_error`, then delegates to a memory sink.
pub struct FailingSink {
    pub inner: Arc<MemorySink>,
    pub failures: AtomicUsize,
    pub make_error: fn() -> SinkError,
    pub delay: Duration,
}

impl FailingSink {
    pub fn new(name: &str, failures: usize, make_error: fn() -> SinkError) -> Arc<Self> {
        Arc::new(FailingSink {
            inner: MemorySink::new(name),
            failures: AtomicUsize::new(failures),
            make_error,
            delay: Duration::ZERO,
        })
    }
    pub fn slow(name: &str, delay: Duration) -> Arc<Self> {
        Arc::new(FailingSink {
            inner: MemorySink::new(name),
            failures: AtomicUsize::new(0),
            make_error: || SinkError::unavailable("unused"),
            delay,
        })
    }
}

#[async_trait]
impl Sink for FailingSink {
    fn name(&self) -> &str {
        &self.inner.name
    }
    fn kind(&self) -> &'static str {
        "failing"
    }
    async fn publish(&self, event: &Event) -> Result<Receipt, SinkError> {
        tokio::time::sleep(self.delay).await;
        let fail = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err((self.make_error)());
        }
        self.inner.publish(event).await
    }
    async fn health(&self) -> Result<(), SinkError> {
        if self.failures.load(Ordering::SeqCst) > 0 {
            return Err((self.make_error)());
        }
        Ok(())
    }
    async fn shutdown(&self) {}
}

/// Sends raw bytes and reads the whole response (the server closes or answers with a length).
pub async fn raw_request(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    read_response(&mut stream).await
}

/// Reads one HTTP/1.1 response (head + Content-Length body).
pub async fn read_response(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let len = text[..head_end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if buf.len() >= head_end + 4 + len {
                break;
            }
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Status code of a raw response.
pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// JSON body of a raw response.
pub fn body_of(response: &str) -> serde_json::Value {
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response:?}"))
}

/// A name unique to this process and call: `<prefix><pid><sep><nanos><sep><counter>`, so parallel
/// tests never share a topic, queue, subject or stream. `sep` must suit the broker's naming rules.
pub fn unique_with(prefix: &str, sep: char) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}{sep}{}{sep}{nanos}{sep}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Polls `url` until it answers `want` (e.g. `/readyz` turning 503 or 200), at most 30 s.
pub async fn wait_status(url: &str, want: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = reqwest::get(url).await.map(|r| r.status().as_u16()).unwrap_or(0);
        if status == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} never answered {want} (last {status})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resident memory of process `pid` in KiB (VmRSS from /proc).
pub fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// Spawns `hookbridge serve --config <config>` listening on a free port (JSON logs, `envs`
/// added) and returns it with its address once it logged that it listens. Its stderr is drained
/// so it never blocks.
pub fn spawn_serve(
    config: &std::path::Path,
    envs: &[(&str, &str)],
) -> (std::process::Child, std::net::SocketAddr) {
    let (child, listeners) = spawn_serve_listeners(config, envs);
    (child, listeners["hookbridge listening"])
}

/// Like [`spawn_serve`], with every listener's address by its log message
/// (`hookbridge listening`, `probes listening`, `admin API listening`).
pub fn spawn_serve_listeners(
    config: &std::path::Path,
    envs: &[(&str, &str)],
) -> (
    std::process::Child,
    std::collections::HashMap<String, std::net::SocketAddr>,
) {
    use std::io::BufRead;
    let mut listeners = std::collections::HashMap::new();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hookbridge"))
        .args(["serve", "--config"])
        .arg(config)
        .env("HOOKBRIDGE_LOG_FORMAT", "json")
        .env("HOOKBRIDGE_SERVER__LISTEN", "127.0.0.1:0")
        .envs(envs.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    loop {
        let line = lines.next().expect("a log line").expect("read");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if let (Some(message), Some(listen)) =
            (v["fields"]["message"].as_str(), v["fields"]["listen"].as_str())
        {
            listeners.insert(message.to_owned(), listen.parse().expect("addr"));
            if message == "hookbridge listening" {
                break;
            }
        }
    }
    std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
    (child, listeners)
}
