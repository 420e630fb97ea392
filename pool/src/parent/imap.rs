//! [`Imap`] and [`ImapUnordered`]: lazy maps over possibly endless inputs.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_channel::{unbounded, Receiver};

use super::command::Commands;
use super::job::{decode_output, encode_input, Item, Job};
use super::sink::{CancelOnDrop, Delivery, Stream};
use crate::error::{Error, ErrorKind, Result};
use crate::task::Task;

/// Inputs taken from the iterator per submission, so that a slow iterator
/// does not hold back work already taken from it for long.
const SUBMIT_GROUP: usize = 64;
/// Inputs outstanding per call, at chunk size 1: enough to keep every
/// worker's queue full while results travel back.
const MIN_WINDOW: usize = 1024;

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
///     pool::init();
///     let pool = pool::Pool::new(2)?;
///     let squares: Vec<u32> = pool
///         .imap(square, 1..=6)
///         .chunksize(2)
///         .collect::<Result<_, _>>()?;
///     assert_eq!(squares, [1, 4, 9, 16, 25, 36]);
///     Ok(())
/// }
/// ```
pub struct Imap<'p, T: Task, I: Iterator<Item = T::Input>> {
    commands: &'p Commands,
    inputs: I,
    inputs_done: bool,
    order: Order,
    chunksize: usize,
    stream: Arc<Stream>,
    results: Receiver<Vec<Delivery>>,
    _cancel: CancelOnDrop,
    /// Index of the next input to take from the iterator.
    next_input: usize,
    /// Inputs submitted whose results have not been yielded.
    outstanding: usize,
    /// In order: results waiting for earlier ones, from index `next_yield`.
    next_yield: usize,
    reorder: VecDeque<Option<Delivery>>,
    /// Out of order: results ready to yield.
    ready: VecDeque<Delivery>,
    finished: bool,
    _task: T,
}

impl<'p, T: Task, I: Iterator<Item = T::Input>> Imap<'p, T, I> {
    pub(crate) fn new(commands: &'p Commands, task: T, inputs: I, order: Order) -> Imap<'p, T, I> {
        let (sender, results) = unbounded();
        let (stream, cancel) = Stream::new(sender);
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
            next_yield: 0,
            reorder: VecDeque::new(),
            ready: VecDeque::new(),
            finished: false,
            _task: task,
        }
    }

    /// Groups `chunksize` inputs (at least 1) into each chunk a worker
    /// runs in one go. Takes effect for inputs not yet submitted: call it
    /// before iterating.
    pub fn chunksize(mut self, chunksize: usize) -> Self {
        self.chunksize = chunksize.max(1);
        self
    }

    fn window(&self) -> usize {
        MIN_WINDOW.max(self.chunksize * 4 * self.commands.processes().max(1))
    }

    /// Takes inputs from the iterator and submits them, up to the window.
    fn top_up(&mut self) {
        let window = self.window();
        let mut jobs = Vec::new();
        let mut items = Vec::with_capacity(self.chunksize);
        let mut taken = 0;
        while !self.inputs_done
            && self.outstanding < window
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
            match encode_input::<T>(&input, index, self.commands.max_message_size()) {
                Ok(input) => items.push(Item::new(index, input)),
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

    /// The next result with its index, or `None` at the end.
    pub(crate) fn next_delivery(&mut self) -> Option<Result<(usize, T::Output)>> {
        if self.finished {
            return None;
        }
        if self.pool_closed() {
            self.finished = true;
            return Some(Err(Error::new(ErrorKind::Closed, "the pool was closed")));
        }
        loop {
            self.top_up();
            if let Some(delivery) = self.take_ready() {
                self.outstanding -= 1;
                let index = delivery.index;
                return Some(decode_output::<T>(delivery).map(|output| (index, output)));
            }
            if self.outstanding == 0 && self.inputs_done {
                self.finished = true;
                return None;
            }
            let Ok(batch) = self.results.recv() else {
                self.finished = true;
                return Some(Err(Error::new(ErrorKind::Closed, "the pool stopped")));
            };
            for delivery in batch {
                if let Err(err) = &delivery.outcome {
                    // These end the whole call, whatever the order.
                    if matches!(
                        err.kind(),
                        ErrorKind::Interrupted | ErrorKind::Closed | ErrorKind::Startup
                    ) {
                        self.finished = true;
                        return Some(Err(err.clone()));
                    }
                }
                self.place(delivery);
            }
        }
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

/// The iterator [`Pool::imap_unordered`](crate::Pool::imap_unordered) returns: `(index, output)` pairs
/// in the order they complete.
///
/// # Examples
///
/// ```
/// pool::task! { fn double(x: u8) -> u16 { 2 * x as u16 } }
///
/// fn main() -> Result<(), pool::Error> {
///     pool::init();
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
}

impl<T: Task, I: Iterator<Item = T::Input>> Iterator for ImapUnordered<'_, T, I> {
    type Item = Result<(usize, T::Output)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next_delivery()
    }
}
