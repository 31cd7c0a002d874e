//! The `file` sink: each event as one line of CloudEvents structured JSON (JSON Lines), appended to
//! a file or written to stdout.
//!
//! JSON `data` is embedded verbatim, except that line breaks in its (insignificant) whitespace
//! become spaces so every event stays on one line.
//!
//! "Delivered" means the line was written and, unless `fsync = false`, `fsync`ed before
//! [`Sink::publish`] returns — so a 2xx answered for it survives a power cut. Writes are serialised
//! through one lock so lines never interleave.
//!
//! ```toml
//! [sinks.archive]
//! type = "file"
//! path = "/var/lib/hookbridge/events.jsonl"   # "-" for stdout
//! fsync = true
//! ```

use std::io;
use std::path::PathBuf;

use async_trait::async_trait;
use hookbridge_sink_core::{Event, Mode, Receipt, Sink, SinkError};
use serde::Deserialize;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// `[sinks.NAME]` with `type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// File to append to (created if missing); `"-"` writes to stdout. Required.
    pub path: PathBuf,
    /// `fsync` each line before acknowledging. Default `true`; `false` trades durability for speed.
    #[serde(default = "default_fsync")]
    pub fsync: bool,
    /// Only `"structured"` makes sense for a file (JSON Lines of whole envelopes); that is the
    /// default here.
    #[serde(default = "default_mode")]
    pub mode: Mode,
}

fn default_fsync() -> bool {
    true
}

fn default_mode() -> Mode {
    Mode::Structured
}

impl FileConfig {
    /// Pure validation: problems as `(key, message)` pairs.
    pub fn validate(&self) -> Vec<(&'static str, String)> {
        let mut errors = Vec::new();
        if self.mode != Mode::Structured {
            errors.push((
                "mode",
                "the file sink writes whole CloudEvents envelopes; only \"structured\" is supported"
                    .to_owned(),
            ));
        }
        if self.path.as_os_str().is_empty() {
            errors.push(("path", "must not be empty".to_owned()));
        }
        if self.path.is_dir() {
            errors.push(("path", format!("{} is a directory", self.path.display())));
        }
        errors
    }

    fn is_stdout(&self) -> bool {
        self.path.as_os_str() == "-"
    }
}

enum Target {
    Stdout(tokio::io::Stdout),
    File { file: File, offset: u64 },
}

/// The sink. The file is opened on the first publish, so a missing directory shows up as an
/// unavailable sink rather than a failed start.
pub struct FileSink {
    name: String,
    config: FileConfig,
    target: Mutex<Option<Target>>,
}

impl FileSink {
    /// A file sink named `name`.
    pub fn new(name: impl Into<String>, config: FileConfig) -> Self {
        FileSink {
            name: name.into(),
            config,
            target: Mutex::new(None),
        }
    }

    async fn open(&self) -> io::Result<Target> {
        if self.config.is_stdout() {
            return Ok(Target::Stdout(tokio::io::stdout()));
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.config.path)
            .await?;
        let offset = file.metadata().await?.len();
        Ok(Target::File { file, offset })
    }

    fn io_error(&self, what: &str, e: io::Error) -> SinkError {
        SinkError::unavailable(format!("{what} {}", self.config.path.display())).with_source(e)
    }
}

#[async_trait]
impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    async fn publish(&self, event: &Event) -> Result<Receipt, SinkError> {
        let mut line = event.to_structured_json();
        // JSON Lines needs one line per event. The envelope's own JSON has no raw line breaks;
        // embedded JSON data may, but only as insignificant whitespace (JSON strings cannot hold
        // raw control characters), so a space keeps the value and the length unchanged.
        for b in &mut line {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
        line.push(b'\n');
        // One lock for write + fsync: lines never interleave, and the offset in the receipt is
        // exactly where this line starts.
        let mut guard = self.target.lock().await;
        if guard.is_none() {
            *guard = Some(self.open().await.map_err(|e| self.io_error("cannot open", e))?);
        }
        let receipt = Receipt::new(&self.name);
        let result = match guard.as_mut() {
            Some(Target::Stdout(out)) => {
                let r = async {
                    out.write_all(&line).await?;
                    out.flush().await
                }
                .await;
                r.map(|()| receipt.with("path", "-"))
            }
            Some(Target::File { file, offset }) => {
                let start = *offset;
                let r = async {
                    file.write_all(&line).await?;
                    if self.config.fsync {
                        file.sync_data().await?;
                    }
                    Ok::<_, io::Error>(())
                }
                .await;
                r.map(|()| {
                    *offset += line.len() as u64;
                    receipt
                        .with("path", self.config.path.display().to_string())
                        .with("offset", start)
                })
            }
            None => return Err(SinkError::unavailable("file not open")),
        };
        result.map_err(|e| {
            // A failed write may have left a partial line: reopen next time so the offset is
            // re-read from the file instead of trusted.
            *guard = None;
            self.io_error("cannot write", e)
        })
    }

    async fn health(&self) -> Result<(), SinkError> {
        if self.config.is_stdout() {
            return Ok(());
        }
        let mut guard = self.target.lock().await;
        if guard.is_none() {
            *guard = Some(self.open().await.map_err(|e| self.io_error("cannot open", e))?);
        }
        Ok(())
    }

    async fn shutdown(&self) {
        let mut guard = self.target.lock().await;
        if let Some(Target::File { file, .. }) = guard.as_mut() {
            let _ = file.sync_all().await;
        }
        *guard = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(path: PathBuf) -> FileConfig {
        FileConfig {
            path,
            fsync: true,
            mode: Mode::Structured,
        }
    }

    #[tokio::test]
    async fn appends_one_line_per_event_with_offsets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let sink = FileSink::new("archive", config(path.clone()));
        let mut e = Event::new("1", "urn:x", "t.a");
        e.data = Some(bytes::Bytes::from_static(b"{\"k\":1}"));
        let r1 = sink.publish(&e).await.expect("publish 1");
        e.id = "2".into();
        let r2 = sink.publish(&e).await.expect("publish 2");
        assert_eq!(r1.detail["offset"], 0);
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(r2.detail["offset"], lines[0].len() as u64 + 1);
        let v: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
        assert_eq!(v["id"], "2");
        assert_eq!(v["data"], serde_json::json!({"k": 1}));
    }

    #[tokio::test]
    async fn missing_directory_is_unavailable_not_a_panic() {
        let sink = FileSink::new("x", config("/nonexistent/dir/events.jsonl".into()));
        let err = sink
            .publish(&Event::new("1", "urn:x", "t"))
            .await
            .expect_err("must fail");
        assert!(err.is_retryable());
        assert!(sink.health().await.is_err());
    }

    #[test]
    fn binary_mode_is_rejected() {
        let mut c = config("x.jsonl".into());
        c.mode = Mode::Binary;
        assert_eq!(c.validate()[0].0, "mode");
    }
}
