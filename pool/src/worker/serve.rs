//! The worker loop: what a worker process runs instead of the user's `main`.
//!
//! A worker reads batches of tasks, runs them in order, and answers with
//! batches of results. It replies as soon as nothing more is waiting for it,
//! or after [`FLUSH_CHUNKS`] results or [`FLUSH_AFTER`], whichever comes
//! first: under load many results share one message, and a slow task's
//! result is never held back behind the next task. A chunk that runs long
//! is answered in parts: every [`PARTIAL_AFTER`], between two inputs, the
//! results of its finished inputs go out, so that a map's progress (and
//! its results) move as inputs finish, whatever the chunk size.
//!
//! Between inputs, at most every [`RECALL_CHECK`], it looks for messages
//! that arrived meanwhile: a recall makes it give back the inputs of the
//! named chunks that it has not started (answered as `Returned`), so that
//! the pool can run them on an idle worker or drop them for a caller that
//! gave up; anything else is kept for later, in order.
//!
//! A remote worker may be told to leave by a signal (Slurm's warning before
//! its job's time limit: see `connect.rs`): between inputs, or while it
//! waits for work, it tells the pool so, gives back every input it has not
//! started (as over its memory budget) and waits to be told to quit.
//!
//! With the pool's spin (`PoolBuilder::spin`, sent in the setup message),
//! it checks for its next message without blocking for that long before
//! it blocks on it.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connection::Connection;

use crate::error::{Error, ErrorKind, Result};
use crate::inbox::Inbox;
use crate::spin;
use crate::state;
use crate::sys::{self, SharedCounter};
use crate::task::{self, FailureKind, RunEncoded, TaskEntry, TaskFailure};
use crate::wire::{
    Batch, BatchRecord, ChunkItem, ChunkRecord, FromWorker, Identity, Initializer, ResultsWriter,
    ToWorker, WireError,
};
use crate::worker::memory::{self, Budget};
use crate::worker::wake::Leave;

/// What a worker says when its pool went away without telling it to quit.
pub(crate) const POOL_GONE: &str =
    "the pool closed the connection without telling this worker to quit \
     (it was terminated, or its process died)";

/// What a remote worker says when its pool's host stopped answering: TCP
/// keepalive probes went unanswered (or the network said it is
/// unreachable). The pool may still run, cut off from this host.
pub(crate) const POOL_SILENT: &str =
    "the pool fell silent: its host stopped answering this worker's keepalive probes \
     (about 5 s without an answer; the network between them is cut, or that host is down)";
/// How often a worker running inputs looks for a recall.
const RECALL_CHECK: Duration = Duration::from_millis(1);

/// Reply once this many chunk results are waiting.
const FLUSH_CHUNKS: usize = 64;
/// Reply once the work behind the waiting results has taken this long.
const FLUSH_AFTER: Duration = Duration::from_micros(500);
/// Within a chunk, send the results of its finished inputs once the work
/// behind them has taken this long: often enough for a progress bar to
/// move smoothly, rarely enough (at most 20 messages a second per worker)
/// to cost nothing measurable.
const PARTIAL_AFTER: Duration = Duration::from_millis(50);

/// Runs the worker protocol on `conn` until the pool says quit, which is
/// `Ok`, or goes away without saying so, which is an error.
///
/// `remote` is what a remote worker adds (see [`Remote`]).
pub(crate) fn serve(
    conn: Connection,
    progress: Option<SharedCounter>,
    remote: Option<Remote>,
) -> Result<()> {
    let Remote {
        busy,
        leave,
        slurm_job,
    } = remote.unwrap_or_default();
    crate::role::become_worker();
    // Panics are caught and sent to the pool as the task's error, with
    // their location and backtrace, which the hook keeps for that;
    // printing them here too would only spam the pool's stderr.
    std::panic::set_hook(Box::new(task::note_panic));
    let mut worker = Worker {
        conn,
        progress,
        started: 0,
        tasks: Vec::new(),
        results: ResultsWriter::new(connection::DEFAULT_MAX_MESSAGE_SIZE),
        oldest_unsent: None,
        busy,
        early: VecDeque::new(),
        recalled: BTreeSet::new(),
        last_check: Instant::now(),
        budget: None,
        over_budget: false,
        leave,
        leaving: false,
        slurm_job,
        spin: Duration::ZERO,
    };
    // A small batch (a direct call's) costs one read instead of two. The
    // loop owns the socket, and every wait here asks `conn.poll` first,
    // which sees what was read ahead (`wait_for_message`).
    worker.conn.set_read_ahead(true);
    let id = worker.setup()?;
    // For a subscriber installed in this process (a worker program's own,
    // or one set up before `init` or by the initializer); without one this
    // span is disabled and costs nothing.
    let span = tracing::debug_span!("worker", id);
    let _entered = span.enter();
    let served = worker.run();
    // The worker retires: its per-worker state is dropped now, while the
    // process can still run destructors (`exit` would skip them).
    state::drop_all();
    served
}

