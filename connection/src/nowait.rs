//! The framing core's ([`crate::proto::frame`]) receive that never waits
//! (its reads are `crate::frame`'s, with [`Wait::No`]): receives a message
//! a piece at a time, as the socket allows, for the two
//! callers that must never block on a peer that sent half a message: an
//! event loop that serves many connections from one thread
//! ([`Connection::try_recv_bytes`](crate::Connection::try_recv_bytes)),
//! and the tokio connection, which awaits readability and calls again
//! (`tokio/receive.rs`).
//!
//! What has arrived of a message is kept here between calls, not in the
//! caller: the header in its [`HeaderDecoder`] (with any descriptors that
//! came with it), then the payload, whose memory grows with the bytes that
//! arrived, never with the length the header claims ([`Payload`]), so a
//! peer that announces a large message and sends little of it costs
//! little; and a receive whose future is dropped loses nothing.

use std::io;
use std::os::fd::OwnedFd;

use crate::error::{ErrorKind, Result};
use crate::frame;
#[cfg(feature = "tokio")]
use crate::proto::frame::Between;
use crate::proto::frame::{Header, HeaderDecoder, Payload};
use crate::read_ahead::Reader;
use crate::sys::Wait;

/// At most this much of a payload an event loop reads per call, so that a
/// large message streaming in does not hold up its other peers: the
/// descriptor still polls readable, and the next call goes on.
pub(crate) const BYTES_PER_CALL: usize = 4 << 20;

/// The least room an event loop sets aside for a payload's next read (it
/// holds many payloads partly arrived at once); afterwards the room grows
/// with what arrived, as [`Payload::chunk`] says.
pub(crate) const FIRST_ROOM: usize = 64 * 1024;

/// The part of a message received so far.
pub(crate) struct Arriving {
    header: HeaderDecoder,
    /// Descriptors that came with the header.
    fds: Vec<OwnedFd>,
    /// The payload's progress and what arrived of it, once the header is
    /// in. While a [`PayloadInto`] reads it into a caller's memory, the
    /// bytes are there instead, and come back here if it is dropped.
    payload: Option<(Payload, Vec<u8>)>,
}

impl Default for Arriving {
    fn default() -> Arriving {
        Arriving {
            header: HeaderDecoder::new(false),
            fds: Vec::new(),
            payload: None,
        }
    }
}

impl Arriving {
    /// Whether part of a message arrived or its header is in: a blocking
    /// receive must not start in the middle of it.
    pub(crate) fn is_partial(&self) -> bool {
        self.header.is_started() || self.payload.is_some()
    }

    /// Whether bytes of a message arrived that only this holds: part of a
    /// header, or part of a payload (a whole header alone is what a
    /// caller that keeps the pending length can carry on from).
    #[cfg(feature = "tokio")]
    pub(crate) fn has_arrived(&self) -> bool {
        let payload_begun = self.payload.as_ref().is_some_and(|(p, _)| p.got() > 0);
        self.header.is_started() || payload_begun
    }

    /// What of this partly received message an async end, which refuses
    /// shared memory, carries on from, with `between` set to match: the
    /// payload begun (its length pending, as the async receive keeps it)
    /// or the header begun. `None`: nothing was begun, or a
    /// shared-memory header was, which the async end cannot read; then
    /// `between` has lost the boundaries ([`ErrorKind::Protocol`]), as for
    /// such a message arriving there.
    #[cfg(feature = "tokio")]
    pub(crate) fn for_async(mut self: Box<Self>, between: &mut Between) -> Option<Box<Arriving>> {
        if let Some((payload, _)) = &self.payload {
            between.pending_len = Some(payload.whole() as u64);
            return Some(self);
        }
        if !self.header.is_started() {
            return None;
        }
        if self.header.refuse_shared_memory() {
            return Some(self);
        }
        between.broken = Some(ErrorKind::Protocol);
        between.pending_len = None;
        None
    }

    /// Reads what has arrived of the header (with the descriptors that
    /// come with it, where shared memory was agreed, `with_fds`), and
    /// returns it with them once it is whole. `None`: the rest has not
    /// arrived yet. A clean end of file before its first byte is
    /// [`ErrorKind::Eof`].
    pub(crate) fn read_header(
        &mut self,
        reader: &mut Reader<'_>,
        with_fds: bool,
    ) -> Result<Option<(Header, Vec<OwnedFd>)>> {
        if !self.header.is_started() {
            // Shared memory may have been agreed since the last header.
            self.header = HeaderDecoder::new(with_fds);
        }
        let fds = with_fds.then_some(&mut self.fds);
        let header = frame::read_any_header(reader, &mut self.header, fds, Wait::No)?;
        Ok(header.map(|header| (header, std::mem::take(&mut self.fds))))
    }

