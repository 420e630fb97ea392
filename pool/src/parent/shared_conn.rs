//! A worker's connection as the head holds it: one socket, shared by the
//! dispatcher (which writes batches to it), `pool-io` (which reads it and
//! writes what the dispatcher's writes left over) and, while the worker
//! is lent to one (`lease`), a caller of `Pool::apply`, so that the head
//! holds one descriptor per worker, not a clone for each thread (at
//! 10,000 remote workers, two each would reach the usual hard limit on
//! open descriptors).
//!
//! Every use under the lock but one neither waits for the worker nor for
//! another thread for long: each only calls the non-blocking
//! `try_send_bytes`/`try_send_unsent`/`try_recv_bytes`, so a worker that
//! stops reading still holds up no one. The one is the caller a worker
//! is lent to, waiting for its reply with no time limit: it blocks in
//! the read itself (`recv_bytes`), as a raw round trip does, rather than
//! in a `poll` before it, one system call fewer on every direct call.
//! Nobody else needs the lock meanwhile: `pool-io` leaves a lent
//! worker's socket alone until the worker's end (which ends that read
//! too), the dispatcher writes nothing to it, and the shutdown that
//! stops a lent worker (Ctrl-C, `terminate`) goes through the
//! descriptor, without the lock ([`shut_down`]), and ends the read.
//! One `Connection` for both directions is what either end of `pipe()`
//! is anyway, shared memory for large messages included.
//!
//! While the worker is lent, `pool-io` does not read its socket, so that
//! the reply wakes only the caller waiting for it. The socket stays in
//! the epoll set, quiet: watched not for data but, once (oneshot), for
//! the worker's end. [`lend`] makes it quiet if it is not yet, and it
//! stays so between the calls of a run of direct calls, so that a
//! direct call costs no change to the set; [`unquiet`] makes it loud
//! again when the dispatcher takes the worker back. An end reported
//! while the worker is lent is left to the lease: [`end_lease`] re-arms
//! the socket, and `pool-io` reads it then; one reported while it is
//! offered and not lent is read at once (and the socket re-armed, if
//! the worker lives). Every change to the set, `pool-io`'s included,
//! goes through here under the lock.
//!
//! A quiet socket is not read while the worker idles among the offered
//! ones: a message a local worker sends unasked then waits for the
//! dispatcher to take it back, or is what the next direct call reads
//! (and refuses, killing the worker). Local workers send nothing unasked
//! where workers are lent (only a memory budget, which keeps them from
//! being lent, makes them).
//!
//! A lease whose call the dispatcher adopts (`direct_call`) ends with
//! [`end_lease_answering`], which makes the socket loud again: the first
//! results `pool-io` reads then also
//! go straight to the call's handle, one hand-over sooner than through
//! the dispatcher (which still sees them, and counts them as usual).
//!
//! [`lend`]: SharedConnection::lend
//! [`end_lease`]: SharedConnection::end_lease
//! [`unquiet`]: SharedConnection::unquiet
//! [`end_lease_answering`]: SharedConnection::end_lease_answering
//! [`shut_down`]: SharedConnection::shut_down

use std::io;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use connection::Connection;

use crate::sys::{self, Poller};

/// What `pool-io` does with the next results it reads, besides sending
/// them to the dispatcher: answer an adopted direct call's handle.
pub(crate) type Answer = Box<dyn FnOnce(&Arc<Vec<u8>>) + Send>;

struct Inner {
    conn: Connection,
    /// The token under which `pool-io` watches the socket, while it does.
    watched: Option<u64>,
    /// Lent to a caller: not `pool-io`'s to read.
    lent: bool,
    /// Watched only for the worker's end, once (see the module's doc).
    quiet: bool,
    /// `pool-io` skipped a readiness while the worker was lent: the
    /// lease's end re-arms the quiet socket for it.
    missed: bool,
    /// Watched for room to write too.
    room: bool,
    answer: Option<Answer>,
}

