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
//! ([`Connection::try_send_bytes`], the fast path that almost every batch
//! takes), and hands whatever did not fit to a writer thread of that
//! worker's own, started the first time it is needed. While the writer
//! holds anything, later messages go to it too, in order. A writer whose
//! send fails shuts the socket down, so that the worker's reader thread
//! reports the worker lost; a writer stuck on a worker that is killed or
//! dropped is woken by that worker's process dying (local) or by its
//! socket being shut down (see [`Outbox::close`]).
//!
//! If no writer can be started (the process is out of descriptors or
//! threads), the worker's connection is shut down instead: waiting for the
//! worker to read would hold up the pool for as long as it does not, for
//! good with a peer that never reads. Its reader then reports it lost, and
//! its work runs elsewhere, nothing of it blamed (see
//! [`Outbox::is_cut_off`]).

use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use connection::{Connection, UnsentMessage};
use crossbeam_channel::Sender;

enum Outgoing {
    /// The rest of a message the dispatcher began.
    Rest(UnsentMessage),
    /// A whole message queued behind the writer's others.
    Whole(Vec<u8>),
}

struct Writer {
    queue: Sender<Outgoing>,
    /// Messages handed to the writer and not yet fully written (or given
    /// up on): while nonzero, the dispatcher must not write itself.
    pending: Arc<AtomicUsize>,
    thread: JoinHandle<()>,
}

/// What the dispatcher sends one worker through.
#[derive(Default)]
pub(crate) struct Outbox {
    writer: Option<Writer>,
    /// No writer could be started when one was needed: the connection was
    /// shut down, and nothing more is sent.
    cut_off: bool,
}

impl Outbox {
    /// Whether a writer thread holds messages not yet written.
    pub(crate) fn is_backed_up(&self) -> bool {
        self.writer
            .as_ref()
            .is_some_and(|w| w.pending.load(Ordering::Acquire) > 0)
    }

    /// Sends `message` to worker `worker` over `conn`, or queues it behind
    /// what the writer thread already holds; never waits for the worker.
    /// A failed send is only logged: the worker's reader thread reports
    /// the end of its connection, and its work is handed out again then.
    pub(crate) fn send(&mut self, worker: u32, conn: &mut Connection, message: &[u8]) {
        if self.cut_off {
            return;
        }
        if self.is_backed_up() {
            self.hand_off(worker, conn, Outgoing::Whole(message.to_vec()));
            return;
        }
        match conn.try_send_bytes(message) {
            Ok(None) => {}
            Ok(Some(rest)) => self.hand_off(worker, conn, Outgoing::Rest(rest)),
            Err(err) => tracing::debug!(worker, %err, "sending to the worker failed"),
        }
    }

    fn hand_off(&mut self, worker: u32, conn: &mut Connection, outgoing: Outgoing) {
        if self.writer.is_none() {
            match start_writer(worker, conn) {
                Ok(writer) => self.writer = Some(writer),
                Err(err) => {
                    // Not written here, which would wait for the worker.
                    tracing::warn!(
                        worker,
                        %err,
                        "cannot start a writer thread for a message the socket did not take; \
                         the worker's connection is ended and its work runs elsewhere"
                    );
                    drop(outgoing);
                    let _ = conn.shutdown(Shutdown::Both);
                    self.cut_off = true;
                    return;
                }
            }
        }
        if let Some(writer) = &self.writer {
            writer.pending.fetch_add(1, Ordering::AcqRel);
            // If the writer has ended (its send failed), the worker is
            // gone and so is the message's purpose.
            let _ = writer.queue.send(outgoing);
        }
    }

    /// Whether the connection was shut down for want of a writer thread:
    /// the worker is gone through no fault of its own or of its inputs.
    pub(crate) fn is_cut_off(&self) -> bool {
        self.cut_off
    }

    /// Stops the writer thread, if there is one, and waits for it. A writer
    /// still holding messages may be blocked on a worker that does not
    /// read: the socket is shut down first, so that it wakes up. Called
    /// once the worker is gone or being killed, when nothing it has not
    /// read matters any more.
    pub(crate) fn close(&mut self, conn: &Connection) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        if writer.pending.load(Ordering::Acquire) > 0 {
            let _ = conn.shutdown(Shutdown::Both);
        }
        drop(writer.queue);
        let _ = writer.thread.join();
    }
}

fn start_writer(worker: u32, conn: &Connection) -> std::io::Result<Writer> {
    let mut conn = conn.try_clone().map_err(std::io::Error::other)?;
    let (queue, messages) = crossbeam_channel::unbounded::<Outgoing>();
    let pending = Arc::new(AtomicUsize::new(0));
    let thread = {
        let pending = Arc::clone(&pending);
        std::thread::Builder::new()
            .name(format!("pool-worker-{worker}-writer"))
            .spawn(move || {
                for outgoing in messages {
                    if let Err(err) = write(&mut conn, outgoing) {
                        tracing::debug!(worker, %err, "sending to the worker failed");
                        // So that the reader sees the end, whatever the
                        // peer does, and reports the worker lost. Pending
                        // stays nonzero: the dispatcher never writes to
                        // this socket again.
                        let _ = conn.shutdown(Shutdown::Both);
                        return;
                    }
                    pending.fetch_sub(1, Ordering::AcqRel);
                }
            })?
    };
    tracing::debug!(
        worker,
        "worker not reading fast enough; writer thread started"
    );
    Ok(Writer {
        queue,
        pending,
        thread,
    })
}

fn write(conn: &mut Connection, outgoing: Outgoing) -> connection::Result<()> {
    match outgoing {
        Outgoing::Rest(rest) => conn.send_unsent(rest),
        Outgoing::Whole(message) => conn.send_bytes(&message),
    }
}
