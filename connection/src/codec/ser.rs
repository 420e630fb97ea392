//! Writing bincode's standard configuration through serde.
//!
//! The bytes are exactly what bincode 2.0.1's serde support writes with
//! `config::standard()` (see [`super::de`] for the format), including its
//! refusal of a sequence or map whose length is not known up front.
//! Writing it here rather than through bincode saves a call through
//! `std::io::Write` for every byte of a `Vec<u8>`, which serde hands over
//! one element at a time.
//!
//! The [`Encoder`] writes through an [`Output`]: a `Vec<u8>` (or a
//! [`Within`], one that stops at a limit) for a payload encoded whole, a
//! [`Staged`] buffer in front of a [`Downstream`] for one streamed to a socket
//! as it is encoded, or a [`Counter`] that only adds up the length, which
//! a streamed message's header needs first.

use serde::ser::{self, Serialize};

use super::FormatError;

type Result<T = ()> = std::result::Result<T, FormatError>;

/// Where an [`Encoder`] writes.
pub(crate) trait Output {
    fn byte(&mut self, byte: u8) -> Result;
    fn bytes(&mut self, bytes: &[u8]) -> Result;
}

/// Adds up the length of an encoding without writing it.
#[derive(Default)]
pub(crate) struct Counter {
    pub(crate) len: u64,
}

impl Output for Counter {
    #[inline]
    fn byte(&mut self, _: u8) -> Result {
        self.len += 1;
        Ok(())
    }

