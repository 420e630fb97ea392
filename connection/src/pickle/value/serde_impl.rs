//! How [`Value`] and [`BigInt`] cross serde without losing Python's types.
//!
//! Serde's data model has one sequence and one byte string, so a tuple, a
//! set and a frozenset, or `bytes` and a `bytearray`, would arrive alike,
//! and it has no integers past 128 bits. Rather than a second decoder
//! beside `de.rs`, the types that serde would blur travel under private
//! names, in the way serde_json's `RawValue` and toml's datetimes do:
//!
//! - Writing, a `bytearray`, `set`, `frozenset` or wide `int` is a newtype
//!   struct named by one of the [`marker`]s around plain bytes or a plain
//!   sequence. `ser.rs` writes each as its Python type; any other
//!   serializer sees a transparent newtype (JSON writes the array).
//! - Reading, `Value` asks for a newtype struct named [`marker::VALUE`].
//!   Other deserializers hand over their value as usual; `de.rs` answers
//!   with an enum whose variant names the exact type (`"tuple"`,
//!   `"bytearray"`, `"set"`, `"frozenset"`, `"int"`) for the nodes that
//!   need one, and the plain value otherwise.
//!
//! So `Value` is read from the parse tree by the same bounded walk as every
//! other type (depth, copy budget, one error path), and `decode::<Value>`
//! needs no special entry point.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{
    self, Deserialize, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde::ser::{self, Serialize, SerializeTuple, Serializer};
use serde_bytes::ByteBuf;

use super::{BigInt, Dict, Value};

/// The private names of the newtype structs that carry exact types.
pub(in crate::pickle) mod marker {
    /// Asked for by `Value`'s `Deserialize`.
    pub(in crate::pickle) const VALUE: &str = "$connection::pickle::Value";
    /// Around the bytes of a `bytearray`.
    pub(in crate::pickle) const BYTEARRAY: &str = "$connection::pickle::bytearray";
    /// Around the items of a `set`.
    pub(in crate::pickle) const SET: &str = "$connection::pickle::set";
    /// Around the items of a `frozenset`.
    pub(in crate::pickle) const FROZENSET: &str = "$connection::pickle::frozenset";
    /// Around the two's complement bytes of an int wider than 128 bits;
    /// also asked for by `BigInt`'s `Deserialize`.
    pub(in crate::pickle) const BIGINT: &str = "$connection::pickle::int";
}

/// The variants of the exact form `de.rs` answers [`marker::VALUE`] with.
pub(in crate::pickle) const EXACT_TAGS: &[&str] =
    &["tuple", "bytearray", "set", "frozenset", "int"];

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::None => serializer.serialize_unit(),
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(n) => serializer.serialize_i64(*n),
            Value::BigInt(n) => n.serialize(serializer),
            Value::Float(x) => serializer.serialize_f64(*x),
            Value::Str(text) => serializer.serialize_str(text),
            Value::Bytes(bytes) => serializer.serialize_bytes(bytes),
            Value::ByteArray(bytes) => serializer
                .serialize_newtype_struct(marker::BYTEARRAY, serde_bytes::Bytes::new(bytes)),
            Value::List(items) => serializer.collect_seq(items),
            Value::Tuple(items) => {
                let mut tuple = serializer.serialize_tuple(items.len())?;
                for item in items {
                    tuple.serialize_element(item)?;
                }
                tuple.end()
            }
            Value::Set(items) => {
                hashable::<S::Error>(items, "a set item")?;
                serializer.serialize_newtype_struct(marker::SET, &Items(items))
            }
            Value::FrozenSet(items) => {
                hashable::<S::Error>(items, "a frozenset item")?;
                serializer.serialize_newtype_struct(marker::FROZENSET, &Items(items))
            }
            Value::Dict(dict) => {
                hashable::<S::Error>(dict.keys(), "a dict key")?;
                serializer.collect_map(dict.iter())
            }
        }
    }
}

/// The items of a set, as a plain sequence.
struct Items<'a>(&'a BTreeSet<Value>);

impl Serialize for Items<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0)
    }
}

/// Python's refusal of an unhashable dict key or set item, in its words.
fn unhashable(value: &Value, role: &str) -> String {
    let part = value.unhashable_part().unwrap_or(value);
    format!(
        "unhashable type: '{}' cannot be {role} in Python",
        part.type_name()
    )
}

fn hashable<'a, E: ser::Error>(
    values: impl IntoIterator<Item = &'a Value>,
    role: &str,
) -> Result<(), E> {
    match values.into_iter().find(|value| !value.is_hashable()) {
        Some(value) => Err(E::custom(unhashable(value, role))),
        None => Ok(()),
    }
}

