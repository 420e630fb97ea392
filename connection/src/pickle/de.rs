//! Serde's view of a parsed pickle: a [`Deserializer`] that walks the arena.
//!
//! The walk is the only recursion in decoding, and it is bounded twice: by
//! depth ([`MAX_DEPTH`]), which also stops a container
//! that contains itself, and by a budget of nodes and bytes visited, since
//! a value the memo hands out many times is copied each time into the Rust
//! value and a small pickle could otherwise expand exponentially.

use std::cell::Cell;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

use super::error::{PickleError, PickleResult};
use super::node::{describe, Arena, Id, Node};
use super::value::serde_impl::marker;
use super::MAX_DEPTH;

/// The arena being read and what is left of the copy budget.
pub(super) struct Walk<'a> {
    arena: &'a Arena,
    budget: Cell<u64>,
}

impl<'a> Walk<'a> {
    pub(super) fn new(arena: &'a Arena, budget: u64) -> Walk<'a> {
        Walk {
            arena,
            budget: Cell::new(budget),
        }
    }

    /// The deserializer for the whole value.
    pub(super) fn root(&'a self) -> PickleResult<NodeDeserializer<'a>> {
        self.charge(self.arena.root)?;
        Ok(NodeDeserializer {
            walk: self,
            id: self.arena.root,
            depth: 0,
        })
    }

    fn charge(&self, id: Id) -> PickleResult<()> {
        let cost = match self.arena.node(id) {
            Node::Str(text) => 1 + text.len() as u64,
            Node::Bytes(bytes) | Node::ByteArray(bytes) | Node::BigInt(bytes) => {
                1 + bytes.len() as u64
            }
            _ => 1,
        };
        let left = self.budget.get().checked_sub(cost).ok_or_else(|| {
            PickleError(
                "the value expands past the decoding budget: the pickle reuses memoized \
                 values too often"
                    .into(),
            )
        })?;
        self.budget.set(left);
        Ok(())
    }
}

/// One node, ready for serde.
#[derive(Clone, Copy)]
pub(super) struct NodeDeserializer<'a> {
    walk: &'a Walk<'a>,
    id: Id,
    depth: usize,
}

impl<'a> NodeDeserializer<'a> {
    fn node(&self) -> &'a Node {
        self.walk.arena.node(self.id)
    }

    /// The deserializer of an item inside this node.
    /// The same node, one level deeper: an `Option` holding a value and a
    /// newtype struct count as levels, so that a recursive type such as
    /// `struct Nest(Option<Box<Nest>>)` cannot recurse without end on one
    /// node (a 5-byte pickle would otherwise overflow the stack).
    fn deeper(self) -> PickleResult<NodeDeserializer<'a>> {
        if self.depth >= MAX_DEPTH {
            return Err(PickleError(format!(
                "the value is nested deeper than {MAX_DEPTH} levels (or contains itself)"
            )));
        }
        Ok(NodeDeserializer {
            depth: self.depth + 1,
            ..self
        })
    }

    fn enter(&self, id: Id) -> PickleResult<NodeDeserializer<'a>> {
        if self.depth >= MAX_DEPTH {
            return Err(PickleError(format!(
                "the value is nested deeper than {MAX_DEPTH} levels (or contains itself)"
            )));
        }
        self.walk.charge(id)?;
        Ok(NodeDeserializer {
            walk: self.walk,
            id,
            depth: self.depth + 1,
        })
    }

    fn visit_items<'de, V: Visitor<'de>>(
        self,
        items: &'a [Id],
        visitor: V,
    ) -> PickleResult<V::Value> {
        let mut seq = Items {
            parent: self,
            items: items.iter(),
        };
        let value = visitor.visit_seq(&mut seq)?;
        let left = seq.items.len();
        if left > 0 {
            return Err(de::Error::invalid_length(
                items.len(),
                &format!("{} elements", items.len() - left).as_str(),
            ));
        }
        Ok(value)
    }

    /// `Value`'s view: the types serde would blur as an enum naming the
    /// Python type, everything else as usual.
    fn deserialize_exact<'de, V: Visitor<'de>>(self, visitor: V) -> PickleResult<V::Value> {
        let tag = match self.node() {
            Node::Tuple(_) => "tuple",
            Node::ByteArray(_) => "bytearray",
            Node::Set(_) => "set",
            Node::FrozenSet(_) => "frozenset",
            Node::BigInt(_) => "int",
            _ => return self.deserialize_any(visitor),
        };
        visitor.visit_enum(Exact { tag, node: self })
    }
}

