//! The crate's one error type.
//!
//! Modelled on [`std::io::Error`]: a caller matches on [`ErrorKind`], and the
//! error carries the context that explains it (sizes, the address involved)
//! plus the underlying cause as its [`source`](std::error::Error::source).

use std::fmt;
use std::io;

/// The category of an [`Error`], for callers that want to act on it.
///
/// # Examples
///
/// ```
/// use connection::{pipe, ErrorKind};
///
/// let (mut a, b) = pipe()?;
/// drop(b);
/// let err = a.recv_bytes().unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Eof);
/// # Ok::<(), connection::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The other end closed and no message is left (Python's `EOFError`).
    /// Every message it sent before closing was received. A peer that
    /// closes with messages of ours unread resets the connection; that is
    /// reported as this kind too, not as [`ErrorKind::Io`].
    Eof,
    /// The other end went away in the middle of a message. The bytes that
    /// arrived are not a whole message and were discarded; nothing more can
    /// be read from this connection.
    Truncated,
    /// A length header exceeded the limit of the receiving call
    /// (`max_message_size`, or the `max_len` of
    /// [`recv_bytes_max`](crate::Connection::recv_bytes_max)). The message is
    /// left unread: the next receive gets it.
    MessageTooLarge,
    /// [`recv_bytes_into`](crate::Connection::recv_bytes_into) was given a
    /// buffer too short for the message. The whole message is in the error:
    /// see [`Error::into_message`].
    BufferTooShort,
    /// A value could not be encoded for [`send`](crate::Connection::send).
    /// Nothing was written.
    Encode,
    /// A message did not decode as the requested type. The message was
    /// consumed; the next one is readable.
    Decode,
    /// This end is closed in the direction asked for: receiving on the
    /// write end of a [`one_way_pipe`](crate::one_way_pipe), or sending on
    /// its read end. (A connection closed with
    /// [`close`](crate::Connection::close) is gone: `close` takes it by value.)
    Closed,
    /// A blocking wait was interrupted by a signal (for example Ctrl-C with
    /// a handler installed). Retry, or act on the signal.
    Interrupted,
    /// A timeout elapsed.
    TimedOut,
    /// An argument was invalid (an offset past the end of a buffer, a
    /// malformed address).
    InvalidInput,
    /// The peer failed authentication, or refused ours.
    AuthenticationFailed,
    /// The peer broke the protocol (for example an unexpected handshake message).
    Protocol,
    /// Any other operating-system error; see [`Error::io_error_kind`].
    Io,
}

