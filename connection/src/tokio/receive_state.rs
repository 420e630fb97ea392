//! How far an [`AsyncConnection`](super::AsyncConnection)'s receive has
//! got: kept in the connection, not in a receive's future, so that a
//! receive whose future is dropped loses nothing and the next one resumes
//! (`receive.rs` drives it).

use crate::error::{Error, ErrorKind};
use crate::proto::frame::HeaderDecoder;

/// A scratch buffer that grew past this is freed after use rather than kept.
const SCRATCH_KEEP: usize = 64 * 1024;

/// How far the message being received has got.
pub(super) struct ReceiveState {
    /// The header as far as it arrived (never a shared-memory one: an
    /// async end does not agree to them).
    pub(super) header: HeaderDecoder,
    /// The payload length, once the whole header is in. Stays set while a
    /// message over the limit waits unread.
    pub(super) len: Option<u64>,
    /// The payload bytes that have arrived.
    pub(super) payload: Vec<u8>,
    /// Why the stream lost its message boundaries, if it did.
    pub(super) broken: Option<ErrorKind>,
    /// A buffer for payloads that are decoded, not handed out, kept
    /// between receives.
    pub(super) scratch: Vec<u8>,
}

impl ReceiveState {
    pub(super) fn new(pending_len: Option<u64>, broken: Option<ErrorKind>) -> ReceiveState {
        ReceiveState {
            header: HeaderDecoder::new(false),
            len: pending_len,
            payload: Vec::new(),
            broken,
            scratch: Vec::new(),
        }
    }

    /// Whether a message is partly read: part of a header, or part of a
    /// payload (a whole header alone is what a blocking connection keeps).
    pub(super) fn is_partial(&self) -> bool {
        self.header.is_started() || !self.payload.is_empty()
    }

    /// What a blocking connection carries over: the length of a message
    /// whose header was read, and the broken state.
    pub(super) fn carried_over(&self) -> (Option<u64>, Option<ErrorKind>) {
        (self.len, self.broken)
    }

    /// Takes back the buffer of a decoded payload for the next receive.
    pub(super) fn recycle(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= SCRATCH_KEEP {
            buf.clear();
            self.scratch = buf;
        }
    }

    /// How much memory the partly received payload holds.
    #[cfg(test)]
    pub(super) fn payload_capacity(&self) -> usize {
        self.payload.capacity()
    }

    /// Ready for the next message's header.
    pub(super) fn finish_message(&mut self) {
        self.header = HeaderDecoder::new(false);
        self.len = None;
    }

    pub(super) fn break_stream(&mut self, err: Error) -> Error {
        tracing::debug!(error = %err, "connection lost its message boundaries");
        self.broken = Some(err.kind());
        self.finish_message();
        self.payload = Vec::new();
        err
    }
}
