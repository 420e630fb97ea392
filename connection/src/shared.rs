//! Shared memory for large messages between two ends of this crate.
//!
//! Above [`SHARED_MEMORY_THRESHOLD`], a message between two ends that
//! agreed to it travels as a sealed memfd passed over the Unix socket
//! (`SCM_RIGHTS`) instead of through the socket's buffer: the sender
//! copies the payload into fresh shared memory once, the receiver copies
//! it out once (or maps it and copies nothing), and the kernel never
//! copies it at all.
//!
//! Which ends agree:
//! - both ends of [`pipe`](crate::pipe) and [`one_way_pipe`](crate::one_way_pipe);
//! - an end passed to a child with
//!   [`Connection::pass_to_child`](crate::Connection::pass_to_child) and
//!   rebuilt there by [`Connection::from_env`](crate::Connection::from_env)
//!   (the setting travels in the environment variable), and so the `pool`
//!   crate's local workers;
//! - a [`Listener`](crate::Listener)/[`Client`](crate::Client) connection
//!   over a Unix socket only when both programs call
//!   [`Connection::set_shared_memory`] on their end: by default such a
//!   connection stays byte for byte what CPython writes and reads.
//!
//! Both ends must agree: an end that did not refuses a shared-memory
//! message as [`ErrorKind::Protocol`] (so does CPython, which never sees
//! one unless a program turns the setting on for a connection to it).
//! Turn it off with `set_shared_memory(false)` before handing an end of
//! [`pipe`](crate::pipe) to a program not built on this crate.
//!
//! Where `memfd_create` is unavailable (an old kernel, a seccomp filter),
//! the first large message finds out, and that end sends every message
//! through the socket from then on, silently.
//!
//! For no copies at all, fill a [`SharedBuf`] in place and send it with
//! [`Connection::send_shared`]; take a read-only mapped [`SharedView`] of
//! a message with [`Connection::recv_shared`].

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, ErrorKind, Result};
use crate::sys::shm::{self, Mapping};

/// Payloads of this many bytes or more travel as shared memory between
/// ends that agreed to it: 1 MiB.
///
/// Below it, the descriptor's creation, sealing, passing and checking
/// cost more than the socket's two copies save; see the `shared_memory`
/// bench for the figures.
pub const SHARED_MEMORY_THRESHOLD: usize = 1 << 20;

/// Whether an end uses shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Neither sends nor accepts shared-memory messages.
    Off,
    /// Sends large messages as shared memory and accepts them.
    On,
    /// Agreed, but this process cannot create memfds: sends through the
    /// socket, still accepts them.
    Unavailable,
}

impl Mode {
    pub(crate) fn accepts(self) -> bool {
        self != Mode::Off
    }

    pub(crate) fn sends(self, len: usize) -> bool {
        self == Mode::On && len >= SHARED_MEMORY_THRESHOLD
    }
}

static SENT: AtomicU64 = AtomicU64::new(0);
static RECEIVED: AtomicU64 = AtomicU64::new(0);

/// How many messages this process sent and received as shared memory,
/// over all its connections: evidence that the path is taken.
///
/// # Examples
///
/// ```
/// let (mut a, mut b) = connection::pipe()?;
/// let before = connection::shared_memory_stats();
/// a.send_bytes(&vec![1u8; 4 << 20])?;
/// assert_eq!(b.recv_bytes()?.len(), 4 << 20);
/// let after = connection::shared_memory_stats();
/// # if connection::SharedBuf::new(1).is_ok() { // memfd_create works here
/// assert!(after.received > before.received);
/// # }
/// # Ok::<(), connection::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SharedMemoryStats {
    /// Messages sent as a memfd.
    pub sent: u64,
    /// Messages received as a memfd (and accepted).
    pub received: u64,
}

/// The process-wide [`SharedMemoryStats`] so far.
pub fn shared_memory_stats() -> SharedMemoryStats {
    SharedMemoryStats {
        sent: SENT.load(Ordering::Relaxed),
        received: RECEIVED.load(Ordering::Relaxed),
    }
}

pub(crate) fn count_sent() {
    SENT.fetch_add(1, Ordering::Relaxed);
}

/// A shared-memory message received and checked, not yet read.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) memfd: OwnedFd,
    pub(crate) len: u64,
}

impl Incoming {
    /// Checks what a peer sent with a shared-memory header: exactly one
    /// descriptor, a memfd sealed against change, of `len` bytes. Anything
    /// else is [`ErrorKind::Decode`]: the header was consumed and no
    /// payload follows in the stream, so the connection stays usable.
    /// Refused descriptors are closed.
    pub(crate) fn check(fds: Vec<OwnedFd>, len: u64) -> Result<Incoming> {
        let refuse = |why: String| {
            Err(Error::new(
                ErrorKind::Decode,
                format!("refused a shared-memory message of {len} bytes: {why}"),
            ))
        };
        let count = fds.len();
        let Ok([memfd]) = <[OwnedFd; 1]>::try_from(fds) else {
            return refuse(match count {
                0 => "no descriptor came with it".to_string(),
                _ => format!("{count} descriptors came with it, not one"),
            });
        };
        if let Err(why) = shm::check_sealed(memfd.as_fd(), len) {
            return refuse(why.to_string());
        }
        RECEIVED.fetch_add(1, Ordering::Relaxed);
        Ok(Incoming { memfd, len })
    }

