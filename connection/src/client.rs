//! [`Client`]: connects to a [`Listener`](crate::Listener) (or to CPython's),
//! authenticating with an authkey when given one.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use interprocess::local_socket::ConnectOptions;
use interprocess::os::unix::uds_local_socket;
use interprocess::ConnectWaitMode;

use crate::address::Address;
use crate::auth::{self, Authkey};
use crate::connection::{Connection, Direction, DEFAULT_MAX_MESSAGE_SIZE};
use crate::error::{Error, Result};
use crate::proto::handshake::Role;
use crate::setters::setters;
use crate::sys::Socket;

/// How long a client waits for the listener's side of the handshake unless
/// told otherwise: 30 seconds. Longer than a listener's default
/// [handshake timeout](crate::DEFAULT_HANDSHAKE_TIMEOUT), because a
/// listener busy with other peers (accepting one at a time) may take a
/// while to get to us.
pub const DEFAULT_CLIENT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The connecting side, like CPython's `multiprocessing.connection.Client`:
/// the options for connecting (authkey, timeouts, strictness, message size
/// limit) and [`connect`](Client::connect), which returns a [`Connection`].
///
/// [`Client::connect_with_authkey`] is the common case in one call.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use connection::{Client, ErrorKind, Listener};
///
/// // Abstract names are machine-wide: make this one unique to the process.
/// let name = format!("abstract:connection-doc-client-{}", std::process::id());
/// let mut listener = Listener::builder().authkey(b"key").bind(&name.parse()?)?;
/// let address = listener.address().clone();
/// let server = std::thread::spawn(move || -> connection::Result<()> {
///     listener.accept()?.send_bytes(b"hi")
/// });
/// let mut conn = Client::new()
///     .authkey(b"key")
///     .handshake_timeout(Some(Duration::from_secs(10)))
///     .connect(&address)?;
/// assert_eq!(conn.recv_bytes()?, b"hi");
/// server.join().unwrap()?;
///
/// // Nothing listens here any more.
/// let err = Client::new().connect(&address).unwrap_err();
/// assert!(err.to_string().contains(&name), "{err}");
/// # Ok::<(), connection::Error>(())
/// ```
///
/// A listener that never accepts cannot complete the handshake:
///
/// ```
/// use std::time::Duration;
/// use connection::{Address, Client, ErrorKind, Listener};
///
/// let listener = Listener::builder().authkey(b"k").bind(&Address::localhost(0))?;
/// let err = Client::new()
///     .authkey(b"k")
///     .connect_timeout(Some(Duration::from_secs(5)))
///     .handshake_timeout(Some(Duration::from_millis(100)))
///     .strict(true)
///     .connect(listener.address())
///     .unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::TimedOut);
/// # Ok::<(), connection::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    pub(crate) authkey: Option<Authkey>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) handshake_timeout: Option<Duration>,
    pub(crate) strict: bool,
    pub(crate) max_message_size: u64,
}

