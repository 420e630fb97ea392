//! [`ReadySet`] where there is no epoll: a `poll(2)` over every member on
//! each wait, which is linear in the number of members but needs nothing
//! beyond POSIX. There is no descriptor standing for the whole set, so
//! [`fd`](ReadySet::fd) is `None` and the alarm is only remembered.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};

use super::{wait_timeout, Interest, Ready};

#[derive(Debug)]
struct Member {
    fd: RawFd,
    token: u64,
    interest: Interest,
}

/// Members by descriptor number. Unlike epoll, poll cannot notice that a
/// descriptor was closed and its number reused, so every member must be
/// [removed](Self::remove) before its descriptor is closed.
#[derive(Debug, Default)]
pub(crate) struct ReadySet {
    members: Vec<Member>,
    /// Where each token's member is in `members`.
    index: HashMap<u64, usize>,
}

impl ReadySet {
    /// An empty set.
    pub(crate) fn new() -> io::Result<ReadySet> {
        Ok(ReadySet::default())
    }

    /// Adds `fd` under `token`.
    pub(crate) fn add(
        &mut self,
        fd: BorrowedFd<'_>,
        token: u64,
        interest: Interest,
    ) -> io::Result<()> {
        if self.index.contains_key(&token) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        self.index.insert(token, self.members.len());
        let fd = fd.as_raw_fd();
        self.members.push(Member {
            fd,
            token,
            interest,
        });
        Ok(())
    }

    /// Changes what a member added before is watched for.
    pub(crate) fn watch(
        &mut self,
        _fd: BorrowedFd<'_>,
        token: u64,
        interest: Interest,
    ) -> io::Result<()> {
        let at = *self.index.get(&token).ok_or(io::ErrorKind::NotFound)?;
        self.members[at].interest = interest;
        Ok(())
    }

    /// Removes a member; call it before closing the member's descriptor.
    pub(crate) fn remove(&mut self, _fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let at = self.index.remove(&token).ok_or(io::ErrorKind::NotFound)?;
        self.members.swap_remove(at);
        if let Some(moved) = self.members.get(at) {
            self.index.insert(moved.token, at);
        }
        Ok(())
    }

    /// Nothing to arm: without a descriptor for the set, nobody could see it.
    pub(crate) fn set_alarm(&mut self, _at: Option<Instant>) -> io::Result<()> {
        Ok(())
    }

    /// Waits until a member is ready or `timeout` passes (`None`: no
    /// limit) and appends the ready members to `ready`. A signal ends the
    /// wait with `ErrorKind::Interrupted`.
    pub(crate) fn wait(
        &mut self,
        ready: &mut Vec<Ready>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let timeout = wait_timeout(timeout);
        let mut fds: Vec<PollFd<'_>> = self
            .members
            .iter()
            .map(|member| {
                let flags = match member.interest {
                    Interest::Nothing => PollFlags::empty(),
                    Interest::Readable => PollFlags::IN,
                    Interest::Writable => PollFlags::OUT,
                };
                // SAFETY: a member's descriptor stays open until it is
                // removed (the contract of `add`), and `fds` lives only
                // for this call, while `self` is borrowed.
                let fd = unsafe { BorrowedFd::borrow_raw(member.fd) };
                PollFd::from_borrowed_fd(fd, flags)
            })
            .collect();
        if rustix::event::poll(&mut fds, Some(&timeout))? == 0 {
            return Ok(());
        }
        let found = fds
            .iter()
            .zip(&self.members)
            .filter(|(fd, _)| !fd.revents().is_empty());
        ready.extend(found.map(|(_, member)| Ready {
            token: member.token,
        }));
        Ok(())
    }

    /// There is no descriptor that stands for the whole set.
    pub(crate) fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
}
