//! Lending idle local workers to callers, for calls that go straight to
//! a worker (`direct_call.rs`) instead of through the dispatcher and
//! `pool-io`.
//!
//! The dispatcher offers the local workers it has nothing for
//! ([`Leases::offer`]), once their setup is done and where nothing it
//! guarantees needs it between two inputs (see `dispatcher/lending.rs`);
//! a caller takes one ([`Leases::take`]), which keeps `pool-io` from
//! reading the worker's socket for the call (`SharedConnection::lend`:
//! the socket goes quiet in its epoll set, and stays so until the
//! dispatcher takes the worker back, so that a run of direct calls
//! changes the set once), and puts it back among the idle ones afterwards without waking
//! anybody, unless the dispatcher asked to hear of it (it needs workers,
//! or is closing) or the worker was lost. A call sent and not being read
//! is parked here ([`Leases::park`]). The dispatcher takes its idle
//! workers back before it hands out work ([`Leases::reclaim`]), with the
//! count of inputs each ran meanwhile, and adopts the parked calls.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::process::Child;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::job::Job;
use super::shared_conn::SharedConnection;
use super::sink::{ResultCell, Sink};
use super::worker_reader::Event;
use crate::error::{Error, WorkerInfo};
use crate::sys::{Poller, SharedCounter};
use crate::wire::Indices;

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

/// A call sent to a lent worker (`direct_call.rs`) and not yet answered.
pub(crate) struct Call {
    pub(crate) worker: Lendable,
    /// The pool's number for the call's task.
    pub(crate) number: u32,
    /// The call's one input and its handle's cell: what the dispatcher
    /// counts as the worker's chunk if it adopts the call, or queues if
    /// the input must run the usual way.
    pub(crate) job: Job,
    /// The worker's progress page before the call: whether it started
    /// the input is whether that moved.
    pub(crate) started_before: u64,
    /// The pool's task timeout, and where it ends the call.
    pub(crate) timeout: Option<Duration>,
    pub(crate) deadline: Option<Instant>,
}

impl Call {
    /// The cell the call's handle reads.
    pub(crate) fn cell(&self) -> Option<&Arc<ResultCell>> {
        match &self.job.sink {
            Sink::Single(cell) => Some(cell),
            _ => None,
        }
    }
}

/// A worker whose lease ended with its loss, for the dispatcher.
pub(crate) struct Lost {
    pub(crate) id: u32,
    pub(crate) ran: u64,
}

/// How a lease ends.
pub(crate) enum LeaseEnd {
    /// The call was answered: the worker is idle again.
    Answered,
    /// The worker is lost to the pool.
    Lost,
    /// The worker is lost, and the call's input must run the usual way.
    RunAgain(Job),
}

/// A worker lent now.
#[derive(Default)]
struct Lent {
    /// The error its call must end with once the dispatcher stopped it
    /// (Ctrl-C, `terminate`).
    stop: Option<Error>,
    /// Its call, sent and not being read.
    parked: Option<Call>,
    /// The call's handle asked the dispatcher to adopt it.
    released: bool,
    /// Its call, being read by its handle (unparked), for another thread
    /// that stops it to find.
    read: Option<BeingRead>,
}

/// A call a handle is reading: its cell, and what stops it.
struct BeingRead {
    cell: Arc<ResultCell>,
    child: Arc<Mutex<Child>>,
    conn: SharedConnection,
}

impl Lent {
    /// Whether the call parked here is the one whose handle's cell is
    /// `cell` (the worker may since have been lent to another call).
    fn parks(&self, cell: &Arc<ResultCell>) -> bool {
        self.parked
            .as_ref()
            .and_then(Call::cell)
            .is_some_and(|c| Arc::ptr_eq(c, cell))
    }
}

/// What the dispatcher takes back at once ([`Leases::reclaim`]).
pub(crate) struct Reclaimed {
    pub(crate) idle: Vec<Lendable>,
    pub(crate) lost: Vec<Lost>,
    /// Calls parked with their workers: the dispatcher counts each as a
    /// chunk its worker holds.
    pub(crate) adopted: Vec<Call>,
    /// Inputs of direct calls whose workers were lost before they
    /// started them.
    pub(crate) run_again: Vec<Job>,
}

#[derive(Default)]
struct Inner {
    idle: Vec<Lendable>,
    lent: HashMap<u32, Lent>,
    lost: Vec<Lost>,
    run_again: Vec<Job>,
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
    /// How many workers are offered (`Inner::idle`), counted again as
    /// each hold of the lock ends ([`Locked`]), so that a caller finds
    /// there is none without taking the lock, which a run of submissions
    /// would otherwise take once each, against the dispatcher.
    offered: AtomicUsize,
    /// Tells the dispatcher that a lease ended when it asked to know.
    events: Sender<Event>,
}

