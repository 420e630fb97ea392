//! Waiting for the first of several [`AsyncResult`]s: [`as_completed`] and
//! [`wait_any`].
//!
//! Each handle's slot is given a small [`Waker`] of ours (the slot already
//! wakes a future's task when its result arrives) that puts the handle's
//! position on one shared queue and signals its condition variable. So
//! waiting on N handles costs no thread, no timer and no polling loop:
//! the dispatcher's own completion of a result is what wakes the waiter.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;

use super::async_result::AsyncResult;
use super::sink::keep_waker;
use crate::error::{Error, ErrorKind, Result};

/// Positions of handles whose results arrived, in the order they arrived.
#[derive(Default)]
struct ReadyQueue {
    state: Mutex<ReadyState>,
    arrived: Condvar,
}

#[derive(Default)]
struct ReadyState {
    positions: VecDeque<usize>,
    /// The task of a stream waiting for the next result.
    waker: Option<Waker>,
}

impl ReadyQueue {
    fn lock(&self) -> MutexGuard<'_, ReadyState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, position: usize) {
        let mut state = self.lock();
        state.positions.push_back(position);
        let waker = state.waker.take();
        drop(state);
        self.arrived.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Waits until a position is queued or `deadline` passes, and takes it.
    fn pop_until(&self, deadline: Option<Instant>) -> Option<usize> {
        let mut state = self.lock();
        loop {
            if let Some(position) = state.positions.pop_front() {
                return Some(position);
            }
            state = match deadline {
                None => self.arrived.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.arrived
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Registers one handle: queues its position now if its result is
    /// there, or when it arrives. Returns the waker the handle keeps.
    fn watch<T>(self: &Arc<Self>, position: usize, handle: &AsyncResult<T>) -> Waker {
        let waker = Waker::from(Arc::new(Arrival {
            position,
            queue: Arc::clone(self),
        }));
        if handle.notify_when_ready(&waker) {
            self.push(position);
        }
        waker
    }
}

/// The waker one handle's slot holds: its result's arrival queues its
/// position.
struct Arrival {
    position: usize,
    queue: Arc<ReadyQueue>,
}

impl Wake for Arrival {
    fn wake(self: Arc<Self>) {
        self.queue.push(self.position);
    }
}

/// Yields `handles` as their results arrive, each with its position in
/// `handles` (Python's `concurrent.futures.as_completed`).
///
/// Handles whose results are already there come first, in their order in
/// `handles`; the others follow in the order their results arrive, errors
/// and cancellations included. Each yielded handle is ready, so its
/// [`get`](AsyncResult::get) returns at once. Waiting costs no thread and
/// no polling: the pool's dispatcher wakes the waiter when a result
/// arrives. The iterator ([`Iterator::next`] waits as long as it takes,
/// [`AsCompleted::next_timeout`] at most a given time) is also a
/// [`Stream`] for async code.
///
/// Dropping the iterator drops the handles it still holds, which lets
/// their tasks run (as dropping an [`AsyncResult`] does).
///
/// ```
/// pool::task! { fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::new(2)?;
///     let handles: Vec<_> = [300, 0, 100].into_iter().map(|ms| pool.apply_async(nap, ms)).collect();
///     let mut naps = Vec::new();
///     for (position, handle) in pool::as_completed(handles) {
///         // Most likely (1, 0), then (2, 100), then (0, 300).
///         naps.push((position, handle.get(None)?));
///     }
///     naps.sort();
///     assert_eq!(naps, [(0, 300), (1, 0), (2, 100)]);
///     Ok(())
/// }
/// ```
pub fn as_completed<T>(handles: impl IntoIterator<Item = AsyncResult<T>>) -> AsCompleted<T> {
    let queue = Arc::new(ReadyQueue::default());
    // Handed over, a handle lets its task run when dropped, whether or not
    // it was polled before: dropping the iterator cancels nothing.
    let handles: Vec<Option<AsyncResult<T>>> = handles
        .into_iter()
        .map(|mut handle| {
            handle.forget_awaited();
            Some(handle)
        })
        .collect();
    for (position, handle) in handles.iter().enumerate() {
        if let Some(handle) = handle {
            let _ = queue.watch(position, handle);
        }
    }
    AsCompleted {
        remaining: handles.len(),
        handles,
        queue,
    }
}

/// The iterator [`as_completed`] returns: `(position, handle)` pairs in the
/// order the handles' results arrive.
#[must_use = "an iterator does nothing unless it is iterated"]
pub struct AsCompleted<T> {
    handles: Vec<Option<AsyncResult<T>>>,
    /// Handles not yielded yet.
    remaining: usize,
    queue: Arc<ReadyQueue>,
}

impl<T> std::fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsCompleted")
            .field("handles", &self.handles.len())
            .field("remaining", &self.remaining)
            .finish()
    }
}

impl<T> AsCompleted<T> {
    /// How many handles have not been yielded yet.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// The next handle to complete, waiting at most `timeout`: `Ok(None)`
    /// once every handle was yielded, and an [`ErrorKind::WaitTimedOut`]
    /// error if none completed in time (the tasks go on, and a later call
    /// can still yield them).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// pool::task! { fn echo(x: u32) -> u32 { x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let mut completed = pool::as_completed((0..3).map(|x| pool.apply_async(echo, x)));
    ///     let mut sum = 0;
    ///     while let Some((_, handle)) = completed.next_timeout(Duration::from_secs(60))? {
    ///         sum += handle.get(None)?;
    ///     }
    ///     assert_eq!(sum, 3);
    ///     Ok(())
    /// }
    /// ```
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<(usize, AsyncResult<T>)>> {
        let deadline = Instant::now().checked_add(timeout);
        match self.next_until(deadline) {
            Some(next) => Ok(next),
            None => Err(Error::new(
                ErrorKind::WaitTimedOut,
                format!(
                    "none of {} handles completed within {timeout:?}",
                    self.remaining
                ),
            )),
        }
    }

