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

/// Raises this process's descriptor limits, soft and hard, to `want`
/// where the process may raise its hard limit (it has
/// `CAP_SYS_RESOURCE`, and `want` is at most `fs.nr_open`), and otherwise
/// its soft limit to the hard one; never lowers either. Returns the soft
/// limit now in force.
pub fn raise_descriptor_limit(want: libc::rlim_t) -> libc::rlim_t {
    let (soft, hard) = descriptor_limits();
    if want > hard {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return want;
        }
    }
    let _ = set_descriptor_limit(want.max(soft));
    descriptor_limits().0
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

/// Makes `command`'s process start with SIGINT at its default action,
/// whatever this one has: a test run in the background by a shell has it
/// ignored, and a child would inherit that through exec.
pub fn default_sigint(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec the hook only calls signal(2), which
    // is async-signal-safe, and touches no memory of the parent's.
    unsafe {
        command.pre_exec(|| {
            if libc::signal(libc::SIGINT, libc::SIG_DFL) == libc::SIG_ERR {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Sends `signal` to process `pid` (one of the test's own children):
/// SIGSTOP a worker, SIGKILL it, SIGINT the process itself.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill takes plain integers and touches no memory of ours.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// Forks a process that only sleeps `secs` seconds, then exits: it holds
/// every descriptor of this one open meanwhile (fork copies them all,
/// close-on-exec or not), as a task's forked helper would. Returns its
/// pid, for the caller to kill.
pub fn fork_sleeper(secs: u32) -> u32 {
    // SAFETY: fork takes no arguments; what the child runs is below.
    match unsafe { libc::fork() } {
        // SAFETY: the child calls only sleep(3) and _exit(2), both
        // async-signal-safe (all a child forked from a threaded process
        // may call), and never returns into Rust code.
        0 => unsafe {
            libc::sleep(secs);
            libc::_exit(0)
        },
        -1 => panic!("fork: {}", std::io::Error::last_os_error()),
        pid => pid as u32,
    }
}
