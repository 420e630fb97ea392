//! Shared memory for large messages between two ends of this crate.
//!
//! Between two ends that agreed to it, a message can travel as a memfd
//! passed over the Unix socket (`SCM_RIGHTS`) instead of through the
//! socket's buffer, in one of two ways:
//! - a [`SharedBuf`] that the sender filled in place always goes as a
//!   memfd sealed against any change, and the receiver may map it
//!   ([`Connection::recv_shared`](crate::Connection::recv_shared)): no
//!   copy on either side;
//! - the copying calls (`send_bytes`, `try_send_bytes`, `send`, ...) send
//!   every payload from a threshold up, when one is set
//!   ([`SHARED_MEMORY_THRESHOLD_ENV`],
//!   [`Connection::set_shared_memory_threshold`](crate::Connection::set_shared_memory_threshold)),
//!   in a *recyclable* memfd: the sender copies it in, the receiver
//!   copies it out (with atomic loads from a mapping it keeps) and tells
//!   the sender so, and the sender fills the same memfd with a later
//!   message.
//!
//! # Recycled memfds
//!
//! Fresh shared memory is expensive (allocating, faulting in and freeing
//! its pages cost about six copies on the machine this crate is measured
//! on), so each sending end keeps a few memfds and reuses them. Such a
//! memfd is sealed against growing and shrinking and against further
//! seals, but not against writes. Its first page is a header: the
//! generation of the message the sender last wrote into it, and the
//! generation its receiver last consumed, which the receiver writes there
//! once it copied the payload out. The sender keeps a writable mapping of
//! it, fills it with `memcpy` (it only ever stores into that mapping),
//! and reuses it only once the receiver consumed its last message;
//! meanwhile it takes another (so it fills message k+1 while the receiver
//! copies message k).
//!
//! The bound, per sending end: at most four memfds and 256 MiB of payload
//! room, each sized for a class of payloads (the length rounded up to a
//! power of two, at least 1 MiB), so a run of 64 MiB messages reuses
//! 64 MiB memfds. When every memfd is still being read and no other fits
//! the bound, a blocking send waits for one to come free, but no longer
//! than fresh memory would cost it (about the time it takes to fill that
//! much fresh memory: 45 ms for 64 MiB); then, and at once for
//! [`try_send_bytes`](crate::Connection::try_send_bytes), the payload goes
//! in a fresh sealed memfd. So a steady stream of large messages reuses
//! the same memory at the pace of its reader, and a sender over the
//! threshold never waits long for its reader, however many messages it
//! sends before the other end reads (through the socket it would wait
//! until they were read). The memfds are freed with the sending end (the
//! receiver closes its descriptor after each message).
//!
//! Why the receiver copies such a memfd and never lends it out: its sender
//! can still write it, so a `&[u8]` over it could change under the
//! reader, which Rust forbids. The receiver keeps a read-only mapping of
//! each recyclable memfd it was sent lately (four at most) and copies a
//! payload out of it with relaxed atomic loads, word by word, into its own
//! buffer: sound whatever a hostile sender does meanwhile (it only garbles
//! its own message), and at memory speed (`pread`, the kernel's copy, ran
//! at a third of it). So [`Connection::recv_shared`](crate::Connection::recv_shared)
//! hands such a message back as an owned [`SharedView`], and a typed
//! [`recv`](crate::Connection::recv) decodes a copy; only a sealed memfd
//! is mapped. Likewise the sender never reads its mapping, whatever the
//! receiver writes there.
//!
//! Which ends agree:
//! - both ends of [`pipe`](crate::pipe()) and [`one_way_pipe`](crate::one_way_pipe);
//! - an end passed to a child with
//!   [`Connection::pass_to_child`](crate::Connection::pass_to_child) and
//!   rebuilt there by [`Connection::from_env`](crate::Connection::from_env)
//!   (the setting travels in the environment variable), and so the `pool`
//!   crate's local workers;
//! - a [`Listener`](crate::Listener)/[`Client`](crate::Client) connection
//!   over a Unix socket only when both programs call
//!   [`Connection::set_shared_memory`](crate::Connection::set_shared_memory) on their end: by default such a
//!   connection stays byte for byte what CPython writes and reads.
//!
//! Both ends must agree: an end that did not refuses a shared-memory
//! message as [`ErrorKind::Protocol`] (so does CPython, which never sees
//! one unless a program turns the setting on for a connection to it).
//! Turn it off with `set_shared_memory(false)` before handing an end of
//! [`pipe`](crate::pipe()) to a program not built on this crate.
//!
//! Where `memfd_create` is unavailable (an old kernel, a seccomp filter),
//! the first large message finds out, and that end sends every message
//! through the socket from then on, silently ([`SharedBuf::new`] fails
//! there, saying so).
//!
//! The receiver checks every descriptor: a sealed message's must be a
//! memfd sealed against writes, growth and shrinking, of the announced
//! size; a recycled message's a memfd sealed against growth and
//! shrinking, with room for its header and the announced length, whose
//! header holds the announced generation; either an ordinary memfd (tmpfs,
//! not one of huge pages) with no hole in the bytes the message spans
//! (`lseek(SEEK_HOLE)`: every page there written, so reading it costs the
//! receiver no memory its sender did not pay for). Anything else (a pipe,
//! a file, a memfd of huge pages, one without the seals, short, with a
//! hole, or holding another generation, no descriptor or several) is
//! refused with [`ErrorKind::Decode`] and closed, and the next message
//! reads as usual. A sender that dies leaks nothing: a memfd lives
//! only as long as a descriptor of it, in a process or in the socket's
//! queue.
//!
//! The wire: the header of a sealed message is the length `-2` (4 bytes,
//! big endian) and then the payload's length (8 bytes, big endian); that
//! of a recycled one is the length `-3`, the payload's length and the
//! message's generation (8 bytes each, big endian); the memfd is attached
//! to the header's first byte, and no payload follows in the stream.
//!
//! The `tokio` feature's `AsyncConnection` does not take part: its ends
//! never agree, and one made with `AsyncConnection::from_blocking` turns
//! the setting off (a shared-memory message reaching it is refused as
//! [`ErrorKind::Protocol`], never misread). Keep the other end's copying
//! calls without a threshold, or turn its setting off.
//!
//! For no copies at all, fill a [`SharedBuf`] in place and send it with
//! [`Connection::send_shared`](crate::Connection::send_shared); take a read-only mapped [`SharedView`] of
//! a message with [`Connection::recv_shared`](crate::Connection::recv_shared).

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Error, ErrorKind, Result};
use crate::sys;
use crate::sys::shm::{self, Mapping, RacyView};

