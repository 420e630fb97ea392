//! The dispatcher: one thread per pool that owns the queue of jobs and the
//! workers, hands jobs out in batches, routes results back to callers,
//! and replaces workers that die, time out or retire.
//!
//! Each worker is kept topped up with enough work to stay busy while its
//! results travel back (about [`QUEUE_TARGET`] of it, judged from how long
//! inputs have been taking), but never so much that another worker would
//! sit idle at the end: a worker that has nothing queued yet always gets a
//! chunk, and one running long tasks holds at most two chunks.
//!
//! The dispatcher never waits for a worker to read: batches go out through
//! each worker's outbox (`parent/outbox.rs`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

mod builds;
mod faults;
mod lending;
mod lifecycle;
mod memory;
mod ordered;
mod shortage;
mod slots;

use super::command::Command;
use super::config::Config;
use super::job::Job;
use super::lease::Leases;
use super::oom::{Death, MemoryWatch};
use super::roster::SharedRoster;
use super::sink::Deliveries;
use super::spawn;
use super::worker_io::WorkerIo;
use super::worker_reader::Event;
use super::worker_slot::{Misaligned, State};
use crate::error::{Error, ErrorKind, Result};
use lifecycle::LastPublished;
use shortage::Shortage;
use slots::{SlotMut, Slots};

/// How much work (by recent input durations) to keep queued per worker.
const QUEUE_TARGET: Duration = Duration::from_millis(2);
/// The least work an idle worker must gain for a recall to be worth it.
const RECALL_WORTH: Duration = Duration::from_millis(1);
/// At most this many inputs are queued in one worker at once...
const MAX_QUEUED_ITEMS: u64 = 256;
/// ...and at most this many bytes of input, beyond a first chunk: less
/// than a socket buffer, so that a batch to a busy worker usually goes out
/// at once, and a worker that stops reading never has much waiting with
/// the I/O thread (sends never block the dispatcher; see `outbox`).
const MAX_QUEUED_BYTES: usize = 128 * 1024;
/// How long `terminate` waits for killed workers to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(5);
/// Once the pool has started, how many replacement workers in a row may
/// fail to become ready (killed from outside, too slow on a loaded
/// machine) before the pool gives up on starting workers.
const MAX_START_FAILURES: u32 = 3;
/// How many workers in a row may end holding an input they had not
/// started before it fails instead of being sent again: a worker that
/// cannot take what it is sent must not make the pool respawn for ever.
const MAX_BOUNCES: u32 = 3;
/// How often to look again for an input to stop that a worker holds (see
/// [`Dispatcher::stop_inputs_given_up`]).
const STOP_RECHECK: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    Closing,
    Terminating,
}

