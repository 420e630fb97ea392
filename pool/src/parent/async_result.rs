//! [`AsyncResult`]: the handle `apply_async` returns.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::direct_call::Direct;
use super::sink::{CancelNotice, Outcome, ResultCell};
use crate::error::{Error, ErrorKind, Result};

/// The result of [`Pool::apply_async`](crate::Pool::apply_async), available
/// once the task has run (Python's `AsyncResult`).
///
/// The result can be read any number of times: it is kept encoded and
/// decoded on each [`get`](AsyncResult::get), so the output type need not
/// be `Clone`. Dropping a handle never awaited does not cancel the task;
/// [`cancel`](AsyncResult::cancel) does, and
/// [`cancel_and_stop`](AsyncResult::cancel_and_stop) also stops it if it is
/// running.
///
/// # In async code
///
/// The handle is also a [`Future`] of the same result, woken by the pool's
/// dispatcher thread (no thread or timer per handle), so it works under any
/// executor: tokio, async-std, smol, or a plain `block_on`. A handle that
/// was polled as a future and is dropped before its result arrived (the
/// losing branch of a `select!`, a timed-out `timeout`) gives up on its
/// input: by default as [`cancel_and_stop`](AsyncResult::cancel_and_stop)
/// does, so an input not started never runs and a running one is stopped
/// (its worker killed and replaced, the worker's other inputs run again
/// elsewhere), freeing the worker for the next request. With
/// [`stop_on_drop(false)`](AsyncResult::stop_on_drop) (or the pool's
/// [`PoolBuilder::stop_on_drop`](crate::PoolBuilder::stop_on_drop)) it
/// only [cancels](AsyncResult::cancel): a running input runs to its end.
/// A handle never polled keeps Python's semantics and lets the task run.
/// (tokio's `JoinHandle` detaches on drop instead; here the result has
/// nowhere to go once the handle is gone, so running on would only keep
/// a worker busy.)
///
/// ```
/// pool::task! { fn add((a, b): (u64, u64)) -> u64 { a + b } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::new(2)?;
///     let sum = futures_executor::block_on(async {
///         let (x, y) = (pool.apply_async(add, (1, 2)), pool.apply_async(add, (3, 4)));
///         Ok::<_, pool::Error>(x.await? + y.await?)
///     })?;
///     assert_eq!(sum, 10);
///     Ok(())
/// }
/// ```
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// pool::task! { fn cube(x: i64) -> i64 { x * x * x } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::new(2)?;
///     let handles: Vec<_> = (0..4).map(|x| pool.apply_async(cube, x)).collect();
///     for (x, handle) in handles.iter().enumerate() {
///         assert!(handle.wait(Some(Duration::from_secs(30))));
///         assert!(handle.ready());
///         assert_eq!(handle.successful(), Some(true));
///         assert_eq!(handle.get(None)?, (x as i64).pow(3));
///     }
///     Ok(())
/// }
/// ```
#[must_use = "a handle does nothing unless its result is read (or awaited)"]
pub struct AsyncResult<T> {
    slot: Arc<ResultCell>,
    /// The task's name, for the errors made here.
    task: &'static str,
    /// Set once polled as a future: dropping it unfinished then cancels.
    awaited: bool,
    /// Dropping it unfinished, once awaited, also stops a running input.
    stop_on_drop: bool,
    /// Tells the pool to take back the input when cancelled.
    notice: Option<CancelNotice>,
    /// How long `get` and `wait` check for the result before they sleep
    /// (the pool's `PoolBuilder::spin`).
    spin: Duration,
    /// The call went straight to a worker (`direct_call`): `get` and
    /// `wait` read its reply themselves while it is parked there.
    direct: Option<Direct>,
    output: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}

impl<T> AsyncResult<T> {
    /// Whether the result is there (the task ran, failed, or could not run).
    pub fn ready(&self) -> bool {
        self.release();
        self.slot.lock().outcome.is_some()
    }

    /// Whether the task succeeded: `None` while it is not ready (where
    /// Python raises `ValueError`).
    pub fn successful(&self) -> Option<bool> {
        self.release();
        self.slot
            .lock()
            .outcome
            .as_ref()
            .map(|outcome| outcome.is_ok())
    }

