//! The dispatcher's view of one worker: its connection, the chunks it
//! holds in order, and how far it has got through them.

use std::collections::VecDeque;
use std::net::Shutdown;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use connection::Connection;
use tracing::Span;

use crate::error::{Error, WorkerInfo};
use crate::job::{Item, Job};
use crate::outbox::Outbox;
use crate::sys::SharedCounter;
use crate::trace;
use crate::wire::BatchWriter;

pub(crate) enum Process {
    Local {
        child: Arc<Mutex<Child>>,
        progress: SharedCounter,
    },
    Remote {
        peer: String,
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

/// A chunk a worker holds. `items` counts the chunk's inputs even after
/// they were answered early (an interrupt), so that the worker's results
/// still line up.
pub(crate) struct InFlight {
    pub(crate) id: u64,
    pub(crate) job: Job,
    pub(crate) items: u64,
    pub(crate) bytes: usize,
    /// The worker's number for the chunk's first input (1 for its first ever).
    pub(crate) first_seq: u64,
    /// A `task` span per item still in `job.items`, in the same order, if
    /// DEBUG was enabled when the chunk was sent; otherwise empty.
    pub(crate) spans: Vec<Span>,
}

impl InFlight {
    /// Fails every input still in the chunk, recording the error on their spans.
    pub(crate) fn fail_all(&mut self, error: impl Fn() -> Error) {
        for span in self.spans.drain(..) {
            trace::record_error(&span, &error());
        }
        self.job.fail_all(|_| error());
    }
}

/// The input a worker was running when it was stopped: the input, its
/// task, where its result goes, and its `task` span (disabled if untraced).
pub(crate) type Culprit = (Item, &'static str, crate::job::Sink, Span);

pub(crate) struct WorkerSlot {
    pub(crate) id: u32,
    pub(crate) pid: Option<u32>,
    pub(crate) process: Process,
    /// The dispatcher's end; send through [`send`](WorkerSlot::send) only.
    pub(crate) conn: Connection,
    outbox: Outbox,
    pub(crate) reader: Option<JoinHandle<()>>,
    pub(crate) state: State,
    pub(crate) in_flight: VecDeque<InFlight>,
    pub(crate) in_flight_items: u64,
    pub(crate) in_flight_bytes: usize,
    /// Inputs ever sent to / answered by this worker.
    pub(crate) items_sent: u64,
    pub(crate) items_answered: u64,
    /// Which of the pool's task numbers this worker has been told about.
    pub(crate) known_tasks: Vec<bool>,
    /// The input the worker is running and since when the pool knows it.
    pub(crate) watch: Option<(u64, Instant)>,
    pub(crate) batch: BatchWriter,
    /// The worker traces its tasks: its chunks carry their input indices.
    pub(crate) wants_indices: bool,
}

impl WorkerSlot {
    pub(crate) fn new(
        id: u32,
        pid: Option<u32>,
        process: Process,
        conn: Connection,
        state: State,
    ) -> WorkerSlot {
        WorkerSlot {
            id,
            pid,
            process,
            conn,
            outbox: Outbox::default(),
            reader: None,
            state,
            in_flight: VecDeque::new(),
            in_flight_items: 0,
            in_flight_bytes: 0,
            items_sent: 0,
            items_answered: 0,
            known_tasks: Vec::new(),
            watch: None,
            batch: BatchWriter::new(),
            wants_indices: false,
        }
    }

    pub(crate) fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id,
            pid: self.pid,
        }
    }

    pub(crate) fn is_live(&self) -> bool {
        matches!(self.state, State::Starting { .. } | State::Ready)
    }

    pub(crate) fn is_local(&self) -> bool {
        matches!(self.process, Process::Local { .. })
    }

    /// The number of the input the worker is running, if it is running one.
    ///
    /// A local worker says so in its shared progress page before starting
    /// each input. A remote one cannot, so the oldest unanswered input is
    /// taken to be the one running: exact unless the worker had finished
    /// some inputs and not yet sent their results.
    pub(crate) fn running_seq(&self) -> Option<u64> {
        let started = match &self.process {
            Process::Local { progress, .. } => progress.load(),
            Process::Remote { .. } if self.in_flight_items > 0 => self.items_answered + 1,
            Process::Remote { .. } => self.items_answered,
        };
        (started > self.items_answered).then_some(started)
    }

    /// Sends `message` without waiting for the worker to read it (see
    /// [`Outbox`]).
    pub(crate) fn send(&mut self, message: &[u8]) {
        self.outbox.send(self.id, &mut self.conn, message);
    }

    /// Sends the batch built up for the worker, if any, and starts the next.
    pub(crate) fn send_batch(&mut self) {
        if !self.batch.is_empty() {
            self.outbox
                .send(self.id, &mut self.conn, self.batch.bytes());
            self.batch.clear();
        }
    }

    /// Ends the worker at once: SIGKILL for a local one, shutting the
    /// connection for a remote one. Its reader thread reports the end, and
    /// a writer thread stuck sending to it wakes up.
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
                    let _ = self.conn.shutdown(Shutdown::Both);
                }
            }
            Process::Remote { .. } => {
                let _ = self.conn.shutdown(Shutdown::Both);
            }
        }
    }

    /// Takes back every chunk the worker holds, splitting out the input
    /// that was running (if any) from those that were not. The spans of
    /// the others end as requeued; the running one's goes with it.
    pub(crate) fn take_work(&mut self) -> (Option<Culprit>, Vec<Job>) {
        let running = self.running_seq();
        let mut culprit = None;
        let mut rest = Vec::new();
        for mut in_flight in self.in_flight.drain(..) {
            let items = std::mem::take(&mut in_flight.job.items);
            let mut spans = std::mem::take(&mut in_flight.spans).into_iter();
            let mut keep = Vec::with_capacity(items.len());
            for (offset, item) in items.into_iter().enumerate() {
                let span = spans.next();
                if Some(in_flight.first_seq + offset as u64) == running {
                    let span = span.unwrap_or_else(Span::none);
                    culprit = Some((item, in_flight.job.task, in_flight.job.sink.clone(), span));
                } else {
                    if let Some(span) = span {
                        trace::record_requeued(&span);
                    }
                    keep.push(item);
                }
            }
            if !keep.is_empty() {
                rest.push(Job {
                    task: in_flight.job.task,
                    items: keep,
                    sink: in_flight.job.sink.clone(),
                });
            }
        }
        self.in_flight_items = 0;
        self.in_flight_bytes = 0;
        self.watch = None;
        (culprit, rest)
    }
}

/// The worker is gone or being killed: its writer thread, if any, is
/// stopped (woken first by shutting the socket down if it still holds
/// messages, since the worker may never read them).
impl Drop for WorkerSlot {
    fn drop(&mut self) {
        self.outbox.close(&self.conn);
    }
}
