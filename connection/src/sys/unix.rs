//! Unix sockets, `poll`, descriptor flags and descriptor inheritance,
//! through `rustix` where it has a safe call (and `libc` where it has none).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::event::{PollFlags, Timespec};
use rustix::fs::FileType;
use rustix::io::FdFlags;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketFlags, SocketType,
};

/// How many descriptors one read makes room for: one is all a message may
/// carry; the room for more lets a receiver tell a peer that sent several.
const MAX_FDS_SEEN: usize = 4;

/// Whether a write may wait for room in the socket's buffer (or a read,
/// for data to arrive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Wait {
    ForRoom,
    No,
}

fn send_flags(wait: Wait) -> SendFlags {
    match wait {
        Wait::ForRoom => SendFlags::NOSIGNAL,
        Wait::No => SendFlags::NOSIGNAL | SendFlags::DONTWAIT,
    }
}

fn recv_flags(wait: Wait) -> RecvFlags {
    match wait {
        Wait::ForRoom => RecvFlags::empty(),
        Wait::No => RecvFlags::DONTWAIT,
    }
}

/// A connected stream socket (Unix domain or TCP). Reads and writes go
/// straight to the kernel: there is no user-space buffer, so `poll` on the
/// descriptor always tells the truth about what is ready.
#[derive(Debug)]
pub(crate) struct Socket(OwnedFd);

#[cfg(test)]
fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Socket {
    /// A connected pair of Unix stream sockets, both close-on-exec.
    pub(crate) fn pair() -> io::Result<(Socket, Socket)> {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::STREAM,
            SocketFlags::CLOEXEC,
            None,
        )?;
        Ok((Socket(a), Socket(b)))
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

    /// Reads what is available, at most `buf.len()` bytes (0 means end of
    /// file), waiting for data or not as `wait` says: `MSG_DONTWAIT` for
    /// this call alone, whatever the descriptor's blocking mode, so the
    /// socket stays blocking for the `Connection` it becomes, and its
    /// clones; `WouldBlock` when nothing has arrived. Not waiting is for an
    /// event loop that waits for readiness itself (handshakes,
    /// `try_recv_bytes`, the `tokio` feature).
    pub(crate) fn recv(&self, buf: &mut [u8], wait: Wait) -> io::Result<usize> {
        let (read, _) = rustix::net::recv(&self.0, buf, recv_flags(wait))?;
        Ok(read)
    }

    /// [`recv`](Socket::recv) into memory not yet initialised, which
    /// spares a receiver zeroing a buffer only to overwrite it: returns
    /// the bytes at the start of `buf` it initialised.
    pub(crate) fn recv_uninit<'a>(
        &self,
        buf: &'a mut [MaybeUninit<u8>],
        wait: Wait,
    ) -> io::Result<&'a mut [u8]> {
        let ((filled, _), _) = rustix::net::recv(&self.0, buf, recv_flags(wait))?;
        Ok(filled)
    }

    /// Writes some of `bufs`, waiting for room in the socket's buffer or
    /// not as `wait` says (`MSG_DONTWAIT` for this call only: the
    /// descriptor stays blocking, which matters since clones share it; a
    /// full socket then gives `WouldBlock`). `MSG_NOSIGNAL` turns a vanished
    /// peer into `EPIPE` instead of a process-killing `SIGPIPE`, whatever
    /// the program's signal disposition.
    pub(crate) fn send(&self, bufs: &[IoSlice<'_>], wait: Wait) -> io::Result<usize> {
        let flags = send_flags(wait);
        if let [only] = bufs {
            // A lone buffer goes through plain send(2): sendmsg's extra
            // set-up measurably slows the small-message round trip.
            return Ok(rustix::net::send(&self.0, only, flags)?);
        }
        let mut no_control = SendAncillaryBuffer::default();
        Ok(rustix::net::sendmsg(&self.0, bufs, &mut no_control, flags)?)
    }

    /// Writes some of `bufs` with `fd` attached (`SCM_RIGHTS`): the
    /// descriptor travels with the first byte written, so it has gone
    /// whenever the call wrote anything.
    pub(crate) fn send_with_fd(
        &self,
        bufs: &[IoSlice<'_>],
        fd: BorrowedFd<'_>,
        wait: Wait,
    ) -> io::Result<usize> {
        let flags = send_flags(wait);
        let fds = [fd];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        Ok(rustix::net::sendmsg(&self.0, bufs, &mut control, flags)?)
    }

    /// Reads as [`recv`](Socket::recv) does, and moves any descriptors
    /// that came with those bytes into `fds` (close-on-exec from the
    /// start, `MSG_CMSG_CLOEXEC`). Room is made for a few, so that a peer
    /// sending more than the one a message may carry is seen doing so; any
    /// beyond that room the kernel closes itself.
    pub(crate) fn recv_with_fds(
        &self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        wait: Wait,
    ) -> io::Result<usize> {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS_SEEN))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [IoSliceMut::new(buf)];
        let flags = RecvFlags::CMSG_CLOEXEC | recv_flags(wait);
        let got = rustix::net::recvmsg(&self.0, &mut iov, &mut control, flags)?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(received) = message {
                fds.extend(received);
            }
            // Anything else (credentials) owns nothing and is dropped.
        }
        Ok(got.bytes)
    }

    /// Sets or clears `O_NONBLOCK` on the open file description, which
    /// every descriptor of this socket shares.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        Ok(rustix::io::ioctl_fionbio(&self.0, nonblocking)?)
    }

    /// Writes some of `buf`, waiting for room: a test's forged header.
    #[cfg(test)]
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.send(&[IoSlice::new(buf)], Wait::ForRoom)
    }

    /// Reads some of what arrived into `buf`, waiting for it: a test's
    /// look at the raw stream.
    #[cfg(test)]
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf, Wait::ForRoom)
    }

    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        let how = match how {
            std::net::Shutdown::Read => rustix::net::Shutdown::Read,
            std::net::Shutdown::Write => rustix::net::Shutdown::Write,
            std::net::Shutdown::Both => rustix::net::Shutdown::Both,
        };
        Ok(rustix::net::shutdown(&self.0, how)?)
    }

    /// A second descriptor for the same socket, close-on-exec.
    pub(crate) fn try_clone(&self) -> io::Result<Socket> {
        self.0.try_clone().map(Socket)
    }

    /// Closes the descriptor, reporting the error that `drop` would swallow.
    pub(crate) fn close(self) -> io::Result<()> {
        let fd = self.0.into_raw_fd();
        // SAFETY: we own `fd` (just taken out of the OwnedFd, which no
        // longer closes it) and close it exactly once. No safe call exists:
        // dropping an OwnedFd closes it but discards the error.
        Ok(unsafe { rustix::io::try_close(fd) }?)
    }
}

