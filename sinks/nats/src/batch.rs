//! JetStream publishes made during one turn of the scheduler leave in one socket write.
//!
//! async-nats writes whatever its connection task finds queued when that task runs. A request
//! that publishes wakes the task, and tokio runs a task woken that way right after the current one
//! (its LIFO slot), so the connection task ran once per event and every publish was its own
//! `writev` for hookbridge and its own read for nats-server. The benchmark's direct client, whose
//! 64 publishers are released together by a batch of acks, put many messages in each write;
//! hookbridge put one (BENCHMARKS.md).
//!
//! Here the requests hand their publish to one task. Once woken, that task yields once: tokio runs
//! a yielded task again only after every task already ready on its worker, i.e. after the other
//! requests of this turn have queued theirs. Then it hands them all to async-nats, which writes
//! them together. There is no timer: at low load the wait is one turn of an idle scheduler.

use async_nats::jetstream::context::{PublishAckFuture, PublishError};
use async_nats::jetstream::{self, message::PublishMessage};
use tokio::sync::{mpsc, oneshot};

/// Most publishes handed on in one go (then the batcher yields again).
const MAX_BATCH: usize = 512;

/// One publish, and where its ack future goes.
struct Job {
    subject: String,
    publish: PublishMessage,
    reply: oneshot::Sender<Result<PublishAckFuture, PublishError>>,
}

/// The handle requests publish through. Dropping the last one ends the task.
pub(crate) struct Batcher {
    tx: mpsc::Sender<Job>,
}

/// Why a publish did not reach async-nats.
pub(crate) enum BatchError {
    /// async-nats refused it (see the error).
    Publish(PublishError),
    /// The batcher task is gone (only while the sink is being dropped).
    Closed,
}

impl Batcher {
    /// Starts the task on the current runtime.
    pub(crate) fn spawn(js: jetstream::Context) -> Self {
        let (tx, rx) = mpsc::channel(MAX_BATCH * 8);
        tokio::spawn(run(js, rx));
        Batcher { tx }
    }

    /// Queues a publish; resolves to its ack future once async-nats has it.
    pub(crate) async fn publish(
        &self,
        subject: String,
        publish: PublishMessage,
    ) -> Result<PublishAckFuture, BatchError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            subject,
            publish,
            reply,
        };
        self.tx.send(job).await.map_err(|_| BatchError::Closed)?;
        match answer.await {
            Ok(sent) => sent.map_err(BatchError::Publish),
            Err(_) => Err(BatchError::Closed),
        }
    }
}

async fn run(js: jetstream::Context, mut rx: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // Let the requests already ready on this worker queue their publishes first.
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        for job in batch.drain(..) {
            // The request gave up (its deadline passed and it answered 503): publishing now
            // would deliver an event the provider is about to retry.
            if job.reply.is_closed() {
                continue;
            }
            let sent = js.send_publish(job.subject, job.publish).await;
            let _ = job.reply.send(sent);
        }
    }
}
