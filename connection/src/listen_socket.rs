//! [`ListenSocket`]: the bound socket that both listeners accept from, the
//! blocking [`Listener`](crate::Listener) by polling it and the tokio one
//! through the runtime's reactor. Binding, accepting and removing the
//! socket file are written here once.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

use interprocess::local_socket::ListenerOptions;
use interprocess::os::unix::uds_local_socket;

use crate::address::Address;
use crate::error::{Error, Result};
use crate::handshakes::Accepted;
use crate::sys::{self, Socket};

/// A listening socket that never blocks (a connection that readiness
/// reported may be gone by the time it is accepted), with the address it
/// is bound to and the Unix socket file it made, which it removes when
/// closed or dropped.
pub(crate) struct ListenSocket {
    kind: Kind,
    address: Address,
    created_file: Option<PathBuf>,
}

enum Kind {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl ListenSocket {
    /// Binds to `address` and listens with `backlog`. A host name is bound
    /// at the addresses it `resolved` to if given (the tokio listener
    /// resolves without blocking), else resolved here. A TCP listener
    /// without an `authkey` (or with an empty one) logs a warning.
    pub(crate) fn bind(
        address: &Address,
        resolved: Option<Vec<SocketAddr>>,
        backlog: u32,
        authkey: Option<&[u8]>,
    ) -> Result<ListenSocket> {
        let socket = bind_socket(address, resolved, backlog)
            .map_err(|err| Error::io(err, "bind").context(address))?;
        if socket.address.is_tcp() && authkey.map_or(true, <[u8]>::is_empty) {
            tracing::warn!(
                address = %socket.address,
                "TCP listener without an authkey (or with an empty one): \
                 anyone who can reach it can send messages"
            );
        }
        Ok(socket)
    }

    /// The address bound to: for TCP the actual one, with the port chosen.
    pub(crate) fn address(&self) -> &Address {
        &self.address
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::Unix(listener) => listener.as_fd(),
            Kind::Tcp(listener) => listener.as_fd(),
        }
    }

    /// Takes the next connection from the kernel's queue, or `None` if
    /// there is none (the listening socket never blocks).
    ///
    /// The connection's socket is blocking, as a [`Connection`](crate::Connection)
    /// needs (an async one never waits in a system call, whatever the
    /// mode): Linux does not pass the listening socket's `O_NONBLOCK` on to
    /// it, but the BSDs do.
    pub(crate) fn accept(&self) -> std::io::Result<Option<Accepted>> {
        let accepted = sys::retry_interrupted(|| match &self.kind {
            Kind::Unix(listener) => listener.accept().and_then(|(stream, peer)| {
                stream.set_nonblocking(false)?;
                Ok((OwnedFd::from(stream), Address::from_unix_peer(&peer)))
            }),
            Kind::Tcp(listener) => listener.accept().and_then(|(stream, peer)| {
                stream.set_nonblocking(false)?;
                // Handshake messages and small replies must not wait for
                // Nagle's algorithm.
                stream.set_nodelay(true)?;
                Ok((OwnedFd::from(stream), Some(Address::Tcp(peer))))
            }),
        });
        match accepted {
            Ok((fd, peer)) => Ok(Some((Socket::from_owned(fd), peer))),
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Stops listening and removes the socket file this listener made,
    /// reporting a failure that dropping would only log. A file already
    /// gone is no error.
    pub(crate) fn close(mut self) -> Result<()> {
        match self.created_file.take() {
            Some(path) => remove_socket_file(&path).map_err(|err| err.context(&self.address)),
            None => Ok(()),
        }
    }
}

/// What a handshake that failed is reported as: an error for that one
/// peer, naming it and the listener.
pub(crate) fn handshake_failed(err: Error, peer: Option<&Address>, listener: &Address) -> Error {
    let peer = peer.map_or("an unnamed peer".to_string(), Address::to_string);
    tracing::debug!(error = %err, %peer, %listener, "handshake failed");
    err.context(format!("handshake with {peer} on {listener}"))
        .of_one_peer()
}

fn bind_socket(
    address: &Address,
    resolved: Option<Vec<SocketAddr>>,
    backlog: u32,
) -> std::io::Result<ListenSocket> {
    let (kind, created_file) = match address {
        Address::Tcp(addr) => (Kind::Tcp(TcpListener::bind(addr)?), None),
        Address::TcpHost { host, port } => match resolved {
            Some(addrs) => (Kind::Tcp(TcpListener::bind(&addrs[..])?), None),
            None => (Kind::Tcp(TcpListener::bind((host.as_str(), *port))?), None),
        },
        Address::Unix(_) | Address::Abstract(_) => {
            // We unlink the file ourselves, so that close() can report it.
            let listener = ListenerOptions::new()
                .name(address.local_socket_name()?)
                .reclaim_name(false)
                .create_sync_as::<uds_local_socket::Listener>()?;
            let created = match address {
                Address::Unix(path) => Some(path.clone()),
                _ => None,
            };
            (Kind::Unix(listener.into()), created)
        }
    };
    let address = match &kind {
        Kind::Tcp(listener) => Address::Tcp(listener.local_addr()?),
        Kind::Unix(_) => address.clone(),
    };
    // From here on, dropping the socket removes the file it made.
    let socket = ListenSocket {
        kind,
        address,
        created_file,
    };
    sys::listen(socket.fd(), backlog.min(i32::MAX as u32) as i32)?;
    match &socket.kind {
        Kind::Unix(listener) => listener.set_nonblocking(true)?,
        Kind::Tcp(listener) => listener.set_nonblocking(true)?,
    }
    Ok(socket)
}

fn remove_socket_file(path: &PathBuf) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(err, "remove socket file"))
        }
        _ => Ok(()),
    }
}

impl Drop for ListenSocket {
    fn drop(&mut self) {
        if let Some(path) = self.created_file.take() {
            if let Err(err) = remove_socket_file(&path) {
                tracing::debug!(error = %err, path = %path.display(), "socket file left behind");
            }
        }
    }
}

impl AsRawFd for ListenSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd().as_raw_fd()
    }
}

/// The std listener inside owns the descriptor and is never swapped out.
#[cfg(feature = "tokio")]
impl sys::OwnsItsFd for ListenSocket {}