    /// Waits for the result, at most `timeout`; returns whether it is ready.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        self.wait_for_outcome(timeout).outcome.is_some()
    }

    /// Waits for the outcome, at most `timeout`, reading the reply of a
    /// direct call itself while it can.
    fn wait_for_outcome(
        &self,
        timeout: Option<Duration>,
    ) -> std::sync::MutexGuard<'_, super::sink::CellState> {
        let until = timeout.map(|t| Instant::now() + t);
        if let Some(direct) = &self.direct {
            direct.collect(&self.slot, until, self.spin);
        }
        let left = until.map(|at| at.saturating_duration_since(Instant::now()));
        self.slot.spin_then_wait(self.spin, left)
    }

    /// Where the reply of a direct call can no longer be read here, the
    /// pool reads it, and the result comes the usual way.
    fn release(&self) {
        if let Some(direct) = &self.direct {
            direct.release(&self.slot);
        }
    }

    /// Gives up on the result: from now on it is an
    /// [`ErrorKind::Cancelled`] error, unless it had already arrived.
    /// Returns whether the cancel came first.
    ///
    /// An input not yet started never runs: the pool drops it, or takes it
    /// back from the worker that holds it. One already running goes on to
    /// its end and its result is discarded; use
    /// [`cancel_and_stop`](AsyncResult::cancel_and_stop) to stop it. A
    /// [`get`](AsyncResult::get) or [`wait`](AsyncResult::wait) in
    /// another thread returns the cancel at once, but for one reading the
    /// reply of a call that went straight to its worker (`apply_async`
    /// on an idle worker), which returns it when the input ends.
    ///
    /// ```
    /// pool::task! { fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(1)?;
    ///     let busy = pool.apply_async(nap, 300);
    ///     let waiting = pool.apply_async(nap, 300);
    ///     assert!(waiting.cancel());
    ///     assert_eq!(waiting.get(None).unwrap_err().kind(), pool::ErrorKind::Cancelled);
    ///     assert_eq!(busy.get(None)?, 300);
    ///     Ok(())
    /// }
    /// ```
    pub fn cancel(&self) -> bool {
        let cancelled = Error::new(ErrorKind::Cancelled, "the caller cancelled it")
            .with_task(self.task)
            .with_index(0);
        self.release();
        let first = self.slot.cancel(Err(cancelled));
        if let Some(notice) = &self.notice {
            notice.send();
        }
        first
    }

    /// [`cancel`](AsyncResult::cancel), and if the input is running, stop
    /// it by killing its worker (SIGKILL; a replacement starts, and the
    /// other inputs that worker held, for this call or any other, run
    /// again on a worker, not failed). For a remote worker, its connection
    /// is closed instead. Returns whether the cancel came first.
    ///
    /// What an awaited handle does when dropped unfinished, by default
    /// (see [`stop_on_drop`](AsyncResult::stop_on_drop)).
    ///
    /// ```
    /// pool::task! { fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(1)?;
    ///     let long = pool.apply_async(nap, 30_000);
    ///     let next = pool.apply_async(nap, 1);
    ///     std::thread::sleep(std::time::Duration::from_millis(100)); // it starts
    ///     assert!(long.cancel_and_stop());
    ///     // Its worker was replaced: the next input runs at once, not in 30 s.
    ///     assert_eq!(next.get(None)?, 1);
    ///     assert_eq!(long.get(None).unwrap_err().kind(), pool::ErrorKind::Cancelled);
    ///     Ok(())
    /// }
    /// ```
    pub fn cancel_and_stop(&self) -> bool {
        self.slot.stop_if_running();
        let first = self.cancel();
        // A direct call whose reply another thread's `get` or `wait` is
        // reading is stopped here, after the cancel is in the cell, so
        // that its end is not taken for the worker's death.
        if let (true, Some(direct)) = (first, &self.direct) {
            direct.stop_read(&self.slot);
        }
        first
    }

    /// Whether dropping this handle before its result came, once it was
    /// awaited (polled as a future), stops its input if it is running, as
    /// [`cancel_and_stop`](AsyncResult::cancel_and_stop) does (`true`), or
    /// only [cancels](AsyncResult::cancel) it, letting a running input run
    /// to its end (`false`). The default is the pool's
    /// [`PoolBuilder::stop_on_drop`](crate::PoolBuilder::stop_on_drop),
    /// `true` unless set. A handle never awaited is not cancelled by
    /// dropping it, either way.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// pool::task! { fn nap(ms: u64) -> u64 { std::thread::sleep(Duration::from_millis(ms)); ms } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(1)?;
    ///     let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    ///     runtime.block_on(async {
    ///         // Given up on after 100 ms: stopped, its worker replaced.
    ///         let given_up = tokio::time::timeout(Duration::from_millis(100), pool.apply_async(nap, 30_000));
    ///         assert!(given_up.await.is_err());
    ///         assert_eq!(pool.apply_async(nap, 1).await?, 1); // at once
    ///         // Given up on too, but left to finish: the worker stays busy until then.
    ///         let kept = pool.apply_async(nap, 300).stop_on_drop(false);
    ///         assert!(tokio::time::timeout(Duration::from_millis(100), kept).await.is_err());
    ///         assert_eq!(pool.apply_async(nap, 1).await?, 1); // after about 200 ms more
    ///         Ok(())
    ///     })
    /// }
    /// ```
    pub fn stop_on_drop(mut self, stop: bool) -> AsyncResult<T> {
        self.stop_on_drop = stop;
        self
    }
}

