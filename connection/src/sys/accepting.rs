//! What a listener's handshakes need of the system besides
//! [`ReadySet`](super::ReadySet) and `Socket::recv` without waiting: telling when
//! descriptors have run out, and whether a peer waits.

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Duration;

use rustix::io::Errno;

/// Whether `err` says that the process (`EMFILE`) or the system (`ENFILE`)
/// has no descriptor left for a new one.
pub(crate) fn is_out_of_descriptors(err: &io::Error) -> bool {
    matches!(Errno::from_io_error(err), Some(Errno::MFILE | Errno::NFILE))
}

/// Whether a connection waits in the listening socket's queue, checked
/// without waiting.
pub(crate) fn connection_waiting(listener: BorrowedFd<'_>) -> bool {
    let mut fds = [super::PollFd::readable(listener)];
    matches!(super::poll(&mut fds, Some(Duration::ZERO)), Ok(n) if n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Socket, Wait};

    #[test]
    fn reads_what_arrived_and_never_waits() {
        let (a, b) = Socket::pair().unwrap();
        let mut buf = [0u8; 8];
        let err = b.recv(&mut buf, Wait::No).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        a.write(b"abc").unwrap();
        assert_eq!(b.recv(&mut buf[..2], Wait::No).unwrap(), 2);
        assert_eq!(b.recv(&mut buf, Wait::No).unwrap(), 1);
        drop(a);
        assert_eq!(b.recv(&mut buf, Wait::No).unwrap(), 0);
    }

    #[test]
    fn emfile_and_enfile_are_out_of_descriptors() {
        for (errno, out) in [
            (Errno::MFILE, true),
            (Errno::NFILE, true),
            (Errno::AGAIN, false),
        ] {
            assert_eq!(is_out_of_descriptors(&errno.into()), out, "{errno:?}");
        }
        assert!(!is_out_of_descriptors(&io::ErrorKind::Other.into()));
    }
}
