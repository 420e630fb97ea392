//! Read-ahead ([`Connection::set_read_ahead`](crate::Connection::set_read_ahead)),
//! off by default: a read that wants fewer than [`CAPACITY`] bytes (a
//! header, the rest of a small payload) reads as much as has arrived, up
//! to that, into a buffer the connection keeps, and later reads take
//! their bytes from there first. A small message then costs one read
//! instead of two (header, then payload), and two that arrived together
//! cost one between them. Reads of [`CAPACITY`] bytes or more go straight
//! to the caller's memory, as without read-ahead; so does everything
//! while it is off, when the buffer is empty and never allocated.
//!
//! Every read of a [`Connection`](crate::Connection), and of the tokio
//! connection made from one (which takes over what was read ahead, and
//! only drains it), goes through a [`Reader`], so that no bytes can be
//! read around the buffer.
//!
//! Descriptors (shared-memory messages, `SCM_RIGHTS`): the kernel ends a
//! read right after the bytes that carried descriptors, and a sender of
//! this crate attaches its memfd to the header alone, so the descriptors
//! a fill brings belong to the last bytes it read. They are handed over
//! with those bytes: to the header read that takes them, or, when a
//! read that takes no descriptors does (a peer that attached them to
//! other bytes), closed, as the kernel does for such a read.
//!
//! The bound on memory is the buffer, whatever a peer sends.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;

use crate::sys::{self, Socket, Wait};

/// The buffer's size: more than a small message, header and all (a
/// pool's direct call and its reply are well under 1 KiB), little enough
/// that a large message's first bytes cost only a short extra copy.
pub(crate) const CAPACITY: usize = 16 * 1024;

/// What was read ahead of the reads that asked for it.
#[derive(Default)]
pub(crate) struct ReadAhead {
    /// Whether reads fill the buffer; bytes already in it are served
    /// either way.
    on: bool,
    /// Allocated on the first fill ([`CAPACITY`] bytes).
    buf: Box<[u8]>,
    /// The bytes not read yet: `buf[start..end]`.
    start: usize,
    end: usize,
    /// The descriptors that came with `buf[..end]`'s last bytes.
    fds: Vec<OwnedFd>,
}

impl ReadAhead {
    /// How many bytes wait in the buffer.
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    /// Turns filling on or off; what is buffered stays to be read. Off
    /// and empty, the buffer's memory goes.
    pub(crate) fn set(&mut self, on: bool) {
        self.on = on;
        if !on && self.buffered() == 0 {
            self.buf = Box::default();
        }
    }

    /// Takes `n` buffered bytes as read; with the last of them go the
    /// descriptors that came with them, into `fds`, or closed.
    fn consume(&mut self, n: usize, fds: Option<&mut Vec<OwnedFd>>) {
        self.start += n;
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
            match fds {
                Some(fds) => fds.append(&mut self.fds),
                None => self.fds.clear(),
            }
            if !self.on {
                self.buf = Box::default();
            }
        }
    }
}

/// Reads from a socket through its [`ReadAhead`] (or straight, with
/// none), with the calls of [`Socket`]'s that receive.
pub(crate) struct Reader<'a> {
    socket: &'a Socket,
    ahead: Option<&'a mut ReadAhead>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(socket: &'a Socket, ahead: &'a mut ReadAhead) -> Self {
        Reader {
            socket,
            ahead: Some(ahead),
        }
    }

    /// Reads straight from `socket`: for the tests, which read what they
    /// wrote raw.
    #[cfg(test)]
    pub(crate) fn direct(socket: &'a Socket) -> Self {
        Reader {
            socket,
            ahead: None,
        }
    }

    /// The buffered bytes to serve a read of `want` bytes from, filling
    /// the buffer first (waiting for data or not as `wait` says) if it is
    /// empty and the read is small; empty at end of file. `None`: the
    /// read goes straight to the socket.
    fn buffered(&mut self, want: usize, wait: Wait) -> io::Result<Option<&[u8]>> {
        let Some(ahead) = self.ahead.as_deref_mut() else {
            return Ok(None);
        };
        if ahead.buffered() == 0 {
            if !ahead.on || want == 0 || want >= CAPACITY {
                return Ok(None);
            }
            if ahead.buf.is_empty() {
                ahead.buf = vec![0; CAPACITY].into_boxed_slice();
            }
            // Descriptors are kept whether or not this end accepts
            // shared memory now: it may before the bytes they came with
            // are read, as it would find them in the kernel without
            // read-ahead; a read that takes none closes them.
            let got = (self.socket).recv_with_fds(&mut ahead.buf, &mut ahead.fds, wait)?;
            (ahead.start, ahead.end) = (0, got);
        }
        Ok(Some(&ahead.buf[ahead.start..ahead.end]))
    }

    /// [`Socket::recv`] through the buffer. Descriptors that came with
    /// the bytes it takes are closed (as the kernel closes them for a
    /// read that takes none).
    pub(crate) fn recv(&mut self, buf: &mut [u8], wait: Wait) -> io::Result<usize> {
        let Some(bytes) = self.buffered(buf.len(), wait)? else {
            return self.socket.recv(buf, wait);
        };
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        self.consume(n, None);
        Ok(n)
    }

    /// [`Socket::recv_uninit`] through the buffer.
    pub(crate) fn recv_uninit<'b>(
        &mut self,
        buf: &'b mut [MaybeUninit<u8>],
        wait: Wait,
    ) -> io::Result<&'b mut [u8]> {
        let Some(bytes) = self.buffered(buf.len(), wait)? else {
            return self.socket.recv_uninit(buf, wait);
        };
        let n = bytes.len().min(buf.len());
        let filled = sys::copy_into_uninit(buf, &bytes[..n]);
        self.consume(n, None);
        Ok(filled)
    }

    /// [`Socket::recv_with_fds`] through the buffer: the descriptors
    /// that came with the bytes it takes go into `fds`.
    pub(crate) fn recv_with_fds(
        &mut self,
        buf: &mut [u8],
        fds: &mut Vec<OwnedFd>,
        wait: Wait,
    ) -> io::Result<usize> {
        let Some(bytes) = self.buffered(buf.len(), wait)? else {
            return self.socket.recv_with_fds(buf, fds, wait);
        };
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        self.consume(n, Some(fds));
        Ok(n)
    }

    fn consume(&mut self, n: usize, fds: Option<&mut Vec<OwnedFd>>) {
        if let Some(ahead) = self.ahead.as_deref_mut() {
            ahead.consume(n, fds);
        }
    }
}

#[cfg(test)]
mod tests;
