//! Equality, order and hashing of [`Value`]s: one total order, with
//! equality and hashing consistent with it (the choices are documented on
//! [`Value`]).

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use super::Value;

/// Types in the order `Ord` sorts them; both int variants are one type.
fn rank(value: &Value) -> u8 {
    match value {
        Value::None => 0,
        Value::Bool(_) => 1,
        Value::Int(_) | Value::BigInt(_) => 2,
        Value::Float(_) => 3,
        Value::Str(_) => 4,
        Value::Bytes(_) => 5,
        Value::ByteArray(_) => 6,
        Value::Tuple(_) => 7,
        Value::List(_) => 8,
        Value::FrozenSet(_) => 9,
        Value::Set(_) => 10,
        Value::Dict(_) => 11,
    }
}

/// Python's order of floats, with `0.0 == -0.0`, made total: NaN equals
/// NaN and sorts above everything.
fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).expect("neither is NaN"),
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Value) -> Ordering {
        use Value::*;
        match (self, other) {
            (None, None) => Ordering::Equal,
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Int(_) | BigInt(_), Int(_) | BigInt(_)) => self.to_bigint().cmp(&other.to_bigint()),
            (Float(a), Float(b)) => float_cmp(*a, *b),
            (Str(a), Str(b)) => a.cmp(b),
            (Bytes(a), Bytes(b)) | (ByteArray(a), ByteArray(b)) => a.cmp(b),
            (Tuple(a), Tuple(b)) | (List(a), List(b)) => a.cmp(b),
            (FrozenSet(a), FrozenSet(b)) | (Set(a), Set(b)) => a.cmp(b),
            (Dict(a), Dict(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Value) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl Hash for Value {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(rank(self));
        match self {
            Value::None => {}
            Value::Bool(b) => b.hash(state),
            Value::Int(n) => n.hash(state),
            // Equal to an `Int` when it fits one, so hashed as one.
            Value::BigInt(n) => match i64::try_from(n) {
                Ok(small) => small.hash(state),
                Err(_) => n.to_signed_bytes_le().hash(state),
            },
            Value::Float(x) => {
                let canonical = if *x == 0.0 {
                    0.0
                } else if x.is_nan() {
                    f64::NAN
                } else {
                    *x
                };
                canonical.to_bits().hash(state);
            }
            Value::Str(text) => text.hash(state),
            Value::Bytes(bytes) | Value::ByteArray(bytes) => bytes.hash(state),
            Value::Tuple(items) | Value::List(items) => items.hash(state),
            // Sorted, so equal sets hash alike.
            Value::FrozenSet(items) | Value::Set(items) => items.hash(state),
            Value::Dict(dict) => dict.hash(state),
        }
    }
}
