//! [`ReadySet`] on Linux: an epoll instance and a timerfd for the alarm.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::epoll;
use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
};

use super::{timespec, wait_timeout, Interest, Ready};

/// The alarm's token, which members may not use.
const ALARM: u64 = u64::MAX;

/// Members are watched level-triggered: a member stays ready until what
/// made it ready is consumed. Closing a member's descriptor ends its
/// registration (we never duplicate members), but [`remove`](Self::remove)
/// says so explicitly, as the `poll` fallback needs.
pub(crate) struct ReadySet {
    epoll: OwnedFd,
    alarm: OwnedFd,
}

/// Most events taken from one wait; the rest come with the next.
const EVENTS_PER_WAIT: usize = 256;

fn flags(interest: Interest) -> epoll::EventFlags {
    match interest {
        Interest::Nothing => epoll::EventFlags::empty(),
        Interest::Readable => epoll::EventFlags::IN,
        Interest::Writable => epoll::EventFlags::OUT,
    }
}

impl ReadySet {
    /// An empty set with its alarm off, close-on-exec.
    pub(crate) fn new() -> io::Result<ReadySet> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let alarm = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
        )?;
        epoll::add(
            &epoll,
            &alarm,
            epoll::EventData::new_u64(ALARM),
            epoll::EventFlags::IN,
        )?;
        Ok(ReadySet { epoll, alarm })
    }

    /// Adds `fd` under `token` (anything but `u64::MAX`).
    pub(crate) fn add(
        &mut self,
        fd: BorrowedFd<'_>,
        token: u64,
        interest: Interest,
    ) -> io::Result<()> {
        debug_assert_ne!(token, ALARM);
        let data = epoll::EventData::new_u64(token);
        Ok(epoll::add(&self.epoll, fd, data, flags(interest))?)
    }

    /// Changes what a member added before is watched for.
    pub(crate) fn watch(
        &mut self,
        fd: BorrowedFd<'_>,
        token: u64,
        interest: Interest,
    ) -> io::Result<()> {
        let data = epoll::EventData::new_u64(token);
        Ok(epoll::modify(&self.epoll, fd, data, flags(interest))?)
    }

    /// Removes a member; call it before closing the member's descriptor.
    pub(crate) fn remove(&mut self, fd: BorrowedFd<'_>, _token: u64) -> io::Result<()> {
        Ok(epoll::delete(&self.epoll, fd)?)
    }

    /// Makes [`fd`](Self::fd) readable from `at` on (at once if `at` has
    /// passed), or no longer for the alarm with `None`. Each call replaces
    /// the last, and ends the readiness of an alarm that went off.
    pub(crate) fn set_alarm(&mut self, at: Option<Instant>) -> io::Result<()> {
        let value = match at {
            None => timespec(Duration::ZERO),
            // An all-zero value would disarm it: at least a nanosecond.
            Some(at) => timespec(
                at.saturating_duration_since(Instant::now())
                    .max(Duration::from_nanos(1)),
            ),
        };
        let spec = Itimerspec {
            it_interval: timespec(Duration::ZERO),
            it_value: value,
        };
        timerfd_settime(&self.alarm, TimerfdTimerFlags::empty(), &spec)?;
        Ok(())
    }

    /// Waits until a member is ready or `timeout` passes (`None`: no
    /// limit) and appends the ready members to `ready`, which stays empty
    /// on timeout (or when only the alarm went off). A signal ends the wait
    /// with `ErrorKind::Interrupted`.
    pub(crate) fn wait(
        &mut self,
        ready: &mut Vec<Ready>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let timeout = wait_timeout(timeout);
        // On the stack, not in `self`: epoll's event type holds a pointer,
        // which would make the set (and the `Listener`) not `Send`.
        let mut buffer = [MaybeUninit::<epoll::Event>::uninit(); EVENTS_PER_WAIT];
        let (events, _) = epoll::wait(&self.epoll, &mut buffer, Some(&timeout))?;
        let members = events.iter().map(|event| event.data.u64());
        ready.extend(
            members
                .filter(|&token| token != ALARM)
                .map(|token| Ready { token }),
        );
        Ok(())
    }

    /// Readable while a member is ready or the alarm has gone off.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.epoll.as_fd())
    }
}
