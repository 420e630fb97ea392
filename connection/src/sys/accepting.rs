//! What a listener's handshakes need of the system besides
//! [`ReadySet`](super::ReadySet): reads that never wait on descriptors
//! that stay blocking, and telling when descriptors have run out.

use std::io;
use std::os::fd::BorrowedFd;

use rustix::io::Errno;
use rustix::net::{recv, RecvFlags};

/// Whether `err` says that the process (`EMFILE`) or the system (`ENFILE`)
/// has no descriptor left for a new one.
pub(crate) fn is_out_of_descriptors(err: &io::Error) -> bool {
    matches!(Errno::from_io_error(err), Some(Errno::MFILE | Errno::NFILE))
}

/// Reads what has arrived, at most `buf.len()` bytes, without waiting:
/// `WouldBlock` when nothing has; 0 means end of file. `MSG_DONTWAIT`
/// applies to this call alone, so the descriptor stays blocking for
/// whoever owns it next (a [`Connection`](crate::Connection), and its
/// clones, which share the flag).
pub(crate) fn recv_nowait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let (n, _) = recv(fd, buf, RecvFlags::DONTWAIT)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::Socket;

    #[test]
    fn reads_what_arrived_and_never_waits() {
        let (a, b) = Socket::pair().unwrap();
        let mut buf = [0u8; 8];
        let err = recv_nowait(b.fd(), &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        a.write(b"abc").unwrap();
        assert_eq!(recv_nowait(b.fd(), &mut buf[..2]).unwrap(), 2);
        assert_eq!(recv_nowait(b.fd(), &mut buf).unwrap(), 1);
        drop(a);
        assert_eq!(recv_nowait(b.fd(), &mut buf).unwrap(), 0);
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
