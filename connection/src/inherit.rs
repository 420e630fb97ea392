//! Handing a descriptor to a child process across `exec`: a connection
//! end, or any other descriptor (a shared memory page, a file).
//!
//! The parent names the descriptor's number in an environment variable and
//! clears its close-on-exec flag in the child only (between fork and exec),
//! so no other child spawned meanwhile inherits it. The child claims the
//! number from the variable. This is how the `pool` crate reaches its
//! re-executed workers.
//!
//! [`Connection::pass_to_child`] and [`Connection::from_env`] are this, for
//! a connection: they add its direction to the variable and check that the
//! child got a socket.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::process::Command;

use crate::connection::{Connection, Direction};
use crate::error::{Error, ErrorKind, Result};
use crate::sys::{self, Socket, Unclaimable};

/// Arranges for every child spawned from `command` to inherit `fd`, and
/// sets the environment variable `env_var` to its number; the child calls
/// [`claim_fd_from_env`] with the same name.
///
/// `command` owns `fd` until it is dropped: drop it after spawning so that
/// the parent's copy closes. The descriptor is inherited by children of
/// `command` only: close-on-exec is cleared in the child alone, between
/// fork and exec, so a child that another thread spawns meanwhile does not
/// get it.
///
/// Fails with [`ErrorKind::InvalidInput`] if `env_var` cannot name an
/// environment variable (empty, or containing `=` or a NUL byte).
///
/// # Examples
///
/// ```
/// use std::process::Command;
///
/// // Any descriptor: here the write end of a socket pair, seen by the child
/// // as a plain descriptor number.
/// let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
/// let mut command = Command::new("bash");
/// command.args(["-c", r#"echo "got $FD" >&"$FD""#]);
/// connection::inherit::pass_fd_to_child(theirs.into(), &mut command, "FD")?;
/// command.status()?;
/// drop(command);
/// let mut text = String::new();
/// std::io::Read::read_to_string(&mut &ours, &mut text)?;
/// assert!(text.starts_with("got "), "{text}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn pass_fd_to_child(fd: OwnedFd, command: &mut Command, env_var: &str) -> Result<()> {
    pass_tagged(fd, command, env_var, None)
}

/// Claims a descriptor that the parent passed with [`pass_fd_to_child`],
/// from the environment variable `env_var`, and marks it close-on-exec
/// again so that it is not passed further down by accident.
///
/// The variable holds the descriptor's number, optionally followed by `:`
/// and a tag that this function ignores
/// ([`Connection::pass_to_child`] writes the connection's direction there).
///
/// Fails with [`ErrorKind::InvalidInput`] if the variable is missing or
/// malformed, names a descriptor that is not open, or names one already
/// claimed in this process (each number is claimed at most once, so that
/// two owners cannot close it under each other). A refused descriptor is
/// left exactly as it was.
///
/// Call it early, before the program opens descriptors of its own. Nothing
/// can prove that the descriptor the variable names came from the parent:
/// the variable stays in the environment, so a grandchild sees it without
/// the descriptor, and there the number may belong to a descriptor the
/// grandchild opened itself, which this would then take over.
///
/// # Examples
///
/// ```
/// use connection::{inherit, ErrorKind};
///
/// let err = inherit::claim_fd_from_env("SURELY_NOT_SET_IN_THIS_DOCTEST").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidInput);
/// ```
pub fn claim_fd_from_env(env_var: &str) -> Result<OwnedFd> {
    NamedFd::from_env(env_var)?.claim(Expect::Any)
}

/// What the claimed descriptor must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Any,
    Socket,
}

/// A descriptor number read from an environment variable, not yet owned.
#[derive(Debug)]
struct NamedFd {
    env_var: String,
    raw: RawFd,
    tag: Option<String>,
}

impl NamedFd {
    fn from_env(env_var: &str) -> Result<NamedFd> {
        let value = std::env::var(env_var).map_err(|_| invalid(env_var, "not set"))?;
        let (number, tag) = match value.split_once(':') {
            Some((number, tag)) => (number, Some(tag.to_string())),
            None => (value.as_str(), None),
        };
        let raw = number
            .parse::<RawFd>()
            .ok()
            .filter(|fd| *fd >= 0)
            .ok_or_else(|| invalid(env_var, format!("{value:?} does not name a descriptor")))?;
        Ok(NamedFd {
            env_var: env_var.to_string(),
            raw,
            tag,
        })
    }

