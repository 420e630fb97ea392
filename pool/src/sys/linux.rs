//! Linux: parent-death signal, signal dispositions, and a counter shared
//! with a child process through a memory-mapped `memfd`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Asks the kernel to SIGKILL this process when the thread that spawned it
/// exits, then checks that the parent is still `expected_parent`: if it
/// died before the request was made, the signal would never come.
pub(crate) fn die_with_parent(expected_parent: u32) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and touches no
    // memory of ours.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) })?;
    // SAFETY: getppid cannot fail and has no preconditions.
    let parent = unsafe { libc::getppid() };
    if parent as u32 != expected_parent {
        return Err(io::Error::other(format!(
            "parent {expected_parent} is gone (now {parent})"
        )));
    }
    Ok(())
}

/// Ignores SIGINT in this process: the parent decides what Ctrl-C means,
/// and a worker must not die half-way through a reply because the terminal
/// sent the signal to the whole process group.
pub(crate) fn ignore_sigint() -> io::Result<()> {
    // SAFETY: installing SIG_IGN involves no handler code, so nothing can
    // run in signal context.
    let previous = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    if previous == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The name of a signal number, for messages ("SIGKILL").
pub(crate) fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGSYS => "SIGSYS",
        _ => "unknown signal",
    }
}

/// A `u64` in a page of memory shared between a parent and one child.
///
/// The worker stores how many task items it has started before it starts
/// each one, so that when it dies the parent knows which item was running
/// without the worker ever having to send a message per item.
pub(crate) struct SharedCounter {
    ptr: std::ptr::NonNull<AtomicU64>,
    _fd: OwnedFd,
}

// SAFETY: the mapping is only accessed through the AtomicU64, which is
// Sync; the pointer stays valid until drop unmaps it.
unsafe impl Send for SharedCounter {}
// SAFETY: as above: all access is atomic.
unsafe impl Sync for SharedCounter {}

const PAGE: usize = 4096;

impl SharedCounter {
    /// A fresh counter at zero, backed by an anonymous memory file.
    pub(crate) fn create() -> io::Result<SharedCounter> {
        // SAFETY: the name is a valid NUL-terminated string; MFD_CLOEXEC
        // keeps the descriptor from leaking into unrelated children.
        let raw = cvt(unsafe { libc::memfd_create(c"pool-progress".as_ptr(), libc::MFD_CLOEXEC) })?;
        // SAFETY: memfd_create returned a new descriptor that nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ftruncate on our own descriptor; a fresh memfd reads as zeros.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), PAGE as libc::off_t) })?;
        SharedCounter::map(fd)
    }

    /// Maps a counter whose descriptor a parent passed down.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<SharedCounter> {
        // SAFETY: fstat fills a plain struct for an open descriptor.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is a valid out-pointer; `fd` is open.
        cvt(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
        if (st.st_size as usize) < PAGE {
            return Err(io::Error::other("progress descriptor is not a shared page"));
        }
        SharedCounter::map(fd)
    }

    fn map(fd: OwnedFd) -> io::Result<SharedCounter> {
        // SAFETY: mapping PAGE bytes of a file that is at least PAGE long,
        // shared, at an address the kernel picks; nothing else is touched.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(addr.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(SharedCounter { ptr, _fd: fd })
    }

    fn cell(&self) -> &AtomicU64 {
        // SAFETY: the page is mapped for as long as self lives, is
        // page-aligned (so aligned for u64), and is only ever accessed
        // atomically, by this process or the other one.
        unsafe { self.ptr.as_ref() }
    }

    pub(crate) fn load(&self) -> u64 {
        self.cell().load(Ordering::Acquire)
    }

    pub(crate) fn store(&self, value: u64) {
        self.cell().store(value, Ordering::Release)
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self._fd.as_raw_fd()
    }
}

impl Drop for SharedCounter {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the page mapped in `map`; no reference
        // to it outlives self.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), PAGE);
        }
    }
}

/// Prepares `command` so that its child inherits `fd` (close-on-exec is
/// cleared in the child only), is killed when the spawning thread dies, and
/// ignores SIGINT from its first instruction on: a Ctrl-C to the process
/// group while a worker starts must not kill it before it could say so.
pub(crate) fn prepare_worker_command(command: &mut Command, fd: RawFd) {
    // SAFETY: the hook runs between fork and exec, where only
    // async-signal-safe calls are allowed: fcntl, prctl and signal (a
    // sigaction wrapper) are, and nothing
    // here allocates or locks. The descriptor stays open in the parent for
    // as long as the SharedCounter that owns it, which outlives the spawn.
    unsafe {
        command.pre_exec(move || {
            let flags = cvt(libc::fcntl(fd, libc::F_GETFD))?;
            cvt(libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC))?;
            cvt(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            // Runs after std reset the child's signal mask; an ignored
            // disposition survives exec.
            if libc::signal(libc::SIGINT, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Takes ownership of a descriptor named by the parent.
///
/// Fails unless `fd` is open; the caller must be its only owner (the
/// worker claims each inherited descriptor once, at start-up).
pub(crate) fn claim_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_SETFD only changes descriptor flags; a closed fd gives EBADF.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    // SAFETY: the descriptor is open (checked above) and the parent passed
    // it to this process for this purpose only; it is claimed once.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_counter_is_shared_between_mappings() {
        let counter = SharedCounter::create().unwrap();
        let dup = counter._fd.try_clone().unwrap();
        let other = SharedCounter::from_fd(dup).unwrap();
        counter.store(41);
        assert_eq!(other.load(), 41);
        other.store(42);
        assert_eq!(counter.load(), 42);
    }

    #[test]
    fn a_file_that_is_not_a_page_is_refused() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(SharedCounter::from_fd(file.into()).is_err());
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(1000), "unknown signal");
    }
}
