//! The load driver: closed loop (each worker sends its next request when the last one is
//! answered) or open loop (a schedule releases request `i` at `start + i / rate`, whatever
//! the answers; a worker picks it up when free and its latency counts from the intended time, so
//! a stall shows as latency instead of silently lowering the offered load).
//!
//! The open-loop schedule runs on an OS thread of its own, optionally pinned to another core
//! (`--schedule-core`), and releases every request that is due each time it wakes. #30: on the
//! workers' current-thread runtime it shared their core and the runtime's 1 ms timer, which
//! made the in-process direct clients (`publish`) look slower than hookbridge at the same rate;
//! its CPU is reported apart (`schedule_cpu_seconds`) and not counted in `generator_cpu_seconds`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};

/// How a run is driven.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Concurrent requests (closed loop), or workers serving the schedule (open loop).
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// How long to send.
    #[arg(long, default_value = "10s", value_parser = crate::humantime_duration)]
    pub duration: Duration,
    /// Open loop at this many requests per second (default: closed-loop saturation).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Requests built before the run (the run stops early if they run out).
    #[arg(long, default_value_t = 200_000)]
    pub pool: usize,
    /// Closed loop: start over at the first pre-built request when they run out instead of
    /// stopping (for baselines that ignore ids; hookbridge would answer the repeats `duplicate`).
    #[arg(long)]
    pub wrap: bool,
    /// Open loop: pin the schedule's thread to this core (default: not pinned).
    #[arg(long)]
    pub schedule_core: Option<usize>,
}

/// One request's result.
pub enum Outcome {
    /// Accepted (2xx / acked).
    Ok,
    /// Answered with another status.
    Status(u16),
    /// Transport error.
    Error,
}

/// One connection's (or publisher's) worth of sending.
#[async_trait]
pub trait Worker: Send {
    /// Sends request `i` and waits for its answer.
    async fn call(&mut self, i: usize) -> Outcome;
}

#[derive(Default)]
struct Tally {
    ok: Vec<u32>,
    statuses: std::collections::BTreeMap<u16, u64>,
    errors: u64,
}

fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 60_000_000, 3) {
        Ok(h) => h,
        Err(e) => panic!("histogram bounds: {e}"),
    }
}

/// Runs `workers` as `args` says; returns the JSON summary and the indices answered 2xx.
pub async fn run(workers: Vec<Box<dyn Worker>>, args: &RunArgs) -> (Value, Vec<u32>) {
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let end = started + args.duration;
    let pool = args.pool;
    let wrap = args.wrap;
    let mut tasks = Vec::new();
    let open_loop = args.rate;
    let queue = open_loop.map(|_| {
        let (tx, rx) = mpsc::channel::<(usize, Instant)>(1 << 16);
        (tx, Arc::new(Mutex::new(rx)))
    });
    let next = Arc::new(AtomicUsize::new(0));
    for mut w in workers {
        let next = next.clone();
        let rx = queue.as_ref().map(|(_, rx)| rx.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut tally = Tally::default();
            loop {
                let (i, from) = match &rx {
                    Some(rx) => match rx.lock().await.recv().await {
                        Some(item) => item,
                        None => break,
                    },
                    None => {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if Instant::now() >= end || (i >= pool && !wrap) {
                            break;
                        }
                        (i % pool.max(1), Instant::now())
                    }
                };
                let outcome = w.call(i).await;
                let _ = h.record(from.elapsed().as_micros().max(1) as u64);
                match outcome {
                    Outcome::Ok => tally.ok.push(i as u32),
                    Outcome::Status(s) => *tally.statuses.entry(s).or_default() += 1,
                    Outcome::Error => tally.errors += 1,
                }
            }
            (h, tally)
        }));
    }
    let (offered, schedule_cpu) = match (open_loop, queue) {
        (Some(rate), Some((tx, _))) => {
            let core = args.schedule_core;
            let (done_tx, done) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || done_tx.send(schedule(&tx, started, end, rate, pool, core)));
            done.await.unwrap_or((0, 0.0))
        }
        _ => (0, 0.0),
    };
    let mut h = histogram();
    let mut all = Tally::default();
    for t in tasks {
        if let Ok((th, tally)) = t.await {
            let _ = h.add(&th);
            all.ok.extend(tally.ok);
            all.errors += tally.errors;
            for (s, n) in tally.statuses {
                *all.statuses.entry(s).or_default() += n;
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let sent = h.len();
    let pct = |q: f64| h.value_at_quantile(q);
    let summary = json!({
        "mode": if open_loop.is_some() { "open" } else { "closed" },
        "target_rate": open_loop,
        "offered": if open_loop.is_some() { offered as u64 } else { sent },
        "sent": sent,
        "ok": all.ok.len(),
        "statuses": all.statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "errors": all.errors,
        "seconds": wall,
        "rate": all.ok.len() as f64 / wall,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "p999_us": pct(0.999),
        "max_us": h.max(),
        "pool_exhausted": open_loop.is_none() && !wrap && sent as usize >= pool,
        "generator_cpu_seconds": cpu_seconds() - cpu_before - schedule_cpu,
        "schedule_cpu_seconds": schedule_cpu,
    });
    (summary, all.ok)
}

/// The open-loop schedule: releases request `i` at `started + i / rate` until `end` or `pool`,
/// sleeping until the next one is due and then sending every request due by then. Returns how
/// many it offered and its own thread's CPU seconds.
fn schedule(
    tx: &mpsc::Sender<(usize, Instant)>,
    started: Instant,
    end: Instant,
    rate: f64,
    pool: usize,
    core: Option<usize>,
) -> (usize, f64) {
    if let Some(id) = core {
        core_affinity::set_for_current(core_affinity::CoreId { id });
    }
    let interval = Duration::from_secs_f64(1.0 / rate);
    let due = |i: usize| started + interval.mul_f64(i as f64);
    let mut i = 0;
    'run: while i < pool && due(i) < end {
        let now = Instant::now();
        if due(i) > now {
            std::thread::sleep(due(i) - now);
        }
        let now = Instant::now();
        while i < pool && due(i) <= now && due(i) < end {
            if tx.blocking_send((i, due(i))).is_err() {
                break 'run;
            }
            i += 1;
        }
    }
    (i, stat_cpu_seconds("/proc/thread-self/stat"))
}

/// This process's user + system CPU seconds.
pub fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat")
}

/// User + system CPU seconds from a `/proc/…/stat` file (a process's or a thread's).
fn stat_cpu_seconds(path: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the full line: 11 and 12 after the state.
    (ticks(11) + ticks(12)) / 100.0
}
