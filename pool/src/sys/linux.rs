//! Linux: a hook that runs before `main`, secure-execution mode, changes
//! to the environment, parent-death signal, signal dispositions, and a
//! counter shared with a child process through a
//! memory-mapped `memfd`. System calls go through `rustix`'s safe
//! wrappers; `unsafe` is left for the five things that have none: the
//! hook that runs between fork and exec, setting or reading a signal's disposition,
//! mapping shared memory, reading the auxiliary vector, and starting a
//! file's writeback (`sync_file_range`).

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::fs::{fcntl_add_seals, fstat, ftruncate, memfd_create, MemfdFlags, SealFlags};
use rustix::process::{getppid, set_parent_process_death_signal, Signal};

/// Asks the kernel to SIGKILL this process when the thread that spawned it
/// exits, then checks that the parent is still `expected_parent`: if it
/// died before the request was made, the signal would never come.
pub(crate) fn die_with_parent(expected_parent: u32) -> io::Result<()> {
    set_parent_process_death_signal(Some(Signal::KILL))?;
    let parent = getppid().map_or(0, |pid| pid.as_raw_nonzero().get() as u32);
    if parent != expected_parent {
        return Err(io::Error::other(format!(
            "parent {expected_parent} is gone (now {parent})"
        )));
    }
    Ok(())
}

/// How long an idle TCP connection to a remote worker or pool waits
/// before its first keepalive probe, how far apart the probes are, and how
/// many go unanswered before the connection fails: a silent partition is
/// found within about five seconds.
pub(crate) const KEEPALIVE: (Duration, Duration, u32) =
    (Duration::from_secs(2), Duration::from_secs(1), 3);

/// Turns on TCP keepalive with [`KEEPALIVE`]'s timing, so that a peer
/// behind a partition is noticed while nothing is being sent (a peer that
/// is merely busy or stopped still has its kernel answer the probes).
/// Does nothing (successfully) for a Unix socket.
pub(crate) fn keep_alive(fd: impl AsFd) -> io::Result<()> {
    use rustix::net::sockopt;
    let fd = fd.as_fd();
    if !matches!(
        sockopt::socket_domain(fd)?,
        rustix::net::AddressFamily::INET | rustix::net::AddressFamily::INET6
    ) {
        return Ok(());
    }
    let (idle, interval, probes) = KEEPALIVE;
    sockopt::set_socket_keepalive(fd, true)?;
    sockopt::set_tcp_keepidle(fd, idle)?;
    sockopt::set_tcp_keepintvl(fd, interval)?;
    sockopt::set_tcp_keepcnt(fd, probes)?;
    Ok(())
}

/// Waits, as long as it takes, until socket `fd` is readable (a message,
/// its peer gone, an error) or `wake` is; returns whether `fd` is, and
/// whether `wake` is (neither after a signal).
pub(crate) fn readable_or_woken(fd: impl AsFd, wake: impl AsFd) -> io::Result<(bool, bool)> {
    let ended = rustix::event::PollFlags::IN
        | rustix::event::PollFlags::RDHUP
        | rustix::event::PollFlags::HUP
        | rustix::event::PollFlags::ERR;
    poll_with_wake(fd, rustix::event::PollFlags::IN, ended, wake)
}

/// Waits, as long as it takes, until the peer of socket `fd` hangs up
/// or the connection fails or `wake` is readable; returns whether `fd`
/// ended. Data waiting to be read does not count (and is left alone):
/// this watches a connection that another thread reads.
pub(crate) fn hung_up_or_woken(fd: impl AsFd, wake: impl AsFd) -> io::Result<bool> {
    use rustix::event::PollFlags;
    let ended = PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR;
    poll_with_wake(fd, PollFlags::RDHUP, ended, wake).map(|(ended, _)| ended)
}

