//! Reading bincode's standard configuration through serde, within what the
//! payload holds.
//!
//! bincode's own decoder trusts length prefixes (its only guard is a
//! compile-time limit) and recurses as deep as the input nests, so this
//! module reads the same bytes with three guards of its own:
//!
//! - a string or byte string is taken from the payload only once its claimed
//!   length is known to be there (or, decoded as it arrives, to fit in what
//!   the payload has left, its buffer growing as the bytes come), and a
//!   sequence or map offers serde a pre-allocation of at most one element
//!   per byte left;
//! - nesting deeper than [`MAX_DECODE_DEPTH`] is refused before it can
//!   exhaust the stack;
//! - elements that occupy no bytes (`()`, empty structs) are counted, at most
//!   [`MAX_EMPTY_ELEMENTS`] per payload, so a forged count cannot make a
//!   loop run without consuming input.
//!
//! The format, as bincode 2's serde support writes it with
//! `config::standard()`: `u8`/`i8` one raw byte; wider integers a varint
//! (a byte below 251 is the value, 251/252/253/254 announce a little-endian
//! `u16`/`u32`/`u64`/`u128`), signed ones zigzag-mapped first; floats raw
//! little endian; `char` its UTF-8 bytes; `bool` and an `Option`'s tag one
//! byte 0 or 1; lengths a varint `u64`; an enum variant a varint `u32`
//! index; structs and tuples their fields in order.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::{FormatError, MAX_DECODE_DEPTH, MAX_EMPTY_ELEMENTS};

mod elements;
use elements::Elements;

type Result<T> = std::result::Result<T, FormatError>;

/// What a string or byte string is wanted as: serde asks for a borrowed
/// or an owned one.
#[derive(Clone, Copy)]
pub(crate) enum Want {
    Str,
    String,
    Bytes,
    ByteBuf,
}

/// Where a [`Decoder`] reads its payload from: a [`Slice`] holding all of
/// it, or a reader that receives it as decoding goes
/// (`crate::streaming::Arriving`).
pub(crate) trait Input<'de> {
    /// How many bytes of the payload have been read.
    fn consumed(&self) -> usize;

    /// How many bytes of the payload are left, arrived or not.
    fn left(&self) -> usize;

    /// The bytes at hand (all the rest of a whole payload, what has
    /// arrived of one decoded as it arrives), for
    /// [`advance`](Input::advance) to step over.
    fn buffered(&self) -> &[u8];

    /// Steps over the first `n` bytes of [`buffered`](Input::buffered).
    fn advance(&mut self, n: usize);

    /// The next byte.
    fn byte(&mut self) -> Result<u8>;

    /// The next `N` bytes.
    fn array<const N: usize>(&mut self) -> Result<[u8; N]>;

    /// Fills `out` with the next bytes.
    fn fill(&mut self, out: &mut [u8]) -> Result<()>;

    /// Hands the next `len` bytes to `visitor` as `want` says, checked as
    /// UTF-8 for a string; nothing is allocated before they are there.
    fn byte_string<V: Visitor<'de>>(
        &mut self,
        len: usize,
        want: Want,
        visitor: V,
    ) -> Result<V::Value>;
}

/// The error for what went wrong after `consumed` bytes of a payload.
#[cold]
pub(crate) fn error_at(consumed: usize, what: impl fmt::Display) -> FormatError {
    FormatError::new(format!("at byte {consumed}: {what}"))
}

/// The error for a payload that ends inside a value.
#[cold]
pub(crate) fn ends_early(consumed: usize, wanted: usize, left: usize) -> FormatError {
    match wanted {
        1 => error_at(consumed, "the payload ends too early"),
        _ => error_at(
            consumed,
            format_args!("{wanted} bytes claimed, {left} left"),
        ),
    }
}

/// `bytes` as a string, or the error saying where it is not UTF-8.
#[inline]
pub(crate) fn utf8(bytes: &[u8], consumed: usize) -> Result<&str> {
    std::str::from_utf8(bytes)
        .map_err(|err| error_at(consumed, format_args!("invalid UTF-8: {err}")))
}

/// A whole payload in memory: strings and byte strings are borrowed from it.
pub(crate) struct Slice<'de> {
    /// What has not been read yet.
    rest: &'de [u8],
    /// The payload's whole length, to say where an error was.
    len: usize,
}

impl<'de> Slice<'de> {
    #[inline]
    pub(crate) fn new(payload: &'de [u8]) -> Self {
        Slice {
            rest: payload,
            len: payload.len(),
        }
    }

    /// The next `len` bytes, or an error when fewer are left; nothing is
    /// allocated either way.
    #[inline]
    fn take(&mut self, len: usize) -> Result<&'de [u8]> {
        if len > self.rest.len() {
            return Err(ends_early(self.consumed(), len, self.rest.len()));
        }
        let (taken, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(taken)
    }
}

