//! [`Connection`]'s receives: the next header (or the one an over-limit
//! receive left pending), then its payload read whole, into the caller's
//! memory, decoded as it arrives, or taken from shared memory; and the
//! state between messages that a failed read leaves (boundaries lost).

use serde::de::DeserializeOwned;

use super::{keep_buffer, Connection};
use crate::arriving::{decode_arriving, FromShared, FromSocket, Received};
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::frame;
use crate::nowait;
use crate::proto::frame::{in_memory_len, room_after, too_large, HeaderDecoder};
use crate::read_ahead::Reader;
use crate::shared::SharedView;
use crate::sys::{Unfilled, Wait};

/// [`Connection::recv`] keeps the buffer of a large message it decoded,
/// up to this size, for the next receive, and frees it at the next
/// receive of a small message: a fresh 16 MiB buffer costs as much in page
/// faults as the transfer itself.
const LARGE_SCRATCH_KEEP: usize = 64 << 20;

/// [`Connection::recv`] decodes a payload at least this long from the
/// socket as it arrives (see `crate::arriving`), rather than reading it
/// whole first: decoding then overlaps the transfer, a long byte string
/// lands straight in the `ByteBuf`, `String` or `Vec<u8>` that keeps it,
/// and no buffer as large as the payload is needed.
const DECODE_AS_IT_ARRIVES: u64 = 64 * 1024;