    fn claim(self, expect: Expect) -> Result<OwnedFd> {
        let NamedFd { env_var, raw, .. } = self;
        let fd = sys::claim_inherited(raw, expect == Expect::Socket).map_err(|refused| {
            let why = |what: &str| invalid(&env_var, format!("descriptor {raw} {what}"));
            match refused {
                Unclaimable::AlreadyClaimed => why("was already claimed"),
                Unclaimable::NotOpen(err) => why("is not open").with_source(err),
                Unclaimable::NotASocket => why("is not a socket"),
                Unclaimable::Os(err) => why("could not be checked").with_source(err),
            }
        })?;
        tracing::debug!(fd = raw, env_var, "descriptor inherited from parent");
        Ok(fd)
    }
}

fn invalid(env_var: &str, why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("{env_var}: {why}"))
}

/// What [`Connection::pass_to_child`] adds after the direction when the
/// end it passes uses shared memory (`fd:rw+shm`), so that the child's end
/// does too. An older `from_env` refuses the unknown mode rather than
/// misread a shared-memory message.
const SHARED_MEMORY_TAG: &str = "+shm";

/// [`pass_fd_to_child`], with `tag` after the number (`fd:tag`).
fn pass_tagged(fd: OwnedFd, command: &mut Command, env_var: &str, tag: Option<&str>) -> Result<()> {
    if env_var.is_empty() || env_var.contains(['=', '\0']) {
        return Err(invalid(
            env_var,
            "not a usable environment variable name (empty, or with '=' or NUL)",
        ));
    }
    let raw = fd.as_raw_fd();
    match tag {
        Some(tag) => command.env(env_var, format!("{raw}:{tag}")),
        None => command.env(env_var, raw.to_string()),
    };
    sys::inherit_in_child(command, fd);
    Ok(())
}

