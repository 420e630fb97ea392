//! One worker as the I/O thread serves it: its connection (read a
//! message at a time as it arrives, written from a queue as it takes
//! bytes), its stderr pipe, and its end (reaped, then reported lost).

use std::collections::VecDeque;
use std::net::Shutdown;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use super::stderr::StderrLines;
use super::{token, Kind, NewWorker, Outgoing};
use crate::parent::shared_conn::SharedConnection;
use crate::parent::worker_reader::{Event, Greeting, WorkerEnd};
use crate::sys::{self, Poller};

/// How long a worker whose connection ended may take to exit before it is
/// killed (it may have closed the connection and gone on running).
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// At most this many messages are read from one worker per readiness, so
/// that a worker sending without pause does not starve the others (the
/// epoll set is level-triggered: the rest are read on the next turn).
const MESSAGES_PER_TURN: usize = 64;

/// The longest pause between two looks at an ending worker without a
/// pidfd.
const LONGEST_EXIT_POLL: Duration = Duration::from_millis(10);

pub(super) struct Entry {
    id: u32,
    /// `None` once the connection ended.
    conn: Option<SharedConnection>,
    greeting: Greeting,
    queue: VecDeque<Outgoing>,
    pending: Arc<AtomicUsize>,
    child: Option<Arc<Mutex<Child>>>,
    stderr: Option<StderrLines>,
    /// A local worker's pidfd, watched while its connection lives:
    /// readable once the process exits, which is the end of the worker
    /// even where a process it forked holds its socket open (then no end
    /// of file would ever come).
    exit: Option<OwnedFd>,
    ending: Option<Ending>,
    /// Its end was reported to the dispatcher.
    reported: bool,
    /// Entered while the thread serves it, as a thread of its own was.
    span: tracing::Span,
}

/// A worker whose connection ended, waiting for its process to exit.
struct Ending {
    error: String,
    /// Past this, the process is killed.
    kill_at: Instant,
    /// Readable once the process has exited; without one (an old kernel)
    /// the process is looked at every `pause`, which doubles.
    exit: Option<OwnedFd>,
    look_at: Instant,
    pause: Duration,
}

impl Entry {
    pub(super) fn new(worker: NewWorker, pending: Arc<AtomicUsize>) -> Entry {
        let NewWorker {
            id,
            conn,
            setup,
            child,
            stderr,
        } = worker;
        let pid = child
            .as_ref()
            .map(|c| c.lock().unwrap_or_else(|p| p.into_inner()).id());
        Entry {
            span: tracing::debug_span!("worker", id, pid),
            id,
            conn: Some(conn),
            greeting: Greeting::default(),
            queue: setup.map(Outgoing::Whole).into_iter().collect(),
            pending,
            child,
            stderr: stderr.map(|(pipe, watch)| StderrLines::new(id, pipe, watch)),
            exit: None,
            ending: None,
            reported: false,
        }
    }

    /// Puts the worker's descriptors in the epoll set and starts sending
    /// its setup; false if its connection ended at once (it could not be
    /// watched).
    pub(super) fn watch(&mut self, poller: &Poller, events: &Sender<Event>) -> bool {
        if let Some(stderr) = &mut self.stderr {
            if let Err(err) = stderr.watch(poller, token(self.id, Kind::Stderr)) {
                // Its lines are lost; the worker itself is not.
                tracing::warn!(worker = self.id, %err, "cannot forward worker stderr");
                self.stderr = None;
            }
        }
        let Some(conn) = &self.conn else {
            return false;
        };
        if let Err(err) = conn.watch(poller, token(self.id, Kind::Socket)) {
            self.end(poller, format!("cannot watch its connection: {err}"));
            self.reap_if_done(Instant::now(), poller, events);
            return false;
        }
        // Without a pidfd (an old kernel), the end of file alone tells.
        self.exit = self.watch_exit(poller);
        self.flush(poller);
        true
    }

