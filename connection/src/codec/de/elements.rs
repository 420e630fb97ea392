//! The elements of a sequence, tuple or struct, with a fast path for the
//! elements crunching data is made of.
//!
//! serde decodes a `Vec<u8>` or `Vec<f64>` by asking for one element at a
//! time in a loop of its own. Were each element read through the
//! [`Decoder`], the input's position would be stored and loaded again on
//! every element: a chain through memory that costs more than the element.
//! Instead [`Elements`], which that loop holds as a local, counts the
//! bytes its elements took from the input's buffered bytes in a field of
//! its own (`taken`), which the compiler keeps in a register; a byte, a
//! `bool`, a float or a one-byte integer is read from there, and only
//! anything else (or an element that does not fit in what is buffered)
//! hands the count back to the input and goes through the decoder.
//!
//! Each fast path consumes at least one byte and accepts exactly what the
//! decoder accepts; anything it does not accept takes the decoder's path,
//! which reads the same bytes and refuses them with the decoder's error.

use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Visitor};

use super::{Decoder, Input, Result};

/// The elements of a sequence, tuple or struct. `counted`: the length came
/// from the payload, so elements that occupy no bytes are counted against
/// [`MAX_EMPTY_ELEMENTS`](super::MAX_EMPTY_ELEMENTS) (a length from the
/// type is the program's own).
pub(super) struct Elements<'a, 'de, I: Input<'de>> {
    de: &'a mut Decoder<I>,
    left: usize,
    counted: bool,
    /// Bytes at the start of the input's buffered bytes that elements
    /// took and the input has not been told of.
    taken: usize,
    input: PhantomData<&'de ()>,
}

impl<'a, 'de, I: Input<'de>> Elements<'a, 'de, I> {
    #[inline]
    pub(super) fn new(de: &'a mut Decoder<I>, len: usize, counted: bool) -> Self {
        Elements {
            de,
            left: len,
            counted,
            taken: 0,
            input: PhantomData,
        }
    }

    /// Tells the input of the bytes taken, so that the decoder reads on
    /// from the right place.
    #[inline]
    fn hand_back(&mut self) {
        if self.taken != 0 {
            self.de.input.advance(self.taken);
            self.taken = 0;
        }
    }

    /// The next byte if it is buffered, not taken yet.
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.de.input.buffered().get(self.taken).copied()
    }

    /// The next `N` bytes, taken, if they are buffered.
    #[inline]
    fn take_array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes = self.de.input.buffered().get(self.taken..self.taken + N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        self.taken += N;
        Some(array)
    }

    /// Reads an element through the decoder: `read` gets it, and an
    /// element that occupied no bytes is counted. What this passes on is
    /// the decoder, never `self`, whose fields then stay in registers.
    #[inline]
    fn through_decoder<R>(&mut self, read: impl FnOnce(&mut Decoder<I>) -> Result<R>) -> Result<R> {
        let taken = std::mem::take(&mut self.taken);
        read_through(self.de, taken, self.counted, read)
    }
}

/// [`Elements::through_decoder`] once the bytes `taken` are handed back.
fn read_through<'de, I: Input<'de>, R>(
    de: &mut Decoder<I>,
    taken: usize,
    counted: bool,
    read: impl FnOnce(&mut Decoder<I>) -> Result<R>,
) -> Result<R> {
    if taken != 0 {
        de.input.advance(taken);
    }
    if !counted {
        return read(de);
    }
    let before = de.consumed();
    let value = read(de)?;
    if de.consumed() == before {
        de.empty_element()?;
    }
    Ok(value)
}

impl<'de, I: Input<'de>> Drop for Elements<'_, 'de, I> {
    /// A visitor may stop before the last element, or fail: either way the
    /// input must know what was read.
    #[inline]
    fn drop(&mut self) {
        self.hand_back();
    }
}

impl<'de, I: Input<'de>> de::SeqAccess<'de> for Elements<'_, 'de, I> {
    type Error = super::FormatError;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(Element { elements: self }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.de.input.left() - self.taken))
    }
}

/// The deserializer of one element: fast paths, else the decoder.
struct Element<'a, 'b, 'de, I: Input<'de>> {
    elements: &'a mut Elements<'b, 'de, I>,
}

/// Methods with no fast path: through the decoder.
macro_rules! through_decoder {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value> {
            self.elements
                .through_decoder(|de| de::Deserializer::$method(de, $($arg,)* visitor))
        }
    )*};
}

/// Values of one byte (`$byte`, matching `$accepted`): read from the bytes
/// at hand when they are there and accepted, else through the decoder,
/// which says why not. An integer wider than a byte is a varint, which is
/// one byte below 251; a signed one zigzag-mapped, 0, -1, 1, -2 ... as 0,
/// 1, 2, 3 ...
macro_rules! one_byte {
    ($($method:ident $visit:ident [$byte:ident @ $accepted:pat] $value:expr;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            match self.elements.peek() {
                Some($byte @ $accepted) => {
                    self.elements.taken += 1;
                    visitor.$visit($value)
                }
                _ => self
                    .elements
                    .through_decoder(|de| de::Deserializer::$method(de, visitor)),
            }
        }
    )*};
}

/// Floats, their little-endian bytes as they are.
macro_rules! floats {
    ($($method:ident $visit:ident $ty:ty;)*) => {$(
        #[inline]
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
            match self.elements.take_array() {
                Some(bytes) => visitor.$visit(<$ty>::from_le_bytes(bytes)),
                None => self
                    .elements
                    .through_decoder(|de| de::Deserializer::$method(de, visitor)),
            }
        }
    )*};
}

impl<'de, I: Input<'de>> de::Deserializer<'de> for Element<'_, '_, 'de, I> {
    type Error = super::FormatError;

    one_byte! {
        deserialize_u8 visit_u8 [byte @ 0..=u8::MAX] byte;
        deserialize_i8 visit_i8 [byte @ 0..=u8::MAX] byte as i8;
        deserialize_bool visit_bool [byte @ (0 | 1)] byte == 1;
        deserialize_u16 visit_u16 [small @ 0..=250] u16::from(small);
        deserialize_u32 visit_u32 [small @ 0..=250] u32::from(small);
        deserialize_u64 visit_u64 [small @ 0..=250] u64::from(small);
        deserialize_i16 visit_i16 [small @ 0..=250] i16::from(small >> 1) ^ -i16::from(small & 1);
        deserialize_i32 visit_i32 [small @ 0..=250] i32::from(small >> 1) ^ -i32::from(small & 1);
        deserialize_i64 visit_i64 [small @ 0..=250] i64::from(small >> 1) ^ -i64::from(small & 1);
    }

    floats! {
        deserialize_f32 visit_f32 f32;
        deserialize_f64 visit_f64 f64;
    }

    through_decoder! {
        deserialize_any();
        deserialize_u128();
        deserialize_i128();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}
