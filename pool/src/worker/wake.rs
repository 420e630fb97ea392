//! Waking a remote worker's sleeping threads without timers: a leave
//! signal (Slurm's warning before a job's time limit, `scancel`) sets a
//! flag and writes to a socket pair that the waiting worker loop polls
//! with its connection ([`Leave`]), and the watcher thread is stopped the
//! same way ([`Wake`]). Both used to look on a timer (every 100 ms and
//! 50 ms): 3,000 idle remote workers on one 2-core machine then spent
//! most of it waking up to find nothing.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGTERM, SIGUSR1, SIGUSR2};

/// A socket pair: one thread [`wake`](Wake::wake)s another that polls
/// [`readable`](Wake::readable).
pub(crate) struct Wake {
    readable: UnixStream,
    writable: UnixStream,
}

impl Wake {
    pub(crate) fn new() -> std::io::Result<Wake> {
        let (readable, writable) = UnixStream::pair()?;
        readable.set_nonblocking(true)?;
        writable.set_nonblocking(true)?;
        Ok(Wake { readable, writable })
    }

    /// The end to poll: readable once woken, until [`drain`](Wake::drain)ed.
    pub(crate) fn readable(&self) -> &UnixStream {
        &self.readable
    }

    /// Wakes the poller; a wake already pending (a full socket) is enough.
    pub(crate) fn wake(&self) {
        let _ = (&self.writable).write(&[1]);
    }

    /// Takes back the wakes pending.
    pub(crate) fn drain(&self) {
        let mut sink = [0u8; 64];
        while matches!((&self.readable).read(&mut sink), Ok(n) if n > 0) {}
    }
}

/// The signals that tell a remote worker to leave: SIGTERM, which Slurm
/// sends at a job's time limit (and `scancel`), and the two a job's
/// `--signal` is most often set to.
const LEAVE_SIGNALS: [i32; 3] = [SIGTERM, SIGUSR1, SIGUSR2];

/// Whether a leave signal came, and a [`Wake`] each one writes to.
pub(crate) struct Leave {
    flag: Arc<AtomicBool>,
    wake: Wake,
}

impl Leave {
    /// Handles the leave signals instead of ending the process (a second
    /// SIGTERM still ends it); `None` if the handlers cannot be installed,
    /// which leaves the signals' default, ending the process.
    pub(crate) fn on_signals() -> Option<Leave> {
        let leave = Leave {
            flag: Arc::new(AtomicBool::new(false)),
            wake: Wake::new().ok()?,
        };
        let installed = signal_hook::flag::register_conditional_shutdown(
            SIGTERM,
            128 + SIGTERM,
            Arc::clone(&leave.flag),
        )
        .and_then(|_| {
            LEAVE_SIGNALS.iter().try_for_each(|&signal| {
                signal_hook::flag::register(signal, Arc::clone(&leave.flag))?;
                let writer = leave.wake.writable.try_clone()?;
                signal_hook::low_level::pipe::register(signal, writer).map(drop)
            })
        });
        match installed {
            Ok(()) => Some(leave),
            Err(err) => {
                tracing::warn!(%err, "cannot handle SIGTERM; a time limit will end this worker mid-task");
                None
            }
        }
    }

    pub(crate) fn is_set(&self) -> bool {
        self.flag.load(Ordering::Relaxed)
    }

    /// Readable once a leave signal came.
    pub(crate) fn wake(&self) -> &Wake {
        &self.wake
    }
}
