//! The memory limits a worker applies to itself, as its setup message
//! carries them: the hard limit is handed to the kernel (`RLIMIT_DATA`),
//! the soft budget is checked after every input.
//!
//! Why the worker and not the pool measures: a remote worker's pool cannot
//! see its memory, and a check between inputs, in the process that runs
//! them, is exact about which input crossed the budget.

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, ResidentGauge};
use crate::wire::MemoryLimits;

/// The soft budget, with the gauge that reads resident memory.
pub(super) struct Budget {
    gauge: ResidentGauge,
    bytes: u64,
}

impl Budget {
    /// Resident bytes, if they are over the budget now.
    pub(super) fn crossed(&self) -> Option<u64> {
        // A gauge that cannot be read (it never fails on Linux) keeps the
        // worker on rather than retiring it for nothing.
        let resident = self.gauge.resident_bytes().ok()?;
        (resident > self.bytes).then_some(resident)
    }
}

/// Sets the hard limit, if any, and opens the gauge for the budget, if
/// any. Fails (and the worker with it, before it says ready) if either
/// cannot be had, rather than running without a limit the pool asked for.
pub(super) fn apply(limits: MemoryLimits) -> Result<Option<Budget>> {
    if let Some(hard) = limits.hard {
        sys::limit_data(hard).map_err(|err| {
            Error::new(
                ErrorKind::Startup,
                format!("cannot limit this worker's data to {hard} bytes (RLIMIT_DATA)"),
            )
            .with_source(err)
        })?;
    }
    limits
        .budget
        .map(|bytes| {
            let gauge = ResidentGauge::open().map_err(|err| {
                Error::new(
                    ErrorKind::Startup,
                    "cannot open /proc/self/statm to watch this worker's memory budget",
                )
                .with_source(err)
            })?;
            Ok(Budget { gauge, bytes })
        })
        .transpose()
}
