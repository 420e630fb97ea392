//! Sending a large value as it is encoded, rather than encoding it whole
//! first and then sending the copy.
//!
//! The length goes in the header, so the value is encoded twice: once to
//! count its length ([`codec::encoded_len`]), once to write it (besides
//! the first 1 MiB that `send` encoded before it knew the value was this
//! large). The writing pass goes through a bounded buffer to the socket, and a long byte string
//! (a `serde_bytes::ByteBuf`, a `String`) goes from the value to the socket
//! with no copy at all. A 16 MiB value thus never costs 16 MiB of fresh
//! memory, nor its page faults, on the sending side.
//!
//! A `Serialize` that writes something else the second time (it reads a
//! clock, or a lock it holds changed) cannot be caught before the header
//! went out. Whatever it wrote is cut or padded to the announced length
//! would be a wrong message that decodes; instead the socket is shut down
//! for sending, so the peer sees [`ErrorKind::Truncated`], and the sender
//! an [`ErrorKind::Encode`] error saying the connection can send no more.
//! If nothing had gone out yet, the connection is left as it was.

use std::io;

use serde::Serialize;

use crate::codec::{self, ser::Downstream, FormatError};
use crate::error::{Error, ErrorKind, Result};
use crate::frame;
use crate::proto::frame::{append_header, SendPlan};
use crate::sys::{Socket, Wait};

/// Encodings longer than this are streamed; shorter ones are encoded into
/// one buffer and sent in one write.
pub(crate) const STREAM_ABOVE: u64 = 1 << 20;

/// How much of the encoding is gathered before it is written.
const PENDING: usize = 256 * 1024;

/// A byte string at least this long is written from where it lies rather
/// than copied into the pending buffer.
const WRITE_DIRECT: usize = 64 * 1024;

/// Sends `value`, whose encoding is `len` bytes long, as one message,
/// writing it as it is encoded.
pub(crate) fn send_streamed<T: Serialize + ?Sized>(
    socket: &Socket,
    value: &T,
    len: u64,
) -> Result<()> {
    let mut pending = Vec::with_capacity(PENDING);
    append_header(len as usize, &mut pending);
    let stream = StreamToSocket {
        socket,
        pending,
        left: len,
        written: false,
        io_error: None,
    };
    let outcome = codec::encode_to(value, stream);
    let (mut stream, encode_error) = match outcome {
        Ok(stream) => (stream, None),
        Err((stream, err)) => (stream, Some(err)),
    };
    if let Some(err) = stream.io_error.take() {
        return Err(Error::send_failed(err, format!("send {len}-byte message")));
    }
    let err = match encode_error {
        None if stream.left == 0 => match stream.write_pending(&[]) {
            Ok(()) => return Ok(()),
            Err(err) => return Err(Error::send_failed(err, format!("send {len}-byte message"))),
        },
        None => Error::new(
            ErrorKind::Encode,
            format!(
                "{} encoded {} bytes shorter the second time than the first",
                std::any::type_name::<T>(),
                stream.left
            ),
        ),
        Some(err) => err,
    };
    if !stream.written {
        return Err(err);
    }
    // Part of the message is out and the rest cannot be: end the stream
    // so that the peer sees a truncated message, not a wrong one.
    let _ = socket.shutdown(std::net::Shutdown::Write);
    Err(err.context("part of the message was sent, so the connection was shut down for sending"))
}

/// The socket as the [`Downstream`] of the encoder's stages.
struct StreamToSocket<'a> {
    socket: &'a Socket,
    /// Bytes not yet written: the header first, then stages.
    pending: Vec<u8>,
    /// Bytes of the announced payload not yet handed over.
    left: u64,
    /// Whether anything has gone out.
    written: bool,
    /// The error a write met, which the encoder only sees as its failure.
    io_error: Option<io::Error>,
}