mod endpoint;
mod recycle;
pub(crate) use endpoint::{send_memfd, send_sealed, Endpoint};
use recycle::Recycler;

/// The environment variable that sets, for a whole process, the size
/// from which the copying calls (`send_bytes`, `send`, ...) of ends that
/// agreed send a payload as shared memory: a number of bytes, or `off`.
/// Unset, they send through the socket
/// ([`Connection::set_shared_memory_threshold`](crate::Connection::set_shared_memory_threshold)
/// sets it for one end). It is read once, when the first connection is
/// made, and children inherit it: setting it for a program that runs a
/// `pool` turns the path on for its workers too.
///
/// Why the copying calls do not take the path unless told: an end made by
/// `pipe()` may later be turned into an async one, which does not read
/// shared memory, and its peer could not know. Where both ends stay
/// blocking, set a threshold: recycled memfds ran at 1.5x to 2.6x the
/// socket's speed from 256 KiB to 64 MiB on the 2-core virtual machine this
/// crate is measured on (the `shared_memory` bench; the crate's README has
/// the figures). The `pool` crate sets 1 MiB for its own workers.
/// [`SharedBuf`] and [`Connection::send_shared`](crate::Connection::send_shared)
/// always go by descriptor between ends that agreed.
pub const SHARED_MEMORY_THRESHOLD_ENV: &str = "CONNECTION_SHARED_MEMORY_THRESHOLD";