impl<'de> Input<'de> for Slice<'de> {
    #[inline]
    fn consumed(&self) -> usize {
        self.len - self.rest.len()
    }

    #[inline]
    fn left(&self) -> usize {
        self.rest.len()
    }

    #[inline]
    fn buffered(&self) -> &[u8] {
        self.rest
    }

    #[inline]
    fn advance(&mut self, n: usize) {
        self.rest = &self.rest[n..];
    }

    #[inline]
    fn byte(&mut self) -> Result<u8> {
        match self.rest.split_first() {
            Some((&byte, rest)) => {
                self.rest = rest;
                Ok(byte)
            }
            None => Err(ends_early(self.consumed(), 1, 0)),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    #[inline]
    fn fill(&mut self, out: &mut [u8]) -> Result<()> {
        out.copy_from_slice(self.take(out.len())?);
        Ok(())
    }

    #[inline]
    fn byte_string<V: Visitor<'de>>(
        &mut self,
        len: usize,
        want: Want,
        visitor: V,
    ) -> Result<V::Value> {
        let bytes = self.take(len)?;
        match want {
            Want::Bytes => visitor.visit_borrowed_bytes(bytes),
            Want::ByteBuf => visitor.visit_byte_buf(bytes.to_vec()),
            Want::Str => visitor.visit_borrowed_str(utf8(bytes, self.consumed())?),
            Want::String => visitor.visit_string(utf8(bytes, self.consumed())?.to_owned()),
        }
    }
}

/// A serde `Deserializer` over one payload, read from an [`Input`].
pub(crate) struct Decoder<I> {
    input: I,
    depth: usize,
    empty_elements_left: usize,
}

impl<'de> Decoder<Slice<'de>> {
    /// A decoder of the whole payload `payload`.
    #[inline]
    pub(crate) fn new(payload: &'de [u8]) -> Self {
        Decoder::over(Slice::new(payload))
    }
}

impl<'de, I: Input<'de>> Decoder<I> {
    #[inline]
    pub(crate) fn over(input: I) -> Self {
        Decoder {
            input,
            depth: 0,
            empty_elements_left: MAX_EMPTY_ELEMENTS,
        }
    }

    /// How many bytes have been read.
    #[inline]
    pub(crate) fn consumed(&self) -> usize {
        self.input.consumed()
    }

    /// The input, to read what it holds after the value.
    pub(crate) fn into_input(self) -> I {
        self.input
    }

    #[cold]
    fn error(&self, what: impl fmt::Display) -> FormatError {
        error_at(self.consumed(), what)
    }

    #[inline]
    fn byte(&mut self) -> Result<u8> {
        self.input.byte()
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        self.input.array()
    }

    /// A varint of at most `widest` bytes after its marker (2, 4, 8 or 16).
    #[inline]
    fn varint(&mut self, widest: usize, what: &str) -> Result<u128> {
        let marker = self.byte()?;
        let width = match marker {
            0..=250 => return Ok(u128::from(marker)),
            251 => 2,
            252 => 4,
            253 => 8,
            254 => 16,
            255 => return Err(self.error(format_args!("255 is not a {what} marker"))),
        };
        if width > widest {
            return Err(self.error(format_args!(
                "a {width}-byte integer where a {what} was expected"
            )));
        }
        let mut bytes = [0u8; 16];
        self.input.fill(&mut bytes[..width])?;
        Ok(u128::from_le_bytes(bytes))
    }

    /// A length prefix, checked against nothing yet: callers decide what it
    /// must fit in.
    #[inline]
    fn length(&mut self) -> Result<usize> {
        let len = self.varint(8, "length")?;
        usize::try_from(len).map_err(|_| self.error(format_args!("length {len} is too large")))
    }

    /// A string or byte string, after its length, handed to `visitor`.
    #[inline]
    fn byte_string<V: Visitor<'de>>(&mut self, want: Want, visitor: V) -> Result<V::Value> {
        let len = self.length()?;
        self.input.byte_string(len, want, visitor)
    }

    /// A sequence's or map's element count, refused when even with every
    /// element occupying no bytes it could not fit in what is left.
    #[inline]
    fn count(&mut self) -> Result<usize> {
        let count = self.length()?;
        let left = self.input.left();
        if count > left.saturating_add(self.empty_elements_left) {
            return Err(self.error(format_args!("{count} elements claimed, {left} bytes left")));
        }
        Ok(count)
    }

    /// Runs `inner` one level deeper, or refuses past [`MAX_DECODE_DEPTH`].
    #[inline]
    fn nested<R>(&mut self, inner: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        if self.depth >= MAX_DECODE_DEPTH {
            return Err(self.error(format_args!(
                "nested more than {MAX_DECODE_DEPTH} levels deep"
            )));
        }
        self.depth += 1;
        let result = inner(self);
        self.depth -= 1;
        result
    }

    /// Counts one element that occupied no bytes.
    #[inline]
    fn empty_element(&mut self) -> Result<()> {
        match self.empty_elements_left.checked_sub(1) {
            Some(left) => {
                self.empty_elements_left = left;
                Ok(())
            }
            None => Err(self.error(format_args!(
                "more than {MAX_EMPTY_ELEMENTS} elements that occupy no bytes"
            ))),
        }
    }

    #[inline]
    fn elements<V: Visitor<'de>>(
        &mut self,
        len: usize,
        counted: bool,
        visitor: V,
    ) -> Result<V::Value> {
        self.nested(|de| visitor.visit_seq(Elements::new(de, len, counted)))
    }
}

