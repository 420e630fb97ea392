//! Serde values as protocol 4 pickles of plain Python values.
//!
//! Only opcodes that build `None`, `bool`, `int`, `float`, `str`, `bytes`,
//! `list`, `tuple`, `dict`, `set` and `frozenset` are written: no memo, no
//! frames (all optional in protocol 4), so any CPython since 3.4 reads the
//! result. The one global is `builtins.bytearray`, for a `Value`'s
//! bytearray, written as CPython's own protocol 4 writes it
//! (`BYTEARRAY8` needs protocol 5).
//!
//! `Value`'s bytearrays, sets, frozensets and wide ints arrive as newtype
//! structs with private names (see `value/serde_impl.rs`); the name sets
//! `Writer::pending`, which the bytes or sequence inside then consume.

use serde::ser::{self, Serialize};

use super::error::{PickleError, PickleResult};
use super::opcodes as op;
use super::value::serde_impl::marker;
use super::value::shortest_len;

/// The protocol written: CPython's default from 3.8 to 3.13.
const PROTOCOL: u8 = 4;

/// Appends the pickle of `value` to `out`.
pub(super) fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> PickleResult<()> {
    out.extend_from_slice(&[op::PROTO, PROTOCOL]);
    value.serialize(&mut Writer {
        out,
        as_key: false,
        pending: None,
    })?;
    out.push(op::STOP);
    Ok(())
}

/// Writes one value. Inside a dict key (`as_key`) sequences become tuples,
/// since a Python list cannot be a key, and maps are refused.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    as_key: bool,
    /// The Python type the next bytes or sequence stand for, set by a
    /// private newtype name.
    pending: Option<Exact>,
}

/// What a private newtype name says its content is.
#[derive(Debug, Clone, Copy)]
enum Exact {
    ByteArray,
    Set,
    FrozenSet,
    Long,
}

impl<'a> Writer<'a> {
    fn int(&mut self, n: i128) {
        match n {
            0..=0xff => self.out.extend_from_slice(&[op::BININT1, n as u8]),
            0x100..=0xffff => {
                self.out.push(op::BININT2);
                self.out.extend_from_slice(&(n as u16).to_le_bytes());
            }
            _ => match i32::try_from(n) {
                Ok(n) => {
                    self.out.push(op::BININT);
                    self.out.extend_from_slice(&n.to_le_bytes());
                }
                Err(_) => self.long(&n.to_le_bytes()).expect("16 bytes fit LONG1"),
            },
        }
    }

