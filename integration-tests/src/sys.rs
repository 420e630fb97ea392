//! The system calls the helpers make that the standard library lacks: the
//! one module of this library allowed `unsafe` code.

/// The soft and hard limits on this process's descriptors (`ulimit -n`).
pub fn descriptor_limits() -> (libc::rlim_t, libc::rlim_t) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given and reads nothing else.
    let ret = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    assert_eq!(ret, 0, "getrlimit: {}", std::io::Error::last_os_error());
    (limit.rlim_cur, limit.rlim_max)
}

/// Sets the soft limit on this process's descriptors (at most the hard one).
pub fn set_descriptor_limit(soft: libc::rlim_t) -> std::io::Result<()> {
    let (_, hard) = descriptor_limits();
    let limit = libc::rlimit {
        rlim_cur: soft.min(hard),
        rlim_max: hard,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Closes `stream` with a reset rather than the usual goodbye.
pub(crate) fn reset(stream: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is the open socket `stream` owns, and the
    // option value is a `linger` of the size given.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(stream);
}

/// Sends `signal` to process `pid` (one of the test's own children):
/// SIGSTOP a worker, SIGKILL it, SIGINT the process itself.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}
