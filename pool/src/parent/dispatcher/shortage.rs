//! When the process runs short of descriptors (or memory, or processes)
//! while starting a worker: that passes once something lets go, so the
//! dispatcher tries again later, backing off, rather than giving up on
//! the pool.

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::sys;

/// The first wait before trying again, doubled after each failure...
const FIRST_DELAY: Duration = Duration::from_millis(10);
/// ...up to this.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Whether `err`, or an error it was caused by, is the process or the
/// system running short of something that comes back (see
/// [`sys::is_out_of_resources`]).
pub(super) fn is_shortage(err: &Error) -> bool {
    let err: &(dyn std::error::Error + 'static) = err;
    std::iter::successors(Some(err), |err| err.source()).any(|err| {
        err.downcast_ref::<std::io::Error>()
            .is_some_and(sys::is_out_of_resources)
    })
}

/// The backoff after a shortage; empty while there is none.
#[derive(Default)]
pub(super) struct Shortage {
    /// When to try again; `None` while nothing failed.
    retry_at: Option<Instant>,
    delay: Duration,
    /// Failures in a row.
    failures: u32,
    /// Failures ever, which [`passed`](Self::passed) leaves alone: tells
    /// a round of attempts whether any of it failed.
    ever: u64,
}

/// Where a round of attempts began (see [`Shortage::end_round`]).
#[derive(Clone, Copy)]
pub(super) struct RoundStart(u64);

impl Shortage {
    /// Whether to hold off starting workers until [`retry_at`](Self::retry_at).
    pub(super) fn holds_off(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| now < at)
    }

    /// When the dispatcher must wake up to try again, if it waits to.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// Counts a failure for lack of resources to `what`, and sets when to
    /// try again. The first of a run is a warning; the rest are quiet.
    pub(super) fn failed(&mut self, what: &str, err: &Error) {
        self.delay = if self.failures == 0 {
            FIRST_DELAY
        } else {
            (self.delay * 2).min(MAX_DELAY)
        };
        self.failures += 1;
        self.ever += 1;
        self.retry_at = Some(Instant::now() + self.delay);
        if self.failures == 1 {
            tracing::warn!(err = %format!("{err:#}"), "cannot {what} for now; trying again, backing off up to {MAX_DELAY:?}");
        } else {
            tracing::debug!(err = %format!("{err:#}"), failures = self.failures, "cannot {what} yet");
        }
    }

    /// Something that needed resources worked: the shortage is over.
    pub(super) fn passed(&mut self) {
        if self.failures > 0 {
            tracing::info!(
                failures = self.failures,
                "the shortage of resources passed: workers start again"
            );
        }
        *self = Shortage {
            ever: self.ever,
            ..Shortage::default()
        };
    }

    /// Begins a round of attempts to start or adopt workers.
    pub(super) fn begin_round(&self) -> RoundStart {
        RoundStart(self.ever)
    }

    /// Ends the round begun at `start`: if nothing in it failed, the
    /// shortage is over, and the dispatcher need not wake up for it.
    /// Failures are counted, not guessed from the clock: a round that took
    /// longer than the wait its failure set (a busy machine stops threads
    /// for that long) would otherwise end the shortage, and with it the
    /// wake-up that tries again, leaving a dead worker unreplaced until
    /// some other event came.
    pub(super) fn end_round(&mut self, start: RoundStart) {
        if self.ever == start.0 {
            self.passed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    fn emfile() -> Error {
        let cause = connection::Error::new(connection::ErrorKind::Io, "socketpair")
            .with_source(std::io::Error::from_raw_os_error(libc::EMFILE));
        Error::from_connection(cause, "create a connection").with_kind(ErrorKind::Startup)
    }

    #[test]
    fn a_shortage_is_found_down_the_chain_of_causes() {
        assert!(is_shortage(&emfile()));
        let missing = Error::new(ErrorKind::Startup, "cannot start worker program")
            .with_source(std::io::Error::from_raw_os_error(libc::ENOENT));
        assert!(!is_shortage(&missing));
    }

    #[test]
    fn the_wait_doubles_up_to_a_second_and_ends_when_the_shortage_passes() {
        let mut shortage = Shortage::default();
        assert!(shortage.retry_at().is_none());
        let mut delays = Vec::new();
        for _ in 0..10 {
            shortage.failed("start a worker", &emfile());
            delays.push(shortage.delay);
            assert!(shortage.holds_off(Instant::now()));
        }
        assert_eq!(delays[..3], [FIRST_DELAY, FIRST_DELAY * 2, FIRST_DELAY * 4]);
        assert_eq!(delays[9], MAX_DELAY);
        shortage.passed();
        assert!(shortage.retry_at().is_none());
        assert!(!shortage.holds_off(Instant::now()));
    }

    #[test]
    fn a_round_that_failed_keeps_the_retry_however_long_it_took() {
        let mut shortage = Shortage::default();
        let round = shortage.begin_round();
        shortage.failed("start a worker", &emfile());
        // The rest of the round outlasts the wait it set (a busy machine
        // can stop the dispatcher's thread for that long).
        std::thread::sleep(FIRST_DELAY * 3);
        shortage.end_round(round);
        assert!(
            shortage.retry_at().is_some(),
            "a failed round ended the shortage: nothing would try again"
        );
        // A round in which nothing failed ends it.
        let round = shortage.begin_round();
        shortage.end_round(round);
        assert!(shortage.retry_at().is_none());
    }
}
