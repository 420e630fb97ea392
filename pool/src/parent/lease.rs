//! `Pool::apply`'s direct path: the caller borrows an idle worker (a
//! lease), writes the task to its socket itself and waits for the reply
//! on that socket, so that a request wakes two threads (the worker, then
//! the caller), as a raw round trip does, instead of five hand-overs
//! through the dispatcher and `pool-io`.
//!
//! The dispatcher offers the local workers it has nothing for ([`Leases::offer`]),
//! once their setup is done and where nothing it guarantees needs it
//! between two inputs (see `dispatcher/lending.rs`); a caller takes one
//! ([`Leases::take`]), which keeps `pool-io` from reading the worker's
//! socket for the call (`SharedConnection::lend`: the socket goes quiet
//! in its epoll set, and stays so until the dispatcher takes the worker
//! back, so that a run of direct calls changes the set once), and puts it back
//! among the idle ones afterwards without waking anybody, unless the
//! dispatcher asked to hear of it (it needs workers, or is closing) or the
//! worker was lost. The dispatcher takes its idle workers back before it
//! hands out work ([`Leases::reclaim`]), with the count of inputs each
//! ran meanwhile.
//!
//! Where a direct call cannot be made (no idle worker that knows the
//! task, an input too large to go at once, tracing on), the call takes
//! the usual way. What the dispatcher enforces for queued work holds for
//! a direct call too: the caller's wait ends at the task timeout (the
//! worker is killed), and on Ctrl-C or `terminate` the dispatcher kills
//! the lent worker after noting why ([`Leases::stop_lent`]), which ends
//! the wait with that error; a worker that dies running the input fails
//! the call with [`ErrorKind::WorkerDied`](crate::ErrorKind::WorkerDied)
//! (one that ends before it started the input, as its progress page
//! tells, or that answers with anything but the call's result, leaves
//! the input to the usual way, as a worker holding it unstarted would).

use std::collections::HashMap;
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use connection::UnsentMessage;
use crossbeam_channel::Sender;

use super::job::encode_input;
use super::shared_conn::SharedConnection;
use super::worker_reader::{Event, WorkerEnd};
use crate::error::{Error, ErrorKind, Result, WorkerInfo};
use crate::sys::{Poller, SharedCounter};
use crate::task::{FailureKind, Task};
use crate::wire::{self, BatchWriter, FromWorker, Indices, ItemResult, ResultChunks, ResultItems};

/// The largest encoded input sent directly: it goes into an idle
/// worker's empty socket buffer at once.
const MAX_DIRECT_INPUT: usize = 16 * 1024;

/// How long a caller whose worker died waits for `pool-io` to reap it,
/// to say how it ended.
const REAP_PATIENCE: Duration = Duration::from_millis(200);

