//! Decoding a large payload as it arrives, rather than once it is all
//! there.
//!
//! A sender streams a large value's encoding to the socket as it goes
//! (`crate::streaming`); reading the whole payload before decoding made
//! the receiver wait for the last byte, and the sender wait for room in a
//! full socket, so encoding, transfer and decoding ran one after another.
//! Here the decoder reads the payload a [`WINDOW`] at a time, in a buffer
//! that stays in the cache, and decodes each window while the sender
//! fills the socket with the next. A long string or byte string is read
//! straight from the socket into the `String` or `Vec<u8>` that keeps it,
//! growing as its bytes arrive. A shared-memory payload, which arrived
//! whole, is read from its memfd the same way ([`FromShared`]), so that a
//! long byte string is copied once, into the buffer that keeps it.
//!
//! The bounds are those of a payload decoded whole (see the crate docs'
//! "Bounds on decoding"): counts are checked against the bytes the header
//! announced, which are within `max_message_size`, and memory grows only
//! with bytes that arrived. Whatever happens, the decoder never reads past
//! the announced length, so a value that fails to decode, or decodes
//! short of it, has the rest of its payload read and dropped and the next
//! message is read from its start; only the other end going away (or a
//! read failing) loses the stream's boundaries.

use serde::de::{DeserializeOwned, Visitor};

use crate::codec::de::{ends_early, error_at, utf8, Decoder, Input, Want};
use crate::codec::{self, FormatError};
use crate::error::{Error, Result};
use crate::frame;
use crate::read_ahead::Reader;
use crate::shared::ReceivedMemfd;
use crate::sys::{self, Unfilled};

/// How much of a payload is read at a time: large enough that a read's
/// cost is spread over many values, small enough to stay in the cache
/// while it is decoded.
pub(crate) const WINDOW: usize = 256 * 1024;

/// Where an arriving payload's bytes come from.
pub(crate) trait Source {
    /// Appends what has arrived of the `room` bytes after the first
    /// `before` of a `whole`-byte payload, at least one, to `out`, which
    /// has room for them.
    fn read_some(
        &mut self,
        whole: usize,
        before: usize,
        room: usize,
        out: &mut Vec<u8>,
    ) -> Result<()>;

    /// Appends the `len` bytes after the payload's first `before` to
    /// `out`, which grows as they arrive.
    fn read_exact(&mut self, before: usize, len: usize, out: &mut Vec<u8>) -> Result<()>;

    /// Drops the `len` bytes after the payload's first `before`, reading
    /// them through `window`, which has room for [`WINDOW`] bytes.
    fn skip(&mut self, whole: usize, before: usize, len: usize, window: &mut Vec<u8>)
        -> Result<()>;
}

/// The bytes that follow a header on the socket (read ahead, some of
/// them, see `crate::read_ahead`).
pub(crate) struct FromSocket<'a>(pub(crate) Reader<'a>);

impl Source for FromSocket<'_> {
    fn read_some(
        &mut self,
        whole: usize,
        before: usize,
        room: usize,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        sys::append_filled(out, room, |spare| {
            frame::read_arrived(&mut self.0, spare, whole, before)
        })?;
        Ok(())
    }

    fn read_exact(&mut self, before: usize, len: usize, out: &mut Vec<u8>) -> Result<()> {
        frame::read_payload(&mut self.0, before, len, out)
    }

    fn skip(
        &mut self,
        whole: usize,
        mut before: usize,
        len: usize,
        window: &mut Vec<u8>,
    ) -> Result<()> {
        let end = before + len;
        while before < end {
            let spare = &mut window.spare_capacity_mut()[..WINDOW.min(end - before)];
            before += frame::read_arrived(&mut self.0, &mut Unfilled::new(spare), whole, before)?;
        }
        Ok(())
    }
}

/// A shared-memory payload, which arrived whole: read from its memfd a
/// window at a time like the socket's bytes, so that a long byte string
/// is copied once, into the buffer that keeps it.
pub(crate) struct FromShared<'a>(pub(crate) &'a ReceivedMemfd);