    /// A pidfd of the worker's process, if local, in the epoll set.
    fn watch_exit(&self, poller: &Poller) -> Option<OwnedFd> {
        let child = self.child.as_ref()?;
        let pid = child.lock().unwrap_or_else(|p| p.into_inner()).id();
        let exit = sys::exit_watch(pid)?;
        poller
            .add(exit.as_fd(), token(self.id, Kind::Exit), false)
            .ok()?;
        Some(exit)
    }

    /// The process exited (its pidfd is readable): its socket is shut
    /// down, so that every reader of it (this thread, or a caller the
    /// worker is lent to) sees the end at once, even if a process it
    /// forked holds the socket open; that end is then handled as any.
    pub(super) fn exited(&mut self, poller: &Poller) {
        let Some(exit) = self.exit.take() else {
            // The readiness of the pidfd watched once the connection ended.
            return;
        };
        let _ = poller.remove(exit.as_fd());
        if let Some(conn) = &self.conn {
            conn.shut_down();
        }
    }

    /// Queues `outgoing` behind what the worker has queued, and writes
    /// what its socket takes.
    pub(super) fn queue(&mut self, outgoing: Outgoing, poller: &Poller) {
        if self.conn.is_none() {
            return;
        }
        self.queue.push_back(outgoing);
        self.flush(poller);
    }

    /// Writes queued messages, in order, as far as the socket takes them;
    /// watches for room while any remain. A failed write shuts the socket
    /// down, so that the read side sees the end whatever the peer does;
    /// `pending` then stays nonzero, so that the dispatcher never writes
    /// to it again.
    pub(super) fn flush(&mut self, poller: &Poller) {
        let span = self.span.clone();
        let _entered = span.enter();
        let Some(conn) = &self.conn else {
            return;
        };
        let mut conn = conn.lock();
        while let Some(outgoing) = self.queue.pop_front() {
            let sent = match outgoing {
                Outgoing::Rest(rest) => conn.try_send_unsent(rest),
                Outgoing::Whole(message) => conn.try_send_bytes(&message),
            };
            match sent {
                Ok(None) => {
                    self.pending.fetch_sub(1, Ordering::AcqRel);
                }
                Ok(Some(rest)) => {
                    self.queue.push_front(Outgoing::Rest(rest));
                    break;
                }
                Err(err) => {
                    tracing::debug!(worker = self.id, %err, "sending to the worker failed");
                    let _ = conn.shutdown(Shutdown::Both);
                    self.queue.clear();
                }
            }
        }
        let want_room = !self.queue.is_empty();
        conn.watch_room(poller, want_room);
    }

    /// Reads the messages that have arrived (a bounded number) and sends
    /// their events; true if the connection ended.
    pub(super) fn read(&mut self, poller: &Poller, events: &Sender<Event>) -> bool {
        let span = self.span.clone();
        let _entered = span.enter();
        let Some(conn) = &self.conn else {
            return false;
        };
        for _ in 0..MESSAGES_PER_TURN {
            // Locked a message at a time, so that the dispatcher's writes
            // wait for one message at most.
            let (received, answer) = {
                let mut conn = conn.lock();
                // Read by the caller it is lent to.
                if conn.leave_to_lease() {
                    return false;
                }
                let received = conn.try_recv_bytes();
                let answer = match received {
                    Ok(Some(_)) => conn.take_answer(),
                    _ => None,
                };
                (received, answer)
            };
            let message = match received {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(err) => {
                    self.end(poller, format!("{err:#}"));
                    return true;
                }
            };
            let event = match self.greeting.event(self.id, message) {
                Ok(event) => event,
                Err(error) => {
                    self.end(poller, error);
                    return true;
                }
            };
            if let Some(answer) = answer {
                match &event {
                    Event::Results { message, .. } => answer(message),
                    _ => conn.lock().keep_answer(answer),
                }
            }
            if events.send(event).is_err() {
                self.end(poller, "the pool stopped".to_string());
                return true;
            }
        }
        // A quiet socket (see `shared_conn`) is reported once: what is
        // left, or comes next, must be reported again.
        conn.lock().rearm(poller);
        false
    }

