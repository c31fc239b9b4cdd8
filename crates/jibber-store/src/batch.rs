//! Group commit: one writer task gathers concurrent writes of one kind into one transaction.
//!
//! Every relayed message costs a send and a delivery receipt, and a receipt committed on its own
//! would cost a disk flush per message, so both are batched. PostgreSQL runs two writers, one
//! for sends ([`SendRequest`] → [`Sent`]) and one for delivery receipts ([`DeliveryRequest`] →
//! [`DeliveredReceipt`]), which commit side by side on different connections. SQLite has one
//! writer at a time anyway, so it runs ONE writer for both kinds ([`Write`] → [`Written`]): a
//! cycle commits once, and writes the pages that a batch's sends and receipts share once.
//!
//! A backend's `send_message` hands its request to [`GroupCommit::submit`] and waits. The writer
//! task takes the first queued request, drains whatever else is already queued (up to
//! `max_batch`), and runs them all through the backend's batch function, which writes them in
//! ONE transaction and commits once; only then is every caller answered. Requests are handed
//! to the batch function in the order they were queued, so a chat's sequence numbers follow
//! that order.
//!
//! The batch function answers each item separately (a `NotFound` or duplicate item does not
//! fail the others). When the batch as a whole fails (an unexpected database error mid-way, a
//! failed commit), nothing of it was committed, and [`run_batch`] writes each item again in a
//! transaction of its own, so that one bad item cannot fail its neighbours. When the database
//! is unavailable (pool timeout, connection lost, also during the commit) every send of the
//! batch answers `Unavailable` at once; clients retry with the same `tempMessageId`, which the
//! store deduplicates.
//!
//! A writer may be paced (`pace`, SQLite's `sqlite_commit_interval`): a batch starts no sooner
//! than `pace` after the one before it started, and whatever is queued by then joins it. A
//! writer that starts the next transaction as soon as the last one is durable spends any spare
//! time on smaller, more frequent commits: at moderate rates that is a commit (and a disk flush)
//! for every one or two messages, which costs CPU and the disk's I/O operations (a cloud disk's
//! IOPS budget; this project's machines stall all I/O for ~10-20 ms every 100 ms under sustained
//! flushing, BENCHMARKS.md session 20). Pacing bounds the commits per second and costs a message at
//! most `pace` (plus the timer's 1 ms resolution); under load, when a commit takes longer than
//! `pace`, it changes nothing.
//!
//! Batch sizes are recorded in the `jibber_store_batch_size` histogram (labels `backend` and
//! `kind`).

use std::future::Future;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::Uuid;

use jibber_proto::api::DeliveredReceipt;

use crate::{NewMessage, Result, StoreError};

/// One queued send.
#[derive(Clone)]
pub struct SendRequest {
    pub msg: NewMessage,
    /// False when the receiver has the chat open (see `Store::send_message`).
    pub count_unread: bool,
}

/// One queued delivery receipt: `me` (who must be the receiver) got `message` at `at`.
#[derive(Clone, Copy, Debug)]
pub struct DeliveryRequest {
    pub me: Uuid,
    pub message: Uuid,
    pub at: OffsetDateTime,
}

/// A send or a delivery receipt, for a backend whose writer commits both kinds together
/// (SQLite: a relayed message costs one of each, and writing them in one transaction halves the
/// commits and writes the pages they share, a user's feed and counters, once).
// Sends are most of the writes: boxing them would add an allocation to most writes.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Write {
    Send(SendRequest),
    Delivered(DeliveryRequest),
}

/// The answer to a [`Write`], of the same kind.
#[allow(clippy::large_enum_variant)]
pub enum Written {
    Sent(crate::Sent),
    /// `None`: nothing changed (see `Store::mark_delivered`).
    Delivered(Option<DeliveredReceipt>),
}

/// The answers a writer of sends gives: [`crate::Sent`] itself, or [`Written::Sent`].
pub trait SendAnswer: Send + 'static {
    fn into_sent(self) -> Result<crate::Sent>;
}

impl SendAnswer for crate::Sent {
    fn into_sent(self) -> Result<crate::Sent> {
        Ok(self)
    }
}

impl SendAnswer for Written {
    fn into_sent(self) -> Result<crate::Sent> {
        match self {
            Written::Sent(sent) => Ok(sent),
            Written::Delivered(_) => Err(wrong_kind()),
        }
    }
}

impl Written {
    /// The answer to a [`Write::Delivered`].
    pub fn into_delivered(self) -> Result<Option<DeliveredReceipt>> {
        match self {
            Written::Delivered(receipt) => Ok(receipt),
            Written::Sent(_) => Err(wrong_kind()),
        }
    }
}