impl Source for FromShared<'_> {
    fn read_some(&mut self, _: usize, before: usize, room: usize, out: &mut Vec<u8>) -> Result<()> {
        self.0.append_to_vec(before as u64, room, out)
    }

    fn read_exact(&mut self, before: usize, len: usize, out: &mut Vec<u8>) -> Result<()> {
        self.0.append_to_vec(before as u64, len, out)
    }

    fn skip(&mut self, _: usize, _: usize, _: usize, _: &mut Vec<u8>) -> Result<()> {
        // Nothing to read past: the next message follows on the socket.
        Ok(())
    }
}

/// How a receive as the payload arrives ended.
pub(crate) struct Received<T> {
    pub(crate) value: Result<T>,
    /// The window's buffer, for the next receive.
    pub(crate) window: Vec<u8>,
    /// Whether the stream lost its message boundaries: the other end went
    /// away or a read failed inside the payload.
    pub(crate) broken: bool,
}

/// Decodes the `len`-byte payload whose header was just read as a `T`,
/// reading it from `source` as decoding goes, in `window` (any buffer; it
/// comes back in [`Received::window`]). On success and on a decode error
/// alike the whole payload has been read.
pub(crate) fn decode_arriving<T: DeserializeOwned, S: Source>(
    source: S,
    len: usize,
    window: Vec<u8>,
) -> Received<T> {
    let mut decoder = Decoder::over(ArrivingInput::new(source, len, window));
    let decoded = T::deserialize(&mut decoder);
    let mut arriving = decoder.into_input();
    let decode_error = |detail: String| {
        let err = codec::decode_error::<T>(len, detail);
        if crate::pickle::looks_like_pickle(&arriving.head) {
            err.context("this looks like a Python pickle: use recv_pickle")
        } else {
            err
        }
    };
    let value = match decoded {
        _ if arriving.failed.is_some() => Err(None),
        Ok(value) if arriving.left() == 0 => Ok(value),
        Ok(_) => Err(Some(decode_error(format!(
            " ({} bytes left over after the value)",
            arriving.left()
        )))),
        Err(err) => Err(Some(decode_error(String::new()).with_source(err))),
    };
    let value = match value {
        Ok(value) => Ok(value),
        Err(Some(err)) => arriving.skip_rest().and(Err(err)),
        Err(None) => Err(arriving.failed.take().expect("checked above")),
    };
    Received {
        broken: matches!(&value, Err(err) if err.kind() != crate::ErrorKind::Decode),
        value,
        window: arriving.window,
    }
}

/// A payload as it arrives: an [`Input`] that reads its source when the
/// decoder wants more than is buffered, never past the payload's end.
struct ArrivingInput<S> {
    source: S,
    /// Bytes read and not all decoded: `window[pos..]` are still to come.
    window: Vec<u8>,
    pos: usize,
    /// How many bytes of the payload came before `window[0]`.
    base: usize,
    /// The payload's length.
    len: usize,
    /// The payload's first two bytes, to recognise a pickle.
    head: Vec<u8>,
    /// The error a read met, which the decoder only sees as its failure.
    failed: Option<Error>,
}

impl<S: Source> ArrivingInput<S> {
    fn new(source: S, len: usize, mut window: Vec<u8>) -> Self {
        window.clear();
        window.reserve(WINDOW);
        ArrivingInput {
            source,
            window,
            pos: 0,
            base: 0,
            len,
            head: Vec::new(),
            failed: None,
        }
    }

    /// Bytes of the payload not read from its source yet.
    #[inline]
    fn on_socket(&self) -> usize {
        self.len - self.base - self.window.len()
    }

    /// Bytes read and not decoded yet.
    #[inline]
    fn buffered(&self) -> usize {
        self.window.len() - self.pos
    }

    /// Keeps a read's error for the caller and returns the decoder's.
    #[cold]
    fn fail(&mut self, err: Error) -> FormatError {
        self.failed = Some(err);
        FormatError::new("the message could not be received")
    }

