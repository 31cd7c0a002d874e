//! Regression tests from the three adversarial reviews of the spool work (#25): each reproduced a
//! defect on a version of the change (backlog drift, a stalled queue, a spool full for
//! good) and passes on the fixed code.
mod common;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{start, FailingSink, MemorySink};
use hookbridge::deliver::spool::{Limits, Retention, Spool};
use hookbridge::sink::{SinkError, SinkHandle};
use serde_json::Value;

async fn post(url: &str, id: &str, ty: &str, pad: usize) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "urn:review")
        .header("ce-type", ty)
        .header("content-type", "application/json")
        .body(format!(r#"{{"pad":"{}"}}"#, "x".repeat(pad)))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// Spool mode, one sink `out` for every event, fast retries, and `extra` in `[spool]`.
fn spool_config(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "[sources.ce]\npath = \"/events\"\nkind = \"cloudevents\"\ndelivery = \"spool\"\nverify = {{ kind = \"none\" }}\n\
         [sinks.out]\ntype = \"blackhole\"\n[[routes]]\nsinks = [\"out\"]\n\
         [spool]\ndir = \"{}\"\nretry_initial = \"10ms\"\nretry_max = \"50ms\"\n{extra}\n",
        dir.display()
    )
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `[unmatched] sinks = ["out", "out"]` is accepted; each spooled record then names `out`
/// twice: the backlog counts 2 per event, delivery passes 1.
#[tokio::test]
async fn a_sink_named_twice_is_counted_and_published_once() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
delivery = "spool"
verify = {{ kind = "none" }}
[sinks.out]
type = "blackhole"
[[routes]]
types = ["never.matches"]
sinks = ["out"]
[unmatched]
policy = "route"
sinks = ["out", "out"]
[spool]
dir = "{}"
retry_initial = "10ms"
retry_max = "50ms"
retain = "0s"
"#,
        dir.path().display()
    );
    let out = MemorySink::new("out");
    let hb = start(&cfg, vec![("out", out.clone() as SinkHandle)]).await;
    for i in 0..5 {
        let (s, b) = post(&hb.url("/events"), &format!("dup-{i}"), "t.x", 1).await;
        assert_eq!(s, 202, "{b}");
    }
    eventually("delivered", || out.ids().len() >= 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let spool = hb.app.spool.clone().expect("spool");
    let (counted, tracked) = spool.audit().expect("audit");
    let ready: Value = reqwest::get(hb.url("/readyz"))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("readyz");
    eprintln!("readyz backlog: {}", ready["spool"]["backlog"]);
    assert_eq!(counted, tracked, "backlog drift");
    let mut got = out.ids();
    got.sort();
    assert_eq!(got, ["dup-0", "dup-1", "dup-2", "dup-3", "dup-4"], "each once");
    hb.stop().await;
}

/// `retain = "100000y"` ("keep forever") passes validation; the first advance that retains a
/// record panics in `prune_retained` (`now - age` out of range): nothing is ever freed, and the
/// spool fills up for good.
#[tokio::test]
async fn a_retention_too_long_to_subtract_keeps_everything_and_frees_the_queue() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = spool_config(dir.path(), "retain = \"100000y\"\nmax_events = 5");
    let out = MemorySink::new("out");
    let hb = start(&cfg, vec![("out", out.clone() as SinkHandle)]).await;
    for i in 0..5 {
        let (s, b) = post(&hb.url("/events"), &format!("ret-{i}"), "t.x", 1).await;
        assert_eq!(s, 202, "{b}");
    }
    eventually("delivered", || out.ids().len() >= 5).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (s, b) = post(&hb.url("/events"), "ret-after", "t.x", 1).await;
    assert_eq!(s, 202, "every event was delivered, yet the spool refuses: {b}");
    hb.stop().await;
}