impl Leases {
    pub(crate) fn new(events: Sender<Event>) -> Leases {
        Leases {
            inner: Mutex::default(),
            unseen: AtomicUsize::new(0),
            offered: AtomicUsize::new(0),
            events,
        }
    }

    fn lock(&self) -> Locked<'_> {
        Locked {
            inner: self.inner.lock().unwrap_or_else(|p| p.into_inner()),
            offered: &self.offered,
        }
    }

    /// Whether a caller may find a worker to take now: one is offered and
    /// no submission waits for the dispatcher. Without the lock, so a
    /// moment late at worst, which only sends that call the usual way.
    pub(crate) fn may_lend(&self) -> bool {
        self.unseen.load(Ordering::SeqCst) == 0 && self.offered.load(Ordering::SeqCst) > 0
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

    /// Takes back every idle worker offered, the lost ones and the
    /// parked calls with their workers; if `want`, the next lease to end
    /// tells the dispatcher (with the taking back, so that none can end
    /// unheard in between).
    pub(crate) fn reclaim(&self, want: bool) -> Reclaimed {
        let mut inner = self.lock();
        let parked: Vec<u32> = inner
            .lent
            .iter()
            .filter(|(_, lent)| lent.parked.is_some())
            .map(|(&id, _)| id)
            .collect();
        let adopted = parked
            .into_iter()
            .filter_map(|id| inner.lent.remove(&id)?.parked)
            .collect();
        inner.wanted |= want && !inner.lent.is_empty();
        let idle = std::mem::take(&mut inner.idle);
        for worker in &idle {
            worker.conn.unquiet(&worker.poller);
        }
        Reclaimed {
            idle,
            lost: std::mem::take(&mut inner.lost),
            adopted,
            run_again: std::mem::take(&mut inner.run_again),
        }
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
        let mut inner = self.lock();
        inner.idle.retain(|w| w.id != worker);
    }

    /// The workers lent now, whose calls end with `why()` once the
    /// dispatcher has killed them.
    pub(crate) fn stop_lent(&self, why: impl Fn() -> Error) -> Vec<u32> {
        let mut inner = self.lock();
        inner
            .lent
            .iter_mut()
            .map(|(id, lent)| {
                lent.stop = Some(why());
                *id
            })
            .collect()
    }

    /// An idle worker that knows `task`, lent to the caller, with the
    /// task's number.
    pub(crate) fn take(&self, task: &str) -> Option<(Lendable, u32)> {
        if !self.may_lend() {
            return None;
        }
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
        inner.lent.insert(worker.id, Lent::default());
        Some((worker, number))
    }

    /// Ends a lease: the worker goes back among the idle ones, or is lost
    /// to the dispatcher (with the input to run again, if any). If the
    /// dispatcher stopped it, returns why, with the input not run again.
    pub(crate) fn give_back(
        &self,
        worker: Lendable,
        end: LeaseEnd,
    ) -> Option<(Error, Option<Job>)> {
        worker.conn.end_lease(&worker.poller);
        let mut inner = self.lock();
        let stopped = inner.lent.remove(&worker.id).and_then(|lent| lent.stop);
        let lost = !matches!(end, LeaseEnd::Answered);
        let tell = std::mem::take(&mut inner.wanted) || lost;
        let mut job = match end {
            LeaseEnd::RunAgain(job) => Some(job),
            LeaseEnd::Answered | LeaseEnd::Lost => None,
        };
        if lost || stopped.is_some() {
            inner.lost.push(Lost {
                id: worker.id,
                ran: worker.ran,
            });
            if stopped.is_none() {
                inner.run_again.extend(job.take());
            }
        } else {
            inner.idle.push(worker);
        }
        drop(inner);
        if tell || stopped.is_some() {
            let _ = self.events.send(Event::LeaseEnded);
        }
        stopped.map(|stopped| (stopped, job))
    }

    /// Parks a call sent and not being read, for its handle to collect or
    /// the dispatcher to adopt; gives it back if the dispatcher stopped
    /// its worker meanwhile.
    pub(crate) fn park(&self, call: Call) -> Option<Call> {
        let mut inner = self.lock();
        let id = call.worker.id;
        match inner.lent.get_mut(&id) {
            Some(lent) if lent.stop.is_none() => {
                lent.parked = Some(call);
                lent.released = false;
                lent.read = None;
                let tell = std::mem::take(&mut inner.wanted);
                drop(inner);
                if tell {
                    let _ = self.events.send(Event::LeaseEnded);
                }
                None
            }
            _ => Some(call),
        }
    }

    /// The call parked with `worker` whose handle's cell is `cell`, for
    /// its handle to read.
    pub(crate) fn unpark(&self, worker: u32, cell: &Arc<ResultCell>) -> Option<Call> {
        let mut inner = self.lock();
        let lent = inner.lent.get_mut(&worker)?;
        let call = lent.parks(cell).then(|| lent.parked.take()).flatten()?;
        lent.read = Some(BeingRead {
            cell: Arc::clone(cell),
            child: Arc::clone(&call.worker.child),
            conn: call.worker.conn.clone(),
        });
        Some(call)
    }

    /// Stops the call with `worker` whose handle's cell is `cell` if a
    /// thread is reading it now (the handle was cancelled and stopped
    /// from another thread): kills the worker and shuts its socket, which
    /// ends that read; the call then ends as its worker lost, its outcome
    /// being the cancel already in the cell.
    pub(crate) fn stop_read(&self, worker: u32, cell: &Arc<ResultCell>) {
        let inner = self.lock();
        let Some(read) = inner.lent.get(&worker).and_then(|lent| lent.read.as_ref()) else {
            return;
        };
        if !Arc::ptr_eq(&read.cell, cell) {
            return;
        }
        let (child, conn) = (Arc::clone(&read.child), read.conn.clone());
        drop(inner);
        // std's kill does nothing once the child was reaped.
        let _ = child.lock().unwrap_or_else(|p| p.into_inner()).kill();
        // Also where a process the task forked holds the socket open.
        conn.shut_down();
    }

    /// Asks the dispatcher to adopt the call parked with `worker` whose
    /// handle's cell is `cell`, if it still is.
    pub(crate) fn release(&self, worker: u32, cell: &Arc<ResultCell>) {
        let mut inner = self.lock();
        let Some(lent) = inner.lent.get_mut(&worker) else {
            return;
        };
        if lent.parks(cell) && !std::mem::replace(&mut lent.released, true) {
            drop(inner);
            let _ = self.events.send(Event::LeaseEnded);
        }
    }
}

