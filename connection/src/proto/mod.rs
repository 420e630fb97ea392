//! The wire protocols as state machines that do no I/O, in the manner of
//! `quinn-proto` or `rustls`'s unbuffered API: they are handed what
//! arrived and say what to send, and the blocking and tokio types drive
//! them over their sockets (retrying through `sys`).

pub(crate) mod frame;
pub(crate) mod handshake;
