//! What travels from a pool call to the dispatcher and back: jobs (chunks
//! of encoded inputs) and the sinks their results are delivered to.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::async_result::Slot;
use crate::error::{Error, ErrorKind};

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
        // Ranges come from `wire::Reader::outcome` on this very message.
        self.message.get(self.range.clone()).unwrap_or_default()
    }
}

pub(crate) type Outcome = Result<Payload, Error>;

/// One input's result, for the call that submitted it.
pub(crate) struct Delivery {
    pub(crate) index: usize,
    pub(crate) outcome: Outcome,
}

/// Where results of a call go: a single slot (`apply_async`) or a stream of
/// batches (`map`, `imap`), one channel per call rather than per task.
#[derive(Clone)]
pub(crate) enum Sink {
    Slot(Arc<Slot>),
    Stream(Arc<Stream>),
}

pub(crate) struct Stream {
    sender: Sender<Vec<Delivery>>,
    /// Set by the caller when it no longer wants results: queued work for
    /// it is then dropped.
    cancelled: Arc<AtomicBool>,
}

impl Stream {
    /// A stream and its cancel flag. The caller keeps only the flag, so
    /// that its receiver sees the stream end once every job is gone.
    pub(crate) fn new(sender: Sender<Vec<Delivery>>) -> (Arc<Stream>, Arc<AtomicBool>) {
        let cancelled = Arc::new(AtomicBool::new(false));
        let stream = Arc::new(Stream {
            sender,
            cancelled: Arc::clone(&cancelled),
        });
        (stream, cancelled)
    }

    pub(crate) fn send(&self, deliveries: Vec<Delivery>) {
        // A caller that went away no longer needs them.
        let _ = self.sender.send(deliveries);
    }
}

impl Sink {
    pub(crate) fn is_cancelled(&self) -> bool {
        match self {
            Sink::Slot(_) => false,
            Sink::Stream(stream) => stream.cancelled.load(Ordering::Relaxed),
        }
    }

    /// Delivers one result right away (for deliveries outside the batched
    /// path: failures at submission, cancellations).
    pub(crate) fn deliver_now(&self, index: usize, outcome: Outcome) {
        match self {
            Sink::Slot(slot) => slot.complete(outcome),
            Sink::Stream(stream) => stream.send(vec![Delivery { index, outcome }]),
        }
    }
}

/// One input of a job.
pub(crate) struct Item {
    pub(crate) index: usize,
    pub(crate) input: Vec<u8>,
    /// How many times a worker died while running this input.
    pub(crate) deaths: u32,
}

/// A chunk of inputs for one task, run by one worker in one go.
pub(crate) struct Job {
    pub(crate) task: &'static str,
    pub(crate) items: Vec<Item>,
    pub(crate) sink: Sink,
}

impl Job {
    pub(crate) fn input_bytes(&self) -> usize {
        self.items.iter().map(|item| item.input.len()).sum()
    }

    /// Fails every input still in the job with errors made by `error`.
    pub(crate) fn fail_all(&mut self, error: impl Fn(&Item) -> Error) {
        for item in std::mem::take(&mut self.items) {
            let err = error(&item).with_task(self.task).with_index(item.index);
            self.sink.deliver_now(item.index, Err(err));
        }
    }
}

/// A job dropped with inputs still in it (the pool stopped, or a thread
/// unwound) answers them, so that no caller waits forever.
impl Drop for Job {
    fn drop(&mut self) {
        if !self.items.is_empty() && !self.sink.is_cancelled() {
            self.fail_all(|_| {
                Error::new(
                    ErrorKind::Closed,
                    "the pool stopped before running this task",
                )
            });
        }
    }
}

/// Gathers deliveries for stream sinks so that each call gets one channel
/// message per batch of results rather than one per result.
#[derive(Default)]
pub(crate) struct Deliveries {
    pending: Vec<(Arc<Stream>, Vec<Delivery>)>,
}

impl Deliveries {
    pub(crate) fn push(&mut self, sink: &Sink, index: usize, outcome: Outcome) {
        match sink {
            Sink::Slot(slot) => slot.complete(outcome),
            Sink::Stream(stream) => {
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