/// A full disk while a forwarder is delivering: its cursor updates fail (the in-memory cursor
/// moves on anyway); after the reopen the counts are reloaded from the lagging cursor, and the
/// forwarder never passes those records again: the backlog stays up for good.
#[tokio::test]
async fn a_full_disk_during_delivery_leaves_the_counts_true() {
    let full = tmpfs::spool_on_a_full_disk("out").await;
    let (hb, out, mut acked) = (full.hb, full.sink, full.acked);
    let url = hb.url("/events");
    let spool = hb.app.spool.clone().expect("spool");
    // The sink opens while the disk is still full; nobody polls /readyz or posts.
    out.failures.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::remove_file(&full.reserve).expect("free");
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Now one request: everything is delivered and the counts match the tables.
    let (s, b) = post(&url, "after", "t.x", 10).await;
    assert_eq!(s, 202, "{b}");
    acked.push("after".into());
    eventually("all delivered", || {
        let got = out.inner.ids();
        acked.iter().all(|a| got.contains(a))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (counted, tracked) = spool.audit().expect("audit");
    assert_eq!(counted, tracked, "drift after the full disk");
    hb.stop().await;
}

/// Fails retryably for ids starting `poison`, takes the rest.
struct Poisoned {
    inner: std::sync::Arc<MemorySink>,
}

#[async_trait::async_trait]
impl hookbridge::sink::Sink for Poisoned {
    fn name(&self) -> &str {
        &self.inner.name
    }
    fn kind(&self) -> &'static str {
        "poisoned"
    }
    async fn publish(&self, event: &hookbridge::sink::Event) -> Result<hookbridge::sink::Receipt, SinkError> {
        if event.id.starts_with("poison") {
            return Err(SinkError::unavailable("this one never goes through"));
        }
        hookbridge::sink::Sink::publish(&*self.inner, event).await
    }
    async fn health(&self) -> Result<(), SinkError> {
        Ok(())
    }
    async fn shutdown(&self) {}
}

/// Two adjacent events that each fail retryably for good: the head uses up max_attempts, the
/// probe (the next event) fails too, so it is taken for an outage: nothing is ever parked and
/// every event behind them waits forever.
#[tokio::test]
async fn two_adjacent_poison_events_are_both_parked() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = spool_config(dir.path(), "max_attempts = 3");
    let inner = MemorySink::new("out");
    let sink = std::sync::Arc::new(Poisoned { inner: inner.clone() });
    let hb = start(&cfg, vec![("out", sink as SinkHandle)]).await;
    for id in ["poison-1", "poison-2", "behind-1", "behind-2"] {
        let (s, b) = post(&hb.url("/events"), id, "t.x", 1).await;
        assert_eq!(s, 202, "{b}");
    }
    let spool = hb.app.spool.clone().expect("spool");
    let deadline = Instant::now() + Duration::from_secs(10);
    while spool.parked() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("delivered {:?}, parked {}", inner.ids(), spool.parked());
    assert!(
        inner.ids().contains(&"behind-1".to_owned()) && inner.ids().contains(&"behind-2".to_owned()),
        "the queue behind two poison events never moves (100+ attempts at ~50ms)"
    );
    let mut parked: Vec<String> = spool
        .list_parked()
        .await
        .expect("parked")
        .into_iter()
        .map(|(_, _, p)| format!("{}:{}", p.record.id(), p.reason))
        .collect();
    parked.sort();
    assert_eq!(parked, ["poison-1:exhausted", "poison-2:exhausted"]);
    hb.stop().await;
}

/// A reload while the spool is faulty: does each new forwarder start?
#[tokio::test]
async fn a_reload_while_the_disk_is_full_runs_one_forwarder() {
    let full = tmpfs::spool_on_a_full_disk("rl").await;
    let hb = full.hb;
    // Fill the last bytes too.
    let _filler = full.fs.fill();
    for _ in 0..4 {
        let r = reqwest::get(hb.url("/readyz")).await.expect("readyz").status();
        assert_eq!(r.as_u16(), 503);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let live = hookbridge::app::Live::new(hb.app.clone());
    let config = hookbridge::config::from_toml_str(&full.config, "test.toml").expect("config");
    live.reload(config).await.expect("reload");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        hookbridge::deliver::forward::running("rl"),
        1,
        "one forwarder for rl"
    );
    live.get().stop_forwarders().await;
    hb.stop().await;
}

