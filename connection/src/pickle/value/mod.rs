//! [`Value`]: any plain Python object, for messages without a Rust type.
//!
//! The type and its accessors are here; `cmp.rs` has equality, order and
//! hashing, `repr.rs` the Python-like `Debug`, `serde_impl.rs` how it crosses
//! serde (and the private markers `de.rs`/`ser.rs` recognise to keep
//! tuples, bytearrays, sets, frozensets and big ints exact).

mod bigint;
mod cmp;
mod dict;
mod repr;
pub(super) mod serde_impl;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub(super) use bigint::shortest_len;
pub use bigint::BigInt;
pub use dict::Dict;

/// Any plain Python object: what CPython's `pickle.loads` builds from the
/// pickles this crate accepts, with Python's types kept apart (a tuple is
/// not a list, `bytes` not `bytearray`, a `set` not a `frozenset`, and an
/// int of any size is exact).
///
/// Read one with [`recv_pickle::<Value>()`](crate::Connection::recv_pickle)
/// or [`decode::<Value>`](super::decode); write one with
/// [`send_pickle(&value)`](crate::Connection::send_pickle) or
/// [`encode`](super::encode), and CPython's `recv()` builds an equal object
/// of the same types. Reading refuses what Python would: a `list`, `dict`,
/// `set` or `bytearray` (or a tuple holding one) as a dict key or a set
/// item is a [`Decode`](crate::ErrorKind::Decode) error, and writing such a
/// `Value` an [`Encode`](crate::ErrorKind::Encode) error. A dict that lists
/// a key twice keeps the last value, as in Python.
///
/// `Debug` prints Python's `repr`: `{'a': (1, b'x'), 'b': frozenset({2})}`.
///
/// # Examples
///
/// ```
/// use connection::pickle::{self, Value};
///
/// // What Python's send({"job": 7, "args": (1.5, b"x"), "seen": {3}}) writes:
/// let from_python = b"\x80\x04\x950\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x03job\x94K\x07\x8c\x04args\x94G?\xf8\x00\x00\x00\x00\x00\x00C\x01x\x94\x86\x94\x8c\x04seen\x94\x8f\x94(K\x03\x90u.";
/// let value: Value = pickle::decode(from_python)?;
/// assert_eq!(format!("{value:?}"), "{'job': 7, 'args': (1.5, b'x'), 'seen': {3}}");
/// assert_eq!(value["job"].as_int(), Some(7));
/// assert_eq!(value["args"][1].as_bytes(), Some(&b"x"[..]));
/// assert!(value["args"].as_tuple().is_some()); // a tuple, not a list
///
/// // And back: Python's recv() gives a dict keyed by a tuple.
/// let reply = Value::from_iter([(Value::from((1, "a")), Value::from(2u128.pow(100)))]);
/// assert_eq!(format!("{reply:?}"), "{(1, 'a'): 1267650600228229401496703205376}");
/// assert_eq!(pickle::decode::<Value>(&pickle::encode(&reply)?)?, reply);
/// # Ok::<(), connection::Error>(())
/// ```
///
/// # Equality, hashing and order
///
/// `Value` is `Eq`, `Hash` and `Ord` (so it can be a key of Rust maps and
/// of [`Dict`]), with these choices where Python differs:
///
/// - Types are not mixed: `Int(1)`, `Float(1.0)` and `Bool(true)` are
///   different values (in Python `1 == 1.0 == True`, and they are one dict
///   key). A dict keyed by both `1` and `True` becomes one entry when
///   Python loads it. `Int` and `BigInt` holding the same number are equal.
/// - Floats compare as in Python (`0.0 == -0.0`, and they hash alike),
///   except that NaN equals NaN, so that equality is an equivalence: all
///   NaN dict keys are one key here (in Python each NaN object is its own
///   key). The sign of zero and NaN's bits are kept in the value.
/// - Lists, dicts, sets and bytearrays, unhashable in Python, still hash
///   and compare here (structurally); only as Python dict keys or set
///   items are they refused, when reading or writing a pickle.
/// - Sets and dicts compare without regard to order, as in Python.
/// - The order (`Ord`) sorts by type, then by value (numbers numerically,
///   floats with NaN last): an arbitrary total order for
///   `BTreeSet<Value>`, not one Python has.
///
/// # In other serde formats
///
/// `Value` is `Serialize` and `Deserialize` for any self-describing
/// format, as far as it can express Python's types. In JSON: `None` is
/// `null`; tuples, lists, sets and frozensets are arrays (read back as
/// lists); `bytes` and `bytearray` are arrays of ints (read back as
/// lists); ints up to 128 bits are numbers, and wider ones their
/// [`to_signed_bytes_le`](BigInt::to_signed_bytes_le) as an array of
/// ints; a dict needs str keys (serde_json refuses others). Only pickles
/// (through this crate's [`encode`](super::encode) and
/// [`decode`](super::decode)) keep every type. Formats that are not
/// self-describing cannot read a `Value` back, among them the one of
/// [`send`](crate::Connection::send)/[`recv`](crate::Connection::recv):
/// between Rust peers too, send a `Value` with
/// [`send_pickle`](crate::Connection::send_pickle).
#[derive(Clone)]
pub enum Value {
    /// `None`.
    None,
    /// `bool`.
    Bool(bool),
    /// An `int` that fits an `i64`. (Values this crate builds use it for
    /// every such int; a [`BigInt`] of the same number is equal to it.)
    Int(i64),
    /// An `int` outside `i64`, exactly.
    BigInt(BigInt),
    /// `float`.
    Float(f64),
    /// `str`.
    Str(String),
    /// `bytes`.
    Bytes(Vec<u8>),
    /// `bytearray`.
    ByteArray(Vec<u8>),
    /// `list`.
    List(Vec<Value>),
    /// `tuple`.
    Tuple(Vec<Value>),
    /// `set` (Python's sets have no order; this one is sorted).
    Set(BTreeSet<Value>),
    /// `frozenset`.
    FrozenSet(BTreeSet<Value>),
    /// `dict`, in insertion order.
    Dict(Dict),
}

