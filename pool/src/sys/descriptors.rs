//! The process's descriptors: how many it may open (`RLIMIT_NOFILE`), how
//! many are open, and which failures to get one can pass.
//!
//! A pool that listens raises its soft limit to the hard one, as servers
//! do (Go's runtime does it for every program), so that a crowd of peers
//! at its door does not use up the default 1024. Its local workers get the
//! soft limit back as it was before exec, as Go's `os/exec` does: a task
//! might use `select`, which cannot see descriptors past 1023.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The soft limit before [`raise_descriptor_limit`] raised it, for the
/// local workers; 0 while it has not.
static ORIGINAL_SOFT_LIMIT: AtomicU64 = AtomicU64::new(0);

/// Raises the soft limit on descriptors to the hard one; returns the soft
/// limit in force afterwards (unchanged if the hard one is unlimited, which
/// Linux refuses as a soft limit, or if the raise failed).
pub(crate) fn raise_descriptor_limit() -> u64 {
    let limit = getrlimit(Resource::Nofile);
    let (Some(soft), Some(hard)) = (limit.current, limit.maximum) else {
        return limit.current.unwrap_or(u64::MAX);
    };
    if soft >= hard {
        return soft;
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            // The first raise's "before" is the one the workers get back.
            let _ =
                ORIGINAL_SOFT_LIMIT.compare_exchange(0, soft, Ordering::Relaxed, Ordering::Relaxed);
            tracing::debug!(from = soft, to = hard, "raised the soft descriptor limit");
            hard
        }
        Err(err) => {
            tracing::debug!(%err, soft, hard, "cannot raise the soft descriptor limit");
            soft
        }
    }
}

/// Gives a child, between fork and exec, the soft limit this process had
/// before [`raise_descriptor_limit`]. Async-signal-safe: an atomic load and
/// two system calls.
pub(crate) fn restore_descriptor_limit_in_child() -> io::Result<()> {
    let original = ORIGINAL_SOFT_LIMIT.load(Ordering::Relaxed);
    if original == 0 {
        return Ok(());
    }
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(original),
            maximum: limit.maximum,
        },
    )?;
    Ok(())
}

/// How many descriptors this process has open now.
pub(crate) fn open_descriptors() -> io::Result<u64> {
    // Less the one that reads the directory.
    let open = std::fs::read_dir("/proc/self/fd")?.count();
    Ok(open.saturating_sub(1) as u64)
}

/// Whether `err` says the process or the system ran short of something
/// that comes back when others let go of it: descriptors (`EMFILE`,
/// `ENFILE`), memory (`ENOMEM`, `ENOBUFS`), processes or threads
/// (`EAGAIN`). Trying again later may succeed.
pub(crate) fn is_out_of_resources(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS | libc::EAGAIN)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_resources_is_told_from_what_does_not_pass() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOMEM, libc::EAGAIN] {
            assert!(is_out_of_resources(&io::Error::from_raw_os_error(errno)));
        }
        for errno in [libc::ENOENT, libc::EACCES, libc::ENOEXEC] {
            assert!(!is_out_of_resources(&io::Error::from_raw_os_error(errno)));
        }
        assert!(!is_out_of_resources(&io::Error::other("no errno")));
    }
}
