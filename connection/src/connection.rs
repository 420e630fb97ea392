//! [`Connection`]: one end of a message-oriented byte stream.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::arriving::{decode_arriving, FromShared, FromSocket, Received};
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::frame;
use crate::nowait;
use crate::proto::frame::{in_memory_len, too_large, Between, HEADER_ROOM};
use crate::shared::{self, SharedBuf, SharedView};
use crate::streaming;
use crate::sys::{self, PollFd, Socket, Unfilled, Wait};

/// The largest message a connection accepts unless told otherwise: 1 GiB.
///
/// Raise it with [`Connection::set_max_message_size`] to receive larger
/// messages; the format itself allows up to 2^64 - 1 bytes.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 30;

/// A scratch buffer that grew past this is freed after use rather than
/// kept, except by a receive of a large message (see [`LARGE_SCRATCH_KEEP`]).
const SCRATCH_KEEP: usize = 64 * 1024;

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

/// One end of a connection: sends and receives whole messages, either raw
/// bytes or serde-serializable values.
///
/// Made by [`pipe`](crate::pipe), [`one_way_pipe`](crate::one_way_pipe),
/// [`Listener::accept`](crate::Listener::accept),
/// [`Client::connect`](crate::Client::connect), from an inherited
/// descriptor with [`Connection::from_env`], or from any connected stream
/// socket with `From<OwnedFd>`.
///
/// There is no buffering in user space: a message is read from the kernel
/// only when asked for, so [`poll`](Connection::poll) and
/// [`wait`](crate::wait) are always accurate.
///
/// # Examples
///
/// ```
/// let (mut parent, mut child) = connection::pipe()?;
/// parent.send(&(1, "hello", None::<i32>))?;
/// let value: (i32, String, Option<i32>) = child.recv()?;
/// assert_eq!(value, (1, "hello".to_string(), None));
/// # Ok::<(), connection::Error>(())
/// ```
pub struct Connection {
    socket: Socket,
    direction: Direction,
    max_message_size: u64,
    /// A message whose header was read but whose payload was not, because
    /// it was larger than the receiving call allowed (its memfd waits in
    /// `shared` when it came as shared memory), and whether the stream lost
    /// its message boundaries (a truncated message or a malformed header:
    /// every later receive fails with it).
    between: Between,
    /// Large messages through memfds: the settings, the memfds, and the
    /// payload of the message being read when it came as one.
    shared: shared::Endpoint,
    scratch: Vec<u8>,
    /// What arrived of a message [`try_recv_bytes`](Connection::try_recv_bytes)
    /// has begun to receive; boxed, and made on its first call, so that
    /// the connections that never call it stay small.
    pub(crate) arriving: Option<Box<nowait::Arriving>>,
}

/// A [`Connection`]'s socket and the state of its stream, as
/// [`Connection::into_parts`] gives them.
#[cfg_attr(not(feature = "tokio"), allow(dead_code))]
pub(crate) struct Parts {
    pub(crate) socket: Socket,
    pub(crate) direction: Direction,
    pub(crate) max_message_size: u64,
    /// The receive state between messages.
    pub(crate) between: Between,
}

/// Which ways an end of a connection carries messages: both, or one (the
/// ends of a [`one_way_pipe`](crate::one_way_pipe)).
///
/// # Examples
///
/// ```
/// use connection::Direction;
///
/// let (reader, writer) = connection::one_way_pipe()?;
/// assert_eq!(reader.direction(), Direction::ReadOnly);
/// assert_eq!(writer.direction(), Direction::WriteOnly);
/// assert!(Direction::Both.can_receive() && Direction::Both.can_send());
/// # Ok::<(), connection::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sends and receives.
    Both,
    /// Only receives.
    ReadOnly,
    /// Only sends.
    WriteOnly,
}

impl Direction {
    /// Whether an end with this direction can receive.
    pub fn can_receive(self) -> bool {
        self != Direction::WriteOnly
    }

    /// Whether an end with this direction can send.
    pub fn can_send(self) -> bool {
        self != Direction::ReadOnly
    }

    /// [`ErrorKind::Closed`] unless an end with this direction can receive.
    pub(crate) fn check_receive(self) -> Result<()> {
        if self.can_receive() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Closed,
                "this end cannot receive (the write end of a one-way pipe)",
            ))
        }
    }

    /// [`ErrorKind::Closed`] unless an end with this direction can send.
    pub(crate) fn check_send(self) -> Result<()> {
        if self.can_send() {
            Ok(())
        } else {
            Err(Error::new(
                ErrorKind::Closed,
                "this end cannot send (the read end of a one-way pipe)",
            ))
        }
    }

    /// How [`Connection::pass_to_child`] writes it after the descriptor number.
    pub(crate) fn mode(self) -> &'static str {
        match self {
            Direction::Both => "rw",
            Direction::ReadOnly => "r",
            Direction::WriteOnly => "w",
        }
    }

    /// The direction [`mode`](Direction::mode) wrote, if it is one.
    pub(crate) fn from_mode(mode: &str) -> Option<Direction> {
        [Direction::Both, Direction::ReadOnly, Direction::WriteOnly]
            .into_iter()
            .find(|direction| direction.mode() == mode)
    }
}

