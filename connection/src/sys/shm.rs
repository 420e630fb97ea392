//! Memfds, the shared-memory path for large messages: creating and
//! filling one, sealing it, checking one a peer sent, reading it, and
//! mapping it; and the recyclable memfds that the copying calls reuse.
//!
//! A sealed memfd is what makes a shared mapping safe to hand out as
//! `&[u8]`: once `F_SEAL_WRITE`, `F_SEAL_GROW` and `F_SEAL_SHRINK` are set,
//! no process can change its bytes or its size again, so a read-only view
//! of it is as immutable as a `&[u8]` must be, and it can never shrink
//! under the view (which would turn a read into `SIGBUS`).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{FallocateFlags, FileType, MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

use super::retry_interrupted;

mod racy;
pub(crate) use racy::RacyView;

/// The seals a message's memfd must carry: nobody can write to it, grow
/// it or shrink it any more.
const MESSAGE_SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::GROW)
    .union(SealFlags::SHRINK);

/// The seals of a recyclable memfd: its size is fixed (so `pread` and
/// `pwrite` within it never fail half-way) and nobody can add a seal (a
/// receiver sealing it against writes would stop its sender reusing it).
/// It stays writable: its sender fills it again for a later message.
const RECYCLABLE_SEALS: SealFlags = SealFlags::GROW
    .union(SealFlags::SHRINK)
    .union(SealFlags::SEAL);

/// The seals a receiver requires of a recyclable memfd.
const RECYCLABLE_REQUIRED: SealFlags = SealFlags::GROW.union(SealFlags::SHRINK);

/// Bytes at the start of a recyclable memfd before its payload: the
/// generation its sender last wrote into it (bytes 0..8, little endian)
/// and the generation its receiver last consumed (bytes 8..16). One page,
/// so that the payload starts page-aligned.
pub(crate) const RECYCLED_HEADER: u64 = 4096;

/// Where the sent and the consumed generation sit in a recyclable memfd.
pub(crate) const SENT_GENERATION_AT: u64 = 0;
pub(crate) const CONSUMED_GENERATION_AT: u64 = 8;

/// Whether an error from `memfd_create` means that this process cannot
/// create memfds at all (an old kernel, or a seccomp filter that forbids
/// the call), rather than a passing shortage.
pub(crate) fn is_unavailable(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOSYS | libc::EPERM | libc::EACCES | libc::EINVAL)
    )
}

/// A new, empty memfd that accepts seals, close-on-exec.
pub(crate) fn create() -> io::Result<OwnedFd> {
    Ok(rustix::fs::memfd_create(
        "connection-message",
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )?)
}

/// A memfd of `len` bytes whose memory is allocated now (so a shortage is
/// an error here, not a `SIGBUS` when a mapping of it is first written).
pub(crate) fn create_allocated(len: usize) -> io::Result<OwnedFd> {
    let fd = create()?;
    if len > 0 {
        rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, len as u64)?;
    }
    Ok(fd)
}

/// A memfd holding a copy of `bytes`. `pwrite` allocates each page as it
/// fills it, without zeroing it first as a fault on a fresh mapping would.
pub(crate) fn create_filled(bytes: &[u8]) -> io::Result<OwnedFd> {
    let fd = create()?;
    write_at(fd.as_fd(), bytes, 0)?;
    Ok(fd)
}

/// A recyclable memfd with room for `capacity` bytes of payload after its
/// header, all of it allocated now, sealed against size changes and
/// further seals but not against writes.
pub(crate) fn create_recyclable(capacity: usize) -> io::Result<OwnedFd> {
    let size = RECYCLED_HEADER
        .checked_add(capacity as u64)
        .ok_or(io::ErrorKind::InvalidInput)?;
    let fd = create()?;
    rustix::fs::fallocate(&fd, FallocateFlags::empty(), 0, size)?;
    rustix::fs::fcntl_add_seals(&fd, RECYCLABLE_SEALS)?;
    Ok(fd)
}

/// Writes all of `bytes` at `offset` (a kernel copy, retried on `EINTR`).
pub(crate) fn write_at(fd: BorrowedFd<'_>, bytes: &[u8], offset: u64) -> io::Result<()> {
    let mut written = 0;
    while written < bytes.len() {
        let at = offset + written as u64;
        match retry_interrupted(|| Ok(rustix::io::pwrite(fd, &bytes[written..], at)?))? {
            0 => return Err(io::ErrorKind::WriteZero.into()),
            n => written += n,
        }
    }
    Ok(())
}

