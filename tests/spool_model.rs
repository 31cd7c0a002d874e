//! A seeded, randomised model test of the spool: random schedules of appends, sink outages,
//! permanent refusals, panics, graceful restarts with a changed configuration (sinks added and
//! removed, retention `0s` or bounded), replays of parked events, and — in the second test —
//! hard kills (SIGKILL of a real `hookbridge serve`), checked against a model.
//!
//! Invariants, after every step or at every quiescent point:
//! - every event answered as appended is, for each of its sinks, delivered at least once or
//!   parked with a reason;
//! - nothing is delivered that was not appended;
//! - numbering never goes backwards (every new sequence number is above all earlier ones);
//! - the spool's counts match its tables.
//!
//! Budget: `SPOOL_MODEL_SECONDS` (default 25 for each test) of seeds from
//! `SPOOL_MODEL_SEED_BASE` on; `SPOOL_MODEL_SEED=N` replays one seed.
//! `scripts/model.sh` runs them for longer. A failure prints its seed.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hookbridge::app::App;
use hookbridge::deliver::spool::{Record, ReplayFilter, Spool};
use hookbridge::sink::{Event, Receipt, Sink, SinkError, SinkHandle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const POOL: [&str; 4] = ["a", "b", "c", "d"];

/// A sink whose fate per event is in the event id: `…-perm` is refused permanently, `…-boom`
/// panics; everything fails retryably while `down`. Delivered ids survive restarts.
struct ModelSink {
    name: String,
    down: AtomicBool,
    got: Mutex<Vec<String>>,
}

#[async_trait]
impl Sink for ModelSink {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "model"
    }
    async fn publish(&self, event: &Event) -> Result<Receipt, SinkError> {
        tokio::task::yield_now().await;
        if self.down.load(Ordering::SeqCst) {
            return Err(SinkError::unavailable("down"));
        }
        if event.id.ends_with("-perm") {
            return Err(SinkError::rejected("refused for good"));
        }
        assert!(!event.id.ends_with("-boom"), "model panic on {}", event.id);
        self.got.lock().expect("lock").push(event.id.clone());
        Ok(Receipt::new(&self.name))
    }
    async fn health(&self) -> Result<(), SinkError> {
        Ok(())
    }
    async fn shutdown(&self) {}
}

struct Model {
    rng: StdRng,
    dir: tempfile::TempDir,
    sinks: BTreeMap<&'static str, Arc<ModelSink>>,
    configured: Vec<&'static str>,
    retention: &'static str,
    app: Option<Arc<App>>,
    /// (event id, sink) that must end delivered or parked.
    owed: BTreeSet<(String, String)>,
    appended: BTreeSet<String>,
    last_seq: u64,
    next_id: u64,
    log: Vec<String>,
}

impl Model {
    fn new(seed: u64) -> Model {
        Model {
            rng: StdRng::seed_from_u64(seed),
            dir: tempfile::tempdir().expect("dir"),
            sinks: POOL
                .iter()
                .map(|n| {
                    (
                        *n,
                        Arc::new(ModelSink {
                            name: (*n).to_owned(),
                            down: AtomicBool::new(false),
                            got: Mutex::new(Vec::new()),
                        }),
                    )
                })
                .collect(),
            configured: vec!["a", "b"],
            retention: "0s",
            app: None,
            owed: BTreeSet::new(),
            appended: BTreeSet::new(),
            last_seq: 0,
            next_id: 0,
            log: Vec::new(),
        }
    }

    fn spool(&self) -> Arc<Spool> {
        self.app.as_ref().and_then(|a| a.spool.clone()).expect("running")
    }

    fn config(&self) -> String {
        let mut cfg = String::from(
            "[sources.ce]\npath = \"/e\"\nkind = \"cloudevents\"\ndelivery = \"spool\"\nverify = { kind = \"none\" }\n",
        );
        for s in &self.configured {
            cfg.push_str(&format!("[sinks.{s}]\ntype = \"blackhole\"\n"));
        }
        let list: Vec<String> = self.configured.iter().map(|s| format!("{s:?}")).collect();
        cfg.push_str(&format!("[[routes]]\nsinks = [{}]\n", list.join(", ")));
        let (retain, max_bytes) = match self.retention {
            "small" => ("1h", "2KiB"),
            other => (other, "1MiB"),
        };
        cfg.push_str(&format!(
            "[spool]\ndir = \"{}\"\nretry_initial = \"2ms\"\nretry_max = \"10ms\"\nretain = \"{retain}\"\nretain_max_bytes = \"{max_bytes}\"\nmax_attempts = 5\n",
            self.dir.path().display()
        ));
        cfg
    }