impl Connection {
    pub(crate) fn new(socket: Socket, direction: Direction) -> Connection {
        Connection {
            socket,
            direction,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            between: Between::default(),
            shared: shared::Endpoint::new(),
            scratch: Vec::new(),
            arriving: None,
        }
    }

    /// An end that agreed with its peer to send large messages as shared
    /// memory (both ends of a `pipe()`).
    pub(crate) fn with_shared_memory(mut self) -> Connection {
        self.shared.agree();
        self
    }

    /// Takes the connection apart, receive state included, for a type that
    /// carries on with the same stream (the `tokio` feature's), which does
    /// not share memory: a shared-memory message left pending is dropped.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn into_parts(self) -> Parts {
        Parts {
            between: Between {
                pending_len: self
                    .between
                    .pending_len
                    .filter(|_| !self.shared.has_payload()),
                broken: self.between.broken,
            },
            socket: self.socket,
            direction: self.direction,
            max_message_size: self.max_message_size,
        }
    }

    /// Puts together what [`into_parts`](Connection::into_parts) took apart.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn from_parts(parts: Parts) -> Connection {
        let mut conn = Connection::new(parts.socket, parts.direction);
        conn.max_message_size = parts.max_message_size;
        conn.between = parts.between;
        conn
    }

    /// The constructor of old, for `listener.rs` only until it calls
    /// [`Connection::new`] (it is being rewritten on another branch, which
    /// this one leaves alone to keep the merge simple). Do not use.
    pub(crate) fn from_socket(socket: Socket, readable: bool, writable: bool) -> Connection {
        let direction = match (readable, writable) {
            (true, false) => Direction::ReadOnly,
            (false, true) => Direction::WriteOnly,
            _ => Direction::Both,
        };
        Connection::new(socket, direction)
    }

    /// Sends `value` as one message, encoded with serde (bincode).
    ///
    /// The value is encoded before anything is written: a value that cannot
    /// be encoded gives [`ErrorKind::Encode`] and leaves the connection as it was.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.send(&vec![1u32, 2, 3])?;
    /// assert_eq!(b.recv::<Vec<u32>>()?, [1, 2, 3]);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let limit = streaming::STREAM_ABOVE as usize;
        let sent = self.send_encoded(|buf| codec::encode_into_within(value, buf, limit))?;
        if !sent {
            // Too large for one buffer: stream it, once its length is known,
            // unless it goes as shared memory, which needs it whole.
            let len = codec::encoded_len(value)?;
            if self.shared.sends(len as usize) {
                return self.send_bytes(&codec::encode(value)?);
            }
            streaming::send_streamed(&self.socket, value, len)?;
        }
        Ok(())
    }

    /// Sends `value` as one message holding its pickle, which a Python
    /// peer's `Connection.recv()` turns into plain Python values (see
    /// [`pickle`](crate::pickle) for the type mapping).
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.send_pickle(&("add", 2, 3))?; // a Python peer's recv() gives ('add', 2, 3)
    /// let (op, x, y): (String, i32, i32) = b.recv_pickle()?;
    /// assert_eq!((op.as_str(), x + y), ("add", 5));
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn send_pickle<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.send_encoded(|buf| crate::pickle::encode_into(value, buf).map(|()| true))
            .map(drop)
    }

    /// Encodes with `encode` after room for the header, then sends, unless
    /// `encode` says (with `false`) that it did not encode the value:
    /// returns whether it sent.
    fn send_encoded(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> Result<bool>) -> Result<bool> {
        self.check_writable()?;
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        buf.resize(HEADER_ROOM, 0);
        let result = encode(&mut buf).and_then(|encoded| {
            if !encoded {
                return Ok(false);
            }
            let payload = &buf[HEADER_ROOM..];
            if let Some(sent) = self.shared.send_copy(&self.socket, payload, Wait::ForRoom) {
                return sent.map(|_| true);
            }
            frame::write_reserved(&self.socket, &mut buf)
                .map(|()| true)
                .map_err(|err| {
                    let len = buf.len() - HEADER_ROOM;
                    Error::send_failed(err, format!("send {len}-byte message"))
                })
        });
        self.keep_scratch(buf);
        result
    }

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
            None => decode_arriving::<T, _>(FromSocket(&self.socket), len, window),
        };
        self.keep_large_scratch(received.window);
        match received.value {
            Err(err) if received.broken => Err(self.lose_boundaries(err)),
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

    /// Sends `bytes` as one message.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// b.send_bytes(b"thank you")?;
    /// assert_eq!(a.recv_bytes()?, b"thank you");
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.check_writable()?;
        if let Some(sent) = self.shared.send_copy(&self.socket, bytes, Wait::ForRoom) {
            return sent.map(drop);
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = frame::write_message(&self.socket, bytes, &mut scratch)
            .map_err(|err| Error::send_failed(err, format!("send {}-byte message", bytes.len())));
        self.keep_scratch(scratch);
        result
    }

    /// Sends `bytes` as one message without ever waiting for the peer to
    /// read: writes what the socket buffer takes now, and returns the rest
    /// as an [`UnsentMessage`] if it did not all fit (`None` when the whole
    /// message went out).
    ///
    /// The message has then begun on the stream: its rest must be sent with
    /// [`send_unsent`](Connection::send_unsent), on this connection or a
    /// [clone](Connection::try_clone) of it (another thread's, typically),
    /// before any other message is sent, or the stream loses its message
    /// boundaries. An error means the connection is no longer usable for
    /// sending (typically [`ErrorKind::Eof`]: the other end closed).
    ///
    /// This is for a thread that serves several peers and must not stall on
    /// one that stopped reading: it sends directly when there is room, and
    /// hands what is left to a thread of its own.
    ///
    /// A message that goes as shared memory (see [`crate::shared`]) is
    /// copied into its memfd first; only its header (20 bytes) can then be
    /// left unsent, and the [`UnsentMessage`] holds the memfd until it goes.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// // Through the socket: as shared memory a message never fills it.
    /// a.set_shared_memory(false)?;
    /// // Small enough for the socket buffer: sent at once.
    /// assert!(a.try_send_bytes(b"hello")?.is_none());
    /// // Larger than any socket buffer, and nobody reads yet.
    /// let big = vec![7u8; 16 << 20];
    /// let rest = a.try_send_bytes(&big)?.expect("did not fit");
    /// assert!(rest.len() > 0 && rest.len() < big.len() + 4);
    /// let mut sender = a.try_clone()?;
    /// let finish = std::thread::spawn(move || sender.send_unsent(rest));
    /// assert_eq!(b.recv_bytes()?, b"hello");
    /// assert_eq!(b.recv_bytes()?, big);
    /// finish.join().unwrap()?;
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn try_send_bytes(&mut self, bytes: &[u8]) -> Result<Option<UnsentMessage>> {
        self.check_writable()?;
        if let Some(sent) = self.shared.send_copy(&self.socket, bytes, Wait::No) {
            let (rest, memfd) = sent?;
            return Ok(UnsentMessage::new(rest, bytes.len(), memfd));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let rest = frame::try_write_message(&self.socket, bytes, &mut scratch)
            .map_err(|err| Error::send_failed(err, format!("send {}-byte message", bytes.len())));
        self.keep_scratch(scratch);
        Ok(UnsentMessage::new(rest?, bytes.len(), None))
    }

    /// Sends the rest of a message begun by
    /// [`try_send_bytes`](Connection::try_send_bytes), waiting for the peer
    /// to read as [`send_bytes`](Connection::send_bytes) does.
    pub fn send_unsent(&mut self, unsent: UnsentMessage) -> Result<()> {
        self.continue_unsent(unsent, Wait::ForRoom).map(drop)
    }

    /// Sends what the socket takes at once of the rest of a message begun
    /// by [`try_send_bytes`](Connection::try_send_bytes), without waiting
    /// for the peer to read, and returns what is still unsent: for an
    /// event loop that goes on when the socket is writable again.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.set_shared_memory(false)?;
    /// let big = vec![7u8; 16 << 20];
    /// let mut rest = a.try_send_bytes(&big)?;
    /// let reader = std::thread::spawn(move || b.recv_bytes());
    /// while let Some(unsent) = rest {
    ///     // An event loop would wait for the socket to poll writable.
    ///     std::thread::sleep(std::time::Duration::from_millis(1));
    ///     rest = a.try_send_unsent(unsent)?;
    /// }
    /// assert_eq!(reader.join().unwrap()?, big);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn try_send_unsent(&mut self, unsent: UnsentMessage) -> Result<Option<UnsentMessage>> {
        self.continue_unsent(unsent, Wait::No)
    }

    fn continue_unsent(
        &mut self,
        mut unsent: UnsentMessage,
        wait: Wait,
    ) -> Result<Option<UnsentMessage>> {
        self.check_writable()?;
        if let Some(memfd) = unsent.memfd.take() {
            // Nothing of it went out yet: the whole header, with the memfd.
            let (rest, len) = (&unsent.rest, unsent.message_len);
            let (rest, memfd) = shared::send_memfd(&self.socket, memfd, rest, len, wait)?;
            return Ok(UnsentMessage::new(rest, len, memfd));
        }
        let unwritten = &unsent.rest[unsent.sent..];
        let sent = frame::write_rest(&self.socket, unwritten, wait).map_err(|err| {
            let context = format!("send the rest of a {}-byte message", unsent.message_len);
            Error::send_failed(err, context)
        })?;
        unsent.sent += sent;
        Ok((!unsent.is_empty()).then_some(unsent))
    }

    /// Shuts down the socket under this connection and all its clones
    /// (`shutdown(2)`): a thread blocked sending or receiving on any of them
    /// returns with an error or end of file, and the peer sees end of file.
    /// The descriptors stay open until dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// let (a, mut b) = connection::pipe()?;
    /// let mut reader = a.try_clone()?;
    /// let blocked = std::thread::spawn(move || reader.recv_bytes());
    /// a.shutdown(std::net::Shutdown::Both)?;
    /// assert!(blocked.join().unwrap().is_err());
    /// assert_eq!(b.recv_bytes().unwrap_err().kind(), connection::ErrorKind::Eof);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn shutdown(&self, how: std::net::Shutdown) -> Result<()> {
        self.socket
            .shutdown(how)
            .map_err(|err| Error::io(err, "shutdown"))
    }

    /// Sends `size` bytes of `buffer` starting at `offset` (to the end when
    /// `size` is `None`), as Python's `send_bytes(buf, offset, size)`.
    ///
    /// A range outside `buffer` is [`ErrorKind::InvalidInput`], with nothing sent.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.send_bytes_range(b"0123456789", 2, Some(3))?;
    /// assert_eq!(b.recv_bytes()?, b"234");
    /// a.send_bytes_range(b"0123456789", 7, None)?;
    /// assert_eq!(b.recv_bytes()?, b"789");
    /// assert!(a.send_bytes_range(b"0123", 3, Some(2)).is_err());
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn send_bytes_range(
        &mut self,
        buffer: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<()> {
        let end = match size {
            None if offset <= buffer.len() => Some(buffer.len()),
            None => None,
            Some(size) => offset.checked_add(size).filter(|&end| end <= buffer.len()),
        };
        let Some(end) = end else {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "offset {offset} and size {size:?} lie outside a buffer of {} bytes",
                    buffer.len()
                ),
            ));
        };
        self.send_bytes(&buffer[offset..end])
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
        self.check_readable()?;
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
            arriving.expect_payload(in_memory_len(len)?);
        }
        let arriving = self.arriving.get_or_insert_with(Box::default);
        arriving
            .read_payload(&self.socket)
            .map_err(|err| self.lose_boundaries(err))
    }

    /// [`read_header`](Connection::read_header) without waiting: what has
    /// arrived of a header goes into `arriving`, and once it is whole
    /// `shared` takes it in as it takes a blocking read's. `None`: the
    /// rest has not arrived yet.
    fn try_read_header(&mut self) -> Result<Option<u64>> {
        let arriving = self.arriving.get_or_insert_with(Box::default);
        let (header, fds) = match arriving.read_header(&self.socket, self.shared.accepts()) {
            Ok(Some(whole)) => whole,
            Ok(None) => return Ok(None),
            Err(err) if err.kind() == ErrorKind::Eof => return Err(err),
            Err(err) => return Err(self.lose_boundaries(err)),
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
        if len <= room.len() as u64 {
            self.receive_payload_into(&mut room[..len as usize])?;
            Ok(len as usize)
        } else {
            let mut message = Vec::new();
            self.read_payload(len, &mut message)?;
            Err(Error::buffer_too_short(message, room.len()))
        }
    }

    /// Sends a [`SharedBuf`] that the caller filled in place: the receiver
    /// gets its pages, with no copy on either side, when this end uses
    /// shared memory ([`shared_memory`](Connection::shared_memory)); an
    /// end that does not sends its bytes through the socket instead, as
    /// [`send_bytes`](Connection::send_bytes) would, whatever their size.
    ///
    /// The buffer is sealed and unmapped here: nobody can change it after.
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::SharedBuf;
    ///
    /// let (mut a, mut b) = connection::pipe()?;
    /// let mut buf = SharedBuf::new(3)?;
    /// buf.copy_from_slice(b"abc");
    /// a.send_shared(buf)?;
    /// assert_eq!(b.recv_bytes()?, b"abc");
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn send_shared(&mut self, buf: SharedBuf) -> Result<()> {
        self.check_writable()?;
        if !self.shared.accepts() {
            return self.send_bytes(&buf);
        }
        shared::send_sealed(&self.socket, buf)
    }

    /// Receives one message as a read-only [`SharedView`]: a mapping of
    /// the sender's memory when it came as a sealed memfd (a
    /// [`SharedBuf`]: no copy), or an owned copy otherwise: the bytes read
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

    /// Whether this end sends [`SharedBuf`]s and payloads over its
    /// [threshold](Connection::set_shared_memory_threshold) as shared
    /// memory, and accepts them (see [`shared`](crate::shared)): true for
    /// the ends of
    /// [`pipe`](crate::pipe) and those passed to a child, false for a
    /// [`Listener`](crate::Listener)/[`Client`](crate::Client) connection
    /// unless turned on.
    pub fn shared_memory(&self) -> bool {
        self.shared.accepts()
    }

    /// Turns shared memory for large messages on or off for this end. Both
    /// ends must agree: turn it on at both ends of a
    /// [`Listener`](crate::Listener)/[`Client`](crate::Client) connection
    /// between two programs of this crate (never for a CPython peer, which
    /// cannot read such messages), off on an end of [`pipe`](crate::pipe)
    /// handed to a program that is not.
    ///
    /// Turning it on fails with [`ErrorKind::InvalidInput`] unless the
    /// connection is over a Unix socket, the only kind that carries
    /// descriptors.
    ///
    /// # Examples
    ///
    /// ```
    /// # let dir = std::env::temp_dir().join(format!("shm-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// use connection::{Address, Client, Listener};
    ///
    /// let address = Address::Unix(dir.join("socket"));
    /// let mut listener = Listener::bind(&address)?;
    /// let client = std::thread::spawn(move || -> connection::Result<()> {
    ///     let mut conn = Client::new().connect(&address)?;
    ///     conn.set_shared_memory(true)?;
    ///     let mut buf = connection::SharedBuf::new(4 << 20)?;
    ///     buf.fill(1);
    ///     conn.send_shared(buf)
    /// });
    /// let mut conn = listener.accept()?;
    /// assert!(!conn.shared_memory()); // CPython-compatible by default
    /// conn.set_shared_memory(true)?;
    /// assert_eq!(conn.recv_shared()?.len(), 4 << 20);
    /// client.join().unwrap()?;
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_shared_memory(&mut self, on: bool) -> Result<()> {
        self.shared.set(on, &self.socket)
    }

    /// Sets the smallest payload that this end's copying calls
    /// ([`send_bytes`](Connection::send_bytes), [`send`](Connection::send),
    /// [`try_send_bytes`](Connection::try_send_bytes), ...) send as shared
    /// memory (in this end's recyclable memfds, see [`crate::shared`]) when
    /// it uses it; `None` keeps them to the socket. New ends
    /// take it from [`SHARED_MEMORY_THRESHOLD_ENV`](crate::shared::SHARED_MEMORY_THRESHOLD_ENV)
    /// (none when unset: see there for the figures). The receiving end
    /// needs no setting.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// a.set_shared_memory_threshold(Some(1 << 20));
    /// let sent = connection::shared_memory_stats().sent;
    /// a.send_bytes(&vec![5u8; 4 << 20])?; // as shared memory
    /// assert_eq!(b.recv_bytes()?.len(), 4 << 20);
    /// let memfds_work = connection::SharedBuf::new(1).is_ok();
    /// assert!(connection::shared_memory_stats().sent > sent || !memfds_work);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn set_shared_memory_threshold(&mut self, bytes: Option<usize>) {
        self.shared.threshold = bytes;
    }

    /// What [`set_shared_memory_threshold`](Connection::set_shared_memory_threshold) set.
    pub fn shared_memory_threshold(&self) -> Option<usize> {
        self.shared.threshold
    }

    /// Whether a message (or end of file) is ready to be received, waiting up
    /// to `timeout` for one; `None` waits as long as it takes, and a zero
    /// duration never blocks.
    ///
    /// A signal that arrives while waiting (Ctrl-C with a handler installed,
    /// say) ends the wait with [`ErrorKind::Interrupted`], so the caller can
    /// act on it; the wait is not silently resumed.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (mut a, b) = connection::pipe()?;
    /// assert!(!b.poll(Some(Duration::ZERO))?);
    /// a.send_bytes(b"ping")?;
    /// assert!(b.poll(Some(Duration::from_secs(1)))?);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        self.check_readable()?;
        if self.between.broken.is_some() {
            return Ok(true);
        }
        let mut fds = [PollFd::readable(self.socket.fd())];
        let ready = sys::poll(&mut fds, timeout).map_err(|err| Error::io(err, "poll"))?;
        Ok(ready > 0)
    }

    /// The raw descriptor, for use with `poll`/`select`-style APIs (Python's
    /// `fileno()`). The connection keeps owning it.
    pub fn fileno(&self) -> RawFd {
        self.socket.fd().as_raw_fd()
    }

    /// Closes the connection, reporting an error from `close(2)` that
    /// dropping would ignore. Dropping a connection closes it too.
    ///
    /// Taking `self` by value means that a closed connection cannot be used
    /// at all: the compiler, not a runtime check, rules it out.
    pub fn close(self) -> Result<()> {
        tracing::debug!(fd = self.fileno(), "closing connection");
        self.socket.close().map_err(|err| Error::io(err, "close"))
    }

    /// A second handle on the same connection, so that one thread can send
    /// while another receives.
    ///
    /// Both handles share one byte stream: let one of them do all the
    /// sending and the other all the receiving (or guard each direction with
    /// a lock), or messages will interleave.
    ///
    /// # Examples
    ///
    /// ```
    /// let (mut a, mut b) = connection::pipe()?;
    /// let mut a_reader = a.try_clone()?;
    /// let echo = std::thread::spawn(move || -> connection::Result<()> {
    ///     let m = b.recv_bytes()?;
    ///     b.send_bytes(&m)
    /// });
    /// a.send_bytes(b"echo")?;
    /// assert_eq!(a_reader.recv_bytes()?, b"echo");
    /// echo.join().unwrap()?;
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn try_clone(&self) -> Result<Connection> {
        let socket = self
            .socket
            .try_clone()
            .map_err(|err| Error::io(err, "duplicate descriptor"))?;
        let mut clone = Connection::new(socket, self.direction);
        clone.max_message_size = self.max_message_size;
        clone.shared = self.shared.clone_settings();
        Ok(clone)
    }

    /// Which ways this end carries messages.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Whether this end can receive.
    pub fn readable(&self) -> bool {
        self.direction.can_receive()
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.direction.can_send()
    }

    /// The largest message this end accepts; see [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub fn max_message_size(&self) -> u64 {
        self.max_message_size
    }

    /// Sets the largest message this end accepts. A header announcing more
    /// fails with [`ErrorKind::MessageTooLarge`] before anything is allocated,
    /// and the message stays unread.
    pub fn set_max_message_size(&mut self, bytes: u64) {
        self.max_message_size = bytes;
    }

    /// Makes this end wait at least `patience` for one of its recyclable
    /// memfds to come free, for tests whose reader may run late.
    #[cfg(test)]
    pub(crate) fn set_least_recycle_patience(&mut self, patience: std::time::Duration) {
        self.shared.set_least_recycle_patience(patience);
    }

    /// How many recyclable memfds this end holds, for tests.
    #[cfg(test)]
    pub(crate) fn recycled_memfds(&self) -> usize {
        self.shared.recycled_memfds()
    }

    fn check_readable(&self) -> Result<()> {
        self.direction.check_receive()
    }

    fn check_writable(&self) -> Result<()> {
        self.direction.check_send()
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
        self.check_readable()?;
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
        let mut fds = Vec::new();
        let accepts = self.shared.accepts().then_some(&mut fds);
        let header = frame::read_any_header(&self.socket, accepts);
        let header = header.map_err(|err| self.mark_broken(err))?;
        self.shared.receive(header, fds)
    }

    pub(crate) fn read_payload(&mut self, len: u64, out: &mut Vec<u8>) -> Result<()> {
        // `len` is at most max_message_size here; on a 32-bit target a
        // larger value cannot be held in memory anyway.
        let len = in_memory_len(len)?;
        if let Some(memfd) = self.shared.take_payload() {
            return memfd.append_to_vec(0, len, out);
        }
        frame::read_payload(&self.socket, len, out).map_err(|err| self.lose_boundaries(err))
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
        frame::read_payload_into(&self.socket, out).map_err(|err| self.lose_boundaries(err))
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
        let read = frame::read_payload_into_uninit(&self.socket, out);
        Some(read.map_err(|err| self.lose_boundaries(err)))
    }

    fn mark_broken(&mut self, err: Error) -> Error {
        if matches!(err.kind(), ErrorKind::Truncated | ErrorKind::Protocol) {
            return self.between.lose(err);
        }
        err
    }

    /// Any error while a payload is read leaves the stream inside a
    /// message whose header is gone: whatever its kind (an `Io` timeout set
    /// through the descriptor, say), no later receive can find the next
    /// message's start.
    fn lose_boundaries(&mut self, err: Error) -> Error {
        self.between.lose(err)
    }

    /// Keeps the buffer of a large message for the next receive, up to
    /// [`LARGE_SCRATCH_KEEP`]: large messages tend to follow one another,
    /// and reused pages cost no page faults. The next small message's
    /// receive frees it ([`keep_scratch`](Connection::keep_scratch)).
    fn keep_large_scratch(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= LARGE_SCRATCH_KEEP {
            buf.clear();
            self.scratch = buf;
        }
    }

    fn keep_scratch(&mut self, mut buf: Vec<u8>) {
        if buf.capacity() <= SCRATCH_KEEP {
            buf.clear();
            self.scratch = buf;
        }
    }
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

