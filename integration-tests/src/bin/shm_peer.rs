//! The child end of the shared-memory tests (`tests/shared_memory.rs`): it
//! rebuilds its end of a `pipe()` with `Connection::from_env` (so it agreed
//! to shared memory) and, by its first argument:
//! - `send-forever`: sends 64 MiB messages until the parent kills it;
//! - `no-memfd`: installs a seccomp filter that makes `memfd_create` fail
//!   with `ENOSYS`, as an old kernel or a sandbox would, then sends a
//!   4 MiB message and reports what it saw;
//! - `huge-pages`: says whether it could make a memfd of huge pages
//!   (`MFD_HUGETLB`); if so forges a sealed message and then a recycled
//!   one in such memfds, each followed by an ordinary message.

use connection::{Connection, SharedBuf};

const CONN_ENV: &str = "SHM_PEER_CONN";

/// Bytes that differ from their neighbours (the tests compare them).
fn pattern(len: usize) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect()
}

fn main() -> connection::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let mut conn = Connection::from_env(CONN_ENV)?;
    conn.set_shared_memory_threshold(Some(1 << 20));
    match mode.as_str() {
        "send-forever" => {
            let data = pattern(64 << 20);
            loop {
                conn.send_bytes(&data)?;
            }
        }
        "no-memfd" => {
            forbid_memfd_create().expect("install the seccomp filter");
            let agreed = conn.shared_memory();
            let shared_buf = match SharedBuf::new(1) {
                Ok(_) => "made".to_string(),
                Err(err) => format!("{:?}", err.io_error_kind()),
            };
            conn.send_bytes(&pattern(4 << 20))?;
            conn.send_bytes(&pattern(4 << 20))?;
            let sent = connection::shared_memory_stats().sent;
            conn.send(&(agreed, shared_buf, sent))?;
            Ok(())
        }
        "huge-pages" => forge_huge_pages(&mut conn),
        other => panic!("unknown mode {other:?}"),
    }
}

/// The size of the huge pages a `MFD_HUGETLB` memfd gets by default.
const HUGE_PAGE: usize = 2 << 20;

/// Where a recyclable memfd's payload starts (its header page first).
const RECYCLED_HEADER: usize = 4096;

/// Sends, as a well-behaved peer never would, a sealed and then a recycled
/// shared-memory message in memfds of huge pages, each followed by an
/// ordinary message saying which went before. First says `ready`, or why
/// it cannot.
fn forge_huge_pages(conn: &mut Connection) -> connection::Result<()> {
    use rustix::fs::SealFlags;
    let data = pattern(HUGE_PAGE);
    let sealed = huge_page_memfd(|bytes| bytes.copy_from_slice(&data)).and_then(|fd| {
        rustix::fs::fcntl_add_seals(&fd, SealFlags::WRITE | SealFlags::GROW | SealFlags::SHRINK)?;
        Ok(fd)
    });
    let sealed = match sealed {
        Ok(fd) => fd,
        Err(err) => return conn.send_bytes(format!("no memfd of huge pages: {err}").as_bytes()),
    };
    conn.send_bytes(b"ready")?;
    let mut header = (-2i32).to_be_bytes().to_vec();
    header.extend_from_slice(&(HUGE_PAGE as u64).to_be_bytes());
    send_with_fd(conn, &header, &sealed);
    drop(sealed);
    conn.send_bytes(b"after the sealed one")?;
    let generation = 1u64;
    let len = HUGE_PAGE - RECYCLED_HEADER;
    let recyclable = huge_page_memfd(|bytes| {
        bytes[..8].copy_from_slice(&generation.to_le_bytes());
        bytes[RECYCLED_HEADER..].copy_from_slice(&data[..len]);
    })
    .and_then(|fd| {
        rustix::fs::fcntl_add_seals(&fd, SealFlags::GROW | SealFlags::SHRINK)?;
        Ok(fd)
    })
    .expect("a second memfd of huge pages");
    let mut header = (-3i32).to_be_bytes().to_vec();
    header.extend_from_slice(&(len as u64).to_be_bytes());
    header.extend_from_slice(&generation.to_be_bytes());
    send_with_fd(conn, &header, &recyclable);
    conn.send_bytes(b"after the recycled one")?;
    // Until the parent has read it all: its end closing ends this one.
    let _ = conn.recv_bytes();
    Ok(())
}

/// A sealable memfd of one huge page that `write` filled through a
/// mapping (hugetlbfs has no `pwrite`).
fn huge_page_memfd(write: impl FnOnce(&mut [u8])) -> rustix::io::Result<std::os::fd::OwnedFd> {
    use rustix::fs::MemfdFlags;
    use rustix::mm::{MapFlags, ProtFlags};
    let flags = MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING | MemfdFlags::HUGETLB;
    let fd = rustix::fs::memfd_create("huge", flags)?;
    rustix::fs::ftruncate(&fd, HUGE_PAGE as u64)?;
    let prot = ProtFlags::READ | ProtFlags::WRITE;
    // SAFETY: a new shared mapping of the whole memfd (one huge page, so
    // it can be unmapped whole) at an address the kernel picks, touching
    // no memory Rust knows; this process alone has the memfd so far.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            HUGE_PAGE,
            prot,
            MapFlags::SHARED,
            &fd,
            0,
        )?
    };
    // SAFETY: the mapping is HUGE_PAGE writable bytes, ours alone, and its
    // huge page was reserved by mmap (no SIGBUS when first touched).
    write(unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), HUGE_PAGE) });
    // SAFETY: exactly the mapping made above; the slice is gone.
    unsafe { rustix::mm::munmap(ptr, HUGE_PAGE)? };
    Ok(fd)
}

/// Writes `header` on the connection's socket with `fd` attached, in one
/// `sendmsg`, as a shared-memory message's header goes.
fn send_with_fd(conn: &Connection, header: &[u8], fd: &std::os::fd::OwnedFd) {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::os::fd::AsFd;
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = [fd.as_fd()];
    assert!(control.push(SendAncillaryMessage::ScmRights(&fds)));
    let iov = [std::io::IoSlice::new(header)];
    let sent = rustix::net::sendmsg(conn, &iov, &mut control, SendFlags::empty()).expect("sendmsg");
    assert_eq!(sent, header.len(), "a short header");
}

/// Makes every later `memfd_create` in this process fail with `ENOSYS`.
fn forbid_memfd_create() -> std::io::Result<()> {
    let statement = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let mut program = [
        // The system call's number (offset 0 of struct seccomp_data).
        statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        // memfd_create: fall through to ENOSYS; anything else: skip it.
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_memfd_create as u32,
        },
        statement(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        ),
        statement(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: prctl with PR_SET_NO_NEW_PRIVS takes plain integers; with
    // PR_SET_SECCOMP it reads the filter program, valid for the call (the
    // kernel copies it). No safe wrapper exists in the workspace's crates.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