impl<'de> Deserializer<'de> for NodeDeserializer<'_> {
    type Error = PickleError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> PickleResult<V::Value> {
        match self.node() {
            Node::None => visitor.visit_unit(),
            Node::Bool(b) => visitor.visit_bool(*b),
            Node::Int(n) => {
                if let Ok(n) = i64::try_from(*n) {
                    visitor.visit_i64(n)
                } else if let Ok(n) = u64::try_from(*n) {
                    visitor.visit_u64(n)
                } else {
                    visitor.visit_i128(*n)
                }
            }
            Node::U128(n) => visitor.visit_u128(*n),
            Node::BigInt(bytes) => Err(PickleError(format!(
                "an int of {} bytes does not fit in any Rust integer (128 bits at most; \
                 connection::pickle::BigInt and Value hold it)",
                bytes.len()
            ))),
            Node::Float(x) => visitor.visit_f64(*x),
            Node::Str(text) => visitor.visit_str(text),
            Node::Bytes(bytes) | Node::ByteArray(bytes) => visitor.visit_bytes(bytes),
            Node::List(items) | Node::Tuple(items) | Node::Set(items) | Node::FrozenSet(items) => {
                self.visit_items(items, visitor)
            }
            Node::Dict(pairs) => {
                let mut map = Pairs {
                    parent: self,
                    pairs: pairs.iter(),
                    value: None,
                };
                visitor.visit_map(&mut map)
            }
            Node::Builtin(builtin) => Err(PickleError(format!(
                "{} without arguments is not a value",
                builtin.python_name()
            ))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> PickleResult<V::Value> {
        match self.node() {
            Node::None => visitor.visit_none(),
            _ => visitor.visit_some(self.deeper()?),
        }
    }

    /// `Value` and `BigInt` ask for their private names to get Python's
    /// exact types (see `value/serde_impl.rs`); they add no level, as the
    /// items they contain are levels already.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> PickleResult<V::Value> {
        match (name, self.node()) {
            (marker::VALUE, _) => self.deserialize_exact(visitor),
            (marker::BIGINT, Node::BigInt(bytes)) => visitor.visit_bytes(bytes),
            (marker::BIGINT, _) => self.deserialize_any(visitor),
            _ => visitor.visit_newtype_struct(self.deeper()?),
        }
    }

    /// Python `bytes` is also a sequence of small ints, so `Vec<u8>` and
    /// `[u8; N]` receive it.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> PickleResult<V::Value> {
        match self.node() {
            Node::Bytes(bytes) | Node::ByteArray(bytes) => {
                let mut seq =
                    de::value::SeqDeserializer::<_, PickleError>::new(bytes.iter().copied());
                let value = visitor.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(value)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> PickleResult<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> PickleResult<V::Value> {
        self.deserialize_seq(visitor)
    }

    /// A unit variant is its name as a str; any other variant is a dict of
    /// one entry, `{name: content}` (serde's externally tagged form).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> PickleResult<V::Value> {
        match self.node() {
            Node::Str(_) => visitor.visit_enum(Variant {
                name: self,
                content: None,
            }),
            Node::Dict(pairs) if pairs.len() == 1 => {
                let (name, content) = pairs[0];
                visitor.visit_enum(Variant {
                    name: self.enter(name)?,
                    content: Some(self.enter(content)?),
                })
            }
            other => Err(PickleError(format!(
                "an enum is a str (unit variant) or a dict of one entry, not {}",
                describe(other)
            ))),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> PickleResult<V::Value> {
        // Nothing below an ignored value is visited, or charged.
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct map struct identifier
    }
}

/// The items of a list, tuple or set.
struct Items<'a> {
    parent: NodeDeserializer<'a>,
    items: std::slice::Iter<'a, Id>,
}

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = PickleError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> PickleResult<Option<T::Value>> {
        match self.items.next() {
            Some(&id) => seed.deserialize(self.parent.enter(id)?).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The entries of a dict.
struct Pairs<'a> {
    parent: NodeDeserializer<'a>,
    pairs: std::slice::Iter<'a, (Id, Id)>,
    value: Option<Id>,
}

impl<'de> MapAccess<'de> for Pairs<'_> {
    type Error = PickleError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> PickleResult<Option<K::Value>> {
        match self.pairs.next() {
            Some(&(key, value)) => {
                self.value = Some(value);
                seed.deserialize(self.parent.enter(key)?).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> PickleResult<V::Value> {
        let value = self
            .value
            .take()
            .ok_or_else(|| PickleError("a dict value was asked for before its key".into()))?;
        seed.deserialize(self.parent.enter(value)?)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len())
    }
}

/// An enum: the variant's name and, unless it is a unit variant, its content.
struct Variant<'a> {
    name: NodeDeserializer<'a>,
    content: Option<NodeDeserializer<'a>>,
}

impl<'de, 'a> EnumAccess<'de> for Variant<'a> {
    type Error = PickleError;
    type Variant = Content<'a>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> PickleResult<(S::Value, Self::Variant)> {
        Ok((seed.deserialize(self.name)?, Content(self.content)))
    }
}

/// What a variant carries: nothing for a bare name.
struct Content<'a>(Option<NodeDeserializer<'a>>);

impl<'de> VariantAccess<'de> for Content<'_> {
    type Error = PickleError;

    fn unit_variant(self) -> PickleResult<()> {
        match self.0.map(|content| content.node()) {
            None | Some(Node::None) => Ok(()),
            Some(other) => Err(PickleError(format!(
                "a unit variant carries no content, not {}",
                describe(other)
            ))),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> PickleResult<T::Value> {
        seed.deserialize(self.required()?)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> PickleResult<V::Value> {
        self.required()?.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> PickleResult<V::Value> {
        self.required()?.deserialize_any(visitor)
    }
}

impl<'a> Content<'a> {
    fn required(self) -> PickleResult<NodeDeserializer<'a>> {
        self.0.ok_or_else(|| {
            PickleError("a variant with content was sent as a bare str (a unit variant)".into())
        })
    }
}

/// A node in `Value`'s exact form: the variant names its Python type and
/// the content is the node itself (or a wide int's bytes).
struct Exact<'a> {
    tag: &'static str,
    node: NodeDeserializer<'a>,
}

impl<'de, 'a> EnumAccess<'de> for Exact<'a> {
    type Error = PickleError;
    type Variant = NodeDeserializer<'a>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> PickleResult<(S::Value, Self::Variant)> {
        let tag = de::value::StrDeserializer::<PickleError>::new(self.tag);
        Ok((seed.deserialize(tag)?, self.node))
    }
}

impl<'de> VariantAccess<'de> for NodeDeserializer<'_> {
    type Error = PickleError;

    fn unit_variant(self) -> PickleResult<()> {
        Err(PickleError(format!(
            "{} is not a unit variant",
            describe(self.node())
        )))
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> PickleResult<T::Value> {
        match self.node() {
            Node::BigInt(bytes) => {
                seed.deserialize(de::value::BytesDeserializer::<PickleError>::new(bytes))
            }
            _ => seed.deserialize(self),
        }
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> PickleResult<V::Value> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> PickleResult<V::Value> {
        self.deserialize_any(visitor)
    }
}
