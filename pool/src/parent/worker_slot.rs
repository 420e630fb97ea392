//! The dispatcher's view of one worker: its connection, the chunks it
//! holds in order, and how far it has got through them. The slot keeps its
//! own books; the dispatcher decides what to give it and asks it what it
//! holds.

use std::collections::{HashMap, VecDeque};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::Span;

use super::in_flight::InFlight;
use super::job::{Item, Job};
use super::lease::Lendable;
use super::outbox::Outbox;
use super::shared_conn::SharedConnection;
use super::sink::{outcome_of, Channel, Deliveries, Sink};
use super::trace;
use crate::error::{Error, WorkerInfo};
use crate::sys::{Poller, SharedCounter};
use crate::wire::{self, BatchWriter, Indices, ResultChunks, ResultItems, ToWorker};

/// A chunk of one input from this size up goes to its worker as a message
/// of its own, straight from the input's buffer, rather than copied into a
/// batch (when its buffer kept room for the header: see
/// [`Item::with_header`]).
const LONE_INPUT_MIN: usize = 64 << 10;

/// How a worker is reached and ended.
pub(crate) enum Process {
    Local {
        child: Arc<Mutex<Child>>,
        progress: Arc<SharedCounter>,
    },
    Remote {
        peer: String,
        /// The pid it gave in its ready message: a claim nobody checked
        /// (any peer with the key can send any number), shown for the
        /// operator's sake and never signalled.
        claimed_pid: Option<u32>,
        /// The Slurm job it said it runs in: a claim as well, which only
        /// decides when the pool cuts this worker off (when that job ends).
        slurm_job: Option<u64>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Started; the pool waits for its ready message until the deadline.
    Starting {
        deadline: Instant,
    },
    Ready,
    /// Told to quit (closing, or replaced after max_tasks_per_child).
    Retiring,
    /// Killed (timeout, interrupt, terminate); its work was handed back.
    Doomed,
}

/// The input a worker was running when it was stopped.
pub(crate) struct Culprit {
    pub(crate) item: Item,
    pub(crate) task: &'static str,
    pub(crate) sink: Sink,
    /// Its `task` span (disabled if untraced).
    pub(crate) span: Span,
}

impl Culprit {
    /// The input as a job of its own, to run again; its span ends as
    /// requeued.
    pub(crate) fn requeued(self) -> Job {
        trace::record_requeued(&self.span);
        Job {
            task: self.task,
            items: vec![self.item],
            sink: self.sink,
        }
    }
}

/// Everything taken back from a stopped worker.
pub(crate) struct TakenBack {
    /// The input it was running, if it was running one.
    pub(crate) culprit: Option<Culprit>,
    /// The inputs it held and had not started, in order.
    pub(crate) unstarted: Vec<Job>,
}

/// What a worker holds and has not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    pub(crate) chunks: usize,
    pub(crate) items: u64,
    pub(crate) bytes: usize,
}

/// A worker's results did not line up with the chunks it was sent: what
/// it sent.
#[derive(Debug)]
pub(crate) struct Misaligned(pub(crate) String);

/// What [`WorkerSlot::check_results`] found a results message to answer.
struct Checked {
    /// The chunks it answers, from the first in flight.
    chunks: usize,
    /// The inputs it answers.
    items: u64,
    /// For a partial message, how many inputs of its last chunk it answers.
    part: Option<u64>,
}

/// What a results message answered.
pub(crate) struct Answered {
    /// Inputs the worker gave back unstarted (after a recall).
    pub(crate) returned: Vec<Job>,
    /// How many inputs the message answered.
    pub(crate) items: u64,
}

pub(crate) struct WorkerSlot {
    id: u32,
    /// The process id of a local worker, as the pool started it; none for
    /// a remote one (see [`Process::Remote`]).
    pid: Option<u32>,
    process: Process,
    /// The worker's connection, shared with the I/O thread; written only
    /// through `outbox`.
    conn: SharedConnection,
    outbox: Outbox,
    state: State,
    in_flight: VecDeque<InFlight>,
    load: Load,
    /// Inputs ever sent to / answered by this worker.
    items_sent: u64,
    items_answered: u64,
    /// Which of the pool's task numbers this worker has been told about.
    known_tasks: Vec<bool>,
    /// The input the worker is running and since when the pool knows it.
    watch: Option<(u64, Instant)>,
    batch: BatchWriter,
    /// The largest message the worker accepts: a batch is sent before a
    /// chunk would take it past this.
    max_message_size: u64,
    /// The worker traces its tasks: its chunks carry their input indices.
    indices: Indices,
    /// Offered or lent to a caller for direct calls (see `lease`): not the
    /// dispatcher's to give work until it is taken back.
    lent: bool,
}

