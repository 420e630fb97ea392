//! A call that goes straight to an idle local worker lent to its caller
//! (`lease.rs`): `apply_async` writes the input to the worker's socket
//! itself ([`start`]), and the handle's `get` (or `wait`, or `apply`,
//! which is `apply_async(..).get(None)`) reads the reply from that socket
//! itself ([`Direct::collect`]), so that a request wakes two threads (the
//! worker, then the caller), as a raw round trip does, instead of five
//! hand-overs through the dispatcher and `pool-io`.
//!
//! Between the two the call is parked with the lease registry, and the
//! dispatcher may adopt it (`Leases::reclaim`): it then counts the input
//! as a chunk its worker holds, puts the socket back in `pool-io`'s set,
//! and the result takes the usual way to the handle. It does so whenever
//! it needs its workers (work is queued, the pool closes, Ctrl-C,
//! `terminate`, a task timeout's tick), and when the handle is used in a
//! way that cannot read the socket itself ([`Direct::release`]: awaited
//! as a future, watched by `wait_any`/`as_completed`, cancelled, asked
//! whether it is ready, dropped), so that a parked call never holds a
//! worker from the pool's other work, and every guarantee of queued work
//! (timeouts, cancelling, stopping, a worker's death) holds for it.
//!
//! Where a direct call cannot be made (no idle worker that knows the
//! task, an input too large to go at once, tracing on), the call takes
//! the usual way. While the caller reads, what the dispatcher enforces
//! for queued work holds too: the wait ends at the task timeout (the
//! worker is killed), and on Ctrl-C or `terminate` the dispatcher kills
//! the lent worker after noting why (`Leases::stop_lent`), which ends
//! the wait with that error; a worker that dies running the input fails
//! the call with [`ErrorKind::WorkerDied`]
//! (one that ends before it started the input, as its progress page
//! tells, or that answers with anything but the call's result, leaves
//! the input to the usual way, as a worker holding it unstarted would).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use connection::UnsentMessage;

use super::job::Job;
use super::lease::{Call, LeaseEnd, Leases};
use super::shared_conn::{Answer, SharedConnection};
use super::sink::{outcome_of, Outcome, ResultCell, Sink};
use super::worker_reader::WorkerEnd;
use crate::error::{Error, ErrorKind, WorkerInfo};
use crate::wire::{self, BatchWriter, FromWorker, ResultChunks, ResultItems};

/// The largest encoded input sent directly: it goes into an idle
/// worker's empty socket buffer at once.
const MAX_DIRECT_INPUT: usize = 16 * 1024;

/// How long a caller whose worker died waits for `pool-io` to reap it,
/// to say how it ended.
const REAP_PATIENCE: Duration = Duration::from_millis(200);

/// What [`start`] did with a job.
pub(crate) enum Started {
    /// Sent: the caller [parks](Leases::park) the call, or collects it.
    Sent(Call),
    /// The call is over already (its worker failed it): the outcome is
    /// in its cell, or the input was handed back to the dispatcher.
    Over,
    /// Not sent: the job takes the usual way.
    NotDirect(Job),
}

/// Sends `job` (one input of a single result's job) to an idle worker
/// that knows its task, if there is one and the input may go directly.
pub(crate) fn start(leases: &Leases, job: Job, timeout: Option<Duration>) -> Started {
    // Traced calls take the usual way, which gives each input its span.
    if tracing::enabled!(tracing::Level::DEBUG) || !matches!(job.sink, Sink::Single(_)) {
        return Started::NotDirect(job);
    }
    let [item] = job.items.as_slice() else {
        return Started::NotDirect(job);
    };
    if item.input().len() > MAX_DIRECT_INPUT {
        return Started::NotDirect(job);
    }
    let Some((worker, number)) = leases.take(job.task) else {
        return Started::NotDirect(job);
    };
    let mut batch = BatchWriter::new();
    batch.chunk(
        wire::DIRECT_CHUNK,
        number,
        worker.indices,
        std::iter::once((0, item.input())),
    );
    let call = Call {
        started_before: worker.progress.load(),
        deadline: timeout.map(|t| Instant::now() + t),
        timeout,
        worker,
        number,
        job,
    };
    match send(&call.worker.conn, batch.bytes(), call.deadline) {
        Ok(()) => Started::Sent(call),
        Err(failure) => {
            call.fail(leases, failure);
            Started::Over
        }
    }
}

/// Parks `call` for its handle to collect or the dispatcher to adopt; a
/// call whose worker the dispatcher stopped meanwhile ends at once.
pub(crate) fn park(leases: &Leases, call: Call) {
    if let Some(call) = leases.park(call) {
        call.fail(leases, Failure::Ended("the pool stopped its worker".into()));
    }
}

/// Waits for the call's reply, as long as it takes (at most the task
/// timeout), and puts it in the call's cell.
pub(crate) fn finish(leases: &Leases, call: Call, spin: Duration) {
    if let Some(call) = call.finish(leases, None, spin) {
        // Not reached: without a limit of the caller's, only the reply or
        // the task timeout ends the wait.
        park(leases, call);
    }
}