/// A task number the pool defined: the task's name, and its function if
/// this program links it.
type KnownTask = (String, Option<RunEncoded>);

struct Worker {
    conn: Connection,
    progress: Option<SharedCounter>,
    /// Task items started so far, mirrored into `progress`.
    started: u64,
    /// Indexed by the pool's task numbers.
    tasks: Vec<KnownTask>,
    results: ResultsWriter,
    oldest_unsent: Option<Instant>,
    busy: Option<Arc<AtomicBool>>,
    /// Messages read while looking for recalls, to handle in order.
    early: VecDeque<Vec<u8>>,
    /// Chunks the pool recalled that this worker has not finished: a set,
    /// looked up for every input, that a pool's recalls may fill with as
    /// many ids as they carry.
    recalled: BTreeSet<u64>,
    /// When it last looked for recalls.
    last_check: Instant,
    /// The pool's soft memory budget, checked after every input.
    budget: Option<Budget>,
    /// Over the budget: every input not started is given back, until quit.
    over_budget: bool,
    /// Set by a signal handler when the worker is to leave.
    leave: Option<Leave>,
    /// The pool was told that the worker leaves: as over budget, every
    /// input not started is given back, until quit.
    leaving: bool,
    /// The Slurm job this worker runs in, told to the pool.
    slurm_job: Option<u64>,
    /// How long to check for the next message before blocking on it.
    spin: Duration,
}

/// What a remote worker adds to the loop.
#[derive(Default)]
pub(crate) struct Remote {
    /// Kept set while the worker runs tasks, for a watcher that must tell a
    /// pool gone mid-task from one gone while the worker waits (which the
    /// loop notices itself).
    pub(crate) busy: Option<Arc<AtomicBool>>,
    /// Set (by a signal handler) when the worker is to leave.
    pub(crate) leave: Option<Leave>,
    /// The Slurm job it runs in, which the pool follows.
    pub(crate) slurm_job: Option<u64>,
}

fn protocol(err: WireError) -> Error {
    Error::new(ErrorKind::Connection, "message from the pool").with_source(err)
}

impl Worker {
    /// Reads the setup message, runs the initializer and says ready;
    /// returns the pool's id for this worker.
    fn setup(&mut self) -> Result<u32> {
        let message = self
            .conn
            .recv_bytes()
            .map_err(|err| Error::from_connection(err, "wait for setup"))?;
        let ToWorker::Setup {
            worker_id,
            max_message_size,
            initializer,
            build_id,
            memory,
            spin,
        } = ToWorker::parse(&message).map_err(protocol)?
        else {
            return Err(Error::new(
                ErrorKind::Connection,
                "expected a setup message",
            ));
        };
        crate::fn_task::note_pool_build(build_id);
        // Both directions share one limit: what the pool may send here,
        // and what results may be sent back.
        self.conn.set_max_message_size(max_message_size);
        self.results = ResultsWriter::new(max_message_size);
        self.spin = spin;
        // Before the initializer, whose allocations count too.
        self.budget = memory::apply(memory)?;
        let reply = match initializer.map_or(Ok(()), run_initializer) {
            // Checked after the initializer, which may install a
            // subscriber: a worker that traces its tasks wants their input
            // indices; the others are spared the bytes.
            Ok(()) => FromWorker::Ready {
                pid: std::process::id(),
                wants_indices: tracing::enabled!(tracing::Level::DEBUG),
                slurm_job: self.slurm_job,
                identity: identity(build_id),
            },
            Err(failure) => FromWorker::SetupFailed(failure),
        };
        self.conn
            .send_bytes(&reply.encode())
            .map_err(|err| Error::from_connection(err, "send ready"))?;
        Ok(worker_id)
    }

