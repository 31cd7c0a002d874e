//! Measures the spool's group commit: events/s appended (each fsynced before its caller is
//! answered) with 1 and with 32 concurrent writers, same machine, same run.
//!
//! `cargo run --release --example spool_group_commit [-- EVENTS]`
//! This is a measurement, not a test: numbers are reported, nothing is asserted.

use std::sync::Arc;
use std::time::Instant;

use hookbridge::deliver::spool::{Limits, Record, Spool};
use hookbridge::sink::Event;

fn record(i: usize) -> Record {
    let mut e = Event::new(format!("bench-{i}"), "urn:bench", "com.example.bench");
    e.data = Some(bytes::Bytes::from(format!(r#"{{"ids":[{i}]}}"#)));
    Record::new(&e, vec!["sink".to_owned()])
}

async fn run(concurrency: usize, events: usize) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(
        dir.path(),
        Limits {
            max_events: u64::MAX,
            max_bytes: u64::MAX,
            max_parked: u64::MAX,
        },
    )
    .expect("open");
    let per_task = events / concurrency;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let spool: Arc<Spool> = spool.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_task {
                spool.append(&record(t * per_task + i)).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("join");
    }
    (per_task * concurrency) as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let events: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000);
    let one = run(1, events / 4).await;
    let many = run(32, events).await;
    println!("spool appends (fsync per commit): 1 writer {one:.0} events/s; 32 writers {many:.0} events/s; ratio {:.1}x", many / one);
}