/// The same as [`Client::new`].
impl Default for Client {
    fn default() -> Client {
        Client {
            authkey: None,
            connect_timeout: None,
            handshake_timeout: Some(DEFAULT_CLIENT_HANDSHAKE_TIMEOUT),
            strict: false,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl Client {
    /// Default options: no authkey, no connect timeout, a handshake timeout
    /// of [`DEFAULT_CLIENT_HANDSHAKE_TIMEOUT`], HMAC-MD5 accepted, messages
    /// up to [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub fn new() -> Client {
        Client::default()
    }

    /// Connects to `address` and authenticates with `authkey`, with default
    /// options otherwise: CPython's `Client(address, authkey=authkey)`. A
    /// listener with another key makes this fail with
    /// [`ErrorKind::AuthenticationFailed`](crate::ErrorKind::AuthenticationFailed).
    ///
    /// # Examples
    ///
    /// ```
    /// use connection::{Address, Client, Listener};
    ///
    /// let mut listener = Listener::builder().authkey(b"k").bind(&Address::localhost(0))?;
    /// let address = listener.address().clone();
    /// let client = std::thread::spawn(move || Client::connect_with_authkey(&address, b"k"));
    /// listener.accept()?.send_bytes(b"welcome")?;
    /// assert_eq!(client.join().unwrap()?.recv_bytes()?, b"welcome");
    /// # Ok::<(), connection::Error>(())
    /// ```
    pub fn connect_with_authkey(address: &Address, authkey: &[u8]) -> Result<Connection> {
        Client::new().authkey(authkey).connect(address)
    }

    /// Authenticate with this key (the listener's must match).
    pub fn authkey(mut self, key: impl AsRef<[u8]>) -> Client {
        self.authkey = Some(Authkey(key.as_ref().to_vec()));
        self
    }

    setters! {
        /// How long establishing the connection may take, for each address a
        /// host name resolves to (default `None`: as long as the OS allows).
        /// For a Unix socket this includes waiting for room while the
        /// listener's queue of connections not yet accepted is full; at the
        /// end of it the error is [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut).
        connect_timeout: Option<Duration>;

        /// How long the whole handshake may take (default
        /// [`DEFAULT_CLIENT_HANDSHAKE_TIMEOUT`]; `None` waits forever).
        handshake_timeout: Option<Duration>;

        /// Refuse a listener that authenticates with HMAC-MD5, which includes
        /// every Python 3.11 or older (default: accept it).
        strict: bool;

        /// The [`max_message_size`](Connection::max_message_size) of the connection.
        max_message_size: u64;
    }

    /// Connects to `address` and, with an authkey, authenticates. Errors
    /// name the address: a refused connection is [`ErrorKind::Io`] with
    /// [`io_error_kind`](Error::io_error_kind) `ConnectionRefused`.
    ///
    /// [`ErrorKind::Io`]: crate::ErrorKind::Io
    pub fn connect(&self, address: &Address) -> Result<Connection> {
        let fd = connect_socket(address, self.connect_timeout)
            .map_err(|err| explain_connect_error(err, address).context(address))?;
        let socket = Socket::from_owned(fd);
        if let Some(key) = &self.authkey {
            let deadline = self
                .handshake_timeout
                .and_then(|t| Instant::now().checked_add(t));
            auth::authenticate(Role::Client, &socket, key, self.strict, deadline)
                .map_err(|err| err.context(format!("handshake with {address}")))?;
        }
        let mut conn = Connection::new(socket, Direction::Both);
        conn.set_max_message_size(self.max_message_size);
        Ok(conn)
    }
}

fn connect_socket(address: &Address, timeout: Option<Duration>) -> io::Result<OwnedFd> {
    match address {
        Address::Tcp(addr) => connect_tcp(&[*addr], timeout),
        Address::TcpHost { host, port } => {
            let addrs: Vec<SocketAddr> = (host.as_str(), *port).to_socket_addrs()?.collect();
            connect_tcp(&addrs, timeout)
        }
        Address::Unix(_) | Address::Abstract(_) => match timeout {
            None => connect_local(address, ConnectWaitMode::Unbounded),
            Some(timeout) => connect_local_within(address, timeout),
        },
    }
}

fn connect_local(address: &Address, wait: ConnectWaitMode) -> io::Result<OwnedFd> {
    let stream = ConnectOptions::new()
        .name(address.local_socket_name()?)
        .wait_mode(wait)
        .connect_sync_as::<uds_local_socket::Stream>()?;
    Ok(stream.into())
}

/// Connects to a Unix socket, trying until `timeout` while the listener's
/// queue is full. A non-blocking connect to a full queue fails with
/// `EAGAIN` and leaves the socket unconnected; `interprocess` takes that
/// for a connection in progress and returns the unconnected socket as if
/// it had connected, so check for a peer, and try again after a pause if
/// there is none. (The kernel offers no way to wait for room in the queue
/// other than a blocking connect without a deadline.)
fn connect_local_within(address: &Address, timeout: Duration) -> io::Result<OwnedFd> {
    let deadline = Instant::now().checked_add(timeout);
    let left = || deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
    let mut pause = Duration::from_millis(1);
    loop {
        let fd = connect_local(address, ConnectWaitMode::Timeout(left()))?;
        let stream = std::os::unix::net::UnixStream::from(fd);
        match stream.peer_addr() {
            Ok(_) => return Ok(stream.into()),
            Err(err) if err.kind() == io::ErrorKind::NotConnected => {}
            Err(err) => return Err(err),
        }
        let left = left();
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the listener's queue stayed full for {timeout:?}"),
            ));
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Tries each address in turn, as std's `TcpStream::connect` does, and
/// reports the last failure.
fn connect_tcp(addrs: &[SocketAddr], timeout: Option<Duration>) -> io::Result<OwnedFd> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "the host name resolved to nothing");
    for addr in addrs {
        let attempt = match timeout {
            Some(t) => TcpStream::connect_timeout(addr, t),
            None => TcpStream::connect(addr),
        };
        match attempt {
            Ok(stream) => {
                // Handshake messages and small requests must not wait for
                // Nagle's algorithm.
                stream.set_nodelay(true)?;
                return Ok(stream.into());
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// Adds what the OS error leaves out: connecting to a file that is no
/// socket gives a bare "connection refused" on Linux.
fn explain_connect_error(err: io::Error, address: &Address) -> Error {
    let not_a_socket = |path: &Path| {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(path).is_ok_and(|m| !m.file_type().is_socket())
    };
    let what = match address {
        Address::Unix(path) if not_a_socket(path) => {
            "connect (the path exists but is not a socket)"
        }
        Address::Unix(_) | Address::Abstract(_)
            if err.kind() == io::ErrorKind::ConnectionRefused =>
        {
            "connect (nothing is listening there)"
        }
        _ => "connect",
    };
    Error::io(err, what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorKind, Listener};

    #[test]
    fn connect_timeout_to_a_full_unix_queue_times_out_then_connects_once_there_is_room() {
        let name = format!("abstract:connection-test-full-queue-{}", std::process::id());
        let address: Address = name.parse().unwrap();
        let mut listener = Listener::builder().backlog(0).bind(&address).unwrap();
        // A backlog of 0 leaves room for one connection not yet accepted.
        let _queued = Client::new().connect(&address).unwrap();
        let err = Client::new()
            .connect_timeout(Some(Duration::from_millis(100)))
            .connect(&address)
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains(&name), "{err}");

        let _first = listener.accept().unwrap();
        let mut conn = Client::new()
            .connect_timeout(Some(Duration::from_secs(30)))
            .connect(&address)
            .unwrap();
        let mut second = listener.accept().unwrap();
        conn.send_bytes(b"connected").unwrap();
        assert_eq!(second.recv_bytes().unwrap(), b"connected");
    }
}