    /// Sets out to read a payload of `len` bytes into `buf` (empty, its
    /// capacity used first), setting aside at least `least` bytes a read.
    pub(crate) fn expect_payload(&mut self, len: usize, least: usize, buf: Vec<u8>) {
        let payload = Payload::new(len, 0).with_least_chunk(least);
        self.payload = Some((payload, buf));
    }

    /// Whether a payload is being read (its header is in).
    pub(crate) fn has_payload(&self) -> bool {
        self.payload.is_some()
    }

    /// How much memory the partly received payload holds.
    #[cfg(all(test, feature = "tokio"))]
    pub(crate) fn payload_capacity(&self) -> usize {
        self.payload
            .as_ref()
            .map_or(0, |(_, bytes)| bytes.capacity())
    }

    /// Reads what has arrived of the payload, at most about `budget`
    /// bytes, and returns it once it is whole; `None`: the rest has not
    /// arrived yet, or the budget is spent. After
    /// [`ErrorKind::Truncated`] the payload
    /// is gone (the stream with it); after an I/O error it is kept.
    pub(crate) fn read_payload(
        &mut self,
        reader: &mut Reader<'_>,
        budget: usize,
    ) -> Result<Option<Vec<u8>>> {
        let whole = self.read_pieces(budget, |payload, bytes| {
            frame::append_arrived(reader, payload, bytes, Wait::No)
        })?;
        Ok(whole
            .then(|| self.payload.take().map(|(_, bytes)| bytes))
            .flatten())
    }

    /// [`frame::read_pieces`] of the payload, with its bytes so far for
    /// `read`; a truncated payload is dropped (the stream is lost with it).
    fn read_pieces(
        &mut self,
        budget: usize,
        mut read: impl FnMut(&Payload, &mut Vec<u8>) -> io::Result<usize>,
    ) -> Result<bool> {
        let Some((payload, bytes)) = &mut self.payload else {
            return Ok(false);
        };
        let read = frame::read_pieces(payload, budget, Wait::No, |payload| read(payload, bytes));
        if read
            .as_ref()
            .is_err_and(|err| err.kind() == ErrorKind::Truncated)
        {
            self.payload = None;
        }
        read
    }
}

/// The payload being read straight into a caller's memory, `target`,
/// exactly as long as the payload: what arrived before moves there, and
/// if this is dropped before the payload is whole, what arrived moves back
/// into the [`Arriving`], so that a dropped receive loses nothing.
#[cfg(feature = "tokio")]
pub(crate) struct PayloadInto<'a> {
    arriving: &'a mut Arriving,
    target: &'a mut [u8],
}

#[cfg(feature = "tokio")]
impl<'a> PayloadInto<'a> {
    /// Starts reading the payload `arriving` expects into `target`.
    pub(crate) fn new(arriving: &'a mut Arriving, target: &'a mut [u8]) -> PayloadInto<'a> {
        if let Some((_, bytes)) = &mut arriving.payload {
            target[..bytes.len()].copy_from_slice(bytes);
            bytes.clear();
        }
        PayloadInto { arriving, target }
    }

    /// Reads what has arrived of the payload; `Some` once it is whole,
    /// `None` when the rest has not arrived yet. Errors as
    /// [`Arriving::read_payload`]'s.
    pub(crate) fn read(&mut self, reader: &mut Reader<'_>) -> Result<Option<()>> {
        let target = &mut *self.target;
        let whole = self.arriving.read_pieces(usize::MAX, |payload, _| {
            reader.recv(&mut target[payload.got()..], Wait::No)
        })?;
        if whole {
            self.arriving.payload = None;
        }
        Ok(whole.then_some(()))
    }
}

#[cfg(feature = "tokio")]
impl Drop for PayloadInto<'_> {
    fn drop(&mut self) {
        if let Some((payload, bytes)) = &mut self.arriving.payload {
            bytes.clear();
            bytes.extend_from_slice(&self.target[..payload.got()]);
        }
    }
}

#[cfg(test)]
mod tests;