/// An idle local worker the dispatcher offers for direct calls.
pub(crate) struct Lendable {
    pub(crate) id: u32,
    pub(crate) conn: SharedConnection,
    pub(crate) poller: Arc<Poller>,
    pub(crate) child: Arc<Mutex<Child>>,
    /// How many inputs the worker has started (its progress page).
    pub(crate) progress: Arc<SharedCounter>,
    pub(crate) info: WorkerInfo,
    /// The tasks the worker was told of, with their numbers.
    pub(crate) tasks: Vec<(&'static str, u32)>,
    pub(crate) indices: Indices,
    /// Inputs it ran while lent, since the dispatcher last had it.
    pub(crate) ran: u64,
}

/// A worker whose lease ended with its loss, for the dispatcher.
pub(crate) struct Lost {
    pub(crate) id: u32,
    pub(crate) ran: u64,
}

#[derive(Default)]
struct Inner {
    idle: Vec<Lendable>,
    /// The workers lent now, each with the error its call must end with
    /// once the dispatcher stopped it (Ctrl-C, `terminate`).
    lent: HashMap<u32, Option<Error>>,
    lost: Vec<Lost>,
    /// The dispatcher waits to hear of the next lease that ends.
    wanted: bool,
    /// No more leases (the pool closes or was terminated).
    closed: bool,
}

/// The workers offered for direct calls and those lent; shared by the
/// pool's callers and its dispatcher.
pub(crate) struct Leases {
    inner: Mutex<Inner>,
    /// Work sent to the dispatcher that it has not yet queued (and taken
    /// its idle workers back for): while there is any, no worker is lent,
    /// so that a direct call never overtakes work its caller (or anyone)
    /// submitted before it.
    unseen: AtomicUsize,
    /// Tells the dispatcher that a lease ended when it asked to know.
    events: Sender<Event>,
}

impl Leases {
    pub(crate) fn new(events: Sender<Event>) -> Leases {
        Leases {
            inner: Mutex::default(),
            unseen: AtomicUsize::new(0),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Offers an idle worker; given back if no more are lent.
    pub(crate) fn offer(&self, worker: Lendable) -> Option<Lendable> {
        let mut inner = self.lock();
        if inner.closed {
            return Some(worker);
        }
        inner.idle.push(worker);
        None
    }

    /// Takes back every idle worker offered, and the lost ones; if
    /// `want`, the next lease to end tells the dispatcher (with the
    /// taking back, so that none can end unheard in between).
    pub(crate) fn reclaim(&self, want: bool) -> (Vec<Lendable>, Vec<Lost>) {
        let mut inner = self.lock();
        inner.wanted |= want && !inner.lent.is_empty();
        let idle = std::mem::take(&mut inner.idle);
        for worker in &idle {
            worker.conn.unquiet(&worker.poller);
        }
        (idle, std::mem::take(&mut inner.lost))
    }

    /// Notes work on its way to the dispatcher: no lease until it is
    /// [`seen`](Self::seen).
    pub(crate) fn submitting(&self) {
        self.unseen.fetch_add(1, Ordering::SeqCst);
    }

    /// The dispatcher has queued `count` submissions, and taken back its
    /// offers if they brought work.
    pub(crate) fn seen(&self, count: usize) {
        if count > 0 {
            self.unseen.fetch_sub(count, Ordering::SeqCst);
        }
    }

    /// Lends no more, for good.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
    }

    /// A worker ended: it is no longer offered.
    pub(crate) fn forget(&self, worker: u32) {
        self.lock().idle.retain(|w| w.id != worker);
    }

    /// The workers lent now, whose calls end with `why()` once the
    /// dispatcher has killed them.
    pub(crate) fn stop_lent(&self, why: impl Fn() -> Error) -> Vec<u32> {
        let mut inner = self.lock();
        inner
            .lent
            .iter_mut()
            .map(|(id, stop)| {
                *stop = Some(why());
                *id
            })
            .collect()
    }

    /// An idle worker that knows `task`, lent to the caller, with the
    /// task's number.
    fn take(&self, task: &str) -> Option<(Lendable, u32)> {
        let mut inner = self.lock();
        if inner.closed || self.unseen.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let (at, number) = inner.idle.iter().enumerate().find_map(|(at, worker)| {
            let number = worker.tasks.iter().find(|(name, _)| *name == task)?.1;
            Some((at, number))
        })?;
        let worker = inner.idle.swap_remove(at);
        // Under the registry's lock, so that the dispatcher never sees
        // the worker neither idle nor lent.
        if !worker.conn.lend(&worker.poller) {
            // Its connection ended: `pool-io` reports it lost.
            return None;
        }
        inner.lent.insert(worker.id, None);
        Some((worker, number))
    }

    /// Ends a lease: the worker goes back among the idle ones, or if it
    /// was `lost` to the dispatcher. Returns why the dispatcher stopped
    /// it, if it did.
    fn give_back(&self, worker: Lendable, lost: bool) -> Option<Error> {
        worker.conn.end_lease(&worker.poller);
        let mut inner = self.lock();
        let stopped = inner.lent.remove(&worker.id).flatten();
        let tell = std::mem::take(&mut inner.wanted) || lost;
        if lost || stopped.is_some() {
            inner.lost.push(Lost {
                id: worker.id,
                ran: worker.ran,
            });
        } else {
            inner.idle.push(worker);
        }
        drop(inner);
        if tell {
            let _ = self.events.send(Event::LeaseEnded);
        }
        stopped
    }
}

/// How a direct call went wrong.
enum Failure {
    /// The connection ended or failed: the worker is gone.
    Ended(String),
    TimedOut,
    /// The worker sent something other than the call's result: it is
    /// killed, and the input runs the usual way.
    Garbled,
}

/// Runs `task` on `input` on an idle worker directly, if one can take it;
/// `None` if the call must take the usual way.
pub(crate) fn apply<T: Task>(
    leases: &Leases,
    input: &T::Input,
    max_message_size: u64,
    timeout: Option<Duration>,
    spin: Duration,
) -> Option<Result<T::Output>> {
    // Traced calls take the usual way, which gives each input its span.
    if tracing::enabled!(tracing::Level::DEBUG) {
        return None;
    }
    let item = encode_input::<T>(input, 0, max_message_size).ok()?;
    if item.input().len() > MAX_DIRECT_INPUT {
        return None;
    }
    let (mut worker, number) = leases.take(T::NAME)?;
    let mut batch = BatchWriter::new();
    let inputs = std::iter::once((0, item.input()));
    batch.chunk(wire::DIRECT_CHUNK, number, worker.indices, inputs);
    let deadline = timeout.map(|t| Instant::now() + t);
    let started_before = worker.progress.load();
    let reply = send(&worker.conn, batch.bytes(), deadline)
        .and_then(|()| receive(&worker.conn, deadline, spin))
        .and_then(|message| read_reply::<T>(&message, worker.info).ok_or(Failure::Garbled));
    worker.ran += 1;
    let outcome = match reply {
        Ok(output) => {
            return match leases.give_back(worker, false) {
                Some(stopped) => Some(Err(stopped.with_task(T::NAME).with_index(0))),
                None => Some(output),
            };
        }
        Err(failure) => failure,
    };
    let info = worker.info;
    let child = Arc::clone(&worker.child);
    // A worker that ended before it started the input (it died idle, say)
    // is no fault of the input's: it runs the usual way, as an input a
    // worker held unstarted does.
    let started = worker.progress.load() != started_before;
    if !matches!(outcome, Failure::Ended(_)) {
        // std's kill does nothing once the child was reaped.
        let _ = child.lock().unwrap_or_else(|p| p.into_inner()).kill();
    }
    let stopped = leases.give_back(worker, true);
    let err = match (stopped, outcome) {
        (Some(stopped), _) => stopped,
        (None, Failure::Garbled) => return None,
        (None, Failure::Ended(_)) if !started => return None,
        (None, Failure::TimedOut) => Error::new(
            ErrorKind::Timeout,
            format!(
                "ran longer than {:?}; its worker was killed",
                timeout.unwrap_or_default()
            ),
        ),
        (None, Failure::Ended(error)) => {
            let end = WorkerEnd {
                status: reaped(&child),
                error,
            };
            Error::new(
                ErrorKind::WorkerDied,
                format!("{} while running this task", end.describe()),
            )
        }
    };
    Some(Err(err.with_worker(info).with_task(T::NAME).with_index(0)))
}

/// Writes `message`, waiting for room as long as `deadline` allows.
fn send(
    conn: &SharedConnection,
    message: &[u8],
    deadline: Option<Instant>,
) -> std::result::Result<(), Failure> {
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
/// first read: the reply is never there yet right after the call went.
fn receive(
    conn: &SharedConnection,
    deadline: Option<Instant>,
    spin: Duration,
) -> std::result::Result<Vec<u8>, Failure> {
    let readable = || conn.wait(false, Some(Duration::ZERO)).unwrap_or(true);
    if !crate::spin::spin_until(spin, readable) {
        wait(conn, false, deadline)?;
    }
    loop {
        match conn.lock().try_recv_bytes() {
            Ok(Some(message)) => return Ok(message),
            Ok(None) => {}
            Err(err) => return Err(Failure::Ended(format!("{err:#}"))),
        }
        wait(conn, false, deadline)?;
    }
}

/// Waits for the socket until `deadline`; a wait that fails is the end
/// of the connection.
fn wait(
    conn: &SharedConnection,
    writable: bool,
    deadline: Option<Instant>,
) -> std::result::Result<(), Failure> {
    let left = deadline.map(|at| at.saturating_duration_since(Instant::now()));
    match left {
        Some(left) if left.is_zero() => Err(Failure::TimedOut),
        _ => conn
            .wait(writable, left)
            .map(drop)
            .map_err(|err| Failure::Ended(err.to_string())),
    }
}

/// The call's output (or its task's failure) from the worker's reply;
/// `None` if the reply is anything but the one result of the call.
fn read_reply<T: Task>(message: &[u8], info: WorkerInfo) -> Option<Result<T::Output>> {
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
    Some(match ResultItems::of(message).next()? {
        ItemResult::Output(range) => connection::decode(&message[range]).map_err(|err| {
            Error::from_connection(err, "decode the task's output")
                .with_task(T::NAME)
                .with_index(0)
        }),
        // Nothing was recalled: giving the input back is no answer.
        ItemResult::Failed {
            kind: FailureKind::Returned,
            ..
        } => return None,
        ItemResult::Failed {
            kind,
            message,
            panic,
        } => Err(wire::failure_error(kind, message, panic)
            .with_task(T::NAME)
            .with_index(0)
            .with_worker(info)),
    })
}

/// How the worker's process ended, once `pool-io` (or this) reaped it
/// within [`REAP_PATIENCE`].
fn reaped(child: &Mutex<Child>) -> Option<std::process::ExitStatus> {
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
