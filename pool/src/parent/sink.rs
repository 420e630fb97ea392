//! Where results go on their way back to callers: one [`ResultCell`] per
//! `apply_async`, one [`Channel`] per `map` or `imap` call, batched by
//! [`Deliveries`] so that a call gets one channel message per batch of
//! results rather than one per result.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::spare::SpareBuffers;
use crate::error::{Error, WorkerInfo};
use crate::task::FailureKind;
use crate::wire::{self, ItemResult};

/// An encoded output: a range of a received results message, shared so
/// that no output is copied on its way to the caller.
#[derive(Clone, Debug)]
pub(crate) struct Payload {
    message: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl Payload {
    pub(crate) fn new(message: Arc<Vec<u8>>, range: Range<usize>) -> Payload {
        Payload { message, range }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // Ranges come from parsing this very message.
        self.message.get(self.range.clone()).unwrap_or_default()
    }
}

pub(crate) type Outcome = Result<Payload, Error>;

/// The outcome of input `index` of `task` from one result in the worker's
/// `message`; `None` if the worker gave the input back unstarted (a
/// recall's answer), which is no outcome.
pub(crate) fn outcome_of(
    result: ItemResult<'_>,
    message: &Arc<Vec<u8>>,
    task: &'static str,
    index: usize,
    info: WorkerInfo,
) -> Option<Outcome> {
    Some(match result {
        ItemResult::Output(range) => Ok(Payload::new(Arc::clone(message), range)),
        ItemResult::Failed {
            kind: FailureKind::Returned,
            ..
        } => return None,
        ItemResult::Failed {
            kind,
            message,
            panic,
        } => Err(wire::failure_error(kind, message, panic)
            .with_task(task)
            .with_index(index)
            .with_worker(info)),
    })
}

/// Keeps `waker` in `slot` to wake later, unless the one there already
/// wakes the same task (then no clone is made).
pub(crate) fn keep_waker(slot: &mut Option<Waker>, waker: &Waker) {
    match slot {
        Some(known) if known.will_wake(waker) => {}
        slot => *slot = Some(waker.clone()),
    }
}

/// One input's result, for the call that submitted it.
pub(crate) struct Delivery {
    pub(crate) index: usize,
    pub(crate) outcome: Outcome,
}

/// Where one task's result lands. The condition variable is signalled only
/// when someone waits, and the waker woken only when a future is pending on
/// it, so completing a result nobody waits on costs no system call.
pub(crate) struct ResultCell {
    state: Mutex<CellState>,
    ready: Condvar,
    /// Set when the caller gave up on the result: its input is then
    /// dropped instead of sent, or taken back from its worker.
    cancelled: AtomicBool,
    /// Set when the caller also wants the input stopped if it is running:
    /// its worker is then killed and replaced.
    stop_running: AtomicBool,
    /// Set once the outcome is stored, for a caller spinning on it
    /// without taking the lock.
    done: AtomicBool,
}

#[derive(Default)]
pub(crate) struct CellState {
    pub(crate) outcome: Option<Outcome>,
    waiters: usize,
    /// The task of a future waiting on this slot.
    waker: Option<Waker>,
    /// Wakers of `wait_any` and `as_completed` calls watching this slot,
    /// any number of them, from any threads.
    watchers: Vec<Waker>,
}

impl ResultCell {
    pub(crate) fn new() -> Arc<ResultCell> {
        Arc::new(ResultCell {
            state: Mutex::new(CellState::default()),
            ready: Condvar::new(),
            cancelled: AtomicBool::new(false),
            stop_running: AtomicBool::new(false),
            done: AtomicBool::new(false),
        })
    }

