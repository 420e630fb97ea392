//! [`Connection`]'s sends: values and bytes framed and written whole,
//! or as far as the socket takes them now ([`UnsentMessage`]), through the
//! socket or, where both ends agreed, as shared memory.

use serde::Serialize;

use super::{Connection, UnsentMessage};
use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::frame;
use crate::proto::frame::HEADER_ROOM;
use crate::shared::{self, SharedBuf};
use crate::streaming;
use crate::sys::Wait;

impl Connection {
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
        self.direction.check_send()?;
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
        self.send_message(bytes, Wait::ForRoom).map(drop)
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
        self.send_message(bytes, Wait::No)
    }

    /// Sends `bytes` as one message, as shared memory or through the
    /// socket, waiting for room or not as `wait` says; returns what did
    /// not go (never anything with [`Wait::ForRoom`]).
    fn send_message(&mut self, bytes: &[u8], wait: Wait) -> Result<Option<UnsentMessage>> {
        self.direction.check_send()?;
        if let Some(sent) = self.shared.send_copy(&self.socket, bytes, wait) {
            let (rest, memfd) = sent?;
            return Ok(UnsentMessage::new(rest, bytes.len(), memfd));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let rest = frame::write_message(&self.socket, bytes, &mut scratch, wait)
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
        self.direction.check_send()?;
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
        self.direction.check_send()?;
        if !self.shared.accepts() {
            return self.send_bytes(&buf);
        }
        shared::send_sealed(&self.socket, buf)
    }
}