/// The threshold of new ends: [`SHARED_MEMORY_THRESHOLD_ENV`]'s, if set
/// and valid, else none.
fn default_threshold() -> Option<usize> {
    static DEFAULT: OnceLock<Option<usize>> = OnceLock::new();
    *DEFAULT.get_or_init(|| {
        let value = std::env::var(SHARED_MEMORY_THRESHOLD_ENV).ok()?;
        let parsed = value.trim().parse::<usize>().ok();
        if parsed.is_none() && value.trim() != "off" {
            tracing::warn!(
                value,
                "{SHARED_MEMORY_THRESHOLD_ENV} is neither a number of bytes nor \"off\": ignored"
            );
        }
        parsed
    })
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
/// a.set_shared_memory_threshold(Some(1 << 20));
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

/// A shared-memory message received and checked, not yet read.
#[derive(Debug)]
pub(crate) struct ReceivedMemfd {
    memfd: OwnedFd,
    pub(crate) len: u64,
    /// The generation of a message in a recyclable memfd; `None` for a
    /// sealed one.
    recycled: Option<u64>,
    /// A kept read-only mapping of a recyclable memfd, copied out of with
    /// atomic loads (see [`RecycledViews`]); without one, `pread` copies.
    view: Option<Arc<RacyView>>,
}

/// How many recyclable memfds a receiving end keeps mapped: as many as a
/// sender recycles.
const KEPT_VIEWS: usize = 4;

/// Read-only mappings of the recyclable memfds a peer sent lately, so that
/// the next message in the same memfd is copied out of pages this process
/// already mapped (the kernel's `pread` runs at a third of `memcpy`'s speed
/// here, and mapping anew costs a fault a page). A peer may still write to
/// these pages, so they are never read through a `&[u8]`, only copied out
/// with atomic loads ([`RacyView::copy_out_racy`]). At most [`KEPT_VIEWS`]
/// are kept, the least recently used going first; a kept mapping keeps its
/// memfd's pages alive after its sender let it go, until it is dropped
/// with the connection or pushed out.
#[derive(Debug, Default)]
struct RecycledViews {
    views: Vec<KeptView>,
}

#[derive(Debug)]
struct KeptView {
    /// The memfd's identity ([`shm::identity`]).
    key: (u64, u64, u64),
    view: Arc<RacyView>,
    /// How many of its first bytes were found without a hole, for an
    /// earlier message ([`shm::check_recyclable`]).
    checked: u64,
}

impl RecycledViews {
    /// How many first bytes of the kept memfd `key` were checked whole.
    fn checked(&self, key: (u64, u64, u64)) -> u64 {
        self.views
            .iter()
            .find(|kept| kept.key == key)
            .map_or(0, |kept| kept.checked)
    }

    /// The kept mapping of the memfd `fd` (whose identity is `key`), or a
    /// new one; its first `checked` bytes were just found whole.
    fn view_of(
        &mut self,
        fd: std::os::fd::BorrowedFd<'_>,
        key: (u64, u64, u64),
        checked: u64,
    ) -> std::io::Result<Arc<RacyView>> {
        if let Some(at) = self.views.iter().position(|kept| kept.key == key) {
            let mut kept = self.views.remove(at);
            kept.checked = kept.checked.max(checked);
            let view = Arc::clone(&kept.view);
            self.views.push(kept);
            return Ok(view);
        }
        let len = usize::try_from(key.2)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::OutOfMemory))?;
        let view = Arc::new(RacyView::map(fd, len)?);
        if self.views.len() >= KEPT_VIEWS {
            self.views.remove(0);
        }
        self.views.push(KeptView {
            key,
            view: Arc::clone(&view),
            checked,
        });
        Ok(view)
    }
}

impl ReceivedMemfd {
    /// Checks what a peer sent with a shared-memory header: exactly one
    /// descriptor, a memfd sealed against change, of `len` bytes. Anything
    /// else is [`ErrorKind::Decode`]: the header was consumed and no
    /// payload follows in the stream, so the connection stays usable.
    /// Refused descriptors are closed.
    fn check(fds: Vec<OwnedFd>, len: u64) -> Result<ReceivedMemfd> {
        let memfd = only_descriptor(fds, len)?;
        shm::check_sealed(memfd.as_fd(), len).or_else(|why| refuse(len, why.to_string()))?;
        RECEIVED.fetch_add(1, Ordering::Relaxed);
        Ok(ReceivedMemfd {
            memfd,
            len,
            recycled: None,
            view: None,
        })
    }

    /// [`check`](ReceivedMemfd::check) for a message in a recyclable memfd: one
    /// sealed against size changes, with room for `len` bytes after its
    /// header, whose header holds `generation`; then kept mapped in
    /// `views` to be copied out of (or read with `pread` if it cannot be).
    fn check_recycled(
        fds: Vec<OwnedFd>,
        len: u64,
        generation: u64,
        views: &mut RecycledViews,
    ) -> Result<ReceivedMemfd> {
        let memfd = only_descriptor(fds, len)?;
        let key = shm::identity(memfd.as_fd())
            .map_err(shm::Refusal::Os)
            .or_else(|why| refuse(len, why.to_string()))?;
        let checked = views.checked(key);
        let end = shm::check_recyclable(memfd.as_fd(), len, generation, checked)
            .or_else(|why| refuse(len, why.to_string()))?;
        RECEIVED.fetch_add(1, Ordering::Relaxed);
        let view = match views.view_of(memfd.as_fd(), key, end) {
            Ok(view) => Some(view),
            Err(err) => {
                tracing::debug!(error = %err, "recycled memfd not mapped: read with pread");
                None
            }
        };
        Ok(ReceivedMemfd {
            memfd,
            len,
            recycled: Some(generation),
            view,
        })
    }