    fn start(&mut self) {
        let config = hookbridge::config::from_toml_str(&self.config(), "model.toml").expect("config");
        let overrides = self
            .configured
            .iter()
            .map(|s| ((*s).to_owned(), self.sinks[s].clone() as SinkHandle))
            .collect();
        let app = App::build_with(config, overrides).expect("build");
        app.start_forwarders();
        self.app = Some(app);
    }

    async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.stop_forwarders().await;
            let spool = app.spool.clone().expect("spool");
            let (counted, tracked) = spool.audit().expect("audit");
            assert_eq!(counted, tracked, "counts drifted; steps: {:?}", self.log);
            drop(app);
            assert_eq!(Arc::strong_count(&spool), 1, "nothing else holds the spool");
        }
    }

    async fn append_batch(&mut self) {
        let spool = self.spool();
        let n = self.rng.random_range(1..=6);
        for _ in 0..n {
            self.next_id += 1;
            let fate = match self.rng.random_range(0..100) {
                0..=5 => "-perm",
                6..=9 => "-boom",
                _ => "",
            };
            let id = format!("e{}{fate}", self.next_id);
            // Targets: a random non-empty subset of the configured sinks.
            let mut targets: Vec<String> = self
                .configured
                .iter()
                .filter(|_| self.rng.random_bool(0.6))
                .map(|s| (*s).to_owned())
                .collect();
            if targets.is_empty() {
                targets.push(self.configured[0].to_owned());
            }
            let mut e = Event::new(id.clone(), "urn:model", "t.model");
            e.extensions.insert(
                "hbreceived".into(),
                hookbridge::sink::ExtensionValue::String(hookbridge::normalize::now_rfc3339()),
            );
            let seq = spool
                .append(&Record::new(&e, targets.clone()))
                .await
                .unwrap_or_else(|err| panic!("append failed: {err}"));
            assert!(
                seq > self.last_seq,
                "numbering went back: {seq} after {}",
                self.last_seq
            );
            self.last_seq = seq;
            self.appended.insert(id.clone());
            for t in targets {
                self.owed.insert((id.clone(), t));
            }
        }
        self.log.push(format!("append {n}"));
    }

    /// Every sink up; waits until every configured sink has passed every record, then checks
    /// the invariants.
    async fn settle(&mut self) {
        for s in self.sinks.values() {
            s.down.store(false, Ordering::SeqCst);
        }
        let spool = self.spool();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (counted, tracked) = spool.audit().expect("audit");
            let pending: u64 = self
                .configured
                .iter()
                .map(|s| counted.backlog.get(*s).copied().unwrap_or(0))
                .sum();
            // Records for removed sinks are parked once every configured sink passed them.
            if pending == 0 && counted.events.0 == 0 && counted == tracked {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "never settled: tables {counted:?}, tracked {tracked:?}; steps: {:?}",
                self.log
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let parked: BTreeSet<(String, String)> = spool
            .list_parked()
            .await
            .expect("parked")
            .into_iter()
            .map(|(_, sink, p)| (p.record.id().to_owned(), sink))
            .collect();
        for (id, sink) in &self.owed {
            let delivered = self.sinks[sink.as_str()].got.lock().expect("lock").contains(id);
            assert!(
                delivered || parked.contains(&(id.clone(), sink.clone())),
                "{id} for {sink}: neither delivered nor parked"
            );
        }
        for s in self.sinks.values() {
            for id in s.got.lock().expect("lock").iter() {
                assert!(
                    self.appended.contains(id),
                    "{id} delivered to {} but never appended",
                    s.name
                );
            }
        }
        self.log.push("settle".into());
    }

    async fn restart(&mut self) {
        self.stop().await;
        if self.rng.random_bool(0.5) {
            // Change the sinks: add or remove one (at least one stays).
            let candidate = POOL[self.rng.random_range(0..POOL.len())];
            if self.configured.contains(&candidate) {
                if self.configured.len() > 1 {
                    self.configured.retain(|s| *s != candidate);
                }
            } else {
                self.configured.push(candidate);
            }
        }
        self.retention = ["0s", "1h", "small"][self.rng.random_range(0..3)];
        self.log
            .push(format!("restart {:?} retain {}", self.configured, self.retention));
        self.start();
    }

    async fn replay_parked(&mut self) {
        let spool = self.spool();
        let to = self.configured[self.rng.random_range(0..self.configured.len())];
        let parked = spool.list_parked().await.expect("parked");
        // Only the ones that will go through: `-perm` and `-boom` would be parked again, which
        // the model could follow too, but it keeps the bookkeeping simple.
        let Some((_, sink, p)) = parked.into_iter().find(|(_, _, p)| p.reason == "sink_removed") else {
            return;
        };
        let id = p.record.id().to_owned();
        let filter = ReplayFilter {
            parked: true,
            sink: Some(sink.clone()),
            to: Some(to.to_owned()),
            ..Default::default()
        };
        let done = spool.replay(&filter).await.expect("replay");
        for r in &done {
            self.owed.remove(&(r.id.clone(), sink.clone()));
            self.owed.insert((r.id.clone(), to.to_owned()));
            let seq = r.requeued_as.expect("requeued");
            assert!(
                seq > self.last_seq,
                "numbering went back: {seq} after {}",
                self.last_seq
            );
            self.last_seq = seq;
        }
        self.log.push(format!(
            "replay parked of {sink} ({id} …) to {to}: {}",
            done.len()
        ));
    }

    async fn step(&mut self) {
        match self.rng.random_range(0..100) {
            0..=44 => self.append_batch().await,
            45..=59 => {
                let s = POOL[self.rng.random_range(0..POOL.len())];
                let down = self.rng.random_bool(0.5);
                self.sinks[s].down.store(down, Ordering::SeqCst);
                self.log.push(format!("{s} down={down}"));
            }
            60..=69 => self.settle().await,
            70..=84 => self.restart().await,
            85..=89 => self.replay_parked().await,
            _ => {
                let ms = self.rng.random_range(1..30);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.log.push(format!("wait {ms}ms"));
            }
        }
    }
}