macro_rules! varint_unsigned {
    ($($method:ident $visit:ident $ty:ty;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let value = self.varint(std::mem::size_of::<$ty>(), stringify!($ty))?;
            visitor.$visit(value as $ty)
        }
    )*};
}

macro_rules! varint_signed {
    ($($method:ident $visit:ident $ty:ty, $unsigned:ty;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            let zigzag = self.varint(std::mem::size_of::<$ty>(), stringify!($ty))? as $unsigned;
            let value = ((zigzag >> 1) as $ty) ^ -((zigzag & 1) as $ty);
            visitor.$visit(value)
        }
    )*};
}

impl<'de, I: Input<'de>> de::Deserializer<'de> for &mut Decoder<I> {
    type Error = FormatError;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(self.error("the format does not describe itself (deserialize_any)"))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            other => Err(self.error(format_args!("{other} is not a bool"))),
        }
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u8(self.byte()?)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i8(self.byte()? as i8)
    }

    varint_unsigned! {
        deserialize_u16 visit_u16 u16;
        deserialize_u32 visit_u32 u32;
        deserialize_u64 visit_u64 u64;
        deserialize_u128 visit_u128 u128;
    }

    varint_signed! {
        deserialize_i16 visit_i16 i16, u16;
        deserialize_i32 visit_i32 i32, u32;
        deserialize_i64 visit_i64 i64, u64;
        deserialize_i128 visit_i128 i128, u128;
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f32(f32::from_le_bytes(self.array()?))
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f64(f64::from_le_bytes(self.array()?))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let first = self.byte()?;
        let width = match first {
            0x00..=0x7F => 1,
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return Err(self.error(format_args!("{first:#04x} cannot start a char"))),
        };
        let mut bytes = [first, 0, 0, 0];
        self.input.fill(&mut bytes[1..width])?;
        match std::str::from_utf8(&bytes[..width])
            .ok()
            .and_then(|s| s.chars().next())
        {
            Some(c) => visitor.visit_char(c),
            None => Err(self.error("invalid UTF-8 in a char")),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.byte_string(Want::Str, visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.byte_string(Want::String, visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.byte_string(Want::Bytes, visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.byte_string(Want::ByteBuf, visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => self.nested(|de| visitor.visit_some(de)),
            other => Err(self.error(format_args!("{other} is not an Option tag"))),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        self.nested(|de| visitor.visit_newtype_struct(de))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let count = self.count()?;
        self.elements(count, true, visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        self.elements(len, false, visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.elements(len, false, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let count = self.count()?;
        self.nested(|de| {
            visitor.visit_map(Entries {
                de,
                left: count,
                entry_start: 0,
            })
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.elements(fields.len(), false, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.nested(|de| visitor.visit_enum(de))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(self.error("the format has no identifiers (deserialize_identifier)"))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(self.error("the format cannot skip a value it does not know (deserialize_ignored_any)"))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The entries of a map, counted like a sequence's elements.
struct Entries<'a, I> {
    de: &'a mut Decoder<I>,
    left: usize,
    /// Bytes read when the current entry's key began.
    entry_start: usize,
}

impl<'de, I: Input<'de>> de::MapAccess<'de> for Entries<'_, I> {
    type Error = FormatError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.entry_start = self.de.consumed();
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        let value = seed.deserialize(&mut *self.de)?;
        if self.de.consumed() == self.entry_start {
            self.de.empty_element()?;
        }
        Ok(value)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.de.input.left()))
    }
}

impl<'de, I: Input<'de>> de::EnumAccess<'de> for &mut Decoder<I> {
    type Error = FormatError;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index = self.varint(4, "variant index")? as u32;
        let variant = seed.deserialize(index.into_deserializer())?;
        Ok((variant, self))
    }
}

impl<'de, I: Input<'de>> de::VariantAccess<'de> for &mut Decoder<I> {
    type Error = FormatError;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_tuple(self, len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        de::Deserializer::deserialize_tuple(self, fields.len(), visitor)
    }
}