/// An int up to 128 bits is a plain serde integer; a wider one its two's
/// complement bytes under `marker::BIGINT` (a `LONG` opcode in a pickle,
/// an array of ints in JSON).
impl Serialize for BigInt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Ok(n) = i64::try_from(self) {
            serializer.serialize_i64(n)
        } else if let Ok(n) = i128::try_from(self) {
            serializer.serialize_i128(n)
        } else if let Ok(n) = u128::try_from(self) {
            serializer.serialize_u128(n)
        } else {
            let bytes = serde_bytes::Bytes::new(self.to_signed_bytes_le());
            serializer.serialize_newtype_struct(marker::BIGINT, bytes)
        }
    }
}

impl<'de> Deserialize<'de> for BigInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BigInt, D::Error> {
        deserializer.deserialize_newtype_struct(marker::BIGINT, BigIntVisitor)
    }
}

struct BigIntVisitor;

impl<'de> Visitor<'de> for BigIntVisitor {
    type Value = BigInt;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an int")
    }

    fn visit_i64<E>(self, n: i64) -> Result<BigInt, E> {
        Ok(n.into())
    }

    fn visit_u64<E>(self, n: u64) -> Result<BigInt, E> {
        Ok(n.into())
    }

    fn visit_i128<E>(self, n: i128) -> Result<BigInt, E> {
        Ok(n.into())
    }

    fn visit_u128<E>(self, n: u128) -> Result<BigInt, E> {
        Ok(n.into())
    }

    /// Two's complement bytes: what a wide int is written as.
    fn visit_bytes<E>(self, bytes: &[u8]) -> Result<BigInt, E> {
        Ok(BigInt::from_signed_bytes_le(bytes))
    }

    /// The same bytes from a format without byte strings (JSON's array).
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BigInt, A::Error> {
        let mut bytes = Vec::new();
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(BigInt::from_signed_bytes_le(&bytes))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<BigInt, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_newtype_struct(marker::VALUE, ValueVisitor)
    }
}

struct ValueVisitor;

/// How many items to set aside before they arrive: a peer's claimed
/// length is not trusted beyond this.
const CAUTIOUS_CAPACITY: usize = 4096;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a plain Python value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::None)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Int(n))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(n.into())
    }

    fn visit_i128<E>(self, n: i128) -> Result<Value, E> {
        Ok(n.into())
    }

    fn visit_u128<E>(self, n: u128) -> Result<Value, E> {
        Ok(n.into())
    }

    fn visit_f64<E>(self, x: f64) -> Result<Value, E> {
        Ok(Value::Float(x))
    }

    fn visit_str<E>(self, text: &str) -> Result<Value, E> {
        Ok(Value::Str(text.into()))
    }

    fn visit_string<E>(self, text: String) -> Result<Value, E> {
        Ok(Value::Str(text))
    }

    fn visit_bytes<E>(self, bytes: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(bytes.into()))
    }

    fn visit_byte_buf<E>(self, bytes: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(bytes))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        Ok(Value::List(items(seq)?))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let capacity = map.size_hint().unwrap_or(0).min(CAUTIOUS_CAPACITY);
        let mut pairs = Vec::with_capacity(capacity);
        while let Some(key) = map.next_key::<Value>()? {
            if !key.is_hashable() {
                return Err(de::Error::custom(unhashable(&key, "a dict key")));
            }
            pairs.push((key, map.next_value::<Value>()?));
        }
        Ok(Value::Dict(Dict::from_pairs(pairs)))
    }

    /// The exact form of the types serde would blur (see the module docs).
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        let (tag, content): (String, _) = data.variant()?;
        match tag.as_str() {
            "tuple" => Ok(Value::Tuple(content.newtype_variant::<Vec<Value>>()?)),
            "bytearray" => Ok(Value::ByteArray(
                content.newtype_variant::<ByteBuf>()?.into_vec(),
            )),
            "set" | "frozenset" => {
                let items = content.newtype_variant::<Vec<Value>>()?;
                let role = if tag == "set" {
                    "a set item"
                } else {
                    "a frozenset item"
                };
                if let Some(item) = items.iter().find(|item| !item.is_hashable()) {
                    return Err(de::Error::custom(unhashable(item, role)));
                }
                let items = items.into_iter().collect();
                Ok(if tag == "set" {
                    Value::Set(items)
                } else {
                    Value::FrozenSet(items)
                })
            }
            "int" => {
                let bytes = content.newtype_variant::<ByteBuf>()?;
                Ok(BigInt::from_signed_bytes_le(&bytes).into())
            }
            other => Err(de::Error::unknown_variant(other, EXACT_TAGS)),
        }
    }
}

fn items<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Vec<Value>, A::Error> {
    let capacity = seq.size_hint().unwrap_or(0).min(CAUTIOUS_CAPACITY);
    let mut items = Vec::with_capacity(capacity);
    while let Some(item) = seq.next_element::<Value>()? {
        items.push(item);
    }
    Ok(items)
}
