//! The wire format: where a message is framed.
//!
//! A message is a 4-byte big-endian signed length followed by that many
//! payload bytes. A payload of 2^31 bytes or more is announced by the length
//! `-1` followed by an 8-byte big-endian unsigned length. This is byte for
//! byte what CPython's `multiprocessing.connection` writes and reads.
//!
//! Small messages go out as a single write of header and payload, as CPython
//! does, so that TCP's Nagle algorithm never holds back a lone header. Large
//! ones are written with a vectored write, so the payload is never copied
//! just to put a header in front of it.
//!
//! Between two ends that agreed to it (see [`crate::shared`]), a large
//! payload travels instead as a sealed memfd passed with `SCM_RIGHTS`: the
//! header is then the length `-2` ([`SHARED_MARKER`]) followed by the
//! payload's 8-byte big-endian length, with the descriptor attached to its
//! first byte, and no payload bytes follow in the stream. CPython treats
//! any negative length other than `-1` as garbage, and so does an end
//! that did not agree ([`ErrorKind::Protocol`]): neither can mistake it
//! for a message.
//!
//! The copying calls of such ends send a large payload in a recyclable
//! memfd instead (see `shared::recycle`): the header is then the length
//! `-3` ([`RECYCLED_MARKER`]), the payload's 8-byte length and the
//! message's 8-byte generation, all big endian, with the memfd attached.

use std::io::{self, IoSlice, Read};
use std::os::fd::{AsFd, OwnedFd};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, Socket, Unfilled, Wait};

/// Payloads up to this size are copied next to their header and sent in one
/// write (CPython's threshold too).
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
const MAX_CHUNK: usize = 16 << 20;

/// Room for the longest header, kept free in front of a payload so that the
/// header can be written in place (see [`write_reserved`]).
pub(crate) const HEADER_ROOM: usize = 12;

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

/// Sends `buf[HEADER_ROOM..]` as one message, writing its header into the
/// room in front of it so that header and payload go out in a single write.
pub(crate) fn write_reserved(socket: &Socket, buf: &mut [u8]) -> io::Result<()> {
    let len = buf.len() - HEADER_ROOM;
    let room: &mut [u8; HEADER_ROOM] = (&mut buf[..HEADER_ROOM]).try_into().expect("room");
    let used = put_header(len, room);
    write_all(socket, &mut [IoSlice::new(&buf[HEADER_ROOM - used..])])
}

/// Sends `payload` as one message. `scratch` is reused to join header and
/// payload of a small message.
pub(crate) fn write_message(
    socket: &Socket,
    payload: &[u8],
    scratch: &mut Vec<u8>,
) -> io::Result<()> {
    write_framed(socket, payload, scratch, Wait::ForRoom).map(drop)
}

/// Writes as much of `payload` as one message as the socket takes without
/// waiting for room, and returns the bytes of the framed message (header
/// and payload) that were not written: empty when all of it went out.
pub(crate) fn try_write_message(
    socket: &Socket,
    payload: &[u8],
    scratch: &mut Vec<u8>,
) -> io::Result<Vec<u8>> {
    write_framed(socket, payload, scratch, Wait::No)
}

/// Frames `payload` and writes it, returning what was left unwritten (only
/// ever something with [`Wait::No`]). A small message is joined with its
/// header in `scratch` and goes out in one `send`; a large one goes out as
/// header and payload slices, without a copy.
fn write_framed(
    socket: &Socket,
    payload: &[u8],
    scratch: &mut Vec<u8>,
    wait: Wait,
) -> io::Result<Vec<u8>> {
    let mut room = [0u8; HEADER_ROOM];
    let used = put_header(payload.len(), &mut room);
    let header = &room[HEADER_ROOM - used..];
    let (mut joined, mut apart);
    let mut bufs: &mut [IoSlice<'_>] = if payload.len() <= SMALL_MESSAGE {
        scratch.clear();
        scratch.extend_from_slice(header);
        scratch.extend_from_slice(payload);
        joined = [IoSlice::new(scratch)];
        &mut joined
    } else {
        apart = [IoSlice::new(header), IoSlice::new(payload)];
        &mut apart
    };
    write_slices(socket, &mut bufs, wait)?;
    let mut rest = Vec::with_capacity(bufs.iter().map(|b| b.len()).sum());
    for buf in bufs.iter() {
        rest.extend_from_slice(buf);
    }
    Ok(rest)
}

