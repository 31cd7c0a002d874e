//! The `file` sink: each event as one line of CloudEvents structured JSON (JSON Lines), appended to
//! a file or written to stdout.
//!
//! JSON `data` is embedded verbatim, except that line breaks in its (insignificant) whitespace
//! become spaces so every event stays on one line.
//!
//! "Delivered" means the line was written and, unless `fsync = false`, `fsync`ed before
//! [`Sink::publish`] returns — so a 2xx answered for it survives a power cut. Writes are serialised
//! through one lock so lines never interleave. A write that fails (a full disk, EIO) is a
//! retryable failure, and the file is cut back to its last whole line; a fragment left by a crash
//! is dropped when the file is next opened. So a reader of the file only ever sees whole events.
//!
//! ```toml
//! [sinks.archive]
//! type = "file"
//! path = "/var/lib/hookbridge/events.jsonl"   # "-" for stdout
//! fsync = true
//! ```

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex, PoisonError};

use async_trait::async_trait;
use hookbridge_sink_core::{Event, Mode, Receipt, Sink, SinkError};
use serde::Deserialize;
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

/// The open file. Behind a std mutex taken inside the blocking
/// write, so a publish whose future is dropped (its deadline passed) still finishes its write,
/// truncation included, before the next one starts: lines never interleave.
struct Open {
    file: std::fs::File,
}

enum Target {
    Stdout(tokio::io::Stdout),
    File(Arc<StdMutex<Open>>),
}

/// The sink. The file is opened on the first publish, so a missing directory shows up as an
/// unavailable sink rather than a failed start.
pub struct FileSink {
    name: String,
    config: FileConfig,
    /// Queues publishes without holding a blocking thread each.
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
        let path = self.config.path.clone();
        let open = tokio::task::spawn_blocking(move || open_whole(&path))
            .await
            .map_err(io::Error::other)??;
        Ok(Target::File(Arc::new(StdMutex::new(open))))
    }

    fn io_error(&self, what: &str, e: io::Error) -> SinkError {
        SinkError::unavailable(format!("{what} {}", self.config.path.display())).with_source(e)
    }
}

/// Opens `path` for appending and drops a partial last line (left by a crash or a failed write
/// whose truncation failed too), so a reader never takes a fragment for an event.
fn open_whole(path: &std::path::Path) -> io::Result<Open> {
    // A missing directory is created (0700, like the spool's): every event answered 503 until an
    // operator makes it helps nobody.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        hookbridge_sink_core::private::create_dir(dir)?;
    }
    let mut file = hookbridge_sink_core::private::options()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    lock_bounded(&file, std::time::Instant::now())?;
    let cut = (|| {
        let len = file.metadata()?.len();
        let whole = whole_lines_end(&mut file, len)?;
        if whole < len {
            file.set_len(whole)?;
            file.sync_data()?;
        }
        Ok(())
    })();
    file.unlock()?;
    cut.map(|()| Open { file })
}

/// Retries `attempt` (`Ok(None)`: busy) with growing pauses until [`LOCK_WAIT`] has passed
/// since `started`; then the write fails (retryable). A blocking task that waits has its time
/// bounded, so a lock held for good (another process's `flock`, a stuck write) cannot pin a
/// blocking thread per publish and fill tokio's blocking pool, which the spool needs too.
fn wait_for<T>(
    started: std::time::Instant,
    what: &str,
    mut attempt: impl FnMut() -> io::Result<Option<T>>,
) -> io::Result<T> {
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        if let Some(done) = attempt()? {
            return Ok(done);
        }
        if started.elapsed() >= LOCK_WAIT {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{what} is busy"),
            ));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

/// Takes the file's lock (`flock`), waiting until [`LOCK_WAIT`] after `started`.
fn lock_bounded(file: &std::fs::File, started: std::time::Instant) -> io::Result<()> {
    wait_for(
        started,
        "the file's lock (another writer holds it)",
        || match file.try_lock() {
            Ok(()) => Ok(Some(())),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        },
    )
}

