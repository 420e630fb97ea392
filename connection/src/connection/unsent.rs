//! [`UnsentMessage`]: what a send that never waits left for later.

use std::os::fd::OwnedFd;

/// The part of a message that [`Connection::try_send_bytes`](crate::Connection::try_send_bytes) could not
/// write without waiting: send it with [`Connection::send_unsent`](crate::Connection::send_unsent) before
/// anything else. It owns a copy of those bytes, so it can travel to
/// another thread.
#[must_use = "the stream holds a partial message until the rest is sent"]
#[derive(Debug)]
pub struct UnsentMessage {
    pub(super) rest: Vec<u8>,
    /// How much of `rest` went out since (by `try_send_unsent`).
    pub(super) sent: usize,
    pub(super) message_len: usize,
    /// The memfd of a shared-memory message whose header (all of `rest`)
    /// did not start to go out: it goes with the header's first byte.
    pub(super) memfd: Option<OwnedFd>,
}

impl UnsentMessage {
    /// What of a `message_len`-byte message is left to send: the `rest` of
    /// its bytes, and the memfd of a shared-memory message that has not
    /// gone; `None` when nothing is.
    pub(crate) fn new(rest: Vec<u8>, message_len: usize, memfd: Option<OwnedFd>) -> Option<Self> {
        (!rest.is_empty()).then_some(UnsentMessage {
            rest,
            sent: 0,
            message_len,
            memfd,
        })
    }

    /// How many bytes (of header and payload) are still to be written.
    pub fn len(&self) -> usize {
        self.rest.len() - self.sent
    }

    /// Always false: a message that went out whole has no `UnsentMessage`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
