//! Python's pickles of plain data, for talking to CPython's
//! `multiprocessing` peers with their own `send(obj)` / `recv()`.
//!
//! [`Connection::send_pickle`](crate::Connection::send_pickle) and
//! [`Connection::recv_pickle`](crate::Connection::recv_pickle) carry serde
//! values as pickles; [`encode`] and [`decode`] do the same on byte slices.
//!
//! ```
//! use std::collections::HashMap;
//!
//! // What Python's `conn.send({"job": 7, "args": [1.5, "x"]})` writes (protocol 4):
//! let from_python = b"\x80\x04\x95%\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x03job\x94K\x07\x8c\x04args\x94]\x94(G?\xf8\x00\x00\x00\x00\x00\x00\x8c\x01x\x94eu.";
//! #[derive(serde::Deserialize, Debug, PartialEq)]
//! struct Job { job: u32, args: (f64, String) }
//! let job: Job = connection::pickle::decode(from_python)?;
//! assert_eq!(job, Job { job: 7, args: (1.5, "x".into()) });
//!
//! let reply = HashMap::from([("done", 7)]);
//! let bytes = connection::pickle::encode(&reply)?; // Python's recv() gives {'done': 7}
//! assert_eq!(connection::pickle::decode::<HashMap<String, i32>>(&bytes)?["done"], 7);
//! # Ok::<(), connection::Error>(())
//! ```
//!
//! # Type mapping
//!
//! | Python | Rust (reading) | Rust (writing) gives |
//! | --- | --- | --- |
//! | `None` | `()`, `Option::None`, a unit struct | `None` |
//! | `bool` | `bool` | `bool` |
//! | `int` | any integer type that holds it (else a `Decode` error naming the value), `f64`, [`BigInt`] (any size) | `int` |
//! | `float` | `f64`, `f32` | `float` |
//! | `str` | `String`, `char` (one character), a unit enum variant | `str` |
//! | `bytes`, `bytearray` | `Vec<u8>`, `[u8; N]`, `serde_bytes::ByteBuf` | `bytes` from `serialize_bytes` (`serde_bytes`); a plain `Vec<u8>` is a list of ints |
//! | `list`, `tuple`, `set`, `frozenset` | `Vec<T>`, `HashSet`, `BTreeSet`, Rust tuples and arrays (the length must match) | sequences and sets give `list`; Rust tuples and tuple structs give `tuple` |
//! | `dict` | `HashMap`, `BTreeMap`, a struct (string keys naming its fields; unknown keys are skipped) | `dict`; a struct gives a dict keyed by field names |
//!
//! [`Value`] reads and writes any of these without a Rust type per message,
//! keeping what the table above blurs: tuple against list, `bytes` against
//! `bytearray`, `set` against `frozenset`, and ints of any size
//! ([`BigInt`]), with dict keys of any hashable type. See [Any plain
//! value](#any-plain-value-value).
//!
//! Enums follow serde's externally tagged form, both ways: a unit variant
//! is its name as a `str` (`"Stop"`), any other variant a dict of one
//! entry, `{"Move": {"x": 1}}` or `{"Add": [1, 2]}`. Sequences inside a dict
//! key are written as tuples, since a Python list cannot be a key.
//!
//! Reading accepts what CPython's `ForkingPickler` writes with protocols 2
//! to 5 (frames, the memo, `SHORT_BINUNICODE`, `BYTEARRAY8`, `EMPTY_SET` and
//! `ADDITEMS`, `FROZENSET`, ...). Writing produces protocol 4 with only
//! plain-data opcodes (and `builtins.bytearray` for a [`Value`]'s
//! bytearray), which every CPython since 3.4 reads.
//!
//! # Any plain value: `Value`
//!
//! `decode::<Value>` (and `recv_pickle::<Value>()`) gives whatever plain
//! object the peer sent, and `encode(&value)` (`send_pickle(&value)`) a
//! pickle CPython loads back to an equal object of the same types:
//!
//! ```
//! use connection::pickle::{self, Value};
//!
//! // Python: conn.send({(1, 2): frozenset({"a"}), "raw": bytearray(b"\x00")})
//! let value = Value::from_iter([
//!     (Value::from((1, 2)), Value::FrozenSet([Value::from("a")].into())),
//!     (Value::from("raw"), Value::ByteArray(vec![0])),
//! ]);
//! let bytes = pickle::encode(&value)?;
//! let back: Value = pickle::decode(&bytes)?;
//! assert_eq!(format!("{back:?}"), "{(1, 2): frozenset({'a'}), 'raw': bytearray(b'\\x00')}");
//! assert_eq!(back[(1, 2)], value[(1, 2)]);
//! # Ok::<(), connection::Error>(())
//! ```
//!
//! Serde's data model has one sequence and one byte string, so `Value`
//! cannot learn the exact types through it alone (an untagged enum reads
//! `(3, 4)` and `b"\x03\x04"` alike). Instead `Value` asks this codec for
//! them under private newtype names, as serde_json's `RawValue` does: the
//! reader answers with the Python type of each tuple, bytearray, set,
//! frozenset and wide int, and the writer writes each as its type. So a
//! `Value` goes through the same bounded walk as any type, also nested
//! inside other serde types (`Vec<Value>`, a struct field), and other
//! serde formats see plain data (what they lose is on [`Value`]).
//!
//! Writing a `Value`'s bytearray uses `builtins.bytearray` with `REDUCE`,
//! as CPython's protocol 4 does; it is the one global this module writes.
//!
//! # What is refused, and the bounds
//!
//! Decoding never runs or constructs anything. A pickle that names a class
//! or a function (`GLOBAL`, `STACK_GLOBAL`, then `REDUCE`, `BUILD`, `INST`,
//! `OBJ`, `NEWOBJ`, `NEWOBJ_EX`, `EXT1`/`2`/`4`, `PERSID`) is a
//! [`Decode`](crate::ErrorKind::Decode) error naming the opcode and, where
//! the pickle gives one, the class. The exceptions are the five globals
//! CPython itself uses for the types above in protocols 2 to 4 —
//! `builtins.set`, `builtins.frozenset`, `builtins.bytearray`,
//! `builtins.bytes` (also spelt `__builtin__.*`) and `_codecs.encode` with
//! `latin1` — which are applied as data constructors, not called.
//! Protocol 0 and 1 text opcodes and out-of-band buffers are refused too.
//!
//! A hostile pickle gets a `Decode` error, never a panic, a hang or a large
//! allocation:
//!
//! - A claimed length (`BINUNICODE8`, `BINBYTES8`, `LONG4`, `FRAME`, ...) is
//!   checked against the bytes actually present before anything is set
//!   aside.
//! - Parsing does not recurse. Each opcode makes at most one value (32
//!   bytes, plus a 4-byte stack slot or memo entry), so the parsed form
//!   grows with the message and never beyond it: at most about 80 bytes per
//!   byte of pickle while vectors double, for a pickle of one-byte opcodes.
//!   That is whatever the target type: with the default
//!   [`max_message_size`](crate::Connection::max_message_size) of 1 GiB a
//!   hostile peer could make one `recv_pickle` set aside tens of GiB, so
//!   lower the limit on a connection that takes pickles from peers you do
//!   not trust (64 MiB bounds a message's decoding at about 5 GiB).
//! - Turning it into the Rust value recurses at most [`MAX_DEPTH`] levels
//!   (each list, tuple, set, dict, struct, `Option` holding a value and
//!   newtype is one); a list that contains itself stops there too.
//! - A value the memo hands out again is copied again into the Rust value,
//!   so the copies are budgeted: 4 Mi plus 16 times the message's size, in
//!   values and bytes of text. CPython's own pickles stay far below it
//!   unless one object really is repeated that often.
//! - Read as a [`Value`], a `list`, `dict`, `set` or `bytearray` (or a
//!   tuple or frozenset holding one) as a dict key or set item is refused,
//!   as Python's `TypeError: unhashable type` would. The copies cost 32
//!   bytes per value of the budget (a `Value`'s size) plus their text: at
//!   most about 134 MB for a pickle of a few hundred bytes, measured in
//!   `tests/decode_bounds.rs`.
//! - A [`Decode`](crate::ErrorKind::Decode) error from
//!   [`recv_pickle`](crate::Connection::recv_pickle) has consumed the
//!   message; the next one is readable.
//!
//! As with [`recv`](crate::Connection::recv), only receive pickles from a
//! peer that authenticated: refusing classes keeps Rust safe, but Python's
//! own `recv()` runs whatever a pickle names, so a Python end must trust
//! its peer in any case.