/// A handle's hold on its call while the call may be parked.
pub(crate) struct Direct {
    leases: Arc<Leases>,
    worker: u32,
}

impl Direct {
    pub(crate) fn new(leases: Arc<Leases>, worker: u32) -> Direct {
        Direct { leases, worker }
    }

    /// Reads the call's reply into `cell` if the call is still parked,
    /// waiting until `until` (`None`: as long as it takes); a call not
    /// answered by then is parked again. Does nothing if the dispatcher
    /// adopted the call, or it is over (or cancelled).
    pub(crate) fn collect(&self, cell: &Arc<ResultCell>, until: Option<Instant>, spin: Duration) {
        // A cancelled call's outcome is in already; the pool stops or
        // drains its worker.
        if cell.lock().outcome.is_some() {
            return;
        }
        let Some(call) = self.leases.unpark(self.worker, cell) else {
            return;
        };
        if let Some(call) = call.finish(&self.leases, until, spin) {
            park(&self.leases, call);
        }
    }

    /// Hands the call to the dispatcher, if it is still parked, for the
    /// result to come the usual way.
    pub(crate) fn release(&self, cell: &Arc<ResultCell>) {
        self.leases.release(self.worker, cell);
    }

    /// Stops the call if another thread is reading its reply now (see
    /// [`Leases::stop_read`]); a parked call is stopped by the
    /// dispatcher once released.
    pub(crate) fn stop_read(&self, cell: &Arc<ResultCell>) {
        self.leases.stop_read(self.worker, cell);
    }
}

/// How a direct call went wrong.
pub(crate) enum Failure {
    /// The connection ended or failed: the worker is gone.
    Ended(String),
    TimedOut,
    /// The worker sent something other than the call's result: it is
    /// killed, and the input runs the usual way.
    Garbled,
}

impl Call {
    /// Waits for the reply until `until` and puts it in the call's cell;
    /// returns the call if the wait ended first. The task timeout ends
    /// the call (and its worker) whatever `until` says.
    fn finish(self, leases: &Leases, until: Option<Instant>, spin: Duration) -> Option<Call> {
        let limit = match (self.deadline, until) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let message = match receive(&self.worker.conn, limit, spin) {
            Ok(message) => message,
            Err(Failure::TimedOut) if !self.deadline.is_some_and(|d| Instant::now() >= d) => {
                return Some(self);
            }
            Err(failure) => {
                self.fail(leases, failure);
                return None;
            }
        };
        match read_reply(&Arc::new(message), self.job.task, self.worker.info) {
            Some(outcome) => self.answered(leases, outcome),
            None => self.fail(leases, Failure::Garbled),
        }
        None
    }

    /// The worker answered: it goes back among the idle ones.
    fn answered(self, leases: &Leases, outcome: Outcome) {
        let Call {
            mut worker, job, ..
        } = self;
        worker.ran += 1;
        let stopped = leases.give_back(worker, LeaseEnd::Answered);
        let outcome = match stopped {
            Some((stopped, _)) => Err(stopped.with_task(job.task).with_index(0)),
            None => outcome,
        };
        complete(job, outcome);
    }

    /// The call failed: its worker is lost to the pool (killed, if it is
    /// not gone already), and the input fails or, where that is no fault
    /// of its own, runs again the usual way.
    pub(crate) fn fail(self, leases: &Leases, failure: Failure) {
        let Call {
            worker,
            job,
            started_before,
            timeout,
            ..
        } = self;
        let info = worker.info;
        let child = Arc::clone(&worker.child);
        // A worker that ended before it started the input (it died idle,
        // say) is no fault of the input's: it runs the usual way, as an
        // input a worker held unstarted does.
        let started = worker.progress.load() != started_before;
        if !matches!(failure, Failure::Ended(_)) {
            // std's kill does nothing once the child was reaped.
            let _ = child.lock().unwrap_or_else(|p| p.into_inner()).kill();
        }
        let verdict = match failure {
            Failure::Garbled => Verdict::RunAgain,
            Failure::Ended(_) if !started => Verdict::RunAgain,
            Failure::Ended(error) => Verdict::Died(error),
            Failure::TimedOut => Verdict::TimedOut,
        };
        let (end, job) = match verdict {
            Verdict::RunAgain => (LeaseEnd::RunAgain(job), None),
            Verdict::Died(_) | Verdict::TimedOut => (LeaseEnd::Lost, Some(job)),
        };
        let (err, job) = match (leases.give_back(worker, end), verdict) {
            (Some((stopped, back)), _) => (stopped, back.or(job)),
            (None, Verdict::RunAgain) => return,
            (None, Verdict::TimedOut) => {
                let err = Error::task_timed_out(timeout.unwrap_or_default());
                (err.with_worker(info), job)
            }
            (None, Verdict::Died(error)) => {
                let end = WorkerEnd {
                    status: reaped(&child),
                    error,
                };
                let err = Error::new(
                    ErrorKind::WorkerDied,
                    format!("{} while running this task", end.describe()),
                );
                (err.with_worker(info), job)
            }
        };
        if let Some(job) = job {
            let task = job.task;
            complete(job, Err(err.with_task(task).with_index(0)));
        }
    }
}