    fn run(&mut self) -> Result<()> {
        let mut inbox = Inbox::default();
        loop {
            let early;
            let message = match self.early.pop_front() {
                Some(message) => {
                    early = message;
                    &early[..]
                }
                None => {
                    // An error is left for the receive to report.
                    let conn = &self.conn;
                    spin::spin_until(self.spin, || {
                        conn.poll(Some(Duration::ZERO)).unwrap_or(true)
                    });
                    self.wait_for_message()?;
                    inbox.receive(&mut self.conn).map_err(receive_error)?
                }
            };
            let mut direct = false;
            match ToWorker::parse(message).map_err(protocol)? {
                ToWorker::Batch(batch) => {
                    self.set_busy(true);
                    let ran = self.run_batch(batch);
                    self.set_busy(false);
                    direct = ran?;
                }
                ToWorker::Quit => return self.flush(),
                ToWorker::Denied { reason } => {
                    return Err(Error::new(ErrorKind::TaskMismatch, reason))
                }
                ToWorker::Recall { chunks } => self.recalled.extend(chunks),
                ToWorker::Setup { .. } => {
                    return Err(Error::new(
                        ErrorKind::Connection,
                        "a second setup message from the pool",
                    ))
                }
            }
            // A direct call's answer is all its caller waits for, and
            // nothing follows it: looking for more would only cost a
            // system call.
            if self.early.is_empty() && (direct || !self.more_waiting()?) {
                self.flush()?;
            }
        }
    }

    /// Waits until a message arrives; meanwhile, a worker that may be told
    /// to leave is woken by a leave signal too, and says so.
    fn wait_for_message(&mut self) -> Result<()> {
        if self.leave.is_none() {
            return Ok(());
        }
        loop {
            self.check_leave()?;
            // An error (the pool gone) shows in the receive that follows;
            // a message may wait in the connection's own buffer already.
            if self.leaving || self.conn.poll(Some(Duration::ZERO)).unwrap_or(true) {
                return Ok(());
            }
            let Some(leave) = &self.leave else {
                return Ok(());
            };
            // Sleeps until a message, the pool's end or a leave signal.
            match sys::readable_or_woken(&self.conn, leave.wake().readable()) {
                Ok((_, true)) => leave.wake().drain(),
                // A message (or the pool's end, which the receive
                // reports): looking again would only cost a system call
                // at every wake-up, thousands at once in a large cluster.
                Ok((true, false)) => return Ok(()),
                // A signal: its flag is looked at again.
                Ok((false, false)) => {}
                Err(_) => return Ok(()),
            }
        }
    }

    /// Tells the pool once that this worker leaves, if it was signalled to.
    fn check_leave(&mut self) -> Result<()> {
        if self.leaving || !self.leave.as_ref().is_some_and(Leave::is_set) {
            return Ok(());
        }
        self.leaving = true;
        self.conn
            .send_bytes(&FromWorker::Leaving.encode())
            .map_err(|err| Error::from_connection(err, "say this worker leaves"))
    }

    fn receive(&mut self) -> Result<Vec<u8>> {
        self.conn.recv_bytes().map_err(receive_error)
    }

    fn more_waiting(&self) -> Result<bool> {
        self.conn
            .poll(Some(Duration::ZERO))
            .map_err(|err| Error::from_connection(err, "poll"))
    }

    /// Reads whatever arrived while inputs ran: recalls take effect now,
    /// the rest waits its turn.
    fn look_for_recalls(&mut self) -> Result<()> {
        self.last_check = Instant::now();
        while self.more_waiting()? {
            let message = self.receive()?;
            match ToWorker::parse(&message).map_err(protocol)? {
                ToWorker::Recall { chunks } => self.recalled.extend(chunks),
                _ => self.early.push_back(message),
            }
        }
        Ok(())
    }