impl Value {
    /// The name of the Python type: `"int"`, `"tuple"`, `"frozenset"`, ...
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::None => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::ByteArray(_) => "bytearray",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Set(_) => "set",
            Value::FrozenSet(_) => "frozenset",
            Value::Dict(_) => "dict",
        }
    }

    /// Whether Python can hash it, so that it may be a dict key or a set
    /// item: not a `list`, `dict`, `set` or `bytearray`, nor a tuple or
    /// frozenset holding one.
    ///
    /// ```
    /// use connection::pickle::Value;
    ///
    /// assert!(Value::from((1, "a")).is_hashable());
    /// assert!(!Value::from((1, vec![2])).is_hashable()); // (1, [2])
    /// ```
    pub fn is_hashable(&self) -> bool {
        match self {
            Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::ByteArray(_) => false,
            Value::Tuple(items) => items.iter().all(Value::is_hashable),
            Value::FrozenSet(items) => items.iter().all(Value::is_hashable),
            _ => true,
        }
    }

    /// The first unhashable value in `self` (itself or inside a tuple).
    pub(super) fn unhashable_part(&self) -> Option<&Value> {
        match self {
            Value::Tuple(items) => items.iter().find_map(Value::unhashable_part),
            Value::FrozenSet(items) => items.iter().find_map(Value::unhashable_part),
            other if !other.is_hashable() => Some(other),
            _ => None,
        }
    }

    /// Whether it is `None`.
    pub fn is_none(&self) -> bool {
        matches!(self, Value::None)
    }

    /// A `bool`'s value (an `int` is not a `bool` here).
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// An `int` that fits an `i64`.
    ///
    /// ```
    /// use connection::pickle::Value;
    ///
    /// assert_eq!(Value::from(-5).as_int(), Some(-5));
    /// assert_eq!(Value::from(u64::MAX).as_int(), None); // a BigInt
    /// assert_eq!(Value::from(true).as_int(), None);
    /// ```
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            Value::BigInt(n) => i64::try_from(n).ok(),
            _ => None,
        }
    }

    /// Any `int`, exactly.
    pub fn to_bigint(&self) -> Option<BigInt> {
        match self {
            Value::Int(n) => Some(BigInt::from(*n)),
            Value::BigInt(n) => Some(n.clone()),
            _ => None,
        }
    }

    /// A `float`'s value (an `int` is not converted).
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(x) => Some(*x),
            _ => None,
        }
    }

    /// A `str`'s text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(text) => Some(text),
            _ => None,
        }
    }

    /// The data of `bytes` or a `bytearray`.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(bytes) | Value::ByteArray(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// A `list`'s items.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }

    /// A `tuple`'s items.
    pub fn as_tuple(&self) -> Option<&[Value]> {
        match self {
            Value::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// The items of a `list` or a `tuple`.
    pub fn as_seq(&self) -> Option<&[Value]> {
        match self {
            Value::List(items) | Value::Tuple(items) => Some(items),
            _ => None,
        }
    }

    /// The items of a `set` or a `frozenset`.
    pub fn as_set(&self) -> Option<&BTreeSet<Value>> {
        match self {
            Value::Set(items) | Value::FrozenSet(items) => Some(items),
            _ => None,
        }
    }

    /// A `dict`.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(dict) => Some(dict),
            _ => None,
        }
    }

    /// `self[key]` as Python reads it, or `None` where Python raises: a
    /// dict's value for `key`, or a list's or tuple's item at the int
    /// `key` (negative counts from the end).
    ///
    /// ```
    /// use connection::pickle::Value;
    ///
    /// let list = Value::from(vec!["a", "b"]);
    /// assert_eq!(list.get(-1).and_then(Value::as_str), Some("b"));
    /// assert!(list.get(2).is_none());
    /// let dict = Value::from_iter([((1, 2), "pair")]);
    /// assert_eq!(dict.get((1, 2)).and_then(Value::as_str), Some("pair"));
    /// ```
    pub fn get(&self, key: impl Into<Value>) -> Option<&Value> {
        let key = key.into();
        match self {
            Value::Dict(dict) => dict.get(&key),
            Value::List(items) | Value::Tuple(items) => {
                let index = key.as_int()?;
                let index = if index < 0 {
                    items
                        .len()
                        .checked_sub(usize::try_from(index.unsigned_abs()).ok()?)?
                } else {
                    usize::try_from(index).ok()?
                };
                items.get(index)
            }
            _ => None,
        }
    }
}

