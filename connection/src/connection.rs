//! [`Connection`]: one end of a message-oriented byte stream. The type,
//! how it is made and taken apart, and its settings are here; its sends in
//! `send.rs`, its receives (and the receive state they keep) in
//! `receive.rs`.

use std::fmt;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::nowait;
use crate::proto::frame::Between;
use crate::read_ahead::ReadAhead;
use crate::shared;
use crate::sys::{self, PollFd, Socket};

mod direction;
mod receive;
mod send;
mod unsent;

pub use direction::Direction;
pub use unsent::UnsentMessage;

/// The largest message a connection accepts unless told otherwise: 1 GiB.
///
/// Raise it with [`Connection::set_max_message_size`] to receive larger
/// messages; the format itself allows up to 2^64 - 1 bytes.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 1 << 30;

/// A scratch buffer that grew past this is freed after use rather than
/// kept, except by a receive of a large message (see `receive.rs`).
pub(crate) const SCRATCH_KEEP: usize = 64 * 1024;

/// Keeps `buf`, emptied, in `slot` for the next message if it holds at
/// most `limit` bytes of memory, and frees it otherwise.
pub(crate) fn keep_buffer(slot: &mut Vec<u8>, mut buf: Vec<u8>, limit: usize) {
    if buf.capacity() <= limit {
        buf.clear();
        *slot = buf;
    }
}

