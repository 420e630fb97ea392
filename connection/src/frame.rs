//! The framing core's ([`crate::proto::frame`]) socket reads and writes:
//! reads headers and payloads, and writes [`SendPlan`]s, waiting as long
//! as it takes (the blocking `Connection`) or not ([`Wait::No`]: the
//! [`Arriving`](crate::nowait::Arriving) of `nowait.rs`, which keeps what
//! arrived between calls). A signal never costs the stream its place
//! ([`sys::retry_interrupted`]), and a reset connection is the other end's
//! end of file ([`sys::reset_is_end`]).

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::error::Result;
use crate::proto::frame::{self, Header, HeaderDecoder, Payload, SendPlan};
use crate::read_ahead::Reader;
use crate::sys::{self, Socket, Unfilled, Wait};

/// Sends `buf[frame::HEADER_ROOM..]` as one message, writing its header
/// into the room in front of it so that header and payload go out in a
/// single write.
pub(crate) fn write_reserved(socket: &Socket, buf: &mut [u8]) -> io::Result<()> {
    let start = frame::frame_in_place(buf);
    write_plan(
        socket,
        &mut SendPlan::pair(&[], &buf[start..]),
        Wait::ForRoom,
    )
}

/// Sends `payload` as one message, waiting for room or not as `wait`
/// says, and returns the bytes of the framed message (header and payload)
/// that were not written: empty when all of it went out. `scratch` is
/// reused to join header and payload of a small message.
pub(crate) fn write_message(
    socket: &Socket,
    payload: &[u8],
    scratch: &mut Vec<u8>,
    wait: Wait,
) -> io::Result<Vec<u8>> {
    let mut plan = SendPlan::joined(payload, scratch);
    write_plan(socket, &mut plan, wait)?;
    Ok(plan.unsent())
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
    let mut plan = SendPlan::pair(&[], header);
    match sys::retry_interrupted(|| socket.send_with_fd(&plan.slices(), memfd.as_fd(), wait)) {
        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
        Ok(sent) => {
            plan.advance(sent);
            write_plan(socket, &mut plan, wait)?;
            Ok((plan.unsent(), true))
        }
        Err(err) if wait == Wait::No && err.kind() == io::ErrorKind::WouldBlock => {
            Ok((header.to_vec(), false))
        }
        Err(err) => Err(err),
    }
}

/// Writes the rest of a message that [`write_message`] began,
/// waiting for room or not as `wait` says, and returns how many of its
/// bytes went out (all of them with [`Wait::ForRoom`]).
pub(crate) fn write_rest(socket: &Socket, rest: &[u8], wait: Wait) -> io::Result<usize> {
    let mut plan = SendPlan::pair(&[], rest);
    write_plan(socket, &mut plan, wait)?;
    Ok(plan.sent())
}

