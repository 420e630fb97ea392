//! [`Imap`] and [`ImapUnordered`]: lazy maps over possibly endless inputs.

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, TryRecvError};
use futures_core::Stream;

use super::command::Commands;
use super::job::{decode_output, encode_item, Item, Job};
use super::journal::{Journal, JournalOptions};
use super::sink::{CancelOnDrop, Channel, Delivery};
use super::spare::WINDOW_BYTES;
use crate::error::{ends_the_call, Error, ErrorKind, Result};
use crate::task::Task;

/// Inputs taken from the iterator per submission, so that a slow iterator
/// does not hold back work already taken from it for long.
const SUBMIT_GROUP: usize = 64;
/// Inputs outstanding per call, at chunk size 1: enough to keep every
/// worker's queue full while results travel back.
const MIN_WINDOW: usize = 1024;

/// Inputs from this size up count against [`WINDOW_BYTES`] while they are
/// in flight, as in `map`: an imap of large inputs holds about 16 MiB of
/// them, not [`MIN_WINDOW`] of them. Smaller ones cost no bookkeeping.
const LARGE_INPUT: usize = 64 << 10;

/// One input's result with its index.
type Indexed<O> = Result<(usize, O)>;

/// What an [`Imap`] can do without waiting.
enum Step<O> {
    /// The next answer: a result, or the end.
    Answer(Option<Indexed<O>>),
    /// Nothing to answer until a batch of results arrives.
    NeedResults,
}

/// In which order an [`Imap`] yields its results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// The order of the inputs (`imap`).
    Input,
    /// The order they complete in (`imap_unordered`).
    Completion,
}

/// The iterator [`Pool::imap`](crate::Pool::imap) returns: results in input order.
///
/// # Examples
///
/// ```
/// pool::task! { fn square(x: u32) -> u32 { x * x } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::new(2)?;
///     let squares: Vec<u32> = pool
///         .imap(square, 1..=6)
///         .chunksize(2)
///         .collect::<Result<_, _>>()?;
///     assert_eq!(squares, [1, 4, 9, 16, 25, 36]);
///     Ok(())
/// }
/// ```
#[must_use = "an imap does nothing unless it is iterated (dropping it drops its inputs)"]
pub struct Imap<'p, T: Task, I: Iterator<Item = T::Input>> {
    commands: &'p Commands,
    inputs: I,
    inputs_done: bool,
    order: Order,
    chunksize: usize,
    stream: Arc<Channel>,
    results: Receiver<Vec<Delivery>>,
    _cancel: CancelOnDrop,
    /// Index of the next input to take from the iterator.
    next_input: usize,
    /// Inputs submitted whose results have not been yielded.
    outstanding: usize,
    /// Large inputs submitted whose results have not arrived, by index,
    /// with their encoded sizes, and those sizes' sum.
    large_in_flight: HashMap<usize, usize>,
    large_bytes: usize,
    /// In order: results waiting for earlier ones, from index `next_yield`.
    next_yield: usize,
    reorder: VecDeque<Option<Delivery>>,
    /// Out of order: results ready to yield.
    ready: VecDeque<Delivery>,
    finished: bool,
    /// The journal asked for, opened on the first result asked for.
    journal_options: JournalOptions,
    journal: Option<Journal>,
    /// A journal that failed, to yield and end with.
    journal_error: Option<Error>,
    task: PhantomData<fn() -> T>,
}

impl<'p, T: Task, I: Iterator<Item = T::Input>> Imap<'p, T, I> {
    pub(crate) fn new(commands: &'p Commands, _task: T, inputs: I, order: Order) -> Imap<'p, T, I> {
        let (sender, results) = unbounded();
        let (stream, cancel) = Channel::new(sender, commands.cancel_notice().clone());
        Imap {
            commands,
            inputs,
            inputs_done: false,
            order,
            chunksize: 1,
            stream,
            results,
            _cancel: cancel,
            next_input: 0,
            outstanding: 0,
            large_in_flight: HashMap::new(),
            large_bytes: 0,
            next_yield: 0,
            reorder: VecDeque::new(),
            ready: VecDeque::new(),
            finished: false,
            journal_options: JournalOptions::default(),
            journal: None,
            journal_error: None,
            task: PhantomData,
        }
    }

    /// Groups `chunksize` inputs (at least 1) into each chunk a worker
    /// runs in one go. Takes effect for inputs not yet submitted: call it
    /// before iterating.
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = chunksize.max(1);
        self
    }