pub(crate) struct Dispatcher {
    config: Arc<Config>,
    program: PathBuf,
    commands: Receiver<Command>,
    /// Callers that gave up on work: take it back.
    cancellations: Receiver<()>,
    events: Receiver<Event>,
    /// The thread that reads and writes every worker's connection.
    io: WorkerIo,
    queue: VecDeque<Job>,
    workers: Slots,
    /// Workers given chunks since their batches last went out, each once.
    batched: Vec<u32>,
    next_worker_id: u32,
    next_chunk_id: u64,
    /// The number each task's name is sent as, once defined.
    task_numbers: HashMap<&'static str, u32>,
    /// The task given out last, with its number (see `task_number`).
    last_task: Option<(&'static str, u32)>,
    /// Recent time per input, in nanoseconds, if any input has run yet.
    nanos_per_item: Option<f64>,
    phase: Phase,
    /// Set when workers can no longer be started: every later job fails with it.
    broken: Option<Error>,
    /// Whether the first workers all became ready (`build` succeeded).
    started: bool,
    /// Local workers that failed to become ready since one last did.
    start_failures: u32,
    /// Whether starting workers waits out a shortage of descriptors.
    shortage: Shortage,
    deliveries: Deliveries,
    /// The live workers, published for `worker_pids` and `remote_workers`.
    roster: SharedRoster,
    /// When `roster`, behind the workers, is published next (see
    /// `publish_roster`).
    roster_due: Option<Instant>,
    roster_published: Option<LastPublished>,
    /// The live workers' count, published for the callers' chunk sizes.
    live_workers: Arc<AtomicUsize>,
    /// Tasks a refused worker had in another form, with the error that
    /// refused it: while no worker is live, calls of them fail with it
    /// rather than wait. Forgotten once a worker is ready.
    refused_tasks: HashMap<&'static str, Error>,
    /// Other builds of this program that workers run, each warned of once.
    other_builds: HashSet<String>,
    /// What tells a worker out of memory from one that died.
    memory: MemoryWatch,
    /// A worker holds an input whose caller asked for it to be stopped and
    /// that was not seen running: it is looked for again every
    /// [`STOP_RECHECK`] until it is answered or stopped.
    stops_pending: bool,
    /// The idle workers offered to callers for direct calls, and those
    /// lent (see `lending`); such a worker's slot says so
    /// (`WorkerSlot::is_lent`), which keeps it from the dispatcher's work.
    leases: Arc<Leases>,
    /// When running tasks' clocks were last read (see `check_clocks`).
    timeouts_checked: Option<Instant>,
    /// Submissions queued this turn, which `leases` hears of once the
    /// turn has taken its offers back (see `Leases::seen`).
    submits_unseen: usize,
}

impl Dispatcher {
    pub(crate) fn new(
        config: Arc<Config>,
        commands: Receiver<Command>,
        cancellations: Receiver<()>,
        events: (Sender<Event>, Receiver<Event>),
        roster: SharedRoster,
        live_workers: Arc<AtomicUsize>,
        leases: Arc<Leases>,
    ) -> Result<Dispatcher> {
        let program = spawn::worker_program(&config)?;
        let memory = MemoryWatch::new(config.memory);
        let max_tasks_per_child = config.max_tasks_per_child;
        let io = WorkerIo::start(events.0, config.spin).map_err(|err| {
            Error::new(ErrorKind::Startup, "start the pool's I/O thread").with_source(err)
        })?;
        Ok(Dispatcher {
            config,
            program,
            commands,
            cancellations,
            events: events.1,
            io,
            queue: VecDeque::new(),
            workers: Slots::new(max_tasks_per_child),
            batched: Vec::new(),
            next_worker_id: 1,
            next_chunk_id: 1,
            task_numbers: HashMap::new(),
            last_task: None,
            nanos_per_item: None,
            phase: Phase::Open,
            broken: None,
            started: false,
            start_failures: 0,
            shortage: Shortage::default(),
            deliveries: Deliveries::default(),
            roster,
            roster_due: None,
            roster_published: None,
            live_workers,
            refused_tasks: HashMap::new(),
            other_builds: HashSet::new(),
            memory,
            stops_pending: false,
            leases,
            timeouts_checked: None,
            submits_unseen: 0,
        })
    }

    /// Starts the first workers and waits until all are ready.
    pub(crate) fn start(&mut self) -> Result<()> {
        for _ in 0..self.config.processes {
            if let Err(err) = self.spawn_local() {
                self.terminate();
                return Err(err);
            }
        }
        while self.broken.is_none() && self.workers.any_starting() {
            let timeout = self.next_wakeup().unwrap_or(Duration::from_millis(100));
            if let Ok(event) = self.events.recv_timeout(timeout) {
                self.on_event(event);
            }
            self.check_clocks();
            self.publish_roster_if_due();
        }
        self.publish_roster_now();
        match self.broken.clone() {
            Some(err) => {
                self.terminate();
                Err(err)
            }
            None => {
                self.started = true;
                Ok(())
            }
        }
    }

