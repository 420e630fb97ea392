//! Writing bincode's standard configuration through serde, straight into a
//! `Vec<u8>`.
//!
//! The bytes are exactly what bincode 2.0.1's serde support writes with
//! `config::standard()` (see [`super::de`] for the format), including its
//! refusal of a sequence or map whose length is not known up front.
//! Writing it here rather than through bincode saves a call through
//! `std::io::Write` for every byte of a `Vec<u8>`, which serde hands over
//! one element at a time.

use serde::ser::{self, Serialize};

use super::FormatError;

type Result<T = ()> = std::result::Result<T, FormatError>;

/// A serde `Serializer` appending to a `Vec<u8>`.
pub(crate) struct Encoder<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Encoder<'a> {
    #[inline]
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Self {
        Encoder { out }
    }

    /// A varint: values up to 250 as one byte, larger ones as the marker
    /// of the narrowest of `u16`/`u32`/`u64`/`u128` that holds them and
    /// their little-endian bytes.
    #[inline]
    fn varint(&mut self, value: u128) {
        if value <= 250 {
            self.out.push(value as u8);
        } else if value <= u128::from(u16::MAX) {
            self.out.push(251);
            self.out.extend_from_slice(&(value as u16).to_le_bytes());
        } else if value <= u128::from(u32::MAX) {
            self.out.push(252);
            self.out.extend_from_slice(&(value as u32).to_le_bytes());
        } else if value <= u128::from(u64::MAX) {
            self.out.push(253);
            self.out.extend_from_slice(&(value as u64).to_le_bytes());
        } else {
            self.out.push(254);
            self.out.extend_from_slice(&value.to_le_bytes());
        }
    }

    #[inline]
    fn length(&mut self, len: Option<usize>) -> Result {
        let len = len.ok_or_else(|| {
            FormatError::new("a sequence or map must know its length before its elements")
        })?;
        self.varint(len as u128);
        Ok(())
    }

    #[inline]
    fn byte_string(&mut self, bytes: &[u8]) {
        self.varint(bytes.len() as u128);
        self.out.extend_from_slice(bytes);
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
            self.varint(u128::from($unsigned));
            Ok(())
        }
    )*};
}

impl ser::Serializer for &mut Encoder<'_> {
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
        self.out.push(u8::from(value));
        Ok(())
    }

    #[inline]
    fn serialize_i8(self, value: i8) -> Result {
        self.out.push(value as u8);
        Ok(())
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
        self.out.push(value);
        Ok(())
    }

    #[inline]
    fn serialize_f32(self, value: f32) -> Result {
        self.out.extend_from_slice(&value.to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_f64(self, value: f64) -> Result {
        self.out.extend_from_slice(&value.to_le_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_char(self, value: char) -> Result {
        let mut utf8 = [0u8; 4];
        self.out
            .extend_from_slice(value.encode_utf8(&mut utf8).as_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_str(self, value: &str) -> Result {
        self.byte_string(value.as_bytes());
        Ok(())
    }

    #[inline]
    fn serialize_bytes(self, value: &[u8]) -> Result {
        self.byte_string(value);
        Ok(())
    }

    #[inline]
    fn serialize_none(self) -> Result {
        self.out.push(0);
        Ok(())
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result {
        self.out.push(1);
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
        self.varint(u128::from(index));
        Ok(())
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
        self.varint(u128::from(index));
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
        self.varint(u128::from(index));
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
        impl ser::$trait for &mut Encoder<'_> {
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

impl ser::SerializeMap for &mut Encoder<'_> {
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