/// Polls `fd` for `events` and `wake` for input without a timeout; returns
/// whether `fd` reported any of `seen`, and whether `wake` is readable.
/// A signal ends the wait early, reporting neither.
fn poll_with_wake(
    fd: impl AsFd,
    events: rustix::event::PollFlags,
    seen: rustix::event::PollFlags,
    wake: impl AsFd,
) -> io::Result<(bool, bool)> {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(&fd, events), PollFd::new(&wake, PollFlags::IN)];
    match poll(&mut fds, None) {
        Ok(_) => {}
        Err(rustix::io::Errno::INTR) => return Ok((false, false)),
        Err(err) => return Err(err.into()),
    }
    Ok((
        fds[0].revents().intersects(seen),
        !fds[1].revents().is_empty(),
    ))
}

/// The error pending on socket `fd` (`SO_ERROR`), such as the
/// `ETIMEDOUT` left by unanswered keepalive probes; reading it clears it.
pub(crate) fn connection_error(fd: impl AsFd) -> Option<io::Error> {
    match rustix::net::sockopt::socket_error(fd.as_fd()) {
        Ok(Err(errno)) => Some(errno.into()),
        _ => None,
    }
}

/// The name of a signal number, for messages ("SIGKILL").
pub(crate) fn signal_name(signal: i32) -> &'static str {
    signal_hook::low_level::signal_name(signal).unwrap_or("unknown signal")
}

/// A `u64` in a page of memory shared between a parent and one child.
///
/// The worker stores how many task items it has started before it starts
/// each one, so that when it dies the parent knows which item was running
/// without the worker ever having to send a message per item.
pub(crate) struct SharedCounter {
    ptr: NonNull<AtomicU64>,
    fd: OwnedFd,
}

// SAFETY: the mapping is only accessed through the AtomicU64, which is
// Sync; the pointer stays valid until drop unmaps it.
unsafe impl Send for SharedCounter {}
// SAFETY: as above: all access is atomic.
unsafe impl Sync for SharedCounter {}

const PAGE: usize = 4096;

impl SharedCounter {
    /// A fresh counter at zero, backed by an anonymous memory file sealed
    /// at one page.
    ///
    /// The child gets a descriptor of the file, so it could resize it: a
    /// page shrunk under the parent's mapping would turn the parent's next
    /// look at the counter into `SIGBUS`. Sealed against shrinking and
    /// growing, and against further seals, the page stays whole whatever
    /// the child does; what it can still do (write any number there, punch
    /// the page out, which then reads as zero) only misleads the parent
    /// about which input it was running.
    pub(crate) fn create() -> io::Result<SharedCounter> {
        // Close-on-exec keeps it from leaking into unrelated children; the
        // worker it is meant for inherits it explicitly.
        let fd = memfd_create(
            "pool-progress",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )?;
        // A fresh memfd reads as zeros.
        ftruncate(&fd, PAGE as u64)?;
        fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        SharedCounter::map(fd)
    }

    /// Maps a counter whose descriptor a parent passed down.
    pub(crate) fn from_fd(fd: OwnedFd) -> io::Result<SharedCounter> {
        if (fstat(&fd)?.st_size as u64) < PAGE as u64 {
            return Err(io::Error::other("progress descriptor is not a shared page"));
        }
        SharedCounter::map(fd)
    }

    fn map(fd: OwnedFd) -> io::Result<SharedCounter> {
        use rustix::mm::{mmap, MapFlags, ProtFlags};
        // SAFETY: maps PAGE bytes of a file that is at least PAGE long,
        // shared, at an address the kernel picks, so no existing memory is
        // replaced; the mapping is only ever accessed as one AtomicU64.
        let addr = unsafe {
            mmap(
                std::ptr::null_mut(),
                PAGE,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED,
                &fd,
                0,
            )?
        };
        let ptr = NonNull::new(addr.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(SharedCounter { ptr, fd })
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

    /// The memory file behind the counter, to hand to the child.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }
}

impl Drop for SharedCounter {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the page mapped in `map`; no reference to
        // it outlives self.
        let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), PAGE) };
    }
}

