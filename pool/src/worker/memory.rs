//! The memory limits a worker applies to itself, as its setup message
//! carries them: the hard limit is handed to the kernel (`RLIMIT_DATA`),
//! the soft budget is checked after every input.
//!
//! Why the worker and not the pool measures: a remote worker's pool cannot
//! see its memory, and a check between inputs, in the process that runs
//! them, is exact about which input crossed the budget.

use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, ResidentGauge};
use crate::wire::{MemoryLimits, MIN_HARD_MEMORY};

/// How often, at most, a worker reads its resident size between inputs.
/// A reading costs a system call (about 2 µs on the VM measured, 5x a tiny
/// task); at most one per this much work costs under 2%. Memory grows
/// only as fast as pages fault in, so the inputs that ran in this time
/// without a check could add at most a few MiB (a 2 MiB huge page, or a
/// few hundred small ones): a worker stays under the budget plus its last
/// input's growth plus that.
const CHECK_EVERY: Duration = Duration::from_micros(100);

/// The soft budget, with the gauge that reads resident memory.
pub(super) struct Budget {
    gauge: ResidentGauge,
    bytes: u64,
    /// When resident memory was last read.
    checked: Instant,
}

impl Budget {
    /// Resident bytes, if they are over the budget `now`; `None` too if
    /// they were read less than [`CHECK_EVERY`] before.
    pub(super) fn crossed(&mut self, now: Instant) -> Option<u64> {
        if now.saturating_duration_since(self.checked) < CHECK_EVERY {
            return None;
        }
        // A gauge that cannot be read (it never fails on Linux) keeps the
        // worker on rather than retiring it for nothing.
        let resident = self.gauge.resident_bytes().ok()?;
        self.checked = now;
        (resident > self.bytes).then_some(resident)
    }
}

/// Sets the hard limit, if any, and opens the gauge for the budget, if
/// any. Fails (and the worker with it, before it says ready) if either
/// cannot be had, rather than running without a limit the pool asked for.
pub(super) fn apply(limits: MemoryLimits) -> Result<Option<Budget>> {
    if let Some(hard) = limits.hard {
        if hard < MIN_HARD_MEMORY {
            return Err(Error::new(
                ErrorKind::Startup,
                format!(
                    "the pool asked for a hard memory limit of {hard} bytes, below the \
                     {MIN_HARD_MEMORY} a worker needs to run; this worker leaves the pool"
                ),
            ));
        }
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
            Ok(Budget {
                gauge,
                bytes,
                // The first input is checked however short it is.
                checked: Instant::now()
                    .checked_sub(CHECK_EVERY)
                    .unwrap_or_else(Instant::now),
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hard_limit_too_small_to_run_in_is_refused_not_applied() {
        // Applied, it would make this test process abort at its next
        // allocation.
        let tiny = MemoryLimits {
            budget: None,
            hard: Some(4096),
        };
        let err = apply(tiny).err().expect("a 4 KiB hard limit was accepted");
        assert_eq!(err.kind(), ErrorKind::Startup);
        assert!(err.to_string().contains("4096 bytes"), "{err}");
        let err = crate::Pool::builder()
            .hard_worker_memory(4096)
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Startup, "{err}");
    }

    #[test]
    fn a_budget_is_crossed_when_resident_memory_is_over_it() {
        let limits = |bytes| MemoryLimits {
            budget: Some(bytes),
            hard: None,
        };
        let mut low = apply(limits(1)).unwrap().unwrap();
        let mut high = apply(limits(u64::MAX)).unwrap().unwrap();
        let now = Instant::now();
        assert!(low.crossed(now).is_some_and(|resident| resident > 1));
        assert_eq!(high.crossed(now), None);
        // Read again only once CHECK_EVERY has passed.
        assert_eq!(low.crossed(now + CHECK_EVERY / 2), None);
        assert!(low.crossed(now + CHECK_EVERY).is_some());
    }
}
