//! Unix sockets, `poll` and descriptor flags, through `libc`.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Whether a write may wait for room in the socket's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    ForRoom,
    No,
}

/// A connected stream socket (Unix domain or TCP). Reads and writes go
/// straight to the kernel: there is no user-space buffer, so `poll` on the
/// descriptor always tells the truth about what is ready.
#[derive(Debug)]
pub(crate) struct Socket(OwnedFd);

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

impl Socket {
    /// A connected pair of Unix stream sockets, both close-on-exec.
    pub(crate) fn pair() -> io::Result<(Socket, Socket)> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
        cvt(unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        })?;
        // SAFETY: socketpair succeeded, so both descriptors are open and
        // owned by nobody else.
        unsafe { Ok((Socket::from_raw(fds[0]), Socket::from_raw(fds[1]))) }
    }

    /// # Safety
    /// `fd` must be an open descriptor that the caller owns.
    unsafe fn from_raw(fd: RawFd) -> Socket {
        Socket(OwnedFd::from_raw_fd(fd))
    }

    pub(crate) fn from_owned(fd: OwnedFd) -> Socket {
        Socket(fd)
    }

    pub(crate) fn into_owned(self) -> OwnedFd {
        self.0
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }

    /// Reads what is available, at most `buf.len()` bytes; 0 means end of file.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: the pointer and length describe `buf`, writable for the call.
        cvt_size(unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
    }

    /// Writes some of `bufs`, waiting for room in the socket's buffer or
    /// not as `wait` says (`MSG_DONTWAIT` for this call only: the
    /// descriptor stays blocking, which matters since clones share it; a
    /// full socket then gives `WouldBlock`). `MSG_NOSIGNAL` turns a vanished
    /// peer into `EPIPE` instead of a process-killing `SIGPIPE`, whatever
    /// the program's signal disposition.
    pub(crate) fn send(&self, bufs: &[IoSlice<'_>], wait: Wait) -> io::Result<usize> {
        let flags = match wait {
            Wait::ForRoom => libc::MSG_NOSIGNAL,
            Wait::No => libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
        };
        if let [only] = bufs {
            // A lone buffer goes through plain send(2): sendmsg's extra
            // set-up measurably slows the small-message round trip.
            // SAFETY: the pointer and length describe `only`, readable for the call.
            return cvt_size(unsafe {
                libc::send(self.0.as_raw_fd(), only.as_ptr().cast(), only.len(), flags)
            });
        }
        // SAFETY: msghdr is plain data; zeroed is a valid empty header.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        // IoSlice is guaranteed ABI-compatible with iovec on Unix.
        msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = bufs.len() as _;
        // SAFETY: msg points at `bufs`, which outlives the call and is only read.
        cvt_size(unsafe { libc::sendmsg(self.0.as_raw_fd(), &msg, flags) })
    }

    /// Writes some of `buf`, waiting for room: a test's forged header.
    #[cfg(test)]
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.send(&[IoSlice::new(buf)], Wait::ForRoom)
    }

    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        let how = match how {
            std::net::Shutdown::Read => libc::SHUT_RD,
            std::net::Shutdown::Write => libc::SHUT_WR,
            std::net::Shutdown::Both => libc::SHUT_RDWR,
        };
        // SAFETY: plain syscall on a descriptor we own.
        cvt(unsafe { libc::shutdown(self.0.as_raw_fd(), how) }).map(drop)
    }

    /// A second descriptor for the same socket, close-on-exec.
    pub(crate) fn try_clone(&self) -> io::Result<Socket> {
        self.0.try_clone().map(Socket)
    }

    /// Closes the descriptor, reporting the error that `drop` would swallow.
    pub(crate) fn close(self) -> io::Result<()> {
        let fd = std::os::fd::IntoRawFd::into_raw_fd(self.0);
        // SAFETY: we own `fd` (just taken out of the OwnedFd) and close it once.
        cvt(unsafe { libc::close(fd) }).map(drop)
    }
}

impl io::Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Socket::read(self, buf)
    }
}

/// Whether `fd` is a socket (as opposed to a file, a pipe or nothing).
///
/// Takes a raw descriptor so that a descriptor number from outside (an
/// environment variable) can be checked before anything owns it: fstat on
/// a closed one fails with `EBADF` and changes nothing.
pub(crate) fn is_socket(fd: RawFd) -> io::Result<bool> {
    // SAFETY: stat is plain data; fstat fills it for an open descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out-pointer; fstat only reads descriptor
    // metadata and reports EBADF for a descriptor that is not open.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    Ok(st.st_mode & libc::S_IFMT == libc::S_IFSOCK)
}

/// Sets or clears `FD_CLOEXEC`.
///
/// Async-signal-safe, so it may run in a `pre_exec` hook between fork and exec.
pub(crate) fn set_cloexec(fd: RawFd, cloexec: bool) -> io::Result<()> {
    // SAFETY: fcntl with F_GETFD/F_SETFD reads and writes only descriptor
    // flags; an invalid fd gives EBADF, not undefined behaviour.
    unsafe {
        let flags = cvt(libc::fcntl(fd, libc::F_GETFD))?;
        let flags = if cloexec {
            flags | libc::FD_CLOEXEC
        } else {
            flags & !libc::FD_CLOEXEC
        };
        cvt(libc::fcntl(fd, libc::F_SETFD, flags)).map(drop)
    }
}