    /// Runs a batch; true if it was a direct call's
    /// ([`DIRECT_CHUNK`](crate::wire::DIRECT_CHUNK)).
    fn run_batch(&mut self, batch: Batch<'_>) -> Result<bool> {
        let mut direct = false;
        for record in batch.records() {
            match record.map_err(protocol)? {
                BatchRecord::DefineTask { number, name } => {
                    let number = checked_task_number(number)?;
                    if self.tasks.len() <= number {
                        self.tasks.resize(number + 1, (String::new(), None));
                    }
                    self.tasks[number] = (name.to_string(), task::find(name));
                }
                BatchRecord::Chunk(chunk) => {
                    // Outputs already waiting go before they could crowd
                    // this chunk's out of the message limit.
                    if self.results.is_half_full() {
                        self.flush()?;
                    }
                    let began = Instant::now();
                    // Counted from when the first unsent chunk began, so that
                    // a slow chunk is sent as soon as it ends.
                    let oldest = *self.oldest_unsent.get_or_insert(began);
                    direct = chunk.id == crate::wire::DIRECT_CHUNK;
                    self.run_chunk(chunk, began)?;
                    if self.results.chunks() >= FLUSH_CHUNKS || oldest.elapsed() >= FLUSH_AFTER {
                        self.flush()?;
                    }
                }
            }
        }
        Ok(direct)
    }

    fn run_chunk(&mut self, chunk: ChunkRecord<'_>, mut began: Instant) -> Result<()> {
        let task = chunk.task as usize;
        let run = self.tasks.get(task).and_then(|(_, run)| *run);
        // One check per chunk, so that untraced tasks pay nothing for spans.
        let traced = tracing::enabled!(tracing::Level::DEBUG);
        self.results.begin_chunk(chunk.id, chunk.items.remaining());
        for ChunkItem { index, input } in chunk.items {
            // One clock reading serves both checks: the budget's, for the
            // input before this one, is taken before this one starts.
            let now = Instant::now();
            if now.duration_since(self.last_check) >= RECALL_CHECK {
                self.look_for_recalls()?;
                self.send_finished_part(&mut began)?;
            }
            self.check_budget(now)?;
            self.check_leave()?;
            // Every input passed counts, so that the progress page keeps
            // numbering inputs as the pool sent them; only one about to
            // run is published there.
            self.started += 1;
            if self.over_budget || self.leaving || self.recalled.contains(&chunk.id) {
                self.results
                    .item(|_| Err(TaskFailure::new(FailureKind::Returned, "")));
                continue;
            }
            if let Some(progress) = &self.progress {
                progress.store(self.started);
            }
            let name = self.tasks.get(task).map_or("", |(name, _)| name.as_str());
            if traced {
                run_traced(&mut self.results, name, run, input, index, chunk.id);
            } else {
                self.results.item(|out| match run {
                    Some(run) => run(input, out),
                    None => Err(unknown_task(name)),
                });
            }
        }
        let ended = Instant::now();
        self.check_budget(ended)?;
        self.results
            .add_busy(ended.duration_since(began).as_nanos() as u64);
        // Chunks arrive in the order of their ids: a recall of this one or
        // an earlier one has done all it can (split off rather than
        // filtered, so that what a chunk costs does not grow with them).
        self.recalled = match chunk.id.checked_add(1) {
            Some(next) => self.recalled.split_off(&next),
            None => BTreeSet::new(),
        };
        Ok(())
    }

    /// Between inputs (`now`): a worker over its memory budget tells the
    /// pool, which recalls everything it holds and tells it to quit;
    /// meanwhile it gives back every input it has not started.
    fn check_budget(&mut self, now: Instant) -> Result<()> {
        let Some(resident) = self.budget.as_mut().and_then(|b| b.crossed(now)) else {
            return Ok(());
        };
        self.budget = None;
        self.over_budget = true;
        self.conn
            .send_bytes(&FromWorker::OverBudget { resident }.encode())
            .map_err(|err| Error::from_connection(err, "say the memory budget is crossed"))
    }

    /// Sends the results written so far, the running chunk's finished
    /// inputs included, once the oldest of them has waited
    /// [`PARTIAL_AFTER`]; the chunk's other inputs follow in later
    /// messages. `began` is when the running chunk's unsent work began.
    fn send_finished_part(&mut self, began: &mut Instant) -> Result<()> {
        if !self
            .oldest_unsent
            .is_some_and(|oldest| oldest.elapsed() >= PARTIAL_AFTER)
        {
            return Ok(());
        }
        let Some((chunk, left)) = self.results.end_partway() else {
            return Ok(());
        };
        let now = Instant::now();
        self.results
            .add_busy(now.duration_since(*began).as_nanos() as u64);
        self.flush()?;
        self.results.begin_chunk(chunk, left);
        *began = now;
        self.oldest_unsent = Some(now);
        Ok(())
    }

