//! Framing without I/O: where a message starts and ends on the stream.
//!
//! A message is a 4-byte big-endian signed length followed by that many
//! payload bytes. A payload of 2^31 bytes or more is announced by the length
//! `-1` followed by an 8-byte big-endian unsigned length. This is byte for
//! byte what CPython's `multiprocessing.connection` writes and reads.
//!
//! Between two ends that agreed to it (see [`crate::shared`]), a large
//! payload travels instead as a sealed memfd passed with `SCM_RIGHTS`: the
//! header is then the length `-2` ([`SHARED_MARKER`]) followed by the
//! payload's 8-byte big-endian length, and no payload bytes follow in the
//! stream. A payload in a recyclable memfd (see `shared::recycle`) has the
//! length `-3` ([`RECYCLED_MARKER`]), its 8-byte length and the message's
//! 8-byte generation. CPython treats any negative length other than `-1`
//! as garbage, and so does an end that did not agree
//! ([`ErrorKind::Protocol`]): neither can mistake it for a message.
//!
//! Receiving is a [`HeaderDecoder`], which asks for exactly the header's
//! bytes (so a reader never takes a payload's), then a [`Payload`], which
//! says how much memory the next read may set aside. Sending is a
//! [`SendPlan`]: header and payload as the slices of one vectored write,
//! and how much of them went.

use std::io::{self, IoSlice};
use std::ops::Deref;

use crate::error::{Error, ErrorKind, Result};

/// Payloads up to this size are copied next to their header and sent in one
/// write (CPython's threshold too), so that TCP's Nagle algorithm never
/// holds back a lone header.
pub(crate) const SMALL_MESSAGE: usize = 16 * 1024;

/// Largest payload announced with the 4-byte form of the header.
const SHORT_FORM_MAX: usize = i32::MAX as usize;

/// How far a receive's buffer may run ahead of the bytes that have
/// arrived: one chunk, as large as what arrived so far (so a big message
/// takes few reallocations) but at least [`MIN_CHUNK`] and at most
/// [`MAX_CHUNK`]. A hostile length header therefore costs at most
/// `MIN_CHUNK` before the peer has to actually send bytes, and never more
/// than `MAX_CHUNK` beyond what it sent.
pub(crate) const MIN_CHUNK: usize = 1 << 20;
pub(crate) const MAX_CHUNK: usize = 16 << 20;

/// Room for the longest header of a stream message, kept free in front of
/// a payload so that the header can be written in place (see
/// [`frame_in_place`]).
pub(crate) const HEADER_ROOM: usize = 12;

/// The longest header of all: a recycled-memfd message's.
const LONGEST_HEADER: usize = 20;

/// The short length that announces a shared-memory message: its real
/// length follows in 8 bytes, and its payload is the memfd attached.
pub(crate) const SHARED_MARKER: i32 = -2;

/// The short length that announces a message in a recyclable memfd: its
/// length and its generation follow in 8 bytes each.
pub(crate) const RECYCLED_MARKER: i32 = -3;

/// Writes the header for a `len`-byte payload into the end of `room` and
/// returns how many bytes of `room` it used.
pub(crate) fn put_header(len: usize, room: &mut [u8; HEADER_ROOM]) -> usize {
    if len <= SHORT_FORM_MAX {
        room[8..].copy_from_slice(&(len as i32).to_be_bytes());
        4
    } else {
        room[..4].copy_from_slice(&(-1i32).to_be_bytes());
        room[4..].copy_from_slice(&(len as u64).to_be_bytes());
        12
    }
}

/// Frames `buf[HEADER_ROOM..]` in place, writing its header into the room
/// in front of it, and returns where the framed message starts in `buf`.
pub(crate) fn frame_in_place(buf: &mut [u8]) -> usize {
    let len = buf.len() - HEADER_ROOM;
    let room: &mut [u8; HEADER_ROOM] = (&mut buf[..HEADER_ROOM]).try_into().expect("room");
    HEADER_ROOM - put_header(len, room)
}

/// Appends the header for a `len`-byte payload to `out`.
pub(crate) fn append_header(len: usize, out: &mut Vec<u8>) {
    let mut room = [0u8; HEADER_ROOM];
    let used = put_header(len, &mut room);
    out.extend_from_slice(&room[HEADER_ROOM - used..]);
}

/// Replaces what `out` holds with `payload` framed: header, then payload.
pub(crate) fn join(payload: &[u8], out: &mut Vec<u8>) {
    out.clear();
    append_header(payload.len(), out);
    out.extend_from_slice(payload);
}