/// For registration with an event loop (tokio's `AsyncFd`).
impl AsRawFd for Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Registers `socket` (a [`Socket`] or a listening socket) with the
/// current tokio runtime's reactor for `interest`. Must be called inside a
/// runtime with I/O enabled (tokio panics otherwise).
#[cfg(feature = "tokio")]
pub(crate) fn register<S: OwnsItsFd>(
    socket: S,
    interest: tokio::io::Interest,
) -> io::Result<tokio::io::unix::AsyncFd<S>> {
    // Tokio 1.54 (whose Rust is newer than this workspace's 1.81)
    // deprecates this constructor for the unsafe `register_with_interest`,
    // whose contract is that the descriptor stay open and `as_raw_fd` keep
    // returning it while the AsyncFd owns the value: what `OwnsItsFd`
    // promises.
    #[allow(deprecated)]
    tokio::io::unix::AsyncFd::with_interest(socket, interest)
}

/// A value that owns its descriptor: it stays open, and `as_raw_fd`
/// returns it, for as long as the value lives, so that it may be
/// registered with tokio's reactor.
#[cfg(feature = "tokio")]
pub(crate) trait OwnsItsFd: AsRawFd {}

/// A Socket owns its OwnedFd and closes it only when dropped or through
/// methods that take it by value, out of the AsyncFd first.
#[cfg(feature = "tokio")]
impl OwnsItsFd for Socket {}

/// Sets or clears `FD_CLOEXEC`.
///
/// Async-signal-safe (two `fcntl` calls, no allocation), so it may run in
/// a `pre_exec` hook between fork and exec.
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>, cloexec: bool) -> io::Result<()> {
    let flags = rustix::io::fcntl_getfd(fd)?;
    let flags = if cloexec {
        flags | FdFlags::CLOEXEC
    } else {
        flags - FdFlags::CLOEXEC
    };
    Ok(rustix::io::fcntl_setfd(fd, flags)?)
}