mod builtins;
mod de;
mod error;
mod node;
mod opcodes;
mod parse;
mod ser;
#[cfg(test)]
mod tests;
mod value;

pub use value::{BigInt, Dict, Value};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, ErrorKind, Result};

/// How deeply lists, tuples, sets and dicts may nest in a pickle that is
/// read; deeper is a [`Decode`](crate::ErrorKind::Decode) error. (CPython's
/// pickler stops near 1000 levels; serde_json's default is 128 as well.)
pub const MAX_DEPTH: usize = 128;

/// The copy budget of a decode: see the module docs.
fn budget(payload_len: usize) -> u64 {
    (4 << 20) + 16 * payload_len as u64
}

/// Encodes `value` as a pickle (protocol 4) that Python's `pickle.loads`,
/// and so `Connection.recv()`, turns into plain Python values.
///
/// # Examples
///
/// ```
/// let bytes = connection::pickle::encode(&(1, "two", [3.0]))?;
/// assert_eq!(&bytes[..2], b"\x80\x04"); // PROTO 4
/// # Ok::<(), connection::Error>(())
/// ```
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

/// Appends the pickle of `value` to `out`; on error `out` is restored.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
    let start = out.len();
    ser::write(value, out).map_err(|err| {
        out.truncate(start);
        Error::new(
            ErrorKind::Encode,
            format!("cannot pickle {}", std::any::type_name::<T>()),
        )
        .with_source(err)
    })
}

