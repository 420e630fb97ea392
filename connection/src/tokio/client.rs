//! [`AsyncClient`]: connects to a listener (ours, async or not, or
//! CPython's) on a tokio runtime.

use std::future::Future;
use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};

use super::{handshake, AsyncConnection};
use crate::address::Address;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::sys::Socket;

/// The async twin of [`Client`], with the same options: build a [`Client`]
/// (authkey, timeouts, strictness, message size limit) and turn it into an
/// `AsyncClient` with `From`, or use [`AsyncClient::connect_with_authkey`].
///
/// Connecting and the handshake are awaited, never blocking the runtime's
/// thread (a host name is resolved off it).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use connection::tokio::AsyncClient;
/// use connection::{Client, Listener};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let name = format!("abstract:connection-doc-async-client-{}", std::process::id());
/// let mut listener = Listener::builder().authkey(b"key").bind_async(&name.parse()?).await?;
/// let address = listener.address().clone();
/// let server = tokio::spawn(async move { listener.accept().await?.send_bytes(b"hi").await });
/// let client = AsyncClient::from(
///     Client::new()
///         .authkey(b"key")
///         .handshake_timeout(Some(Duration::from_secs(10))),
/// );
/// let mut conn = client.connect(&address).await?;
/// assert_eq!(conn.recv_bytes().await?, b"hi");
/// server.await.unwrap()?;
/// # Ok::<(), connection::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct AsyncClient {
    options: Client,
}

impl From<Client> for AsyncClient {
    fn from(options: Client) -> AsyncClient {
        AsyncClient { options }
    }
}

impl AsyncClient {
    /// Default options, as [`Client::new`]: no authkey.
    pub fn new() -> AsyncClient {
        AsyncClient::default()
    }

    /// Connects to `address` and authenticates with `authkey`: CPython's
    /// `Client(address, authkey=authkey)`, awaited. A listener with another
    /// key makes this fail with [`ErrorKind::AuthenticationFailed`](crate::ErrorKind::AuthenticationFailed).
    pub async fn connect_with_authkey(
        address: &Address,
        authkey: &[u8],
    ) -> Result<AsyncConnection> {
        AsyncClient::from(Client::new().authkey(authkey))
            .connect(address)
            .await
    }

    /// Connects to `address` and, with an authkey, authenticates. The
    /// [connect timeout](Client::connect_timeout) bounds establishing the
    /// connection (all the addresses a host name resolves to together),
    /// the [handshake timeout](Client::handshake_timeout) the handshake;
    /// either ends with [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut). Errors name the address.
    ///
    /// Cancel-safe in that nothing is lost: a dropped `connect` closes the
    /// socket it was connecting or authenticating (the listener sees end of
    /// file), and a new call starts afresh.
    pub async fn connect(&self, address: &Address) -> Result<AsyncConnection> {
        let options = &self.options;
        let fd = within(options.connect_timeout, connect_socket(address))
            .await
            .unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()))
            .map_err(|err| Error::io(err, "connect").context(address))?;
        let mut conn =
            AsyncConnection::from_socket(Socket::from_owned(fd), options.max_message_size)?;
        if let Some(key) = &options.authkey {
            let handshake =
                handshake::authenticate(handshake::Role::Client, &mut conn, key, options.strict);
            handshake_within(options.handshake_timeout, handshake)
                .await
                .map_err(|err| err.context(format!("handshake with {address}")))?;
        }
        Ok(conn)
    }
}

/// Runs a handshake to its end, or fails it with [`ErrorKind::TimedOut`](crate::ErrorKind::TimedOut)
/// at `timeout`.
pub(super) async fn handshake_within(
    timeout: Option<Duration>,
    handshake: impl Future<Output = Result<()>>,
) -> Result<()> {
    within(timeout, handshake)
        .await
        .unwrap_or_else(|| Err(crate::proto::handshake::timed_out()))
}

/// Runs `future` to its end, or until `timeout` (`None` when it passed).
async fn within<T>(timeout: Option<Duration>, future: impl Future<Output = T>) -> Option<T> {
    match timeout {
        Some(timeout) => tokio::time::timeout(timeout, future).await.ok(),
        None => Some(future.await),
    }
}

async fn connect_socket(address: &Address) -> io::Result<OwnedFd> {
    let tcp = |stream: TcpStream| -> io::Result<OwnedFd> {
        stream.set_nodelay(true)?;
        Ok(stream.into_std()?.into())
    };
    match address {
        Address::Tcp(addr) => tcp(TcpStream::connect(addr).await?),
        Address::TcpHost { host, port } => tcp(TcpStream::connect((host.as_str(), *port)).await?),
        Address::Unix(path) => Ok(UnixStream::connect(path).await?.into_std()?.into()),
        // tokio takes a leading NUL for the abstract namespace.
        Address::Abstract(name) => Ok(UnixStream::connect(format!("\0{name}"))
            .await?
            .into_std()?
            .into()),
    }
}
