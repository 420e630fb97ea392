//! SIGINT and SIGTERM while `build` waits for a Slurm job to start: by
//! default either ends the process at once, which would leave the job
//! pending in the queue with no one to cancel it. While the wait lasts,
//! they are caught instead (only where they are at their default action:
//! an ignored signal stays ignored, a program's own handler stays its
//! own); the waiter cancels the job, then ends the process as the signal
//! would have. A SIGINT that the pools' Ctrl-C handler takes
//! (`interrupt.rs`, installed by an earlier pool) is passed on to the
//! waiter the same way.

use signal_hook::consts::{SIGINT, SIGTERM};

use super::super::interrupt;
use crate::sys::{self, CaughtSignals};

/// The signals caught during one wait, until it is dropped.
pub(crate) struct WaitSignals {
    caught: CaughtSignals,
}

impl WaitSignals {
    /// Catches SIGINT and SIGTERM where they are at their default action.
    pub(crate) fn catch() -> WaitSignals {
        interrupt::build_waiting(true);
        WaitSignals {
            caught: sys::catch_default_signals(&[SIGINT, SIGTERM]),
        }
    }

    /// The signal that arrived, if one did.
    pub(crate) fn arrived(&self) -> Option<i32> {
        self.caught
            .caught()
            .or_else(|| interrupt::build_interrupted().then_some(SIGINT))
    }

    /// Ends the process as `signal` does by default (SIGINT and SIGTERM
    /// both terminate it), once the caller has cleaned up.
    pub(crate) fn end_process(self, signal: i32) -> ! {
        drop(self);
        let _ = signal_hook::low_level::emulate_default_handler(signal);
        // Only if the signal could not end it: the shell's convention.
        std::process::exit(128 + signal)
    }
}

impl Drop for WaitSignals {
    fn drop(&mut self) {
        interrupt::build_waiting(false);
    }
}
