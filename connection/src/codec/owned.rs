//! Decoding a payload that is one long byte string (a
//! `serde_bytes::ByteBuf`, a `String`, a plain `Vec<u8>`) from the buffer
//! its bytes were received into, without copying them again.
//!
//! Such a payload is a length prefix and then exactly that many bytes.
//! [`Connection::recv`](crate::Connection::recv) reads the prefix on its
//! own and the bytes into a buffer of their own, and this module offers
//! that buffer to `T` through a deserializer that only knows byte strings:
//! a `ByteBuf` takes the buffer itself, a `String` takes it once it is
//! checked as UTF-8, and a sequence of `u8`s is read from it element by
//! element from a plain slice iterator, which is what makes a plain
//! `Vec<u8>` fast. Anything else (the payload of a `Vec<u16>` of small
//! numbers looks the same) gives the buffer back, and the payload is
//! decoded as usual.
//!
//! Each answer is the one the general decoder gives for the same bytes:
//! it would read the same prefix, the same bytes and find nothing after.

use serde::de::{self, DeserializeOwned, DeserializeSeed, SeqAccess, Visitor};

use super::{FormatError, MAX_DECODE_DEPTH};

type Result<T> = std::result::Result<T, FormatError>;

/// How the attempt ended when it did not produce a value.
pub(crate) enum NotDecoded {
    /// `T` is not a byte string: here is the buffer, untouched.
    NotBytes(Vec<u8>),
    /// `T` took the buffer and refused it: what the general decoder would
    /// also have said.
    Refused(FormatError),
}

/// Offers `body`, a whole payload's one byte string, to `T`.
pub(crate) fn decode_byte_string<T: DeserializeOwned>(
    body: Vec<u8>,
) -> std::result::Result<T, NotDecoded> {
    let mut owned = OwnedBytes {
        body: Some(body),
        depth: 0,
    };
    match T::deserialize(&mut owned) {
        Ok(value) => Ok(value),
        Err(err) => match owned.body {
            Some(body) => Err(NotDecoded::NotBytes(body)),
            None => Err(NotDecoded::Refused(err)),
        },
    }
}

/// A deserializer over one owned byte string. Every method but the byte
/// string ones fails, leaving the buffer in place.
struct OwnedBytes {
    /// The bytes, until a `ByteBuf` or `String` takes them.
    body: Option<Vec<u8>>,
    /// Newtypes around the byte string, bounded as in the general decoder.
    depth: usize,
}

fn not_bytes() -> FormatError {
    FormatError::new("not a byte string")
}

impl<'de> de::Deserializer<'de> for &mut OwnedBytes {
    type Error = FormatError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(not_bytes())
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let body = self.body.take().ok_or_else(not_bytes)?;
        visitor.visit_byte_buf(body)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let body = self.body.as_deref().ok_or_else(not_bytes)?;
        visitor.visit_bytes(body)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let body = self.body.take().ok_or_else(not_bytes)?;
        match String::from_utf8(body) {
            Ok(string) => visitor.visit_string(string),
            Err(err) => {
                // Not UTF-8: the general decoder says so with its own words.
                self.body = Some(err.into_bytes());
                Err(not_bytes())
            }
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let body = self.body.as_deref().ok_or_else(not_bytes)?;
        let string = std::str::from_utf8(body).map_err(|_| not_bytes())?;
        visitor.visit_str(string)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        // The general decoder nests a sequence one level.
        if self.depth >= MAX_DECODE_DEPTH {
            return Err(not_bytes());
        }
        let body = self.body.as_deref().ok_or_else(not_bytes)?;
        let mut elements = ByteElements { bytes: body.iter() };
        let value = visitor.visit_seq(&mut elements)?;
        // A visitor that stopped early leaves bytes over, which the
        // general decoder refuses.
        match elements.bytes.len() {
            0 => Ok(value),
            _ => Err(not_bytes()),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        if self.depth >= MAX_DECODE_DEPTH {
            return Err(not_bytes());
        }
        self.depth += 1;
        visitor.visit_newtype_struct(self)
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char
        option unit unit_struct tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// The elements of a byte string read as a sequence: each one a `u8`.
struct ByteElements<'a> {
    bytes: std::slice::Iter<'a, u8>,
}

impl<'de> SeqAccess<'de> for ByteElements<'_> {
    type Error = FormatError;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        match self.bytes.next() {
            Some(&byte) => seed.deserialize(Byte(byte)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.bytes.len())
    }
}

/// One element of [`ByteElements`]: a `u8`, or not this format's answer.
struct Byte(u8);

impl<'de> de::Deserializer<'de> for Byte {
    type Error = FormatError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(not_bytes())
    }

    #[inline]
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u8(self.0)
    }

    fn is_human_readable(&self) -> bool {
        false
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}
