//! The file sink under a lock held for good by another writer (from the third review of #25):
//! each publish times out, and no blocking thread is left waiting per publish (they would fill
//! tokio's blocking pool, which the spool needs too). Its own test binary: it counts the
//! process's threads.

use std::time::Duration;

use hookbridge::sink::Event;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The file sink's bounded lock wait (2 s) is longer than a short publish deadline: each
/// timed-out publish leaves its blocking task behind, and the next publish's blocking task
/// queues on the same std Mutex (an unbounded wait). While another process holds the file's
/// lock, blocking threads pile up at one per publish deadline and drain at one per 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_flock_does_not_pin_a_blocking_thread_per_publish() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("out.jsonl");
    let cfg: hookbridge_sink_file::FileConfig =
        serde_json::from_value(serde_json::json!({ "path": path })).expect("config");
    let sink: hookbridge::sink::SinkHandle =
        std::sync::Arc::new(hookbridge_sink_file::FileSink::new("f", cfg));
    // Open the file first (the open also takes the lock).
    let e = Event::new("first", "urn:s", "t");
    hookbridge::deliver::publish_timed(&sink, &e, Duration::from_secs(5))
        .await
        .expect("first");
    // Another process (here: another open file description) holds the lock.
    let holder = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    holder.lock().expect("flock");
    let before = threads();
    let mut peak = before;
    for i in 0..40 {
        let e = Event::new(format!("e{i}"), "urn:s", "t");
        let r = hookbridge::deliver::publish_timed(&sink, &e, Duration::from_millis(100)).await;
        assert!(r.is_err());
        tokio::time::sleep(Duration::from_millis(20)).await;
        peak = peak.max(threads());
    }
    eprintln!("threads before {before}, peak {peak} after 40 timed-out publishes in ~5 s");
    assert!(
        peak <= before + 4,
        "blocking threads pile up: {before} -> {peak} (one per timed-out publish)"
    );
}