/// The header of a shared-memory message of `len` bytes.
pub(crate) fn shared_header(len: u64) -> Vec<u8> {
    [&SHARED_MARKER.to_be_bytes()[..], &len.to_be_bytes()].concat()
}

/// The header of a `len`-byte message in a recyclable memfd.
pub(crate) fn recycled_header(len: u64, generation: u64) -> Vec<u8> {
    let marker = RECYCLED_MARKER.to_be_bytes();
    [&marker[..], &len.to_be_bytes(), &generation.to_be_bytes()].concat()
}

/// What a whole header announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    /// A message whose payload of this length follows in the stream.
    Stream(u64),
    /// A shared-memory message of this length: its payload is the memfd
    /// that came with the header.
    Shared(u64),
    /// A message in a recyclable memfd: its length and its generation.
    Recycled { len: u64, generation: u64 },
}

/// A header being decoded as its bytes arrive, in pieces of any size.
#[derive(Debug)]
pub(crate) struct HeaderDecoder {
    bytes: [u8; LONGEST_HEADER],
    filled: usize,
    /// Whether the shared-memory headers are accepted.
    shared_memory: bool,
}

impl HeaderDecoder {
    /// A decoder for the next header; `shared_memory` says whether this
    /// end agreed to shared-memory messages.
    pub(crate) fn new(shared_memory: bool) -> HeaderDecoder {
        HeaderDecoder {
            bytes: [0; LONGEST_HEADER],
            filled: 0,
            shared_memory,
        }
    }

    /// How long the header is, as far as its bytes so far tell.
    fn expected(&self) -> usize {
        if self.filled < 4 {
            return 4;
        }
        match self.short() {
            -1 => 12,
            SHARED_MARKER if self.shared_memory => 12,
            RECYCLED_MARKER if self.shared_memory => 20,
            _ => 4,
        }
    }

    fn short(&self) -> i32 {
        i32::from_be_bytes(self.bytes[..4].try_into().expect("four bytes"))
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_be_bytes(self.bytes[at..at + 8].try_into().expect("eight bytes"))
    }

    /// Where the next bytes go: exactly the header's bytes still missing,
    /// never more, so that a read into it never takes a payload's bytes.
    pub(crate) fn unfilled(&mut self) -> &mut [u8] {
        let end = self.expected();
        &mut self.bytes[self.filled..end]
    }

    /// Whether some of a header has arrived.
    pub(crate) fn is_started(&self) -> bool {
        self.filled > 0
    }

    /// Goes on refusing shared-memory headers, for an end that stops
    /// accepting them part way through a header; false (and unchanged)
    /// if the bytes so far began one, which it could then not finish.
    #[cfg(feature = "tokio")]
    pub(crate) fn refuse_shared_memory(&mut self) -> bool {
        let shared_begun = self.filled >= 4 && self.expected() > 4 && self.short() != -1;
        if shared_begun {
            return false;
        }
        self.shared_memory = false;
        true
    }

    /// Counts `n` bytes that a read put at the start of
    /// [`unfilled`](Self::unfilled): `None` while more are needed, the
    /// header once it is whole (and the decoder ready for the next one),
    /// [`ErrorKind::Protocol`] for a length no peer may send.
    pub(crate) fn received(&mut self, n: usize) -> Result<Option<Header>> {
        debug_assert!(self.filled + n <= self.expected(), "more than was asked");
        self.filled += n;
        if self.filled == 4 {
            if let Err(err) = self.check_short() {
                self.filled = 0;
                return Err(err);
            }
        }
        if self.filled < self.expected() {
            return Ok(None);
        }
        let header = match self.short() {
            len @ 0.. => Header::Stream(len as u64),
            -1 => Header::Stream(self.u64_at(4)),
            SHARED_MARKER => Header::Shared(self.u64_at(4)),
            _ => Header::Recycled {
                len: self.u64_at(4),
                generation: self.u64_at(12),
            },
        };
        self.filled = 0;
        Ok(Some(header))
    }

    fn check_short(&self) -> Result<()> {
        match self.short() {
            0.. | -1 => Ok(()),
            SHARED_MARKER | RECYCLED_MARKER if self.shared_memory => Ok(()),
            marker @ (SHARED_MARKER | RECYCLED_MARKER) => Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "a shared-memory message (length {marker}) on a connection that did not agree to them"
                ),
            )),
            other => Err(Error::new(
                ErrorKind::Protocol,
                format!("invalid message length {other} in header"),
            )),
        }
    }

    /// What the end of the stream means here: [`ErrorKind::Eof`] between
    /// messages, [`ErrorKind::Truncated`] inside a header.
    pub(crate) fn end_of_stream(&self) -> Error {
        match (self.filled, self.expected()) {
            (0, _) => Error::new(ErrorKind::Eof, ""),
            (got, 4) => truncated("message header", 4, got),
            (got, whole) => truncated("long message header", whole as u64, got),
        }
    }

    /// A read error inside (or before) a header, saying how far it got.
    pub(crate) fn io_error(&self, err: io::Error) -> Error {
        let (filled, want) = (self.filled, self.expected());
        Error::io(
            err,
            format!("receive ({filled} of {want} header bytes read)"),
        )
    }
}

