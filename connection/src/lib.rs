//! Message-oriented connections between threads and processes: the
//! Connection objects of Python's `processing` package (later
//! `multiprocessing.connection`), for Rust.
//!
//! A [`Connection`] is one end of a connected socket that carries whole
//! messages: raw bytes with [`send_bytes`](Connection::send_bytes) /
//! [`recv_bytes`](Connection::recv_bytes), or any serde-serializable value
//! with [`send`](Connection::send) / [`recv`](Connection::recv).
//!
//! # Example
//!
//! The original documentation's tour, in Rust:
//!
//! ```
//! use connection::pipe;
//!
//! let (mut a, mut b) = pipe()?;
//! a.send(&(1, "hello", None::<()>))?;
//! let list: (i32, String, Option<()>) = b.recv()?;
//! assert_eq!(list, (1, "hello".to_string(), None));
//!
//! b.send_bytes(b"thank you")?;
//! assert_eq!(a.recv_bytes()?, b"thank you");
//!
//! // recv_bytes_into an i32 buffer: the bytes of five i32s land at the start.
//! let arr1: Vec<i32> = (0..5).collect();
//! let bytes: Vec<u8> = arr1.iter().flat_map(|i| i.to_ne_bytes()).collect();
//! a.send_bytes(&bytes)?;
//! let mut arr2 = [0u8; 10 * 4];
//! let count = b.recv_bytes_into(&mut arr2, 0)?;
//! assert_eq!(count, arr1.len() * std::mem::size_of::<i32>());
//! let arr2: Vec<i32> = arr2
//!     .chunks_exact(4)
//!     .map(|c| i32::from_ne_bytes(c.try_into().unwrap()))
//!     .collect();
//! assert_eq!(arr2, [0, 1, 2, 3, 4, 0, 0, 0, 0, 0]);
//! # Ok::<(), connection::Error>(())
//! ```
//!
//! # Bulk data
//!
//! Arrays, images and text move at memory speed when their type says what
//! they are. Which to use:
//!
//! - **Numbers and `#[repr(C)]` records**: [`send_slice`](Connection::send_slice)
//!   and [`recv_vec`](Connection::recv_vec) (or
//!   [`recv_into_slice`](Connection::recv_into_slice), into memory you
//!   have) for any [`bytemuck::Pod`] type. The message is the elements'
//!   bytes as they lie in memory, nothing added: **host byte order and
//!   layout**, so both ends must be the same kind of machine. A Python
//!   peer reads it with `numpy.frombuffer(conn.recv_bytes(), dtype)` or
//!   `array.array(code, conn.recv_bytes())` and answers with
//!   `conn.send_bytes(arr.tobytes())`. Sending writes the slice as it lies
//!   (no encoding, no copy of a large one); receiving reads from the
//!   socket straight into a `Vec<T>` allocated for `T`, so alignment is
//!   the vector's own. A length that is not a whole number of
//!   elements is a [`Decode`](ErrorKind::Decode) error, the connection
//!   left usable.
//! - **Bytes inside values**: [`serde_bytes::ByteBuf`], or
//!   `#[serde(with = "connection::serde_bytes")]` on a `Vec<u8>` field.
//!   serde then hands the codec the whole buffer at once (one copy, or none
//!   when the message streams, below), and a message that is one byte
//!   string is received straight into the buffer the value keeps.
//! - **Plain `Vec<u8>`, `Vec<f64>`, `Vec<String>`** work with
//!   [`send`](Connection::send) / [`recv`](Connection::recv) as they are,
//!   but serde hands them over one element at a time: several times slower
//!   than the types above (figures in the README). A plain `Vec<u8>` costs
//!   a serde call per byte: prefer `ByteBuf` or `serde_bytes`.
//!
//! ```
//! use connection::serde_bytes::ByteBuf;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct Tile {
//!     x: u32,
//!     y: u32,
//!     #[serde(with = "connection::serde_bytes")]
//!     pixels: Vec<u8>,
//! }
//!
//! let (mut a, mut b) = connection::pipe()?;
//! a.send(&Tile { x: 3, y: 4, pixels: vec![255; 64 * 64] })?;
//! let tile: Tile = b.recv()?;
//! assert_eq!((tile.x, tile.pixels.len()), (3, 4096));
//!
//! a.send(&ByteBuf::from(vec![1u8, 2, 3]))?;
//! assert_eq!(b.recv::<ByteBuf>()?.into_vec(), [1, 2, 3]);
//!
//! let heights: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5).collect();
//! a.send_slice(&heights)?;
//! assert_eq!(b.recv_vec::<f32>()?, heights);
//! # Ok::<(), connection::Error>(())
//! ```
//!
//! How large values travel: [`send`](Connection::send) first counts a
//! value's encoded length, so that it is written once into a buffer of
//! the right size. A value over 1 MiB is not put in a buffer at all: it
//! is encoded straight to the socket through a small staging buffer, and
//! long byte strings go from the value to the socket uncopied. This asks
//! one thing of a `Serialize`: to write the same bytes both times. One
//! that does not gets an [`Encode`](ErrorKind::Encode) error; if part of
//! the message had gone out, the connection is shut down for sending, so
//! the peer sees [`Truncated`](ErrorKind::Truncated) rather than a wrong
//! value. [`recv`](Connection::recv) decodes a message of 64 KiB or more
//! as it arrives, a 256 KiB window at a time, while the sender is still
//! encoding the rest: no buffer as large as the message is needed, and a
//! long string or byte string is read from the socket straight into the
//! `String` or buffer that keeps it. [`recv_vec`](Connection::recv_vec)
//! sets aside the announced length at once (within
//! [`max_message_size`](Connection::max_message_size)) and reads into it
//! without zeroing it first, so the operating system commits its pages
//! only as bytes land in them.
//!
//! # Listeners and clients
//!
//! Besides pipes, connections come from a [`Listener`] bound to an
//! [`Address`] (a Unix socket path, a Linux abstract name, or TCP) and a
//! [`Client`] that connects to it, as in Python's
//! `multiprocessing.connection`. With an authkey both ends run CPython's
//! challenge-response handshake, so either end can be a Python process.
//! [`wait()`] watches several connections and listeners at once.
//!
//! ```
//! use connection::{Address, Client, Listener};
//!
//! let mut listener = Listener::builder()
//!     .authkey(b"shared secret")
//!     .bind(&Address::localhost(0))?; // port 0: any free port
//! let address = listener.address().clone(); // now with the real port
//!
//! let client = std::thread::spawn(move || -> connection::Result<String> {
//!     let mut conn = Client::connect_with_authkey(&address, b"shared secret")?;
//!     conn.send(&("add", 2, 3))?;
//!     conn.recv()
//! });
//!
//! let mut conn = listener.accept()?; // authenticated, or an error
//! let (op, a, b): (String, i32, i32) = conn.recv()?;
//! conn.send(&format!("{op} -> {}", a + b))?;
//! assert_eq!(client.join().unwrap()?, "add -> 5");
//! # Ok::<(), connection::Error>(())
//! ```
//!
//! # Wire format
//!
//! Every message is a 4-byte big-endian signed length followed by the
//! payload. A payload of 2^31 bytes or more is announced by the length `-1`
//! followed by an 8-byte big-endian unsigned length. This is byte for byte
//! what CPython's `multiprocessing.connection` writes, so byte messages
//! interoperate with Python peers. A value sent with
//! [`send`](Connection::send) is one message whose payload is the value's
//! bincode (serde) encoding, for Rust peers; Python cannot read those.
//!
//! # Talking to Python with objects
//!
//! CPython's `Connection.send(obj)` sends a pickle. Receive it with
//! [`recv_pickle`](Connection::recv_pickle), and answer with
//! [`send_pickle`](Connection::send_pickle), which Python's `recv()` turns
//! into plain Python values. Only plain data crosses (`None`, `bool`,
//! `int`, `float`, `str`, `bytes`, `bytearray`, `list`, `tuple`, `dict`,
//! `set`, `frozenset`): a pickle naming a class or a function is refused,
//! never run. The [`pickle`] module has the type mapping and the bounds on
//! hostile input. A message without a fixed shape reads as a
//! [`pickle::Value`], which keeps every Python type exact (tuples,
//! `bytearray`, `frozenset`, ints of any size, tuple keys). A plain
//! [`recv`](Connection::recv) given a pickle says so in its error.
//!
//! ```
//! use std::collections::HashMap;
//!
//! let (mut rust, mut python) = connection::pipe()?;
//! // What Python's `conn.send({"x": 1})` puts on the wire:
//! python.send_bytes(b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01x\x94K\x01s.")?;
//! let request: HashMap<String, i64> = rust.recv_pickle()?;
//! rust.send_pickle(&HashMap::from([("x squared", request["x"] * request["x"])]))?;
//! // Python's `conn.recv()` would now return {'x squared': 1}.
//! # let reply: HashMap<String, i64> = python.recv_pickle()?;
//! # assert_eq!(reply["x squared"], 1);
//! # Ok::<(), connection::Error>(())
//! ```
//!
//! # Errors and what they leave behind
//!
//! Every fallible call returns [`Error`], whose [`ErrorKind`] says what
//! happened and what state the connection is in:
//!
//! - [`ErrorKind::Eof`]: the other end closed cleanly; nothing was lost.
//! - [`ErrorKind::Truncated`]: the other end went away in the middle of a
//!   message, for example because its process was killed while sending.
//!   The partial message is discarded, never returned as a value, and the
//!   connection refuses further receives with the same kind: once a message
//!   is cut short its end cannot be known, so nothing after it could be
//!   trusted. (The original documentation warns that a pipe "is likely to
//!   become corrupted"; this is what that means precisely.)
//! - [`ErrorKind::MessageTooLarge`]: a length header exceeded the
//!   connection's [`max_message_size`](Connection::max_message_size)
//!   (default [`DEFAULT_MAX_MESSAGE_SIZE`], 1 GiB) or a caller's limit. It
//!   is refused before any memory is set aside for it, and the message is
//!   left unread, so a larger limit gets it. Whatever a header claims, a
//!   receive's buffer grows only as bytes arrive: it never holds more than
//!   what the peer actually sent plus one chunk (1 MiB, growing with what
//!   arrived up to 16 MiB, so large messages need few reallocations).
//!   [`recv_vec`](Connection::recv_vec) is the exception: it sets aside
//!   the announced length at once, memory the operating system commits
//!   only as bytes land (see [Bulk data](#bulk-data)).
//! - [`ErrorKind::Decode`]: a message was not the type asked for, or it
//!   went beyond the bounds on decoding below. The whole message is
//!   consumed (a large one is decoded as it arrives; what follows the
//!   point where it failed, or a value that ended early, is read and
//!   dropped), never more, so the next message is readable.
//! - [`ErrorKind::BufferTooShort`]: the message did not fit the caller's
//!   buffer; the error carries all of it.
//!
//! No input from a peer makes this crate panic.
//!
//! An error's text (`Display`) is its kind and context; what caused it (an
//! operating-system error, a serde message) is its
//! [`source`](std::error::Error::source), so a reporter that walks the
//! chain prints each part once. `format!("{err:#}")` gives the whole chain
//! on one line.
//!
//! ## Bounds on decoding
//!
//! Whatever a payload claims inside, [`recv`](Connection::recv) and
//! [`decode`] decoding a payload of `n` bytes as a `T`:
//!
//! - allocate a string or byte string only when the payload has room for
//!   all its claimed bytes, and then only as they arrive, so strings take
//!   at most `n` bytes together;
//! - let a sequence or map reserve room up front for at most one element
//!   per byte left, and hold at most `n` elements in all collections
//!   together besides at most [`MAX_EMPTY_ELEMENTS`] (2^20) that occupy no
//!   bytes (`()`, empty structs), so memory stays within `4 * E * n` bytes
//!   plus a constant, where `E` is the in-memory size of the largest
//!   element of a collection in `T` (24 for a `Vec<Vec<u8>>`, 48 for a
//!   `HashMap<String, Vec<u64>>`'s entries). No bound can ignore `T`: a
//!   `Vec<Option<[u8; 4096]>>` of `None`s is 4097 bytes in memory for
//!   each byte sent;
//! - nest at most [`MAX_DECODE_DEPTH`] (256) levels (each `Option` holding
//!   a value, newtype, tuple, struct, sequence, map and enum variant is
//!   one), so a deep payload cannot overflow the stack;
//! - take time in proportion to `n` plus those empty elements.
//!
//! Beyond any of these bounds is a [`ErrorKind::Decode`] error.
//!
//! # Shared memory for large messages
//!
//! Between two ends of this crate that agreed to it (both ends of a
//! [`pipe()`], an end passed to a child and rebuilt there, the `pool`
//! crate's local workers; a [`Listener`]/[`Client`] connection only when
//! both programs call [`Connection::set_shared_memory`]), a message can
//! travel as a sealed memfd passed over the Unix socket instead of through
//! it. With a [`SharedBuf`] filled in place and [`Connection::recv_shared`]
//! nothing is copied at all; from a threshold up, when one is set, the
//! copying calls send through memfds that each sending end recycles (one
//! copy in, one copy out, no fresh pages). The [`shared`] module has the
//! rules, the checks a receiver makes, the wire markers and the figures.
//!
//! ```
//! use connection::SharedBuf;
//!
//! let (mut a, mut b) = connection::pipe()?;
//! let mut buf = SharedBuf::new(1 << 20)?; // 1 MiB of shared memory
//! buf[..5].copy_from_slice(b"hello");
//! a.send_shared(buf)?; // its descriptor goes, not its bytes
//! let view = b.recv_shared()?; // a read-only mapping of the same pages
//! assert_eq!(&view[..5], b"hello");
//! assert_eq!(view.len(), 1 << 20);
//! # Ok::<(), connection::Error>(())
//! ```
//!
//! # Processes
//!
//! Pass an end to a child process (spawned with exec, not only forked) with
//! [`Connection::pass_to_child`]; the child rebuilds it with
//! [`Connection::from_env`]. Other descriptors (a shared memory page, a
//! file) travel the same way with the [`inherit`] module.
//!
//! # Async: the `tokio` feature
//!
//! With the `tokio` feature, the module `connection::tokio` (documented
//! in docs built with the feature) has the async twins of the types above:
//! `AsyncConnection` (`send`/`recv`, `send_bytes`/`recv_bytes`/
//! `recv_bytes_into`, through the same codec, framing, limits and error
//! kinds), `AsyncListener` and `AsyncClient` (the same authkey handshake,
//! each handshake a task with a timeout, never blocking a runtime thread).
//! Every receive is cancel-safe: dropped in a `select!` or at a timeout, it
//! leaves what it read in the connection, and the next receive returns the
//! message whole. `AsyncConnection::from_blocking(conn)` and
//! `into_blocking()` convert.
//!
//! ```toml
//! connection = { path = "...", features = ["tokio"] }
//! ```
//!
//! ```
//! # #[cfg(feature = "tokio")] {
//! use connection::tokio::AsyncClient;
//! use connection::{Address, Listener};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let mut listener = Listener::builder()
//!     .authkey(b"secret")
//!     .bind_async(&Address::localhost(0))
//!     .await?;
//! let address = listener.address().clone();
//! let client = tokio::spawn(async move {
//!     let mut conn = AsyncClient::connect_with_authkey(&address, b"secret").await?;
//!     conn.send(&("square", 7)).await?;
//!     conn.recv::<i64>().await
//! });
//! let mut conn = listener.accept().await?; // authenticated
//! let (_op, n): (String, i64) = conn.recv().await?;
//! conn.send(&(n * n)).await?;
//! assert_eq!(client.await.unwrap()?, 49);
//! # Ok::<(), connection::Error>(())
//! # }).unwrap();
//! # }
//! ```
//!
//! # Security
//!
//! [`recv`](Connection::recv) and [`recv_pickle`](Connection::recv_pickle)
//! decode whatever the peer sent. Decoding cannot run code (unlike
//! Python's pickle: pickles that name classes or functions are refused),
//! and it stays within the [bounds on decoding](#bounds-on-decoding)
//! whatever the bytes claim: a forged length, a deep nesting or an endless
//! count of empty elements is a [`Decode`](ErrorKind::Decode) error, not an
//! abort, a stack overflow or a hang. But a hostile peer can still feed a
//! program values it did not expect, and large ones within those bounds.
//! Only receive values from a peer you trust: the other end of a [`pipe()`],
//! or a peer that passed
//! authentication.
//!
//! ## What authentication protects, and what it does not
//!
//! With an authkey, [`Listener::accept`] and [`Client`] run CPython's
//! mutual HMAC challenge-response: each side proves it knows the key
//! without sending it, so a peer without the key never gets a
//! [`Connection`], and neither side talks to an impostor. Random
//! challenges stop replays of an old handshake. The default scheme is
//! HMAC-SHA256; HMAC-MD5 is accepted from Python 3.11 and older unless
//! [`strict`](ListenerBuilder::strict) mode is on. Nothing a peer sends is
//! decoded before the handshake succeeds, handshake messages are capped at
//! 256 bytes, and the handshake has a deadline. A listener runs the
//! handshakes of many peers side by side, each a descriptor and a few
//! hundred bytes, so a peer that connects and says nothing holds up no one
//! else; a crowd of them can fill the
//! [`max_pending_handshakes`](ListenerBuilder::max_pending_handshakes)
//! places (8192 by default) for at most the handshake timeout, and when
//! descriptors run out (or, with
//! [`shed_oldest_at_cap`](ListenerBuilder::shed_oldest_at_cap), the places
//! do) the oldest pending handshake makes room for a new peer.
//!
//! Authentication covers only who is at the other end when the
//! connection opens. There is no encryption and no integrity protection
//! afterwards: anyone who can watch or alter the traffic sees and can
//! change every message. Use TCP only on trusted networks or through a
//! tunnel (SSH, WireGuard, TLS terminator); prefer Unix sockets, which the
//! file permissions of their directory protect, on one machine. Without an
//! authkey there is no handshake at all, like CPython, and a TCP listener
//! logs a warning. The rule of the previous paragraph stands: never
//! [`recv`](Connection::recv) values from a peer that has not
//! authenticated.