    /// The dispatcher thread's loop; returns once the pool is closed and
    /// its workers are gone, or it was terminated.
    pub(crate) fn run(mut self) {
        let mut cancelled = false;
        loop {
            let timeout = self.next_wakeup().unwrap_or(Duration::from_secs(3600));
            // With the pool's spin, what arrives soon is taken without a
            // wake-up: the select below then finds it at once.
            crate::spin::spin_until(self.config.spin.min(timeout), || {
                !(self.commands.is_empty()
                    && self.events.is_empty()
                    && self.cancellations.is_empty())
            });
            select! {
                recv(self.commands) -> command => match command {
                    Ok(command) => self.on_command(command),
                    // Every handle is gone: nobody can ask for results.
                    Err(_) => self.on_command(Command::Terminate),
                },
                recv(self.events) -> event => {
                    if let Ok(event) = event {
                        self.on_event(event);
                    }
                },
                recv(self.cancellations) -> _ => cancelled = true,
                default(timeout) => {},
            }
            self.drain_pending();
            if self.phase == Phase::Terminating {
                break;
            }
            // After the results that had already come: an input whose
            // result is in is not "running" any more, and its worker must
            // not be stopped for it.
            if cancelled {
                cancelled = false;
                self.take_back_cancelled();
            } else if self.stops_pending {
                self.stop_inputs_given_up();
            }
            self.check_clocks();
            self.replenish();
            // Workers lent to callers come back first, with what they
            // ran, if there is work for them.
            if !self.queue.is_empty() {
                self.reclaim_lent(true);
            }
            // Only now may callers borrow again: what they submitted is
            // queued, and no offer of an idle worker stands before it.
            self.leases.seen(std::mem::take(&mut self.submits_unseen));
            self.dispatch();
            self.rebalance();
            // The roster first: a caller that sees a result (a timeout's,
            // say) then sees the workers as they were when it was sent.
            self.publish_roster_if_due();
            self.deliveries.flush();
            if self.phase == Phase::Closing && self.finish_closing() {
                break;
            }
            self.offer_idle();
        }
        self.deliveries.flush();
        self.fail_queued(Error::terminated);
        self.wait_for_workers();
        // Anything submitted in the meantime is answered by Job's Drop.
        while self.commands.try_recv().is_ok() {}
    }