    fn set_busy(&self, busy: bool) {
        if let Some(flag) = &self.busy {
            flag.store(busy, Ordering::Relaxed);
        }
    }

    fn flush(&mut self) -> Result<()> {
        self.oldest_unsent = None;
        if self.results.chunks() == 0 {
            return Ok(());
        }
        let sent = self.conn.send_bytes(self.results.bytes());
        self.results.clear();
        sent.map_err(|err| Error::from_connection(err, "send results"))
    }
}

/// How many more task numbers than this program links a pool may use: the
/// tasks a pool sends that this worker program does not link (each of
/// their chunks fails with [`FailureKind::UnknownTask`]).
const MAX_UNLINKED_TASKS: usize = 1024;

/// `number` as an index into the worker's task table, if a pool could have
/// sent it: the table grows to the largest number, so a number from a
/// hostile pool must not size it.
///
/// A pool numbers its tasks 0, 1, 2, ... in the order it first sends them
/// to any of its workers, so a worker may learn of number 5 first, and the
/// count it was told of bounds nothing. What bounds them is the tasks the
/// pool can send: those this program links, and those it lacks, which a
/// worker program built for the pool does not lack by more than
/// [`MAX_UNLINKED_TASKS`].
fn checked_task_number(number: u32) -> Result<usize> {
    let linked = task::registry().len();
    let bound = linked + MAX_UNLINKED_TASKS;
    match usize::try_from(number) {
        Ok(index) if index < bound => Ok(index),
        _ => Err(Error::new(
            ErrorKind::Connection,
            format!(
                "the pool defined task number {number}, which no pool sends to this program: \
                 a pool numbers the tasks it sends from 0, and this program links {linked} \
                 tasks, so numbers stay below {bound} unless a pool sends over \
                 {MAX_UNLINKED_TASKS} tasks it does not link; this worker leaves the pool"
            ),
        )),
    }
}

/// Whether a socket error says the pool fell silent or out of reach,
/// rather than that it closed the connection.
pub(crate) fn is_silence(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::{HostUnreachable, NetworkUnreachable, TimedOut};
    matches!(kind, TimedOut | HostUnreachable | NetworkUnreachable)
}

fn receive_error(err: connection::Error) -> Error {
    match (err.kind(), err.io_error_kind()) {
        (connection::ErrorKind::Eof, _) => Error::from_connection(err, POOL_GONE),
        (_, Some(kind)) if is_silence(kind) => Error::from_connection(err, POOL_SILENT),
        _ => Error::from_connection(err, "receive tasks"),
    }
}

/// Runs one input inside its `task` span (DEBUG is enabled here); kept out
/// of line so that the untraced loop stays as it was.
#[cold]
#[inline(never)]
fn run_traced(
    results: &mut ResultsWriter,
    name: &str,
    run: Option<RunEncoded>,
    input: &[u8],
    index: Option<u64>,
    chunk: u64,
) {
    let span = tracing::debug_span!("task", task = name, index, chunk);
    let _entered = span.enter();
    results.item(|out| match run {
        Some(run) => run(input, out),
        None => Err(unknown_task(name)),
    });
}

fn unknown_task(name: &str) -> TaskFailure {
    TaskFailure::new(
        FailureKind::UnknownTask,
        format!(
            "`{name}` is not in this worker program's task table ({}): the linker keeps \
             only the tasks a program refers to; name the task in the worker program's \
             main, e.g. with `pool::link_tasks!({name});`, and rebuild it",
            std::env::current_exe()
                .map(|path| path.display().to_string())
                .unwrap_or_else(|_| "unknown path".into())
        ),
    )
}

/// Which build this worker runs, with its tasks unless that is the pool's
/// own build (`pool_build`), so that the pool can refuse a worker whose
/// tasks differ from its own (`parent::identity`).
fn identity(pool_build: &str) -> Identity<'static> {
    let same = sys::is_this_build(pool_build);
    Identity {
        build_id: sys::build_id(),
        program: sys::program_name(),
        tasks: (!same).then(|| task::TASKS.iter().map(TaskEntry::fingerprint).collect()),
    }
}

fn run_initializer(initializer: Initializer<'_>) -> std::result::Result<(), TaskFailure> {
    let run = task::find(initializer.name).ok_or_else(|| unknown_task(initializer.name))?;
    let mut discarded_output = Vec::new();
    run(initializer.input, &mut discarded_output)
}
