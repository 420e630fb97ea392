//! How objects become message payloads.
//!
//! Payloads are bincode 2's standard configuration (variable-length
//! integers, little endian) driven through serde, byte for byte, read and
//! written by this module's own serde `Deserializer` ([`de`]) and
//! `Serializer` ([`ser`]). bincode itself is named only by this module's
//! tests, as the reference both must agree with: its decoder trusts the
//! lengths and depths a payload claims, and its encoder pays a call through
//! `std::io::Write` for every byte.
//!
//! The decoder reads from an [`de::Input`]: a whole payload in memory, or
//! one that is decoded as it arrives (`crate::arriving`); a value too large
//! to buffer is encoded to a socket as it goes (`crate::streaming`, through
//! [`ser::Staged`]).
//!
//! The bounds the decoder keeps (memory within `4 * E * n` plus a constant for a
//! payload of `n` bytes, [`MAX_DECODE_DEPTH`] levels, at most
//! [`MAX_EMPTY_ELEMENTS`] elements that occupy no bytes) are documented in
//! the crate docs' section "Bounds on decoding".

pub(crate) mod de;
pub(crate) mod ser;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// Why a value could not be encoded or a payload decoded: the source of
/// an [`ErrorKind::Encode`] or [`ErrorKind::Decode`] error.
///
/// One pointer wide, so that the `Result` of every element's encode or
/// decode is returned in registers: with the message inline, a
/// `Vec<u8>` paid for a `Result` in memory on every byte.
#[derive(Debug)]
pub(crate) struct FormatError {
    // The point is the one-pointer width, not the heap.
    #[allow(clippy::box_collection)]
    message: Box<String>,
}

impl FormatError {
    #[cold]
    pub(crate) fn new(message: impl Into<String>) -> Self {
        FormatError {
            message: Box::new(message.into()),
        }
    }
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FormatError {}

impl serde::ser::Error for FormatError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        FormatError::new(message.to_string())
    }
}

impl serde::de::Error for FormatError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        FormatError::new(message.to_string())
    }
}

/// How many levels of nesting a payload may have: each `Option` holding a
/// value, newtype, tuple, struct, sequence, map and enum variant is one
/// (a `Vec<Vec<u8>>` is two, a linked list of `Option<Box<Node>>` two per
/// node). Deeper payloads are an [`ErrorKind::Decode`] rather than a stack
/// overflow.
///
/// # Examples
///
/// ```
/// use connection::{decode, ErrorKind, MAX_DECODE_DEPTH};
///
/// #[derive(serde::Deserialize, Debug)]
/// struct Nest(Option<Box<Nest>>);
///
/// // Each Nest is two levels: the newtype and the Option holding a value.
/// let fits = [vec![1u8; MAX_DECODE_DEPTH / 2 - 1], vec![0]].concat();
/// assert!(decode::<Nest>(&fits).is_ok());
/// let too_deep = [vec![1u8; 100_000], vec![0]].concat();
/// assert_eq!(decode::<Nest>(&too_deep).unwrap_err().kind(), ErrorKind::Decode);
/// ```
pub const MAX_DECODE_DEPTH: usize = 256;

/// How many elements that occupy no bytes of the payload (a `()`, an empty
/// struct, a map entry whose key and value are both empty) one payload may
/// hold in its sequences and maps altogether. Every other element occupies
/// at least one byte, so a forged element count can make decoding loop at
/// most this many times beyond the payload's length.
///
/// # Examples
///
/// ```
/// use connection::{decode, encode, ErrorKind, MAX_EMPTY_ELEMENTS};
///
/// let many = encode(&vec![(); MAX_EMPTY_ELEMENTS])?;
/// assert_eq!(decode::<Vec<()>>(&many)?.len(), MAX_EMPTY_ELEMENTS);
/// let too_many = encode(&vec![(); MAX_EMPTY_ELEMENTS + 1])?;
/// assert_eq!(decode::<Vec<()>>(&too_many).unwrap_err().kind(), ErrorKind::Decode);
/// # Ok::<(), connection::Error>(())
/// ```
pub const MAX_EMPTY_ELEMENTS: usize = 1 << 20;

/// Appends the encoding of `value` to `out`: the same bytes that
/// [`encode`] returns, in a buffer the caller keeps and
/// reuses. On error `out` is left as it was.
///
/// # Examples
///
/// ```
/// let mut out = b"header".to_vec();
/// connection::encode_into(&(7u32, "seven"), &mut out)?;
/// assert_eq!(out[6..], connection::encode(&(7u32, "seven"))?);
///
/// // Reused: cleared, refilled, no new allocation once large enough.
/// out.clear();
/// connection::encode_into(&connection::serde_bytes::ByteBuf::from(vec![1u8; 1000]), &mut out)?;
/// assert_eq!(connection::decode::<connection::serde_bytes::ByteBuf>(&out)?.len(), 1000);
/// # Ok::<(), connection::Error>(())
/// ```
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    if let Err(err) = value.serialize(&mut ser::Encoder::new(&mut *out)) {
        out.truncate(start);
        return Err(encode_error::<T>(err));
    }
    Ok(())
}

