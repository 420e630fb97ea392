//! How far an [`AsyncConnection`](super::AsyncConnection)'s receive has
//! got: kept in the connection, not in a receive's future, so that a
//! receive whose future is dropped loses nothing and the next one resumes
//! (`receive.rs` drives it).

use crate::error::{Error, ErrorKind, Result};
use crate::nowait::Arriving;
use crate::proto::frame::{Between, MIN_CHUNK};
use crate::read_ahead::ReadAhead;

/// How far the message being received has got.
pub(super) struct ReceiveState {
    /// What arrived of the message: the receive that never waits, which
    /// `receive.rs` calls again each time the socket is readable (never a
    /// shared-memory header: an async end does not agree to them).
    pub(super) arriving: Arriving,
    /// The payload length once the whole header is in (it stays while a
    /// message over the limit waits unread), and the boundaries' state.
    pub(super) between: Between,
    /// A buffer for payloads that are decoded, not handed out, kept
    /// between receives.
    pub(super) scratch: Vec<u8>,
    /// What the blocking connection this was made from read ahead: read
    /// before the socket, and never added to (the runtime's readiness
    /// would not see it).
    pub(super) ahead: ReadAhead,
}

impl ReceiveState {
    /// Carries on from `between`, what `arriving` holds of a message
    /// begun (see [`Arriving::for_async`]) and what was read ahead.
    pub(super) fn new(
        between: Between,
        arriving: Option<Box<Arriving>>,
        mut ahead: ReadAhead,
    ) -> ReceiveState {
        ahead.set(false);
        ReceiveState {
            arriving: arriving.map_or_else(Arriving::default, |arriving| *arriving),
            between,
            scratch: Vec::new(),
            ahead,
        }
    }

    /// Sets out to read the pending `len`-byte payload, unless a dropped
    /// receive already did; into the scratch buffer with `scratch`.
    pub(super) fn expect_payload(&mut self, len: usize, scratch: bool) {
        if !self.arriving.has_payload() {
            let buf = match scratch {
                true => std::mem::take(&mut self.scratch),
                false => Vec::new(),
            };
            self.arriving.expect_payload(len, MIN_CHUNK, buf);
        }
    }

    /// What a payload's read ended with: a whole payload ends the message;
    /// an error is [`failed`](Self::failed)'s.
    pub(super) fn settle<T>(&mut self, read: Result<T>) -> Result<T> {
        let done = read.map_err(|err| self.failed(err))?;
        self.between.pending_len = None;
        Ok(done)
    }

    /// What a failed read leaves: an I/O error (or the end of the stream
    /// between messages) leaves everything as it was, for the next receive
    /// to carry on; any other error (truncated, malformed) loses the
    /// message boundaries.
    pub(super) fn failed(&mut self, err: Error) -> Error {
        if matches!(err.kind(), ErrorKind::Io | ErrorKind::Eof) {
            return err;
        }
        self.arriving = Arriving::default();
        self.between.lose(err)
    }
}