/// The registry, locked: the count of offered workers is brought up to
/// date when the lock is let go, so that no change to `idle` can leave
/// it behind.
struct Locked<'a> {
    inner: MutexGuard<'a, Inner>,
    offered: &'a AtomicUsize,
}

impl Deref for Locked<'_> {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Inner {
        &mut self.inner
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // Before the mutex is let go (fields drop after this), so that
        // the count never runs behind a later hold's.
        self.offered.store(self.inner.idle.len(), Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker to offer: a connection watched by `poller` (so it can be
    /// lent), over a child that is only there to be held.
    fn lendable(id: u32, poller: &Arc<Poller>, child: &Arc<Mutex<Child>>) -> Lendable {
        let (ours, _theirs) = connection::pipe().unwrap();
        let conn = SharedConnection::new(ours);
        conn.watch(poller, u64::from(id)).unwrap();
        Lendable {
            id,
            conn,
            poller: Arc::clone(poller),
            child: Arc::clone(child),
            progress: Arc::new(SharedCounter::create().unwrap()),
            info: WorkerInfo {
                id,
                pid: None,
                claimed_pid: None,
            },
            tasks: vec![("t", 0)],
            indices: Indices::Omitted,
            ran: 0,
        }
    }

    #[test]
    fn whether_a_caller_may_lend_follows_every_change_to_the_offered_workers() {
        let poller = Arc::new(Poller::new().unwrap());
        let child = Arc::new(Mutex::new(
            std::process::Command::new("true").spawn().unwrap(),
        ));
        let (events, _heard) = crossbeam_channel::unbounded();
        let leases = Leases::new(events);
        assert!(!leases.may_lend(), "nothing offered yet");

        assert!(leases.offer(lendable(1, &poller, &child)).is_none());
        assert!(leases.may_lend());
        let (worker, number) = leases.take("t").expect("the one offered");
        assert_eq!((worker.id, number), (1, 0));
        assert!(!leases.may_lend(), "the one offered is lent");
        assert!(leases.give_back(worker, LeaseEnd::Answered).is_none());
        assert!(leases.may_lend(), "given back, it is offered again");

        leases.forget(1);
        assert!(!leases.may_lend(), "an ended worker is offered no more");
        assert!(leases.offer(lendable(2, &poller, &child)).is_none());
        assert!(leases.offer(lendable(3, &poller, &child)).is_none());
        assert_eq!(leases.reclaim(false).idle.len(), 2);
        assert!(!leases.may_lend(), "the dispatcher took them back");

        assert!(leases.offer(lendable(4, &poller, &child)).is_none());
        leases.submitting();
        assert!(
            !leases.may_lend(),
            "work on its way to the dispatcher goes first"
        );
        leases.seen(1);
        assert!(leases.may_lend());
        let _ = child.lock().unwrap().wait();
    }
}
