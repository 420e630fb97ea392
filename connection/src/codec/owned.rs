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

#[cfg(test)]
mod tests {
    //! Through a real connection: the receive that reads a byte string
    //! apart is the only caller, and its choice depends on the length.

    use serde::{Deserialize, Serialize};
    use serde_bytes::ByteBuf;

    use crate::error::ErrorKind;
    use crate::pipe::pipe;
    use crate::Connection;

    /// Sends `payload` as raw bytes from a thread and receives it as `T`.
    fn recv_as<T: serde::de::DeserializeOwned + Send + 'static>(
        payload: Vec<u8>,
    ) -> crate::Result<T> {
        let (mut a, mut b) = pipe().unwrap();
        let writer = std::thread::spawn(move || a.send_bytes(&payload).unwrap());
        let result = b.recv::<T>();
        writer.join().unwrap();
        result
    }

    fn send_and_recv<V: Serialize + Send + 'static, T: serde::de::DeserializeOwned>(
        value: V,
        b: &mut Connection,
        mut a: Connection,
    ) -> (crate::Result<T>, Connection) {
        let writer = std::thread::spawn(move || {
            a.send(&value).unwrap();
            a
        });
        let result = b.recv::<T>();
        (result, writer.join().unwrap())
    }

    #[test]
    fn byte_strings_of_every_kind_arrive_whole() {
        let (a, mut b) = pipe().unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let (got, a) = send_and_recv::<_, ByteBuf>(ByteBuf::from(data.clone()), &mut b, a);
        assert_eq!(got.unwrap().into_vec(), data);
        let (got, a) = send_and_recv::<_, Vec<u8>>(data.clone(), &mut b, a);
        assert_eq!(got.unwrap(), data);
        let text = "ab".repeat(100_000);
        let (got, a) = send_and_recv::<_, String>(text.clone(), &mut b, a);
        assert_eq!(got.unwrap(), text);

        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Blob(#[serde(with = "serde_bytes")] Vec<u8>);
        let (got, _) = send_and_recv::<_, Blob>(Blob(data.clone()), &mut b, a);
        assert_eq!(got.unwrap(), Blob(data));
    }

    #[test]
    fn a_payload_shaped_like_a_byte_string_decodes_as_whatever_was_asked() {
        // 100,000 small u16s: a length and one byte per element, just as
        // a byte string would be.
        let small: Vec<u16> = (0..100_000).map(|i| (i % 250) as u16).collect();
        let payload = crate::encode(&small).unwrap();
        assert_eq!(recv_as::<Vec<u16>>(payload.clone()).unwrap(), small);
        // A sequence of bools, which the byte-string reader does not read.
        let bools: Vec<bool> = (0..100_000).map(|i| i % 3 == 0).collect();
        let payload = crate::encode(&bools).unwrap();
        assert_eq!(recv_as::<Vec<bool>>(payload).unwrap(), bools);
        // An Option<u8> and a tuple see the same bytes differently.
        let err = recv_as::<(u8, u8)>(crate::encode(&vec![1u8; 70_000]).unwrap()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
    }

    #[test]
    fn a_byte_string_that_is_not_utf8_is_a_decode_error_for_a_string() {
        let mut bytes = vec![b'a'; 100_000];
        bytes[77_777] = 0xff;
        let payload = crate::encode(&ByteBuf::from(bytes.clone())).unwrap();
        let err = recv_as::<String>(payload.clone()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        assert!(format!("{err:#}").contains("UTF-8"), "{err:#}");
        assert_eq!(recv_as::<ByteBuf>(payload).unwrap().into_vec(), bytes);
    }

    #[test]
    fn a_prefix_that_does_not_match_the_length_is_decoded_as_usual() {
        // Claims one byte more than follows: the general decoder refuses it.
        let mut payload = vec![252];
        payload.extend_from_slice(&100_001u32.to_le_bytes());
        payload.extend_from_slice(&[7u8; 100_000]);
        let err = recv_as::<ByteBuf>(payload).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode);
        // A marker no length has, and one for a u128.
        for marker in [254u8, 255] {
            let mut payload = vec![marker];
            payload.extend_from_slice(&[0u8; 100_000]);
            assert_eq!(
                recv_as::<ByteBuf>(payload).unwrap_err().kind(),
                ErrorKind::Decode
            );
        }
    }

    #[test]
    fn the_next_message_is_readable_after_a_refused_byte_string() {
        let (mut a, mut b) = pipe().unwrap();
        let writer = std::thread::spawn(move || {
            let mut bytes = vec![b'z'; 200_000];
            bytes[5] = 0xc0;
            a.send(&ByteBuf::from(bytes)).unwrap();
            a.send(&"next").unwrap();
        });
        assert_eq!(b.recv::<String>().unwrap_err().kind(), ErrorKind::Decode);
        assert_eq!(b.recv::<String>().unwrap(), "next");
        writer.join().unwrap();
    }
}