    /// Gives up on the result: completes the slot with `outcome` if it is
    /// still empty (returning whether it was), and marks it cancelled.
    pub(crate) fn cancel(&self, outcome: Outcome) -> bool {
        self.cancelled.store(true, Ordering::Relaxed);
        let was_empty = self.lock().outcome.is_none();
        self.complete(outcome);
        was_empty
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Asks that the input be stopped even if it is running (before
    /// [`cancel`](ResultCell::cancel), so the dispatcher sees both together).
    pub(crate) fn stop_if_running(&self) {
        self.stop_running.store(true, Ordering::Relaxed);
    }

    /// Registers `waker` to be woken when the outcome arrives, unless it is
    /// there already; returns the guard either way.
    pub(crate) fn poll_outcome(&self, waker: &Waker) -> MutexGuard<'_, CellState> {
        let mut state = self.lock();
        if state.outcome.is_none() {
            keep_waker(&mut state.waker, waker);
        }
        state
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, CellState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Stores the outcome; the first one wins.
    pub(crate) fn complete(&self, outcome: Outcome) {
        let mut state = self.lock();
        if state.outcome.is_some() {
            return;
        }
        state.outcome = Some(outcome);
        self.done.store(true, Ordering::Release);
        if state.waiters > 0 {
            self.ready.notify_all();
        }
        let waker = state.waker.take();
        let watchers = std::mem::take(&mut state.watchers);
        drop(state);
        for waker in waker.into_iter().chain(watchers) {
            waker.wake();
        }
    }

    /// Adds `waker` to the watchers woken when the outcome arrives, unless
    /// it is there already: then returns `true` and keeps nothing.
    pub(crate) fn watch(&self, waker: &Waker) -> bool {
        let mut state = self.lock();
        if state.outcome.is_some() {
            return true;
        }
        if !state.watchers.iter().any(|known| known.will_wake(waker)) {
            state.watchers.push(waker.clone());
        }
        false
    }

    /// Removes a watcher added by [`watch`](ResultCell::watch).
    pub(crate) fn unwatch(&self, waker: &Waker) {
        self.lock().watchers.retain(|known| !known.will_wake(waker));
    }

    /// Checks for the outcome, without blocking, for at most `spin` (and
    /// `timeout`), then waits for it as [`wait`](ResultCell::wait) does.
    pub(crate) fn spin_then_wait(
        &self,
        spin: Duration,
        timeout: Option<Duration>,
    ) -> MutexGuard<'_, CellState> {
        let spin = timeout.map_or(spin, |timeout| spin.min(timeout));
        crate::spin::spin_until(spin, || self.done.load(Ordering::Acquire));
        self.wait(timeout)
    }

    /// Waits until the outcome is there or `timeout` passes; returns the
    /// guard, with the outcome if it arrived.
    pub(crate) fn wait(&self, timeout: Option<Duration>) -> MutexGuard<'_, CellState> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        while state.outcome.is_none() {
            state.waiters += 1;
            state = match deadline {
                None => self.ready.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.waiters -= 1;
                        break;
                    }
                    self.ready
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
            state.waiters -= 1;
        }
        state
    }
}

/// The results channel of one `map` or `imap` call.
pub(crate) struct Channel {
    sender: Sender<Vec<Delivery>>,
    /// Set by the caller when it no longer wants results: queued work for
    /// it is then dropped.
    cancelled: Arc<AtomicBool>,
    /// The task of a stream waiting for results, woken after each batch.
    waker: Mutex<Option<Waker>>,
    /// Buffers of large encoded inputs whose results arrived, for the call
    /// to encode its next inputs into.
    spare: SpareBuffers,
    /// The call's recent time per input in workers, in nanoseconds (an
    /// `f64`'s bits; 0 before any was measured), for its chunk sizes.
    nanos_per_item: AtomicU64,
}

impl Channel {
    /// A channel and its cancel guard. The caller keeps only the guard, so
    /// that its receiver sees the channel end once every job is gone.
    pub(crate) fn new(
        sender: Sender<Vec<Delivery>>,
        notice: CancelNotice,
    ) -> (Arc<Channel>, CancelOnDrop) {
        let cancelled = Arc::new(AtomicBool::new(false));
        let stream = Arc::new(Channel {
            sender,
            cancelled: Arc::clone(&cancelled),
            waker: Mutex::new(None),
            spare: SpareBuffers::default(),
            nanos_per_item: AtomicU64::new(0),
        });
        (stream, CancelOnDrop { cancelled, notice })
    }

