//! What a pickle decodes to before serde sees it: a flat arena of
//! plain-data [`Node`]s, which the opcode machine (`parse.rs`) builds, the
//! whitelisted globals (`builtins.rs`) make, and the deserializer (`de.rs`)
//! reads.

/// Where a node lives in the arena.
pub(super) type Id = u32;

/// One Python value. Containers hold the ids of their items, so a value
/// the memo hands out twice is stored once (and can even contain itself,
/// which the deserializer's depth limit turns into an error).
#[derive(Debug)]
pub(super) enum Node {
    None,
    Bool(bool),
    Int(i128),
    /// An integer above `i128::MAX` that fits a `u128`.
    U128(u128),
    /// An integer wider than 128 bits, as the pickle gave it: little-endian
    /// two's complement (only `Value` reads it whole).
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// A `bytearray`: what serde sees is `bytes`, only `Value` tells them apart.
    ByteArray(Vec<u8>),
    List(Vec<Id>),
    Tuple(Vec<Id>),
    Dict(Vec<(Id, Id)>),
    /// A `set`, in the order the pickle lists its items.
    Set(Vec<Id>),
    /// A `frozenset`: serde sees a set, only `Value` tells them apart.
    FrozenSet(Vec<Id>),
    /// One of the whitelisted globals, waiting for its `REDUCE`.
    Builtin(Builtin),
}

/// A decoded pickle: every node, and which one is the value.
#[derive(Debug)]
pub(super) struct Arena {
    pub(super) nodes: Vec<Node>,
    pub(super) root: Id,
}

impl Arena {
    pub(super) fn node(&self, id: Id) -> &Node {
        &self.nodes[id as usize]
    }
}

/// A whitelisted global.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Builtin {
    Set,
    FrozenSet,
    Bytearray,
    Bytes,
    /// `_codecs.encode(text, "latin1")`: protocol 2's form of `bytes`.
    CodecsEncode,
}

impl Builtin {
    pub(super) fn python_name(self) -> &'static str {
        match self {
            Builtin::Set => "builtins.set",
            Builtin::FrozenSet => "builtins.frozenset",
            Builtin::Bytearray => "builtins.bytearray",
            Builtin::Bytes => "builtins.bytes",
            Builtin::CodecsEncode => "_codecs.encode",
        }
    }
}

/// A node's Python type, for error messages.
pub(super) fn describe(node: &Node) -> &'static str {
    match node {
        Node::None => "None",
        Node::Bool(_) => "a bool",
        Node::Int(_) | Node::U128(_) | Node::BigInt(_) => "an int",
        Node::Float(_) => "a float",
        Node::Str(_) => "a str",
        Node::Bytes(_) => "bytes",
        Node::ByteArray(_) => "a bytearray",
        Node::List(_) => "a list",
        Node::Tuple(_) => "a tuple",
        Node::Dict(_) => "a dict",
        Node::Set(_) => "a set",
        Node::FrozenSet(_) => "a frozenset",
        Node::Builtin(_) => "a builtin callable",
    }
}