/// The part of a message that [`Connection::try_send_bytes`] could not
/// write without waiting: send it with [`Connection::send_unsent`] before
/// anything else. It owns a copy of those bytes, so it can travel to
/// another thread.
#[must_use = "the stream holds a partial message until the rest is sent"]
#[derive(Debug)]
pub struct UnsentMessage {
    rest: Vec<u8>,
    /// How much of `rest` went out since (by `try_send_unsent`).
    sent: usize,
    message_len: usize,
    /// The memfd of a shared-memory message whose header (all of `rest`)
    /// did not start to go out: it goes with the header's first byte.
    memfd: Option<OwnedFd>,
}

impl UnsentMessage {
    /// What of a `message_len`-byte message is left to send: the `rest` of
    /// its bytes, and the memfd of a shared-memory message that has not
    /// gone; `None` when nothing is.
    pub(crate) fn new(rest: Vec<u8>, message_len: usize, memfd: Option<OwnedFd>) -> Option<Self> {
        (!rest.is_empty()).then_some(UnsentMessage {
            rest,
            sent: 0,
            message_len,
            memfd,
        })
    }

    /// How many bytes (of header and payload) are still to be written.
    pub fn len(&self) -> usize {
        self.rest.len() - self.sent
    }

    /// Always false: a message that went out whole has no `UnsentMessage`.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("fd", &self.fileno())
            .field("direction", &self.direction)
            .field("max_message_size", &self.max_message_size)
            .finish_non_exhaustive()
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.fd()
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.fileno()
    }
}