/// Reads the 8-byte generation number at `offset` of a recyclable memfd.
pub(crate) fn read_generation(fd: BorrowedFd<'_>, offset: u64) -> io::Result<u64> {
    let mut bytes = [0u8; 8];
    read_at(fd, &mut bytes, offset)?;
    Ok(u64::from_le_bytes(bytes))
}

/// Writes an 8-byte generation number at `offset` of a recyclable memfd.
pub(crate) fn write_generation(fd: BorrowedFd<'_>, offset: u64, generation: u64) -> io::Result<()> {
    write_at(fd, &generation.to_le_bytes(), offset)
}

/// Seals a memfd against writes and size changes, for good. Fails with
/// `EBUSY` while a writable shared mapping of it exists.
pub(crate) fn seal(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::fs::fcntl_add_seals(fd, MESSAGE_SEALS)?)
}

/// Why a descriptor that a peer sent as a shared-memory message was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Not a memfd (nor other sealable memory): a pipe, a socket, a
    /// regular file.
    NotSealable(FileType),
    /// A memfd of huge pages (`MFD_HUGETLB`, on hugetlbfs): a mapping of
    /// it can be unmapped only in whole huge pages, and a page its sender
    /// punches out of it turns a read into `SIGBUS` when the machine has
    /// no free huge page to fault in.
    HugePages,
    /// Sealable memory that is not an ordinary (tmpfs) memfd, by its
    /// file system's magic number.
    NotShmem { magic: u64 },
    /// A memfd that its sender can change in ways the receiver cannot
    /// allow: it lacks some of `required`.
    Unsealed {
        found: SealFlags,
        required: SealFlags,
    },
    /// Its size is not the announced length.
    WrongSize { actual: u64 },
    /// A hole in the bytes the message spans: nothing was ever written
    /// there, so a mapping that reads it makes the receiver allocate
    /// memory its sender never paid for.
    Sparse { hole_at: u64 },
    /// A recyclable memfd that says it holds another message than the one
    /// announced (its header's generation is not the header's).
    WrongGeneration { announced: u64, found: u64 },
    /// `fstat`, `fstatfs`, `lseek` or `fcntl` failed on it.
    Os(io::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotSealable(kind) => write!(f, "the descriptor is not a memfd but {kind:?}"),
            Refusal::HugePages => write!(
                f,
                "the memfd is of huge pages (hugetlbfs, MFD_HUGETLB); only ordinary memfds are read"
            ),
            Refusal::NotShmem { magic } => write!(
                f,
                "the descriptor is sealable but not an ordinary memfd (file system magic {magic:#x})"
            ),
            Refusal::Unsealed { found, required } => write!(
                f,
                "the memfd is not sealed as required (required {required:?}, found {found:?})"
            ),
            Refusal::WrongSize { actual } => write!(f, "the memfd holds {actual} bytes"),
            Refusal::Sparse { hole_at } => write!(
                f,
                "the memfd has a hole at byte {hole_at} of the message (no memory behind it)"
            ),
            Refusal::WrongGeneration { announced, found } => write!(
                f,
                "the memfd holds generation {found}, not the announced generation {announced}"
            ),
            Refusal::Os(err) => write!(f, "the descriptor could not be checked: {err}"),
        }
    }
}

/// Checks that `fd` is a memfd sealed against writes and size changes,
/// holding exactly `len` bytes, all of them written.
pub(crate) fn check_sealed(fd: BorrowedFd<'_>, len: u64) -> Result<(), Refusal> {
    let size = check_memfd(fd, MESSAGE_SEALS)?;
    if size != len {
        return Err(Refusal::WrongSize { actual: size });
    }
    check_written(fd, len)
}

/// Checks that `fd` is a recyclable memfd (sealed against size changes)
/// with room for a `len`-byte payload after its header, and that its header
/// says it holds generation `generation`; and, unless `checked` of its
/// bytes were found whole for an earlier message, that every byte of the
/// header and payload is written. Returns where the payload ends.
///
/// Its sender can still write to it, even while it is read: that is sound
/// because the receiver only ever copies out of it (with `pread`, or atomic
/// loads from a read-only mapping, [`RacyView::copy_out_racy`]) and never
/// lends it out as a slice. A sender that does so garbles only its own
/// message. It can punch holes into it too, after any check: reading them
/// costs the receiver at most the payload's length in pages, the memory
/// the message announced. So the check for holes runs once per memfd (and
/// payload length) a receiver keeps: rather than on each message, where it
/// cost about 5% of the copy (the `shared_memory` bench).
pub(crate) fn check_recyclable(
    fd: BorrowedFd<'_>,
    len: u64,
    generation: u64,
    checked: u64,
) -> Result<u64, Refusal> {
    let size = check_memfd(fd, RECYCLABLE_REQUIRED)?;
    let end = RECYCLED_HEADER
        .checked_add(len)
        .filter(|&end| end <= size)
        .ok_or(Refusal::WrongSize { actual: size })?;
    // Past `end` its sender's memory may well be unwritten (a payload
    // shorter than the memfd's class): the receiver never reads there.
    if end > checked {
        check_written(fd, end)?;
    }
    let found = read_generation(fd, SENT_GENERATION_AT).map_err(Refusal::Os)?;
    if found != generation {
        return Err(Refusal::WrongGeneration {
            announced: generation,
            found,
        });
    }
    Ok(end)
}