    /// Reads until at least `want` bytes (at most [`WINDOW`]) are
    /// buffered, or says why they cannot be.
    #[cold]
    #[inline(never)]
    fn fill_window(&mut self, want: usize) -> std::result::Result<(), FormatError> {
        debug_assert!(want <= WINDOW);
        if self.failed.is_some() {
            // A value that caught the failure and read on.
            return Err(FormatError::new("the message could not be received"));
        }
        if want > self.left() {
            return Err(ends_early(self.consumed(), want, self.left()));
        }
        self.window.drain(..self.pos);
        self.base += self.pos;
        self.pos = 0;
        while self.window.len() < want {
            let room = (WINDOW - self.window.len()).min(self.on_socket());
            let before = self.base + self.window.len();
            let read = self
                .source
                .read_some(self.len, before, room, &mut self.window);
            if let Err(err) = read {
                return Err(self.fail(err));
            }
        }
        if self.base == 0 && self.head.is_empty() {
            self.head = self.window[..self.window.len().min(2)].to_vec();
        }
        Ok(())
    }

    /// The next `len` bytes as one buffer: those already read, then the
    /// rest straight from the socket, the buffer growing as they arrive.
    fn read_long(&mut self, len: usize) -> std::result::Result<Vec<u8>, FormatError> {
        if len > self.left() {
            return Err(ends_early(self.consumed(), len, self.left()));
        }
        let buffered = self.buffered().min(len);
        let mut out = Vec::new();
        out.extend_from_slice(&self.window[self.pos..self.pos + buffered]);
        self.pos += buffered;
        if buffered < len {
            // Nothing is left in the window: read past it.
            self.base += self.window.len();
            self.window.clear();
            self.pos = 0;
            if let Err(err) = self.source.read_exact(self.base, len - buffered, &mut out) {
                return Err(self.fail(err));
            }
            self.base += len - buffered;
        }
        Ok(out)
    }

    /// Reads and drops the rest of the payload.
    fn skip_rest(&mut self) -> Result<()> {
        self.base += self.window.len();
        self.window.clear();
        self.pos = 0;
        let rest = self.on_socket();
        self.source
            .skip(self.len, self.base, rest, &mut self.window)?;
        self.base = self.len;
        Ok(())
    }
}

impl<'de, S: Source> Input<'de> for ArrivingInput<S> {
    #[inline]
    fn consumed(&self) -> usize {
        self.base + self.pos
    }

    #[inline]
    fn left(&self) -> usize {
        self.len - self.consumed()
    }

    #[inline]
    fn buffered(&self) -> &[u8] {
        self.window.get(self.pos..).unwrap_or_default()
    }

    #[inline]
    fn advance(&mut self, n: usize) {
        self.pos += n;
    }

    #[inline]
    fn byte(&mut self) -> std::result::Result<u8, FormatError> {
        if let Some(&byte) = self.window.get(self.pos) {
            self.pos += 1;
            return Ok(byte);
        }
        self.fill_window(1)?;
        self.pos += 1;
        Ok(self.window[0])
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], FormatError> {
        if let Some(bytes) = self.window.get(self.pos..self.pos + N) {
            let mut array = [0u8; N];
            array.copy_from_slice(bytes);
            self.pos += N;
            return Ok(array);
        }
        let mut array = [0u8; N];
        self.fill(&mut array)?;
        Ok(array)
    }

    #[inline]
    fn fill(&mut self, out: &mut [u8]) -> std::result::Result<(), FormatError> {
        if out.len() > self.buffered() {
            self.fill_window(out.len())?;
        }
        out.copy_from_slice(&self.window[self.pos..self.pos + out.len()]);
        self.pos += out.len();
        Ok(())
    }