/// Arranges for every child spawned from `command` to inherit `fd` under
/// its current number: close-on-exec is cleared in the child only, between
/// fork and exec, so that no other child spawned meanwhile (by another
/// thread) inherits it. `command` owns `fd` until it is dropped.
pub(crate) fn inherit_in_child(command: &mut Command, fd: OwnedFd) {
    // SAFETY: the hook runs in the child between fork and exec, where only
    // async-signal-safe calls are allowed: set_cloexec makes two fcntl
    // system calls and nothing else (no allocation, no locks). The hook owns
    // `fd`, so the descriptor stays open for as long as `command` can
    // spawn. `pre_exec` is unsafe by nature; there is no safe way to run
    // code between fork and exec.
    unsafe {
        command.pre_exec(move || set_cloexec(fd.as_fd(), false));
    }
}

/// Why an inherited descriptor number could not be claimed. In every case
/// the descriptor, if open, is left exactly as it was.
#[derive(Debug)]
pub(crate) enum Unclaimable {
    /// This process claimed the number before.
    AlreadyClaimed,
    /// No descriptor is open under the number (`EBADF`).
    NotOpen(io::Error),
    /// It is open but not a socket, and a socket was asked for.
    NotASocket,
    /// Its metadata or flags could not be read or changed.
    Os(io::Error),
}

/// Descriptor numbers already claimed in this process, so that a second
/// claim cannot create a second owner.
static CLAIMED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// Takes ownership of a descriptor that a parent process handed down by
/// number (see [`inherit_in_child`]), and marks it close-on-exec again so
/// that it is not passed further down by accident.
///
/// The number comes from outside (an environment variable), so it is
/// checked before anything owns it: it must be open, never claimed before
/// in this process and, if `must_be_socket`, a socket. A refused number is
/// left untouched.
pub(crate) fn claim_inherited(raw: RawFd, must_be_socket: bool) -> Result<OwnedFd, Unclaimable> {
    let mut claimed = CLAIMED.lock().unwrap_or_else(|poison| poison.into_inner());
    if claimed.contains(&raw) {
        return Err(Unclaimable::AlreadyClaimed);
    }
    // SAFETY: F_GETFD on any number only reads descriptor flags; a number
    // that is not open gives EBADF. No safe call takes a raw number: rustix
    // and std want a descriptor already known to be open.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } == -1 {
        return Err(Unclaimable::NotOpen(io::Error::last_os_error()));
    }
    // SAFETY: the descriptor is open (checked just above); the parent
    // handed it to this process for this purpose, and CLAIMED (locked for
    // the whole claim) ensures that this process wraps the number in an
    // OwnedFd once at most. A refused descriptor is released with
    // `into_raw_fd` below, never closed.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let checked = match rustix::fs::fstat(&fd) {
        Ok(stat) if must_be_socket && FileType::from_raw_mode(stat.st_mode) != FileType::Socket => {
            Err(Unclaimable::NotASocket)
        }
        Ok(_) => set_cloexec(fd.as_fd(), true).map_err(Unclaimable::Os),
        Err(err) => Err(Unclaimable::Os(err.into())),
    };
    if let Err(refused) = checked {
        let _ = fd.into_raw_fd();
        return Err(refused);
    }
    claimed.push(raw);
    Ok(fd)
}

/// Sets the length of a listening socket's queue of connections not yet
/// accepted. Neither std nor `interprocess` takes a backlog when binding;
/// on Linux (and the BSDs) calling `listen` again on a listening socket
/// updates its backlog, so this runs right after binding.
pub(crate) fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    Ok(rustix::net::listen(fd, backlog)?)
}

/// Readiness of one descriptor in [`poll`].
#[derive(Clone, Debug)]
#[repr(transparent)]
pub(crate) struct PollFd<'fd>(rustix::event::PollFd<'fd>);

