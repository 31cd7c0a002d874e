//! Spool forwarders under supervision: one per sink, restarted with backoff when it panics,
//! never two at once.

use std::sync::Arc;

use hookbridge_sink_core::SinkHandle;

use crate::deliver::forward::{self, Backoff};
use crate::deliver::spool::Spool;

/// Aborts the task when dropped, so a supervisor that is itself aborted takes its forwarder
/// with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the forwarder of `sink`, restarting it (with backoff) when it ends by a panic. A
/// forwarder that returned (told to stop) or was cancelled is not restarted, so there is never
/// more than one per sink.
pub(super) async fn supervise(
    spool: Arc<Spool>,
    sink: SinkHandle,
    settings: forward::Settings,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let backoff = settings.backoff;
    let name = sink.name().to_owned();
    let on_restart = {
        let spool = spool.clone();
        move |sink: &str| spool.note_restart(sink)
    };
    supervise_with(&name, backoff, stop, on_restart, |stop| {
        forward::run(spool.clone(), sink.clone(), settings.clone(), stop)
    })
    .await;
}

/// [`supervise`] over any task: `start` makes a fresh run of it.
pub async fn supervise_with<F, Fut>(
    name: &str,
    backoff: Backoff,
    mut stop: tokio::sync::watch::Receiver<bool>,
    on_restart: impl Fn(&str),
    start: F,
) where
    F: Fn(tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut restarts: u32 = 0;
    loop {
        let mut task = AbortOnDrop(tokio::spawn(start(stop.clone())));
        match (&mut task.0).await {
            Err(e) if e.is_panic() => {
                restarts = restarts.saturating_add(1);
                on_restart(name);
                metrics::counter!("hookbridge_forwarder_restarts_total", "sink" => name.to_owned())
                    .increment(1);
                tracing::error!(sink = %name, restarts, "the spool forwarder panicked; restarting it");
                tokio::select! {
                    () = tokio::time::sleep(backoff.delay(restarts, None)) => {}
                    _ = stop.changed() => {}
                }
                if *stop.borrow() {
                    return;
                }
            }
            _ => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_millis(1),
            max: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn a_task_that_panics_is_restarted_and_one_that_returns_is_not() {
        let starts = Arc::new(AtomicUsize::new(0));
        let restarts = Arc::new(AtomicUsize::new(0));
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let s = starts.clone();
        let r = restarts.clone();
        supervise_with(
            "t",
            backoff(),
            rx,
            move |_| {
                r.fetch_add(1, Ordering::SeqCst);
            },
            move |_stop| {
                let n = s.fetch_add(1, Ordering::SeqCst);
                async move {
                    assert!(n >= 2, "panic number {n}");
                }
            },
        )
        .await;
        assert_eq!(
            starts.load(Ordering::SeqCst),
            3,
            "two panics, then a clean return"
        );
        assert_eq!(restarts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn stop_during_the_restart_delay_ends_the_supervisor() {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let starts = Arc::new(AtomicUsize::new(0));
        let s = starts.clone();
        let slow = Backoff {
            initial: Duration::from_secs(30),
            max: Duration::from_secs(30),
        };
        let sup = tokio::spawn(async move {
            supervise_with(
                "t",
                slow,
                rx,
                |_| {},
                move |_stop| {
                    s.fetch_add(1, Ordering::SeqCst);
                    async { panic!("always") }
                },
            )
            .await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(2), sup)
            .await
            .expect("stops promptly")
            .expect("no panic escapes");
        assert_eq!(starts.load(Ordering::SeqCst), 1, "not restarted after stop");
    }

    #[tokio::test]
    async fn aborting_the_supervisor_aborts_its_task() {
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let alive = Arc::new(AtomicUsize::new(0));
        let a = alive.clone();
        let sup = tokio::spawn(async move {
            supervise_with(
                "t",
                backoff(),
                rx,
                |_| {},
                move |_stop| {
                    let a = a.clone();
                    async move {
                        struct Alive(Arc<AtomicUsize>);
                        impl Drop for Alive {
                            fn drop(&mut self) {
                                self.0.fetch_sub(1, Ordering::SeqCst);
                            }
                        }
                        a.fetch_add(1, Ordering::SeqCst);
                        let _alive = Alive(a);
                        std::future::pending::<()>().await;
                    }
                },
            )
            .await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(alive.load(Ordering::SeqCst), 1);
        sup.abort();
        let _ = sup.await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            alive.load(Ordering::SeqCst),
            0,
            "the forwarder went with its supervisor"
        );
    }
}