    /// The next handle (`Some(None)` at the end), or `None` if `deadline`
    /// passed first.
    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Option<(usize, AsyncResult<T>)>> {
        while self.remaining > 0 {
            let position = self.queue.pop_until(deadline)?;
            if let Some(next) = self.take(position) {
                return Some(Some(next));
            }
        }
        Some(None)
    }

    /// Takes the handle at `position` out, unless it was yielded already.
    fn take(&mut self, position: usize) -> Option<(usize, AsyncResult<T>)> {
        let handle = self.handles.get_mut(position)?.take()?;
        self.remaining -= 1;
        Some((position, handle))
    }
}

impl<T> Iterator for AsCompleted<T> {
    type Item = (usize, AsyncResult<T>);

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None).flatten()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// The same handles in the same order as the [`Iterator`], for async code:
/// the task is woken by the pool's dispatcher when a result arrives.
///
/// ```
/// use futures_core::Stream;
///
/// pool::task! { fn double(x: u32) -> u32 { 2 * x } }
///
/// /// A minimal `StreamExt::next`, to need no more than `futures-core`.
/// async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
///     std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
/// }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::new(2)?;
///     let total = futures_executor::block_on(async {
///         let mut completed = pool::as_completed((1..=3).map(|x| pool.apply_async(double, x)));
///         let mut total = 0;
///         while let Some((_, handle)) = next(&mut completed).await {
///             total += handle.await?;
///         }
///         Ok::<_, pool::Error>(total)
///     })?;
///     assert_eq!(total, 12);
///     Ok(())
/// }
/// ```
impl<T> Stream for AsCompleted<T> {
    type Item = (usize, AsyncResult<T>);

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        while this.remaining > 0 {
            let position = {
                let mut state = this.queue.lock();
                match state.positions.pop_front() {
                    Some(position) => position,
                    None => {
                        // Registered under the queue's lock, which `push`
                        // takes too: an arrival cannot slip in between.
                        keep_waker(&mut state.waker, cx.waker());
                        return Poll::Pending;
                    }
                }
            };
            if let Some(next) = this.take(position) {
                return Poll::Ready(Some(next));
            }
        }
        Poll::Ready(None)
    }
}

