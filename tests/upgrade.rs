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

/// Writes the fixture. Run once, by hand, on the old release:
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
        for i in 1..=8 {
            assert_eq!(spool.append(&record(i)).await.expect("append"), u64::from(i));
        }
        spool.advance("a", 3, &names).await.expect("advance");
        spool.advance("b", 3, &names).await.expect("advance");
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
        spool.advance("a", 5, &names).await.expect("advance");
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