/// What a failed direct call means for its input.
enum Verdict {
    /// No fault of the input's (its worker ended before starting it, or
    /// answered nonsense): it runs the usual way.
    RunAgain,
    /// It ran past the task timeout.
    TimedOut,
    /// Its worker died running it, the connection ending with this error.
    Died(String),
}

/// Completes the job's cell with `outcome`, leaving the job empty so that
/// dropping it answers nothing more.
fn complete(mut job: Job, outcome: Outcome) {
    job.items.clear();
    if let Sink::Single(cell) = &job.sink {
        cell.complete(outcome);
    }
}

/// Writes `message`, waiting for room as long as `deadline` allows.
fn send(conn: &SharedConnection, message: &[u8], deadline: Option<Instant>) -> Result<(), Failure> {
    let ended = |err: connection::Error| Failure::Ended(format!("{err:#}"));
    let mut rest: Option<UnsentMessage> = conn.lock().try_send_bytes(message).map_err(ended)?;
    while let Some(unsent) = rest {
        wait(conn, true, deadline)?;
        rest = conn.lock().try_send_unsent(unsent).map_err(ended)?;
    }
    Ok(())
}

/// Receives the worker's next message, checking for it without blocking
/// for `spin` before it sleeps, until `deadline`. It waits before its
/// first read (unless the deadline passed): the reply is rarely there
/// yet right after the call went. With neither, it blocks in the read
/// (see `shared_conn` for why the lock may be held so long).
fn receive(
    conn: &SharedConnection,
    deadline: Option<Instant>,
    spin: Duration,
) -> Result<Vec<u8>, Failure> {
    let ended = |err: connection::Error| Failure::Ended(format!("{err:#}"));
    if deadline.is_none() && spin.is_zero() {
        match conn.lock().recv_bytes() {
            // A message `try_recv_bytes` began (a wait with a limit
            // that ended mid-message) is finished below instead.
            Err(err) if err.kind() == connection::ErrorKind::InvalidInput => {}
            received => return received.map_err(ended),
        }
    }
    // A call collected after its deadline (parked, its handle read late)
    // takes a reply that came meanwhile rather than failing it.
    let late = deadline.is_some_and(|at| Instant::now() >= at);
    let readable = || conn.wait(false, Some(Duration::ZERO)).unwrap_or(true);
    if !late && !crate::spin::spin_until(spin, readable) {
        wait(conn, false, deadline)?;
    }
    loop {
        match conn.lock().try_recv_bytes() {
            Ok(Some(message)) => return Ok(message),
            Ok(None) => {}
            Err(err) => return Err(ended(err)),
        }
        wait(conn, false, deadline)?;
    }
}

/// Waits for the socket until `deadline`; a wait that fails is the end
/// of the connection.
fn wait(conn: &SharedConnection, writable: bool, deadline: Option<Instant>) -> Result<(), Failure> {
    let left = deadline.map(|at| at.saturating_duration_since(Instant::now()));
    match left {
        Some(left) if left.is_zero() => Err(Failure::TimedOut),
        _ => conn
            .wait(writable, left)
            .map(drop)
            .map_err(|err| Failure::Ended(err.to_string())),
    }
}

/// The call's outcome from the worker's reply: its output (decoded by
/// the handle, as one that came the usual way) or its task's failure;
/// `None` if the reply is anything but the one result of the call.
fn read_reply(message: &Arc<Vec<u8>>, task: &'static str, info: WorkerInfo) -> Option<Outcome> {
    if !matches!(FromWorker::parse(message), Ok(FromWorker::Results(_)))
        || wire::is_partial(message)
    {
        return None;
    }
    let mut chunks = ResultChunks::of(message);
    let chunk = chunks.next()?;
    if chunk.id != wire::DIRECT_CHUNK || chunk.items != 1 || chunks.next().is_some() {
        return None;
    }
    // Nothing was recalled: giving the input back is no answer.
    outcome_of(ResultItems::of(message).next()?, message, task, 0, info)
}

/// What `pool-io` does with the first results of an adopted call's
/// worker: if they are the call's result, the handle gets it at once
/// (the dispatcher, which gets them too, finds it answered).
pub(crate) fn answer_early(call: &Call) -> Answer {
    let (task, info) = (call.job.task, call.worker.info);
    let cell = call.cell().map(Arc::clone);
    Box::new(move |message| {
        if let (Some(cell), Some(outcome)) = (cell, read_reply(message, task, info)) {
            cell.complete(outcome);
        }
    })
}

/// How the worker's process ended, once `pool-io` (or this) reaped it
/// within [`REAP_PATIENCE`].
fn reaped(child: &Mutex<std::process::Child>) -> Option<std::process::ExitStatus> {
    let give_up = Instant::now() + REAP_PATIENCE;
    loop {
        let status = child.lock().unwrap_or_else(|p| p.into_inner()).try_wait();
        match status {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < give_up => {
                std::thread::sleep(Duration::from_millis(2));
            }
            _ => return None,
        }
    }
}
