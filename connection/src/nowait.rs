//! Receiving a message without waiting for it, a piece at a time: for an
//! event loop that serves many connections from one thread and must never
//! block on one peer that sent half a message
//! ([`Connection::try_recv_bytes`](crate::Connection::try_recv_bytes)).
//!
//! What has arrived of a message is kept here between calls: the header's
//! bytes (and any descriptors that came with them), then the payload,
//! which grows with the bytes that arrived, never with the length the
//! header claims, so a peer that announces a large message and sends
//! little of it costs little.

use std::io;
use std::os::fd::OwnedFd;

use crate::error::{Error, ErrorKind, Result};
use crate::frame::{self, Header, RECYCLED_MARKER, SHARED_MARKER};
use crate::sys::{self, Socket, Wait};

/// The longest header: a marker, a length and a generation.
const LONGEST_HEADER: usize = 20;

/// At most this much of a payload is read per call, so that a large
/// message streaming in does not hold up an event loop's other peers: the
/// descriptor still polls readable, and the next call goes on.
const BYTES_PER_CALL: usize = 4 << 20;

/// The least room set aside for a payload's next read; afterwards the
/// room grows with what arrived (at most doubling the buffer).
const FIRST_ROOM: usize = 64 * 1024;

/// The part of a message received so far.
#[derive(Default)]
pub(crate) struct Arriving {
    header: [u8; LONGEST_HEADER],
    /// How many header bytes arrived.
    got: usize,
    /// Descriptors that came with the header.
    fds: Vec<OwnedFd>,
    /// The payload's length and what arrived of it, once the header is in.
    payload: Option<(usize, Vec<u8>)>,
}

impl Arriving {
    /// Whether part of a message arrived: a blocking receive must not
    /// start in the middle of it.
    pub(crate) fn is_partial(&self) -> bool {
        self.got > 0 || self.payload.is_some()
    }

    /// Reads what has arrived of the header (with the descriptors that
    /// come with it, if `with_fds`), and returns it once it is whole.
    /// `None`: the rest has not arrived yet. A clean end of file before
    /// its first byte is [`ErrorKind::Eof`].
    pub(crate) fn read_header(
        &mut self,
        socket: &Socket,
        with_fds: bool,
    ) -> Result<Option<Header>> {
        loop {
            let need = match self.got {
                0..4 => 4,
                _ => header_len(short(&self.header), with_fds)?,
            };
            if self.got == need {
                break;
            }
            let room = &mut self.header[self.got..need];
            let fds = &mut self.fds;
            let read = sys::retry_interrupted(|| {
                if with_fds {
                    socket.recv_with_fds(room, fds, Wait::No)
                } else {
                    socket.recv_nowait(room)
                }
            });
            match arrived(read)? {
                None => return Ok(None),
                Some(0) if self.got == 0 => return Err(Error::new(ErrorKind::Eof, "")),
                Some(0) => return Err(frame::truncated("message header", need as u64, self.got)),
                Some(n) => self.got += n,
            }
        }
        let len = u64::from_be_bytes(self.header[4..12].try_into().unwrap_or_default());
        let fds = std::mem::take(&mut self.fds);
        let header = match i32::from_be_bytes(short(&self.header)) {
            SHARED_MARKER if with_fds => Header::Shared { len, fds },
            RECYCLED_MARKER if with_fds => Header::Recycled {
                len,
                generation: u64::from_be_bytes(self.header[12..20].try_into().unwrap_or_default()),
                fds,
            },
            -1 => Header::Stream(len),
            short_len => Header::Stream(short_len as u64),
        };
        self.got = 0;
        Ok(Some(header))
    }

    /// Sets out to read a payload of `len` bytes.
    pub(crate) fn expect_payload(&mut self, len: usize) {
        self.payload = Some((len, Vec::new()));
    }

    /// Whether a payload is being read (its header is in).
    pub(crate) fn has_payload(&self) -> bool {
        self.payload.is_some()
    }

    /// Reads what has arrived of the payload and returns it once it is
    /// whole; `None`: the rest has not arrived yet.
    pub(crate) fn read_payload(&mut self, socket: &Socket) -> Result<Option<Vec<u8>>> {
        let Some((len, bytes)) = &mut self.payload else {
            return Ok(None);
        };
        let start = bytes.len();
        while bytes.len() < *len {
            let before = bytes.len();
            if before - start >= BYTES_PER_CALL {
                return Ok(None);
            }
            let room = (*len - before).min(before.max(FIRST_ROOM));
            // Exactly: doubling on top of the doubling `room` already does
            // would set aside four times what arrived.
            bytes.reserve_exact(room);
            bytes.resize(before + room, 0);
            let read = arrived(sys::retry_interrupted(|| {
                socket.recv_nowait(&mut bytes[before..])
            }));
            let got = match &read {
                Ok(Some(n)) => *n,
                _ => 0,
            };
            bytes.truncate(before + got);
            match read? {
                None => return Ok(None),
                Some(0) => return Err(frame::truncated("message", *len as u64, before)),
                Some(_) => {}
            }
        }
        Ok(self.payload.take().map(|(_, bytes)| bytes))
    }
}

fn short(header: &[u8; LONGEST_HEADER]) -> [u8; 4] {
    [header[0], header[1], header[2], header[3]]
}

/// How long a header is, from its first four bytes.
fn header_len(short: [u8; 4], with_fds: bool) -> Result<usize> {
    match i32::from_be_bytes(short) {
        SHARED_MARKER if with_fds => Ok(12),
        RECYCLED_MARKER if with_fds => Ok(20),
        _ => Ok(match frame::short_header_len(short)? {
            Some(_) => 4,
            None => 12,
        }),
    }
}

/// What a read without waiting gave: `None` when nothing had arrived, `0`
/// at end of file (a reset peer's end included, see [`frame::is_reset`]).
fn arrived(read: io::Result<usize>) -> Result<Option<usize>> {
    match read {
        Ok(n) => Ok(Some(n)),
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(err) if frame::is_reset(&err) => Ok(Some(0)),
        Err(err) => Err(Error::io(err, "receive without waiting")),
    }
}

#[cfg(test)]
mod tests;
