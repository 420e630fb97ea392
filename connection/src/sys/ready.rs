//! [`ReadySet`]: many descriptors watched at once, each under a token.
//!
//! On Linux it is an epoll instance, whose own descriptor polls readable
//! while any member is ready, so that a caller who can watch one
//! descriptor ([`wait`](crate::wait())) watches them all; an alarm (a
//! timerfd in the set) makes it readable at a chosen time as well. Other
//! Unix systems get a `poll(2)` loop over the members instead, which has no
//! such descriptor: [`ReadySet::fd`] is then `None`. Both are compiled and
//! tested on Linux.

use std::time::Duration;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod epoll;
#[cfg(any(not(any(target_os = "linux", target_os = "android")), test))]
mod poll;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) use epoll::ReadySet;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) use poll::ReadySet;

/// What a member is watched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Interest {
    /// Nothing (errors and hang-ups may still be reported).
    Nothing,
    Readable,
    Writable,
}

/// A member that [`ReadySet::wait`] found ready: readable (data, end of
/// file or an error to collect) or writable, as its interest asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ready {
    pub(crate) token: u64,
}

/// The longest single wait: epoll on kernels before 5.11 refuses timeouts
/// over `c_int::MAX` milliseconds, so longer ones are waited in pieces.
const MAX_WAIT: Duration = Duration::from_secs(3600);

/// A wait's timeout (`None`: no limit), in pieces of at most [`MAX_WAIT`].
fn wait_timeout(timeout: Option<Duration>) -> rustix::event::Timespec {
    timespec(timeout.unwrap_or(MAX_WAIT).min(MAX_WAIT))
}

fn timespec(duration: Duration) -> rustix::event::Timespec {
    rustix::event::Timespec {
        tv_sec: duration.as_secs().try_into().unwrap_or(i64::MAX),
        tv_nsec: duration.subsec_nanos().into(),
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests;
