//! Every worker's I/O from one thread (`pool-io`), however many workers
//! there are: reading their messages into [`Event`]s for the dispatcher,
//! writing what the dispatcher's sends left over, forwarding local
//! workers' stderr, and reaping workers whose connection ended.
//!
//! The thread waits on an epoll set (`sys::Poller`) of each worker's
//! socket, each local worker's stderr pipe, the pidfd of each local
//! worker whose connection ended, and an eventfd that the dispatcher
//! writes when it hands the thread something. Nothing on it waits for a
//! worker: messages are received a piece at a time as they arrive
//! ([`Connection::try_recv_bytes`](connection::Connection::try_recv_bytes)), writes go out as far as the socket
//! takes them ([`Connection::try_send_unsent`](connection::Connection::try_send_unsent)) with the rest queued per
//! worker until it polls writable, so a worker that stops reading (or
//! sends half a message and stops) holds up nobody but itself. Each
//! readiness reads a bounded number of messages, so one busy worker does
//! not starve the rest.
//!
//! With the pool's spin (`PoolBuilder::spin`), the thread checks the set
//! without blocking for that long after each turn before it sleeps in
//! it, so that a reply arriving soon after is read without a wake-up.
//!
//! The dispatcher still writes first itself (`outbox`): almost every
//! batch fits the socket at once, and only what does not comes here.

mod entry;
mod stderr;

use std::collections::{HashMap, HashSet};
use std::process::{Child, ChildStderr};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use connection::UnsentMessage;
use crossbeam_channel::{Receiver, Sender, TryRecvError};

use self::entry::Entry;
use self::stderr::Forwarder;
use super::oom::StderrWatch;
use super::shared_conn::SharedConnection;
use super::worker_reader::Event;
use crate::spin;
use crate::sys::{Poller, Readiness, Waker};

/// The token of the waker in the epoll set; workers' tokens are
/// `id << 2 | kind`, which never reach it.
const WAKER: u64 = u64::MAX;

/// What a worker's token stands for, in its two low bits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Socket = 0,
    Stderr = 1,
    Exit = 2,
}

fn token(worker: u32, kind: Kind) -> u64 {
    (u64::from(worker) << 2) | kind as u64
}

fn from_token(token: u64) -> (u32, Kind) {
    let kind = match token & 3 {
        0 => Kind::Socket,
        1 => Kind::Stderr,
        _ => Kind::Exit,
    };
    ((token >> 2) as u32, kind)
}

/// Something to write to a worker, in the order handed over.
pub(crate) enum Outgoing {
    /// The rest of a message the dispatcher began.
    Rest(UnsentMessage),
    /// A whole message.
    Whole(Vec<u8>),
}

/// A worker for the I/O thread to serve.
pub(crate) struct NewWorker {
    pub(crate) id: u32,
    /// The worker's connection, which the dispatcher writes to as well.
    pub(crate) conn: SharedConnection,
    /// Sent before anything else (it may be larger than the socket's
    /// buffer: it carries the initializer's input).
    pub(crate) setup: Option<Vec<u8>>,
    /// A local worker's process, reaped once its connection ends.
    pub(crate) child: Option<Arc<Mutex<Child>>>,
    /// A local worker's stderr, forwarded line by line to ours.
    pub(crate) stderr: Option<(ChildStderr, Arc<StderrWatch>)>,
}

enum Command {
    Add(Box<NewWorker>, Arc<AtomicUsize>),
    Send {
        worker: u32,
        outgoing: Outgoing,
    },
    /// The pool is gone: the thread ends.
    Stop,
}

/// What hands work to the I/O thread; cheap to clone.
#[derive(Clone)]
pub(crate) struct IoSender {
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

impl IoSender {
    /// Queues `outgoing` behind whatever worker `worker` has queued. If
    /// the worker is gone, it is dropped.
    pub(crate) fn send(&self, worker: u32, outgoing: Outgoing) {
        if self
            .commands
            .send(Command::Send { worker, outgoing })
            .is_ok()
        {
            self.waker.wake();
        }
    }
}

/// The I/O thread, which ends when this is dropped.
pub(crate) struct WorkerIo {
    /// The thread's epoll set, which a caller a worker is lent to takes
    /// the worker's socket out of (see `SharedConnection::lend`).
    poller: Arc<Poller>,
    sender: IoSender,
    thread: Option<JoinHandle<()>>,
    _stderr: Forwarder,
}

impl WorkerIo {
    /// Starts the `pool-io` thread (and `pool-stderr`, which writes the
    /// workers' stderr lines to ours), which sends what happens to
    /// workers to `events` and checks for more for `spin` before it
    /// sleeps.
    pub(crate) fn start(events: Sender<Event>, spin: Duration) -> std::io::Result<WorkerIo> {
        let poller = Arc::new(Poller::new()?);
        let waker = Arc::new(Waker::new()?);
        poller.add(waker.fd(), WAKER, false)?;
        let stderr = Forwarder::start()?;
        let (commands, received) = crossbeam_channel::unbounded();
        let mut io = IoThread {
            poller: Arc::clone(&poller),
            waker: Arc::clone(&waker),
            commands: received,
            events,
            workers: HashMap::new(),
            ending: HashSet::new(),
            stderr: stderr.lines(),
            spin,
        };
        let thread = std::thread::Builder::new()
            .name("pool-io".to_string())
            .spawn(move || io.run())?;
        Ok(WorkerIo {
            poller,
            sender: IoSender { commands, waker },
            thread: Some(thread),
            _stderr: stderr,
        })
    }

