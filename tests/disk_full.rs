//! A full disk never earns a 2xx: on a real, small tmpfs, the file sink (sync mode) and the spool
//! (spool mode) answer 503 once the kernel refuses their writes, keep only whole records, and
//! resume when space returns.

mod common;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::start;
use serde_json::Value;
use tmpfs::Tmpfs;

/// The ids of the file's lines; panics on a line that is not a whole JSON event.
fn lines_of(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read(path).expect("read events");
    assert!(
        text.is_empty() || text.ends_with(b"\n"),
        "the file ends with a partial line: {:?}",
        String::from_utf8_lossy(&text[text.len().saturating_sub(80)..])
    );
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("not a whole event line ({e}): {}", String::from_utf8_lossy(l)));
            v["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn file_sink_on_a_full_disk_answers_503_and_keeps_whole_lines() {
    let fs = Tmpfs::mount(64 * 1024);
    let path = fs.path().join("events.jsonl");
    // Room to give back later.
    std::fs::write(fs.path().join("reserve"), vec![0u8; 16 * 1024]).expect("reserve");
    let cfg = format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
verify = {{ kind = "none" }}
[sinks.archive]
type = "file"
path = "{}"
[[routes]]
sinks = ["archive"]
"#,
        path.display()
    );
    let hb = start(&cfg, vec![]).await;
    let url = hb.url("/events");
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let id = format!("d-{i}");
        let (status, body) = tmpfs::post(&url, &id, 700).await;
        match status {
            200 => acked.push(id),
            503 => {
                assert_eq!(body["error"]["code"], "sink_unavailable", "{body}");
                refused += 1;
                if refused >= 5 {
                    break;
                }
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        refused >= 5,
        "the disk never filled ({} events answered 200)",
        acked.len()
    );
    let on_disk = lines_of(&path);
    let on_disk_set: BTreeSet<&String> = on_disk.iter().collect();
    for id in &acked {
        assert!(
            on_disk_set.contains(id),
            "{id} was answered 200 but is not on disk ({} acked, {} lines)",
            acked.len(),
            on_disk.len()
        );
    }
    // Space returns: writing resumes.
    std::fs::remove_file(fs.path().join("reserve")).expect("free");
    let (status, body) = tmpfs::post(&url, "after", 100).await;
    assert_eq!(status, 200, "{body}");
    assert!(lines_of(&path).contains(&"after".to_owned()));
    hb.stop().await;
}

#[tokio::test]
async fn spool_on_a_full_disk_answers_503_says_why_and_resumes() {
    let full = tmpfs::spool_on_a_full_disk("out").await;
    let (hb, out, mut acked) = (full.hb, full.sink, full.acked);
    let url = hb.url("/events");
    assert_eq!(
        full.refused["error"]["code"], "spool_unavailable",
        "{}",
        full.refused
    );
    let ready = reqwest::get(hb.url("/readyz")).await.expect("readyz");
    assert_eq!(
        ready.status().as_u16(),
        503,
        "readyz while the spool cannot be written"
    );
    let ready: Value = ready.json().await.expect("json");
    // The webhook listener's /readyz says the spool cannot be written; the detail (a path, the
    // OS error) is for the private listeners only (#27).
    assert_eq!(ready["spool"]["writable"], false, "readyz says why: {ready}");
    assert!(ready["spool"].get("error").is_none(), "{ready}");
    // Space returns: the spool is reopened and accepts again.
    std::fs::remove_file(&full.reserve).expect("free");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let id = format!("again-{}", acked.len());
        let (status, body) = tmpfs::post(&url, &id, 100).await;
        if status == 202 {
            acked.push(id);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the spool never accepted again: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready: Value = reqwest::get(hb.url("/readyz"))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert!(ready["spool"].get("error").is_none_or(Value::is_null), "{ready}");
    // Every event answered 202 reaches the sink once it opens.
    out.failures.store(0, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got: BTreeSet<String> = out.inner.ids().into_iter().collect();
        let missing: Vec<&String> = acked.iter().filter(|id| !got.contains(*id)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} acknowledged events never arrived, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    hb.stop().await;
}