fn budget() -> (Option<u64>, u64, Duration) {
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    (
        var("SPOOL_MODEL_SEED"),
        var("SPOOL_MODEL_SEED_BASE").unwrap_or(0),
        Duration::from_secs(var("SPOOL_MODEL_SECONDS").unwrap_or(25)),
    )
}

async fn run_seed(seed: u64) {
    let mut m = Model::new(seed);
    m.start();
    let steps = 60;
    for _ in 0..steps {
        m.step().await;
    }
    m.settle().await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomised_schedules_keep_every_acknowledged_event() {
    let (one, base, budget) = budget();
    let seeds: Box<dyn Iterator<Item = u64>> = match one {
        Some(s) => Box::new(std::iter::once(s)),
        None => Box::new(base..),
    };
    let started = Instant::now();
    let mut ran = 0;
    for seed in seeds {
        if one.is_none() && started.elapsed() > budget {
            break;
        }
        let outcome = tokio::spawn(run_seed(seed)).await;
        if let Err(e) = outcome {
            panic!(
                "model seed {seed} failed ({e}); replay it with SPOOL_MODEL_SEED={seed} cargo test --test spool_model randomised_schedules -- --nocapture"
            );
        }
        ran += 1;
    }
    println!(
        "spool model: {ran} seeds from {base} in {:.1?}",
        started.elapsed()
    );
    assert!(ran > 0);
}

/// What one posted event became.
struct Posted {
    id: String,
    targets: &'static [&'static str],
    /// The spool sequence number, if it was answered 202.
    seq: Option<u64>,
}

const KINDS: [(&str, &[&str]); 3] = [("t.a", &["fa"]), ("t.b", &["fb"]), ("t.ab", &["fa", "fb"])];

fn kill_config(dir: &std::path::Path, retain: &str) -> String {
    format!(
        r#"
[sources.ce]
path = "/e"
kind = "cloudevents"
delivery = "spool"
verify = {{ kind = "none" }}
[sinks.fa]
type = "file"
path = "{a}"
[sinks.fb]
type = "file"
path = "{b}"
[[routes]]
types = ["t.a"]
sinks = ["fa"]
[[routes]]
types = ["t.b"]
sinks = ["fb"]
[[routes]]
types = ["t.ab"]
sinks = ["fa", "fb"]
[spool]
dir = "{spool}"
retain = "{retain}"
retry_initial = "10ms"
retry_max = "100ms"
"#,
        a = dir.join("fa.jsonl").display(),
        b = dir.join("fb.jsonl").display(),
        spool = dir.join("spool").display(),
    )
}

/// Ids in a JSON Lines file; a trailing partial line (a write in progress) is left out unless
/// `strict`, where it fails.
fn file_ids(path: &std::path::Path, strict: bool) -> BTreeSet<String> {
    let text = std::fs::read(path).unwrap_or_default();
    let whole = match text.iter().rposition(|b| *b == b'\n') {
        Some(i) => &text[..=i],
        None => &text[..0],
    };
    assert!(
        !strict || whole.len() == text.len(),
        "{} ends with a partial line",
        path.display()
    );
    whole
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: serde_json::Value = serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("{}: not an event line ({e})", path.display()));
            v["id"].as_str().expect("id").to_owned()
        })
        .collect()
}