impl<T> AsyncResult<T> {
    /// Has `waker` woken when the result arrives, unless it is there
    /// already (then returns `true` and leaves the waker unused). Unlike
    /// polling the handle as a future, this does not make dropping it
    /// unfinished cancel its input.
    pub(crate) fn notify_when_ready(&self, waker: &Waker) -> bool {
        self.release();
        self.slot.watch(waker)
    }

    /// Takes back a waker given to [`notify_when_ready`](Self::notify_when_ready).
    pub(crate) fn stop_notifying(&self, waker: &Waker) {
        self.slot.unwatch(waker);
    }

    /// Forgets that the handle was polled as a future: dropping it then
    /// lets its task run, as for a handle never polled.
    pub(crate) fn forget_awaited(&mut self) {
        self.awaited = false;
    }
}

impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        // A direct call's reply still has to be read for its worker to
        // take other work: the pool does so.
        self.release();
        if self.awaited && self.slot.lock().outcome.is_none() {
            match self.stop_on_drop {
                true => self.cancel_and_stop(),
                false => self.cancel(),
            };
        }
    }
}

impl<T: DeserializeOwned> AsyncResult<T> {
    pub(crate) fn new(
        slot: Arc<ResultCell>,
        task: &'static str,
        notice: Option<CancelNotice>,
    ) -> AsyncResult<T> {
        AsyncResult {
            slot,
            task,
            awaited: false,
            stop_on_drop: true,
            notice,
            spin: Duration::ZERO,
            direct: None,
            output: PhantomData,
        }
    }

    /// Notes that the call went straight to a worker, its reply read
    /// here while it can be.
    pub(crate) fn direct(mut self, direct: Direct) -> AsyncResult<T> {
        self.direct = Some(direct);
        self
    }

    /// Makes `get` and `wait` check for the result for `spin` before they
    /// sleep.
    pub(crate) fn spinning(mut self, spin: Duration) -> AsyncResult<T> {
        self.spin = spin;
        self
    }

    /// Waits for the result, at most `timeout` (`None`: as long as it
    /// takes), and returns it: the output, or the task's error.
    ///
    /// If the timeout passes first the error is
    /// [`ErrorKind::WaitTimedOut`]; the task goes on and a later `get` can
    /// still return its result.
    pub fn get(&self, timeout: Option<Duration>) -> Result<T> {
        let state = self.wait_for_outcome(timeout);
        match &state.outcome {
            None => Err(Error::new(
                ErrorKind::WaitTimedOut,
                format!("no result within {:?}", timeout.unwrap_or_default()),
            )
            .with_task(self.task)),
            Some(outcome) => self.read(outcome),
        }
    }

    fn read(&self, outcome: &Outcome) -> Result<T> {
        match outcome {
            Err(err) => Err(err.clone()),
            Ok(payload) => connection::decode(payload.bytes()).map_err(|err| {
                Error::from_connection(err, "decode the task's output")
                    .with_task(self.task)
                    .with_index(0)
            }),
        }
    }
}

impl<T: DeserializeOwned> Future for AsyncResult<T> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.awaited = true;
        self.release();
        let state = self.slot.poll_outcome(cx.waker());
        match &state.outcome {
            None => Poll::Pending,
            Some(outcome) => Poll::Ready(self.read(outcome)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_times_out_then_succeeds_once_completed() {
        let slot = ResultCell::new();
        let result = AsyncResult::<u32>::new(Arc::clone(&slot), "demo::task", None);
        let err = result.get(Some(Duration::from_millis(5))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WaitTimedOut);
        assert_eq!(result.successful(), None);
        let message = Arc::new(connection::encode(&7u32).unwrap());
        let len = message.len();
        let waiter = std::thread::spawn(move || result.get(None).map_err(|e| e.to_string()));
        slot.complete(Ok(crate::parent::sink::Payload::new(message, 0..len)));
        assert_eq!(waiter.join().unwrap(), Ok(7));
    }

    #[test]
    fn first_outcome_wins_and_errors_can_be_read_twice() {
        let slot = ResultCell::new();
        let result = AsyncResult::<u32>::new(Arc::clone(&slot), "demo::task", None);
        slot.complete(Err(Error::new(ErrorKind::Panicked, "first")));
        slot.complete(Err(Error::new(ErrorKind::Panicked, "second")));
        assert_eq!(result.successful(), Some(false));
        assert_eq!(result.get(None).unwrap_err().message(), "first");
        assert_eq!(
            result.get(Some(Duration::ZERO)).unwrap_err().message(),
            "first"
        );
    }
}
