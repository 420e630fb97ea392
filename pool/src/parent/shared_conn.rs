//! A worker's connection as the head holds it: one socket, shared by the
//! dispatcher (which writes batches to it), `pool-io` (which reads it and
//! writes what the dispatcher's writes left over) and, while the worker
//! is lent to one (`lease`), a caller of `Pool::apply`, so that the head
//! holds one descriptor per worker, not a clone for each thread (at
//! 10,000 remote workers, two each would reach the usual hard limit on
//! open descriptors).
//!
//! Every use under the lock neither waits for the worker nor for another
//! thread for long: each only calls the non-blocking
//! `try_send_bytes`/`try_send_unsent`/`try_recv_bytes` and `shutdown`,
//! so a worker that stops reading still holds up no one. One
//! `Connection` for both directions is what either end of `pipe()` is
//! anyway, shared memory for large messages included.
//!
//! While the worker is lent, its socket is out of `pool-io`'s epoll set,
//! so that the reply wakes only the caller waiting for it: [`lend`]
//! takes it out, [`end_lease`] puts it back if `pool-io` still watches
//! the worker, both under the lock that `pool-io`'s own changes to the
//! set take too.
//!
//! A lease whose call the dispatcher adopts (`direct_call`) ends with
//! [`end_lease_answering`]: the first results `pool-io` reads then also
//! go straight to the call's handle, one hand-over sooner than through
//! the dispatcher (which still sees them, and counts them as usual).
//!
//! [`lend`]: SharedConnection::lend
//! [`end_lease`]: SharedConnection::end_lease
//! [`end_lease_answering`]: SharedConnection::end_lease_answering

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
    /// Lent to a caller: out of the epoll set, and not `pool-io`'s to read.
    lent: bool,
    answer: Option<Answer>,
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
    /// Whether a caller holds the worker, which `pool-io` then leaves alone.
    pub(crate) fn is_lent(&self) -> bool {
        self.0.lent
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
        if inner.0.watched.take().is_some() && !inner.0.lent {
            let _ = poller.remove(inner.0.conn.as_fd());
        }
    }

    /// Lends the worker to a caller: its socket leaves `pool-io`'s set.
    /// False (nothing changed) if `pool-io` no longer watches it (its
    /// connection ended) or it is lent already.
    pub(crate) fn lend(&self, poller: &Poller) -> bool {
        let mut inner = self.lock();
        if inner.0.watched.is_none() || inner.0.lent {
            return false;
        }
        if poller.remove(inner.0.conn.as_fd()).is_err() {
            return false;
        }
        inner.0.lent = true;
        true
    }

    /// Ends a lease: the socket goes back in `pool-io`'s set, if it still
    /// watches the worker, and whatever arrived since is its to read (an
    /// end of file among it: a worker that died is reported as usual).
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
        inner.0.answer = answer;
        if !std::mem::replace(&mut inner.0.lent, false) {
            return;
        }
        if let Some(token) = inner.0.watched {
            if poller.add(inner.0.conn.as_fd(), token, false).is_err() {
                // Unwatched, it would never be reported lost: shut, it is.
                let _ = inner.0.conn.shutdown(std::net::Shutdown::Both);
            }
        }
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
