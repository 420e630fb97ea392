//! [`AsyncConnection`]: a [`Connection`] whose sends and receives are
//! futures, and the sending half of it.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::ready::when_ready;
use super::receive_state::ReceiveState;
use crate::codec;
use crate::connection::{keep_buffer, Connection, Direction, Parts, SCRATCH_KEEP};
use crate::error::{Error, ErrorKind, Result};
use crate::frame;
use crate::proto::frame::{frame_in_place, join, Between, SendPlan, HEADER_ROOM, SMALL_MESSAGE};
use crate::read_ahead::ReadAhead;
use crate::sys::{self, Socket, Wait};

/// One end of a connection on a tokio runtime: the async twin of
/// [`Connection`], with the same wire format (CPython's framing), the same
/// limits and the same [`ErrorKind`]s.
///
/// Made by [`AsyncConnection::pair`], [`from_blocking`](Self::from_blocking),
/// [`AsyncListener::accept`](super::AsyncListener::accept) or
/// [`AsyncClient::connect`](super::AsyncClient::connect). It must be made
/// inside a tokio runtime with I/O enabled, and used on that runtime.
///
/// # Cancel safety
///
/// Every method is cancel-safe: dropping its future (in `select!`, on a
/// `timeout`) never leaves half a message behind.
///
/// - A receive keeps its progress in the connection, not in the future:
///   the part of a message that had arrived stays there, and the next
///   receive (of any kind) carries on from it and returns the message
///   whole. No message is lost.
/// - A send that is dropped before it wrote anything sends nothing, ever.
///   One dropped part way leaves the rest of its message in the connection,
///   which writes it before anything else, at the next send or
///   [`flush`](Self::flush): that message is delivered, whole. Before
///   sending a timed-out message again, ask
///   [`is_sending`](Self::is_sending): while it is true, the message is on
///   its way and a second send would deliver it twice.
///
/// # Examples
///
/// ```
/// use connection::tokio::AsyncConnection;
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let (mut a, mut b) = AsyncConnection::pair()?;
/// a.send(&(1, "hello", None::<i32>)).await?;
/// let value: (i32, String, Option<i32>) = b.recv().await?;
/// assert_eq!(value, (1, "hello".to_string(), None));
/// # Ok::<(), connection::Error>(())
/// # }).unwrap();
/// ```
pub struct AsyncConnection {
    pub(super) fd: AsyncFd<Socket>,
    direction: Direction,
    pub(super) max_message_size: u64,
    pub(super) incoming: ReceiveState,
    outgoing: SendBuffer,
}

/// The send side's buffer: the bytes of a message that a dropped send
/// left unwritten, `buf[start..]`, which go out before anything else; and
/// between sends, the scratch that frames the next one.
#[derive(Default)]
struct SendBuffer {
    buf: Vec<u8>,
    start: usize,
    /// None of `buf` has been written yet: the message of a send that may
    /// still be dropped before it writes anything, which then sends nothing.
    untouched: bool,
}

impl SendBuffer {
    fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }

    fn clear(&mut self) {
        self.start = 0;
        self.untouched = false;
        self.buf.clear();
        if self.buf.capacity() > SCRATCH_KEEP {
            self.buf = Vec::new();
        }
    }
}

impl AsyncConnection {
    /// A connected pair, the async [`pipe`](crate::pipe()).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (mut a, mut b) = connection::tokio::AsyncConnection::pair()?;
    /// a.send_bytes(b"ping").await?;
    /// assert_eq!(b.recv_bytes().await?, b"ping");
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn pair() -> Result<(AsyncConnection, AsyncConnection)> {
        let (a, b) = crate::pipe()?;
        Ok((Self::from_blocking(a)?, Self::from_blocking(b)?))
    }

