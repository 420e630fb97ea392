//! The only globals a pickle may name: the ones CPython's pickler uses to
//! write `bytes` (protocol 2), `bytearray` (protocols 2 to 4), `set` and
//! `frozenset` (protocols 2 and 3). Each is applied here as a data
//! constructor, never looked up or called; every other global is refused
//! with its name.

use super::error::{PickleError, PickleResult};
use super::node::{describe, Builtin, Node};

/// The builtin `module.name` stands for, or the refusal naming it.
/// Protocol 2 writes Python 2's module name `__builtin__`.
pub(super) fn lookup(opcode: &str, module: &str, name: &str) -> PickleResult<Builtin> {
    let builtin = match (module, name) {
        ("builtins" | "__builtin__", "set") => Builtin::Set,
        ("builtins" | "__builtin__", "frozenset") => Builtin::FrozenSet,
        ("builtins" | "__builtin__", "bytearray") => Builtin::Bytearray,
        ("builtins" | "__builtin__", "bytes") => Builtin::Bytes,
        ("_codecs", "encode") => Builtin::CodecsEncode,
        _ => {
            // The names come from the peer: keep them short in the message.
            let shown: String = format!("{module}.{name}").chars().take(200).collect();
            return Err(PickleError(format!(
                "refused {opcode} {shown}: the pickle names a class or function, \
                 and only plain data is decoded (None, bool, int, float, str, bytes, \
                 bytearray, list, tuple, dict, set, frozenset)"
            )));
        }
    };
    Ok(builtin)
}

/// What a `REDUCE` of a builtin gives.
pub(super) enum Built {
    /// One of the arguments, unchanged (`bytes(b)` is `b`).
    Argument(usize),
    /// A new value.
    Node(Node),
}

/// Applies `builtin` to `args` as CPython's pickles use it.
pub(super) fn call(builtin: Builtin, args: &[&Node]) -> PickleResult<Built> {
    let built = match (builtin, args) {
        (Builtin::Set, []) => Built::Node(Node::Set(Vec::new())),
        (Builtin::FrozenSet, []) => Built::Node(Node::FrozenSet(Vec::new())),
        (
            Builtin::Set | Builtin::FrozenSet,
            [Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items)],
        ) => Built::Node(match builtin {
            Builtin::Set => Node::Set(items.clone()),
            _ => Node::FrozenSet(items.clone()),
        }),
        (Builtin::Bytes, []) => Built::Node(Node::Bytes(Vec::new())),
        (Builtin::Bytearray, []) => Built::Node(Node::ByteArray(Vec::new())),
        (Builtin::Bytes, [Node::Bytes(_)]) => Built::Argument(0),
        (Builtin::Bytearray, [Node::Bytes(bytes)]) => Built::Node(Node::ByteArray(bytes.clone())),
        (
            Builtin::Bytearray | Builtin::Bytes | Builtin::CodecsEncode,
            [Node::Str(text), Node::Str(encoding)],
        ) => {
            let bytes = latin1(text, encoding)?;
            Built::Node(match builtin {
                Builtin::Bytearray => Node::ByteArray(bytes),
                _ => Node::Bytes(bytes),
            })
        }
        _ => {
            let kinds: Vec<&str> = args.iter().map(|node| describe(node)).collect();
            return Err(PickleError(format!(
                "REDUCE of {} with arguments ({}) is not one CPython writes for plain data",
                builtin.python_name(),
                kinds.join(", ")
            )));
        }
    };
    Ok(built)
}

/// `text.encode("latin1")`: how protocol 2 carries bytes inside a str.
fn latin1(text: &str, encoding: &str) -> PickleResult<Vec<u8>> {
    if !matches!(encoding, "latin1" | "latin-1") {
        let shown: String = encoding.chars().take(40).collect();
        return Err(PickleError(format!(
            "bytes encoded as {shown:?}: only latin1 is decoded"
        )));
    }
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c))
                .map_err(|_| PickleError(format!("{c:?} is not a latin1 character")))
        })
        .collect()
}