    #[inline]
    fn bytes(&mut self, bytes: &[u8]) -> Result {
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// Appending to a `Vec` as it goes: for a payload encoded whole, which
/// the `Vec`'s own growth serves as well as a stage would.
impl Output for &mut Vec<u8> {
    #[inline]
    fn byte(&mut self, byte: u8) -> Result {
        self.push(byte);
        Ok(())
    }

    #[inline]
    fn bytes(&mut self, bytes: &[u8]) -> Result {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// A `Vec` that refuses to grow past `end` bytes: encoding stops, with
/// [`over`](Within::over) set, as soon as a value turns out longer.
pub(crate) struct Within<'a> {
    pub(crate) out: &'a mut Vec<u8>,
    pub(crate) end: usize,
    pub(crate) over: bool,
}

impl Within<'_> {
    #[cold]
    fn refuse(&mut self) -> Result {
        self.over = true;
        Err(FormatError::new("longer than the limit"))
    }
}

impl Output for Within<'_> {
    #[inline]
    fn byte(&mut self, byte: u8) -> Result {
        if self.out.len() >= self.end {
            return self.refuse();
        }
        self.out.push(byte);
        Ok(())
    }

    #[inline]
    fn bytes(&mut self, bytes: &[u8]) -> Result {
        if bytes.len() > self.end.saturating_sub(self.out.len()) {
            return self.refuse();
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

/// What a [`Staged`] buffer hands its bytes to.
pub(crate) trait Downstream {
    /// Takes the next bytes of the encoding: a full stage, or a byte
    /// string too long to be worth staging.
    fn put(&mut self, bytes: &[u8]) -> Result;
}

/// For the tests of the staging buffer, against bincode's bytes.
#[cfg(test)]
impl Downstream for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> Result {
        self.extend_from_slice(bytes);
        Ok(())
    }
}

/// How many bytes a [`Staged`] buffer holds before it hands them on.
const STAGE: usize = 4096;

/// A small buffer in front of a [`Downstream`] that wants its bytes in pieces
/// worth a system call: serde hands a `Vec<f64>` over one element at a
/// time, and a full stage goes downstream in one copy that stays in the
/// cache, while a long byte string goes downstream as it lies.
pub(crate) struct Staged<S: Downstream> {
    stage: [u8; STAGE],
    staged: usize,
    downstream: S,
}

impl<S: Downstream> Staged<S> {
    #[inline]
    pub(crate) fn new(downstream: S) -> Self {
        Staged {
            stage: [0; STAGE],
            staged: 0,
            downstream,
        }
    }

    /// The downstream, with anything still staged left out: [`flush`](Self::flush) first.
    pub(crate) fn into_downstream(self) -> S {
        self.downstream
    }

    /// Hands what is staged downstream.
    #[inline]
    pub(crate) fn flush(&mut self) -> Result {
        let staged = std::mem::take(&mut self.staged);
        self.downstream.put(&self.stage[..staged])
    }

    #[cold]
    fn byte_after_flush(&mut self, byte: u8) -> Result {
        self.flush()?;
        self.stage[0] = byte;
        self.staged = 1;
        Ok(())
    }

    #[cold]
    fn bytes_after_flush(&mut self, bytes: &[u8]) -> Result {
        self.flush()?;
        if bytes.len() >= STAGE {
            // Long byte strings go downstream as they are: one copy into
            // a Vec, none at all into a socket.
            return self.downstream.put(bytes);
        }
        self.stage[..bytes.len()].copy_from_slice(bytes);
        self.staged = bytes.len();
        Ok(())
    }
}

impl<S: Downstream> Output for Staged<S> {
    #[inline]
    fn byte(&mut self, byte: u8) -> Result {
        match self.stage.get_mut(self.staged) {
            Some(slot) => {
                *slot = byte;
                self.staged += 1;
                Ok(())
            }
            None => self.byte_after_flush(byte),
        }
    }

    #[inline]
    fn bytes(&mut self, bytes: &[u8]) -> Result {
        let end = self.staged + bytes.len();
        match self.stage.get_mut(self.staged..end) {
            Some(room) => {
                room.copy_from_slice(bytes);
                self.staged = end;
                Ok(())
            }
            None => self.bytes_after_flush(bytes),
        }
    }
}

/// A serde `Serializer` writing to an [`Output`].
pub(crate) struct Encoder<O: Output> {
    out: O,
}

impl<O: Output> Encoder<O> {
    #[inline]
    pub(crate) fn new(out: O) -> Self {
        Encoder { out }
    }

    pub(crate) fn into_output(self) -> O {
        self.out
    }

    /// A varint: values up to 250 as one byte, larger ones as the marker
    /// of the narrowest of `u16`/`u32`/`u64`/`u128` that holds them and
    /// their little-endian bytes.
    #[inline]
    fn varint(&mut self, value: u128) -> Result {
        if value <= 250 {
            self.out.byte(value as u8)
        } else if value <= u128::from(u16::MAX) {
            let mut bytes = [251, 0, 0];
            bytes[1..].copy_from_slice(&(value as u16).to_le_bytes());
            self.out.bytes(&bytes)
        } else if value <= u128::from(u32::MAX) {
            let mut bytes = [252, 0, 0, 0, 0];
            bytes[1..].copy_from_slice(&(value as u32).to_le_bytes());
            self.out.bytes(&bytes)
        } else if value <= u128::from(u64::MAX) {
            let mut bytes = [253; 9];
            bytes[1..].copy_from_slice(&(value as u64).to_le_bytes());
            self.out.bytes(&bytes)
        } else {
            let mut bytes = [254; 17];
            bytes[1..].copy_from_slice(&value.to_le_bytes());
            self.out.bytes(&bytes)
        }
    }

    #[inline]
    fn length(&mut self, len: Option<usize>) -> Result {
        let len = len.ok_or_else(|| {
            FormatError::new("a sequence or map must know its length before its elements")
        })?;
        self.varint(len as u128)
    }

    #[inline]
    fn byte_string(&mut self, bytes: &[u8]) -> Result {
        self.varint(bytes.len() as u128)?;
        self.out.bytes(bytes)
    }
}

/// Zigzag: 0, -1, 1, -2, ... as 0, 1, 2, 3, ... so small magnitudes of
/// either sign stay one byte.
macro_rules! zigzag {
    ($value:expr, $unsigned:ty, $bits:expr) => {
        ((($value) << 1) ^ (($value) >> ($bits - 1))) as $unsigned
    };
}

/// Integers wider than a byte: a varint of their value, signed ones
/// zigzag-mapped first.
macro_rules! varints {
    ($($method:ident $ty:ty => |$v:ident| $unsigned:expr;)*) => {$(
        #[inline]
        fn $method(self, $v: $ty) -> Result {
            self.varint(u128::from($unsigned))
        }
    )*};
}

impl<O: Output> ser::Serializer for &mut Encoder<O> {
    type Ok = ();
    type Error = FormatError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    #[inline]
    fn serialize_bool(self, value: bool) -> Result {
        self.out.byte(u8::from(value))
    }

    #[inline]
    fn serialize_i8(self, value: i8) -> Result {
        self.out.byte(value as u8)
    }

    varints! {
        serialize_i16 i16 => |v| zigzag!(v, u16, 16);
        serialize_i32 i32 => |v| zigzag!(v, u32, 32);
        serialize_i64 i64 => |v| zigzag!(v, u64, 64);
        serialize_i128 i128 => |v| zigzag!(v, u128, 128);
        serialize_u16 u16 => |v| v;
        serialize_u32 u32 => |v| v;
        serialize_u64 u64 => |v| v;
        serialize_u128 u128 => |v| v;
    }

    #[inline]
    fn serialize_u8(self, value: u8) -> Result {
        self.out.byte(value)
    }

    #[inline]
    fn serialize_f32(self, value: f32) -> Result {
        self.out.bytes(&value.to_le_bytes())
    }

    #[inline]
    fn serialize_f64(self, value: f64) -> Result {
        self.out.bytes(&value.to_le_bytes())
    }

    #[inline]
    fn serialize_char(self, value: char) -> Result {
        let mut utf8 = [0u8; 4];
        self.out.bytes(value.encode_utf8(&mut utf8).as_bytes())
    }

    #[inline]
    fn serialize_str(self, value: &str) -> Result {
        self.byte_string(value.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, value: &[u8]) -> Result {
        self.byte_string(value)
    }

    #[inline]
    fn serialize_none(self) -> Result {
        self.out.byte(0)
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        self.out.byte(1)?;
        value.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result {
        Ok(())
    }

    #[inline]
    fn serialize_unit_struct(self, _name: &'static str) -> Result {
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(self, _name: &'static str, index: u32, _: &'static str) -> Result {
        self.varint(u128::from(index))
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result {
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result {
        self.varint(u128::from(index))?;
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, len: Option<usize>) -> Result<Self> {
        self.length(len)?;
        Ok(self)
    }

    #[inline]
    fn serialize_tuple(self, _len: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self> {
        self.varint(u128::from(index))?;
        Ok(self)
    }

    #[inline]
    fn serialize_map(self, len: Option<usize>) -> Result<Self> {
        self.length(len)?;
        Ok(self)
    }

    #[inline]
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self> {
        Ok(self)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self> {
        // Fields without names: the same bytes as a tuple variant.
        ser::Serializer::serialize_tuple_variant(self, name, index, variant, len)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Elements, fields and entries follow one another with nothing between.
macro_rules! in_order {
    ($($trait:ident $method:ident $(, $key:ident)?;)*) => {$(
        impl<O: Output> ser::$trait for &mut Encoder<O> {
            type Ok = ();
            type Error = FormatError;

            #[inline]
            fn $method<T: Serialize + ?Sized>(
                &mut self,
                $($key: &'static str,)?
                value: &T,
            ) -> Result {
                $(let _ = $key;)?
                value.serialize(&mut **self)
            }

            #[inline]
            fn end(self) -> Result {
                Ok(())
            }
        }
    )*};
}

in_order! {
    SerializeSeq serialize_element;
    SerializeTuple serialize_element;
    SerializeTupleStruct serialize_field;
    SerializeTupleVariant serialize_field;
    SerializeStruct serialize_field, _key;
    SerializeStructVariant serialize_field, _key;
}

impl<O: Output> ser::SerializeMap for &mut Encoder<O> {
    type Ok = ();
    type Error = FormatError;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result {
        key.serialize(&mut **self)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        value.serialize(&mut **self)
    }

    #[inline]
    fn end(self) -> Result {
        Ok(())
    }
}
