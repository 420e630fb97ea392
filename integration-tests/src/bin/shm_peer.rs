//! The child end of the shared-memory tests (`tests/shared_memory.rs`): it
//! rebuilds its end of a `pipe()` with `Connection::from_env` (so it agreed
//! to shared memory) and, by its first argument:
//! - `send-forever`: sends 64 MiB messages until the parent kills it;
//! - `no-memfd`: installs a seccomp filter that makes `memfd_create` fail
//!   with `ENOSYS`, as an old kernel or a sandbox would, then sends a
//!   4 MiB message and reports what it saw.

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
        other => panic!("unknown mode {other:?}"),
    }
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