    /// The connection ended (for `error`): it is no longer watched, and
    /// the process, if ours, is waited for.
    fn end(&mut self, poller: &Poller, error: String) {
        let span = self.span.clone();
        let _entered = span.enter();
        tracing::debug!(worker = self.id, %error, "worker connection ended");
        if let Some(conn) = self.conn.take() {
            conn.unwatch(poller);
        }
        self.queue.clear();
        let now = Instant::now();
        // The pidfd watched since the start, if the process has not been
        // seen to exit yet.
        let exit = self.exit.take().or_else(|| self.watch_exit(poller));
        self.ending = Some(Ending {
            error,
            kill_at: now + EXIT_GRACE,
            exit,
            look_at: now,
            pause: Duration::from_micros(50),
        });
    }

    /// Reaps the process if it exited (killing it once its grace is over)
    /// and reports the worker lost; true once reported.
    pub(super) fn reap_if_done(
        &mut self,
        now: Instant,
        poller: &Poller,
        events: &Sender<Event>,
    ) -> bool {
        if self.reported {
            return true;
        }
        let Some(ending) = &mut self.ending else {
            return false;
        };
        let status = match &self.child {
            None => None,
            Some(child) => match exit_status(child, now >= ending.kill_at) {
                Reaped::Exited(status) => status,
                Reaped::Running => {
                    ending.pause = (ending.pause * 2).min(LONGEST_EXIT_POLL);
                    ending.look_at = now + ending.pause;
                    return false;
                }
            },
        };
        if let Some(exit) = ending.exit.take() {
            let _ = poller.remove(exit.as_fd());
        }
        let error = std::mem::take(&mut ending.error);
        let _ = events.send(Event::Lost {
            worker: self.id,
            end: WorkerEnd { status, error },
        });
        self.reported = true;
        true
    }

    /// When the thread must look at this ending worker again unwoken.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let ending = self.ending.as_ref().filter(|_| !self.reported)?;
        Some(match ending.exit {
            Some(_) => ending.kill_at,
            None => ending.look_at.min(ending.kill_at),
        })
    }

    /// Forwards the lines that arrived on the worker's stderr.
    pub(super) fn forward_stderr(&mut self, poller: &Poller, lines: &Sender<Vec<u8>>) {
        if let Some(stderr) = &mut self.stderr {
            if !stderr.forward(lines) {
                stderr.unwatch(poller);
                self.stderr = None;
            }
        }
    }

    /// Forwards what is left on the worker's stderr: the pool is going
    /// away.
    pub(super) fn drain_stderr(&mut self, lines: &Sender<Vec<u8>>) {
        if let Some(stderr) = &mut self.stderr {
            if !stderr.drain(lines) {
                self.stderr = None;
            }
        }
    }

    /// Reported lost, and nothing of it left open.
    pub(super) fn is_finished(&self) -> bool {
        self.reported && self.stderr.is_none()
    }
}

enum Reaped {
    /// It has exited (`None`: its status could not be had).
    Exited(Option<ExitStatus>),
    Running,
}

/// Reaps `child` if it has exited; if `kill` and it has not, kills it
/// and waits for it. The lock is held only briefly, so the dispatcher can
/// still kill the child meanwhile.
fn exit_status(child: &Mutex<Child>, kill: bool) -> Reaped {
    let mut guard = child.lock().unwrap_or_else(|p| p.into_inner());
    match guard.try_wait() {
        Ok(Some(status)) => Reaped::Exited(Some(status)),
        Ok(None) if kill => {
            let _ = guard.kill();
            Reaped::Exited(guard.wait().ok())
        }
        Ok(None) => Reaped::Running,
        Err(_) => Reaped::Exited(None),
    }
}