    /// Journals every input's result in the file at `path`, and takes
    /// from it the results a previous run journaled, as
    /// [`MapWith::journal`](crate::MapWith::journal) does: a rerun after
    /// a kill yields the same results, running only what is missing. A
    /// journal that cannot be used is yielded as an
    /// [`ErrorKind::Journal`] error, which
    /// ends the iterator. Call it before iterating.
    ///
    /// ```
    /// pool::task! { fn square(x: u64) -> u64 { x * x } }
    ///
    /// fn main() -> Result<(), pool::Error> {
    ///     let pool = pool::Pool::new(2)?;
    ///     let path = std::env::temp_dir().join(format!("pool-imap-doc-{}.journal", std::process::id()));
    ///     let first: Vec<u64> = pool.imap(square, 0..50).journal(&path).collect::<Result<_, _>>()?;
    ///     let again: Vec<u64> = pool.imap(square, 0..50).journal(&path).collect::<Result<_, _>>()?;
    ///     assert_eq!(first, again);
    ///     std::fs::remove_file(&path).unwrap();
    ///     Ok(())
    /// }
    /// ```
    pub fn journal(mut self, path: impl AsRef<Path>) -> Self {
        self.journal_options.path = Some(path.as_ref().to_path_buf());
        self
    }

    /// Runs again the inputs whose journaled result is a failure; see
    /// [`MapWith::rerun_failures`](crate::MapWith::rerun_failures).
    pub fn rerun_failures(mut self) -> Self {
        self.journal_options.rerun_failures = true;
        self
    }

    /// How often the journal is flushed to disk; see
    /// [`MapWith::journal_sync`](crate::MapWith::journal_sync).
    pub fn journal_sync(mut self, interval: Duration) -> Self {
        self.journal_options.sync = interval;
        self
    }

    /// Opens the journal asked for, once, before the first input is taken.
    fn open_journal(&mut self) {
        if self.next_input == 0 && self.journal.is_none() && self.journal_error.is_none() {
            match self
                .journal_options
                .open::<T>(self.commands.max_message_size())
            {
                Ok(journal) => self.journal = journal,
                Err(err) => self.journal_error = Some(err),
            }
        }
    }

    fn window(&self) -> usize {
        MIN_WINDOW.max(self.chunksize * 4 * self.commands.live_workers().max(1))
    }

    /// Takes inputs from the iterator and submits them, up to the window.
    fn top_up(&mut self) {
        let window = self.window();
        let mut jobs = Vec::new();
        let mut items = Vec::with_capacity(self.chunksize);
        let mut taken = 0;
        while !self.inputs_done
            && self.outstanding < window
            && self.has_byte_room()
            && taken < SUBMIT_GROUP.max(self.chunksize)
        {
            let Some(input) = self.inputs.next() else {
                self.inputs_done = true;
                break;
            };
            let index = self.next_input;
            self.next_input += 1;
            self.outstanding += 1;
            taken += 1;
            let limit = self.commands.max_message_size();
            let (buffer, room) = self.stream.spare_buffer();
            match encode_item::<T>(&input, index, limit, buffer, room) {
                Ok(item) => {
                    if let Some(journal) = &mut self.journal {
                        match journal.replay_or_start(&item) {
                            Ok(Some(replayed)) => {
                                self.place(replayed);
                                continue;
                            }
                            Ok(None) => {}
                            Err(err) => {
                                self.journal_error = Some(err);
                                break;
                            }
                        }
                    }
                    let len = item.input().len();
                    if len >= LARGE_INPUT {
                        self.large_in_flight.insert(index, len);
                        self.large_bytes += len;
                    }
                    items.push(item);
                }
                Err(err) => self.place(Delivery {
                    index,
                    outcome: Err(err),
                }),
            }
            if items.len() == self.chunksize {
                jobs.push(self.job(std::mem::take(&mut items)));
            }
        }
        if !items.is_empty() {
            jobs.push(self.job(items));
        }
        if !jobs.is_empty() {
            self.commands.submit(jobs);
        }
    }

    /// Whether the large inputs in flight leave room for more: within
    /// [`WINDOW_BYTES`], or fewer than one per live worker.
    fn has_byte_room(&self) -> bool {
        self.large_bytes < WINDOW_BYTES
            || self.large_in_flight.len() < self.commands.live_workers().max(1)
    }

    fn job(&self, items: Vec<Item>) -> Job {
        Job::streamed::<T>(items, &self.stream)
    }

    fn place(&mut self, delivery: Delivery) {
        if self.order == Order::Completion {
            self.ready.push_back(delivery);
            return;
        }
        let Some(offset) = delivery.index.checked_sub(self.next_yield) else {
            return;
        };
        if self.reorder.len() <= offset {
            self.reorder.resize_with(offset + 1, || None);
        }
        if self.reorder[offset].is_none() {
            self.reorder[offset] = Some(delivery);
        }
    }