#![warn(missing_docs)]
// Platform code alone may be `unsafe`: see `sys`.
#![deny(unsafe_code)]

mod address;
mod arriving;
mod auth;
mod bulk;
mod client;
mod codec;
mod connection;
mod error;
mod frame;
mod handshakes;
pub mod inherit;
mod listen_socket;
mod listener;
mod nowait;
pub mod pickle;
mod pipe;
mod proto;
mod read_ahead;
mod setters;
pub mod shared;
mod streaming;
#[allow(unsafe_code)]
mod sys;
#[cfg(feature = "tokio")]
pub mod tokio;
mod wait;

pub use crate::address::Address;
pub use crate::client::{Client, DEFAULT_CLIENT_HANDSHAKE_TIMEOUT};
pub use crate::codec::{decode, encode, encode_into, MAX_DECODE_DEPTH, MAX_EMPTY_ELEMENTS};
pub use crate::connection::{Connection, Direction, UnsentMessage, DEFAULT_MAX_MESSAGE_SIZE};
pub use crate::error::{Error, ErrorKind, Result};
pub use crate::listener::{
    Listener, ListenerBuilder, DEFAULT_BACKLOG, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_MAX_PENDING_HANDSHAKES,
};
pub use crate::pipe::{one_way_pipe, pipe};
pub use crate::shared::{shared_memory_stats, SharedBuf, SharedMemoryStats, SharedView};
pub use crate::wait::wait;

/// The `bytemuck` crate, whose [`Pod`](bytemuck::Pod) bound
/// [`Connection::send_slice`] and [`Connection::recv_vec`] take:
/// `#[derive(connection::bytemuck::Pod, connection::bytemuck::Zeroable)]`
/// on a `#[repr(C)]` struct makes it sendable as a slice, with no version
/// of `bytemuck` of your own to keep in step. The derives name their
/// crate `::bytemuck` unless told otherwise: without a `bytemuck`
/// dependency of your own, add `#[bytemuck(crate = "connection::bytemuck")]`.
pub use bytemuck;

/// The `serde_bytes` crate: [`ByteBuf`](serde_bytes::ByteBuf),
/// [`Bytes`](serde_bytes::Bytes) and `#[serde(with = "serde_bytes")]`
/// mark byte buffers inside values, which [`Connection::send`] and
/// [`Connection::recv`] then carry at memory speed (a plain `Vec<u8>`
/// field goes byte by byte). See the crate docs' "Bulk data".
pub use serde_bytes;