/// One end of a connection: sends and receives whole messages, either raw
/// bytes or serde-serializable values.
///
/// Made by [`pipe`](crate::pipe()), [`one_way_pipe`](crate::one_way_pipe),
/// [`Listener::accept`](crate::Listener::accept),
/// [`Client::connect`](crate::Client::connect), from an inherited
/// descriptor with [`Connection::from_env`], or from any connected stream
/// socket with `From<OwnedFd>`.
///
/// By default there is no buffering in user space: a message is read from
/// the kernel only when asked for, so [`poll`](Connection::poll),
/// [`wait`](crate::wait()) and any wait on the descriptor are always
/// accurate. [`set_read_ahead`](Connection::set_read_ahead) trades that
/// for one read per small message.
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
    pub(crate) shared: shared::Endpoint,
    scratch: Vec<u8>,
    /// What arrived of a message [`try_recv_bytes`](Connection::try_recv_bytes)
    /// has begun to receive; boxed, and made on its first call, so that
    /// the connections that never call it stay small.
    pub(crate) arriving: Option<Box<nowait::Arriving>>,
    /// Bytes read ahead of the receives that will take them (see
    /// [`Connection::set_read_ahead`]).
    pub(crate) ahead: ReadAhead,
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
    /// What arrived of a message begun without waiting.
    pub(crate) arriving: Option<Box<nowait::Arriving>>,
    /// What was read ahead and not received yet.
    pub(crate) ahead: ReadAhead,
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
            ahead: ReadAhead::default(),
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
    /// not share memory: a shared-memory message left pending is dropped,
    /// and one begun by [`try_recv_bytes`](Connection::try_recv_bytes)
    /// loses the stream its boundaries (as it would arriving there); any
    /// other message begun comes along.
    #[cfg(feature = "tokio")]
    pub(crate) fn into_parts(self) -> Parts {
        let mut between = Between {
            pending_len: self
                .between
                .pending_len
                .filter(|_| !self.shared.has_payload()),
            broken: self.between.broken,
        };
        let arriving = self
            .arriving
            .and_then(|arriving| arriving.for_async(&mut between));
        Parts {
            between,
            arriving,
            socket: self.socket,
            direction: self.direction,
            max_message_size: self.max_message_size,
            ahead: self.ahead,
        }
    }

    /// Puts together what [`into_parts`](Connection::into_parts) took apart.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn from_parts(parts: Parts) -> Connection {
        let mut conn = Connection::new(parts.socket, parts.direction);
        conn.max_message_size = parts.max_message_size;
        conn.between = parts.between;
        conn.arriving = parts.arriving;
        conn.ahead = parts.ahead;
        conn
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

    /// Whether this end sends [`SharedBuf`](crate::SharedBuf)s and payloads over its
    /// [threshold](Connection::set_shared_memory_threshold) as shared
    /// memory, and accepts them (see [`shared`]): true for
    /// the ends of
    /// [`pipe`](crate::pipe()) and those passed to a child, false for a
    /// [`Listener`](crate::Listener)/[`Client`](crate::Client) connection
    /// unless turned on.
    pub fn shared_memory(&self) -> bool {
        self.shared.accepts()
    }

    /// Turns shared memory for large messages on or off for this end. Both
    /// ends must agree: turn it on at both ends of a
    /// [`Listener`](crate::Listener)/[`Client`](crate::Client) connection
    /// between two programs of this crate (never for a CPython peer, which
    /// cannot read such messages), off on an end of [`pipe`](crate::pipe())
    /// handed to a program that is not.
    ///
    /// Turning it on fails with [`ErrorKind::InvalidInput`](crate::ErrorKind::InvalidInput) unless the
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
    /// say) ends the wait with [`ErrorKind::Interrupted`](crate::ErrorKind::Interrupted), so the caller can
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
        self.direction.check_receive()?;
        if self.between.broken.is_some() || self.ahead.buffered() > 0 {
            return Ok(true);
        }
        let mut fds = [PollFd::readable(self.socket.fd())];
        let ready = sys::poll(&mut fds, timeout).map_err(|err| Error::io(err, "poll"))?;
        Ok(ready > 0)
    }

    /// Turns read-ahead on or off (off unless turned on): on, a receive
    /// that reads a header reads whatever has arrived after it too, up to
    /// 16 KiB, into a buffer this end keeps, so that a small message
    /// costs one read from the kernel instead of two (its header, then
    /// its payload), and messages that arrived together cost one between
    /// them. Larger payloads are read as without it, past their first
    /// bytes. The buffer (16 KiB, allocated on the first read) is all the
    /// memory it takes, whatever the peer sends.
    ///
    /// The price: a message may then wait in this end's buffer, not in
    /// the kernel, where only this end sees it.
    /// [`poll`](Connection::poll) and the receives see it; a wait on the
    /// descriptor does not: [`wait`](crate::wait()), `epoll`, a runtime's
    /// reactor, or another handle from
    /// [`try_clone`](Connection::try_clone) (which starts with nothing
    /// read ahead, and read-ahead off). Before such a wait, check
    /// [`read_ahead_len`](Connection::read_ahead_len) (or `poll` with a
    /// zero timeout). Turning it off keeps what was read ahead for the
    /// next receives; [`AsyncConnection::from_blocking`](crate::tokio::AsyncConnection::from_blocking)
    /// takes that over (and reads no further ahead); turning the
    /// connection into an `OwnedFd` loses it.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let (mut a, mut b) = connection::pipe()?;
    /// b.set_read_ahead(true);
    /// a.send_bytes(b"one")?;
    /// a.send_bytes(b"two")?;
    /// assert_eq!(b.recv_bytes()?, b"one"); // reads both
    /// assert_eq!(b.read_ahead_len(), 7); // "two" and its header
    /// // The kernel holds nothing more: `wait` on the descriptor would
    /// // not see "two", `poll` does.
    /// assert!(connection::wait(&[&b], Some(Duration::ZERO))?.is_empty());
    /// assert!(b.poll(Some(Duration::ZERO))?);
    /// assert_eq!(b.recv_bytes()?, b"two");
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn set_read_ahead(&mut self, on: bool) {
        self.ahead.set(on);
    }

    /// Whether [`set_read_ahead`](Connection::set_read_ahead) turned
    /// read-ahead on.
    pub fn read_ahead(&self) -> bool {
        self.ahead.is_on()
    }

    /// How many bytes were read ahead and wait in this end's buffer, not
    /// in the kernel: while it is not zero, a message (or part of one) is
    /// ready that a wait on the descriptor would not see (see
    /// [`set_read_ahead`](Connection::set_read_ahead)).
    pub fn read_ahead_len(&self) -> usize {
        self.ahead.buffered()
    }

    /// The raw descriptor, for use with `poll`/`select`-style APIs (Python's
    /// `fileno()`). The connection keeps owning it. With
    /// [read-ahead](Connection::set_read_ahead) on, see there first.
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
    /// fails with [`ErrorKind::MessageTooLarge`](crate::ErrorKind::MessageTooLarge) before anything is allocated,
    /// and the message stays unread.
    pub fn set_max_message_size(&mut self, bytes: u64) {
        self.max_message_size = bytes;
    }

    fn keep_scratch(&mut self, buf: Vec<u8>) {
        keep_buffer(&mut self.scratch, buf, SCRATCH_KEEP);
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
/// [`ErrorKind::MessageTooLarge`](crate::ErrorKind::MessageTooLarge) is
/// lost with the connection's state, and so is what was
/// [read ahead](Connection::set_read_ahead).
impl From<Connection> for OwnedFd {
    fn from(conn: Connection) -> OwnedFd {
        conn.socket.into_owned()
    }
}