    fn take_ready(&mut self) -> Option<Delivery> {
        if self.order == Order::Completion {
            return self.ready.pop_front();
        }
        if !matches!(self.reorder.front(), Some(Some(_))) {
            return None;
        }
        self.next_yield += 1;
        self.reorder.pop_front().flatten()
    }

    /// The next result with its index, or `None` at the end, waiting for
    /// it as long as it takes.
    pub(crate) fn next_delivery(&mut self) -> Option<Indexed<T::Output>> {
        loop {
            if let Step::Answer(answer) = self.advance() {
                return answer;
            }
            match self.results.recv() {
                Ok(batch) => {
                    if let Some(end) = self.absorb(batch) {
                        return Some(Err(end));
                    }
                }
                Err(_) => return Some(Err(self.stopped())),
            }
        }
    }

    /// [`next_delivery`](Self::next_delivery) for a [`Stream`]: registers
    /// the task's waker instead of waiting.
    fn poll_delivery(&mut self, cx: &mut Context<'_>) -> Poll<Option<Indexed<T::Output>>> {
        loop {
            if let Step::Answer(answer) = self.advance() {
                return Poll::Ready(answer);
            }
            let batch = match self.results.try_recv() {
                Err(TryRecvError::Empty) => {
                    // Registered before looking again, so that a batch
                    // sent in between wakes the task rather than being missed.
                    self.stream.register(cx.waker());
                    self.results.try_recv()
                }
                received => received,
            };
            match batch {
                Ok(batch) => {
                    if let Some(end) = self.absorb(batch) {
                        return Poll::Ready(Some(Err(end)));
                    }
                }
                Err(TryRecvError::Empty) => return Poll::Pending,
                Err(TryRecvError::Disconnected) => return Poll::Ready(Some(Err(self.stopped()))),
            }
        }
    }

    /// Submits more inputs and returns the next answer if there is one.
    fn advance(&mut self) -> Step<T::Output> {
        if self.finished {
            return Step::Answer(None);
        }
        if self.pool_closed() {
            self.finished = true;
            let closed = Error::new(ErrorKind::Closed, "the pool was closed");
            return Step::Answer(Some(Err(closed)));
        }
        if self.next_input == 0 {
            if let Err(err) = self.commands.check_task(T::NAME) {
                self.finished = true;
                return Step::Answer(Some(Err(err)));
            }
        }
        self.open_journal();
        if self.journal_error.is_none() {
            self.top_up();
        }
        if let Some(err) = self.journal_error.take() {
            self.finished = true;
            return Step::Answer(Some(Err(err)));
        }
        if let Some(delivery) = self.take_ready() {
            self.outstanding -= 1;
            let index = delivery.index;
            let output = decode_output::<T>(delivery).map(|output| (index, output));
            return Step::Answer(Some(output));
        }
        if self.outstanding == 0 && self.inputs_done {
            self.finished = true;
            if let Some(Err(err)) = self.journal.as_mut().map(Journal::finish) {
                return Step::Answer(Some(Err(err)));
            }
            return Step::Answer(None);
        }
        Step::NeedResults
    }

    /// Takes in a batch of results; returns the error that ends the whole
    /// call, if one came.
    fn absorb(&mut self, batch: Vec<Delivery>) -> Option<Error> {
        for delivery in batch {
            if let Some(len) = self.large_in_flight.remove(&delivery.index) {
                self.large_bytes -= len;
            }
            if let Err(err) = &delivery.outcome {
                // These end the whole call, whatever the order.
                if ends_the_call(err) {
                    self.finished = true;
                    return Some(err.clone());
                }
            }
            if let Some(journal) = &mut self.journal {
                journal.record(delivery.index, &delivery.outcome);
            }
            self.place(delivery);
        }
        if let Some(Err(err)) = self.journal.as_mut().map(Journal::flush) {
            self.finished = true;
            return Some(err);
        }
        None
    }

    fn stopped(&mut self) -> Error {
        self.finished = true;
        Error::new(ErrorKind::Closed, "the pool stopped")
    }

    fn pool_closed(&self) -> bool {
        self.next_input == 0 && self.commands.is_closed()
    }
}

impl<T: Task, I: Iterator<Item = T::Input>> Iterator for Imap<'_, T, I> {
    type Item = Result<T::Output>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_delivery()
            .map(|result| result.map(|(_, output)| output))
    }
}