impl Inner {
    /// Brings the epoll set in line with `quiet` and `room`.
    fn modify(&self, poller: &Poller) -> io::Result<()> {
        match self.watched {
            Some(token) => poller.modify(self.conn.as_fd(), token, self.room, self.quiet),
            None => Ok(()),
        }
    }

    /// A change to the set failed: unwatched, the worker would never be
    /// reported lost; shut, it is.
    fn modify_or_shut(&mut self, poller: &Poller) {
        if self.modify(poller).is_err() {
            let _ = self.conn.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// One worker's connection, shared between the dispatcher, `pool-io`
/// and a caller it is lent to; cloning shares it.
#[derive(Clone)]
pub(crate) struct SharedConnection {
    inner: Arc<Mutex<Inner>>,
    /// The socket's descriptor, open as long as any clone lives.
    fd: RawFd,
}

/// The connection, locked (see the module's doc).
pub(crate) struct Locked<'a>(MutexGuard<'a, Inner>);

impl Deref for Locked<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.0.conn
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0.conn
    }
}

impl Locked<'_> {
    /// Whether a caller holds the worker, which `pool-io` then leaves
    /// alone: the readiness it was told of is noted, for the lease's end.
    pub(crate) fn leave_to_lease(&mut self) -> bool {
        self.0.missed |= self.0.lent;
        self.0.lent
    }

    /// `pool-io` read the socket (not lent): a quiet one is armed again.
    pub(crate) fn rearm(&mut self, poller: &Poller) {
        if self.0.quiet {
            self.0.modify_or_shut(poller);
        }
    }

    /// Watches the socket for room to write, or stops watching for it.
    /// A quiet socket is armed again too: a readiness for room may have
    /// used up its one report.
    pub(crate) fn watch_room(&mut self, poller: &Poller, room: bool) {
        if self.0.room != room || self.0.quiet {
            self.0.room = room;
            // Not watched for room, it is written again on the next send.
            self.0.room &= self.0.modify(poller).is_ok();
        }
    }

    /// What to do with the next results read, if anything.
    pub(crate) fn take_answer(&mut self) -> Option<Answer> {
        self.0.answer.take()
    }

    /// Puts back an answer taken for a message that held no results.
    pub(crate) fn keep_answer(&mut self, answer: Answer) {
        self.0.answer.get_or_insert(answer);
    }
}

impl SharedConnection {
    pub(crate) fn new(conn: Connection) -> SharedConnection {
        let fd = conn.as_raw_fd();
        SharedConnection {
            inner: Arc::new(Mutex::new(Inner {
                conn,
                watched: None,
                lent: false,
                quiet: false,
                missed: false,
                room: false,
                answer: None,
            })),
            fd,
        }
    }