/// Checks that `fd` is an ordinary memfd (tmpfs, not huge pages) carrying
/// at least `seals`, and returns its size.
fn check_memfd(fd: BorrowedFd<'_>, seals: SealFlags) -> Result<u64, Refusal> {
    let stat = rustix::fs::fstat(fd).map_err(|err| Refusal::Os(err.into()))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    // F_GET_SEALS fails (EINVAL) on anything but shared memory.
    let found = match rustix::fs::fcntl_get_seals(fd) {
        Ok(found) if kind == FileType::RegularFile => found,
        _ => return Err(Refusal::NotSealable(kind)),
    };
    // Both tmpfs and hugetlbfs take seals; only tmpfs is ordinary memory.
    // The magic numbers are 32-bit, whatever the width of `f_type`.
    let magic = rustix::fs::fstatfs(fd)
        .map_err(|err| Refusal::Os(err.into()))?
        .f_type as u32;
    if magic == libc::HUGETLBFS_MAGIC as u32 {
        return Err(Refusal::HugePages);
    }
    if magic != libc::TMPFS_MAGIC as u32 {
        return Err(Refusal::NotShmem {
            magic: magic.into(),
        });
    }
    if !found.contains(seals) {
        return Err(Refusal::Unsealed {
            found,
            required: seals,
        });
    }
    Ok(stat.st_size as u64)
}

/// Checks that the first `end` bytes of a checked memfd hold no hole:
/// every page there was written (or is swapped out), so that reading it
/// costs the receiver no page its sender did not pay for.
///
/// `lseek(SEEK_HOLE)`, not the memfd's block count: pages allocated past
/// its end (`fallocate` with `FALLOC_FL_KEEP_SIZE`) count as blocks while
/// its bytes have holes. tmpfs counts as a hole a page allocated but never
/// written too (it reads as zeroes without being touched), so this crate's
/// senders write or fault in every page they send. The kernel walks the
/// memfd's page cache from the start: about 0.4 ms for 64 MiB of 4 KiB
/// pages on the machine measured (160 GB/s in the `shared_memory` bench),
/// some 5% of copying them out; the sealed memfds of the zero-copy path
/// pay it on each message, whose fresh pages cost far more to free.
///
/// `lseek` moves the file offset its sender shares: harmless, since
/// every read and write of a memfd here names its offset (`pread`,
/// `pwrite`, mappings).
fn check_written(fd: BorrowedFd<'_>, end: u64) -> Result<(), Refusal> {
    if end == 0 {
        // SEEK_HOLE at the end of a file fails (ENXIO); nothing to check.
        return Ok(());
    }
    let hole_at = rustix::fs::seek(fd, rustix::fs::SeekFrom::Hole(0))
        .map_err(|err| Refusal::Os(err.into()))?;
    if hole_at < end {
        return Err(Refusal::Sparse { hole_at });
    }
    Ok(())
}

/// Copies `buf.len()` bytes of a checked memfd, from `offset`, into `buf`.
pub(crate) fn read_at(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let at = offset + filled as u64;
        match retry_interrupted(|| Ok(rustix::io::pread(fd, &mut buf[filled..], at)?))? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    Ok(())
}