impl ErrorKind {
    fn describe(self) -> &'static str {
        match self {
            ErrorKind::Eof => "end of file: the other end closed",
            ErrorKind::Truncated => "the other end closed in the middle of a message",
            ErrorKind::MessageTooLarge => "message too large",
            ErrorKind::BufferTooShort => "buffer too short for the message",
            ErrorKind::Encode => "value could not be encoded",
            ErrorKind::Decode => "message could not be decoded",
            ErrorKind::Closed => "closed in this direction",
            ErrorKind::Interrupted => "interrupted by a signal",
            ErrorKind::TimedOut => "timed out",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::AuthenticationFailed => "authentication failed",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Io => "I/O error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// An error from this crate: a kind, a human-readable context and, where
/// there is one, the underlying cause.
///
/// `Display` prints the kind and the context; the cause is the
/// [`source`](std::error::Error::source), not repeated in the text. To show
/// a user everything on one line, use the alternate form `{:#}`, which
/// appends the chain of causes:
///
/// ```
/// let err = connection::Client::new()
///     .connect(&"unix:/surely/not/here.sock".parse()?)
///     .unwrap_err();
/// assert_eq!(err.to_string(), "I/O error: unix:/surely/not/here.sock: connect");
/// let cause = std::error::Error::source(&err).unwrap();
/// assert!(cause.to_string().contains("os error"), "{cause}");
/// assert_eq!(format!("{err:#}"), format!("{err}: {cause}"));
/// # Ok::<(), connection::Error>(())
/// ```
///
/// # Examples
///
/// ```
/// use connection::{pipe, ErrorKind};
///
/// let (mut a, mut b) = pipe()?;
/// a.send_bytes(b"a message of 23 bytes..")?;
/// let mut small = [0u8; 4];
/// let err = b.recv_bytes_into(&mut small, 0).unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::BufferTooShort);
/// assert_eq!(err.into_message().unwrap(), b"a message of 23 bytes..");
/// # Ok::<(), connection::Error>(())
/// ```
pub struct Error {
    kind: ErrorKind,
    context: String,
    message: Option<Vec<u8>>,
    /// Whether a listener's accept failed for one peer only.
    peer_failure: bool,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Creates an error of `kind` with a context message.
    pub fn new(kind: ErrorKind, context: impl Into<String>) -> Error {
        Error {
            kind,
            context: context.into(),
            message: None,
            peer_failure: false,
            source: None,
        }
    }

    /// Attaches the underlying cause.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Error {
        self.source = Some(source.into());
        self
    }

    /// Adds context in front of the existing one, such as the address an
    /// operation was about (`"connect to tcp:10.0.0.1:7000"`).
    pub fn context(mut self, outer: impl fmt::Display) -> Error {
        self.context = if self.context.is_empty() {
            outer.to_string()
        } else {
            format!("{outer}: {}", self.context)
        };
        self
    }

    pub(crate) fn buffer_too_short(message: Vec<u8>, available: usize) -> Error {
        let mut err = Error::new(
            ErrorKind::BufferTooShort,
            format!(
                "message of {} bytes does not fit in the {available} bytes after the offset",
                message.len()
            ),
        );
        err.message = Some(message);
        err
    }

    /// Wraps an I/O error, mapping the kinds this crate distinguishes.
    pub(crate) fn io(err: io::Error, context: impl Into<String>) -> Error {
        let kind = match err.kind() {
            io::ErrorKind::Interrupted => ErrorKind::Interrupted,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::TimedOut,
            _ => ErrorKind::Io,
        };
        Error::new(kind, context).with_source(err)
    }

    /// A failed send as this crate reports it: a peer that went away is end
    /// of file, anything else an I/O error; `context` says what was being
    /// sent.
    pub(crate) fn send_failed(err: io::Error, context: String) -> Error {
        match err.kind() {
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
                Error::new(ErrorKind::Eof, format!("{context}: the other end closed"))
                    .with_source(err)
            }
            _ => Error::io(err, context),
        }
    }

    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Marks an error of a listener's accept as one peer's, not the
    /// listener's.
    pub(crate) fn of_one_peer(mut self) -> Error {
        self.peer_failure = true;
        self
    }

    /// Whether this error, from a listener's `accept`, ended one peer's
    /// handshake (a wrong key, a silent or too slow peer, a peer that
    /// reset its connection or broke the protocol) rather than came from
    /// the listener itself. After a peer's failure the listener is as
    /// usable as before: a server calls `accept` again at once, whatever
    /// the [`kind`](Error::kind), [`ErrorKind::Io`] included. An error that
    /// is not a peer's (the listening socket failed, or the process has no
    /// descriptor left and no pending handshake to close for one) may
    /// last, and a server may pause before it tries again.
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::{Client, Listener};
    ///
    /// let name = format!("abstract:connection-doc-peer-failure-{}", std::process::id());
    /// let mut listener = Listener::builder().authkey(b"right").bind(&name.parse()?)?;
    /// let address = listener.address().clone();
    /// let client = std::thread::spawn(move || Client::connect_with_authkey(&address, b"wrong"));
    /// let err = listener.accept().unwrap_err();
    /// assert!(err.is_peer_failure(), "{err}");
    /// assert!(client.join().unwrap().is_err());
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn is_peer_failure(&self) -> bool {
        self.peer_failure
    }

    /// For an [`ErrorKind::Io`] error, the kind of the underlying
    /// [`io::Error`], such as `ConnectionRefused` or `AddrInUse`.
    pub fn io_error_kind(&self) -> Option<io::ErrorKind> {
        self.source
            .as_ref()?
            .downcast_ref::<io::Error>()
            .map(io::Error::kind)
    }

    /// For a [`ErrorKind::BufferTooShort`] error, the complete message that
    /// did not fit (Python's `e.args[0]`).
    pub fn into_message(self) -> Option<Vec<u8>> {
        self.message
    }

