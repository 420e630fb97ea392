//! Local workers' stderr: read by the I/O thread as it arrives, shown to
//! each worker's [`StderrWatch`] (for allocation failures, see `oom`)
//! line by line, and written to ours, each line tagged with the worker's
//! id, by the `pool-stderr` thread: writing to our stderr may block (a
//! pipe nobody reads), which must hold up neither the I/O thread nor the
//! workers.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::process::ChildStderr;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::parent::oom::StderrWatch;
use crate::sys::{self, Poller};

/// How many tagged lines wait for `pool-stderr` at most; past that, lines
/// are dropped (and counted) rather than anyone waiting for our stderr.
const LINES_WAITING: usize = 4096;

/// A line longer than this is forwarded in pieces, so that a worker that
/// writes without newlines costs bounded memory.
const LONGEST_LINE: usize = 64 * 1024;

/// How much of one worker's stderr is read per readiness.
const READ_PER_TURN: usize = 64 * 1024;

/// How many turns' worth of a worker's stderr is read when the pool goes.
const LAST_READS: usize = 16;

/// The `pool-stderr` thread, which writes forwarded lines to our stderr.
/// It ends once every sender of lines is gone; it is not joined, since
/// our stderr may block it indefinitely, but dropping this waits a little
/// for it to write what it holds.
pub(super) struct Forwarder {
    lines: Option<Sender<Vec<u8>>>,
    done: Receiver<()>,
}

/// How long dropping the pool waits for the workers' last lines to be
/// written to our stderr.
const LAST_LINES_PATIENCE: Duration = Duration::from_secs(2);

impl Forwarder {
    pub(super) fn start() -> std::io::Result<Forwarder> {
        let (lines, received) = crossbeam_channel::bounded::<Vec<u8>>(LINES_WAITING);
        let (finished, done) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("pool-stderr".to_string())
            .spawn(move || {
                for line in received {
                    let _ = std::io::stderr().lock().write_all(&line);
                }
                let _ = finished.send(());
            })?;
        Ok(Forwarder {
            lines: Some(lines),
            done,
        })
    }

    pub(super) fn lines(&self) -> Sender<Vec<u8>> {
        self.lines
            .clone()
            .unwrap_or_else(|| crossbeam_channel::bounded(0).0)
    }
}

/// Called once the I/O thread, the only other sender, has ended: the
/// workers' lines are all in, so that a program that drops its pool and
/// exits loses none of them.
impl Drop for Forwarder {
    fn drop(&mut self) {
        self.lines = None;
        let _ = self.done.recv_timeout(LAST_LINES_PATIENCE);
    }
}

/// One local worker's stderr pipe and the line it is in the middle of.
pub(super) struct StderrLines {
    pipe: ChildStderr,
    watch: Arc<StderrWatch>,
    prefix: String,
    line: Vec<u8>,
    dropped: u64,
    /// The last read found the pipe empty.
    waiting: bool,
}

impl StderrLines {
    pub(super) fn new(worker: u32, pipe: ChildStderr, watch: Arc<StderrWatch>) -> StderrLines {
        StderrLines {
            pipe,
            watch,
            prefix: format!("[worker {worker}] "),
            line: Vec::new(),
            dropped: 0,
            waiting: false,
        }
    }

    /// Puts the pipe in the epoll set under `token`, never to block on it.
    pub(super) fn watch(&mut self, poller: &Poller, token: u64) -> std::io::Result<()> {
        sys::set_nonblocking(self.pipe.as_fd())?;
        poller.add(self.pipe.as_fd(), token, false)
    }

    /// Forwards what the pipe holds until it is empty or closed (the pool
    /// is going away; its workers are gone, so it is closed unless a
    /// process they started holds it open); false once closed.
    /// At most [`LAST_READS`] turns' worth: a process that writes faster
    /// than this reads does not keep the pool from going.
    pub(super) fn drain(&mut self, lines: &Sender<Vec<u8>>) -> bool {
        self.waiting = false;
        for _ in 0..LAST_READS {
            if !self.forward(lines) {
                return false;
            }
            if self.waiting {
                break;
            }
        }
        true
    }

    pub(super) fn unwatch(&mut self, poller: &Poller) {
        let _ = poller.remove(self.pipe.as_fd());
    }

    /// Reads what arrived and forwards each whole line; false once the
    /// pipe is closed (every line forwarded, and the watch told).
    pub(super) fn forward(&mut self, lines: &Sender<Vec<u8>>) -> bool {
        let mut buf = [0u8; 8192];
        let mut read = 0;
        while read < READ_PER_TURN {
            let got = match self.pipe.read(&mut buf) {
                Ok(0) => {
                    if !self.line.is_empty() {
                        self.end_line(lines);
                    }
                    self.watch.close();
                    return false;
                }
                Ok(got) => got,
                Err(err) if err.kind() == ErrorKind::Interrupted => continue,
                Err(err) if err.kind() == ErrorKind::WouldBlock => {
                    self.waiting = true;
                    return true;
                }
                Err(_) => {
                    self.watch.close();
                    return false;
                }
            };
            read += got;
            for piece in buf[..got].split_inclusive(|&b| b == b'\n') {
                self.line.extend_from_slice(piece);
                if piece.ends_with(b"\n") || self.line.len() >= LONGEST_LINE {
                    self.end_line(lines);
                }
            }
        }
        true
    }

    fn end_line(&mut self, lines: &Sender<Vec<u8>>) {
        self.watch.line(&self.line);
        if self.line.last() != Some(&b'\n') {
            self.line.push(b'\n');
        }
        let mut tagged = Vec::with_capacity(self.prefix.len() + self.line.len());
        tagged.extend_from_slice(self.prefix.as_bytes());
        tagged.extend_from_slice(&self.line);
        self.line.clear();
        if let Err(TrySendError::Full(_)) = lines.try_send(tagged) {
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::warn!(
                    dropped = self.dropped,
                    "worker stderr lines dropped: the pool's own stderr is not read fast enough"
                );
            }
        }
    }
}
