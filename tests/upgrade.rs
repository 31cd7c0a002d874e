//! Upgrades keep their data: a spool and a dedup file written by an earlier release (committed
//! under `tests/fixtures/upgrade/`) are opened and drained by this build.
//!
//! The fixture was written by `write_upgrade_fixture` below at commit 42fe6fb (the release before
//! the spool gained its high-water mark), through the library's own `Spool` and `Dedup`, the same
//! code `hookbridge serve` runs. Never regenerate it with a newer build: its point is that it is
//! old. A later change to the spool format adds a fixture beside it, and keeps this test.
//!
//! What it holds (sinks `a` and `b`, every record targets both):
//! - seq 1–3: delivered to both, retained for replay;
//! - seq 4: parked for `a` (reason `rejected`), still pending for `b`;
//! - seq 5: delivered to `a` only; seq 6–9: pending for both;
//! - cursors a = 5, b = 3;
//! - dedup: the keys `(ce, urn:fixture, d-0..d-4)`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hookbridge::deliver::dedup::{Claim, Dedup};
use hookbridge::deliver::spool::{Limits, Parked, Record, Retention, Spool};
use hookbridge::sink::{Event, ExtensionValue};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade")
}

fn limits() -> Limits {
    Limits {
        max_events: 1000,
        max_bytes: 1 << 24,
        max_parked: u64::MAX,
    }
}

fn record(i: u32) -> Record {
    let mut e = Event::new(format!("u-{i}"), "urn:fixture", "t.fixture");
    e.data = Some(bytes::Bytes::from(format!(r#"{{"n":{i}}}"#)));
    e.extensions.insert(
        "hbreceived".into(),
        ExtensionValue::String("2026-11-30T12:00:00Z".into()),
    );
    e.extensions
        .insert("hbsource".into(), ExtensionValue::String("ce".into()));
    Record::new(&e, vec!["a".into(), "b".into()])
}

/// Writes the fixture. Run once, by hand, on the old release (as committed in 0d256bc, where
/// `advance` took the sink list; kept compiling against today's API for reference):
/// `HOOKBRIDGE_WRITE_FIXTURE=1 cargo test --test upgrade write_upgrade_fixture -- --ignored`.
#[tokio::test]
#[ignore = "writes the committed fixture; run only on the release the fixture stands for"]
async fn write_upgrade_fixture() {
    assert!(
        std::env::var_os("HOOKBRIDGE_WRITE_FIXTURE").is_some(),
        "set HOOKBRIDGE_WRITE_FIXTURE=1 to overwrite the committed fixture"
    );
    let dir = fixture_dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let names = vec!["a".to_owned(), "b".to_owned()];
    {
        let spool = Spool::open(&dir.join("spool"), limits()).expect("open");
        spool.set_retention(Retention {
            age: Duration::from_secs(100 * 365 * 24 * 3600),
            max_bytes: 1 << 24,
        });
        spool.set_sinks(names.clone());
        for i in 1..=8 {
            assert_eq!(spool.append(&record(i)).await.expect("append"), u64::from(i));
        }
        spool.advance("a", 3).await.expect("advance");
        spool.advance("b", 3).await.expect("advance");
        let mut parked = record(4);
        parked.targets = vec!["a".into()];
        spool
            .park(
                4,
                "a",
                &Parked {
                    reason: "rejected".into(),
                    attempts: 1,
                    error: "rejected: fixture".into(),
                    record: parked,
                },
            )
            .await
            .expect("park");
        spool.advance("a", 5).await.expect("advance");
        // One more append makes the lazily committed cursors durable.
        assert_eq!(spool.append(&record(9)).await.expect("append"), 9);
    }
    let dedup = Dedup::open(
        Duration::from_secs(100 * 365 * 24 * 3600),
        1000,
        &dir.join("dedup.redb"),
    )
    .expect("dedup");
    for i in 0..5 {
        match dedup
            .claim(("ce".into(), "urn:fixture".into(), format!("d-{i}")))
            .await
        {
            Claim::Owner(g) => g.delivered(),
            Claim::Duplicate => panic!("fresh key"),
        }
    }
    dedup.flush();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read fixture") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

async fn wait_for(sink: &common::MemorySink, want: &[&str]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut got = sink.ids();
        got.sort();
        got.dedup();
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} got {got:?}, wants {want:?}",
            sink.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_spool_and_dedup_file_from_the_previous_release_open_and_drain() {
    let dir = tempfile::tempdir().expect("dir");
    copy_dir(&fixture_dir(), dir.path());
    let cfg = format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
delivery = "spool"
verify = {{ kind = "none" }}
[sinks.a]
type = "blackhole"
[sinks.b]
type = "blackhole"
[[routes]]
sinks = ["a", "b"]
[spool]
dir = "{}"
retain = "876000h"
retry_initial = "20ms"
retry_max = "100ms"
[dedup]
path = "{}"
window = "876000h"
"#,
        dir.path().join("spool").display(),
        dir.path().join("dedup.redb").display()
    );
    let a = common::MemorySink::new("a");
    let b = common::MemorySink::new("b");
    let hb = common::start(
        &cfg,
        vec![
            ("a", a.clone() as hookbridge::sink::SinkHandle),
            ("b", b.clone() as hookbridge::sink::SinkHandle),
        ],
    )
    .await;
    // The backlog drains: a from its cursor 5, b from 3 (4 is parked for a only).
    wait_for(&a, &["u-6", "u-7", "u-8", "u-9"]).await;
    wait_for(&b, &["u-4", "u-5", "u-6", "u-7", "u-8", "u-9"]).await;
    let spool = hb.app.spool.clone().expect("spool");
    let parked = spool.list_parked().await.expect("parked");
    assert_eq!(parked.len(), 1);
    assert_eq!((parked[0].0, parked[0].1.as_str()), (4, "a"));
    assert_eq!(parked[0].2.reason, "rejected");
    // Retained: the three delivered before the upgrade, and those delivered since.
    let listed = spool
        .replay(&hookbridge::deliver::spool::ReplayFilter {
            dry_run: true,
            ..Default::default()
        })
        .await
        .expect("dry run");
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        ["u-1", "u-2", "u-3", "u-4", "u-5", "u-6", "u-7", "u-8", "u-9"]
    );
    // Dedup keys written by the old release are still duplicates.
    let http = reqwest::Client::new();
    let post = |id: &str| {
        http.post(hb.url("/events"))
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-source", "urn:fixture")
            .header("ce-type", "t.fixture")
            .body("{}")
            .send()
    };
    let dup: serde_json::Value = post("d-3").await.expect("post").json().await.expect("json");
    assert_eq!(dup["status"], "duplicate", "{dup}");
    // New events are numbered after everything the old release wrote, and delivered.
    let fresh: serde_json::Value = post("new-1").await.expect("post").json().await.expect("json");
    assert_eq!(fresh["status"], "spooled", "{fresh}");
    let seq = fresh["events"][0]["receipts"][0]["spooled"]
        .as_u64()
        .expect("seq");
    assert!(seq >= 10, "new event numbered {seq}");
    wait_for(&a, &["new-1", "u-6", "u-7", "u-8", "u-9"]).await;
    let (counted, tracked) = spool.audit().expect("audit");
    assert_eq!(counted, tracked);
    hb.stop().await;
}