    pub(crate) fn read_into(&self, buf: &mut [u8]) -> Result<()> {
        match &self.view {
            Some(view) => view.copy_out_racy(self.offset() as usize, buf),
            None => shm::read_at(self.memfd.as_fd(), buf, self.offset())
                .map_err(|err| self.read_error(err))?,
        }
        self.read_up_to(buf.len() as u64);
        Ok(())
    }

    /// Appends the `len` bytes of the payload that follow its first
    /// `offset` to `out`.
    pub(crate) fn append_to_vec(&self, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        // The payload of a recyclable memfd starts after its header page.
        let from = self.offset() + offset;
        match &self.view {
            Some(view) => {
                out.reserve(len);
                sys::append_filled(out, len, |spare| {
                    spare
                        .fill(|rest| Ok::<_, Error>(view.copy_out_racy_uninit(from as usize, rest)))
                })?;
            }
            None => shm::read_to_vec(self.memfd.as_fd(), from, len, out)
                .map_err(|err| self.read_error(err))?,
        }
        self.read_up_to(offset + len as u64);
        Ok(())
    }

    /// Called once the payload's bytes up to `end` were copied out: when
    /// that is all of a recycled message, its sender may have its memfd
    /// back at once rather than when this is dropped.
    fn read_up_to(&self, end: u64) {
        if end >= self.len {
            self.consumed();
        }
    }

    /// Tells the sender of a recyclable memfd that its message was copied
    /// out (or will never be), so that it may fill the memfd again. Saying
    /// so twice is harmless: the sender reuses a memfd only when it holds
    /// the generation of the last message written into it, which a late
    /// repeat of an older one can only keep busy, never free.
    fn consumed(&self) {
        if let Some(generation) = self.recycled {
            let fd = self.memfd.as_fd();
            if let Err(err) = shm::write_generation(fd, shm::CONSUMED_GENERATION_AT, generation) {
                tracing::debug!(error = %err, "could not mark a recycled message consumed");
            }
        }
    }

    /// The payload's `len` bytes as a view: a read-only mapping of a
    /// sealed memfd (no copy), or a copy of a recyclable one, which is
    /// never lent out as a slice (its sender can still write to it).
    pub(crate) fn map(&self, len: usize) -> Result<SharedView> {
        if self.recycled.is_some() {
            let mut copy = Vec::new();
            self.append_to_vec(0, len, &mut copy)?;
            return Ok(SharedView::owned(copy));
        }
        let mapping = Mapping::read_only(self.memfd.as_fd(), len).map_err(|err| {
            Error::io(
                err,
                format!("map a {}-byte shared-memory message", self.len),
            )
        })?;
        Ok(SharedView {
            inner: ViewInner::Mapped(mapping),
        })
    }

    fn offset(&self) -> u64 {
        match self.recycled {
            Some(_) => shm::RECYCLED_HEADER,
            None => 0,
        }
    }

    fn read_error(&self, err: std::io::Error) -> Error {
        Error::io(
            err,
            format!("read a {}-byte shared-memory message", self.len),
        )
    }
}

/// Once the receiver is done with a message in a recyclable memfd (read
/// whole, in parts, or not at all), its sender may fill the memfd again:
/// the receiver says so by writing the message's generation into the
/// memfd's header, when the last byte was copied out and again as the
/// descriptor goes. A memfd that refuses the write (sealed against it
/// after all) only stays busy for its sender.
impl Drop for ReceivedMemfd {
    fn drop(&mut self) {
        self.consumed();
    }
}

/// The one descriptor that came with a shared-memory header of a
/// `len`-byte message; none, or several, is [`ErrorKind::Decode`].
fn only_descriptor(fds: Vec<OwnedFd>, len: u64) -> Result<OwnedFd> {
    let count = fds.len();
    match <[OwnedFd; 1]>::try_from(fds) {
        Ok([memfd]) => Ok(memfd),
        Err(_) => refuse(
            len,
            match count {
                0 => "no descriptor came with it".to_string(),
                _ => format!("{count} descriptors came with it, not one"),
            },
        ),
    }
}

fn refuse<T>(len: u64, why: String) -> Result<T> {
    Err(Error::new(
        ErrorKind::Decode,
        format!("refused a shared-memory message of {len} bytes: {why}"),
    ))
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
        let mapping = Mapping::read_write_populated(memfd.as_fd(), len)
            .map_err(|err| Error::io(err, context()))?;
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
