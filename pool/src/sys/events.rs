//! What the pool's I/O thread (`parent/worker_io/`) waits on: an epoll
//! set of descriptors under tokens, an eventfd that wakes it, and a
//! pidfd per local worker that polls readable once the process has
//! exited (Linux 5.3 and later; without one, the thread polls for the
//! exit instead).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::event::{epoll, eventfd, EventfdFlags, Timespec};

/// How many ready descriptors one wait reports at most.
const EVENTS_PER_WAIT: usize = 256;

/// A descriptor that [`Poller::wait`] found ready.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Readiness {
    pub(crate) token: u64,
    /// Data or end of file to read, or an error to collect.
    pub(crate) readable: bool,
    /// Room to write, or an error to collect.
    pub(crate) writable: bool,
}

/// An epoll set, level-triggered: a descriptor is reported for as long
/// as it stays ready, so a reader may stop after a few messages and be
/// woken again for the rest.
pub(crate) struct Poller {
    epoll: OwnedFd,
}

fn interest(writable: bool, quiet: bool) -> epoll::EventFlags {
    let mut flags = match quiet {
        false => epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
        true => epoll::EventFlags::RDHUP | epoll::EventFlags::ONESHOT,
    };
    if writable {
        flags |= epoll::EventFlags::OUT;
    }
    flags
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        Ok(Poller {
            epoll: epoll::create(epoll::CreateFlags::CLOEXEC)?,
        })
    }

    /// Watches `fd` under `token`, for reading and, if `writable`, for
    /// room to write.
    pub(crate) fn add(&self, fd: BorrowedFd<'_>, token: u64, writable: bool) -> io::Result<()> {
        let data = epoll::EventData::new_u64(token);
        Ok(epoll::add(
            &self.epoll,
            fd,
            data,
            interest(writable, false),
        )?)
    }

    /// Changes how `fd` (watched under `token`) is watched: for room to
    /// write if `writable`; and if `quiet`, not for data but only for the
    /// peer's end (or an error), and once: a quiet descriptor reported
    /// ready is not reported again until this is called again (re-armed).
    pub(crate) fn modify(
        &self,
        fd: BorrowedFd<'_>,
        token: u64,
        writable: bool,
        quiet: bool,
    ) -> io::Result<()> {
        let data = epoll::EventData::new_u64(token);
        Ok(epoll::modify(
            &self.epoll,
            fd,
            data,
            interest(writable, quiet),
        )?)
    }

    pub(crate) fn remove(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        Ok(epoll::delete(&self.epoll, fd)?)
    }

    /// Waits up to `timeout` (`None`: no limit) for a watched descriptor
    /// to be ready, and appends those that are to `ready`. A signal ends
    /// the wait early, with nothing ready.
    pub(crate) fn wait(
        &self,
        ready: &mut Vec<Readiness>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let timeout = timeout.map(|t| Timespec {
            tv_sec: t.as_secs().min(3600) as i64,
            tv_nsec: t.subsec_nanos().into(),
        });
        // On the stack: epoll's event type holds a pointer, which would
        // make the poller not `Send`.
        let mut buffer = [MaybeUninit::<epoll::Event>::uninit(); EVENTS_PER_WAIT];
        let events = match epoll::wait(&self.epoll, &mut buffer, timeout.as_ref()) {
            Ok((events, _)) => events,
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(err) => return Err(err.into()),
        };
        let trouble = epoll::EventFlags::ERR | epoll::EventFlags::HUP | epoll::EventFlags::RDHUP;
        ready.extend(events.iter().map(|event| {
            // Copied out: the kernel's event struct is packed.
            let flags = event.flags;
            Readiness {
                token: event.data.u64(),
                readable: flags.intersects(epoll::EventFlags::IN | trouble),
                writable: flags.intersects(epoll::EventFlags::OUT | epoll::EventFlags::ERR),
            }
        }));
        Ok(())
    }
}

/// An eventfd that another thread writes to wake the poller's thread.
pub(crate) struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Waker> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Waker { fd })
    }

    /// Makes the eventfd readable until [`drain`](Waker::drain)ed.
    pub(crate) fn wake(&self) {
        // Fails only when the counter would overflow: it is readable then.
        let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
    }

    pub(crate) fn drain(&self) {
        let mut count = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut count);
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A descriptor of process `pid` that polls readable once it has exited;
/// `None` where the kernel has no pidfds.
pub(crate) fn exit_watch(pid: u32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(pid.try_into().ok()?)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Puts `fd` (a pipe of our own, shared with nobody) in non-blocking mode,
/// so that reading what it holds never waits for more.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::io::ioctl_fionbio(fd, true)?)
}

/// Shuts a socket down both ways, waking whoever waits on it (a read
/// that blocks ends with end of file). Errors (not a socket, not
/// connected) are nothing to act on: the socket is as shut as it gets.
pub(crate) fn shut_socket(fd: RawFd) {
    // SAFETY: shutdown acts only on the socket behind `fd`, which the
    // caller keeps open for the call; a number that is not one fails
    // with EBADF or ENOTSOCK and changes nothing.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Waits up to `timeout` (`None`: no limit) for descriptor `fd` to be
/// readable (data, end of file or an error), or if `writable` to have
/// room to write; false if the time passed or a signal came first. For a
/// thread that does not own `fd` but knows it open for the wait (see
/// `SharedConnection::wait`).
pub(crate) fn wait_ready(fd: RawFd, writable: bool, timeout: Option<Duration>) -> io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd,
        events: if writable {
            libc::POLLOUT
        } else {
            libc::POLLIN
        },
        revents: 0,
    };
    let millis = timeout.map_or(-1, |t| {
        // Rounded up, so that a wait never ends before its time.
        t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int
    });
    // SAFETY: poll reads and writes only the one pollfd given, which
    // lives on this stack for the call; a number that is no open
    // descriptor is reported as POLLNVAL, never acted on.
    let ret = unsafe { libc::poll(&mut pollfd, 1, millis) };
    match ret {
        -1 => {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted => Ok(false),
                _ => Err(err),
            }
        }
        0 => Ok(false),
        _ if pollfd.revents & libc::POLLNVAL != 0 => Err(io::Error::from_raw_os_error(libc::EBADF)),
        _ => Ok(true),
    }
}