async fn post_until(url: String, prefix: String, seed: u64, stop: Arc<AtomicBool>) -> Vec<Posted> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut i = 0;
    while !stop.load(Ordering::SeqCst) {
        // Four at a time, so a kill lands among concurrent appends.
        let batch: Vec<(String, usize)> = (0..4)
            .map(|_| {
                i += 1;
                (format!("{prefix}-{i}"), rng.random_range(0..KINDS.len()))
            })
            .collect();
        let answers = futures_util::future::join_all(batch.iter().map(|(id, k)| {
            http.post(&url)
                .header("ce-specversion", "1.0")
                .header("ce-id", id)
                .header("ce-source", "urn:kill")
                .header("ce-type", KINDS[*k].0)
                .body("{}")
                .send()
        }))
        .await;
        for ((id, k), answer) in batch.into_iter().zip(answers) {
            let mut seq = None;
            if let Ok(resp) = answer {
                if resp.status().as_u16() == 202 {
                    let body: serde_json::Value = resp.json().await.unwrap_or_default();
                    seq = body["events"][0]["receipts"][0]["spooled"].as_u64();
                    assert!(seq.is_some(), "202 without a sequence number: {body}");
                }
            }
            out.push(Posted {
                id,
                targets: KINDS[k].1,
                seq,
            });
        }
    }
    out
}

fn sigterm(child: &std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
}

/// Runs one seed; returns (acknowledged events, hard kills).
async fn kill_seed(seed: u64) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("hb.toml");
    let mut posted: Vec<Posted> = Vec::new();
    let mut max_acked = 0u64;
    let rounds = rng.random_range(3..=5);
    let mut kills = 0;
    for round in 0..rounds {
        let retain = ["0s", "1h"][rng.random_range(0..2)];
        std::fs::write(&config, kill_config(dir.path(), retain)).expect("config");
        let (mut child, addr) = common::spawn_serve(&config, &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let poster = tokio::spawn(post_until(
            format!("http://{addr}/e"),
            format!("k{seed}-{round}"),
            seed * 100 + round,
            stop.clone(),
        ));
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..250))).await;
        let graceful = rng.random_bool(0.25);
        if graceful {
            sigterm(&child);
        } else {
            let _ = child.kill(); // SIGKILL
            kills += 1;
        }
        let _ = child.wait();
        stop.store(true, Ordering::SeqCst);
        let this_round = poster.await.expect("poster");
        let seqs: Vec<u64> = this_round.iter().filter_map(|p| p.seq).collect();
        if let Some(min) = seqs.iter().min() {
            assert!(
                *min > max_acked,
                "seed {seed} round {round}: sequence {min} after {max_acked} was acknowledged before"
            );
        }
        max_acked = max_acked.max(seqs.into_iter().max().unwrap_or(0));
        posted.extend(this_round);
    }
    // A last run drains; then every acknowledged event is in each of its sinks' files.
    std::fs::write(&config, kill_config(dir.path(), "0s")).expect("config");
    let (child, _) = common::spawn_serve(&config, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = |strict: bool| -> Vec<String> {
        let a = file_ids(&dir.path().join("fa.jsonl"), strict);
        let b = file_ids(&dir.path().join("fb.jsonl"), strict);
        let mut out = Vec::new();
        for p in posted.iter().filter(|p| p.seq.is_some()) {
            for t in p.targets {
                let file = if *t == "fa" { &a } else { &b };
                if !file.contains(&p.id) {
                    out.push(format!("{} for {t}", p.id));
                }
            }
        }
        out
    };
    while !missing(false).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut child = child;
    sigterm(&child);
    let _ = child.wait();
    let lost = missing(true);
    assert!(
        lost.is_empty(),
        "seed {seed}: acknowledged but never delivered: {lost:?}"
    );
    let sent: BTreeSet<&str> = posted.iter().map(|p| p.id.as_str()).collect();
    for f in ["fa.jsonl", "fb.jsonl"] {
        for id in file_ids(&dir.path().join(f), true) {
            assert!(
                sent.contains(id.as_str()),
                "seed {seed}: {id} in {f} was never sent"
            );
        }
    }
    (posted.iter().filter(|p| p.seq.is_some()).count(), kills)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn randomised_sigkills_lose_nothing_acknowledged() {
    let (one, base, budget) = budget();
    let started = Instant::now();
    let mut ran = 0;
    let mut seed = one.unwrap_or(base);
    let (mut acked, mut kills) = (0, 0);
    loop {
        match tokio::spawn(kill_seed(seed)).await {
            Ok((a, k)) => {
                acked += a;
                kills += k;
            }
            Err(e) => panic!(
                "kill seed {seed} failed ({e}); replay it with SPOOL_MODEL_SEED={seed} cargo test --test spool_model randomised_sigkills -- --nocapture"
            ),
        }
        ran += 1;
        seed += 1;
        if one.is_some() || started.elapsed() > budget {
            break;
        }
    }
    println!(
        "kill model: {ran} seeds, {kills} SIGKILLs, {acked} events acknowledged, in {:.1?}",
        started.elapsed()
    );
    assert!(
        acked > 0 && (one.is_some() || kills > 0),
        "the schedule exercised nothing"
    );
}
