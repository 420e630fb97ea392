//! Platform code. Everything that calls the operating system directly lives
//! below here, so that another platform is one more module.

use std::io;
use std::time::{Duration, Instant};

#[cfg(unix)]
mod accepting;
mod filling;
#[cfg(unix)]
mod ready;
#[cfg(unix)]
pub(crate) mod shm;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use accepting::{connection_waiting, is_out_of_descriptors};
pub(crate) use filling::{append_filled, copy_into_uninit, Unfilled};
#[cfg(unix)]
pub(crate) use ready::{Interest, Ready, ReadySet};
#[cfg(unix)]
pub(crate) use unix::*;

/// Runs a system call again when a signal interrupted it (`EINTR`): the
/// crate's one policy for interrupted calls, whose callers never see
/// [`io::ErrorKind::Interrupted`] (a signal must not cost a connection its
/// place inside a message).
pub(crate) fn retry_interrupted<T>(mut call: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// What is left until `deadline` (`None`: no deadline, wait forever),
/// worked out again before each wait, after a signal too.
pub(crate) fn time_left(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// A read that failed because the peer reset the connection, as end of
/// file: a peer that closes (or dies) while data we sent it is still
/// unread resets the connection, Unix sockets included, and that is its
/// end of file, reported once everything it sent has been read.
pub(crate) fn reset_is_end(read: io::Result<usize>) -> io::Result<usize> {
    match read {
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => Ok(0),
        other => other,
    }
}

#[cfg(not(unix))]
compile_error!("the connection crate supports Unix-like systems only for now");