/// The probe looks only at the next 1,024 *records* (any sink's): a poison event for `a`
/// followed by 1,100 events routed only to `b` is taken for an outage of `a` for good. `a`
/// never parks it, never delivers anything after it, and (its cursor holding every record)
/// the spool keeps all of `b`'s delivered records too, until it is full.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_probe_looks_past_a_thousand_records_of_other_sinks() {
    let dir = tempfile::tempdir().expect("dir");
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
types = ["to.a"]
sinks = ["a"]
[[routes]]
types = ["to.b"]
sinks = ["b"]
[spool]
dir = "{}"
retry_initial = "10ms"
retry_max = "50ms"
max_attempts = 3
"#,
        dir.path().display()
    );
    let a = MemorySink::new("a");
    let pa = std::sync::Arc::new(Poisoned { inner: a.clone() });
    let b = MemorySink::new("b");
    let hb = start(
        &cfg,
        vec![("a", pa as SinkHandle), ("b", b.clone() as SinkHandle)],
    )
    .await;
    let url = hb.url("/events");
    let (s, body) = post(&url, "poison-1", "to.a", 1).await;
    assert_eq!(s, 202, "{body}");
    for chunk in 0..22 {
        let futs = (0..50).map(|i| {
            let url = url.clone();
            async move { post(&url, &format!("b-{chunk}-{i}"), "to.b", 1).await }
        });
        for (s, body) in futures_util::future::join_all(futs).await {
            assert_eq!(s, 202, "{body}");
        }
    }
    let (s, body) = post(&url, "after", "to.a", 1).await;
    assert_eq!(s, 202, "{body}");
    eventually("b delivered", || b.ids().len() >= 1100).await;
    let spool = hb.app.spool.clone().expect("spool");
    let deadline = Instant::now() + Duration::from_secs(6);
    while Instant::now() < deadline && !a.ids().contains(&"after".to_owned()) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "a got {:?}; parked {}; depth {:?}",
        a.ids(),
        spool.parked(),
        spool.depth()
    );
    assert!(
        a.ids().contains(&"after".to_owned()),
        "a's poison event is never parked (its probe sees no later event of a in the next 1024 records): a stalls for good"
    );
    hb.stop().await;
}

/// Retryable until `reject` is set, then refuses permanently (so the forwarder parks).
struct Toggle {
    inner: std::sync::Arc<MemorySink>,
    reject: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl hookbridge::sink::Sink for Toggle {
    fn name(&self) -> &str {
        &self.inner.name
    }
    fn kind(&self) -> &'static str {
        "toggle"
    }
    async fn publish(
        &self,
        _event: &hookbridge::sink::Event,
    ) -> Result<hookbridge::sink::Receipt, SinkError> {
        if self.reject.load(Ordering::SeqCst) {
            return Err(SinkError::rejected("never"));
        }
        Err(SinkError::unavailable("not yet"))
    }
    async fn health(&self) -> Result<(), SinkError> {
        Ok(())
    }
    async fn shutdown(&self) {}
}

/// A full disk poisons the store (a park fails); `out` then delivers everything but its cursor
/// updates fail and are never written again. Space returns, the spool recovers and reloads its
/// counts from the stale cursor: at `max_events` every append is refused `full`, nothing ever
/// wakes `out`'s forwarder again, and the spool is full for good with everything delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_cursor_update_is_retried_and_the_spool_frees_up() {
    let fs = tmpfs::Tmpfs::mount(8 << 20);
    let dir = fs.path().join("spool");
    let cfg = format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