/// Waits until one of `handles` is ready, at most `timeout` (`None`: as
/// long as it takes), and returns its position in `handles`: the first
/// ready one in `handles`' order if several already are, `None` if the
/// timeout passed first (or `handles` is empty).
///
/// The handles are only borrowed, so they can be waited on again; to take
/// each in turn as it completes, [`as_completed`] reads better. Like
/// [`as_completed`], this needs no thread and no polling loop.
///
/// ```
/// use std::time::Duration;
///
/// pool::task! { fn nap(ms: u64) -> u64 { std::thread::sleep(std::time::Duration::from_millis(ms)); ms } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::new(2)?;
///     let handles = [pool.apply_async(nap, 200), pool.apply_async(nap, 0)];
///     let first = pool::wait_any(&handles, None).expect("a handle");
///     assert!(handles[first].ready());
///     assert_eq!(pool::wait_any::<u64>(&[], Some(Duration::ZERO)), None);
///     Ok(())
/// }
/// ```
pub fn wait_any<T>(handles: &[AsyncResult<T>], timeout: Option<Duration>) -> Option<usize> {
    if let Some(position) = handles.iter().position(AsyncResult::ready) {
        return Some(position);
    }
    if handles.is_empty() {
        return None;
    }
    let queue = Arc::new(ReadyQueue::default());
    let wakers: Vec<Waker> = handles
        .iter()
        .enumerate()
        .map(|(position, handle)| queue.watch(position, handle))
        .collect();
    let deadline = timeout.and_then(|timeout| Instant::now().checked_add(timeout));
    // A timeout too large to add to now: as long as it takes.
    let found = queue.pop_until(deadline);
    // So that calls that time out again and again leave nothing behind.
    for (handle, waker) in handles.iter().zip(&wakers) {
        handle.stop_notifying(waker);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parent::sink::{Payload, ResultCell};

    fn handles(n: usize) -> (Vec<Arc<ResultCell>>, Vec<AsyncResult<u32>>) {
        let slots: Vec<_> = (0..n).map(|_| ResultCell::new()).collect();
        let handles = slots
            .iter()
            .map(|slot| AsyncResult::new(Arc::clone(slot), "demo::task", None))
            .collect();
        (slots, handles)
    }

    fn complete(slot: &ResultCell, value: u32) {
        let message = Arc::new(connection::encode(&value).unwrap());
        let len = message.len();
        slot.complete(Ok(Payload::new(message, 0..len)));
    }

    #[test]
    fn yields_ready_handles_first_then_in_arrival_order_from_another_thread() {
        let (slots, handles) = handles(4);
        complete(&slots[3], 30);
        let mut completed = as_completed(handles);
        let first = completed.next_timeout(Duration::ZERO).unwrap().unwrap();
        assert_eq!((first.0, first.1.get(None).unwrap()), (3, 30));
        let err = completed
            .next_timeout(Duration::from_millis(1))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WaitTimedOut);
        let completer = std::thread::spawn(move || {
            for (position, value) in [(1, 10), (0, 0), (2, 20)] {
                complete(&slots[position], value);
            }
        });
        let rest: Vec<(usize, u32)> = completed
            .by_ref()
            .map(|(position, handle)| (position, handle.get(None).unwrap()))
            .collect();
        completer.join().unwrap();
        assert_eq!(rest, [(1, 10), (0, 0), (2, 20)]);
        assert_eq!(
            completed.next_timeout(Duration::ZERO).unwrap().map(|n| n.0),
            None
        );
    }

    #[test]
    fn a_cancelled_handle_is_yielded_at_its_cancellation() {
        let (slots, handles) = handles(2);
        let mut completed = as_completed(handles);
        slots[1].cancel(Err(Error::new(ErrorKind::Cancelled, "gave up")));
        let (position, handle) = completed.next().unwrap();
        assert_eq!(position, 1);
        assert_eq!(handle.get(None).unwrap_err().kind(), ErrorKind::Cancelled);
        assert_eq!(completed.remaining(), 1);
    }

    #[test]
    fn several_threads_waiting_on_the_same_handles_all_wake() {
        let (slots, handles) = handles(2);
        let handles = Arc::new(handles);
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let handles = Arc::clone(&handles);
                std::thread::spawn(move || wait_any(&handles, Some(Duration::from_secs(20))))
            })
            .collect();
        // Each waiter watches before or after this; either way it wakes.
        std::thread::sleep(Duration::from_millis(50));
        complete(&slots[1], 1);
        for waiter in waiters {
            assert_eq!(waiter.join().unwrap(), Some(1));
        }
    }

    #[test]
    fn wait_any_times_out_then_finds_the_completed_handle() {
        let (slots, handles) = handles(3);
        assert_eq!(wait_any(&handles, Some(Duration::from_millis(1))), None);
        complete(&slots[2], 2);
        assert_eq!(wait_any(&handles, Some(Duration::ZERO)), Some(2));
        let completer = {
            let slot = Arc::clone(&slots[1]);
            std::thread::spawn(move || complete(&slot, 1))
        };
        assert_eq!(wait_any(&handles[..2], None), Some(1));
        completer.join().unwrap();
    }

    #[test]
    fn the_stream_wakes_its_task_when_a_result_arrives() {
        let (slots, handles) = handles(2);
        let mut completed = as_completed(handles);
        let completer = std::thread::spawn(move || {
            complete(&slots[1], 1);
            complete(&slots[0], 0);
        });
        let order = futures_executor::block_on(async {
            let mut order = Vec::new();
            while let Some((position, _)) =
                std::future::poll_fn(|cx| Pin::new(&mut completed).poll_next(cx)).await
            {
                order.push(position);
            }
            order
        });
        completer.join().unwrap();
        assert_eq!(order, [1, 0]);
    }
}
