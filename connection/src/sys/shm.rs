//! Sealed memfds, the shared-memory path for large messages: creating and
//! filling one, sealing it, checking one a peer sent, reading it, and
//! mapping it.
//!
//! A sealed memfd is what makes a shared mapping safe to hand out as
//! `&[u8]`: once `F_SEAL_WRITE`, `F_SEAL_GROW` and `F_SEAL_SHRINK` are set,
//! no process can change its bytes or its size again, so a read-only view
//! of it is as immutable as a `&[u8]` must be, and it can never shrink
//! under the view (which would turn a read into `SIGBUS`).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use rustix::fs::{FallocateFlags, FileType, MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};

/// The seals a message's memfd must carry: nobody can write to it, grow
/// it or shrink it any more.
const MESSAGE_SEALS: SealFlags = SealFlags::WRITE
    .union(SealFlags::GROW)
    .union(SealFlags::SHRINK);

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
    let mut written = 0;
    while written < bytes.len() {
        match rustix::io::pwrite(&fd, &bytes[written..], written as u64) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Ok(fd)
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
    /// A memfd that its sender can still change.
    Unsealed(SealFlags),
    /// Its size is not the announced length.
    WrongSize { actual: u64 },
    /// Fewer bytes of memory behind it than it claims to hold (a sparse
    /// memfd, which would cost the receiver memory its sender never paid).
    Sparse { allocated: u64 },
    /// `fstat` or `fcntl` failed on it.
    Os(io::Error),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotSealable(kind) => write!(f, "the descriptor is not a memfd but {kind:?}"),
            Refusal::Unsealed(seals) => write!(
                f,
                "the memfd is not sealed against writing, growing and shrinking (its seals: {seals:?})"
            ),
            Refusal::WrongSize { actual } => write!(f, "the memfd holds {actual} bytes"),
            Refusal::Sparse { allocated } => {
                write!(f, "the memfd has only {allocated} bytes of memory behind it")
            }
            Refusal::Os(err) => write!(f, "the descriptor could not be checked: {err}"),
        }
    }
}

/// Checks that `fd` is a memfd sealed against writes and size changes,
/// holding exactly `len` bytes of memory.
pub(crate) fn check_sealed(fd: BorrowedFd<'_>, len: u64) -> Result<(), Refusal> {
    let stat = rustix::fs::fstat(fd).map_err(|err| Refusal::Os(err.into()))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    // F_GET_SEALS fails (EINVAL) on anything but shared memory.
    let seals = match rustix::fs::fcntl_get_seals(fd) {
        Ok(seals) if kind == FileType::RegularFile => seals,
        _ => return Err(Refusal::NotSealable(kind)),
    };
    if !seals.contains(MESSAGE_SEALS) {
        return Err(Refusal::Unsealed(seals));
    }
    let actual = stat.st_size as u64;
    if actual != len {
        return Err(Refusal::WrongSize { actual });
    }
    // st_blocks counts 512-byte units of memory actually allocated.
    let allocated = (stat.st_blocks as u64).saturating_mul(512);
    if allocated < len {
        return Err(Refusal::Sparse { allocated });
    }
    Ok(())
}

/// Copies the first `buf.len()` bytes of a checked memfd into `buf`.
pub(crate) fn read_into(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::io::pread(fd, &mut buf[filled..], filled as u64) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return Err(err.into()),
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
        let spare = &mut out.spare_capacity_mut()[..room];
        match rustix::io::pread(fd, spare, offset) {
            Ok(([], _)) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok((filled, _)) => {
                let n = filled.len();
                // SAFETY: pread initialized the first `n` bytes of the spare
                // capacity (rustix hands back exactly the initialized part).
                unsafe { out.set_len(out.len() + n) };
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return Err(err.into()),
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

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: only `read_write` mappings are written through this, of
        // a memfd that this process alone has a descriptor for until it is
        // sealed (after the mapping is gone), so `&mut self` is the only
        // way to these bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
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