/// A payload on its way in: how much of how much has arrived, and so how
/// much memory the next read may set aside (see [`MIN_CHUNK`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Payload {
    whole: usize,
    got: usize,
    /// The least room a read sets aside: [`MIN_CHUNK`] unless told less.
    least: usize,
}

impl Payload {
    /// A `whole`-byte payload of which `got` bytes have arrived.
    pub(crate) fn new(whole: usize, got: usize) -> Payload {
        Payload {
            whole,
            got,
            least: MIN_CHUNK,
        }
    }

    /// Sets aside as little as `least` bytes for a read, rather than
    /// [`MIN_CHUNK`]: for a reader that holds many payloads partly
    /// arrived at once, where a hostile header's cost adds up.
    pub(crate) fn with_least_chunk(self, least: usize) -> Payload {
        Payload { least, ..self }
    }

    pub(crate) fn got(&self) -> usize {
        self.got
    }

    /// The payload's whole length.
    #[cfg(feature = "tokio")]
    pub(crate) fn whole(&self) -> usize {
        self.whole
    }

    pub(crate) fn is_complete(&self) -> bool {
        self.got == self.whole
    }

    /// How much room to set aside for the next read: a chunk as large as
    /// what arrived, within [`MIN_CHUNK`] (or the least chunk it was
    /// given) and [`MAX_CHUNK`], never past the payload's end.
    pub(crate) fn chunk(&self) -> usize {
        self.got
            .clamp(self.least, MAX_CHUNK)
            .min(self.whole - self.got)
    }

    /// Sets aside room in `out` for the next read, a chunk once what was
    /// set aside before is full, and returns how much the read may take.
    pub(crate) fn make_room(&self, out: &mut Vec<u8>) -> usize {
        let chunk = self.chunk();
        if out.capacity() == out.len() {
            out.reserve_exact(chunk);
        }
        (out.capacity() - out.len()).min(chunk)
    }

    /// Counts `n` bytes that arrived; 0 is the other end closing first,
    /// [`ErrorKind::Truncated`].
    pub(crate) fn arrived(&mut self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(self.truncated());
        }
        self.got += n;
        Ok(())
    }

    pub(crate) fn truncated(&self) -> Error {
        truncated("message", self.whole as u64, self.got)
    }

    /// A read error inside the payload, saying how far it got.
    pub(crate) fn io_error(&self, err: io::Error) -> Error {
        let (whole, got) = (self.whole, self.got);
        Error::io(err, format!("receive {whole}-byte message ({got} read)"))
    }
}

fn truncated(what: &str, expected: u64, got: usize) -> Error {
    Error::new(
        ErrorKind::Truncated,
        format!("{what}: expected {expected} bytes, the other end closed after {got}"),
    )
}

/// The part of `buffer` after `offset`, where `recv_bytes_into` puts a
/// message; an offset past the end is [`ErrorKind::InvalidInput`].
pub(crate) fn room_after(buffer: &mut [u8], offset: usize) -> Result<&mut [u8]> {
    let len = buffer.len();
    buffer.get_mut(offset..).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("offset {offset} is past the end of a {len}-byte buffer"),
        )
    })
}

/// The error for a `len`-byte message over a receive's `limit`, which is
/// left unread: a header is checked against it before anything is set
/// aside for its payload.
pub(crate) fn too_large(len: u64, limit: u64, max_message_size: u64) -> Error {
    tracing::debug!(len, limit, "message over the limit left pending");
    let which = if limit == max_message_size {
        "the connection's max_message_size"
    } else {
        "the caller's limit"
    };
    Error::new(
        ErrorKind::MessageTooLarge,
        format!("message of {len} bytes exceeds {which} of {limit} bytes; it is left unread"),
    )
}

/// `len` as a size in memory, or the error for a message too large for
/// this platform's address space.
pub(crate) fn in_memory_len(len: u64) -> Result<usize> {
    usize::try_from(len).map_err(|_| {
        Error::new(
            ErrorKind::MessageTooLarge,
            format!("message of {len} bytes exceeds this platform's address space"),
        )
    })
}

