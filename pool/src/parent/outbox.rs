//! Sending to a worker without ever blocking the dispatcher.
//!
//! The dispatcher serves every worker, every caller and every clock from
//! one thread, so it must never wait for one worker to read: a worker that
//! does not (stopped, behind a network partition, or a local one still
//! busy when a message larger than the socket buffer arrives) would
//! otherwise hold up everyone's results, task timeouts, Ctrl-C and
//! `terminate`.
//!
//! So the dispatcher writes what the socket takes right away
//! ([`connection::Connection::try_send_bytes`] on the connection it
//! shares with the I/O thread, `shared_conn`: the fast path that almost
//! every batch takes), and hands whatever did not fit to the pool's I/O thread
//! (`worker_io`), which writes it as the socket makes room, among every
//! other worker's I/O and without waiting for any. While the I/O thread
//! holds anything of a worker's (its setup first of all), later messages
//! go to it too, in order. A write that fails there shuts the socket down,
//! so that the worker is reported lost.

use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::shared_conn::SharedConnection;

use super::worker_io::{IoSender, Outgoing};

/// What the dispatcher sends one worker through.
pub(crate) struct Outbox {
    io: IoSender,
    /// Messages handed to the I/O thread and not yet fully written (or
    /// given up on): while nonzero, the dispatcher must not write itself.
    pending: Arc<AtomicUsize>,
}

impl Outbox {
    /// An outbox whose worker's I/O thread holds `pending` messages (its
    /// setup) already.
    pub(crate) fn new(io: IoSender, pending: Arc<AtomicUsize>) -> Outbox {
        Outbox { io, pending }
    }

    /// Whether the I/O thread holds messages not yet written.
    pub(crate) fn is_backed_up(&self) -> bool {
        self.pending.load(Ordering::Acquire) > 0
    }

    /// Sends `message` to worker `worker` over `conn`, or queues it behind
    /// what the I/O thread already holds; never waits for the worker.
    /// A failed send is only logged: the I/O thread reports the end of the
    /// worker's connection, and its work is handed out again then.
    pub(crate) fn send(&mut self, worker: u32, conn: &SharedConnection, message: &[u8]) {
        if self.is_backed_up() {
            self.hand_off(worker, Outgoing::Whole(message.to_vec()));
            return;
        }
        let sent = conn.lock().try_send_bytes(message);
        match sent {
            Ok(None) => {}
            Ok(Some(rest)) => self.hand_off(worker, Outgoing::Rest(rest)),
            Err(err) => tracing::debug!(worker, %err, "sending to the worker failed"),
        }
    }

    fn hand_off(&mut self, worker: u32, outgoing: Outgoing) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.io.send(worker, outgoing);
    }

    /// The worker is gone or being killed, and nothing it has not read
    /// matters any more: if the I/O thread still holds messages for it,
    /// its socket is shut down, so that a worker that never reads them
    /// (or a process it forked that holds the socket open) cannot keep
    /// its connection alive.
    pub(crate) fn close(&mut self, conn: &SharedConnection) {
        if self.is_backed_up() {
            let _ = conn.lock().shutdown(Shutdown::Both);
        }
    }
}