/// `value[key]`: [`Value::get`], panicking where Python raises
/// `KeyError`, `IndexError` or `TypeError`.
impl<K: Into<Value>> std::ops::Index<K> for Value {
    type Output = Value;

    fn index(&self, key: K) -> &Value {
        let key = key.into();
        match self.get(key.clone()) {
            Some(value) => value,
            None => panic!(
                "{:?} has no item {key:?} ({} index)",
                Shortened(self),
                self.type_name()
            ),
        }
    }
}

/// A value's repr cut short, for panic messages.
struct Shortened<'a>(&'a Value);

impl std::fmt::Debug for Shortened<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = format!("{:?}", self.0);
        match shown.char_indices().nth(80) {
            Some((at, _)) => write!(f, "{}...", &shown[..at]),
            None => f.write_str(&shown),
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

impl From<BigInt> for Value {
    /// `Value::Int` if it fits an `i64`, else `Value::BigInt`.
    fn from(n: BigInt) -> Value {
        match i64::try_from(&n) {
            Ok(small) => Value::Int(small),
            Err(_) => Value::BigInt(n),
        }
    }
}

macro_rules! from_int {
    ($($ty:ty),*) => {$(
        impl From<$ty> for Value {
            fn from(n: $ty) -> Value {
                match i64::try_from(n) {
                    Ok(small) => Value::Int(small),
                    Err(_) => Value::BigInt(BigInt::from(n)),
                }
            }
        }
    )*};
}

from_int!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

impl From<f64> for Value {
    fn from(x: f64) -> Value {
        Value::Float(x)
    }
}

impl From<f32> for Value {
    fn from(x: f32) -> Value {
        Value::Float(x.into())
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Str(text.into())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::Str(text)
    }
}

impl From<char> for Value {
    fn from(c: char) -> Value {
        Value::Str(c.into())
    }
}

/// `bytes` (a plain `Vec<u8>` is a list of ints, as with serde).
impl From<serde_bytes::ByteBuf> for Value {
    fn from(bytes: serde_bytes::ByteBuf) -> Value {
        Value::Bytes(bytes.into_vec())
    }
}

/// `bytes`.
impl From<&serde_bytes::Bytes> for Value {
    fn from(bytes: &serde_bytes::Bytes) -> Value {
        Value::Bytes(bytes.to_vec())
    }
}

/// `None`.
impl From<()> for Value {
    fn from((): ()) -> Value {
        Value::None
    }
}

/// `None`, or the value.
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(option: Option<T>) -> Value {
        option.map_or(Value::None, Into::into)
    }
}

/// A `list`.
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(items: Vec<T>) -> Value {
        Value::List(items.into_iter().map(Into::into).collect())
    }
}

/// A `list`.
impl<T: Into<Value> + Clone> From<&[T]> for Value {
    fn from(items: &[T]) -> Value {
        Value::List(items.iter().cloned().map(Into::into).collect())
    }
}

/// A `set`.
impl<T: Into<Value>> From<BTreeSet<T>> for Value {
    fn from(items: BTreeSet<T>) -> Value {
        Value::Set(items.into_iter().map(Into::into).collect())
    }
}

/// A `set`.
impl<T: Into<Value>, S> From<HashSet<T, S>> for Value {
    fn from(items: HashSet<T, S>) -> Value {
        Value::Set(items.into_iter().map(Into::into).collect())
    }
}

/// A `dict`.
impl<K: Into<Value>, V: Into<Value>> From<BTreeMap<K, V>> for Value {
    fn from(map: BTreeMap<K, V>) -> Value {
        Value::Dict(map.into_iter().collect())
    }
}

/// A `dict`.
impl<K: Into<Value>, V: Into<Value>, S> From<HashMap<K, V, S>> for Value {
    fn from(map: HashMap<K, V, S>) -> Value {
        Value::Dict(map.into_iter().collect())
    }
}

impl From<Dict> for Value {
    fn from(dict: Dict) -> Value {
        Value::Dict(dict)
    }
}

/// A `dict` of the pairs (a repeated key keeps the last value).
impl<K: Into<Value>, V: Into<Value>> FromIterator<(K, V)> for Value {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Value {
        Value::Dict(iter.into_iter().collect())
    }
}

/// Rust tuples are Python tuples.
macro_rules! from_tuple {
    ($(($($name:ident),+)),*) => {$(
        impl<$($name: Into<Value>),+> From<($($name,)+)> for Value {
            #[allow(non_snake_case)]
            fn from(($($name,)+): ($($name,)+)) -> Value {
                Value::Tuple(vec![$($name.into()),+])
            }
        }
    )*};
}

from_tuple!(
    (A),
    (A, B),
    (A, B, C),
    (A, B, C, D),
    (A, B, C, D, E),
    (A, B, C, D, E, F)
);