fn wrong_kind() -> StoreError {
    StoreError::Backend("the writer answered a write of the other kind".into())
}

/// How many writes the writer gathers at most into one transaction.
pub const MAX_BATCH: usize = 256;
/// How many writes may wait for the writer before `submit` itself waits (back-pressure).
pub const QUEUE: usize = 4096;

/// Writes queued together (one `submit_many`) and where their answers go.
type Job<R, A> = (Vec<R>, oneshot::Sender<Vec<Result<A>>>);

/// The handle to a store's writer task for requests `R` answered by `A`. Cloning shares the
/// task; the task ends when the last handle is dropped.
pub struct GroupCommit<R, A> {
    queue: mpsc::Sender<Job<R, A>>,
}

impl<R, A> std::fmt::Debug for GroupCommit<R, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("queued", &(QUEUE - self.queue.capacity()))
            .finish()
    }
}

impl<R, A> Clone for GroupCommit<R, A> {
    fn clone(&self) -> Self {
        GroupCommit {
            queue: self.queue.clone(),
        }
    }
}

impl<R, A> GroupCommit<R, A>
where
    R: Clone + Send + 'static,
    A: Send + 'static,
{
    /// Spawns the writer task on the current Tokio runtime. `write` stores a batch in one
    /// transaction: `Ok` holds one answer per item, in order, and means the transaction
    /// committed; `Err` means nothing was committed. `kind` labels the batch-size metric.
    /// A batch starts no sooner than `pace` after the previous one started (zero: at once; see
    /// the module's documentation).
    pub fn spawn<F, Fut>(
        backend: &'static str,
        kind: &'static str,
        max_batch: usize,
        pace: Duration,
        write: F,
    ) -> Self
    where
        F: Fn(Vec<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Result<A>>>> + Send,
    {
        let (queue, mut rx) = mpsc::channel::<Job<R, A>>(QUEUE);
        tokio::spawn(async move {
            // Taken once: a lookup in the metrics registry per batch is not free (the recorder
            // is installed before any store opens).
            let sizes = metrics::histogram!("jibber_store_batch_size", "backend" => backend, "kind" => kind);
            // The earliest start of the next batch.
            let mut next_start = Instant::now();
            while let Some(first) = rx.recv().await {
                if !pace.is_zero() {
                    if next_start > Instant::now() {
                        // What is queued meanwhile joins this batch.
                        tokio::time::sleep_until(next_start).await;
                    }
                    next_start = Instant::now() + pace;
                }
                // Whatever is already queued joins the batch, up to `max_batch` sends (a
                // `submit_many` larger than that is still one batch).
                let mut n = first.0.len();
                let mut jobs = vec![first];
                while n < max_batch {
                    let Ok(job) = rx.try_recv() else { break };
                    n += job.0.len();
                    jobs.push(job);
                }
                sizes.record(n as f64);
                let mut requests = Vec::with_capacity(n);
                let mut replies = Vec::with_capacity(jobs.len());
                for (reqs, reply) in jobs {
                    replies.push((reqs.len(), reply));
                    requests.extend(reqs);
                }
                let mut answers = run_batch(requests, &write).await.into_iter();
                for (k, reply) in replies {
                    // A caller that gave up (its request was cancelled) is not waiting.
                    let _ = reply.send(answers.by_ref().take(k).collect());
                }
            }
        });
        GroupCommit { queue }
    }

    /// Queues a write and waits until the transaction holding it has committed (or failed).
    pub async fn submit(&self, request: R) -> Result<A> {
        self.enqueue(request).await.answer().await
    }

    /// Queues a write and returns as soon as it is queued: writes queued one after another
    /// are written in that order (in one batch or in consecutive ones), so a caller may queue
    /// its next write before the first has committed. Awaiting [`Queued::answer`] gives the
    /// answer after the commit.
    pub async fn enqueue(&self, request: R) -> Queued<A> {
        let (reply, answer) = oneshot::channel();
        match self.queue.send((vec![request], reply)).await {
            Ok(()) => Queued(Some(answer)),
            Err(_) => Queued(None),
        }
    }

    /// Queues writes that are made in one transaction (with whatever else is queued), in
    /// order; answers one result per write after the commit.
    pub async fn submit_many(&self, requests: Vec<R>) -> Vec<Result<A>> {
        let n = requests.len();
        if n == 0 {
            return Vec::new();
        }
        let (reply, answer) = oneshot::channel();
        if self.queue.send((requests, reply)).await.is_err() {
            return (0..n).map(|_| Err(stopped())).collect();
        }
        match answer.await {
            Ok(answers) if answers.len() == n => answers,
            _ => (0..n).map(|_| Err(stopped())).collect(),
        }
    }
}

impl<R, A> GroupCommit<R, A>
where
    R: From<SendRequest> + Clone + Send + 'static,
    A: SendAnswer,
{
    /// [`crate::Store::queue_message`] for a backend whose sends go through this writer:
    /// queues the send, and answers after the commit; `timer` (the backend's duration metric)
    /// is dropped once the answer is in.
    pub async fn queue_send<T: Send + 'static>(
        &self,
        msg: NewMessage,
        count_unread: bool,
        timer: T,
    ) -> crate::QueuedSend {
        let queued = self
            .enqueue(R::from(SendRequest { msg, count_unread }))
            .await;
        Box::pin(async move {
            let answer = queued.answer().await.and_then(SendAnswer::into_sent);
            drop(timer);
            answer
        })
    }
}