/// Sets the length of a listening socket's queue of connections not yet
/// accepted. Neither std nor `interprocess` takes a backlog when binding;
/// on Linux (and the BSDs) calling `listen` again on a listening socket
/// updates its backlog, so this runs right after binding.
pub(crate) fn listen(fd: BorrowedFd<'_>, backlog: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a borrowed, open descriptor; a descriptor
    // that is no socket gives ENOTSOCK, not undefined behaviour.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }).map(drop)
}

/// Readiness of one descriptor in [`poll`].
#[derive(Clone, Copy, Debug)]
#[repr(transparent)]
pub(crate) struct PollFd(libc::pollfd);

impl PollFd {
    /// Watch `fd` for being readable (which includes end of file and errors).
    pub(crate) fn readable(fd: BorrowedFd<'_>) -> PollFd {
        PollFd(libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
    }

    /// Whether the last [`poll`] found the descriptor ready: data, end of
    /// file, or an error that the next read will report.
    pub(crate) fn is_ready(&self) -> bool {
        self.0.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: forever).
/// Returns how many are ready; 0 means the timeout passed.
///
/// A signal delivered meanwhile ends the wait with `ErrorKind::Interrupted`,
/// whatever `SA_RESTART` says: poll is never restarted by the kernel, and we
/// do not restart it either, so that a Ctrl-C handler gets to run its course.
pub(crate) fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let deadline = timeout.map(|t| Instant::now().checked_add(t));
    loop {
        let millis: libc::c_int = match deadline {
            None | Some(None) => -1,
            Some(Some(deadline)) => {
                let left = deadline.saturating_duration_since(Instant::now());
                // Round up, so that a 0.5 ms timeout does not become a busy loop.
                let ms = left.as_nanos().div_ceil(1_000_000);
                ms.min(libc::c_int::MAX as u128) as libc::c_int
            }
        };
        // SAFETY: PollFd is repr-compatible with pollfd (a newtype around
        // it) and the slice is valid and writable for the call.
        let ready = cvt(unsafe {
            libc::poll(
                fds.as_mut_ptr().cast::<libc::pollfd>(),
                fds.len() as libc::nfds_t,
                millis,
            )
        })?;
        if ready > 0 {
            return Ok(ready as usize);
        }
        // poll caps a wait at c_int::MAX ms; go round again for longer ones.
        match deadline {
            Some(Some(deadline)) if Instant::now() < deadline => continue,
            None | Some(None) => continue,
            _ => return Ok(0),
        }
    }
}

/// Test support: sends `SIGURG`, with a do-nothing handler installed
/// without `SA_RESTART`, to the thread that made it, every 10 ms until
/// dropped, so that a blocking call there sees `EINTR`.
#[cfg(test)]
pub(crate) struct SignalPester {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[cfg(test)]
impl SignalPester {
    pub(crate) fn start() -> SignalPester {
        use std::sync::atomic::{AtomicBool, Ordering};
        extern "C" fn ignore(_: libc::c_int) {}
        // SAFETY: sigaction is plain data, zeroed is a valid empty action;
        // the handler does nothing, so it is async-signal-safe. Nothing
        // else in the test binary uses SIGURG.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as usize;
            cvt(libc::sigaction(libc::SIGURG, &action, std::ptr::null_mut())).unwrap();
        }
        // SAFETY: pthread_self has no preconditions.
        let target = unsafe { libc::pthread_self() };
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::SeqCst) {
                    // SAFETY: the target thread outlives this one: it joins
                    // us in drop before it can exit.
                    unsafe { libc::pthread_kill(target, libc::SIGURG) };
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        });
        SignalPester {
            stop,
            thread: Some(thread),
        }
    }
}

#[cfg(test)]
impl Drop for SignalPester {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_read_write_and_poll() {
        let (a, b) = Socket::pair().unwrap();
        let mut fds = [PollFd::readable(b.fd())];
        assert_eq!(poll(&mut fds, Some(Duration::ZERO)).unwrap(), 0);
        assert_eq!(a.write(b"hi").unwrap(), 2);
        assert_eq!(poll(&mut fds, Some(Duration::ZERO)).unwrap(), 1);
        assert!(fds[0].is_ready());
        let mut buf = [0u8; 8];
        assert_eq!(b.read(&mut buf).unwrap(), 2);
        assert_eq!(&buf[..2], b"hi");
    }

    #[test]
    fn write_to_closed_peer_is_epipe_not_sigpipe() {
        let (a, b) = Socket::pair().unwrap();
        drop(b);
        let err = a.write(b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn vectored_write_sends_all_slices() {
        let (a, b) = Socket::pair().unwrap();
        let n = a
            .send(&[IoSlice::new(b"ab"), IoSlice::new(b"cd")], Wait::ForRoom)
            .unwrap();
        assert_eq!(n, 4);
        let mut buf = [0u8; 4];
        assert_eq!(b.read(&mut buf).unwrap(), 4);
        assert_eq!(&buf, b"abcd");
    }

    #[test]
    fn sockets_are_sockets_and_cloexec_toggles() {
        let (a, _b) = Socket::pair().unwrap();
        assert!(is_socket(a.fd().as_raw_fd()).unwrap());
        let raw = a.fd().as_raw_fd();
        set_cloexec(raw, false).unwrap();
        // SAFETY: F_GETFD on an open descriptor.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, 0);
        set_cloexec(raw, true).unwrap();
        // SAFETY: as above.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(!is_socket(file.as_raw_fd()).unwrap());
    }
}
