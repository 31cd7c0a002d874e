//! Unit tests of the spool.

use super::*;
use bytes::Bytes;
use hookbridge_sink_core::{Event, ExtensionValue};

fn limits() -> Limits {
    Limits {
        max_events: 100,
        max_bytes: 1 << 20,
        max_parked: u64::MAX,
    }
}

fn record(id: &str, targets: &[&str]) -> Record {
    let mut e = Event::new(id, "urn:s", "t");
    e.data = Some(Bytes::from_static(br#"{"a":1}"#));
    e.extensions.insert("n".into(), ExtensionValue::Integer(3));
    e.headers.push(("x-a".into(), "b".into()));
    Record::new(&e, targets.iter().map(|s| s.to_string()).collect())
}

#[tokio::test]
async fn append_read_advance_and_reopen() {
    let dir = tempfile::tempdir().expect("dir");
    let names = vec!["a".to_owned(), "b".to_owned()];
    {
        let spool = Spool::open(dir.path(), limits()).expect("open");
        spool.set_sinks(names.clone());
        let s1 = spool.append(&record("1", &["a", "b"])).await.expect("append");
        let s2 = spool.append(&record("2", &["b"])).await.expect("append");
        assert_eq!((s1, s2), (1, 2));
        let (mut found, _) = spool.next_batch_for("a", 0, 1).await.expect("next");
        let (seq, rec) = found.pop().expect("record for a");
        assert_eq!(seq, 1);
        assert_eq!(rec.event(), record("1", &["a", "b"]).event());
        spool.advance("a", 1).await.expect("advance");
        let (found, scanned) = spool.next_batch_for("a", 1, 1).await.expect("next");
        assert!(found.is_empty());
        assert_eq!(scanned, 2);
        assert_eq!(spool.depth().0, 2, "b has not passed anything yet");
        spool.advance("b", 1).await.expect("advance");
        assert_eq!(spool.depth().0, 1, "record 1 passed by both");
        // One more append forces the lazily committed cursors to disk.
        spool.append(&record("3", &["a"])).await.expect("append");
    }
    // Reopen: cursors and remaining records survive; sequence numbers continue.
    let spool = Spool::open(dir.path(), limits()).expect("reopen");
    assert_eq!(spool.cursor("a").await.expect("cursor"), 1);
    assert_eq!(spool.cursor("b").await.expect("cursor"), 1);
    assert_eq!(spool.depth().0, 2);
    let (found, _) = spool.next_batch_for("b", 1, 1).await.expect("next");
    assert_eq!(found.first().expect("b's record").0, 2);
    assert_eq!(spool.append(&record("4", &["a"])).await.expect("append"), 4);
}

#[tokio::test]
async fn delivered_records_are_retained_bounded_and_replayable() {
    let dir = tempfile::tempdir().expect("dir");
    let names = vec!["a".to_owned()];
    let spool = Spool::open(dir.path(), limits()).expect("open");
    spool.set_sinks(names.clone());
    let rec = |id: &str, ty: &str| {
        let mut e = Event::new(id, "urn:s", ty);
        e.extensions.insert(
            "hbreceived".into(),
            ExtensionValue::String(crate::normalize::now_rfc3339()),
        );
        e.extensions
            .insert("hbsource".into(), ExtensionValue::String("src".into()));
        Record::new(&e, names.clone())
    };
    let one = serde_json::to_vec(&rec("x", "t.a")).expect("json").len() as u64;
    spool.set_retention(Retention {
        age: std::time::Duration::from_secs(3600),
        max_bytes: one * 2 + one / 2,
    });
    for (i, ty) in ["t.a", "t.b", "t.a"].iter().enumerate() {
        let seq = spool.append(&rec(&format!("e{i}"), ty)).await.expect("append");
        spool.advance("a", seq).await.expect("advance");
    }
    assert_eq!(spool.depth().0, 0);
    assert_eq!(
        spool.retained().0,
        2,
        "bounded by retain_max_bytes: the oldest went"
    );
    let dry = ReplayFilter {
        dry_run: true,
        ..Default::default()
    };
    let listed = spool.replay(&dry).await.expect("dry run");
    let ids: Vec<&str> = listed.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2"]);
    assert_eq!(spool.depth().0, 0, "a dry run appends nothing");
    let only_a = ReplayFilter {
        ty: Some("t.a".into()),
        source: Some("src".into()),
        ..Default::default()
    };
    let done = spool.replay(&only_a).await.expect("replay");
    assert_eq!(done.len(), 1);
    assert_eq!((done[0].id.as_str(), done[0].requeued_as), ("e2", Some(4)));
    let (mut found, _) = spool.next_batch_for("a", 3, 1).await.expect("next");
    let (_, copy) = found.pop().expect("the copy is queued");
    assert!(copy.extensions.contains_key("hbreplay"));
    spool.advance("a", 4).await.expect("advance");
    let again = spool.replay(&only_a).await.expect("replay");
    assert_eq!(
        again.len(),
        1,
        "the copy is not selected again, only the original"
    );
    let future = ReplayFilter {
        since: Some(time::OffsetDateTime::now_utc() + time::Duration::hours(1)),
        ..Default::default()
    };
    assert!(spool.replay(&future).await.expect("replay").is_empty());
}

#[tokio::test]
async fn bounds_refuse_appends() {
    let dir = tempfile::tempdir().expect("dir");
    let spool = Spool::open(
        dir.path(),
        Limits {
            max_events: 2,
            max_bytes: 1 << 20,
            max_parked: u64::MAX,
        },
    )
    .expect("open");
    spool.append(&record("1", &["a"])).await.expect("1");
    spool.append(&record("2", &["a"])).await.expect("2");
    assert!(matches!(
        spool.append(&record("3", &["a"])).await,
        Err(SpoolError::Full(_))
    ));
    assert!(spool.is_full());
    let dir = tempfile::tempdir().expect("dir");
    let spool = Spool::open(
        dir.path(),
        Limits {
            max_events: 100,
            max_bytes: 10,
            max_parked: u64::MAX,
        },
    )
    .expect("open");
    assert!(matches!(
        spool.append(&record("1", &["a"])).await,
        Err(SpoolError::Full(_))
    ));
}

#[tokio::test]
async fn second_process_cannot_open_the_same_spool() {
    let dir = tempfile::tempdir().expect("dir");
    let _first = Spool::open(dir.path(), limits()).expect("open");
    assert!(matches!(
        Spool::open(dir.path(), limits()),
        Err(SpoolError::Io(_))
    ));
}

/// Records still in the `events` table (through the public scan, which reads 1,024 at a time).
async fn count_records(spool: &Spool, sink: &str) -> u64 {
    let mut after = 0;
    let mut n = 0;
    loop {
        let (found, scanned) = spool.next_batch_for(sink, after, usize::MAX).await.expect("scan");
        n += found.len() as u64;
        if scanned == after {
            return n;
        }
        after = scanned;
    }
}

#[tokio::test]
async fn numbering_never_goes_below_a_cursor_after_a_drained_restart() {
    // retain = 0s: once every sink passed them, records are deleted, and nothing is left in the
    // tables but the cursors.
    let dir = tempfile::tempdir().expect("dir");
    let names = vec!["a".to_owned()];
    {
        let spool = Spool::open(dir.path(), limits()).expect("open");
        spool.set_sinks(names.clone());
        for i in 1..=5u64 {
            assert_eq!(
                spool
                    .append(&record(&i.to_string(), &["a"]))
                    .await
                    .expect("append"),
                i
            );
        }
        spool.advance("a", 5).await.expect("advance");
        assert_eq!(spool.depth().0, 0);
    }
    let spool = Spool::open(dir.path(), limits()).expect("reopen");
    let cursor = spool.cursor("a").await.expect("cursor");
    let seq = spool.append(&record("6", &["a"])).await.expect("append");
    assert!(
        seq > cursor,
        "new record {seq} numbered at or below the cursor {cursor}"
    );
    let (found, _) = spool.next_batch_for("a", cursor, 10).await.expect("next");
    assert_eq!(found.len(), 1, "the forwarder sees the new record");
    drop(spool);
    // And again: the high-water mark survives a second drained restart.
    let spool = Spool::open(dir.path(), limits()).expect("reopen");
    assert!(spool.append(&record("7", &["a"])).await.expect("append") > seq);
}

#[tokio::test]
async fn pending_records_of_a_removed_sink_are_parked_not_deleted() {
    let dir = tempfile::tempdir().expect("dir");
    let spool = Spool::open(dir.path(), limits()).expect("open");
    for i in 1..=3 {
        spool
            .append(&record(&i.to_string(), &["a", "gone"]))
            .await
            .expect("append");
    }
    // `gone` passed the first record, then was removed from the configuration.
    spool.set_sinks(vec!["a".to_owned(), "gone".to_owned()]);
    spool.advance("gone", 1).await.expect("advance");
    spool.set_sinks(vec!["a".to_owned()]);
    spool.advance("a", 3).await.expect("advance");
    assert_eq!(spool.depth().0, 0, "a passed everything: deleted from the queue");
    let parked = spool.list_parked().await.expect("parked");
    let keys: Vec<(u64, &str, &str)> = parked
        .iter()
        .map(|(seq, sink, p)| (*seq, sink.as_str(), p.reason.as_str()))
        .collect();
    assert_eq!(keys, [(2, "gone", "sink_removed"), (3, "gone", "sink_removed")]);
    assert_eq!(spool.parked(), 2);
    assert_eq!(parked[0].2.record.targets, ["gone"]);
    // Replayed to another sink with `to`.
    let filter = ReplayFilter {
        parked: true,
        to: Some("a".into()),
        ..Default::default()
    };
    let done = spool.replay(&filter).await.expect("replay");
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|r| r.sinks == ["a"]));
    assert_eq!(spool.parked(), 0);
    let (counted, tracked) = spool.audit().expect("audit");
    assert_eq!(counted, tracked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_appends_keep_the_counts_true() {
    let dir = tempfile::tempdir().expect("dir");
    let spool = Spool::open(
        dir.path(),
        Limits {
            max_events: 1_000_000,
            max_bytes: 1 << 30,
            max_parked: u64::MAX,
        },
    )
    .expect("open");
    // Far more appends than the writer's queue holds, each cancelled at its first pending
    // point: some while waiting for room in the queue (never written), some while waiting for
    // the commit (written).
    let r = record("c", &["a"]);
    let attempts = futures_util::future::join_all(
        (0..12_000).map(|_| tokio::time::timeout(std::time::Duration::ZERO, spool.append(&r))),
    )
    .await;
    let answered = attempts.iter().filter(|a| a.is_ok()).count();
    // Let the writer finish what reached it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let on_disk = count_records(&spool, "a").await;
        let (depth, _) = spool.depth();
        if depth == on_disk {
            assert_eq!(
                spool.backlog()["a"].events,
                on_disk,
                "backlog counts what was written"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the spool counts {depth} events, its table holds {on_disk} ({answered} appends answered)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (counted, tracked) = spool.audit().expect("audit");
    assert_eq!(counted, tracked);
}