impl From<SendRequest> for Write {
    fn from(r: SendRequest) -> Self {
        Write::Send(r)
    }
}

/// A write queued by [`GroupCommit::enqueue`], not yet answered.
#[must_use = "a queued write is answered only when awaited"]
pub struct Queued<A>(Option<oneshot::Receiver<Vec<Result<A>>>>);

impl<A> Queued<A> {
    /// Waits until the transaction holding the write has committed (or failed).
    pub async fn answer(self) -> Result<A> {
        let Some(answer) = self.0 else {
            return Err(stopped());
        };
        match answer.await {
            Ok(mut answers) if answers.len() == 1 => {
                answers.pop().unwrap_or_else(|| Err(stopped()))
            }
            _ => Err(stopped()),
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store's writer has stopped".into())
}

/// Writes `requests` as one batch; if the batch fails as a whole, writes each on its own.
/// Always answers once per request, in order.
pub async fn run_batch<R, A, F, Fut>(requests: Vec<R>, write: &F) -> Vec<Result<A>>
where
    R: Clone,
    F: Fn(Vec<R>) -> Fut,
    Fut: Future<Output = Result<Vec<Result<A>>>>,
{
    let n = requests.len();
    let retry = if n > 1 { Some(requests.clone()) } else { None };
    match write(requests).await {
        Ok(answers) if answers.len() == n => answers,
        Ok(answers) => {
            let e = format!("batch answered {} of {n} writes", answers.len());
            (0..n)
                .map(|_| Err(StoreError::Backend(e.clone())))
                .collect()
        }
        // The database cannot serve now (pool timeout, connection lost): one by one would only
        // make every send wait for the same timeout again.
        Err(StoreError::Unavailable(e)) => (0..n)
            .map(|_| Err(StoreError::Unavailable(e.clone())))
            .collect(),
        Err(e) => match retry {
            None => vec![Err(e)],
            Some(requests) => {
                tracing::warn!(error = %e, writes = n, "a batch failed; writing it one by one");
                let mut out = Vec::with_capacity(n);
                for r in requests {
                    let answer = write(vec![r]).await.and_then(|mut a| {
                        a.pop()
                            .unwrap_or_else(|| Err(StoreError::Backend("no answer".into())))
                    });
                    out.push(answer);
                }
                out
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::Sent;
    use crate::util::now_ms;
    use uuid::Uuid;

    fn requests(temps: &[&str]) -> Vec<SendRequest> {
        let id = Uuid::now_v7();
        temps
            .iter()
            .map(|t| SendRequest {
                msg: NewMessage {
                    id,
                    chat_id: id,
                    sender: id,
                    receiver: id,
                    cipher: Vec::new(),
                    iv: Vec::new(),
                    signature: Vec::new(),
                    sender_public_id_key: Vec::new(),
                    sender_public_signing_key: Vec::new(),
                    receiver_public_id_key: Vec::new(),
                    client_timestamp: now_ms(),
                    temp_message_id: (*t).to_owned(),
                    created_at: now_ms(),
                },
                count_unread: true,
            })
            .collect()
    }

    /// A stand-in backend: a batch holding "poison" fails as a whole with `fail`; alone,
    /// "poison" fails, every other send is "stored". Records the batch sizes it was given.
    fn backend(
        fail: fn() -> StoreError,
        calls: &Mutex<Vec<usize>>,
        batch: Vec<SendRequest>,
    ) -> Result<Vec<Result<Sent>>> {
        calls.lock().expect("lock").push(batch.len());
        if batch.len() > 1 && batch.iter().any(|r| r.msg.temp_message_id == "poison") {
            return Err(fail());
        }
        Ok(batch
            .iter()
            .map(|r| match r.msg.temp_message_id.as_str() {
                "poison" => Err(fail()),
                _ => Err(StoreError::Conflict("stored")),
            })
            .collect())
    }

    #[tokio::test]
    async fn a_failed_batch_is_written_again_one_send_at_a_time() {
        let calls = Mutex::new(Vec::new());
        let write = |b| std::future::ready(backend(|| StoreError::Backend("x".into()), &calls, b));
        let answers = run_batch(requests(&["a", "poison", "b"]), &write).await;
        assert!(matches!(answers[0], Err(StoreError::Conflict("stored"))));
        assert!(matches!(answers[1], Err(StoreError::Backend(_))));
        assert!(matches!(answers[2], Err(StoreError::Conflict("stored"))));
        assert_eq!(*calls.lock().expect("lock"), vec![3, 1, 1, 1]);
    }

    #[tokio::test]
    async fn an_unavailable_database_fails_the_batch_at_once() {
        let calls = Mutex::new(Vec::new());
        let write = |b| {
            std::future::ready(backend(
                || StoreError::Unavailable("down".into()),
                &calls,
                b,
            ))
        };
        let answers = run_batch(requests(&["a", "poison", "b"]), &write).await;
        assert!(
            answers
                .iter()
                .all(|a| matches!(a, Err(StoreError::Unavailable(_))))
        );
        assert_eq!(*calls.lock().expect("lock"), vec![3]);
    }

    /// A paced writer starts a batch no sooner than `pace` after the last one started, and what
    /// is queued meanwhile joins it; an unpaced one starts at once.
    #[tokio::test(start_paused = true)]
    async fn a_paced_writer_gathers_what_arrives_within_its_interval() {
        for pace in [Duration::from_millis(10), Duration::ZERO] {
            let starts = std::sync::Arc::new(Mutex::new(Vec::new()));
            let log = starts.clone();
            let commit =
                GroupCommit::spawn("test", "send", 16, pace, move |batch: Vec<SendRequest>| {
                    log.lock()
                        .expect("lock")
                        .push((Instant::now(), batch.len()));
                    std::future::ready(Ok(batch
                        .into_iter()
                        .map(|_| Err::<Sent, _>(StoreError::NotFound))
                        .collect()))
                });
            let first = commit.submit(requests(&["1"]).remove(0)).await;
            assert!(matches!(first, Err(StoreError::NotFound)));
            // Three more sends, 2 ms apart, from the first commit on.
            let later = |temp: &'static str, after: u64| {
                let commit = commit.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(after)).await;
                    commit.submit(requests(&[temp]).remove(0)).await
                }
            };
            let (a, b, c) = tokio::join!(later("2", 2), later("3", 4), later("4", 6));
            assert!(
                [a, b, c]
                    .iter()
                    .all(|r| matches!(r, Err(StoreError::NotFound)))
            );
            let starts = starts.lock().expect("lock").clone();
            let sizes: Vec<usize> = starts.iter().map(|(_, n)| *n).collect();
            let gaps: Vec<Duration> = starts.windows(2).map(|w| w[1].0 - w[0].0).collect();
            if pace.is_zero() {
                // Each started as it came.
                assert_eq!(sizes, vec![1, 1, 1, 1], "{gaps:?}");
                assert_eq!(gaps, vec![Duration::from_millis(2); 3]);
            } else {
                // The three came within the interval: one batch, at its end.
                assert_eq!(sizes, vec![1, 3], "{gaps:?}");
                assert_eq!(gaps, vec![pace]);
            }
        }
    }

    #[tokio::test]
    async fn the_writer_answers_every_caller_in_queue_order() {
        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let commit = GroupCommit::spawn(
            "test",
            "send",
            4,
            Duration::ZERO,
            move |batch: Vec<SendRequest>| {
                log.lock().expect("lock").push(
                    batch
                        .iter()
                        .map(|r| r.msg.temp_message_id.clone())
                        .collect::<Vec<_>>(),
                );
                std::future::ready(Ok(batch
                    .into_iter()
                    .map(|r| {
                        Err::<Sent, _>(StoreError::Conflict(if r.count_unread { "u" } else { "n" }))
                    })
                    .collect()))
            },
        );
        let many = commit
            .submit_many(requests(&["1", "2", "3", "4", "5", "6"]))
            .await;
        assert_eq!(many.len(), 6);
        let mut seven = requests(&["7"]).remove(0);
        seven.count_unread = false;
        let one = commit.submit(seven).await;
        assert!(matches!(one, Err(StoreError::Conflict("n"))));
        let batches = seen.lock().expect("lock").clone();
        // A submit_many larger than max_batch stays one batch; order is kept.
        assert_eq!(batches[0], vec!["1", "2", "3", "4", "5", "6"]);
        assert_eq!(batches.concat(), vec!["1", "2", "3", "4", "5", "6", "7"]);
    }
}