    /// `LONG1` (or `LONG4` past 255 bytes) of little-endian two's
    /// complement bytes, shortened to the fewest that keep the sign, as
    /// CPython writes them.
    fn long(&mut self, bytes: &[u8]) -> PickleResult<()> {
        let bytes = &bytes[..shortest_len(bytes)];
        if let Ok(short) = u8::try_from(bytes.len()) {
            self.out.extend_from_slice(&[op::LONG1, short]);
        } else {
            let len = i32::try_from(bytes.len())
                .map_err(|_| PickleError("an int of 2 GiB or more has no pickle form".into()))?;
            self.out.push(op::LONG4);
            self.out.extend_from_slice(&len.to_le_bytes());
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// `builtins.bytearray(data)`, as CPython's protocol 4 writes it.
    fn bytearray(&mut self, data: &[u8]) {
        self.text("builtins");
        self.text("bytearray");
        self.out.push(op::STACK_GLOBAL);
        self.sized([op::SHORT_BINBYTES, op::BINBYTES, op::BINBYTES8], data);
        self.out.extend_from_slice(&[op::TUPLE1, op::REDUCE]);
    }

    /// A length-prefixed argument with the shortest of three prefixes.
    fn sized(&mut self, opcodes: [u8; 3], data: &[u8]) {
        let len = data.len();
        if let Ok(short) = u8::try_from(len) {
            self.out.extend_from_slice(&[opcodes[0], short]);
        } else if let Ok(medium) = u32::try_from(len) {
            self.out.push(opcodes[1]);
            self.out.extend_from_slice(&medium.to_le_bytes());
        } else {
            self.out.push(opcodes[2]);
            self.out.extend_from_slice(&(len as u64).to_le_bytes());
        }
        self.out.extend_from_slice(data);
    }

    fn text(&mut self, text: &str) {
        self.sized(
            [op::SHORT_BINUNICODE, op::BINUNICODE, op::BINUNICODE8],
            text.as_bytes(),
        );
    }

    /// Starts a dict (`EMPTY_DICT MARK`), refused inside a key.
    fn open_dict(&mut self) -> PickleResult<()> {
        if self.as_key {
            return Err(PickleError(
                "a map, struct or enum variant with content cannot be a Python dict key".into(),
            ));
        }
        self.out.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
        Ok(())
    }

    /// Starts the dict `{variant: content}` of an enum variant with content.
    fn open_variant(&mut self, variant: &str) -> PickleResult<()> {
        self.open_dict()?;
        self.text(variant);
        Ok(())
    }

    /// Starts a sequence: a tuple for Rust tuples (`tuple_len`) and inside
    /// a key, a list elsewhere. Short tuples use `TUPLE1` to `TUPLE3`, as
    /// CPython does.
    fn open_seq<'w>(&'w mut self, tuple_len: Option<usize>) -> Compound<'w, 'a> {
        match tuple_len {
            Some(0) => Compound::new(self, &[op::EMPTY_TUPLE]),
            Some(1) => Compound::new(self, &[op::TUPLE1]),
            Some(2) => Compound::new(self, &[op::TUPLE2]),
            Some(3) => Compound::new(self, &[op::TUPLE3]),
            Some(_) => {
                self.out.push(op::MARK);
                Compound::new(self, &[op::TUPLE])
            }
            None if self.as_key => {
                self.out.push(op::MARK);
                Compound::new(self, &[op::TUPLE])
            }
            None => {
                self.out.extend_from_slice(&[op::EMPTY_LIST, op::MARK]);
                Compound::new(self, &[op::APPENDS])
            }
        }
    }
}

/// A container being written; `close` is written at its end.
struct Compound<'w, 'a> {
    writer: &'w mut Writer<'a>,
    close: &'static [u8],
}

impl<'w, 'a> Compound<'w, 'a> {
    fn new(writer: &'w mut Writer<'a>, close: &'static [u8]) -> Self {
        Compound { writer, close }
    }

    fn item<T: Serialize + ?Sized>(&mut self, value: &T) -> PickleResult<()> {
        value.serialize(&mut *self.writer)
    }

    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> PickleResult<()> {
        key.serialize(&mut Writer {
            out: self.writer.out,
            as_key: true,
            pending: None,
        })
    }

    fn finish(self) -> PickleResult<()> {
        self.writer.out.extend_from_slice(self.close);
        Ok(())
    }
}

/// Integers narrower than 128 bits, written as the `i128` they widen to.
macro_rules! small_ints {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> PickleResult<()> {
            self.serialize_i128(v.into())
        }
    )*};
}

impl<'w, 'a> ser::Serializer for &'w mut Writer<'a> {
    type Ok = ();
    type Error = PickleError;
    type SerializeSeq = Compound<'w, 'a>;
    type SerializeTuple = Compound<'w, 'a>;
    type SerializeTupleStruct = Compound<'w, 'a>;
    type SerializeTupleVariant = Compound<'w, 'a>;
    type SerializeMap = Compound<'w, 'a>;
    type SerializeStruct = Compound<'w, 'a>;
    type SerializeStructVariant = Compound<'w, 'a>;

    fn serialize_bool(self, v: bool) -> PickleResult<()> {
        self.out.push(if v { op::NEWTRUE } else { op::NEWFALSE });
        Ok(())
    }

    small_ints!(
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64
    );