/// What every receive on a connection that lost its message boundaries
/// (through a truncated or malformed message of kind `kind`) fails with.
pub(crate) fn lost_boundaries(kind: ErrorKind) -> Error {
    Error::new(
        kind,
        "an earlier message was cut short or malformed, so message boundaries are lost",
    )
}

/// What a receiving end keeps between messages, whichever driver reads
/// (the blocking, non-blocking and async ones alike): the length of a message whose header was read and whose
/// payload waits, as one over the limit does, and why the stream lost its
/// message boundaries, after which every receive fails.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Between {
    pub(crate) pending_len: Option<u64>,
    pub(crate) broken: Option<ErrorKind>,
}

impl Between {
    /// Refuses a receive on a stream that lost its boundaries.
    pub(crate) fn check(&self) -> Result<()> {
        self.broken
            .map_or(Ok(()), |kind| Err(lost_boundaries(kind)))
    }

    /// The stream lost its boundaries with `err`, whose kind every later
    /// receive fails with; returns `err`.
    pub(crate) fn lose(&mut self, err: Error) -> Error {
        tracing::debug!(error = %err, "connection lost its message boundaries");
        self.broken = Some(err.kind());
        self.pending_len = None;
        err
    }
}

/// The part in front of a [`SendPlan`]'s second: a header it made, or
/// bytes it was given.
#[derive(Debug)]
enum First<'a> {
    Header {
        room: [u8; HEADER_ROOM],
        used: usize,
    },
    Bytes(&'a [u8]),
}

/// Bytes on their way out as the slices of one vectored write (a header
/// and its payload, typically, the payload never copied), and how much of
/// them went.
#[derive(Debug)]
pub(crate) struct SendPlan<'a> {
    first: First<'a>,
    second: &'a [u8],
    sent: usize,
}

impl<'a> SendPlan<'a> {
    /// `payload` framed as one message: its header, then it.
    pub(crate) fn message(payload: &'a [u8]) -> SendPlan<'a> {
        let mut room = [0u8; HEADER_ROOM];
        let used = put_header(payload.len(), &mut room);
        SendPlan {
            first: First::Header { room, used },
            second: payload,
            sent: 0,
        }
    }

    /// `payload` as one message in the fewest writes: a small one joined
    /// with its header in `scratch` (one `send`, as CPython does), a large
    /// one as header and payload apart, without a copy.
    pub(crate) fn joined(payload: &'a [u8], scratch: &'a mut Vec<u8>) -> SendPlan<'a> {
        if payload.len() > SMALL_MESSAGE {
            return SendPlan::message(payload);
        }
        join(payload, scratch);
        SendPlan::pair(&[], scratch)
    }

    /// `first` then `second`, already framed (or parts of a message).
    pub(crate) fn pair(first: &'a [u8], second: &'a [u8]) -> SendPlan<'a> {
        SendPlan {
            first: First::Bytes(first),
            second,
            sent: 0,
        }
    }

    fn first(&self) -> &[u8] {
        match &self.first {
            First::Header { room, used } => &room[HEADER_ROOM - used..],
            First::Bytes(bytes) => bytes,
        }
    }

    /// How many bytes went out.
    pub(crate) fn sent(&self) -> usize {
        self.sent
    }

    pub(crate) fn is_done(&self) -> bool {
        self.sent == self.first().len() + self.second.len()
    }

    /// What is still to be written, as one or two slices (one when only
    /// one part is left, which goes out through plain `send`).
    pub(crate) fn slices(&self) -> Slices<'_> {
        let first = self.first();
        if self.sent < first.len() && !self.second.is_empty() {
            let both = [IoSlice::new(&first[self.sent..]), IoSlice::new(self.second)];
            Slices(both, 0)
        } else if self.sent < first.len() {
            Slices([IoSlice::new(&[]), IoSlice::new(&first[self.sent..])], 1)
        } else {
            let rest = &self.second[self.sent - first.len()..];
            Slices([IoSlice::new(&[]), IoSlice::new(rest)], 1)
        }
    }

    /// Counts `n` more bytes as gone.
    pub(crate) fn advance(&mut self, n: usize) {
        self.sent += n;
        debug_assert!(self.sent <= self.first().len() + self.second.len());
    }

    /// A copy of what is still to be written.
    pub(crate) fn unsent(&self) -> Vec<u8> {
        self.slices()
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect()
    }
}

/// The slices of a [`SendPlan`] still to be written.
pub(crate) struct Slices<'a>([IoSlice<'a>; 2], usize);

impl<'a> Deref for Slices<'a> {
    type Target = [IoSlice<'a>];

    fn deref(&self) -> &[IoSlice<'a>] {
        &self.0[self.1..]
    }
}

#[cfg(test)]
mod tests;