/// The same results as the [`Iterator`], for async code: the task is woken
/// by the pool's dispatcher when results arrive. Inputs are taken from the
/// input iterator inside `poll_next`, so it should not block. Dropping the
/// stream drops the inputs not yet started, as dropping the iterator does.
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
///     let doubled = futures_executor::block_on(async {
///         let mut results = pool.imap(double, 1..=3);
///         let mut all = Vec::new();
///         while let Some(result) = next(&mut results).await {
///             all.push(result?);
///         }
///         Ok::<_, pool::Error>(all)
///     })?;
///     assert_eq!(doubled, [2, 4, 6]);
///     Ok(())
/// }
/// ```
impl<T: Task, I: Iterator<Item = T::Input> + Unpin> Stream for Imap<'_, T, I> {
    type Item = Result<T::Output>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut()
            .poll_delivery(cx)
            .map(|next| next.map(|result| result.map(|(_, output)| output)))
    }
}

/// The iterator [`Pool::imap_unordered`](crate::Pool::imap_unordered) returns: `(index, output)` pairs
/// in the order they complete.
///
/// # Examples
///
/// ```
/// pool::task! { fn double(x: u8) -> u16 { 2 * x as u16 } }
///
/// fn main() -> Result<(), pool::Error> {
///     let pool = pool::Pool::new(2)?;
///     let mut total = 0;
///     for result in pool.imap_unordered(double, 0..100).chunksize(10) {
///         let (_index, doubled) = result?;
///         total += doubled;
///     }
///     assert_eq!(total, 9900);
///     Ok(())
/// }
/// ```
#[must_use = "an imap does nothing unless it is iterated (dropping it drops its inputs)"]
pub struct ImapUnordered<'p, T: Task, I: Iterator<Item = T::Input>> {
    inner: Imap<'p, T, I>,
}

impl<'p, T: Task, I: Iterator<Item = T::Input>> ImapUnordered<'p, T, I> {
    pub(crate) fn new(inner: Imap<'p, T, I>) -> ImapUnordered<'p, T, I> {
        ImapUnordered { inner }
    }

    /// Groups `chunksize` inputs (at least 1) into each chunk; see
    /// [`Imap::chunksize`].
    pub fn chunksize(self, chunksize: usize) -> Self {
        ImapUnordered {
            inner: self.inner.chunksize(chunksize),
        }
    }

    /// Journals the results and replays a previous run's; see
    /// [`Imap::journal`]. Replayed results come first.
    pub fn journal(self, path: impl AsRef<Path>) -> Self {
        ImapUnordered {
            inner: self.inner.journal(path),
        }
    }

    /// See [`MapWith::rerun_failures`](crate::MapWith::rerun_failures).
    pub fn rerun_failures(self) -> Self {
        ImapUnordered {
            inner: self.inner.rerun_failures(),
        }
    }

    /// See [`MapWith::journal_sync`](crate::MapWith::journal_sync).
    pub fn journal_sync(self, interval: Duration) -> Self {
        ImapUnordered {
            inner: self.inner.journal_sync(interval),
        }
    }
}

impl<T: Task, I: Iterator<Item = T::Input>> Iterator for ImapUnordered<'_, T, I> {
    type Item = Result<(usize, T::Output)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next_delivery()
    }
}

/// The same results as the [`Iterator`], for async code; see
/// [`Imap`]'s `Stream`.
impl<T: Task, I: Iterator<Item = T::Input> + Unpin> Stream for ImapUnordered<'_, T, I> {
    type Item = Result<(usize, T::Output)>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_delivery(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::parent::command::Command;
    use crate::parent::sink::CancelNotice;

    crate::task! {
        fn echo_bytes(x: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf { x }
    }

    #[test]
    fn large_inputs_in_flight_are_bounded_by_bytes() {
        const MIB: usize = 1 << 20;
        let (sender, receiver) = unbounded();
        let (notice, _) = CancelNotice::pair();
        let live = Arc::new(AtomicUsize::new(2));
        let commands = Commands::new(sender, 0, live, u64::MAX, notice);
        let inputs = (0..40).map(|i| serde_bytes::ByteBuf::from(vec![i as u8; MIB]));
        let mut imap = Imap::new(&commands, echo_bytes, inputs, Order::Input);
        // Nothing answers: what is submitted is what the window lets out.
        imap.top_up();
        imap.top_up();
        let submitted: usize = receiver
            .try_iter()
            .map(|command| match command {
                Command::SubmitMany(jobs) => jobs.iter().map(|job| job.items.len()).sum(),
                _ => 0,
            })
            .sum();
        // By count alone, all 40 (under MIN_WINDOW, one group of 64).
        assert_eq!(submitted, WINDOW_BYTES / MIB);
    }
}