    /// The complete message carried by a [`ErrorKind::BufferTooShort`] error.
    pub fn message(&self) -> Option<&[u8]> {
        self.message.as_deref()
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("context", &self.context);
        if self.peer_failure {
            d.field("peer_failure", &true);
        }
        if let Some(message) = &self.message {
            d.field("message_len", &message.len());
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

/// The kind and the context, without the cause: that is the
/// [`source`](std::error::Error::source), and a reporter that walks the
/// chain (`anyhow`, `eyre`, a loop over `source()`) prints it once.
///
/// The alternate form, `{:#}`, appends every cause in the chain, for a
/// one-line message (as `anyhow` does).
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.context.is_empty() {
            write!(f, "{}", self.kind)?;
        } else {
            write!(f, "{}: {}", self.kind, self.context)?;
        }
        if f.alternate() {
            let mut cause = std::error::Error::source(self);
            while let Some(inner) = cause {
                write!(f, ": {inner}")?;
                cause = inner.source();
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match err.kind {
            ErrorKind::Eof | ErrorKind::Truncated => io::ErrorKind::UnexpectedEof,
            ErrorKind::Interrupted => io::ErrorKind::Interrupted,
            ErrorKind::TimedOut => io::ErrorKind::TimedOut,
            ErrorKind::InvalidInput => io::ErrorKind::InvalidInput,
            ErrorKind::Decode | ErrorKind::Protocol => io::ErrorKind::InvalidData,
            ErrorKind::Closed => io::ErrorKind::NotConnected,
            ErrorKind::AuthenticationFailed => io::ErrorKind::PermissionDenied,
            _ => err.io_error_kind().unwrap_or(io::ErrorKind::Other),
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every message in the chain, as an `anyhow`-style reporter prints it.
    fn chain(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
        std::iter::successors(Some(err), |e| e.source())
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn display_is_kind_and_context_and_the_cause_is_the_source() {
        let err = Error::io(io::Error::from(io::ErrorKind::ConnectionRefused), "connect")
            .context("tcp:127.0.0.1:1");
        assert_eq!(err.to_string(), "I/O error: tcp:127.0.0.1:1: connect");
        assert_eq!(err.io_error_kind(), Some(io::ErrorKind::ConnectionRefused));
        let cause = io::Error::from(io::ErrorKind::ConnectionRefused).to_string();
        assert_eq!(chain(&err), [err.to_string(), cause]);
    }

    #[test]
    fn a_chain_reporter_prints_the_cause_once() {
        let cause = io::Error::other("the one and only cause");
        let err = Error::io(cause, "read").context("unix:/tmp/x");
        let report = chain(&err).join(": ");
        assert_eq!(
            report.matches("the one and only cause").count(),
            1,
            "{report}"
        );
        // Through io::Error (`?` in a function returning io::Result) too.
        let wrapped = io::Error::from(err);
        let report = chain(&wrapped).join(": ");
        assert_eq!(
            report.matches("the one and only cause").count(),
            1,
            "{report}"
        );
        assert!(report.contains("unix:/tmp/x"), "{report}");
    }

    #[test]
    fn alternate_display_appends_the_whole_chain_once() {
        let inner = Error::io(io::Error::other("bottom"), "middle");
        let err = Error::new(ErrorKind::Protocol, "top").with_source(inner);
        assert_eq!(err.to_string(), "protocol error: top");
        assert_eq!(
            format!("{err:#}"),
            "protocol error: top: I/O error: middle: bottom"
        );
    }

    #[test]
    fn interrupted_io_maps_to_interrupted_kind() {
        let err = Error::io(io::Error::from(io::ErrorKind::Interrupted), "poll");
        assert_eq!(err.kind(), ErrorKind::Interrupted);
        let back: io::Error = err.into();
        assert_eq!(back.kind(), io::ErrorKind::Interrupted);
    }

    #[test]
    fn buffer_too_short_keeps_message() {
        let err = Error::buffer_too_short(vec![1, 2, 3], 2);
        assert_eq!(err.message(), Some(&[1u8, 2, 3][..]));
        assert!(err.to_string().contains("3 bytes"));
    }

    #[test]
    fn error_is_send_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }
}