impl WorkerSlot {
    /// A worker that was just started (or joined) and is not yet ready.
    pub(crate) fn starting(
        id: u32,
        pid: Option<u32>,
        process: Process,
        conn: SharedConnection,
        outbox: Outbox,
        deadline: Instant,
        max_message_size: u64,
    ) -> WorkerSlot {
        WorkerSlot {
            id,
            pid,
            process,
            conn,
            outbox,
            state: State::Starting { deadline },
            in_flight: VecDeque::new(),
            load: Load {
                chunks: 0,
                items: 0,
                bytes: 0,
            },
            items_sent: 0,
            items_answered: 0,
            known_tasks: Vec::new(),
            watch: None,
            batch: BatchWriter::new(),
            max_message_size,
            indices: Indices::Omitted,
            lent: false,
        }
    }

    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id,
            pid: self.pid,
            claimed_pid: self.claimed_pid(),
        }
    }

    /// The Slurm job a remote worker claims to run in, once it said so.
    pub(crate) fn slurm_job(&self) -> Option<u64> {
        match &self.process {
            Process::Remote { slurm_job, .. } => *slurm_job,
            Process::Local { .. } => None,
        }
    }

    /// The pid a remote worker claims to have, once it said so.
    pub(crate) fn claimed_pid(&self) -> Option<u32> {
        match &self.process {
            Process::Remote { claimed_pid, .. } => *claimed_pid,
            Process::Local { .. } => None,
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        matches!(self.state, State::Starting { .. } | State::Ready)
    }

    pub(crate) fn is_local(&self) -> bool {
        matches!(self.process, Process::Local { .. })
    }

    /// The address of a remote worker.
    pub(crate) fn peer(&self) -> Option<&str> {
        match &self.process {
            Process::Remote { peer, .. } => Some(peer),
            Process::Local { .. } => None,
        }
    }

    pub(crate) fn load(&self) -> Load {
        self.load
    }

    pub(crate) fn items_sent(&self) -> u64 {
        self.items_sent
    }

    /// The worker as a caller may borrow it (see `lease`): a local worker
    /// that is ready, holds nothing, and has nothing queued on its way.
    pub(crate) fn lendable(
        &self,
        task_numbers: &HashMap<&'static str, u32>,
        poller: &Arc<Poller>,
    ) -> Option<Lendable> {
        let Process::Local { child, progress } = &self.process else {
            return None;
        };
        if self.state != State::Ready || self.load.chunks > 0 || self.outbox.is_backed_up() {
            return None;
        }
        let known = |number: u32| self.known_tasks.get(number as usize) == Some(&true);
        Some(Lendable {
            id: self.id,
            conn: self.conn.clone(),
            poller: Arc::clone(poller),
            child: Arc::clone(child),
            progress: Arc::clone(progress),
            info: self.info(),
            tasks: task_numbers
                .iter()
                .filter(|(_, number)| known(**number))
                .map(|(name, number)| (*name, *number))
                .collect(),
            indices: self.indices,
            ran: 0,
        })
    }

    /// Whether the worker is offered or lent to callers (see `lease`).
    pub(crate) fn is_lent(&self) -> bool {
        self.lent
    }

    /// Notes that the worker was offered to callers (`true`), or taken
    /// back (`false`).
    pub(crate) fn set_lent(&mut self, lent: bool) {
        self.lent = lent;
    }

    /// Counts the inputs the worker ran while lent, each started and
    /// answered, so that the next it is sent are numbered after them.
    pub(crate) fn count_lent(&mut self, ran: u64) {
        self.items_sent += ran;
        self.items_answered += ran;
    }

    /// The worker said it is ready, claiming the pid `claimed_pid`: kept
    /// as a claim for a remote worker, and ignored for a local one, whose
    /// pid the pool knows. Returns false if it was not starting (a late
    /// message from a worker already given up on).
    pub(crate) fn mark_ready(
        &mut self,
        claimed_pid: u32,
        job: Option<u64>,
        wants_indices: bool,
    ) -> bool {
        if !matches!(self.state, State::Starting { .. }) {
            return false;
        }
        self.state = State::Ready;
        if let Process::Remote {
            claimed_pid: claim,
            slurm_job,
            ..
        } = &mut self.process
        {
            *claim = Some(claimed_pid);
            *slurm_job = job;
        }
        self.indices = match wants_indices {
            true => Indices::Sent,
            false => Indices::Omitted,
        };
        true
    }

    /// Adds `job` to the batch the worker gets next, as chunk `chunk_id`
    /// of the pool's task number `task`.
    pub(crate) fn push_chunk(&mut self, chunk_id: u64, task: u32, mut job: Job) {
        let items = job.items.len() as u64;
        let bytes = job.input_bytes();
        // A chunk of one large input whose buffer kept room for a header
        // goes as a message of its own; others join the batch.
        let lone = job.items.len() == 1
            && bytes >= LONE_INPUT_MIN
            && job.items[0].has_room(wire::LONE_CHUNK_ROOM);
        // What the batch gains: the whole chunk, or for a lone input only
        // its task's definition, which goes in the batch sent before it.
        let joining = match lone {
            true => wire::chunk_overhead(job.task, 0),
            false => job.wire_size(),
        };
        if (self.batch.len() + joining) as u64 > self.max_message_size {
            self.send_batch();
        }
        let number = task as usize;
        if self.known_tasks.len() <= number {
            self.known_tasks.resize(number + 1, false);
        }
        if !self.known_tasks[number] {
            self.known_tasks[number] = true;
            self.batch.define_task(task, job.task);
        }
        if !(lone && self.send_lone(chunk_id, task, &mut job)) {
            let inputs = job.items.iter().map(|i| (i.index, i.input()));
            self.batch.chunk(chunk_id, task, self.indices, inputs);
        }
        // One check per chunk: untraced, a chunk costs no span at all.
        let spans = if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                worker = self.id,
                chunk = chunk_id,
                task = job.task,
                items,
                "chunk sent"
            );
            job.items
                .iter()
                .map(|item| trace::task_span(job.task, item.index, self.id, chunk_id))
                .collect()
        } else {
            Vec::new()
        };
        self.hold(chunk_id, job, spans);
    }

    /// Counts `job`, which a caller sent the worker as chunk `chunk_id` of
    /// the pool's task number `task` while it was lent to them (see
    /// `direct_call`), as a chunk it holds.
    pub(crate) fn adopt_chunk(&mut self, chunk_id: u64, task: u32, job: Job) {
        let number = task as usize;
        if self.known_tasks.len() <= number {
            self.known_tasks.resize(number + 1, false);
        }
        self.known_tasks[number] = true;
        self.hold(chunk_id, job, Vec::new());
    }

    /// Counts `job` as chunk `chunk_id`, the next the worker holds.
    fn hold(&mut self, chunk_id: u64, job: Job, spans: Vec<Span>) {
        let items = job.items.len() as u64;
        let bytes = job.input_bytes();
        let first_seq = self.items_sent + 1;
        self.items_sent += items;
        self.load.chunks += 1;
        self.load.items += items;
        self.load.bytes += bytes;
        self.in_flight
            .push_back(InFlight::new(chunk_id, job, bytes, first_seq, spans));
    }

    /// Sends a chunk of one large input as a message of its own, straight
    /// from the buffer the input was encoded into (its header written in
    /// the room kept in front of it), after the batch built so far, so
    /// that the input is not copied into the batch first. False, with
    /// nothing sent, if its buffer has no room for the header (checked
    /// before: see [`Item::has_room`]).
    fn send_lone(&mut self, chunk_id: u64, task: u32, job: &mut Job) -> bool {
        let Some(item) = job.items.first_mut() else {
            return false;
        };
        let header =
            wire::lone_chunk_header(chunk_id, task, self.indices, item.index, item.input().len());
        let Some(message) = item.with_header(&header) else {
            return false;
        };
        // The batch holds anything sent before, and the task's definition.
        if !self.batch.is_empty() {
            self.outbox.send(self.id, &self.conn, self.batch.bytes());
            self.batch.clear();
        }
        self.outbox.send(self.id, &self.conn, message);
        true
    }

    /// Asks the worker to give back the inputs it has not started of the
    /// chunks that `which` picks (by position, 0 being the one it runs or
    /// runs next) among those not asked for already. They come back with
    /// the worker's results, answered as `Returned`; see
    /// [`complete_chunks`](WorkerSlot::complete_chunks). Returns how many
    /// chunks were asked for.
    pub(crate) fn recall(&mut self, which: impl Fn(usize, &Job) -> bool) -> usize {
        let chunks: Vec<u64> = self
            .in_flight
            .iter_mut()
            .enumerate()
            .filter(|(position, chunk)| !chunk.recalled && which(*position, &chunk.job))
            .map(|(_, chunk)| {
                chunk.recalled = true;
                chunk.id
            })
            .collect();
        let count = chunks.len();
        if count > 0 {
            tracing::debug!(worker = self.id, ?chunks, "chunks recalled");
            let message = ToWorker::Recall { chunks }.encode();
            self.outbox.send(self.id, &self.conn, &message);
        }
        count
    }

    /// How many inputs the worker holds beyond the chunk it runs (or runs
    /// next), not counting chunks already recalled: what an idle worker
    /// could take over.
    pub(crate) fn spare_items(&self) -> u64 {
        self.in_flight
            .iter()
            .skip(1)
            .filter(|chunk| !chunk.recalled)
            .map(|chunk| chunk.items)
            .sum()
    }

    /// Whether the input the worker is running belongs to a caller who
    /// asked for it to be stopped.
    pub(crate) fn runs_input_to_stop(&self) -> bool {
        let Some(running) = self.running_seq() else {
            return false;
        };
        self.in_flight
            .iter()
            .find(|chunk| chunk.holds_seq(running))
            .is_some_and(|chunk| chunk.job.sink.wants_running_stopped())
    }

    /// Whether the worker holds an input, running or not, whose caller
    /// asked for it to be stopped.
    pub(crate) fn holds_input_to_stop(&self) -> bool {
        self.in_flight
            .iter()
            .any(|chunk| chunk.job.sink.wants_running_stopped())
    }

    /// The results channel of the first chunk in flight, if it belongs to
    /// a `map` or `imap` call: the call the worker's next results answer.
    pub(crate) fn front_channel(&self) -> Option<Arc<Channel>> {
        match &self.in_flight.front()?.job.sink {
            Sink::Channel(channel) => Some(Arc::clone(channel)),
            Sink::Single(_) => None,
        }
    }

    /// Whether chunks wait in the worker's batch, to go with `send_batch`.
    pub(crate) fn has_batch(&self) -> bool {
        !self.batch.is_empty()
    }

    /// Sends the batch built up for the worker, if any, and starts the next.
    pub(crate) fn send_batch(&mut self) {
        if !self.batch.is_empty() {
            self.outbox.send(self.id, &self.conn, self.batch.bytes());
            self.batch.clear();
        }
    }

    /// Hands the results of a results message to their callers, chunk by
    /// chunk in the order the chunks were sent, and returns the inputs the
    /// worker gave back unstarted (after a recall), to run elsewhere, and
    /// how many inputs it answered. A partial message ([`wire::is_partial`])
    /// answers its last chunk in part: the chunk stays in flight with the
    /// rest of its inputs.
    ///
    /// The message is first checked against the chunks in flight, reading
    /// only its headers in place: nothing is made of its items, and
    /// nothing is delivered, unless every chunk in it is the next one in
    /// flight with as many items as it has unanswered (fewer, and some,
    /// for the last chunk of a partial message). Otherwise the worker is
    /// no longer to be trusted, and [`Misaligned`] says what it sent.
    pub(crate) fn complete_chunks(
        &mut self,
        message: &Arc<Vec<u8>>,
        deliveries: &mut Deliveries,
    ) -> Result<Answered, Misaligned> {
        let checked = self.check_results(message)?;
        let mut returned = Vec::new();
        let info = self.info();
        // Checked: the message's items are those of its first `chunks`
        // chunks in flight, in order, as many for each as it has
        // unanswered, but for a part of the last.
        let mut results = ResultItems::of(message);
        for position in 0..checked.chunks {
            let Some(chunk) = self.in_flight.front_mut() else {
                break;
            };
            let count = match checked.part {
                Some(part) if position + 1 == checked.chunks => part,
                _ => chunk.items,
            };
            self.load.items -= count;
            self.items_answered += count;
            let (inputs, spans) = chunk.take_answered(count);
            let done = chunk.items == 0;
            if done {
                self.load.chunks -= 1;
                self.load.bytes -= chunk.bytes;
            }
            let task = chunk.job.task;
            if tracing::enabled!(tracing::Level::DEBUG) {
                tracing::debug!(
                    worker = self.id,
                    chunk = chunk.id,
                    task,
                    items = inputs.len(),
                    "{}",
                    if done {
                        "chunk done"
                    } else {
                        "chunk part done"
                    }
                );
            }
            let mut spans = spans.into_iter();
            let mut given_back = Vec::new();
            // Inputs answered early (an interrupt) are gone from the job:
            // their results are passed over.
            let mut chunk_results = results.by_ref().take(count as usize);
            for (item, result) in inputs.into_iter().zip(&mut chunk_results) {
                let span = spans.next();
                let Some(outcome) = outcome_of(result, message, task, item.index, info) else {
                    if let Some(span) = span {
                        trace::record_requeued(&span);
                    }
                    given_back.push(item);
                    continue;
                };
                // None unless the chunk was sent with DEBUG enabled. The
                // span stays entered while the result is handed over and
                // closes right after.
                let _entered = span.as_ref().map(|span| {
                    trace::record_outcome(span, &outcome);
                    span.enter()
                });
                deliveries.push(&chunk.job.sink, item.index, outcome);
                if let Sink::Channel(stream) = &chunk.job.sink {
                    stream.give_back(item.into_buffer());
                }
            }
            chunk_results.for_each(drop);
            if !given_back.is_empty() {
                returned.push(Job {
                    task,
                    items: given_back,
                    sink: chunk.job.sink.clone(),
                });
            }
            if done {
                self.in_flight.pop_front();
            }
        }
        Ok(Answered {
            returned,
            items: checked.items,
        })
    }

    /// Checks that a results message answers at least one chunk, that each
    /// of its chunks is the next one in flight, in order, with as many
    /// items as it has unanswered (for the last chunk of a partial
    /// message, fewer, at least one), and that inputs come back unstarted
    /// only from chunks recalled (a worker that returns others would have
    /// them sent round again for ever).
    fn check_results(&self, message: &[u8]) -> Result<Checked, Misaligned> {
        let partial = wire::is_partial(message);
        let mut in_flight = self.in_flight.iter();
        let mut checked = Checked {
            chunks: 0,
            items: 0,
            part: None,
        };
        let mut results = ResultChunks::of(message);
        // Each chunk's header is judged before its items are read, so that
        // reading them costs no more than the inputs sent: a forged chunk
        // of a billion items is refused for its header alone.
        while let Some((id, count)) = results.peek_header() {
            let Some(expected) = in_flight.next() else {
                return Err(Misaligned(match self.in_flight.len() {
                    0 => format!("results for chunk {id} while it holds no chunk"),
                    held => {
                        format!("results for chunk {id} after those of all {held} chunks it holds")
                    }
                }));
            };
            if id != expected.id {
                let why = match self.in_flight.iter().any(|c| c.id == id) {
                    true => "out of order",
                    false => "which it does not hold (never sent to it, or answered already)",
                };
                return Err(Misaligned(format!(
                    "results for chunk {id} {why}, where chunk {} was next",
                    expected.id
                )));
            }
            let count = u64::from(count);
            if count > expected.items {
                return Err(Misaligned(format!(
                    "{count} results for chunk {id} of {} inputs",
                    expected.items
                )));
            }
            let Some(chunk) = results.next() else {
                break;
            };
            // Only the last chunk of a partial message may be answered in part.
            let in_part = partial && results.peek_header().is_none();
            if in_part && !(1..expected.items).contains(&count) {
                return Err(Misaligned(format!(
                    "a part of {count} results for chunk {id} with {} inputs unanswered",
                    expected.items
                )));
            }
            if !in_part && count != expected.items {
                return Err(Misaligned(format!(
                    "{count} results for chunk {id} of {} inputs",
                    expected.items
                )));
            }
            if chunk.gives_back && !expected.recalled {
                return Err(Misaligned(format!(
                    "inputs of chunk {id} given back unstarted, unasked"
                )));
            }
            checked.chunks += 1;
            checked.items += count;
            checked.part = in_part.then_some(count);
        }
        // A worker sends results only when it has some: an empty message
        // answers nothing, and a stream of them would only keep the pool busy.
        if checked.chunks == 0 {
            return Err(Misaligned("a results message answering no chunk".into()));
        }
        Ok(checked)
    }

    /// Fails every input the worker holds with errors made by `error`; the
    /// chunks stay in place, so the worker's later results still line up
    /// (and are dropped, their inputs being answered).
    pub(crate) fn fail_in_flight(&mut self, error: impl Fn() -> Error) {
        for in_flight in &mut self.in_flight {
            in_flight.fail_all(&error);
        }
    }

    /// The number of the input the worker is running, if it is running one.
    ///
    /// A local worker says so in its shared progress page before starting
    /// each input. A remote one cannot, so the oldest unanswered input is
    /// taken to be the one running: exact unless the worker had finished
    /// some inputs and not yet sent their results.
    fn running_seq(&self) -> Option<u64> {
        let started = match &self.process {
            Process::Local { progress, .. } => progress.load(),
            Process::Remote { .. } if self.load.items > 0 => self.items_answered + 1,
            Process::Remote { .. } => self.items_answered,
        };
        (started > self.items_answered).then_some(started)
    }

    /// Whether the input the worker is running has been running for
    /// `timeout`, as seen from the calls to this method (which start the
    /// clock when they first see an input running).
    pub(crate) fn overran(&mut self, timeout: Duration, now: Instant) -> bool {
        match (self.running_seq(), self.watch) {
            (None, _) => {
                self.watch = None;
                false
            }
            (Some(seq), Some((watched, since))) if seq == watched => now - since >= timeout,
            (Some(seq), _) => {
                self.watch = Some((seq, now));
                false
            }
        }
    }

    /// Tells the worker to finish and exit.
    pub(crate) fn retire(&mut self) {
        self.state = State::Retiring;
        self.outbox
            .send(self.id, &self.conn, &ToWorker::Quit.encode());
    }

    /// Tells the worker why it is refused, if its socket takes that at
    /// once (never waiting for it), and ends it.
    pub(crate) fn deny(&mut self, reason: &str) {
        let _ = self
            .conn
            .lock()
            .try_send_bytes(&ToWorker::Denied { reason }.encode());
        self.kill();
    }

    /// Ends the worker at once: SIGKILL for a local one, shutting the
    /// connection for a remote one. The I/O thread reports the end.
    pub(crate) fn kill(&mut self) {
        self.state = State::Doomed;
        match &self.process {
            Process::Local { child, .. } => {
                // std's kill does nothing once the child was reaped, so a
                // recycled pid is never hit.
                let _ = child.lock().unwrap_or_else(|p| p.into_inner()).kill();
                // Its death ends a pending send too, unless something else
                // holds its end of the socket open (a process it forked).
                if self.outbox.is_backed_up() {
                    self.conn.shut_down();
                }
            }
            Process::Remote { .. } => {
                self.conn.shut_down();
            }
        }
    }

    /// Shuts the worker's connection down, whoever reads it.
    pub(crate) fn shut_down(&self) {
        self.conn.shut_down();
    }

    /// Takes back every input the worker holds, blaming the one it was
    /// running (if any). The spans of the others end as requeued; the
    /// running one's goes with it.
    pub(crate) fn take_back(&mut self) -> TakenBack {
        let running = self.running_seq();
        let mut culprit = None;
        let mut unstarted = Vec::new();
        for mut in_flight in self.in_flight.drain(..) {
            let (items, spans) = in_flight.take_unanswered();
            let mut spans = spans.into_iter();
            let mut keep = Vec::with_capacity(items.len());
            for (offset, item) in items.into_iter().enumerate() {
                let span = spans.next();
                if Some(in_flight.first_seq + offset as u64) == running {
                    culprit = Some(Culprit {
                        item,
                        task: in_flight.job.task,
                        sink: in_flight.job.sink.clone(),
                        span: span.unwrap_or_else(Span::none),
                    });
                } else {
                    if let Some(span) = span {
                        trace::record_requeued(&span);
                    }
                    keep.push(item);
                }
            }
            if !keep.is_empty() {
                unstarted.push(Job {
                    task: in_flight.job.task,
                    items: keep,
                    sink: in_flight.job.sink.clone(),
                });
            }
        }
        self.load = Load {
            chunks: 0,
            items: 0,
            bytes: 0,
        };
        self.watch = None;
        TakenBack { culprit, unstarted }
    }
}