    /// The connection, for one non-blocking call at a time (see the
    /// module's doc). A panic under the lock leaves the connection as
    /// usable as any failed call does.
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked(self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// `pool-io` starts watching the socket under `token`.
    pub(crate) fn watch(&self, poller: &Poller, token: u64) -> io::Result<()> {
        let mut inner = self.lock();
        poller.add(inner.0.conn.as_fd(), token, false)?;
        inner.0.watched = Some(token);
        Ok(())
    }

    /// `pool-io` stops watching the socket (its connection ended).
    pub(crate) fn unwatch(&self, poller: &Poller) {
        let mut inner = self.lock();
        if inner.0.watched.take().is_some() {
            let _ = poller.remove(inner.0.conn.as_fd());
        }
    }

    /// Lends the worker to a caller: its socket goes quiet, if it is not
    /// yet. False (nothing changed) if `pool-io` no longer watches it (its
    /// connection ended) or it is lent already.
    pub(crate) fn lend(&self, poller: &Poller) -> bool {
        let mut inner = self.lock();
        if inner.0.watched.is_none() || inner.0.lent {
            return false;
        }
        if !inner.0.quiet {
            inner.0.quiet = true;
            if inner.0.modify(poller).is_err() {
                inner.0.quiet = false;
                return false;
            }
        }
        inner.0.lent = true;
        true
    }

    /// Ends a lease: whatever arrives from now on is `pool-io`'s to read
    /// (an end of file among it: a worker that died is reported as
    /// usual), and what it was told of meanwhile is told again.
    pub(crate) fn end_lease(&self, poller: &Poller) {
        self.end_lease_with(poller, None);
    }

    /// [`end_lease`](Self::end_lease), and `pool-io` hands the next
    /// results it reads to `answer` too.
    pub(crate) fn end_lease_answering(&self, poller: &Poller, answer: Answer) {
        self.end_lease_with(poller, Some(answer));
    }

    fn end_lease_with(&self, poller: &Poller, answer: Option<Answer>) {
        let mut inner = self.lock();
        // An adopted call's reply is still to come, for `pool-io` to read
        // as it arrives: the socket is loud again.
        let loud = answer.is_some();
        inner.0.answer = answer;
        if !std::mem::replace(&mut inner.0.lent, false) {
            return;
        }
        let missed = std::mem::take(&mut inner.0.missed);
        if loud && inner.0.quiet {
            inner.0.quiet = false;
            inner.0.modify_or_shut(poller);
        } else if missed && inner.0.quiet {
            inner.0.modify_or_shut(poller);
        }
    }

    /// The dispatcher took the worker back: `pool-io` reads its socket
    /// again as it arrives.
    pub(crate) fn unquiet(&self, poller: &Poller) {
        let mut inner = self.lock();
        if std::mem::replace(&mut inner.0.quiet, false) {
            inner.0.missed = false;
            inner.0.modify_or_shut(poller);
        }
    }

    /// Shuts the socket down both ways, without the lock: a caller the
    /// worker is lent to may hold it in a blocking read, which this ends.
    pub(crate) fn shut_down(&self) {
        // `self` keeps the descriptor open for the call.
        sys::shut_socket(self.fd);
    }

    /// Waits up to `timeout` for the socket to be readable (or, if
    /// `writable`, to have room); false if the time passed or a signal
    /// came. Without the lock: the caller the worker is lent to waits
    /// here while the others go on.
    pub(crate) fn wait(&self, writable: bool, timeout: Option<Duration>) -> io::Result<bool> {
        // `self` keeps the descriptor open for the wait.
        sys::wait_ready(self.fd, writable, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Readiness;

    const TOKEN: u64 = 8;

    /// What the set reports without waiting.
    fn reported(poller: &Poller) -> Vec<u64> {
        let mut ready: Vec<Readiness> = Vec::new();
        poller.wait(&mut ready, Some(Duration::ZERO)).unwrap();
        ready.iter().map(|r| r.token).collect()
    }

    #[test]
    fn a_lent_socket_reports_no_data_and_its_end_once_then_again_after_the_lease() {
        let poller = Poller::new().unwrap();
        let (ours, mut worker) = connection::pipe().unwrap();
        let shared = SharedConnection::new(ours);
        shared.watch(&poller, TOKEN).unwrap();
        worker.send_bytes(b"unasked").unwrap();
        assert_eq!(reported(&poller), [TOKEN]);
        assert_eq!(shared.lock().try_recv_bytes().unwrap().unwrap(), b"unasked");

        // Quiet: a reply is the caller's alone, in lease after lease.
        for _ in 0..3 {
            assert!(shared.lend(&poller));
            worker.send_bytes(b"reply").unwrap();
            assert!(reported(&poller).is_empty());
            assert_eq!(shared.lock().try_recv_bytes().unwrap().unwrap(), b"reply");
            shared.end_lease(&poller);
        }

        // The worker's end is reported once; `pool-io` leaves it to the
        // lease, whose end has it reported again.
        assert!(shared.lend(&poller));
        drop(worker);
        assert_eq!(reported(&poller), [TOKEN]);
        assert!(shared.lock().leave_to_lease());
        assert!(reported(&poller).is_empty());
        shared.end_lease(&poller);
        assert_eq!(reported(&poller), [TOKEN]);
        assert!(!shared.lock().leave_to_lease());

        // Taken back, the socket is watched for data again.
        shared.unquiet(&poller);
        assert_eq!(reported(&poller), [TOKEN]);
        assert_eq!(reported(&poller), [TOKEN]);
    }
}