delivery = "spool"
verify = {{ kind = "none" }}
[sinks.out]
type = "blackhole"
[sinks.rej]
type = "blackhole"
[[routes]]
types = ["to.out"]
sinks = ["out"]
[[routes]]
types = ["to.rej"]
sinks = ["rej"]
[spool]
dir = "{}"
retry_initial = "20ms"
retry_max = "100ms"
retain = "0s"
max_events = 200
"#,
        dir.display()
    );
    let out = FailingSink::new("out", usize::MAX, || SinkError::unavailable("closed"));
    let rej = std::sync::Arc::new(Toggle {
        inner: MemorySink::new("rej"),
        reject: false.into(),
    });
    let hb = start(
        &cfg,
        vec![
            ("out", out.clone() as SinkHandle),
            ("rej", rej.clone() as SinkHandle),
        ],
    )
    .await;
    let url = hb.url("/events");
    let mut acked = Vec::new();
    for i in 0..199 {
        let id = format!("s-{i}");
        let (status, body) = post(&url, &id, "to.out", 2_000).await;
        assert_eq!(status, 202, "{body}");
        acked.push(id);
    }
    let (s, b) = post(&url, "rej-1", "to.rej", 300_000).await;
    assert_eq!(s, 202, "{b}");
    let (s, _) = post(&url, "one-too-many", "to.out", 10).await;
    assert_eq!(s, 503);
    let spool = hb.app.spool.clone().expect("spool");
    let filler = fs.fill();
    rej.reject.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!(
        "after the failed park: fault {:?} parked {}",
        spool.fault(),
        spool.parked()
    );
    out.failures.store(0, Ordering::SeqCst);
    eventually("all delivered", || {
        let got = out.inner.ids();
        acked.iter().all(|a| got.contains(a))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    eprintln!("delivered all while full; fault {:?}", spool.fault());
    std::fs::remove_file(&filler).expect("free");
    for _ in 0..5 {
        let r = reqwest::get(hb.url("/readyz")).await.expect("readyz").status();
        eprintln!(
            "readyz {r} fault {:?} depth {:?} parked {}",
            spool.fault(),
            spool.depth(),
            spool.parked()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut last = (0, Value::Null);
    for i in 0..20 {
        last = post(&url, &format!("later-{i}"), "to.out", 10).await;
        if last.0 == 202 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!(
        "cursor {:?} depth {:?} backlog {:?}",
        spool.cursor("out").await,
        spool.depth(),
        spool.audit()
    );
    assert_eq!(
        last.0, 202,
        "every event was delivered or parked and space is back, yet: {}",
        last.1
    );
    hb.stop().await;
}

/// A reload (or a supervised restart) while the spool file cannot even be opened: each new
/// forwarder failed its cursor read and returned; the supervisor took a return for "told to
/// stop" and never restarted it. Once the file was back, the spool answered 202, but nothing
/// ever delivered to the sink again. Now the cursor read is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_while_the_spool_cannot_be_opened_still_delivers_after() {
    let fs = tmpfs::Tmpfs::mount(4 << 20);
    let dir = fs.path().join("spool");
    let cfg = format!(
        r#"
[sources.ce]
path = "/events"
kind = "cloudevents"
delivery = "spool"
verify = {{ kind = "none" }}
[sinks.rl2]
type = "blackhole"
[[routes]]
sinks = ["rl2"]
[spool]
dir = "{}"
retry_initial = "20ms"
retry_max = "100ms"
retain = "0s"
"#,
        dir.display()
    );
    let out = FailingSink::new("rl2", usize::MAX, || SinkError::unavailable("closed"));
    let hb = start(&cfg, vec![("rl2", out.clone() as SinkHandle)]).await;
    let url = hb.url("/events");
    let (s, _) = post(&url, "before", "t.x", 10).await;
    assert_eq!(s, 202);
    let filler = fs.fill();
    let mut got503 = false;
    for i in 0..50 {
        let (s, _) = post(&url, &format!("f-{i}"), "t.x", 20_000).await;
        if s == 503 {
            got503 = true;
            break;
        }
    }
    assert!(got503);
    let spool = hb.app.spool.clone().expect("spool");
    assert!(spool.fault().is_some());
    let away = fs.path().join("away");
    std::fs::rename(&dir, &away).expect("move away");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = reqwest::get(hb.url("/readyz")).await.expect("readyz");
    eprintln!("cursor while unopenable: {:?}", spool.cursor("rl2").await);
    let live = hookbridge::app::Live::new(hb.app.clone());
    let config = hookbridge::config::from_toml_str(&cfg, "test.toml").expect("config");
    live.reload(config).await.expect("reload");
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::rename(&away, &dir).expect("move back");
    std::fs::remove_file(&filler).expect("free");
    out.failures.store(0, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..3 {
        let _ = reqwest::get(hb.url("/readyz")).await.expect("readyz");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (s, b) = post(&hb.url("/events"), "after", "t.x", 10).await;
    assert_eq!(s, 202, "{b}");
    // After the reload the sink is the configuration's own (a blackhole), not the test's: the
    // spool draining (retain = "0s") is what shows the new forwarder delivers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && spool.depth().0 > 0 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let running = hookbridge::deliver::forward::running("rl2");
    let depth = spool.depth();
    live.get().stop_forwarders().await;
    assert_eq!(running, 1, "one forwarder for rl2");
    assert_eq!(depth.0, 0, "202 but never delivered: {depth:?} left in the spool");
    hb.stop().await;
}

fn limits() -> Limits {
    Limits {
        max_events: 100_000,
        max_bytes: 1 << 40,
        max_parked: u64::MAX,
    }
}

fn record(id: &str, targets: &[&str], pad: usize) -> hookbridge::deliver::spool::Record {
    let mut e = hookbridge::sink::Event::new(id, "urn:s", "t");
    e.data = Some(bytes::Bytes::from(format!(r#"{{"p":"{}"}}"#, "x".repeat(pad))));
    e.extensions.insert(
        "hbreceived".into(),
        hookbridge::sink::ExtensionValue::String(hookbridge::normalize::now_rfc3339()),
    );
    hookbridge::deliver::spool::Record::new(&e, targets.iter().map(|s| s.to_string()).collect())
}

/// A reopen whose probe fails (disk still full) drops the old handle (and its unsynced commits)
/// but leaves a fresh handle for reads; the first write that then succeeds on it clears the fault
/// without `apply` (counts not reloaded) and without bumping `reopens` (forwarders never store
/// their cursors again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_after_a_failed_reopen_waits_for_a_real_reopen() {
    let fs = tmpfs::Tmpfs::mount(8 << 20);
    let dir = fs.path().join("spool");
    let spool = Spool::open(&dir, limits()).expect("open");
    spool.set_sinks(vec!["a".into(), "b".into()]);
    spool.set_retention(Retention {
        age: Duration::from_secs(3600),
        max_bytes: 1 << 30,
    });
    for i in 0..5 {
        spool
            .append(&record(&format!("e{i}"), &["a", "b"], 100))
            .await
            .expect("append");
    }
    // Both sinks pass 1..=5 (unsynced): the records move to `retained`.
    spool.advance("a", 5).await.expect("advance a");
    spool.advance("b", 5).await.expect("advance b");
    let (counted, tracked) = spool.audit().expect("audit");
    assert_eq!(counted, tracked);
    eprintln!("before: {counted:?}");
    let filler = fs.fill();
    // An append that cannot fit: the store turns faulty.
    let big = spool.append(&record("big", &["a"], 2 << 20)).await;
    eprintln!("big append: {big:?}; fault {:?}", spool.fault());
    assert!(spool.fault().is_some());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = spool.recover_if_faulty().await;
    eprintln!(
        "after a reopen attempt on a full disk: {left:?}, reopens {}",
        spool.reopens()
    );
    assert!(
        left.is_some(),
        "the reopen's probe should fail while the disk is full"
    );
    // Space back; a sink that had an unsaved cursor stores it again at once (within the
    // reopen throttle): refused while the store is faulty — it used to go through on the
    // handle the failed reopen left, skipping the reload of the counts.
    std::fs::remove_file(&filler).expect("free");
    let r = spool.advance("b", 5).await;
    assert!(r.is_err() || spool.reopens() == 1, "{r:?}");
    // Past the throttle, the next write reopens for real: counts reloaded, `reopens` bumped.
    tokio::time::sleep(Duration::from_millis(300)).await;
    spool.advance("b", 5).await.expect("advance after the reopen");
    assert_eq!(spool.reopens(), 1);
    assert!(spool.fault().is_none());
    let (counted, tracked) = spool.audit().expect("audit");
    // Traffic again: one more event, both forwarders pass it (as they would when woken).
    let seq = spool
        .append(&record("later", &["a", "b"], 100))
        .await
        .expect("append");
    spool.advance("a", seq).await.expect("advance a");
    spool.advance("b", seq).await.expect("advance b");
    let (counted2, tracked2) = spool.audit().expect("audit");
    eprintln!("after more traffic: counted {counted2:?}\n                    tracked {tracked2:?}");
    assert_eq!(
        counted,
        tracked,
        "counts drifted at quiescence; reopens = {}",
        spool.reopens()
    );
    assert_eq!(counted2, tracked2, "and for good");
}