impl<'fd> PollFd<'fd> {
    /// Watch `fd` for being readable (which includes end of file and errors).
    pub(crate) fn readable(fd: BorrowedFd<'fd>) -> PollFd<'fd> {
        PollFd(rustix::event::PollFd::from_borrowed_fd(fd, PollFlags::IN))
    }

    /// Whether the last [`poll`] found the descriptor ready: data, end of
    /// file, or an error that the next read will report.
    pub(crate) fn is_ready(&self) -> bool {
        self.0
            .revents()
            .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL)
    }
}

/// Waits until one of `fds` is ready or `timeout` passes (`None`: forever).
/// Returns how many are ready; 0 means the timeout passed.
///
/// A signal delivered meanwhile ends the wait with `ErrorKind::Interrupted`,
/// whatever `SA_RESTART` says: poll is never restarted by the kernel, and we
/// do not restart it either, so that a Ctrl-C handler gets to run its course.
pub(crate) fn poll(fds: &mut [PollFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    // SAFETY: PollFd is a repr(transparent) newtype around rustix's PollFd,
    // so both slices have the same layout; the borrow of `fds` covers the
    // new slice's whole life. (A wrapper keeps rustix out of the callers'
    // sight; rustix has no safe way to view the slice as its own type.)
    let fds = unsafe {
        std::slice::from_raw_parts_mut(
            fds.as_mut_ptr().cast::<rustix::event::PollFd<'_>>(),
            fds.len(),
        )
    };
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        // A deadline too far to represent waits forever, as `None` does.
        let left = deadline.and_then(|deadline| {
            Timespec::try_from(deadline.saturating_duration_since(Instant::now())).ok()
        });
        let ready = rustix::event::poll(fds, left.as_ref())?;
        if ready > 0 {
            return Ok(ready);
        }
        match deadline {
            Some(deadline) if Instant::now() >= deadline => return Ok(0),
            // The wait ended early (it does not, on Linux, but costs nothing
            // to guard): wait for the rest.
            _ => continue,
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

    fn is_cloexec(fd: BorrowedFd<'_>) -> bool {
        rustix::io::fcntl_getfd(fd)
            .unwrap()
            .contains(FdFlags::CLOEXEC)
    }

    #[test]
    fn cloexec_toggles() {
        let (a, _b) = Socket::pair().unwrap();
        assert!(is_cloexec(a.fd()), "socketpair makes close-on-exec ends");
        set_cloexec(a.fd(), false).unwrap();
        assert!(!is_cloexec(a.fd()));
        set_cloexec(a.fd(), true).unwrap();
        assert!(is_cloexec(a.fd()));
    }

    #[test]
    fn claim_takes_an_open_descriptor_once_and_sets_cloexec() {
        let (a, b) = Socket::pair().unwrap();
        set_cloexec(a.fd(), false).unwrap();
        let raw = a.into_owned().into_raw_fd();
        let owned = claim_inherited(raw, true).unwrap();
        assert!(is_cloexec(owned.as_fd()));
        let again = claim_inherited(raw, true).unwrap_err();
        assert!(matches!(again, Unclaimable::AlreadyClaimed), "{again:?}");
        // It is the same socket: what goes in one end comes out of the other.
        let owned = Socket::from_owned(owned);
        owned.write(b"x").unwrap();
        assert_eq!(b.read(&mut [0u8; 1]).unwrap(), 1);
        // Left open for good: a claimed number stays claimed, so once closed
        // and reused by another test's descriptor it would refuse that one.
        let _ = owned.into_owned().into_raw_fd();
    }

    #[test]
    fn claim_refuses_a_number_that_is_not_open() {
        // Above any descriptor limit, so never open (a number freed by a
        // close could be reused by another test's thread meanwhile).
        let err = claim_inherited(RawFd::MAX, false).unwrap_err();
        assert!(matches!(err, Unclaimable::NotOpen(_)), "{err:?}");
    }

    #[test]
    fn claim_of_a_file_as_a_socket_is_refused_and_leaves_it_untouched() {
        let file = std::fs::File::open("/dev/null").unwrap();
        set_cloexec(file.as_fd(), false).unwrap();
        let err = claim_inherited(file.as_raw_fd(), true).unwrap_err();
        assert!(matches!(err, Unclaimable::NotASocket), "{err:?}");
        // Still open (the File still owns it), close-on-exec still clear.
        assert!(!is_cloexec(file.as_fd()));
    }
}