/// Longest wait for the file's lock.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The length of the file's prefix that ends with a line break (0 if there is none).
fn whole_lines_end(file: &mut std::fs::File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Appends `line` and (with `fsync`) syncs it. On any failure the file is cut back to where the
/// line started, so it holds whole lines only; `Err` carries the write's error.
///
/// The file is locked (`flock`) meanwhile: another writer of the same file — a second sink
/// instance after a reload, another process — never appends between our length and our cut, so
/// the cut never removes its line.
fn append_line(open: &mut Open, line: &[u8], fsync: bool, started: std::time::Instant) -> io::Result<u64> {
    lock_bounded(&open.file, started)?;
    let result = append_locked(open, line, fsync);
    let unlocked = open.file.unlock();
    let start = result?;
    unlocked?;
    Ok(start)
}

fn append_locked(open: &mut Open, line: &[u8], fsync: bool) -> io::Result<u64> {
    // The file's length now, not a remembered offset: with `O_APPEND` that is where the line
    // lands, even if something else truncated or appended to the file meanwhile, and cutting
    // back to it never extends the file.
    let start = open.file.metadata()?.len();
    let written = open
        .file
        .write_all(line)
        .and_then(|()| if fsync { open.file.sync_data() } else { Ok(()) });
    match written {
        Ok(()) => Ok(start),
        Err(e) => {
            // A short write (ENOSPC, EIO) may have left part of the line: cut it off. If even
            // that fails, the next open drops the fragment (see `open_whole`).
            open.file
                .set_len(start)
                .and_then(|()| open.file.sync_data())
                .map_err(|t| {
                    io::Error::new(
                        e.kind(),
                        format!("{e}; truncating the partial line failed too: {t}"),
                    )
                })?;
            Err(e)
        }
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
                r.map(|()| receipt)
            }
            Some(Target::File(open)) => {
                // A blocking write, not tokio's `File`: tokio's `write_all` returns before the
                // write happens and `sync_data` does not report its error, so a full disk was
                // acknowledged.
                let open = open.clone();
                let fsync = self.config.fsync;
                let written = tokio::task::spawn_blocking(move || {
                    // Held only by a write whose publish gave up and that is still waiting (for
                    // the file's lock, at most LOCK_WAIT): fail at once rather than queue a
                    // blocking thread behind it.
                    let mut open = match open.try_lock() {
                        Ok(guard) => guard,
                        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                        Err(std::sync::TryLockError::WouldBlock) => {
                            return Err(io::Error::new(
                                io::ErrorKind::WouldBlock,
                                "an earlier write to the file has not finished",
                            ))
                        }
                    };
                    append_line(&mut open, &line, fsync, std::time::Instant::now())
                })
                .await
                .map_err(io::Error::other)
                .and_then(|r| r);
                // The offset only: the file's path goes back to no webhook sender.
                written.map(|start| receipt.with("offset", start))
            }
            None => return Err(SinkError::unavailable("file not open")),
        };
        result.map_err(|e| {
            // Reopen next time: the offset is re-read from the file, and a fragment the
            // truncation could not remove is dropped. Not when the file was only busy (nothing
            // was written): a reopen would wait for the same lock again, one blocking thread per
            // publish.
            if e.kind() != io::ErrorKind::WouldBlock {
                *guard = None;
            }
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
        if let Some(Target::File(open)) = guard.take() {
            let _ = tokio::task::spawn_blocking(move || {
                open.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .file
                    .sync_all()
            })
            .await;
        }
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
    async fn a_missing_directory_is_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/events.jsonl");
        let sink = FileSink::new("archive", config(path.clone()));
        sink.publish(&Event::new("1", "urn:x", "t.a"))
            .await
            .expect("publish");
        assert_eq!(std::fs::read_to_string(&path).expect("read").lines().count(), 1);
    }

    #[tokio::test]
    async fn a_partial_last_line_is_dropped_when_the_file_is_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        // A crash (or a failed write whose truncation failed too) left half a line behind.
        std::fs::write(&path, "{\"id\":\"whole\"}\n{\"id\":\"cut").expect("write");
        let sink = FileSink::new("archive", config(path.clone()));
        let r = sink
            .publish(&Event::new("next", "urn:x", "t"))
            .await
            .expect("publish");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "{\"id\":\"whole\"}");
        assert!(lines[1].contains("\"id\":\"next\""), "{text}");
        assert_eq!(r.detail["offset"], lines[0].len() as u64 + 1);
        // A file that is one fragment with no line break at all is emptied.
        std::fs::write(&path, "fragment").expect("write");
        let sink = FileSink::new("archive", config(path.clone()));
        sink.publish(&Event::new("n2", "urn:x", "t"))
            .await
            .expect("publish");
        assert!(std::fs::read_to_string(&path).expect("read").starts_with('{'));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_sinks_on_one_file_keep_every_line_whole() {
        // As after a reload: the old and the new sink write the same file for a while.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.jsonl");
        let a = Arc::new(FileSink::new("a", config(path.clone())));
        let b = Arc::new(FileSink::new("b", config(path.clone())));
        let mut tasks = Vec::new();
        for (i, sink) in [a, b].into_iter().enumerate() {
            tasks.push(tokio::spawn(async move {
                for n in 0..100 {
                    let e = Event::new(format!("{i}-{n}"), "urn:x", "t");
                    sink.publish(&e).await.expect("publish");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 200);
        for l in lines {
            serde_json::from_str::<serde_json::Value>(l).expect("a whole event per line");
        }
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_made_is_unavailable_not_a_panic() {
        // Under a regular file: no directory can be made there, not even by root.
        let file = tempfile::NamedTempFile::new().expect("file");
        let sink = FileSink::new("x", config(file.path().join("dir/events.jsonl")));
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