    pub(crate) fn poller(&self) -> Arc<Poller> {
        Arc::clone(&self.poller)
    }

    pub(crate) fn sender(&self) -> IoSender {
        self.sender.clone()
    }

    /// Serves a new worker: sends it its setup, then reads it. Returns
    /// the count of messages the thread holds for it and has not written
    /// yet (the setup, at first), for its `Outbox`.
    pub(crate) fn add(&self, worker: NewWorker) -> Arc<AtomicUsize> {
        let pending = Arc::new(AtomicUsize::new(usize::from(worker.setup.is_some())));
        let add = Command::Add(Box::new(worker), Arc::clone(&pending));
        if self.sender.commands.send(add).is_ok() {
            self.sender.waker.wake();
        }
        pending
    }
}

impl Drop for WorkerIo {
    fn drop(&mut self) {
        let _ = self.sender.commands.send(Command::Stop);
        self.sender.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct IoThread {
    poller: Arc<Poller>,
    waker: Arc<Waker>,
    commands: Receiver<Command>,
    events: Sender<Event>,
    workers: HashMap<u32, Entry>,
    /// The workers whose connection ended and that are not reaped yet:
    /// the only ones looked at on every turn.
    ending: HashSet<u32>,
    stderr: Sender<Vec<u8>>,
    spin: Duration,
}

impl IoThread {
    fn run(&mut self) {
        let mut ready = Vec::new();
        loop {
            let timeout = self
                .next_deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
            let poller = &self.poller;
            let spun = spin::spin_until(self.spin, || {
                // An error is left for the blocking wait to report.
                poller.wait(&mut ready, Some(Duration::ZERO)).is_ok() && !ready.is_empty()
            });
            let waited = match spun {
                true => Ok(()),
                false => self.poller.wait(&mut ready, timeout),
            };
            if let Err(err) = waited {
                // Only a broken epoll set fails: nothing could be served.
                tracing::error!(%err, "the pool's I/O thread cannot wait for its workers");
                std::thread::sleep(Duration::from_millis(100));
            }
            for Readiness {
                token,
                readable,
                writable,
            } in ready.drain(..)
            {
                if token == WAKER {
                    self.waker.drain();
                    if !self.take_commands() {
                        for entry in self.workers.values_mut() {
                            entry.drain_stderr(&self.stderr);
                        }
                        return;
                    }
                    continue;
                }
                let (worker, kind) = from_token(token);
                let Some(entry) = self.workers.get_mut(&worker) else {
                    continue;
                };
                match kind {
                    Kind::Socket => {
                        if writable {
                            entry.flush(&self.poller);
                        }
                        if readable && entry.read(&self.poller, &self.events) {
                            self.ending.insert(worker);
                        }
                    }
                    Kind::Stderr => {
                        entry.forward_stderr(&self.poller, &self.stderr);
                        if entry.is_finished() {
                            self.workers.remove(&worker);
                        }
                    }
                    // An ending worker's is reaped below, with every
                    // worker that is ending.
                    Kind::Exit => entry.exited(&self.poller),
                }
            }
            self.reap();
        }
    }

    /// Takes every command waiting; false once the pool is gone.
    fn take_commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Add(worker, pending)) => {
                    let id = worker.id;
                    let mut entry = Entry::new(*worker, pending);
                    if !entry.watch(&self.poller, &self.events) {
                        self.ending.insert(id);
                    }
                    self.workers.insert(id, entry);
                }
                Ok(Command::Send { worker, outgoing }) => {
                    if let Some(entry) = self.workers.get_mut(&worker) {
                        entry.queue(outgoing, &self.poller);
                    }
                }
                Err(TryRecvError::Empty) => return true,
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Reaps the ending workers whose process has exited (or whose grace
    /// ran out), reports them lost, and forgets those with nothing left
    /// open.
    fn reap(&mut self) {
        if self.ending.is_empty() {
            return;
        }
        let now = Instant::now();
        let workers = &mut self.workers;
        self.ending.retain(|id| {
            let Some(entry) = workers.get_mut(id) else {
                return false;
            };
            if !entry.reap_if_done(now, &self.poller, &self.events) {
                return true;
            }
            if entry.is_finished() {
                workers.remove(id);
            }
            false
        });
    }

    /// When the thread must look again without being woken: the soonest
    /// an ending worker is polled again (without a pidfd), or killed.
    fn next_deadline(&self) -> Option<Instant> {
        let ending = self.ending.iter().filter_map(|id| self.workers.get(id));
        ending.filter_map(Entry::deadline).min()
    }
}