/// Decodes one pickle of plain data (see the module docs for what is
/// accepted) as a `T`. Bytes after the pickle's `STOP` are an error.
///
/// # Examples
///
/// ```
/// use connection::ErrorKind;
///
/// // pickle.dumps({"a", "b"} - {"b"}, protocol=2): a set through builtins.set
/// let set = b"\x80\x02c__builtin__\nset\nq\x00]q\x01X\x01\x00\x00\x00aq\x02a\x85q\x03Rq\x04.";
/// assert_eq!(connection::pickle::decode::<Vec<String>>(set)?, ["a"]);
///
/// // pickle.dumps(os.system) names a function: refused, nothing is called.
/// let err = connection::pickle::decode::<()>(b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::Decode);
/// assert!(format!("{err:#}").contains("posix.system"), "{err:#}"); // {:#}: with the cause
/// # Ok::<(), connection::Error>(())
/// ```
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T> {
    decode_with_budget(payload, budget(payload.len()))
}

fn decode_with_budget<T: DeserializeOwned>(payload: &[u8], budget: u64) -> Result<T> {
    decode_arena(payload, budget).map_err(|err| {
        let hint = if payload.first() == Some(&0x80) {
            ""
        } else {
            " (it does not start with a pickle's protocol marker: sent with send()?)"
        };
        Error::new(
            ErrorKind::Decode,
            format!(
                "{}-byte pickle does not decode as {}{hint}",
                payload.len(),
                std::any::type_name::<T>()
            ),
        )
        .with_source(err)
    })
}

fn decode_arena<T: DeserializeOwned>(payload: &[u8], budget: u64) -> error::PickleResult<T> {
    let arena = parse::parse(payload)?;
    let walk = de::Walk::new(&arena, budget);
    T::deserialize(walk.root()?)
}

/// Whether `payload` starts the way CPython's pickles of protocol 2 and
/// later do, for the hint when [`recv`](crate::Connection::recv) is given
/// one. A bincode payload can start the same way, so this is only a hint.
pub(crate) fn looks_like_pickle(payload: &[u8]) -> bool {
    matches!(payload, [0x80, 2..=5, ..])
}