impl StreamToSocket<'_> {
    /// Writes the pending bytes and `then` after them, in one call.
    fn write_pending(&mut self, then: &[u8]) -> io::Result<()> {
        if self.pending.is_empty() && then.is_empty() {
            return Ok(());
        }
        self.written = true;
        let mut plan = SendPlan::pair(&self.pending, then);
        let result = frame::write_plan(self.socket, &mut plan, Wait::ForRoom);
        self.pending.clear();
        result
    }
}

impl Downstream for StreamToSocket<'_> {
    fn put(&mut self, bytes: &[u8]) -> std::result::Result<(), FormatError> {
        if bytes.len() as u64 > self.left {
            return Err(FormatError::new(
                "the value encoded longer the second time than the first",
            ));
        }
        self.left -= bytes.len() as u64;
        if bytes.len() < WRITE_DIRECT && self.pending.len() + bytes.len() <= PENDING {
            self.pending.extend_from_slice(bytes);
            return Ok(());
        }
        let result = if bytes.len() >= WRITE_DIRECT {
            self.write_pending(bytes)
        } else {
            self.write_pending(&[])
                .map(|()| self.pending.extend_from_slice(bytes))
        };
        result.map_err(|err| {
            self.io_error = Some(err);
            FormatError::new("the send failed")
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use serde::{Serialize, Serializer};

    use crate::error::ErrorKind;
    use crate::pipe::pipe;

    /// A 1 MiB byte string, then one that is `step` bytes longer (or
    /// shorter) every time the value is serialized: the one kind of value
    /// a streamed send cannot check before its header is out.
    struct Fickle {
        start: usize,
        step: isize,
        calls: Cell<isize>,
    }

    impl Serialize for Fickle {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let call = self.calls.get();
            self.calls.set(call + 1);
            let len = (self.start as isize + call * self.step) as usize;
            // A first part that goes out before the difference shows.
            let part = serde_bytes::ByteBuf::from(vec![b'p'; 1 << 20]);
            (part, serde_bytes::ByteBuf::from(vec![b'x'; len])).serialize(serializer)
        }
    }

    fn fickle(start: usize, step: isize) -> Fickle {
        Fickle {
            start,
            step,
            calls: Cell::new(0),
        }
    }

    #[test]
    fn a_large_value_streams_whole() {
        let (mut a, mut b) = pipe().unwrap();
        let strings: Vec<String> = (0..300_000).map(|i| format!("{i:08}")).collect();
        let expected = strings.clone();
        let writer = std::thread::spawn(move || a.send(&strings).unwrap());
        assert_eq!(b.recv::<Vec<String>>().unwrap(), expected);
        writer.join().unwrap();
    }

    #[test]
    fn a_value_that_changes_between_passes_cuts_the_stream_not_the_data() {
        // Longer, then shorter, the second time than the first.
        for (step, says) in [(1isize << 20, "longer"), (-(1 << 20), "shorter")] {
            let (mut a, mut b) = pipe().unwrap();
            let reader = std::thread::spawn(move || b.recv::<(Vec<u8>, Vec<u8>)>());
            let err = a.send(&fickle(3 << 20, step)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Encode, "{err}");
            assert!(format!("{err:#}").contains(says), "{err:#}");
            assert!(err.to_string().contains("shut down"), "{err}");
            // The peer never gets a wrong value: the message is cut short.
            let got = reader.join().unwrap().unwrap_err();
            assert_eq!(got.kind(), ErrorKind::Truncated, "{got}");
        }
    }

    #[test]
    fn a_value_that_fails_before_anything_went_out_leaves_the_connection_as_it_was() {
        let (mut a, mut b) = pipe().unwrap();
        struct FailsSecondTime(Cell<bool>);
        impl Serialize for FailsSecondTime {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if self.0.replace(true) {
                    return Err(serde::ser::Error::custom("refused the second time"));
                }
                serializer.serialize_bytes(&vec![0u8; 2 << 20])
            }
        }
        let err = a.send(&FailsSecondTime(Cell::new(false))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Encode, "{err}");
        assert!(!err.to_string().contains("shut down"), "{err}");
        a.send(&"still fine").unwrap();
        assert_eq!(b.recv::<String>().unwrap(), "still fine");
    }
}