    fn byte_string<V: Visitor<'de>>(
        &mut self,
        len: usize,
        want: Want,
        visitor: V,
    ) -> std::result::Result<V::Value, FormatError> {
        if len > WINDOW {
            let bytes = self.read_long(len)?;
            let consumed = self.consumed();
            return match want {
                Want::ByteBuf => visitor.visit_byte_buf(bytes),
                Want::Bytes => visitor.visit_bytes(&bytes),
                Want::Str => visitor.visit_str(utf8(&bytes, consumed)?),
                Want::String => match String::from_utf8(bytes) {
                    Ok(string) => visitor.visit_string(string),
                    Err(err) => Err(error_at(
                        consumed,
                        format_args!("invalid UTF-8: {}", err.utf8_error()),
                    )),
                },
            };
        }
        if len > self.buffered() {
            self.fill_window(len)?;
        }
        let start = self.pos;
        self.pos += len;
        let consumed = self.consumed();
        let bytes = &self.window[start..start + len];
        match want {
            Want::Bytes => visitor.visit_bytes(bytes),
            Want::ByteBuf => visitor.visit_byte_buf(bytes.to_vec()),
            Want::Str => visitor.visit_str(utf8(bytes, consumed)?),
            Want::String => visitor.visit_string(utf8(bytes, consumed)?.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Through real connections, since the socket is what this module
    //! reads; hostile payloads are written with raw headers.

    use std::os::fd::OwnedFd;

    use serde::{Deserialize, Serialize};
    use serde_bytes::ByteBuf;

    use super::WINDOW;
    use crate::error::ErrorKind;
    use crate::pipe::pipe;
    use crate::proto::frame::append_header;
    use crate::sys::Socket;
    use crate::Connection;

    /// A header announcing `len` bytes, then `payload` (which may be
    /// shorter or longer).
    fn message(len: usize, payload: &[u8]) -> Vec<u8> {
        let mut message = Vec::new();
        append_header(len, &mut message);
        message.extend_from_slice(payload);
        message
    }

    /// Writes `bytes` raw from a thread, and closes that end after them
    /// when `then_close`; otherwise the end comes back from the thread.
    fn write_raw(
        sender: Connection,
        bytes: Vec<u8>,
        then_close: bool,
    ) -> std::thread::JoinHandle<Option<Connection>> {
        std::thread::spawn(move || {
            let socket = Socket::from_owned(OwnedFd::from(sender));
            let mut rest = &bytes[..];
            while !rest.is_empty() {
                let n = socket.write(rest).unwrap();
                rest = &rest[n..];
            }
            (!then_close).then(|| Connection::from(socket.into_owned()))
        })
    }

    /// `value` and then the string "next", sent from a thread.
    fn send_then_next<V: Serialize + Send + 'static>(
        mut a: Connection,
        value: V,
    ) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            a.send(&value).unwrap();
            a.send("next").unwrap();
        })
    }

    fn numbers(count: u64) -> Vec<u64> {
        (0..count).map(|i| i * 1_000_003 % 100_000).collect()
    }

    #[test]
    fn values_of_every_shape_decode_as_they_arrive() {
        let (a, mut b) = pipe().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let strings: Vec<String> = (0..200_000).map(|i| format!("s{i}")).collect();
        let long_text = "ab".repeat(WINDOW);
        #[derive(Serialize, Deserialize, PartialEq, Debug, Clone)]
        struct Blob(#[serde(with = "serde_bytes")] Vec<u8>);
        // Three bytes first, so that floats straddle the windows' edges.
        let floats: (u8, u16, Vec<f64>) =
            (1, 300, (0..300_000).map(|i| f64::from(i) / 3.0).collect());
        let mixed = (
            numbers(100_000),
            long_text.clone(),
            Blob(data.clone()),
            Some('é'),
            -1.5f64,
        );
        let writer = {
            let (data, strings, mixed) = (data.clone(), strings.clone(), mixed.clone());
            let floats = floats.clone();
            let mut a = a;
            std::thread::spawn(move || {
                a.send(&floats).unwrap();
                a.send(&ByteBuf::from(data.clone())).unwrap();
                a.send(&data).unwrap();
                a.send(&strings).unwrap();
                a.send(&mixed).unwrap();
                a.send(&long_text).unwrap();
            })
        };
        assert_eq!(b.recv::<(u8, u16, Vec<f64>)>().unwrap(), floats);
        assert_eq!(b.recv::<ByteBuf>().unwrap().into_vec(), data);
        assert_eq!(b.recv::<Vec<u8>>().unwrap(), data);
        assert_eq!(b.recv::<Vec<String>>().unwrap(), strings);
        assert_eq!(
            b.recv::<(Vec<u64>, String, Blob, Option<char>, f64)>()
                .unwrap(),
            mixed
        );
        assert_eq!(b.recv::<String>().unwrap(), "ab".repeat(WINDOW));
        writer.join().unwrap();
    }

    #[test]
    fn a_payload_shaped_like_a_byte_string_decodes_as_whatever_was_asked() {
        // 100,000 small u16s: a length and one byte per element, just as
        // a byte string would be.
        let (a, mut b) = pipe().unwrap();
        let small: Vec<u16> = (0..100_000).map(|i| (i % 250) as u16).collect();
        let writer = send_then_next(a, small.clone());
        assert_eq!(b.recv::<Vec<u16>>().unwrap(), small);
        assert_eq!(b.recv::<String>().unwrap(), "next");
        writer.join().unwrap();
        // The same bytes read as a pair of u8s leave most of them over.
        let (a, mut b) = pipe().unwrap();
        let writer = send_then_next(a, vec![1u8; 70_000]);
        let err = b.recv::<(u8, u8)>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(err.to_string().contains("left over"), "{err}");
        assert_eq!(b.recv::<String>().unwrap(), "next");
        writer.join().unwrap();
    }

    #[test]
    fn a_value_that_fails_mid_stream_has_the_rest_of_its_message_skipped() {
        // A bad string deep inside a 2 MiB value, far past the first window.
        let (a, mut b) = pipe().unwrap();
        let mut strings: Vec<ByteBuf> = (0..200_000)
            .map(|i| ByteBuf::from(format!("{i:09}").into_bytes()))
            .collect();
        strings[150_000] = ByteBuf::from(vec![0xff, 0xfe]);
        let writer = send_then_next(a, strings);
        let err = b.recv::<Vec<String>>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(format!("{err:#}").contains("UTF-8"), "{err:#}");
        assert_eq!(b.recv::<String>().unwrap(), "next");
        writer.join().unwrap();

        // A long string, read straight into its own buffer, that is not UTF-8.
        let (a, mut b) = pipe().unwrap();
        let mut bytes = vec![b'a'; 3 * WINDOW];
        bytes[2 * WINDOW + 5] = 0xc0;
        let writer = send_then_next(a, (7u8, ByteBuf::from(bytes), 9u8));
        let err = b.recv::<(u8, String, u8)>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(format!("{err:#}").contains("UTF-8"), "{err:#}");
        assert_eq!(b.recv::<String>().unwrap(), "next");
        writer.join().unwrap();
    }

    #[test]
    fn a_declared_length_that_disagrees_with_the_value_is_a_decode_error() {
        let value = numbers(200_000);
        let payload = crate::encode(&value).unwrap();
        let next = message(5, &crate::encode("next").unwrap());
        // Declared longer than the value: trailing bytes.
        let (a, mut b) = pipe().unwrap();
        let mut longer = payload.clone();
        longer.extend_from_slice(&[0u8; 3 * WINDOW + 17]);
        let writer = write_raw(
            a,
            [message(longer.len(), &longer), next.clone()].concat(),
            false,
        );
        let err = b.recv::<Vec<u64>>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        let left_over = format!("{} bytes left over", 3 * WINDOW + 17);
        assert!(err.to_string().contains(&left_over), "{err}");
        assert_eq!(b.recv::<String>().unwrap(), "next");
        drop(writer.join().unwrap());
        // Declared shorter than the value: the value runs into the end of
        // its payload, and the bytes after it are the next message.
        let (a, mut b) = pipe().unwrap();
        let cut = payload.len() - 1000;
        let writer = write_raw(a, [message(cut, &payload[..cut]), next].concat(), false);
        let err = b.recv::<Vec<u64>>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        // Refused at the announced end, not past it.
        assert!(
            format!("{err:#}").contains(&format!("at byte {cut}:")),
            "{err:#}"
        );
        assert_eq!(b.recv::<String>().unwrap(), "next");
        drop(writer.join().unwrap());
    }

    #[test]
    fn oversized_claims_are_refused_without_allocating_them() {
        let next = message(5, &crate::encode("next").unwrap());
        let mut claims = Vec::new();
        // A sequence, a string and a byte string each claiming 2^60, in
        // payloads of 300,000 bytes.
        for prefix in [vec![], vec![1u8], vec![2u8]] {
            let mut payload = prefix;
            payload.push(253);
            payload.extend_from_slice(&(1u64 << 60).to_le_bytes());
            payload.resize(300_000, b'x');
            claims.push(payload);
        }
        let (a, mut b) = pipe().unwrap();
        let mut stream = Vec::new();
        for payload in &claims {
            stream.extend(message(payload.len(), payload));
            stream.extend_from_slice(&next);
        }
        let writer = write_raw(a, stream, false);
        let err = b.recv::<Vec<u64>>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
        assert_eq!(b.recv::<String>().unwrap(), "next");
        let err = b.recv::<(u8, String)>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
        assert_eq!(b.recv::<String>().unwrap(), "next");
        let err = b.recv::<(u8, ByteBuf)>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
        assert_eq!(b.recv::<String>().unwrap(), "next");
        drop(writer.join().unwrap());

        // A header over max_message_size stays unread, as for any message.
        let (a, mut b) = pipe().unwrap();
        b.set_max_message_size(100_000);
        let writer = send_then_next(a, numbers(100_000));
        let err = b.recv::<Vec<u64>>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MessageTooLarge);
        b.set_max_message_size(1 << 30);
        assert_eq!(b.recv::<Vec<u64>>().unwrap(), numbers(100_000));
        assert_eq!(b.recv::<String>().unwrap(), "next");
        writer.join().unwrap();
    }

    #[test]
    fn a_peer_that_dies_mid_value_is_truncated_not_a_hang() {
        let payload =
            crate::encode(&(numbers(300_000), ByteBuf::from(vec![3u8; 4 * WINDOW]))).unwrap();
        // Cut inside the numbers, inside the long byte string, and just
        // before the end.
        for cut in [100_000, payload.len() - 2 * WINDOW, payload.len() - 1] {
            let (a, mut b) = pipe().unwrap();
            let writer = write_raw(a, message(payload.len(), &payload[..cut]), true);
            let err = b.recv::<(Vec<u64>, ByteBuf)>().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Truncated, "cut at {cut}: {err}");
            // The stream's boundaries are gone: the next receive says so.
            let again = b.recv::<String>().unwrap_err();
            assert_eq!(again.kind(), ErrorKind::Truncated, "{again}");
            assert!(writer.join().unwrap().is_none());
        }
        // Dying while the rest of a refused value is skipped.
        let (a, mut b) = pipe().unwrap();
        let mut bad = vec![7u8]; // not a bool
        bad.resize(500_000, 0);
        let writer = write_raw(a, message(bad.len(), &bad[..300_000]), true);
        let err = b.recv::<(bool, Vec<u8>)>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Truncated, "{err}");
        assert!(writer.join().unwrap().is_none());
    }

    #[test]
    fn shared_memory_payloads_are_read_the_same_way() {
        if let Err(err) = crate::sys::shm::create() {
            eprintln!("skipped: memfd_create fails here ({err})");
            return;
        }
        let (mut a, mut b) = pipe().unwrap();
        for end in [&mut a, &mut b] {
            end.set_shared_memory(true).unwrap();
            end.set_shared_memory_threshold(Some(1 << 20));
        }
        let bytes = ByteBuf::from(vec![b'q'; 3 << 20]);
        let mut bad = vec![b'a'; 3 << 20];
        bad[2 << 20] = 0xff;
        let before = crate::shared_memory_stats().received;
        a.send(&(5u8, bytes.clone())).unwrap();
        a.send(&ByteBuf::from(bad)).unwrap(); // not UTF-8 deep inside
        a.send(&numbers(300_000)).unwrap(); // more than a Vec<u8> of one u64
        a.send(&numbers(300_000)).unwrap();
        assert_eq!(b.recv::<(u8, ByteBuf)>().unwrap(), (5, bytes));
        let err = b.recv::<String>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(format!("{err:#}").contains("UTF-8"), "{err:#}");
        let err = b.recv::<(u64, u64)>().unwrap_err();
        assert!(err.to_string().contains("left over"), "{err}");
        assert_eq!(b.recv::<Vec<u64>>().unwrap(), numbers(300_000));
        a.send("next").unwrap();
        assert_eq!(b.recv::<String>().unwrap(), "next");
        // Other tests run meanwhile; these four are ours at least.
        assert!(crate::shared_memory_stats().received >= before + 4);
    }

    #[test]
    fn a_pickle_is_named_as_such() {
        let (a, mut b) = pipe().unwrap();
        let mut pickle = vec![0x80, 4];
        pickle.resize(100_000, b'.');
        let writer = write_raw(a, message(pickle.len(), &pickle), false);
        let err = b.recv::<Vec<u64>>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(err.to_string().contains("recv_pickle"), "{err}");
        drop(writer.join().unwrap());
    }
}