impl Connection {
    /// Receives one message and decodes it as a `T`.
    ///
    /// Fails with [`ErrorKind::Eof`] when the other end closed and nothing
    /// is left, and with [`ErrorKind::Decode`] when the message is not a `T`;
    /// the message is consumed either way and the next one is readable.
    ///
    /// Only receive values from a peer you trust: see the crate docs on
    /// security.
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::ErrorKind;
    ///
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.send("not a number")?;
    /// a.send(&42u64)?;
    /// assert_eq!(b.recv::<u64>().unwrap_err().kind(), ErrorKind::Decode);
    /// assert_eq!(b.recv::<u64>()?, 42);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let len = self.next_message_len(self.max_message_size)?;
        if len < DECODE_AS_IT_ARRIVES {
            return self.decode_payload(len, |payload: &[u8]| {
                codec::decode(payload).map_err(|err| {
                    if crate::pickle::looks_like_pickle(payload) {
                        err.context("this looks like a Python pickle: use recv_pickle")
                    } else {
                        err
                    }
                })
            });
        }
        let len = in_memory_len(len)?;
        let window = std::mem::take(&mut self.scratch);
        let received = match self.shared.take_payload() {
            // Arrived whole; its reads leave the stream where it was.
            Some(memfd) => {
                let received = decode_arriving::<T, _>(FromShared(&memfd), len, window);
                Received {
                    broken: false,
                    ..received
                }
            }
            None => decode_arriving::<T, _>(FromSocket(self.reader()), len, window),
        };
        keep_buffer(&mut self.scratch, received.window, LARGE_SCRATCH_KEEP);
        match received.value {
            Err(err) if received.broken => Err(self.between.lose(err)),
            value => value,
        }
    }

    /// Receives one message holding a pickle, such as a Python peer's
    /// `Connection.send(obj)` writes, and decodes it as a `T`.
    ///
    /// Only plain data is read (see [`pickle`](crate::pickle) for the type
    /// mapping and the bounds): a pickle naming a class or a function is
    /// an [`ErrorKind::Decode`] error saying which, and nothing is run. The
    /// message is consumed either way and the next one is readable.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::HashMap;
    ///
    /// let (mut a, mut b) = connection::pipe()?;
    /// // Python's conn.send({"x": 1}) with the default protocol:
    /// a.send_bytes(b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01x\x94K\x01s.")?;
    /// let value: HashMap<String, i64> = b.recv_pickle()?;
    /// assert_eq!(value["x"], 1);
    ///
    /// // Without a type for the message: any plain object, exactly.
    /// use connection::pickle::Value;
    /// a.send_bytes(b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01x\x94K\x01s.")?;
    /// let value: Value = b.recv_pickle()?;
    /// assert_eq!(format!("{value:?}"), "{'x': 1}");
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn recv_pickle<T: DeserializeOwned>(&mut self) -> Result<T> {
        self.recv_decoded(crate::pickle::decode)
    }

    /// Reads one whole message and decodes it with `decode`.
    fn recv_decoded<T>(&mut self, decode: impl FnOnce(&[u8]) -> Result<T>) -> Result<T> {
        let len = self.next_message_len(self.max_message_size)?;
        self.decode_payload(len, decode)
    }

    /// Reads the `len`-byte payload whose header was read and decodes it
    /// with `decode`.
    fn decode_payload<T>(
        &mut self,
        len: u64,
        decode: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<T> {
        if let Some(memfd) = self.shared.take_payload() {
            // Decoded straight from the sender's pages: no copy.
            return decode(&memfd.map(in_memory_len(memfd.len)?)?);
        }
        let mut buf = std::mem::take(&mut self.scratch);
        let result = self.read_payload(len, &mut buf).and_then(|()| decode(&buf));
        self.keep_scratch(buf);
        result
    }

    /// Receives one message as bytes.
    ///
    /// Fails with [`ErrorKind::Eof`] when the other end closed and nothing
    /// is left, and [`ErrorKind::MessageTooLarge`] when the message exceeds
    /// [`max_message_size`](Connection::max_message_size).
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>> {
        self.recv_bytes_max(usize::MAX)
    }

    /// Receives one message as bytes, refusing one longer than `max_len`
    /// (Python's `recv_bytes(maxlength)`).
    ///
    /// A longer message fails with [`ErrorKind::MessageTooLarge`] and stays
    /// where it was: unlike Python, which closes the connection, nothing is
    /// lost, and the next receive with a large enough limit gets it.
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::ErrorKind;
    ///
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.send_bytes(b"twelve bytes")?;
    /// let err = b.recv_bytes_max(4).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
    /// assert_eq!(b.recv_bytes_max(100)?, b"twelve bytes");
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn recv_bytes_max(&mut self, max_len: usize) -> Result<Vec<u8>> {
        let limit = self.max_message_size.min(max_len as u64);
        let len = self.next_message_len(limit)?;
        let mut out = Vec::new();
        self.read_payload(len, &mut out)?;
        Ok(out)
    }

    /// Receives one message as bytes if it has arrived whole, without
    /// waiting for it: `Ok(None)` when it has not (yet). What arrived of
    /// it is kept in the connection until the next call, so that an event
    /// loop calls this whenever the descriptor polls readable. Memory grows
    /// with the bytes that arrived, not with the length a header claims,
    /// and a call reads at most a few MiB of a payload, so that one large
    /// message does not hold up the loop's other peers (the descriptor
    /// still polls readable for the rest).
    ///
    /// A message begun this way must be finished this way: a blocking
    /// receive fails with [`ErrorKind::InvalidInput`] meanwhile. A message
    /// over [`max_message_size`](Connection::max_message_size) fails with
    /// [`ErrorKind::MessageTooLarge`] and, unlike with
    /// [`recv_bytes`](Connection::recv_bytes), ends the stream (it is not
    /// read). [`ErrorKind::Eof`] when the other end closed between messages.
    /// A message that a blocking receive left pending (over its limit) is
    /// the one this receives.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// assert_eq!(b.try_recv_bytes()?, None);
    /// a.send_bytes(b"ready")?;
    /// assert_eq!(b.try_recv_bytes()?.as_deref(), Some(&b"ready"[..]));
    /// drop(a);
    /// assert_eq!(b.try_recv_bytes().unwrap_err().kind(), connection::ErrorKind::Eof);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn try_recv_bytes(&mut self) -> Result<Option<Vec<u8>>> {
        self.direction.check_receive()?;
        self.between.check()?;
        if !self.arriving.as_ref().is_some_and(|a| a.has_payload()) {
            // A message a blocking receive left pending comes first.
            let len = match self.between.pending_len.take() {
                Some(len) => len,
                None => match self.try_read_header()? {
                    Some(len) => len,
                    None => return Ok(None),
                },
            };
            let limit = self.max_message_size;
            if let Some(memfd) = self.shared.take_payload() {
                // Its memfd is dropped unread; the stream is at the next.
                if len > limit {
                    return Err(too_large(len, limit, limit));
                }
                let mut out = Vec::new();
                memfd.append_to_vec(0, in_memory_len(len)?, &mut out)?;
                return Ok(Some(out));
            }
            if len > limit {
                self.between.broken = Some(ErrorKind::MessageTooLarge);
                return Err(too_large(len, limit, limit));
            }
            let arriving = self.arriving.get_or_insert_with(Box::default);
            arriving.expect_payload(in_memory_len(len)?, nowait::FIRST_ROOM, Vec::new());
        }
        let arriving = self.arriving.get_or_insert_with(Box::default);
        let mut reader = Reader::new(&self.socket, &mut self.ahead);
        let read = arriving.read_payload(&mut reader, nowait::BYTES_PER_CALL);
        read.map_err(|err| {
            // The stream is lost with whatever arrived of the message.
            self.arriving = None;
            self.between.lose(err)
        })
    }

    /// [`read_header`](Connection::read_header) without waiting: what has
    /// arrived of a header goes into `arriving`, and once it is whole
    /// `shared` takes it in as it takes a blocking read's. `None`: the
    /// rest has not arrived yet.
    fn try_read_header(&mut self) -> Result<Option<u64>> {
        let arriving = self.arriving.get_or_insert_with(Box::default);
        let accepts = self.shared.accepts();
        let mut reader = Reader::new(&self.socket, &mut self.ahead);
        let (header, fds) = match arriving.read_header(&mut reader, accepts) {
            Ok(Some(whole)) => whole,
            Ok(None) => return Ok(None),
            Err(err) if err.kind() == ErrorKind::Eof => return Err(err),
            Err(err) => return Err(self.between.lose(err)),
        };
        self.shared.receive(header, fds).map(Some)
    }

    /// Receives one message into `buffer` at `offset` and returns its length.
    ///
    /// `offset` may be at most `buffer.len()`; past that the call fails with
    /// [`ErrorKind::InvalidInput`] before reading anything. A message longer
    /// than the room after `offset` fails with [`ErrorKind::BufferTooShort`],
    /// and the error carries the complete message
    /// ([`Error::into_message`]): nothing is lost.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.send_bytes(&[1, 2, 3])?;
    /// let mut buf = [0u8; 6];
    /// let n = b.recv_bytes_into(&mut buf, 2)?;
    /// assert_eq!((n, buf), (3, [0, 0, 1, 2, 3, 0]));
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn recv_bytes_into(&mut self, buffer: &mut [u8], offset: usize) -> Result<usize> {
        let room = room_after(buffer, offset)?;
        let len = self.next_message_len(self.max_message_size)?;
        self.receive_into_room(len, room)
    }

    /// Receives the `len`-byte payload whose header was just read into
    /// the start of `room` and returns `len`; a payload longer than `room`
    /// is read whole into an [`ErrorKind::BufferTooShort`] error instead.
    pub(crate) fn receive_into_room(&mut self, len: u64, room: &mut [u8]) -> Result<usize> {
        if len > room.len() as u64 {
            let mut message = Vec::new();
            self.read_payload(len, &mut message)?;
            return Err(Error::buffer_too_short(message, room.len()));
        }
        self.receive_payload_into(&mut room[..len as usize])?;
        Ok(len as usize)
    }

    /// Receives one message as a read-only [`SharedView`]: a mapping of
    /// the sender's memory when it came as a sealed memfd (a
    /// [`SharedBuf`](crate::SharedBuf): no copy), or an owned copy otherwise: the bytes read
    /// from the socket (small messages, or an end that does not use shared
    /// memory), or copied out of a recyclable memfd (what the copying
    /// calls send over their threshold), which its sender may write again
    /// and so is never mapped.
    ///
    /// Errors as [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.set_shared_memory_threshold(Some(1 << 20));
    /// a.send_bytes(&vec![9u8; 2 << 20])?;
    /// let view = b.recv_shared()?;
    /// assert!(!view.is_mapped()); // copied: its memfd will carry the next one
    /// assert!(view.iter().all(|&byte| byte == 9));
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn recv_shared(&mut self) -> Result<SharedView> {
        let len = self.next_message_len(self.max_message_size)?;
        if let Some(memfd) = self.shared.take_payload() {
            return memfd.map(in_memory_len(len)?);
        }
        let mut bytes = Vec::new();
        self.read_payload(len, &mut bytes)?;
        Ok(SharedView::owned(bytes))
    }

    /// Reads the next header (or takes the one left pending) and returns
    /// the payload's length if it is within `limit`. A message over the
    /// limit stays pending for the next call. A shared-memory payload is
    /// kept in `shared`, where the payload reads below find it.
    pub(crate) fn next_message_len(&mut self, limit: u64) -> Result<u64> {
        if self.arriving.as_ref().is_some_and(|a| a.is_partial()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "try_recv_bytes has begun to receive a message: finish it with try_recv_bytes",
            ));
        }
        let pending = self.between.pending_len.take();
        if pending.is_none() {
            // A payload that a receive left unread is no later message's.
            drop(self.shared.take_payload());
        }
        self.direction.check_receive()?;
        self.between.check()?;
        let len = match pending {
            Some(len) => len,
            None => self.read_header()?,
        };
        if len > limit {
            self.between.pending_len = Some(len);
            return Err(too_large(len, limit, self.max_message_size));
        }
        Ok(len)
    }

    /// Reads a header from the stream. Where shared memory was agreed, it
    /// is read with the descriptors that came with it, for `shared` to
    /// check.
    fn read_header(&mut self) -> Result<u64> {
        let (mut fds, accepts) = (Vec::new(), self.shared.accepts());
        let mut decoder = HeaderDecoder::new(accepts);
        let with_fds = accepts.then_some(&mut fds);
        let header =
            frame::read_any_header(&mut self.reader(), &mut decoder, with_fds, Wait::ForRoom);
        let header = header.map_err(|err| self.mark_broken(err))?;
        let header = header.expect("a read that waits returns a whole header");
        self.shared.receive(header, fds)
    }

    /// Reads the `len`-byte payload whose header was read into `out`. Any
    /// error here, as in every payload read, loses the stream's boundaries
    /// whatever its kind (an `Io` timeout set through the descriptor, say):
    /// the header is gone, and no later receive can find the next message.
    pub(crate) fn read_payload(&mut self, len: u64, out: &mut Vec<u8>) -> Result<()> {
        // `len` is at most max_message_size here; on a 32-bit target a
        // larger value cannot be held in memory anyway.
        let len = in_memory_len(len)?;
        if let Some(memfd) = self.shared.take_payload() {
            return memfd.append_to_vec(0, len, out);
        }
        let read = frame::read_payload(&mut self.reader(), 0, len, out);
        read.map_err(|err| self.between.lose(err))
    }

    /// Receives the payload of the message whose header
    /// [`next_message_len`](Connection::next_message_len) just returned
    /// into `out`, memory the caller provides that is exactly as long as
    /// the payload. Every receive into the caller's memory goes through
    /// here (`recv_bytes_into`, `recv_vec`, `recv_into_slice`), so that a
    /// transport other than the socket's bytes has one place to hook in.
    pub(crate) fn receive_payload_into(&mut self, out: &mut [u8]) -> Result<()> {
        if let Some(memfd) = self.shared.take_payload() {
            return memfd.read_into(out);
        }
        let read = frame::read_payload_into(&mut self.reader(), out);
        read.map_err(|err| self.between.lose(err))
    }

    /// [`receive_payload_into`](Connection::receive_payload_into) for
    /// memory not yet initialised, which only the socket can fill: `None`
    /// when the payload is shared memory, for the caller to initialise
    /// `out` and use `receive_payload_into`.
    pub(crate) fn receive_payload_into_uninit(
        &mut self,
        out: &mut Unfilled<'_>,
    ) -> Option<Result<()>> {
        if self.shared.has_payload() {
            return None;
        }
        let read = frame::read_payload_into_uninit(&mut self.reader(), out);
        Some(read.map_err(|err| self.between.lose(err)))
    }

    /// Reads the socket through what was read ahead of it (see
    /// `crate::read_ahead`).
    fn reader(&mut self) -> Reader<'_> {
        Reader::new(&self.socket, &mut self.ahead)
    }

    fn mark_broken(&mut self, err: Error) -> Error {
        if matches!(err.kind(), ErrorKind::Truncated | ErrorKind::Protocol) {
            return self.between.lose(err);
        }
        err
    }
}