    pub(crate) fn send(&self, deliveries: Vec<Delivery>) {
        // A caller that went away no longer needs them.
        let _ = self.sender.send(deliveries);
        let waker = self.waker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Keeps the buffer of an encoded input whose result arrived, for the
    /// call's next input (see [`SpareBuffers`]), unless the call gave up.
    pub(crate) fn give_back(&self, buffer: Vec<u8>) {
        if !self.cancelled.load(Ordering::Relaxed) {
            self.spare.give_back(buffer);
        }
    }

    /// A buffer to encode the call's next input into, and the room to
    /// keep in front of the input (see [`SpareBuffers::take`]).
    pub(crate) fn spare_buffer(&self) -> (Vec<u8>, usize) {
        self.spare.take()
    }

    /// Notes how long a worker took per input of the call, averaged with
    /// the times noted before. Only the dispatcher notes them.
    pub(crate) fn note_nanos_per_item(&self, sample: f64) {
        let average = match self.nanos_per_item() {
            Some(average) => 0.7 * average + 0.3 * sample,
            None => sample,
        };
        self.nanos_per_item
            .store(average.max(f64::MIN_POSITIVE).to_bits(), Ordering::Relaxed);
    }

    /// The call's recent time per input in workers, once one was noted.
    pub(crate) fn nanos_per_item(&self) -> Option<f64> {
        let bits = self.nanos_per_item.load(Ordering::Relaxed);
        (bits != 0).then(|| f64::from_bits(bits))
    }

    /// Has `waker` woken after the next batch arrives. The caller looks at
    /// its receiver again after this, so a batch sent meanwhile is not missed.
    pub(crate) fn register(&self, waker: &Waker) {
        keep_waker(
            &mut self.waker.lock().unwrap_or_else(|p| p.into_inner()),
            waker,
        );
    }
}

/// Marks a call's channel cancelled when the call returns or its iterator
/// is dropped, and tells the dispatcher, which then drops the work nobody
/// will collect and takes back what workers hold of it.
pub(crate) struct CancelOnDrop {
    cancelled: Arc<AtomicBool>,
    notice: CancelNotice,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
        self.notice.send();
    }
}

/// Wakes the dispatcher to look for work whose caller gave up.
#[derive(Clone, Debug)]
pub(crate) struct CancelNotice(Sender<()>);

impl CancelNotice {
    /// A notice and what the dispatcher watches; notices sent before it
    /// looks fold into one.
    pub(crate) fn pair() -> (CancelNotice, crossbeam_channel::Receiver<()>) {
        let (sender, receiver) = crossbeam_channel::bounded(1);
        (CancelNotice(sender), receiver)
    }

    pub(crate) fn send(&self) {
        let _ = self.0.try_send(());
    }
}

/// Where results of a call go: one cell (`apply_async`) or a channel of
/// batches (`map`, `imap`), one channel per call rather than per task.
#[derive(Clone)]
pub(crate) enum Sink {
    Single(Arc<ResultCell>),
    Channel(Arc<Channel>),
}

impl Sink {
    pub(crate) fn is_cancelled(&self) -> bool {
        match self {
            Sink::Single(slot) => slot.is_cancelled(),
            Sink::Channel(stream) => stream.cancelled.load(Ordering::Relaxed),
        }
    }

    /// Whether the caller wants the input stopped even if it runs.
    pub(crate) fn wants_running_stopped(&self) -> bool {
        match self {
            Sink::Single(slot) => slot.stop_running.load(Ordering::Relaxed),
            Sink::Channel(_) => false,
        }
    }

    /// Delivers one result right away (for deliveries outside the batched
    /// path: failures at submission, cancellations).
    pub(crate) fn deliver_now(&self, index: usize, outcome: Outcome) {
        match self {
            Sink::Single(slot) => slot.complete(outcome),
            Sink::Channel(stream) => stream.send(vec![Delivery { index, outcome }]),
        }
    }
}

/// Gathers deliveries for stream sinks so that each call gets one channel
/// message per batch of results rather than one per result.
#[derive(Default)]
pub(crate) struct Deliveries {
    pending: Vec<(Arc<Channel>, Vec<Delivery>)>,
}

impl Deliveries {
    pub(crate) fn push(&mut self, sink: &Sink, index: usize, outcome: Outcome) {
        match sink {
            Sink::Single(slot) => slot.complete(outcome),
            Sink::Channel(stream) => {
                let delivery = Delivery { index, outcome };
                match self
                    .pending
                    .iter_mut()
                    .find(|(s, _)| Arc::ptr_eq(s, stream))
                {
                    Some((_, batch)) => batch.push(delivery),
                    None => self.pending.push((Arc::clone(stream), vec![delivery])),
                }
            }
        }
    }

    pub(crate) fn flush(&mut self) {
        for (stream, batch) in self.pending.drain(..) {
            stream.send(batch);
        }
    }
}