/// Writes `plan`, counting what went out. With [`Wait::No`] it stops when
/// the socket is full, leaving the rest in `plan`.
pub(crate) fn write_plan(socket: &Socket, plan: &mut SendPlan<'_>, wait: Wait) -> io::Result<()> {
    while !plan.is_done() {
        match sys::retry_interrupted(|| socket.send(&plan.slices(), wait)) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => plan.advance(n),
            Err(err) if wait == Wait::No && err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// Reads a message header and returns the payload length. A clean end of
/// file before the first byte is [`ErrorKind::Eof`](crate::ErrorKind::Eof).
/// For tests, which read what they wrote raw.
#[cfg(test)]
pub(crate) fn read_header(socket: &Socket) -> Result<u64> {
    let mut reader = Reader::direct(socket);
    match read_any_header(
        &mut reader,
        &mut HeaderDecoder::new(false),
        None,
        Wait::ForRoom,
    )? {
        Some(Header::Stream(len)) => Ok(len),
        other => unreachable!("{other:?} from a blocking decoder that refuses shared memory"),
    }
}

/// Reads on in the header `decoder` holds, waiting for its bytes or not
/// as `wait` says, and returns it once it is whole; `None` (only without
/// waiting): the rest has not arrived yet. With `fds`, for an end that
/// accepts shared-memory messages, it reads with `recvmsg` so that
/// descriptors sent with the header are caught there. A clean end of file
/// before the first byte is [`ErrorKind::Eof`](crate::ErrorKind::Eof).
pub(crate) fn read_any_header(
    reader: &mut Reader<'_>,
    decoder: &mut HeaderDecoder,
    mut fds: Option<&mut Vec<OwnedFd>>,
    wait: Wait,
) -> Result<Option<Header>> {
    loop {
        let room = decoder.unfilled();
        let read = arrived(wait, || match fds.as_deref_mut() {
            Some(fds) => reader.recv_with_fds(room, fds, wait),
            None => reader.recv(room, wait),
        });
        let header = match read {
            Ok(None) => return Ok(None),
            Ok(Some(0)) => return Err(decoder.end_of_stream()),
            Ok(Some(n)) => decoder.received(n)?,
            Err(err) => return Err(decoder.io_error(err)),
        };
        if header.is_some() {
            return Ok(header);
        }
    }
}

/// Reads pieces of `payload` with `read` (which reads once into the
/// memory after what arrived), waiting for them or not as `wait` says,
/// until it is whole (`true`), or nothing more has arrived, or `budget`
/// bytes went by. The other end closing first is
/// [`ErrorKind::Truncated`](crate::ErrorKind::Truncated).
pub(crate) fn read_pieces(
    payload: &mut Payload,
    budget: usize,
    wait: Wait,
    mut read: impl FnMut(&Payload) -> io::Result<usize>,
) -> Result<bool> {
    let start = payload.got();
    while !payload.is_complete() {
        if payload.got() - start >= budget {
            return Ok(false);
        }
        match arrived(wait, || read(payload)) {
            Ok(None) => return Ok(false),
            Ok(Some(n)) => payload.arrived(n)?,
            Err(err) => return Err(payload.io_error(err)),
        }
    }
    Ok(true)
}

/// Reads once into the room `payload` sets aside after `out`'s bytes
/// ([`Payload::make_room`]), waiting or not as `wait` says, and returns
/// how many bytes arrived.
pub(crate) fn append_arrived(
    reader: &mut Reader<'_>,
    payload: &Payload,
    out: &mut Vec<u8>,
    wait: Wait,
) -> io::Result<usize> {
    let room = payload.make_room(out);
    sys::append_filled(out, room, |spare| {
        spare.fill(|rest| reader.recv_uninit(rest, wait))
    })
}

/// Reads a payload into `buf`, which must be exactly as long.
pub(crate) fn read_payload_into(reader: &mut Reader<'_>, buf: &mut [u8]) -> Result<()> {
    let mut payload = Payload::new(buf.len(), 0);
    read_pieces(&mut payload, usize::MAX, Wait::ForRoom, |payload| {
        reader.recv(&mut buf[payload.got()..], Wait::ForRoom)
    })
    .map(drop)
}

/// [`read_payload_into`] for memory not yet initialised: on success all
/// of `buf` is filled.
pub(crate) fn read_payload_into_uninit(
    reader: &mut Reader<'_>,
    buf: &mut Unfilled<'_>,
) -> Result<()> {
    let mut got = 0;
    while got < buf.len() {
        got += read_arrived(reader, buf, buf.len(), got)?;
    }
    Ok(())
}

/// Reads what has arrived of a `whole`-byte payload, of which `before`
/// bytes were read, into the start of `buf`, at least one byte, and
/// returns how many. The other end closing first is
/// [`ErrorKind::Truncated`](crate::ErrorKind::Truncated).
pub(crate) fn read_arrived(
    reader: &mut Reader<'_>,
    buf: &mut Unfilled<'_>,
    whole: usize,
    before: usize,
) -> Result<usize> {
    let mut payload = Payload::new(whole, before);
    read_pieces(&mut payload, 1, Wait::ForRoom, |_| {
        buf.fill(|rest| reader.recv_uninit(rest, Wait::ForRoom))
    })?;
    Ok(payload.got() - before)
}

/// Reads the `len` bytes of a payload that follow its first `before`
/// bytes (read apart, if any: errors speak of the whole payload),
/// appending them to `out`. The buffer grows a chunk at a time as bytes
/// arrive, whatever length the header claimed (see [`frame::MIN_CHUNK`]).
/// On error `out` is cut back to what it held.
pub(crate) fn read_payload(
    reader: &mut Reader<'_>,
    before: usize,
    len: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    let start = out.len();
    let mut payload = Payload::new(before + len, before);
    let read = read_pieces(&mut payload, usize::MAX, Wait::ForRoom, |payload| {
        append_arrived(reader, payload, out, Wait::ForRoom)
    });
    read.map(drop).inspect_err(|_| out.truncate(start))
}

/// What a read gave: `None` when, not waiting, nothing had arrived; `0`
/// at end of file (a reset peer's end included, see
/// [`sys::reset_is_end`]). A signal never costs the stream its place.
pub(crate) fn arrived(
    wait: Wait,
    read: impl FnMut() -> io::Result<usize>,
) -> io::Result<Option<usize>> {
    match sys::reset_is_end(sys::retry_interrupted(read)) {
        Ok(n) => Ok(Some(n)),
        Err(err) if wait == Wait::No && err.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::proto::frame::{HEADER_ROOM, MAX_CHUNK, MIN_CHUNK};

    #[test]
    fn small_message_is_one_write_of_header_and_payload() {
        let (a, b) = Socket::pair().unwrap();
        let mut scratch = Vec::new();
        write_message(&a, b"thank you", &mut scratch, Wait::ForRoom).unwrap();
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
        read_payload(&mut Reader::direct(&b), 0, len as usize, &mut out).unwrap();
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
        let err = read_payload(&mut Reader::direct(&b), 0, 1 << 40, &mut out).unwrap_err();
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
            let err = read_payload(&mut Reader::direct(&b), 0, 1 << 30, &mut out).unwrap_err();
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
                write_message(&a, &data, &mut scratch, Wait::ForRoom).unwrap();
            });
            let got = read_header(&b).unwrap() as usize;
            let mut out = Vec::new();
            read_payload(&mut Reader::direct(&b), 0, got, &mut out).unwrap();
            writer.join().unwrap();
            assert_eq!(out, expected, "{len}");
        }
    }
}
