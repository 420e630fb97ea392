//! Handing a connection to a child process across `exec`.
//!
//! The parent names the descriptor in an environment variable and clears
//! its close-on-exec flag in the child only (between fork and exec), so no
//! other child spawned meanwhile inherits it. The child rebuilds the
//! connection from the variable. This is how the `pool` crate reaches its
//! re-executed workers.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::Mutex;

use crate::connection::Connection;
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, Socket};

/// Descriptors already claimed by [`Connection::from_env`] in this process,
/// so that a second claim cannot create a second owner.
static CLAIMED: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

impl Connection {
    /// Arranges for every child spawned from `command` to inherit this
    /// connection, named by the environment variable `env_var`; the child
    /// calls [`Connection::from_env`] with the same name.
    ///
    /// `command` keeps the descriptor open until it is dropped: drop it
    /// after spawning so that the parent's copy closes (and the other end
    /// sees end of file when the child exits).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::process::Command;
    ///
    /// let (mut parent, child_end) = connection::pipe()?;
    /// let mut command = Command::new("bash");
    /// // The child writes a raw 2-byte message, "hi", to its inherited end.
    /// command.args(["-c", r#"printf '\000\000\000\002hi' >&"${CONN%%:*}""#]);
    /// child_end.pass_to_child(&mut command, "CONN")?;
    /// let mut child = command.spawn()?;
    /// drop(command);
    /// assert_eq!(parent.recv_bytes()?, b"hi");
    /// child.wait()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pass_to_child(self, command: &mut Command, env_var: &str) -> Result<()> {
        let mode = match (self.readable(), self.writable()) {
            (true, true) => "rw",
            (true, false) => "r",
            _ => "w",
        };
        let fd: OwnedFd = self.into();
        let raw = fd.as_raw_fd();
        command.env(env_var, format!("{raw}:{mode}"));
        // SAFETY: the hook runs in the child between fork and exec, where
        // only async-signal-safe calls are allowed; it calls fcntl and
        // nothing else (no allocation, no locks). It owns `fd`, so the
        // descriptor stays open for as long as `command` can spawn.
        unsafe {
            command.pre_exec(move || {
                let _owned = &fd;
                sys::set_cloexec(raw, false)
            });
        }
        Ok(())
    }

    /// Rebuilds the connection a parent passed with
    /// [`pass_to_child`](Connection::pass_to_child), from the environment
    /// variable `env_var`.
    ///
    /// Fails with [`ErrorKind::InvalidInput`] if the variable is missing or
    /// malformed, names a descriptor that is not an open socket, or was
    /// already claimed in this process. The descriptor is marked
    /// close-on-exec again, so it is not passed further down by accident.
    ///
    /// Call it early, before the program opens sockets of its own. Nothing
    /// can prove that the descriptor the variable names came from the
    /// parent: the variable stays in the environment, so a grandchild sees
    /// it without the descriptor, and there the number may belong to a
    /// socket the grandchild opened itself, which this would then take over.
    pub fn from_env(env_var: &str) -> Result<Connection> {
        let invalid =
            |why: String| Error::new(ErrorKind::InvalidInput, format!("{env_var}: {why}"));
        let value = std::env::var(env_var).map_err(|_| invalid("not set".into()))?;
        let (fd_text, mode) = value.split_once(':').unwrap_or((value.as_str(), "rw"));
        let raw: RawFd = fd_text
            .parse()
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| invalid(format!("{value:?} does not name a descriptor")))?;
        let (readable, writable) = match mode {
            "rw" => (true, true),
            "r" => (true, false),
            "w" => (false, true),
            other => return Err(invalid(format!("unknown mode {other:?}"))),
        };
        let mut claimed = CLAIMED.lock().unwrap_or_else(|poison| poison.into_inner());
        if claimed.contains(&raw) {
            return Err(invalid(format!("descriptor {raw} was already claimed")));
        }
        // Check the descriptor before touching or owning it: a number that
        // is not an open socket is left exactly as it was.
        match sys::is_socket(raw) {
            Ok(true) => {}
            Ok(false) => return Err(invalid(format!("descriptor {raw} is not a socket"))),
            Err(err) => {
                return Err(invalid(format!("descriptor {raw} is not open")).with_source(err))
            }
        }
        sys::set_cloexec(raw, true).map_err(|err| {
            invalid(format!("descriptor {raw}: set close-on-exec")).with_source(err)
        })?;
        // SAFETY: the descriptor is an open socket (checked just above), our
        // parent handed it to this process for this purpose, and CLAIMED
        // ensures that this process wraps it in an OwnedFd only once.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        claimed.push(raw);
        tracing::debug!(fd = raw, env_var, "connection inherited from parent");
        Ok(Connection::from_socket(
            Socket::from_owned(fd),
            readable,
            writable,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_malformed_variable_is_invalid_input() {
        let err = Connection::from_env("CONNECTION_TEST_SURELY_UNSET").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("not set"), "{err}");
    }

    #[test]
    fn descriptor_that_is_not_a_socket_is_refused_and_left_open() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let raw = file.as_raw_fd();
        sys::set_cloexec(raw, false).unwrap();
        let var = "CONNECTION_TEST_NOT_A_SOCKET";
        std::env::set_var(var, format!("{raw}:rw"));
        let err = Connection::from_env(var).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        // Still open, and its flags untouched (close-on-exec still clear).
        // SAFETY: F_GETFD on a descriptor this test owns.
        let flags = unsafe { libc::fcntl(raw, libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, 0);
    }
}
