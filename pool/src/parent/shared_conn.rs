//! A worker's connection as the head holds it: one socket, shared by the
//! dispatcher (which writes batches to it) and `pool-io` (which reads it
//! and writes what the dispatcher's writes left over), so that the head
//! holds one descriptor per worker, not a clone for each thread (at
//! 10,000 remote workers, two each would reach the usual hard limit on
//! open descriptors).
//!
//! Every use under the lock neither waits for the worker nor for the
//! other thread for long: both only call the non-blocking
//! `try_send_bytes`/`try_send_unsent`/`try_recv_bytes` and `shutdown`,
//! so a worker that stops reading still holds up no one. One
//! `Connection` for both directions is what either end of `pipe()` is
//! anyway, shared memory for large messages included.

use std::sync::{Arc, Mutex, MutexGuard};

use connection::Connection;

/// One worker's connection, shared between the dispatcher and `pool-io`;
/// cloning shares it.
#[derive(Clone)]
pub(crate) struct SharedConnection {
    conn: Arc<Mutex<Connection>>,
}

impl SharedConnection {
    pub(crate) fn new(conn: Connection) -> SharedConnection {
        SharedConnection {
            conn: Arc::new(Mutex::new(conn)),
        }
    }

    /// The connection, for one non-blocking call at a time (see the
    /// module's doc). A panic under the lock leaves the connection as
    /// usable as any failed call does.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}
