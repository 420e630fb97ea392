//! The framing core's ([`crate::proto::frame`]) driver that never waits:
//! receives a message a piece at a time, for an event loop that serves
//! many connections from one thread and must never block on one peer that
//! sent half a message
//! ([`Connection::try_recv_bytes`](crate::Connection::try_recv_bytes)).
//!
//! What has arrived of a message is kept here between calls: the header
//! in its [`HeaderDecoder`] (with any descriptors that came with it), then
//! the payload, whose memory grows with the bytes that arrived, never with
//! the length the header claims ([`Payload`]), so a peer that announces a
//! large message and sends little of it costs little.

use std::io;
use std::os::fd::OwnedFd;

use crate::error::Result;
use crate::proto::frame::{Header, HeaderDecoder, Payload};
use crate::sys::{self, Socket, Wait};

/// At most this much of a payload is read per call, so that a large
/// message streaming in does not hold up an event loop's other peers: the
/// descriptor still polls readable, and the next call goes on.
const BYTES_PER_CALL: usize = 4 << 20;

/// The least room set aside for a payload's next read (a loop holds many
/// payloads partly arrived at once); afterwards the room grows with what
/// arrived, as [`Payload::chunk`] says.
const FIRST_ROOM: usize = 64 * 1024;

/// The part of a message received so far.
pub(crate) struct Arriving {
    header: HeaderDecoder,
    /// Descriptors that came with the header.
    fds: Vec<OwnedFd>,
    /// The payload's progress and what arrived of it, once the header is in.
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
    /// Whether part of a message arrived: a blocking receive must not
    /// start in the middle of it.
    pub(crate) fn is_partial(&self) -> bool {
        self.header.is_started() || self.payload.is_some()
    }

    /// Reads what has arrived of the header (with the descriptors that
    /// come with it, where shared memory was agreed, `with_fds`), and
    /// returns it with them once it is whole. `None`: the rest has not
    /// arrived yet. A clean end of file before its first byte is
    /// [`ErrorKind::Eof`](crate::ErrorKind::Eof).
    pub(crate) fn read_header(
        &mut self,
        socket: &Socket,
        with_fds: bool,
    ) -> Result<Option<(Header, Vec<OwnedFd>)>> {
        if !self.header.is_started() {
            // Shared memory may have been agreed since the last header.
            self.header = HeaderDecoder::new(with_fds);
        }
        loop {
            let room = self.header.unfilled();
            let fds = &mut self.fds;
            let read = arrived(|| match with_fds {
                true => socket.recv_with_fds(room, fds, Wait::No),
                false => socket.recv_nowait(room),
            });
            let header = match read {
                Ok(None) => return Ok(None),
                Ok(Some(0)) => return Err(self.header.end_of_stream()),
                Ok(Some(n)) => self.header.received(n)?,
                Err(err) => return Err(self.header.io_error(err)),
            };
            if let Some(header) = header {
                return Ok(Some((header, std::mem::take(&mut self.fds))));
            }
        }
    }

    /// Sets out to read a payload of `len` bytes.
    pub(crate) fn expect_payload(&mut self, len: usize) {
        let payload = Payload::new(len, 0).with_least_chunk(FIRST_ROOM);
        self.payload = Some((payload, Vec::new()));
    }

    /// Whether a payload is being read (its header is in).
    pub(crate) fn has_payload(&self) -> bool {
        self.payload.is_some()
    }

    /// Reads what has arrived of the payload, at most [`BYTES_PER_CALL`],
    /// and returns it once it is whole; `None`: the rest has not arrived
    /// yet. After an error the payload is gone (the stream with it).
    pub(crate) fn read_payload(&mut self, socket: &Socket) -> Result<Option<Vec<u8>>> {
        let Some((payload, bytes)) = &mut self.payload else {
            return Ok(None);
        };
        let start = payload.got();
        while !payload.is_complete() {
            if payload.got() - start >= BYTES_PER_CALL {
                return Ok(None);
            }
            let room = payload.make_room(bytes);
            let read = sys::append_filled(bytes, room, |spare| {
                arrived(|| spare.fill(|rest| socket.recv_nowait_uninit(rest)))
            });
            let arrival = match read {
                Ok(None) => return Ok(None),
                Ok(Some(n)) => payload.arrived(n),
                Err(err) => Err(payload.io_error(err)),
            };
            if let Err(err) = arrival {
                self.payload = None;
                return Err(err);
            }
        }
        Ok(self.payload.take().map(|(_, bytes)| bytes))
    }
}

/// What a read without waiting gave: `None` when nothing had arrived, `0`
/// at end of file (a reset peer's end included, see
/// [`sys::reset_is_end`]).
fn arrived(read: impl FnMut() -> io::Result<usize>) -> io::Result<Option<usize>> {
    match sys::reset_is_end(sys::retry_interrupted(read)) {
        Ok(n) => Ok(Some(n)),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests;