    /// Handles whatever else has already arrived, so that one wake-up
    /// serves many messages; bounded so that dispatching is not starved.
    fn drain_pending(&mut self) {
        for _ in 0..4096 {
            let mut handled = false;
            if let Ok(event) = self.events.try_recv() {
                self.on_event(event);
                handled = true;
            }
            if let Ok(command) = self.commands.try_recv() {
                self.on_command(command);
                handled = true;
            }
            if !handled || self.phase == Phase::Terminating {
                return;
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Submit(job) => {
                self.submits_unseen += 1;
                self.enqueue(job);
            }
            Command::SubmitMany(jobs) => {
                self.submits_unseen += 1;
                jobs.into_iter().for_each(|job| self.enqueue(job));
            }
            Command::Close => {
                if self.phase == Phase::Open {
                    self.phase = Phase::Closing;
                    self.leases.close();
                }
            }
            Command::Terminate => self.terminate(),
            Command::Interrupt(reply) => {
                let had_work = self.interrupt();
                let _ = reply.send(had_work);
            }
            Command::Break(err) => self.break_pool(err),
            Command::RetireJob(job) => self.retire_job(job),
        }
    }

    fn enqueue(&mut self, mut job: Job) {
        if let Some(err) = &self.broken {
            job.fail_all(|_| err.clone());
        } else if self.phase == Phase::Terminating {
            job.fail_all(|_| Error::terminated());
        } else {
            self.queue.push_back(job);
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Ready {
                worker,
                claimed_pid,
                wants_indices,
                slurm_job,
                build,
            } => {
                let ready = self.worker_mut(worker).is_some_and(|mut slot| {
                    let marked = slot.mark_ready(claimed_pid, slurm_job, wants_indices);
                    if marked {
                        match slot.peer() {
                            Some(peer) => tracing::debug!(
                                worker,
                                %peer,
                                claimed_pid,
                                slurm_job,
                                wants_indices,
                                "remote worker ready"
                            ),
                            None => tracing::debug!(
                                worker,
                                pid = slot.pid(),
                                wants_indices,
                                "worker ready"
                            ),
                        }
                    }
                    marked
                });
                if ready {
                    if self.workers.get(worker).is_some_and(|slot| slot.is_local()) {
                        self.start_failures = 0;
                    }
                    self.refused_tasks.clear();
                    self.note_build(worker, build);
                }
                self.publish_roster();
            }
            Event::Mismatch { worker, mismatch } => self.refuse(worker, *mismatch),
            Event::SetupFailed { worker, failure } => {
                let err = Error::new(
                    ErrorKind::Startup,
                    format!(
                        "the initializer failed in worker {worker}: {}",
                        failure.message
                    ),
                );
                let err = err.with_task(self.config.initializer.as_ref().map_or("", |i| i.0));
                self.worker_failed_setup(worker, err);
            }
            Event::Refused { worker, message } => {
                self.worker_failed_setup(worker, Error::new(ErrorKind::Startup, message));
            }
            Event::Results {
                worker,
                message,
                busy_nanos,
            } => self.on_results(worker, message, busy_nanos),
            Event::OverBudget { worker, resident } => self.on_over_budget(worker, resident),
            Event::Leaving { worker } => self.on_leaving(worker),
            Event::Lost { worker, end } => self.on_lost(worker, end),
            Event::Joined { conn, peer } => self.adopt_remote(*conn, peer),
            Event::LeaseEnded => {
                let want = !self.queue.is_empty() || self.phase == Phase::Closing;
                self.take_back_lent(want);
            }
        }
    }

    /// A worker could not set up, or turned out not to be a worker. While
    /// the pool starts, that fails `build`. Later, a local worker counts
    /// toward the failures in a row that break the pool (see
    /// `start_failed`), and a remote one is only turned away: one peer's
    /// failure is not the pool's. A worker that was ready says nothing of
    /// the sort; if it does, it is replaced.
    fn worker_failed_setup(&mut self, worker: u32, err: Error) {
        let Some(slot) = self.workers.get(worker) else {
            return;
        };
        let starting = matches!(slot.state(), State::Starting { .. });
        let local = slot.is_local();
        if !self.started {
            self.break_pool(err);
        } else if starting && local {
            self.start_failed(err);
        } else {
            tracing::warn!(worker, %err, "a worker failed to set up; it is turned away");
        }
        self.kill_worker(worker);
    }

    /// Hands a worker's results to their callers. A message that does not
    /// answer the chunks the worker holds, in order, ends the worker: its
    /// connection is shut, and what it held runs elsewhere, every input of
    /// it counted as held unstarted (what the worker says it ran is not to
    /// be believed, and its lie is not the input's fault).
    fn on_results(&mut self, worker: u32, message: Arc<Vec<u8>>, busy_nanos: u64) {
        let Some(mut slot) = self.workers.get_mut(worker) else {
            return;
        };
        let channel = slot.front_channel();
        match slot.complete_chunks(&message, &mut self.deliveries) {
            Ok(answered) => {
                drop(slot);
                // Only results that answered inputs sent feed the schedule.
                if answered.items > 0 {
                    let sample = busy_nanos as f64 / answered.items as f64;
                    // The call of the message's first chunk, for its
                    // chunk sizes (see `map.rs`).
                    if let Some(channel) = channel {
                        channel.note_nanos_per_item(sample);
                    }
                    self.nanos_per_item = Some(match self.nanos_per_item {
                        Some(average) => 0.7 * average + 0.3 * sample,
                        None => sample,
                    });
                }
                self.requeue(answered.returned, None);
            }
            // Killed already, its work taken back: its results are moot.
            Err(Misaligned(_)) if slot.state() == State::Doomed => drop(slot),
            Err(Misaligned(what)) => {
                let info = slot.info();
                let peer = slot.peer().unwrap_or("a local worker").to_string();
                tracing::warn!(
                    worker,
                    %peer,
                    claimed_pid = info.claimed_pid,
                    pid = info.pid,
                    bytes = message.len(),
                    "worker sent {what}; its connection is ended and its work runs elsewhere"
                );
                slot.kill();
                let mut taken = slot.take_back();
                if let Some(culprit) = taken.culprit.take() {
                    taken.unstarted.insert(0, culprit.requeued());
                }
                drop(slot);
                let death = Death::died(format!("sent {what}"));
                self.requeue_after_death(taken, &death, info);
            }
        }
        self.retire_if_due(worker);
    }

    /// Hands queued jobs to workers with room, then sends each worker its batch.
    fn dispatch(&mut self) {
        self.fail_refused_jobs();
        loop {
            while self
                .queue
                .front()
                .is_some_and(|job| job.sink.is_cancelled())
            {
                self.queue.pop_front();
            }
            let limit = self.config.max_message_size;
            if let Some(rest) = self
                .queue
                .front_mut()
                .and_then(|job| job.split_to_fit(limit))
            {
                self.queue.insert(1, rest);
            }
            let Some(job) = self.queue.front() else { break };
            let surplus = self.queue.len() > self.workers.idle();
            let picked = self.workers.pick(
                job.items.len() as u64,
                job.input_bytes(),
                self.nanos_per_item,
                surplus,
            );
            let Some(worker) = picked else {
                break;
            };
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.assign(worker, job);
        }
        self.send_batches();
    }

    /// Gives `job` to `worker`, as the next chunk of its batch.
    fn assign(&mut self, worker: u32, job: Job) {
        let number = self.task_number(job.task);
        let chunk_id = self.next_chunk_id;
        self.next_chunk_id += 1;
        if let Some(mut slot) = self.workers.get_mut(worker) {
            // Listed once, with the first chunk of its batch.
            if !slot.has_batch() {
                self.batched.push(worker);
            }
            slot.push_chunk(chunk_id, number, job);
        }
    }

    /// The number `task` is sent as, defined at its first use. The last
    /// one is kept at hand: calls of one task in a row (`apply_async`
    /// after `apply_async`) then skip hashing its name at every chunk.
    fn task_number(&mut self, task: &'static str) -> u32 {
        match self.last_task {
            // Pointers, not contents: the same name elsewhere in memory
            // is found in the map.
            Some((last, number)) if std::ptr::eq(last, task) => number,
            _ => {
                let count = self.task_numbers.len() as u32;
                let number = *self.task_numbers.entry(task).or_insert(count);
                self.last_task = Some((task, number));
                number
            }
        }
    }

    /// When the queue is empty and a worker idles while others hold inputs
    /// they have not started, recalls those inputs from the busiest, to be
    /// handed to the idle ones when they come back.
    fn rebalance(&mut self) {
        if !self.queue.is_empty() {
            return;
        }
        let idle = self.workers.idle();
        if idle == 0 {
            return;
        }
        let nanos = self.nanos_per_item;
        // Worth a message only if the idle worker gains some time.
        let worth =
            |items: u64| nanos.map_or(true, |n| n * items as f64 >= RECALL_WORTH.as_nanos() as f64);
        let busiest: Vec<u32> = self
            .workers
            .most_queued()
            // What a worker holds bounds what it could spare.
            .take_while(|&(held, _)| worth(held))
            .filter(|(_, slot)| {
                let spare = slot.spare_items();
                spare > 0 && worth(spare)
            })
            .take(idle)
            .map(|(_, slot)| slot.id())
            .collect();
        for worker in busiest {
            if let Some(mut slot) = self.workers.get_mut(worker) {
                slot.recall(|position, _| position > 0);
            }
        }
    }

    /// A caller gave up on some work: drops what is queued of it, takes
    /// back from workers what they have not started, and stops running
    /// inputs whose callers asked for that, by replacing their workers.
    fn take_back_cancelled(&mut self) {
        self.queue.retain(|job| !job.sink.is_cancelled());
        self.workers.for_each_mut(|slot| {
            if slot.state() == State::Ready {
                slot.recall(|_, job| job.sink.is_cancelled());
            }
        });
        self.stop_inputs_given_up();
    }

    /// Stops the running inputs whose callers asked for that, by killing
    /// and replacing their workers (the other inputs those workers held
    /// run elsewhere). A worker can start such an input just as its recall
    /// is on the way, so while a worker holds one not seen running, it is
    /// looked for again every [`STOP_RECHECK`], until its worker gives it
    /// back, answers it or is seen running it.
    fn stop_inputs_given_up(&mut self) {
        let mut to_stop = Vec::new();
        self.stops_pending = false;
        for slot in self.workers.iter() {
            if slot.state() != State::Ready {
                continue;
            }
            if slot.runs_input_to_stop() {
                to_stop.push(slot.id());
            } else if slot.holds_input_to_stop() {
                self.stops_pending = true;
            }
        }
        for worker in to_stop {
            tracing::debug!(worker, "stopping a cancelled input: worker killed");
            self.kill_worker(worker);
        }
    }

    /// Sends the batches built since the last time.
    fn send_batches(&mut self) {
        let mut batched = std::mem::take(&mut self.batched);
        for worker in batched.drain(..) {
            if let Some(mut slot) = self.workers.get_mut(worker) {
                slot.send_batch();
            }
        }
        self.batched = batched;
    }

    fn worker_mut(&mut self, worker: u32) -> Option<SlotMut<'_>> {
        self.workers.get_mut(worker)
    }
}