/// The worker is gone or being killed: what the I/O thread still holds
/// for it is given up (see `Outbox::close`).
impl Drop for WorkerSlot {
    fn drop(&mut self) {
        self.outbox.close(&self.conn);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::parent::job::encode_item;
    use crate::parent::sink::{Delivery, ResultCell};
    use crate::parent::worker_io::{NewWorker, WorkerIo};
    use crate::task::{FailureKind, Task};

    crate::task! {
        fn first(x: serde_bytes::ByteBuf) -> usize { x.len() }
    }

    crate::task! {
        fn a_second_task_with_a_long_name(x: serde_bytes::ByteBuf) -> usize { x.len() }
    }

    /// A slot over one end of a pipe; the other end is the worker's.
    /// The I/O thread is served too, which writes what does not fit the
    /// socket at once; it lives as long as the slot is used.
    fn slot(max_message_size: u64) -> (WorkerSlot, connection::Connection, WorkerIo) {
        numbered_slot(0, max_message_size)
    }

    /// [`slot`] of worker `id`, for other modules' tests.
    pub(crate) fn numbered_slot(
        id: u32,
        max_message_size: u64,
    ) -> (WorkerSlot, connection::Connection, WorkerIo) {
        let (ours, theirs) = connection::pipe().unwrap();
        let ours = SharedConnection::new(ours);
        let io = WorkerIo::start(crossbeam_channel::unbounded().0, Duration::ZERO).unwrap();
        let pending = io.add(NewWorker {
            id,
            conn: ours.clone(),
            setup: None,
            child: None,
            stderr: None,
        });
        let outbox = Outbox::new(io.sender(), pending);
        let process = Process::Remote {
            peer: "a test".to_string(),
            claimed_pid: None,
            slurm_job: None,
        };
        let deadline = Instant::now() + Duration::from_secs(3600);
        let slot =
            WorkerSlot::starting(id, None, process, ours, outbox, deadline, max_message_size);
        (slot, theirs, io)
    }

    fn job<T: Task<Input = serde_bytes::ByteBuf>>(len: usize, room: usize) -> Job {
        let input = serde_bytes::ByteBuf::from(vec![7u8; len]);
        let item = encode_item::<T>(&input, 0, u64::MAX, Vec::new(), room).unwrap();
        Job {
            task: T::NAME,
            items: vec![item],
            sink: Sink::Single(ResultCell::new()),
        }
    }

    #[test]
    fn a_lone_input_of_a_new_task_keeps_the_batch_before_it_within_the_limit() {
        const LIMIT: usize = 1 << 20;
        const LONE: usize = 100_000;
        let (mut slot, mut worker, _io) = slot(LIMIT as u64);
        worker.set_max_message_size(LIMIT as u64);
        // A batch as full as a chunk may make it: the batch's tag, the
        // chunk with its task's definition, and a ByteBuf's 5-byte length.
        let filler = LIMIT - 1 - wire::chunk_overhead(first::NAME, 1) - 5;
        // The worker reads until both inputs came, each message whole.
        let reader = std::thread::spawn(move || {
            let mut received = 0;
            while received < filler + LONE {
                let message = worker.recv_bytes().unwrap();
                assert!(ToWorker::parse(&message).is_ok());
                received += message.len();
            }
        });
        slot.push_chunk(1, 0, job::<first>(filler, 0));
        assert!(slot.batch.len() <= LIMIT);
        let definition = 1 + 4 + 4 + a_second_task_with_a_long_name::NAME.len();
        assert!(
            slot.batch.len() + definition > LIMIT,
            "{}",
            slot.batch.len()
        );
        // A large input of another task, which goes as a message of its own:
        // the task's definition must not take the batch past the limit.
        let lone = job::<a_second_task_with_a_long_name>(LONE, wire::LONE_CHUNK_ROOM);
        slot.push_chunk(2, 1, lone);
        slot.send_batch();
        reader.join().unwrap();
    }

    /// A results message answering `chunks` (id, item count, status of
    /// each item: 0 for an output).
    fn results(chunks: &[(u64, &[u8])]) -> Arc<Vec<u8>> {
        let mut writer = wire::ResultsWriter::new(1 << 20);
        for (id, statuses) in chunks {
            writer.begin_chunk(*id, statuses.len() as u32);
            for &status in *statuses {
                writer.item(|out| match FailureKind::from_code(status) {
                    None => {
                        out.push(7);
                        Ok(())
                    }
                    Some(kind) => Err(crate::task::TaskFailure::new(kind, "no")),
                });
            }
        }
        Arc::new(writer.bytes().to_vec())
    }

    /// [`results`] as a partial message: its last chunk answered in part.
    fn partial(chunks: &[(u64, &[u8])]) -> Arc<Vec<u8>> {
        let mut message = results(chunks).to_vec();
        message[0] = b'P';
        assert!(wire::is_partial(&message));
        Arc::new(message)
    }

    #[test]
    fn a_chunk_answered_in_parts_delivers_each_part_and_stays_until_done() {
        let (mut slot, _worker, _io) = slot(1 << 20);
        let cell = ResultCell::new();
        let items = (0..3)
            .map(|index| {
                encode_item::<first>(&serde_bytes::ByteBuf::new(), index, u64::MAX, Vec::new(), 0)
                    .unwrap()
            })
            .collect();
        let (sender, receiver) = crossbeam_channel::unbounded();
        let (notice, _) = crate::parent::sink::CancelNotice::pair();
        let (stream, _cancel) = crate::parent::sink::Channel::new(sender, notice);
        slot.push_chunk(1, 0, Job::streamed::<first>(items, &stream));
        let mut second = job::<first>(3, 0);
        second.sink = Sink::Single(Arc::clone(&cell));
        slot.push_chunk(2, 0, second);
        let refused = |slot: &mut WorkerSlot, message: Arc<Vec<u8>>| match slot
            .complete_chunks(&message, &mut Deliveries::default())
        {
            Ok(_) => panic!("accepted"),
            Err(Misaligned(what)) => what,
        };
        // A part must leave some of the chunk, and answer some of it.
        let all = refused(&mut slot, partial(&[(1, &[0, 0, 0])]));
        assert_eq!(
            all,
            "a part of 3 results for chunk 1 with 3 inputs unanswered"
        );
        assert!(refused(&mut slot, partial(&[(1, &[])])).contains("a part of 0"));
        let mut deliveries = Deliveries::default();
        let answered = slot
            .complete_chunks(&partial(&[(1, &[0])]), &mut deliveries)
            .unwrap_or_else(|Misaligned(what)| panic!("{what}"));
        deliveries.flush();
        assert_eq!(answered.items, 1);
        let indices = |batch: Vec<Delivery>| batch.iter().map(|d| d.index).collect::<Vec<_>>();
        assert_eq!(indices(receiver.try_recv().unwrap()), [0]);
        assert_eq!((slot.load().chunks, slot.load().items), (2, 3));
        // The rest of chunk 1 is two inputs now, then chunk 2 in part is
        // refused: it has one input, which a part cannot leave.
        let whole = refused(&mut slot, results(&[(1, &[0, 0, 0])]));
        assert_eq!(whole, "3 results for chunk 1 of 2 inputs");
        let answered = slot
            .complete_chunks(&partial(&[(1, &[0])]), &mut deliveries)
            .unwrap_or_else(|Misaligned(what)| panic!("{what}"));
        assert_eq!(answered.items, 1);
        let answered = slot
            .complete_chunks(
                &results(&[(1, &[FailureKind::Failed as u8]), (2, &[0])]),
                &mut deliveries,
            )
            .unwrap_or_else(|Misaligned(what)| panic!("{what}"));
        deliveries.flush();
        assert_eq!(answered.items, 2);
        let rest: Vec<Delivery> = receiver.try_iter().flatten().collect();
        assert_eq!(indices(rest), [1, 2]);
        assert!(cell.lock().outcome.as_ref().is_some_and(|o| o.is_ok()));
        assert_eq!(slot.load().chunks, 0);
    }

    #[test]
    fn results_that_do_not_answer_the_chunks_in_flight_in_order_are_refused_whole() {
        let (mut slot, _worker, _io) = slot(1 << 20);
        slot.push_chunk(1, 0, job::<first>(3, 0));
        slot.push_chunk(2, 0, job::<first>(3, 0));
        let mut deliveries = Deliveries::default();
        let refusal = |slot: &mut WorkerSlot, chunks: &[(u64, &[u8])]| {
            let message = results(chunks);
            match slot.complete_chunks(&message, &mut Deliveries::default()) {
                Ok(_) => panic!("{chunks:?} accepted"),
                Err(Misaligned(what)) => what,
            }
        };
        let out_of_order = refusal(&mut slot, &[(2, &[0])]);
        assert!(
            out_of_order.contains("chunk 2 out of order"),
            "{out_of_order}"
        );
        let too_many = refusal(&mut slot, &[(1, &[0, 0])]);
        assert_eq!(too_many, "2 results for chunk 1 of 1 inputs");
        let unsent = refusal(&mut slot, &[(1, &[0]), (7, &[0])]);
        assert!(
            unsent.contains("chunk 7 which it does not hold"),
            "{unsent}"
        );
        let unasked = refusal(&mut slot, &[(1, &[FailureKind::Returned as u8])]);
        assert!(
            unasked.contains("given back unstarted, unasked"),
            "{unasked}"
        );
        // Nothing of a refused message was taken, its good chunk 1 included.
        assert_eq!(slot.load().chunks, 2);
        let answered = slot
            .complete_chunks(&results(&[(1, &[0])]), &mut deliveries)
            .unwrap_or_else(|Misaligned(what)| panic!("{what}"));
        assert_eq!((answered.items, slot.load().chunks), (1, 1));
        let twice = refusal(&mut slot, &[(1, &[0])]);
        assert!(twice.contains("answered already"), "{twice}");
        let failed = results(&[(2, &[FailureKind::Failed as u8])]);
        assert!(slot.complete_chunks(&failed, &mut deliveries).is_ok());
        let after_all = refusal(&mut slot, &[(3, &[0])]);
        assert_eq!(after_all, "results for chunk 3 while it holds no chunk");
        let empty = refusal(&mut slot, &[]);
        assert_eq!(empty, "a results message answering no chunk");
    }

    #[test]
    fn a_chunk_is_refused_for_its_header_before_its_items_are_read() {
        let (mut slot, _worker, _io) = slot(1 << 20);
        slot.push_chunk(1, 0, job::<first>(3, 0));
        // Headers that claim a million items, with none behind them: were
        // the items read before the header is judged (a scan as long as
        // the message, on the dispatcher's thread), these would read as no
        // chunk at all.
        let mut deliveries = Deliveries::default();
        for (id, count, refusal) in [
            (7, 1, "results for chunk 7 which it does not hold"),
            (1, 1_000_000, "1000000 results for chunk 1 of 1 inputs"),
        ] {
            let mut message = vec![b'R'];
            message.extend_from_slice(&0u64.to_le_bytes());
            message.extend_from_slice(&(id as u64).to_le_bytes());
            message.extend_from_slice(&(count as u32).to_le_bytes());
            message.push(0);
            match slot.complete_chunks(&Arc::new(message), &mut deliveries) {
                Ok(_) => panic!("chunk {id} of {count} items accepted"),
                Err(Misaligned(what)) => assert!(what.starts_with(refusal), "{what}"),
            }
        }
    }
}
