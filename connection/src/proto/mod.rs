//! The protocol as state machines that do no I/O, in the manner of
//! `quinn-proto` or `rustls`'s unbuffered API: they are given the bytes
//! that arrived and say what comes next, or what to write. The blocking
//! [`Connection`](crate::Connection) and the tokio
//! [`AsyncConnection`](crate::tokio::AsyncConnection) are drivers of this
//! one core: they move bytes, wait, and retry through `sys`.

pub(crate) mod frame;