/// Wraps a connected stream socket (Unix or TCP) as a duplex connection.
/// The descriptor must be a connected `SOCK_STREAM` socket; anything else
/// gives I/O errors on first use.
impl From<OwnedFd> for Connection {
    fn from(fd: OwnedFd) -> Connection {
        Connection::new(Socket::from_owned(fd), Direction::Both)
    }
}

/// Gives up the descriptor. A message left pending by
/// [`ErrorKind::MessageTooLarge`] is lost with the connection's state.
impl From<Connection> for OwnedFd {
    fn from(conn: Connection) -> OwnedFd {
        conn.socket.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipe::{one_way_pipe, pipe};

    #[test]
    fn objects_and_bytes_round_trip() {
        let (mut a, mut b) = pipe().unwrap();
        a.send(&(1i64, String::from("hello"), None::<u8>)).unwrap();
        let got: (i64, String, Option<u8>) = b.recv().unwrap();
        assert_eq!(got, (1, "hello".into(), None));
        b.send_bytes(b"").unwrap();
        assert_eq!(a.recv_bytes().unwrap(), b"");
    }

    #[test]
    fn large_message_round_trips_through_a_thread() {
        let (mut a, mut b) = pipe().unwrap();
        let payload: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        let writer = std::thread::spawn(move || a.send_bytes(&payload).unwrap());
        assert_eq!(b.recv_bytes().unwrap(), expected);
        writer.join().unwrap();
    }

    #[test]
    fn try_send_never_blocks_and_the_rest_follows_in_order() {
        let (mut a, mut b) = pipe().unwrap();
        // Through the socket (shared memory would take it whole).
        a.set_shared_memory(false).unwrap();
        let first: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let rest = a.try_send_bytes(&first).unwrap().expect("cannot all fit");
        assert!(!rest.is_empty() && rest.len() < first.len());
        let mut sender = a.try_clone().unwrap();
        let expected = first.clone();
        let writer = std::thread::spawn(move || {
            sender.send_unsent(rest).unwrap();
            sender.send_bytes(b"second").unwrap();
        });
        assert_eq!(b.recv_bytes().unwrap(), expected);
        assert_eq!(b.recv_bytes().unwrap(), b"second");
        writer.join().unwrap();
        // With room, a message goes out whole.
        assert!(a.try_send_bytes(b"small").unwrap().is_none());
        assert_eq!(b.recv_bytes().unwrap(), b"small");
    }

    #[test]
    fn small_messages_until_the_socket_is_full_then_the_rest_is_intact() {
        let (mut a, mut b) = pipe().unwrap();
        // Distinct contents, so that a lost or doubled byte shows.
        let message = |i: u32| -> Vec<u8> { (0..37u32).map(|j| (i * 7 + j) as u8).collect() };
        let mut sent = 0u32;
        let rest = loop {
            match a.try_send_bytes(&message(sent)).unwrap() {
                None => sent += 1,
                // Whatever fitted of this one (possibly part of its header).
                Some(rest) => break rest,
            }
            assert!(sent < 1_000_000, "the socket never filled");
        };
        assert!(rest.len() <= 37 + 4);
        let mut sender = a.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            sender.send_unsent(rest).unwrap();
            sender.send_bytes(b"last").unwrap();
        });
        for i in 0..=sent {
            assert_eq!(b.recv_bytes().unwrap(), message(i), "message {i}");
        }
        assert_eq!(b.recv_bytes().unwrap(), b"last");
        writer.join().unwrap();
    }

    #[test]
    fn try_send_to_a_closed_peer_is_eof() {
        let (mut a, b) = pipe().unwrap();
        drop(b);
        let err = a.try_send_bytes(b"anyone?").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Eof);
    }

    #[test]
    fn eof_after_peer_closes_and_messages_before_it_survive() {
        let (mut a, mut b) = pipe().unwrap();
        a.send(&7u8).unwrap();
        a.close().unwrap();
        assert_eq!(b.recv::<u8>().unwrap(), 7);
        assert_eq!(b.recv::<u8>().unwrap_err().kind(), ErrorKind::Eof);
        assert!(b.poll(Some(Duration::ZERO)).unwrap(), "EOF counts as ready");
    }

    #[test]
    fn send_to_closed_peer_is_eof() {
        let (mut a, b) = pipe().unwrap();
        drop(b);
        assert_eq!(a.send_bytes(b"x").unwrap_err().kind(), ErrorKind::Eof);
    }

    #[test]
    fn max_message_size_refuses_before_reading_and_keeps_message() {
        let (mut a, mut b) = pipe().unwrap();
        b.set_max_message_size(8);
        a.send_bytes(&[7u8; 9]).unwrap();
        let err = b.recv_bytes().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
        assert!(err.to_string().contains("9 bytes"), "{err}");
        let mut buf = [0u8; 16];
        assert_eq!(
            b.recv_bytes_into(&mut buf, 0).unwrap_err().kind(),
            ErrorKind::MessageTooLarge
        );
        assert!(b.poll(Some(Duration::ZERO)).unwrap());
        b.set_max_message_size(9);
        assert_eq!(b.recv_bytes_into(&mut buf, 0).unwrap(), 9);
        assert_eq!(&buf[..9], &[7u8; 9]);
    }

    #[test]
    fn recv_bytes_into_checks_offset_before_reading() {
        let (mut a, mut b) = pipe().unwrap();
        a.send_bytes(b"abc").unwrap();
        let mut buf = [0u8; 4];
        let err = b.recv_bytes_into(&mut buf, 5).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        // Offset equal to the length is allowed (only empty messages fit).
        let err = b.recv_bytes_into(&mut buf, 4).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BufferTooShort);
        assert_eq!(err.into_message().unwrap(), b"abc");
    }

    #[test]
    fn one_way_pipe_refuses_wrong_direction() {
        let (mut reader, mut writer) = one_way_pipe().unwrap();
        assert!(reader.readable() && !reader.writable());
        assert!(writer.writable() && !writer.readable());
        assert_eq!(reader.send(&1u8).unwrap_err().kind(), ErrorKind::Closed);
        assert_eq!(writer.recv_bytes().unwrap_err().kind(), ErrorKind::Closed);
        assert_eq!(
            writer.poll(Some(Duration::ZERO)).unwrap_err().kind(),
            ErrorKind::Closed
        );
        writer.send(&5u16).unwrap();
        assert_eq!(reader.recv::<u16>().unwrap(), 5);
    }

    #[test]
    fn truncated_message_breaks_the_connection_for_good() {
        let (a, mut b) = pipe().unwrap();
        let raw = OwnedFd::from(a);
        let sock = Socket::from_owned(raw);
        sock.write(&[0, 0, 0, 10, 1, 2, 3]).unwrap();
        drop(sock);
        let err = b.recv_bytes().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated);
        assert!(err.to_string().contains("after 3"), "{err}");
        assert_eq!(b.recv_bytes().unwrap_err().kind(), ErrorKind::Truncated);
    }

    #[test]
    fn an_error_inside_a_payload_breaks_the_connection_for_good() {
        let (a, mut b) = pipe().unwrap();
        let sock = Socket::from_owned(OwnedFd::from(a));
        // A header, part of its payload, and then what looks like a
        // header inside the payload.
        sock.write(&[0, 0, 0, 10, 1, 2, 0, 0]).unwrap();
        // A receive timeout set through the descriptor: the read inside
        // the payload fails with an I/O error, not end of file.
        rustix::net::sockopt::set_socket_timeout(
            &b,
            rustix::net::sockopt::Timeout::Recv,
            Some(Duration::from_millis(50)),
        )
        .unwrap();
        let err = b.recv_bytes().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        sock.write(&[0, 5, 9, 9, 9, 9, 9]).unwrap();
        // The rest of the stream starts inside a message: never read as one.
        let err = b.recv_bytes().unwrap_err();
        assert!(err.to_string().contains("boundaries are lost"), "{err}");
    }

    /// A peer that closes while data we sent it is unread resets the
    /// connection: that is still its end, not an I/O error to retry.
    fn peer_gone_with_our_message_unread(tail: &[u8]) -> Connection {
        let (mut a, b) = pipe().unwrap();
        a.send_bytes(b"never read").unwrap();
        let sock = Socket::from_owned(OwnedFd::from(b));
        sock.write(tail).unwrap();
        drop(sock);
        a
    }

    #[test]
    fn reset_between_messages_is_eof() {
        let mut a = peer_gone_with_our_message_unread(&[0, 0, 0, 3, 1, 2, 3]);
        assert_eq!(a.recv_bytes().unwrap(), [1, 2, 3]);
        let err = a.recv_bytes().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Eof, "{err}");
        assert_eq!(a.recv::<u8>().unwrap_err().kind(), ErrorKind::Eof);
    }

    #[test]
    fn reset_mid_message_is_truncated_for_good() {
        for tail in [&[0, 0][..], &[0, 0, 0, 10, 1, 2, 3], &[0xff; 6]] {
            let mut a = peer_gone_with_our_message_unread(tail);
            let err = a.recv_bytes().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Truncated, "{tail:?}: {err}");
            assert_eq!(a.recv_bytes().unwrap_err().kind(), ErrorKind::Truncated);
        }
        let mut a = peer_gone_with_our_message_unread(&[0, 0, 0, 10, 1, 2, 3]);
        let err = a.recv_bytes_into(&mut [0u8; 16], 0).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
    }

    #[test]
    fn owned_fd_round_trip_keeps_the_stream() {
        let (a, mut b) = pipe().unwrap();
        let fd: OwnedFd = a.into();
        let mut a = Connection::from(fd);
        a.send_bytes(b"still here").unwrap();
        assert_eq!(b.recv_bytes().unwrap(), b"still here");
        assert_eq!(a.fileno(), a.as_raw_fd());
        assert_eq!(a.as_fd().as_raw_fd(), a.fileno());
    }

    #[test]
    fn poll_times_out_without_data() {
        let (_a, b) = pipe().unwrap();
        let start = std::time::Instant::now();
        assert!(!b.poll(Some(Duration::from_millis(30))).unwrap());
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn encode_error_sends_nothing() {
        struct Unencodable;
        impl Serialize for Unencodable {
            fn serialize<S: serde::Serializer>(
                &self,
                _: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("refused"))
            }
        }
        let (mut a, b) = pipe().unwrap();
        assert_eq!(a.send(&Unencodable).unwrap_err().kind(), ErrorKind::Encode);
        assert!(!b.poll(Some(Duration::ZERO)).unwrap());
    }
}