/// Appends the encoding of `value` to `out` if it takes at most `limit`
/// bytes, and says whether it did: when it does not, encoding stops as
/// soon as it passes the limit, and `out` is restored as on error.
pub(crate) fn encode_into_within<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<bool> {
    let start = out.len();
    let mut encoder = ser::Encoder::new(ser::Within {
        out: &mut *out,
        end: start.saturating_add(limit),
        over: false,
    });
    let result = value.serialize(&mut encoder);
    let over = encoder.into_output().over;
    match result {
        Ok(()) => Ok(true),
        Err(err) => {
            out.truncate(start);
            if over {
                Ok(false)
            } else {
                Err(encode_error::<T>(err))
            }
        }
    }
}

/// How many bytes the encoding of `value` takes.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<u64> {
    let mut encoder = ser::Encoder::new(ser::Counter::default());
    value.serialize(&mut encoder).map_err(encode_error::<T>)?;
    Ok(encoder.into_output().len)
}

/// Writes the encoding of `value` to `downstream`, a stage at a time (and long
/// byte strings as they are).
/// The downstream comes back either way.
pub(crate) fn encode_to<T: Serialize + ?Sized, S: ser::Downstream>(
    value: &T,
    downstream: S,
) -> std::result::Result<S, (S, Error)> {
    let mut encoder = ser::Encoder::new(ser::Staged::new(downstream));
    let result = value.serialize(&mut encoder);
    let mut staged = encoder.into_output();
    match result.and_then(|()| staged.flush()) {
        Ok(()) => Ok(staged.into_downstream()),
        Err(err) => Err((staged.into_downstream(), encode_error::<T>(err))),
    }
}

fn encode_error<T: ?Sized>(err: FormatError) -> Error {
    Error::new(
        ErrorKind::Encode,
        format!("cannot encode {}", std::any::type_name::<T>()),
    )
    .with_source(err)
}

/// Encodes `value` as a standalone payload: the bytes [`Connection::send`]
/// sends for it.
///
/// # Examples
///
/// ```
/// let payload = connection::encode(&(7u32, "seven"))?;
/// assert_eq!(payload, [7, 5, b's', b'e', b'v', b'e', b'n']);
/// # Ok::<(), connection::Error>(())
/// ```
///
/// [`Connection::send`]: crate::Connection::send
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Decodes a whole payload as a `T`, as [`Connection::recv`] does. Trailing
/// bytes are an error: a payload is exactly one value.
///
/// Whatever the payload claims, decoding stays within what it holds: see
/// the [bounds on decoding](crate#bounds-on-decoding) on memory, nesting
/// and time. A payload beyond them is an [`ErrorKind::Decode`].
///
/// # Examples
///
/// ```
/// use connection::{decode, encode, ErrorKind};
///
/// let payload = encode(&vec!["a".to_string(), "b".to_string()])?;
/// assert_eq!(decode::<Vec<String>>(&payload)?, ["a", "b"]);
///
/// // A string claiming 2^60 bytes in a 10-byte payload: refused, nothing allocated.
/// let mut forged = vec![253];
/// forged.extend_from_slice(&(1u64 << 60).to_le_bytes());
/// forged.push(b'x');
/// assert_eq!(decode::<String>(&forged).unwrap_err().kind(), ErrorKind::Decode);
/// # Ok::<(), connection::Error>(())
/// ```
///
/// [`Connection::recv`]: crate::Connection::recv
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    let decode_error = |detail: String| decode_error::<T>(payload.len(), detail);
    let mut decoder = de::Decoder::new(payload);
    let value =
        T::deserialize(&mut decoder).map_err(|err| decode_error(String::new()).with_source(err))?;
    let used = decoder.consumed();
    if used != payload.len() {
        return Err(decode_error(format!(
            " ({} bytes left over after the value)",
            payload.len() - used
        )));
    }
    Ok(value)
}

/// The error for a `len`-byte payload that is not a `T`; `detail` says
/// more after the sentence.
pub(crate) fn decode_error<T: ?Sized>(len: usize, detail: String) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!(
            "{len}-byte message does not decode as {}{detail}",
            std::any::type_name::<T>()
        ),
    )
}

#[cfg(test)]
mod tests;