/// The header of a shared-memory message of `len` bytes.
pub(crate) fn shared_header(len: u64) -> Vec<u8> {
    let mut header = SHARED_MARKER.to_be_bytes().to_vec();
    header.extend_from_slice(&len.to_be_bytes());
    header
}

/// The header of a `len`-byte message in a recyclable memfd.
pub(crate) fn recycled_header(len: u64, generation: u64) -> Vec<u8> {
    let mut header = RECYCLED_MARKER.to_be_bytes().to_vec();
    header.extend_from_slice(&len.to_be_bytes());
    header.extend_from_slice(&generation.to_be_bytes());
    header
}

/// Writes `header` (of a shared-memory message) with `memfd` attached,
/// waiting for room or not as `wait` says. Returns the header bytes left
/// unwritten (only ever with [`Wait::No`]) and whether the descriptor
/// went: it goes with the first byte, so it has gone unless nothing at
/// all was written.
pub(crate) fn write_shared(
    socket: &Socket,
    header: &[u8],
    memfd: &OwnedFd,
    wait: Wait,
) -> io::Result<(Vec<u8>, bool)> {
    loop {
        match socket.send_with_fd(&[IoSlice::new(header)], memfd.as_fd(), wait) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(sent) => {
                let mut rest = [IoSlice::new(&header[sent..])];
                let mut bufs = &mut rest[..];
                // An advanced slice that emptied drops out of `bufs`.
                IoSlice::advance_slices(&mut bufs, 0);
                write_slices(socket, &mut bufs, wait)?;
                let unwritten = bufs.iter().flat_map(|buf| buf.iter().copied());
                return Ok((unwritten.collect(), true));
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if wait == Wait::No && err.kind() == io::ErrorKind::WouldBlock => {
                return Ok((header.to_vec(), false));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Writes the rest of a message that [`try_write_message`] began, waiting
/// for room as needed.
pub(crate) fn write_rest(socket: &Socket, rest: &[u8]) -> io::Result<()> {
    write_all(socket, &mut [IoSlice::new(rest)])
}

/// Writes what the socket takes at once of the rest of a message that
/// [`try_write_message`] began, and returns how many bytes went out.
pub(crate) fn try_write_rest(socket: &Socket, rest: &[u8]) -> io::Result<usize> {
    let mut slices = [IoSlice::new(rest)];
    let mut bufs = &mut slices[..];
    write_slices(socket, &mut bufs, Wait::No)?;
    Ok(rest.len() - bufs.iter().map(|b| b.len()).sum::<usize>())
}

pub(crate) fn write_all(socket: &Socket, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    write_slices(socket, &mut bufs, Wait::ForRoom)
}

/// Writes `bufs`, advancing them past what went out. With [`Wait::No`] it
/// stops when the socket is full, leaving the unwritten part in `bufs`.
fn write_slices(socket: &Socket, bufs: &mut &mut [IoSlice<'_>], wait: Wait) -> io::Result<()> {
    while !bufs.is_empty() {
        match socket.send(bufs, wait) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(bufs, n),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) if wait == Wait::No && err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Whether a read error means that the other end is gone. A peer that
/// closes (or dies) while data we sent it is still unread resets the
/// connection, Unix sockets included: that is its end of file, reported
/// once, after everything it sent has been read.
pub(crate) fn is_reset(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::ConnectionReset
}

/// Reads until `buf` is full. Returns how many bytes arrived before end of
/// file (or a reset, which is the same for us) if it came first.
fn read_full(socket: &Socket, buf: &mut [u8]) -> Result<Option<usize>> {
    fill_with(buf.len(), |filled| socket.read(&mut buf[filled..]))
}

/// Fills a `len`-byte buffer with `read`, which is told how much is
/// filled and returns how much more it read, as [`read_full`] does.
fn fill_with(
    len: usize,
    mut read: impl FnMut(usize) -> io::Result<usize>,
) -> Result<Option<usize>> {
    let mut filled = 0;
    while filled < len {
        // Inside a message a signal must not cost us our place in the
        // stream: retry rather than return with half a message read.
        match sys::retry_interrupted(|| read(filled)) {
            Ok(0) => return Ok(Some(filled)),
            Ok(n) => filled += n,
            Err(err) if is_reset(&err) => return Ok(Some(filled)),
            Err(err) => {
                let context = format!("receive ({filled} of {len} bytes read)");
                return Err(Error::io(err, context));
            }
        }
    }
    Ok(None)
}

pub(crate) fn truncated(what: &str, expected: u64, got: usize) -> Error {
    Error::new(
        ErrorKind::Truncated,
        format!("{what}: expected {expected} bytes, the other end closed after {got}"),
    )
}

/// Reads a message header and returns the payload length. A clean end of
/// file before the first byte is [`ErrorKind::Eof`].
pub(crate) fn read_header(socket: &Socket) -> Result<u64> {
    let mut short = [0u8; 4];
    match read_full(socket, &mut short)? {
        None => {}
        Some(0) => return Err(Error::new(ErrorKind::Eof, "")),
        Some(got) => return Err(truncated("message header", 4, got)),
    }
    match short_header_len(short)? {
        Some(len) => Ok(len),
        None => {
            let mut long = [0u8; 8];
            if let Some(got) = read_full(socket, &mut long)? {
                return Err(truncated("long message header", 12, 4 + got));
            }
            Ok(u64::from_be_bytes(long))
        }
    }
}

/// The payload length in the first four bytes of a header, or `None` for
/// `-1`: the length is in the eight bytes that follow.
pub(crate) fn short_header_len(short: [u8; 4]) -> Result<Option<u64>> {
    match i32::from_be_bytes(short) {
        len @ 0.. => Ok(Some(len as u64)),
        -1 => Ok(None),
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

/// A header read by [`read_header_with_fds`].
#[derive(Debug)]
pub(crate) enum Header {
    /// A message whose payload follows in the stream.
    Stream(u64),
    /// A shared-memory message: its length and the descriptors that came
    /// with its header (one, from an honest peer).
    Shared { len: u64, fds: Vec<OwnedFd> },
    /// A message in a recyclable memfd: its length, its generation and the
    /// descriptors that came with its header.
    Recycled {
        len: u64,
        generation: u64,
        fds: Vec<OwnedFd>,
    },
}

/// [`read_header`] for an end that accepts shared-memory messages: reads
/// with `recvmsg` so that descriptors sent with the header are caught.
/// Those that come with an ordinary header were not announced, and are
/// closed here.
pub(crate) fn read_header_with_fds(socket: &Socket) -> Result<Header> {
    let mut fds = Vec::new();
    let mut short = [0u8; 4];
    match read_full_with_fds(socket, &mut short, &mut fds)? {
        None => {}
        Some(0) => return Err(Error::new(ErrorKind::Eof, "")),
        Some(got) => return Err(truncated("message header", 4, got)),
    }
    let marker = i32::from_be_bytes(short);
    let len = match short_header_len(short) {
        Ok(Some(len)) => len,
        // The long form, or a marker, whose length is always long.
        Ok(None) => read_long_len(socket, &mut fds)?,
        Err(_) if matches!(marker, SHARED_MARKER | RECYCLED_MARKER) => {
            read_long_len(socket, &mut fds)?
        }
        Err(err) => return Err(err),
    };
    if marker == SHARED_MARKER {
        return Ok(Header::Shared { len, fds });
    }
    if marker == RECYCLED_MARKER {
        let generation = read_header_u64(socket, &mut fds, 12)?;
        return Ok(Header::Recycled {
            len,
            generation,
            fds,
        });
    }
    if !fds.is_empty() {
        tracing::debug!(
            count = fds.len(),
            "closed descriptors sent with an ordinary message"
        );
    }
    Ok(Header::Stream(len))
}

/// The 8-byte length after a 4-byte header that announced one.
fn read_long_len(socket: &Socket, fds: &mut Vec<OwnedFd>) -> Result<u64> {
    read_header_u64(socket, fds, 4)
}

/// An 8-byte big-endian field of a header of which `read` bytes came.
fn read_header_u64(socket: &Socket, fds: &mut Vec<OwnedFd>, read: usize) -> Result<u64> {
    let mut long = [0u8; 8];
    if let Some(got) = read_full_with_fds(socket, &mut long, fds)? {
        return Err(truncated(
            "long message header",
            read as u64 + 8,
            read + got,
        ));
    }
    Ok(u64::from_be_bytes(long))
}

/// [`read_full`], collecting the descriptors that arrive into `fds`.
fn read_full_with_fds(
    socket: &Socket,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> Result<Option<usize>> {
    fill_with(buf.len(), |filled| {
        socket.read_with_fds(&mut buf[filled..], fds)
    })
}

/// How much room to set aside for the next read of a `len`-byte payload of
/// which `received` bytes have arrived (see [`MIN_CHUNK`]).
pub(crate) fn next_chunk(received: usize, len: usize) -> usize {
    received.clamp(MIN_CHUNK, MAX_CHUNK).min(len - received)
}

/// Reads a `len`-byte payload into `buf`, which must be exactly that long.
pub(crate) fn read_payload_into(socket: &Socket, buf: &mut [u8]) -> Result<()> {
    match read_full(socket, buf)? {
        None => Ok(()),
        Some(got) => Err(truncated("message", buf.len() as u64, got)),
    }
}

/// [`read_payload_into`] for memory not yet initialised: on success all
/// of `buf` is filled.
pub(crate) fn read_payload_into_uninit(socket: &Socket, buf: &mut Unfilled<'_>) -> Result<()> {
    match fill_with(buf.len(), |_| buf.fill(|rest| socket.read_uninit(rest)))? {
        None => Ok(()),
        Some(got) => Err(truncated("message", buf.len() as u64, got)),
    }
}

/// Reads what has arrived of a `whole`-byte payload, of which `before`
/// bytes were read, into the start of `buf`, at least one byte, and
/// returns how many. The other end closing first is
/// [`ErrorKind::Truncated`].
pub(crate) fn read_arrived(
    socket: &Socket,
    buf: &mut Unfilled<'_>,
    whole: usize,
    before: usize,
) -> Result<usize> {
    match sys::retry_interrupted(|| buf.fill(|rest| socket.read_uninit(rest))) {
        Ok(0) => Err(truncated("message", whole as u64, before)),
        Ok(n) => Ok(n),
        Err(err) if is_reset(&err) => Err(truncated("message", whole as u64, before)),
        Err(err) => {
            let context = format!("receive {whole}-byte message ({before} read)");
            Err(Error::io(err, context))
        }
    }
}

/// Reads a `len`-byte payload (or the rest of one), appending it to
/// `out`. The buffer grows a chunk at a time as bytes arrive, whatever
/// length the header claimed (see [`MIN_CHUNK`]). On error `out` is cut
/// back to what it held.
pub(crate) fn read_payload(socket: &Socket, len: usize, out: &mut Vec<u8>) -> Result<()> {
    read_payload_part(socket, 0, len, out)
}

/// [`read_payload`] of the `len` bytes that follow the first `before`
/// bytes of a payload, which were read apart: errors speak of the whole
/// payload.
pub(crate) fn read_payload_part(
    socket: &Socket,
    before: usize,
    len: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    let start = out.len();
    while out.len() - start < len {
        let received = out.len() - start;
        let chunk = next_chunk(received, len);
        out.reserve_exact(chunk);
        // Reading at most `chunk` bytes keeps `read_to_end` from growing the
        // buffer on its own; it fills the reserved room without zeroing it
        // first and retries on EINTR.
        match socket.take(chunk as u64).read_to_end(out) {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if is_reset(&err) => break,
            Err(err) => {
                let whole = before + len;
                let context = format!("receive {whole}-byte message ({} read)", before + received);
                out.truncate(start);
                return Err(Error::io(err, context));
            }
        }
    }
    let got = out.len() - start;
    if got < len {
        out.truncate(start);
        return Err(truncated("message", (before + len) as u64, before + got));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_of(len: usize) -> Vec<u8> {
        let mut room = [0u8; HEADER_ROOM];
        let used = put_header(len, &mut room);
        room[HEADER_ROOM - used..].to_vec()
    }

    #[test]
    fn short_header_matches_cpython() {
        // struct.pack("!i", 9)
        assert_eq!(header_of(9), [0, 0, 0, 9]);
        assert_eq!(header_of(SHORT_FORM_MAX), [0x7f, 0xff, 0xff, 0xff]);
    }

    #[test]
    fn long_header_matches_cpython() {
        // struct.pack("!i", -1) + struct.pack("!Q", 2**31)
        assert_eq!(
            header_of(1 << 31),
            [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0x80, 0, 0, 0]
        );
    }

    #[test]
    fn small_message_is_one_write_of_header_and_payload() {
        let (a, b) = Socket::pair().unwrap();
        let mut scratch = Vec::new();
        write_message(&a, b"thank you", &mut scratch).unwrap();
        let mut raw = [0u8; 64];
        let n = b.read(&mut raw).unwrap();
        assert_eq!(&raw[..n], b"\0\0\0\x09thank you");
    }

    #[test]
    fn reserved_write_puts_header_in_place() {
        let (a, b) = Socket::pair().unwrap();
        let mut buf = vec![0u8; HEADER_ROOM];
        buf.extend_from_slice(b"xyz");
        write_reserved(&a, &mut buf).unwrap();
        let len = read_header(&b).unwrap();
        let mut out = Vec::new();
        read_payload(&b, len as usize, &mut out).unwrap();
        assert_eq!(out, b"xyz");
    }

    #[test]
    fn long_form_header_is_read() {
        let (a, b) = Socket::pair().unwrap();
        a.write(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 3])
            .unwrap();
        assert_eq!(read_header(&b).unwrap(), 3);
    }

    #[test]
    fn negative_length_other_than_minus_one_is_protocol_error() {
        let (a, b) = Socket::pair().unwrap();
        a.write(&(-2i32).to_be_bytes()).unwrap();
        assert_eq!(read_header(&b).unwrap_err().kind(), ErrorKind::Protocol);
    }

    #[test]
    fn eof_before_header_is_clean_eof_and_partial_header_is_truncated() {
        let (a, b) = Socket::pair().unwrap();
        drop(a);
        assert_eq!(read_header(&b).unwrap_err().kind(), ErrorKind::Eof);

        let (a, b) = Socket::pair().unwrap();
        a.write(&[0, 0]).unwrap();
        drop(a);
        assert_eq!(read_header(&b).unwrap_err().kind(), ErrorKind::Truncated);
    }

    #[test]
    fn huge_claimed_length_allocates_only_a_chunk() {
        let (a, b) = Socket::pair().unwrap();
        a.write(b"only eleven").unwrap();
        drop(a);
        let mut out = Vec::new();
        let err = read_payload(&b, 1 << 40, &mut out).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated);
        assert!(err.to_string().contains("after 11"), "{err}");
        assert!(out.capacity() <= MIN_CHUNK + 11, "{}", out.capacity());
    }

    #[test]
    fn memory_for_a_lying_header_stays_within_a_chunk_of_what_arrived() {
        for sent in [MIN_CHUNK + 1, 3 * MIN_CHUNK + 5, 40 * MIN_CHUNK + 3] {
            let (a, b) = Socket::pair().unwrap();
            let writer = std::thread::spawn(move || {
                let data = vec![1u8; sent];
                let mut written = 0;
                while written < sent {
                    written += a.write(&data[written..]).unwrap();
                }
            });
            let mut out = Vec::new();
            let err = read_payload(&b, 1 << 30, &mut out).unwrap_err();
            writer.join().unwrap();
            assert_eq!(err.kind(), ErrorKind::Truncated);
            let bound = sent + sent.clamp(MIN_CHUNK, MAX_CHUNK);
            assert!(out.capacity() <= bound, "{sent}: {}", out.capacity());
            assert!(
                out.capacity() <= sent + MAX_CHUNK,
                "{sent}: {}",
                out.capacity()
            );
        }
    }

    #[test]
    fn payloads_around_chunk_boundaries_arrive_whole() {
        for len in [
            0,
            1,
            MIN_CHUNK - 1,
            MIN_CHUNK,
            MIN_CHUNK + 1,
            5 * MIN_CHUNK + 7,
        ] {
            let (a, b) = Socket::pair().unwrap();
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let expected = data.clone();
            let writer = std::thread::spawn(move || {
                let mut scratch = Vec::new();
                write_message(&a, &data, &mut scratch).unwrap();
            });
            let got = read_header(&b).unwrap() as usize;
            let mut out = Vec::new();
            read_payload(&b, got, &mut out).unwrap();
            writer.join().unwrap();
            assert_eq!(out, expected, "{len}");
        }
    }
}