    fn serialize_i128(self, v: i128) -> PickleResult<()> {
        self.int(v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> PickleResult<()> {
        match i128::try_from(v) {
            Ok(v) => self.int(v),
            Err(_) => {
                // A zero byte on top keeps the sign bit clear.
                let mut bytes = [0u8; 17];
                bytes[..16].copy_from_slice(&v.to_le_bytes());
                self.long(&bytes)?;
            }
        }
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> PickleResult<()> {
        self.serialize_f64(v.into())
    }

    fn serialize_f64(self, v: f64) -> PickleResult<()> {
        self.out.push(op::BINFLOAT);
        self.out.extend_from_slice(&v.to_be_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> PickleResult<()> {
        self.text(v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> PickleResult<()> {
        self.text(v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> PickleResult<()> {
        match self.pending.take() {
            None => self.sized([op::SHORT_BINBYTES, op::BINBYTES, op::BINBYTES8], v),
            Some(Exact::ByteArray) => self.bytearray(v),
            Some(Exact::Long) => self.long(v)?,
            Some(other) => return Err(mismatch(other, "bytes")),
        }
        Ok(())
    }

    fn serialize_none(self) -> PickleResult<()> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> PickleResult<()> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> PickleResult<()> {
        self.out.push(op::NONE);
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> PickleResult<()> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> PickleResult<()> {
        self.text(variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> PickleResult<()> {
        let exact = match name {
            marker::BYTEARRAY => Exact::ByteArray,
            marker::SET => Exact::Set,
            marker::FROZENSET => Exact::FrozenSet,
            marker::BIGINT => Exact::Long,
            _ => return value.serialize(self),
        };
        self.pending = Some(exact);
        value.serialize(&mut *self)?;
        match self.pending.take() {
            None => Ok(()),
            Some(exact) => Err(mismatch(exact, "another value")),
        }
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> PickleResult<()> {
        self.open_variant(variant)?;
        value.serialize(&mut *self)?;
        self.out.push(op::SETITEMS);
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> PickleResult<Compound<'w, 'a>> {
        match self.pending.take() {
            None => Ok(self.open_seq(None)),
            Some(Exact::Set) => {
                self.out.extend_from_slice(&[op::EMPTY_SET, op::MARK]);
                Ok(Compound::new(self, &[op::ADDITEMS]))
            }
            Some(Exact::FrozenSet) => {
                self.out.push(op::MARK);
                Ok(Compound::new(self, &[op::FROZENSET]))
            }
            Some(other) => Err(mismatch(other, "a sequence")),
        }
    }

    fn serialize_tuple(self, len: usize) -> PickleResult<Compound<'w, 'a>> {
        Ok(self.open_seq(Some(len)))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> PickleResult<Compound<'w, 'a>> {
        Ok(self.open_seq(Some(len)))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> PickleResult<Compound<'w, 'a>> {
        self.open_variant(variant)?;
        self.out.push(op::MARK);
        Ok(Compound::new(self, &[op::TUPLE, op::SETITEMS]))
    }

    fn serialize_map(self, _len: Option<usize>) -> PickleResult<Compound<'w, 'a>> {
        self.open_dict()?;
        Ok(Compound::new(self, &[op::SETITEMS]))
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> PickleResult<Compound<'w, 'a>> {
        self.serialize_map(None)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> PickleResult<Compound<'w, 'a>> {
        self.open_variant(variant)?;
        self.out.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
        Ok(Compound::new(self, &[op::SETITEMS, op::SETITEMS]))
    }
}

/// A private newtype name around content that does not match it: only a
/// user naming our markers can get here.
fn mismatch(exact: Exact, found: &str) -> PickleError {
    PickleError(format!("a private {exact:?} marker around {found}"))
}

/// The sequence-like compounds: each item is a value, and the end closes.
macro_rules! items {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = PickleError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> PickleResult<()> {
                self.item(value)
            }

            fn end(self) -> PickleResult<()> {
                self.finish()
            }
        }
    )*};
}

items!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// The struct-like compounds: each field is its name as a str key, then
/// the value.
macro_rules! fields {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = PickleError;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> PickleResult<()> {
                self.writer.text(key);
                self.item(value)
            }

            fn end(self) -> PickleResult<()> {
                self.finish()
            }
        }
    )*};
}

fields!(SerializeStruct, SerializeStructVariant);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = PickleError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> PickleResult<()> {
        self.key(key)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> PickleResult<()> {
        self.item(value)
    }

    fn end(self) -> PickleResult<()> {
        self.finish()
    }
}
