//! [`wait`]: readiness of several connections and listeners at once, like
//! CPython's `multiprocessing.connection.wait`.

use std::os::fd::AsFd;
use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, PollFd};

/// Waits until at least one of `objects` is ready, or `timeout` passes, and
/// returns the indices of the ready ones in ascending order (empty on
/// timeout). `None` waits as long as it takes; a zero timeout only looks.
///
/// Ready means: a [`Connection`](crate::Connection) has a message or end of
/// file to receive (so `recv` will not block on its first byte); a
/// [`Listener`](crate::Listener) has a peer waiting to be accepted or,
/// with an authkey on Linux, a handshake to advance (see
/// [`Listener::accept`](crate::Listener::accept)). Anything else with a descriptor (`AsFd`),
/// such as a `TcpStream` or a child's stdout, works too. Mix kinds with
/// `&dyn AsFd`, as below.
///
/// It looks at descriptors only: a connection with
/// [read-ahead](crate::Connection::set_read_ahead) on may hold a message
/// in its own buffer that this does not see (check
/// [`read_ahead_len`](crate::Connection::read_ahead_len) first).
///
/// A signal that arrives meanwhile (Ctrl-C with a handler installed, say)
/// ends the wait with [`ErrorKind::Interrupted`].
/// An empty `objects` with no timeout could only ever end that way, so it
/// is [`ErrorKind::InvalidInput`] instead
/// of a hang; with a timeout it waits that long and returns nothing.
///
/// # Examples
///
/// ```
/// use std::os::fd::AsFd;
/// use std::time::Duration;
/// use connection::{pipe, wait, Address, Listener};
///
/// let (mut a, b) = pipe()?;
/// let (_c, d) = pipe()?;
/// let listener = Listener::bind(&Address::localhost(0))?;
/// let objects: [&dyn AsFd; 3] = [&b, &d, &listener];
/// assert!(wait(&objects, Some(Duration::ZERO))?.is_empty());
/// a.send_bytes(b"ready")?;
/// assert_eq!(wait(&objects, None)?, [0]);
///
/// // A homogeneous slice needs no casting.
/// assert_eq!(wait(&[&d, &b], Some(Duration::from_secs(1)))?, [1]);
/// # Ok::<(), connection::Error>(())
/// ```
pub fn wait<T: AsFd>(objects: &[T], timeout: Option<Duration>) -> Result<Vec<usize>> {
    if objects.is_empty() && timeout.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "wait for no objects and no timeout would never return",
        ));
    }
    let mut fds: Vec<PollFd> = objects
        .iter()
        .map(|o| PollFd::readable(o.as_fd()))
        .collect();
    let ready = sys::poll(&mut fds, timeout)
        .map_err(|err| Error::io(err, format!("wait for {} objects", objects.len())))?;
    if ready == 0 {
        return Ok(Vec::new());
    }
    Ok(fds
        .iter()
        .enumerate()
        .filter(|(_, fd)| fd.is_ready())
        .map(|(i, _)| i)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipe::pipe;

    #[test]
    fn reports_only_ready_ones_in_order() {
        let (mut a, b) = pipe().unwrap();
        let (mut c, d) = pipe().unwrap();
        let (_e, f) = pipe().unwrap();
        assert!(wait(&[&b, &d, &f], Some(Duration::ZERO))
            .unwrap()
            .is_empty());
        c.send_bytes(b"1").unwrap();
        a.send_bytes(b"2").unwrap();
        assert_eq!(wait(&[&b, &d, &f], None).unwrap(), [0, 1]);
    }

    #[test]
    fn peer_closing_counts_as_ready() {
        let (a, b) = pipe().unwrap();
        drop(a);
        assert_eq!(wait(&[b], Some(Duration::from_secs(5))).unwrap(), [0]);
    }

    #[test]
    fn empty_list_times_out_empty() {
        let none: [&crate::Connection; 0] = [];
        assert!(wait(&none, Some(Duration::from_millis(1)))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn empty_list_without_timeout_is_refused_not_a_hang() {
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let none: [&crate::Connection; 0] = [];
            let _ = done.send(wait(&none, None).map_err(|err| err.kind()));
        });
        let outcome = result.recv_timeout(Duration::from_secs(30));
        assert_eq!(outcome, Ok(Err(ErrorKind::InvalidInput)));
    }

    #[test]
    fn signal_interrupts_the_wait() {
        let (_a, b) = pipe().unwrap();
        let pester = sys::SignalPester::start();
        let result = wait(&[&b], Some(Duration::from_secs(30)));
        drop(pester);
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Interrupted);
    }
}