/// Prepares `command` so that its child is killed when the spawning thread
/// dies, has the soft descriptor limit this process had before a pool
/// raised it, and ignores SIGINT from its first instruction on: a Ctrl-C
/// to the process group while a worker starts must not kill it before it
/// could say so. (The disposition survives exec, so the worker keeps
/// ignoring it.)
pub(crate) fn prepare_worker_command(command: &mut Command) {
    // SAFETY: the hook runs between fork and exec, where only
    // async-signal-safe calls are allowed: prctl, getrlimit and setrlimit
    // (system calls through rustix), an atomic load, and signal (a
    // sigaction wrapper) are, and nothing here allocates or locks.
    unsafe {
        command.pre_exec(|| {
            set_parent_process_death_signal(Some(Signal::KILL))?;
            super::restore_descriptor_limit_in_child()?;
            if libc::signal(libc::SIGINT, libc::SIG_IGN) == libc::SIG_ERR {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes `$hook` (a `fn()`) run before `main`, and defines
/// `keep_before_main_hook()` beside it, which code every pool runs must
/// call so that the hook is linked.
///
/// The start-up code (glibc's, for the executable and every shared object)
/// calls each function in `.init_array` before `main`: the entries with a
/// priority first (std's capture of the program's arguments is one, so
/// `std::env::args` works there), then the plain ones like this, in link
/// order. It is how a re-executed worker becomes one before `main`. A
/// macro, so that the platform's mechanism stays here while the hook and
/// its static live with the code they start.
macro_rules! run_before_main {
    ($hook:path) => {
        #[used]
        // Expanded outside `sys`, where this module's exception to the
        // crate's `deny(unsafe_code)` must follow the code it wrote.
        #[allow(unsafe_code)]
        #[link_section = ".init_array"]
        static BEFORE_MAIN: extern "C" fn() = {
            extern "C" fn pool_before_main() {
                $hook()
            }
            pool_before_main
        };

        /// Refers to the start-up hook, so that the linker keeps the
        /// object file that holds it: a linker takes from a library only
        /// the object files something refers to, and a `#[used]` static
        /// alone is kept only if its object file is. (Today's rustc also
        /// names libraries' `#[used]` statics in a synthetic object of its
        /// own; this does not rely on it.)
        pub(crate) fn keep_before_main_hook() {
            std::hint::black_box(&BEFORE_MAIN);
        }
    };
}
pub(crate) use run_before_main;

/// Ignores SIGPIPE, as Rust's runtime does before `main`: writing to a
/// closed pipe is then an error (`EPIPE`), not the end of the process.
pub(crate) fn ignore_sigpipe() {
    // SAFETY: installs the predefined `SIG_IGN` disposition, no handler
    // code; the only effect is on how this process receives SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The last signal [`catch_default_signals`] caught; 0 for none.
static CAUGHT_SIGNAL: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
/// How many holders of [`CaughtSignals`] there are, and the dispositions
/// the first replaced.
static CATCHING: std::sync::Mutex<(usize, Vec<(i32, libc::sigaction)>)> =
    std::sync::Mutex::new((0, Vec::new()));

extern "C" fn note_signal(signal: libc::c_int) {
    // An atomic store is async-signal-safe.
    CAUGHT_SIGNAL.store(signal, Ordering::Relaxed);
}

/// While held, the signals given that were at their default action are
/// caught instead (noted for [`CaughtSignals::caught`]); dropping the last
/// holder restores exactly what was there. A signal ignored or handled by
/// someone else is left alone.
pub(crate) struct CaughtSignals(());

/// Starts catching `signals` that are at their default action.
pub(crate) fn catch_default_signals(signals: &[i32]) -> CaughtSignals {
    let mut catching = CATCHING.lock().unwrap_or_else(|p| p.into_inner());
    catching.0 += 1;
    if catching.0 == 1 {
        CAUGHT_SIGNAL.store(0, Ordering::Relaxed);
        for &signal in signals {
            if let Some(previous) = replace_default(signal) {
                catching.1.push((signal, previous));
            }
        }
    }
    CaughtSignals(())
}

/// Installs `note_signal` for `signal` if its action is the default; the
/// action it replaced.
fn replace_default(signal: i32) -> Option<libc::sigaction> {
    let current = current_action(signal)?;
    if current.sa_sigaction != libc::SIG_DFL {
        return None;
    }
    let mut ours = current;
    ours.sa_sigaction = note_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    ours.sa_flags = libc::SA_RESTART;
    // SAFETY: `ours` is a valid sigaction (a copy of the current one, its
    // mask kept) whose handler only stores into an atomic, which is
    // async-signal-safe; the old action is not asked for.
    let installed = unsafe { libc::sigaction(signal, &ours, std::ptr::null_mut()) };
    (installed == 0).then_some(current)
}

impl CaughtSignals {
    /// The signal caught since catching began, if one was.
    pub(crate) fn caught(&self) -> Option<i32> {
        match CAUGHT_SIGNAL.load(Ordering::Relaxed) {
            0 => None,
            signal => Some(signal),
        }
    }
}

impl Drop for CaughtSignals {
    fn drop(&mut self) {
        let mut catching = CATCHING.lock().unwrap_or_else(|p| p.into_inner());
        catching.0 -= 1;
        if catching.0 == 0 {
            for (signal, previous) in catching.1.drain(..) {
                // SAFETY: puts back the action read from the kernel before
                // ours replaced it.
                unsafe { libc::sigaction(signal, &previous, std::ptr::null_mut()) };
            }
        }
    }
}

/// `signal`'s current action, if the kernel says.
fn current_action(signal: i32) -> Option<libc::sigaction> {
    let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: with a null new action, sigaction only writes the current
    // one into `current`, a valid, writable sigaction; nothing changes.
    let read = unsafe { libc::sigaction(signal, std::ptr::null(), current.as_mut_ptr()) };
    if read != 0 {
        return None;
    }
    // SAFETY: sigaction succeeded, so it wrote the whole struct (and it
    // was zeroed before, a valid bit pattern for every field).
    Some(unsafe { current.assume_init() })
}

/// Whether this process runs in secure-execution mode (`AT_SECURE`): it
/// was started set-user-ID or set-group-ID, or with file capabilities,
/// so whoever set its environment may have fewer privileges than it.
pub(crate) fn secure_execution() -> bool {
    // SAFETY: `getauxval` only reads the auxiliary vector, which the C
    // library saved before any code of ours ran; an entry that is absent
    // reads as 0.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Removes `vars` from this process's environment, if that is sound now:
/// only while the process has one thread, since code of other threads
/// (C libraries' `getenv` among them, which Rust's lock does not cover)
/// could read the environment while it changes. Returns whether it did.
pub(crate) fn remove_env_while_single_threaded(vars: &[&str]) -> bool {
    // Only this thread could start another, so a count of one stays true
    // until this returns. Without /proc the count is unknown: not sound.
    let threads = std::fs::read_dir("/proc/self/task").map(Iterator::count);
    if threads.ok() != Some(1) {
        return false;
    }
    for var in vars {
        std::env::remove_var(var);
    }
    true
}

/// This host's name, as other hosts of a cluster usually know it (the
/// kernel's node name, what `hostname` prints).
pub(crate) fn host_name() -> io::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    Ok(name.trim().to_string())
}

/// Starts writing `file`'s dirty pages to disk without waiting for them
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` over the whole file), so that
/// a later `fdatasync` finds them written or on their way: the disk works
/// while the caller does. Only a hint: its failure loses nothing, the
/// `fdatasync` that follows reports what matters.
pub(crate) fn start_writeback(file: impl AsFd) -> io::Result<()> {
    // SAFETY: sync_file_range takes plain integers and a descriptor that
    // `file` keeps open for the call; it touches no memory of ours.
    let done = unsafe {
        libc::sync_file_range(file.as_fd().as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
    };
    match done {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_counter_is_shared_between_mappings() {
        let counter = SharedCounter::create().unwrap();
        let dup = counter.fd().try_clone().unwrap();
        let other = SharedCounter::from_fd(dup).unwrap();
        counter.store(41);
        assert_eq!(other.load(), 41);
        other.store(42);
        assert_eq!(counter.load(), 42);
    }

    /// What a child given the descriptor may try: the page can be neither
    /// resized nor sealed further, and the counter reads on.
    #[test]
    fn the_progress_page_cannot_be_resized_or_sealed_by_its_child() {
        let counter = SharedCounter::create().unwrap();
        let fd = counter.fd();
        assert_eq!(ftruncate(fd, 0), Err(rustix::io::Errno::PERM));
        assert_eq!(ftruncate(fd, 2 * PAGE as u64), Err(rustix::io::Errno::PERM));
        let seal = fcntl_add_seals(fd, SealFlags::WRITE);
        assert_eq!(seal, Err(rustix::io::Errno::PERM));
        counter.store(7);
        assert_eq!(counter.load(), 7);
    }

    #[test]
    fn a_file_that_is_not_a_page_is_refused() {
        let file = std::fs::File::open("/dev/null").unwrap();
        assert!(SharedCounter::from_fd(file.into()).is_err());
    }

    #[test]
    fn a_hang_up_is_seen_but_data_is_not() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (wake, woken) = std::os::unix::net::UnixStream::pair().unwrap();
        std::io::Write::write_all(&mut &a, b"data").unwrap();
        std::io::Write::write_all(&mut &wake, b"!").unwrap();
        // Data waiting does not end the wait; the wake does.
        assert!(!hung_up_or_woken(&b, &woken).unwrap());
        drop(a);
        assert!(hung_up_or_woken(&b, &woken).unwrap());
    }

    #[test]
    fn a_wait_for_data_ends_with_data_or_a_wake() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let (wake, woken) = std::os::unix::net::UnixStream::pair().unwrap();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            std::io::Write::write_all(&mut &wake, b"!").unwrap();
            wake
        });
        assert_eq!(readable_or_woken(&b, &woken).unwrap(), (false, true));
        let _wake = waker.join().unwrap();
        std::io::Write::write_all(&mut &a, b"data").unwrap();
        std::io::Read::read_exact(&mut &woken, &mut [0]).unwrap();
        assert_eq!(readable_or_woken(&b, &woken).unwrap(), (true, false));
    }

    #[test]
    fn keep_alive_applies_to_tcp_and_leaves_unix_sockets_alone() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        keep_alive(&tcp).unwrap();
        assert!(rustix::net::sockopt::socket_keepalive(&tcp).unwrap());
        let (unix, _other) = std::os::unix::net::UnixStream::pair().unwrap();
        keep_alive(&unix).unwrap();
    }

    #[test]
    fn signals_at_their_default_are_caught_while_held_and_restored_after() {
        ignore_sigpipe();
        let caught = catch_default_signals(&[libc::SIGUSR2, libc::SIGPIPE]);
        assert_eq!(caught.caught(), None);
        let me = rustix::process::getpid();
        rustix::process::kill_process(me, Signal::USR2).unwrap();
        assert!((0..1000).any(|_| {
            std::thread::sleep(Duration::from_millis(1));
            caught.caught() == Some(libc::SIGUSR2)
        }));
        let ignored = current_action(libc::SIGPIPE).unwrap().sa_sigaction;
        assert_eq!(ignored, libc::SIG_IGN, "an ignored signal stays ignored");
        drop(caught);
        let restored = current_action(libc::SIGUSR2).unwrap().sa_sigaction;
        assert_eq!(restored, libc::SIG_DFL, "the default action is back");
    }

    #[test]
    fn signal_names() {
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(libc::SIGSEGV), "SIGSEGV");
        assert_eq!(signal_name(1000), "unknown signal");
    }
}