impl Connection {
    /// Arranges for every child spawned from `command` to inherit this
    /// connection, named by the environment variable `env_var`; the child
    /// calls [`Connection::from_env`] with the same name.
    ///
    /// This is [`inherit::pass_fd_to_child`](crate::inherit::pass_fd_to_child)
    /// with the connection's [`Direction`] added to the variable's value
    /// (`fd:rw`, `fd:r` or `fd:w`, then `+shm` when the end uses shared
    /// memory, so the child's end does too). `command` keeps the descriptor open
    /// until it is dropped: drop it after spawning so that the parent's copy
    /// closes (and the other end sees end of file when the child exits).
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
        let mode = self.direction().mode();
        // The child's end agrees to shared memory when this one does.
        let tag = match self.shared_memory() {
            true => format!("{mode}{SHARED_MEMORY_TAG}"),
            false => mode.to_string(),
        };
        pass_tagged(self.into(), command, env_var, Some(&tag))
    }

    /// Rebuilds the connection a parent passed with
    /// [`pass_to_child`](Connection::pass_to_child), from the environment
    /// variable `env_var`.
    ///
    /// This is [`inherit::claim_fd_from_env`](crate::inherit::claim_fd_from_env),
    /// with its checks and its caveat, and two more checks: the descriptor
    /// must be a socket, and the direction after the number must be one
    /// `pass_to_child` writes (a bare number is a duplex connection). Any
    /// failure is [`ErrorKind::InvalidInput`] and leaves the descriptor as
    /// it was.
    pub fn from_env(env_var: &str) -> Result<Connection> {
        let named = NamedFd::from_env(env_var)?;
        let tag = named.tag.as_deref();
        let (mode, shared_memory) = match tag.and_then(|tag| tag.strip_suffix(SHARED_MEMORY_TAG)) {
            Some(mode) => (Some(mode), true),
            None => (tag, false),
        };
        let direction = match mode {
            None => Direction::Both,
            Some(mode) => Direction::from_mode(mode)
                .ok_or_else(|| invalid(env_var, format!("unknown mode {mode:?}")))?,
        };
        let fd = named.claim(Expect::Socket)?;
        let conn = Connection::new(Socket::from_owned(fd), direction);
        Ok(match shared_memory {
            true => conn.with_shared_memory(),
            false => conn,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, Write};
    use std::os::fd::{AsFd, IntoRawFd};
    use std::process::Stdio;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A file with `text` in it, already unlinked, read position at the start.
    fn anonymous_file(text: &[u8]) -> std::fs::File {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "connection-inherit-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = std::fs::File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.write_all(text).unwrap();
        file.rewind().unwrap();
        file
    }

    fn is_cloexec(fd: std::os::fd::BorrowedFd<'_>) -> bool {
        rustix::io::fcntl_getfd(fd)
            .unwrap()
            .contains(rustix::io::FdFlags::CLOEXEC)
    }

    #[test]
    fn missing_or_malformed_variable_is_invalid_input() {
        let err = Connection::from_env("CONNECTION_TEST_SURELY_UNSET").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains("not set"), "{err}");
        let var = "CONNECTION_TEST_MALFORMED";
        for value in ["", "x", "-3", "3x", ":rw"] {
            std::env::set_var(var, value);
            let err = claim_fd_from_env(var).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{value:?}");
            assert!(err.to_string().contains("does not name"), "{err}");
        }
    }

    #[test]
    fn descriptor_that_is_not_a_socket_is_refused_and_left_open() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let raw = file.as_raw_fd();
        sys::set_cloexec(file.as_fd(), false).unwrap();
        let var = "CONNECTION_TEST_NOT_A_SOCKET";
        std::env::set_var(var, format!("{raw}:rw"));
        let err = Connection::from_env(var).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
        // Still open, and its flags untouched (close-on-exec still clear).
        assert!(!is_cloexec(file.as_fd()));
    }

    #[test]
    fn unknown_mode_is_refused_before_the_descriptor_is_touched() {
        let (a, _b) = crate::pipe().unwrap();
        let fd = OwnedFd::from(a);
        sys::set_cloexec(fd.as_fd(), false).unwrap();
        let var = "CONNECTION_TEST_UNKNOWN_MODE";
        std::env::set_var(var, format!("{}:sideways", fd.as_raw_fd()));
        let err = Connection::from_env(var).unwrap_err();
        assert!(err.to_string().contains("unknown mode"), "{err}");
        assert!(!is_cloexec(fd.as_fd()));
    }

    #[test]
    fn a_descriptor_is_claimed_once_and_closes_on_exec_again() {
        let file = anonymous_file(b"claimed");
        sys::set_cloexec(file.as_fd(), false).unwrap();
        let raw = file.into_raw_fd();
        let var = "CONNECTION_TEST_CLAIM_ONCE";
        std::env::set_var(var, raw.to_string());
        let fd = claim_fd_from_env(var).unwrap();
        assert!(is_cloexec(fd.as_fd()));
        let mut file = std::fs::File::from(fd);
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "claimed");
        let err = claim_fd_from_env(var).unwrap_err();
        assert!(err.to_string().contains("already claimed"), "{err}");
        // Left open for good: a claimed number stays claimed, so once closed
        // and reused by another test's descriptor it would refuse that one.
        let _ = file.into_raw_fd();
    }

    #[test]
    fn a_plain_file_reaches_a_child_that_reads_it() {
        let file = anonymous_file(b"passed down");
        let mut command = Command::new("bash");
        command
            .args(["-c", r#"cat <&"$CONNECTION_TEST_FILE""#])
            .stdout(Stdio::piped());
        pass_fd_to_child(file.into(), &mut command, "CONNECTION_TEST_FILE").unwrap();
        let output = command.output().unwrap();
        assert!(output.status.success(), "{output:?}");
        assert_eq!(output.stdout, b"passed down");
    }

    #[test]
    fn only_the_prepared_command_inherits_the_descriptor() {
        let file = anonymous_file(b"private");
        let raw = file.as_raw_fd();
        let mut prepared = Command::new("bash");
        prepared.args(["-c", "true"]);
        pass_fd_to_child(file.into(), &mut prepared, "CONNECTION_TEST_PRIVATE").unwrap();
        // Another child, spawned while the descriptor is open in the parent,
        // does not get it: the flag is cleared only in the prepared child.
        let other = Command::new("bash")
            .args(["-c", &format!("cat <&{raw}")])
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(!other.status.success(), "{other:?}");
        assert!(other.stdout.is_empty(), "{other:?}");
    }

    #[test]
    fn bad_variable_names_are_refused() {
        for name in ["", "A=B", "A\0B"] {
            let file = std::fs::File::open("/dev/null").unwrap();
            let err = pass_fd_to_child(file.into(), &mut Command::new("true"), name).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name:?}");
        }
    }

    #[test]
    fn the_shared_memory_setting_travels_in_the_variable() {
        for (tag, direction, shared) in [
            ("rw+shm", Direction::Both, true),
            ("w+shm", Direction::WriteOnly, true),
            ("rw", Direction::Both, false),
            ("r", Direction::ReadOnly, false),
        ] {
            let (end, _other) = crate::pipe().unwrap();
            let raw = OwnedFd::from(end).into_raw_fd();
            let var = format!("CONNECTION_TEST_SHM_TAG_{}", tag.replace('+', "_"));
            std::env::set_var(&var, format!("{raw}:{tag}"));
            let conn = Connection::from_env(&var).unwrap();
            assert_eq!(conn.direction(), direction, "{tag}");
            assert_eq!(conn.shared_memory(), shared, "{tag}");
            // Left open, as a claimed number stays claimed (see above).
            let _ = OwnedFd::from(conn).into_raw_fd();
        }
        let var = "CONNECTION_TEST_SHM_TAG_BAD";
        std::env::set_var(var, "0:+shm");
        let err = Connection::from_env(var).unwrap_err();
        assert!(err.to_string().contains("unknown mode"), "{err}");
    }
}
