//! SIGINT and SIGTERM while `build` waits for a Slurm job to start: by
//! default either ends the process at once, which would leave the job
//! pending in the queue with no one to cancel it. While the wait lasts,
//! they are caught instead; the waiter cancels the job, then ends the
//! process as the signal would have.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::SigId;

use super::super::interrupt;
use crate::sys;

/// The signals caught during one wait, until it is dropped.
pub(crate) struct WaitSignals {
    arrived: Arc<AtomicUsize>,
    ids: Vec<SigId>,
}

impl WaitSignals {
    /// Catches SIGINT and SIGTERM, except one the process ignores (a
    /// background job's SIGINT stays ignored).
    pub(crate) fn catch() -> WaitSignals {
        let arrived = Arc::new(AtomicUsize::new(0));
        let mut ids = Vec::new();
        for signal in [SIGINT, SIGTERM] {
            if sys::signal_ignored(signal) {
                continue;
            }
            match signal_hook::flag::register_usize(signal, Arc::clone(&arrived), signal as usize) {
                Ok(id) => ids.push(id),
                Err(err) => tracing::warn!(
                    %err,
                    signal = sys::signal_name(signal),
                    "cannot catch the signal while waiting for Slurm: it would leave the job queued"
                ),
            }
        }
        interrupt::build_waiting(true);
        WaitSignals { arrived, ids }
    }

    /// The signal that arrived, if one did.
    pub(crate) fn arrived(&self) -> Option<i32> {
        match self.arrived.load(Ordering::Relaxed) {
            0 => None,
            signal => i32::try_from(signal).ok(),
        }
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
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
        interrupt::build_waiting(false);
    }
}