/// Appends the `len` bytes of a checked memfd from `from` on to `out`,
/// straight into its spare capacity (no zeroing first).
pub(crate) fn read_to_vec(
    fd: BorrowedFd<'_>,
    from: u64,
    len: usize,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.reserve_exact(len);
    let end = out.len() + len;
    while out.len() < end {
        let offset = from + (len - (end - out.len())) as u64;
        let room = end - out.len();
        // rustix hands back exactly the part pread initialized.
        let read = retry_interrupted(|| {
            super::append_filled(out, room, |spare| {
                spare.fill(|rest| rustix::io::pread(fd, rest, offset).map(|(filled, _)| filled))
            })
            .map_err(io::Error::from)
        })?;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// A shared mapping of a whole memfd, unmapped when dropped.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is plain memory owned by this value; nothing in it is
// tied to the thread that made it.
unsafe impl Send for Mapping {}
// SAFETY: shared access only reads (`as_slice`); writing needs `&mut`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps a checked, sealed memfd of `len` bytes read-only. Its pages
    /// are mapped as they are first read, not in advance: `MAP_POPULATE`
    /// measured slower in the `shared_memory` bench (5.4 against 8.6 GB/s
    /// for a 64 MiB view read one byte a page), and a reader that looks at
    /// part of a message pays for that part only.
    pub(crate) fn read_only(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        Mapping::new(fd, len, ProtFlags::READ, MapFlags::SHARED)
    }

    /// Maps a memfd of `len` bytes (unsealed, owned by the caller)
    /// for reading and writing.
    pub(crate) fn read_write(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        Mapping::new(
            fd,
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED,
        )
    }

    /// [`read_write`](Mapping::read_write) of a memfd allocated whole
    /// ([`create_allocated`]), every page faulted in now: tmpfs zeroes an
    /// allocated page when it is first faulted in, and until then counts
    /// it as a hole, which a receiver refuses ([`check_sealed`]). So a
    /// buffer its owner writes only in part still goes whole.
    pub(crate) fn read_write_populated(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        Mapping::new(
            fd,
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED | MapFlags::POPULATE,
        )
    }

    fn new(
        fd: BorrowedFd<'_>,
        len: usize,
        prot: ProtFlags,
        flags: MapFlags,
    ) -> io::Result<Mapping> {
        if len == 0 {
            // mmap refuses empty mappings; an empty slice needs no memory.
            return Ok(Mapping {
                ptr: NonNull::dangling(),
                len: 0,
            });
        }
        // SAFETY: a new mapping at an address the kernel picks (null hint)
        // cannot overlap any memory Rust knows about. The callers map a
        // memfd of at least `len` bytes that cannot shrink (sealed, or
        // owned by this process alone and fallocated), so every byte of
        // the mapping stays backed and access never faults with SIGBUS.
        let ptr = unsafe { rustix::mm::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0)? };
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or(io::ErrorKind::Other)?;
        Ok(Mapping { ptr, len })
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes that live as long as
        // `self`. Nothing writes them meanwhile: a read-only mapping is of
        // a memfd sealed against writes (checked by `check_sealed` or set
        // by `seal`), and a read-write one is written only through
        // `as_mut_slice`, which needs `&mut self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// Copies `bytes` into the mapping at `offset`, which must leave room
    /// for them. For a recyclable memfd's mapping: its receiver has a
    /// descriptor too and might write meanwhile, so no `&mut [u8]` is made
    /// over it and nothing is ever read from it; the copy only stores.
    pub(crate) fn copy_in(&mut self, offset: usize, bytes: &[u8]) {
        assert!(offset
            .checked_add(bytes.len())
            .is_some_and(|end| end <= self.len));
        // SAFETY: the range is inside the mapping (checked above), which
        // cannot shrink under it (the memfd is sealed against shrinking);
        // `bytes` is the caller's memory, not this mapping (which is never
        // lent out as a slice), so the two do not overlap.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.ptr.as_ptr().add(offset),
                bytes.len(),
            )
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: only `read_write` mappings are written through this, of
        // a memfd that this process alone has a descriptor for until it is
        // sealed (after the mapping is gone), so `&mut self` is the only
        // way to these bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

/// What identifies a memfd across descriptors: its device, inode and
/// size (the size of one sealed against resizing never changes).
pub(crate) fn identity(fd: BorrowedFd<'_>) -> io::Result<(u64, u64, u64)> {
    let stat = rustix::fs::fstat(fd)?;
    Ok((stat.st_dev as u64, stat.st_ino as u64, stat.st_size as u64))
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: `ptr` and `len` are exactly what mmap returned and
            // nothing borrows the memory any more (borrows of the slices
            // end before `drop`).
            let _ = unsafe { rustix::mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// Whether `fd` is a Unix-domain socket, the only kind that carries
/// descriptors.
pub(crate) fn is_unix_socket(fd: BorrowedFd<'_>) -> bool {
    matches!(
        rustix::net::getsockname(fd),
        Ok(addr) if addr.address_family() == rustix::net::AddressFamily::UNIX
    )
}