    /// Carries on with a blocking connection's stream asynchronously: its
    /// direction, [`max_message_size`](Connection::max_message_size), a
    /// message left unread by [`ErrorKind::MessageTooLarge`] and what
    /// [`try_recv_bytes`](Connection::try_recv_bytes) received of a
    /// message it began come along.
    ///
    /// The descriptor's blocking mode is left as it is (this type never
    /// waits in a system call), so clones of `conn` made with
    /// [`try_clone`](Connection::try_clone) keep working as before.
    ///
    /// Shared memory for large messages ([`crate::shared`]) is not carried
    /// over: this end neither sends nor accepts such messages, and one
    /// that arrives is an [`ErrorKind::Protocol`] error, never misread
    /// (so is one whose header `try_recv_bytes` began).
    /// Keep the other end's [`SharedBuf`](crate::SharedBuf)s and threshold
    /// for blocking peers.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] when there is no tokio runtime here, or the
    /// descriptor cannot be registered with it.
    ///
    /// # Panics
    ///
    /// Inside a runtime built without I/O (`enable_io`), as tokio's
    /// `AsyncFd::new` does.
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::tokio::AsyncConnection;
    ///
    /// let (blocking, mut other) = connection::pipe()?;
    /// let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    /// let blocking = runtime.block_on(async {
    ///     let mut conn = AsyncConnection::from_blocking(blocking)?;
    ///     conn.send_bytes(b"from async").await?;
    ///     conn.into_blocking()
    /// })?;
    /// assert_eq!(other.recv_bytes()?, b"from async");
    /// drop(blocking);
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn from_blocking(conn: Connection) -> Result<AsyncConnection> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::new(
                ErrorKind::Io,
                "an AsyncConnection needs a tokio runtime: make it inside one",
            ));
        }
        let parts = conn.into_parts();
        let interest = match parts.direction {
            Direction::Both => Interest::READABLE | Interest::WRITABLE,
            Direction::ReadOnly => Interest::READABLE,
            Direction::WriteOnly => Interest::WRITABLE,
        };
        let fd = sys::register(parts.socket, interest)
            .map_err(|err| Error::io(err, "register the connection with the tokio runtime"))?;
        Ok(AsyncConnection {
            fd,
            direction: parts.direction,
            max_message_size: parts.max_message_size,
            incoming: ReceiveState::new(parts.between, parts.arriving, parts.ahead),
            outgoing: SendBuffer::default(),
        })
    }

    /// Wraps a socket fresh from an accept or a connect.
    pub(super) fn from_socket(socket: Socket, max_message_size: u64) -> Result<AsyncConnection> {
        AsyncConnection::from_blocking(Connection::from_parts(Parts {
            socket,
            direction: Direction::Both,
            max_message_size,
            between: Between::default(),
            arriving: None,
            ahead: ReadAhead::default(),
        }))
    }

    /// Back to a blocking [`Connection`] on the same stream, with the same
    /// state: a message left unread by [`ErrorKind::MessageTooLarge`] stays
    /// readable. The descriptor is set to blocking mode.
    ///
    /// The rest of a message that a dropped send left unwritten is written
    /// first, waiting (blocking the thread) for the peer to make room.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidInput`] when a dropped receive left a message
    /// partly read ([`is_receiving`](Self::is_receiving)): a blocking
    /// connection has nowhere to keep those bytes, so finish the message
    /// with a receive first. The connection is gone with the error. Errors
    /// from writing the rest of a message are those of a send.
    pub fn into_blocking(self) -> Result<Connection> {
        if self.incoming.arriving.has_arrived() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a cancelled receive left a message partly read; \
                 receive it before converting to a blocking connection",
            ));
        }
        let between = self.incoming.between;
        let ahead = self.incoming.ahead;
        let outgoing = self.outgoing;
        let socket = self.fd.into_inner();
        socket
            .set_nonblocking(false)
            .map_err(|err| Error::io(err, "set the descriptor to blocking mode"))?;
        // A dropped send that wrote nothing sends nothing, here too.
        if !outgoing.is_empty() && !outgoing.untouched {
            let rest = &outgoing.buf[outgoing.start..];
            frame::write_rest(&socket, rest, Wait::ForRoom).map_err(|err| {
                Error::send_failed(
                    err,
                    format!("send the rest of a message ({} bytes)", rest.len()),
                )
            })?;
        }
        Ok(Connection::from_parts(Parts {
            socket,
            direction: self.direction,
            max_message_size: self.max_message_size,
            between,
            arriving: None,
            ahead,
        }))
    }

    /// Sends `value` as one message, encoded with serde (bincode) as
    /// [`Connection::send`] does. A value that cannot be encoded gives
    /// [`ErrorKind::Encode`] and sends nothing.
    ///
    /// Cancel-safe: see the [type's docs](AsyncConnection#cancel-safety).
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (mut a, mut b) = connection::tokio::AsyncConnection::pair()?;
    /// a.send(&vec![1u32, 2, 3]).await?;
    /// assert_eq!(b.recv::<Vec<u32>>().await?, [1, 2, 3]);
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.direction.check_send()?;
        self.flush().await?;
        // The encoding is ours to keep, so it goes out from the outgoing
        // buffer: a dropped send leaves its rest there with no copy.
        let buf = &mut self.outgoing.buf;
        buf.clear();
        buf.resize(HEADER_ROOM, 0);
        if let Err(err) = codec::encode_into(value, buf) {
            self.outgoing.clear();
            return Err(err);
        }
        self.outgoing.start = frame_in_place(buf);
        self.outgoing.untouched = true;
        self.write_kept().await
    }

    /// Sends `bytes` as one message, framed as CPython frames it.
    ///
    /// Cancel-safe: see the [type's docs](AsyncConnection#cancel-safety). A
    /// large message goes out without being copied unless the send is
    /// dropped half way, when its rest is copied into the connection.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (mut a, mut b) = connection::tokio::AsyncConnection::pair()?;
    /// b.send_bytes(b"thank you").await?;
    /// assert_eq!(a.recv_bytes().await?, b"thank you");
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.direction.check_send()?;
        self.flush().await?;
        if bytes.len() <= SMALL_MESSAGE {
            // One write for header and payload, as the blocking side does.
            join(bytes, &mut self.outgoing.buf);
            self.outgoing.start = 0;
            self.outgoing.untouched = true;
            return self.write_kept().await;
        }
        let mut sending = LargeSend {
            plan: SendPlan::message(bytes),
            outgoing: &mut self.outgoing,
        };
        when_ready(&self.fd, Interest::WRITABLE, true, |socket| {
            frame::write_plan(socket, &mut sending.plan, Wait::No).map_err(|err| {
                Error::send_failed(err, format!("send {}-byte message", bytes.len()))
            })?;
            Ok(sending.plan.is_done().then_some(()))
        })
        .await
    }

    /// Writes the rest of a message that a dropped send left unwritten, if
    /// there is one; otherwise returns at once. Sends do this first by
    /// themselves, so this is only needed when no send follows (before
    /// dropping the connection, say).
    ///
    /// Cancel-safe: what is written stays written, the rest stays kept.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (mut a, mut b) = connection::tokio::AsyncConnection::pair()?;
    /// a.send_bytes(b"first").await?; // from now on `a` knows it has room
    /// assert_eq!(b.recv_bytes().await?, b"first");
    /// let big = vec![5u8; 8 << 20]; // more than the socket buffer holds
    /// let dropped = tokio::time::timeout(Duration::from_millis(10), a.send_bytes(&big)).await;
    /// assert!(dropped.is_err()); // nobody reads, so it could not finish
    /// let (flushed, received) = tokio::join!(a.flush(), b.recv_bytes());
    /// flushed?;
    /// assert_eq!(received?, big); // whole, not cut where the send was dropped
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn flush(&mut self) -> Result<()> {
        if self.outgoing.untouched {
            // A dropped send that wrote nothing: it sends nothing.
            self.outgoing.clear();
        }
        self.write_kept().await
    }

    /// Whether a send dropped part way left the rest of its message here,
    /// to be written by the next send or [`flush`](Self::flush): its
    /// message is on its way, and sending it again would deliver it twice.
    /// False after a send that completed, or one dropped before it wrote
    /// anything (whose message is not sent).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (mut a, mut b) = connection::tokio::AsyncConnection::pair()?;
    /// a.send_bytes(b"first").await?;
    /// assert_eq!(b.recv_bytes().await?, b"first");
    /// let big = vec![5u8; 8 << 20]; // more than the socket buffer holds
    /// let timed_out = tokio::time::timeout(Duration::from_millis(10), a.send_bytes(&big)).await;
    /// assert!(timed_out.is_err() && a.is_sending()); // part of it went: do not resend
    /// let (flushed, received) = tokio::join!(a.flush(), b.recv_bytes());
    /// flushed?;
    /// assert_eq!(received?.len(), big.len());
    /// assert!(!a.is_sending());
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn is_sending(&self) -> bool {
        !self.outgoing.is_empty() && !self.outgoing.untouched
    }

    /// Writes what the connection keeps of a message, whole.
    async fn write_kept(&mut self) -> Result<()> {
        let outgoing = &mut self.outgoing;
        when_ready(&self.fd, Interest::WRITABLE, true, |socket| {
            if outgoing.is_empty() {
                return Ok(Some(()));
            }
            let rest = &outgoing.buf[outgoing.start..];
            let sent = frame::write_rest(socket, rest, Wait::No).map_err(|err| {
                let context = format!("send the rest of a message ({} bytes)", rest.len());
                Error::send_failed(err, context)
            })?;
            outgoing.start += sent;
            outgoing.untouched &= sent == 0;
            Ok(outgoing.is_empty().then_some(()))
        })
        .await?;
        self.outgoing.clear();
        Ok(())
    }

    /// Receives one message and decodes it as a `T`, as
    /// [`Connection::recv`] does: [`ErrorKind::Eof`] when the other end
    /// closed and nothing is left, [`ErrorKind::Decode`] when the message
    /// is not a `T` (it is consumed, and the next one is readable).
    ///
    /// Cancel-safe: see the [type's docs](AsyncConnection#cancel-safety).
    /// Only receive values from a peer you trust (see the crate docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::ErrorKind;
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let (mut a, mut b) = connection::tokio::AsyncConnection::pair()?;
    /// a.send("not a number").await?;
    /// a.send(&42u64).await?;
    /// assert_eq!(b.recv::<u64>().await.unwrap_err().kind(), ErrorKind::Decode);
    /// assert_eq!(b.recv::<u64>().await?, 42);
    /// # Ok::<(), connection::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T> {
        let payload = self.receive(self.max_message_size).await?;
        let value = codec::decode(&payload);
        keep_buffer(&mut self.incoming.scratch, payload, SCRATCH_KEEP);
        value
    }

    /// Which ways this end carries messages.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The largest message this end accepts; see
    /// [`DEFAULT_MAX_MESSAGE_SIZE`](crate::DEFAULT_MAX_MESSAGE_SIZE).
    pub fn max_message_size(&self) -> u64 {
        self.max_message_size
    }

    /// Sets the largest message this end accepts. A header announcing more
    /// fails with [`ErrorKind::MessageTooLarge`] before anything is set
    /// aside for it, and the message stays unread.
    pub fn set_max_message_size(&mut self, bytes: u64) {
        self.max_message_size = bytes;
    }
}

/// A large message on its way out, header and payload apart (no copy).
/// Dropped before it is done, with part of it written, it leaves the rest
/// in the connection's send buffer, so the stream keeps its framing.
struct LargeSend<'a> {
    plan: SendPlan<'a>,
    outgoing: &'a mut SendBuffer,
}

impl Drop for LargeSend<'_> {
    fn drop(&mut self) {
        if self.plan.sent() == 0 || self.plan.is_done() {
            return;
        }
        self.outgoing.buf = self.plan.unsent();
        self.outgoing.start = 0;
        self.outgoing.untouched = false;
    }
}

impl fmt::Debug for AsyncConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsyncConnection")
            .field("fd", &self.as_raw_fd())
            .field("direction", &self.direction)
            .field("max_message_size", &self.max_message_size)
            .finish_non_exhaustive()
    }
}

impl AsFd for AsyncConnection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().fd()
    }
}

impl AsRawFd for AsyncConnection {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
