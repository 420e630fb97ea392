//! How far an [`AsyncConnection`](super::AsyncConnection)'s receive has
//! got: kept in the connection, not in a receive's future, so that a
//! receive whose future is dropped loses nothing and the next one resumes
//! (`receive.rs` drives it).

use crate::error::Error;
use crate::proto::frame::{Between, HeaderDecoder};

/// A scratch buffer that grew past this is freed after use rather than kept.
const SCRATCH_KEEP: usize = 64 * 1024;

/// How far the message being received has got.
pub(super) struct ReceiveState {
    /// The header as far as it arrived (never a shared-memory one: an
    /// async end does not agree to them).
    pub(super) header: HeaderDecoder,
    /// The payload length once the whole header is in (it stays while a
    /// message over the limit waits unread), and the boundaries' state.
    pub(super) between: Between,
    /// The payload bytes that have arrived.
    pub(super) payload: Vec<u8>,
    /// A buffer for payloads that are decoded, not handed out, kept
    /// between receives.
    pub(super) scratch: Vec<u8>,
}

impl ReceiveState {
    pub(super) fn new(between: Between) -> ReceiveState {
        ReceiveState {
            header: HeaderDecoder::new(false),
            between,
            payload: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Whether a message is partly read: part of a header, or part of a
    /// payload (a whole header alone is what a blocking connection keeps).
    pub(super) fn is_partial(&self) -> bool {
        self.header.is_started() || !self.payload.is_empty()
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
        self.between.pending_len = None;
    }

    pub(super) fn break_stream(&mut self, err: Error) -> Error {
        self.finish_message();
        self.payload = Vec::new();
        self.between.lose(err)
    }
}