    pub(crate) fn read_into(&self, buf: &mut [u8]) -> Result<()> {
        shm::read_into(self.memfd.as_fd(), buf).map_err(|err| self.read_error(err))
    }

    pub(crate) fn read_to_vec(&self, len: usize, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        shm::read_to_vec(self.memfd.as_fd(), len, out).map_err(|err| self.read_error(err))
    }

    pub(crate) fn map(&self, len: usize) -> Result<Mapping> {
        Mapping::read_only(self.memfd.as_fd(), len).map_err(|err| {
            Error::io(
                err,
                format!("map a {}-byte shared-memory message", self.len),
            )
        })
    }

    fn read_error(&self, err: std::io::Error) -> Error {
        Error::io(
            err,
            format!("read a {}-byte shared-memory message", self.len),
        )
    }
}

/// A buffer in shared memory that a sender fills in place and sends with
/// [`Connection::send_shared`](crate::Connection::send_shared): the
/// receiver gets these very pages, with no copy on either side.
///
/// Its length is fixed when it is made; its memory is allocated then too
/// (zeroed), so running out of memory is an error from
/// [`new`](SharedBuf::new), never a signal while filling it.
///
/// # Examples
///
/// ```
/// use connection::SharedBuf;
///
/// let (mut a, mut b) = connection::pipe()?;
/// let mut buf = SharedBuf::new(8 << 20)?;
/// for (i, byte) in buf.iter_mut().enumerate() {
///     *byte = i as u8;
/// }
/// a.send_shared(buf)?;
/// let view = b.recv_shared()?;
/// assert_eq!(view.len(), 8 << 20);
/// assert_eq!(view[1000], (1000 % 256) as u8);
/// # Ok::<(), connection::Error>(())
/// ```
pub struct SharedBuf {
    // Declared before the memfd so that it is unmapped first.
    mapping: Mapping,
    memfd: OwnedFd,
}

impl SharedBuf {
    /// A zeroed buffer of `len` bytes in a new memfd.
    ///
    /// Fails with [`ErrorKind::Io`] where memfds cannot be made (see
    /// [`Error::io_error_kind`]: `Unsupported` or `PermissionDenied` under
    /// a seccomp filter) or memory is short.
    pub fn new(len: usize) -> Result<SharedBuf> {
        let context = || format!("create a {len}-byte shared buffer");
        let memfd = shm::create_allocated(len).map_err(|err| Error::io(err, context()))?;
        let mapping =
            Mapping::read_write(memfd.as_fd(), len).map_err(|err| Error::io(err, context()))?;
        Ok(SharedBuf { mapping, memfd })
    }

    /// Gives up the mapping and seals the memfd, so that nothing can
    /// change it any more: what goes to the receiver.
    pub(crate) fn seal(self) -> Result<(OwnedFd, usize)> {
        let SharedBuf { mapping, memfd } = self;
        let len = mapping.as_slice().len();
        // Sealing against writes fails while a writable mapping exists.
        drop(mapping);
        shm::seal(memfd.as_fd()).map_err(|err| Error::io(err, "seal a shared buffer"))?;
        Ok((memfd, len))
    }
}

impl Deref for SharedBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.mapping.as_slice()
    }
}

impl DerefMut for SharedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.mapping.as_mut_slice()
    }
}

impl fmt::Debug for SharedBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBuf")
            .field("len", &self.len())
            .finish()
    }
}

/// One received message as a read-only byte slice, from
/// [`Connection::recv_shared`](crate::Connection::recv_shared): a mapping
/// of the sender's sealed memfd when the message came as shared memory
/// (no copy), or an owned buffer when it came through the socket.
///
/// The mapping stays valid as long as the view, whatever the sender does:
/// the memfd is sealed, so no process can change or shrink it.
///
/// # Examples
///
/// ```
/// let (mut a, mut b) = connection::pipe()?;
/// a.send_bytes(b"small: through the socket")?;
/// let view = b.recv_shared()?;
/// assert_eq!(&view[..], b"small: through the socket");
/// assert!(!view.is_mapped());
/// # Ok::<(), connection::Error>(())
/// ```
pub struct SharedView {
    inner: ViewInner,
}

enum ViewInner {
    Mapped(Mapping),
    Owned(Vec<u8>),
}

impl SharedView {
    pub(crate) fn mapped(mapping: Mapping) -> SharedView {
        SharedView {
            inner: ViewInner::Mapped(mapping),
        }
    }

    pub(crate) fn owned(bytes: Vec<u8>) -> SharedView {
        SharedView {
            inner: ViewInner::Owned(bytes),
        }
    }

    /// Whether the bytes are a mapping of the sender's memory (the message
    /// came as shared memory) rather than a copy read from the socket.
    pub fn is_mapped(&self) -> bool {
        matches!(self.inner, ViewInner::Mapped(_))
    }

    /// The bytes as an owned vector (a copy, when mapped).
    pub fn into_vec(self) -> Vec<u8> {
        match self.inner {
            ViewInner::Mapped(mapping) => mapping.as_slice().to_vec(),
            ViewInner::Owned(bytes) => bytes,
        }
    }
}

impl Deref for SharedView {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.inner {
            ViewInner::Mapped(mapping) => mapping.as_slice(),
            ViewInner::Owned(bytes) => bytes,
        }
    }
}

impl AsRef<[u8]> for SharedView {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for SharedView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedView")
            .field("len", &self.len())
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

#[cfg(test)]
mod tests;
