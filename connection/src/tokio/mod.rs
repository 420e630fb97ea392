//! Connections on a tokio runtime (the `tokio` feature): [`AsyncConnection`],
//! [`AsyncListener`] and [`AsyncClient`], the async twins of
//! [`Connection`](crate::Connection), [`Listener`](crate::Listener) and
//! [`Client`](crate::Client).
//!
//! The same wire format (CPython's framing, so a Python peer can talk to
//! an async listener), the same authkey handshake, the same
//! [`max_message_size`](AsyncConnection::max_message_size) limit (refused
//! before anything is set aside, the message left unread, buffers growing
//! only as bytes arrive) and the same [`ErrorKind`](crate::ErrorKind)s.
//! Sockets are watched with tokio's `AsyncFd`; every read and write is a
//! non-blocking system call, so nothing here ever holds a runtime thread.
//! A blocking connection becomes an async one and back with
//! [`AsyncConnection::from_blocking`] and [`AsyncConnection::into_blocking`].
//! The options are the blocking side's too: an [`AsyncListener`] is bound
//! by [`ListenerBuilder::bind_async`](crate::ListenerBuilder::bind_async),
//! an [`AsyncClient`] made `From` a [`Client`](crate::Client).
//!
//! Every future here is cancel-safe: a receive dropped in `select!` or at
//! a timeout keeps what it read in the connection, and the next receive
//! returns the message whole; a dropped send never leaves half a message
//! (see [`AsyncConnection`](AsyncConnection#cancel-safety)).
//!
//! # Example
//!
//! A server that answers every authenticated peer in a task of its own:
//!
//! ```
//! use connection::tokio::AsyncClient;
//! use connection::{Address, ErrorKind, Listener};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> connection::Result<()> {
//!     let mut listener = Listener::builder()
//!         .authkey(b"secret")
//!         .bind_async(&Address::localhost(0))
//!         .await?;
//!     let address = listener.address().clone();
//!     tokio::spawn(async move {
//!         loop {
//!             // A peer that fails its handshake is an error for that peer only.
//!             let Ok(mut conn) = listener.accept().await else { continue };
//!             tokio::spawn(async move {
//!                 while let Ok(n) = conn.recv::<u64>().await {
//!                     if conn.send(&(n * 2)).await.is_err() {
//!                         break;
//!                     }
//!                 }
//!             });
//!         }
//!     });
//!
//!     let mut conn = AsyncClient::connect_with_authkey(&address, b"secret").await?;
//!     conn.send(&21u64).await?;
//!     assert_eq!(conn.recv::<u64>().await?, 42);
//!
//!     let wrong = AsyncClient::connect_with_authkey(&address, b"guess").await;
//!     assert_eq!(wrong.unwrap_err().kind(), ErrorKind::AuthenticationFailed);
//!     Ok(())
//! }
//! ```

mod bulk;
mod client;
mod connection;
mod handshake;
mod listener;
mod ready;
mod receive;
mod receive_state;

pub use self::client::AsyncClient;
pub use self::connection::AsyncConnection;
pub use self::listener::AsyncListener;

#[cfg(test)]
mod tests;
