//! The wire protocols as state machines that do no I/O: they are handed
//! what arrived and say what to send, and the blocking and tokio types
//! drive them over their sockets.

pub(crate) mod handshake;
