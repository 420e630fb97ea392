//! [`Dict`]: a Python `dict` of [`Value`]s, in insertion order.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use super::Value;

/// A Python `dict`: keys in the order they were first inserted, as in
/// Python, with lookups in `O(log n)` through an index sorted by key.
///
/// Keys compare as [`Value`]s do (type first: `1`, `1.0` and `True` are
/// three keys here, one in Python). Inserting a key that is already there
/// replaces its value and keeps its place, as `d[k] = v` does; so a pickle
/// that lists a key twice keeps the last value, as CPython's loader does.
/// Equality ignores order, as Python's `==` on dicts does.
///
/// # Examples
///
/// ```
/// use connection::pickle::{Dict, Value};
///
/// let mut dict = Dict::new();
/// dict.insert("b", 1);
/// dict.insert((1, 2), "pair"); // a tuple key
/// dict.insert("b", 2); // replaces, keeps its place
/// assert_eq!(dict.get(&Value::from("b")), Some(&Value::Int(2)));
/// let keys: Vec<String> = dict.keys().map(|k| format!("{k:?}")).collect();
/// assert_eq!(keys, ["'b'", "(1, 2)"]);
/// ```
#[derive(Clone, Default)]
pub struct Dict(Box<Table>);

/// Boxed, so that a [`Value`] stays 32 bytes (its other variants hold at
/// most one `Vec`): a hostile pickle's values cost less memory each.
#[derive(Clone, Default)]
struct Table {
    /// Keys and values in insertion order; keys are distinct.
    entries: Vec<(Value, Value)>,
    /// Positions in `entries`, sorted by key.
    sorted: Vec<usize>,
}

impl Dict {
    /// An empty dict.
    pub fn new() -> Dict {
        Dict::default()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.entries.is_empty()
    }

    /// Where `key` is in `sorted`, or where it would go.
    fn find(&self, key: &Value) -> Result<usize, usize> {
        self.0
            .sorted
            .binary_search_by(|&at| self.0.entries[at].0.cmp(key))
    }

    /// The value of `key`, if it is there.
    pub fn get(&self, key: &Value) -> Option<&Value> {
        let at = self.0.sorted[self.find(key).ok()?];
        Some(&self.0.entries[at].1)
    }

    /// The value of `key`, mutably, if it is there.
    pub fn get_mut(&mut self, key: &Value) -> Option<&mut Value> {
        let at = self.0.sorted[self.find(key).ok()?];
        Some(&mut self.0.entries[at].1)
    }

    /// Whether `key` is there.
    pub fn contains_key(&self, key: &Value) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value`, returning the value it replaces. A new key
    /// goes last; a key already there keeps its place (and the key itself
    /// stays as first inserted, as in Python).
    pub fn insert(&mut self, key: impl Into<Value>, value: impl Into<Value>) -> Option<Value> {
        let key = key.into();
        match self.find(&key) {
            Ok(slot) => {
                let at = self.0.sorted[slot];
                Some(std::mem::replace(&mut self.0.entries[at].1, value.into()))
            }
            Err(slot) => {
                self.0.sorted.insert(slot, self.0.entries.len());
                self.0.entries.push((key, value.into()));
                None
            }
        }
    }

    /// Removes `key`, returning its value; the others keep their order.
    /// `O(n)`, as it closes the gap.
    pub fn remove(&mut self, key: &Value) -> Option<Value> {
        let slot = self.find(key).ok()?;
        let at = self.0.sorted.remove(slot);
        for position in &mut self.0.sorted {
            if *position > at {
                *position -= 1;
            }
        }
        Some(self.0.entries.remove(at).1)
    }

    /// The entries in insertion order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Value, &Value)> {
        self.0.entries.iter().map(|(k, v)| (k, v))
    }

    /// The keys in insertion order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &Value> {
        self.0.entries.iter().map(|(k, _)| k)
    }

    /// The values in insertion order.
    pub fn values(&self) -> impl ExactSizeIterator<Item = &Value> {
        self.0.entries.iter().map(|(_, v)| v)
    }

    /// The entries in key order, for comparing and hashing.
    fn by_key(&self) -> impl Iterator<Item = &(Value, Value)> {
        self.0.sorted.iter().map(|&at| &self.0.entries[at])
    }

    /// A dict of `pairs` in one sort, `O(n log n)` however many keys
    /// repeat: a repeated key keeps its first place and its last value.
    pub(super) fn from_pairs(mut pairs: Vec<(Value, Value)>) -> Dict {
        let mut order: Vec<usize> = (0..pairs.len()).collect();
        // Stable: within a run of equal keys, the earliest comes first.
        order.sort_by(|&a, &b| pairs[a].0.cmp(&pairs[b].0));
        let mut kept = vec![false; pairs.len()];
        let mut run = 0;
        while run < order.len() {
            let mut last = run;
            while last + 1 < order.len() && pairs[order[last + 1]].0 == pairs[order[run]].0 {
                last += 1;
            }
            let (first, winner) = (order[run], order[last]);
            kept[first] = true;
            if winner != first {
                let value = std::mem::replace(&mut pairs[winner].1, Value::None);
                pairs[first].1 = value;
            }
            run = last + 1;
        }
        let mut new_position = vec![0; pairs.len()];
        let mut next = 0;
        for (old, &keep) in kept.iter().enumerate() {
            new_position[old] = next;
            next += usize::from(keep);
        }
        let sorted = order
            .into_iter()
            .filter(|&old| kept[old])
            .map(|old| new_position[old])
            .collect();
        let entries = pairs
            .into_iter()
            .zip(kept)
            .filter_map(|(pair, keep)| keep.then_some(pair))
            .collect();
        Dict(Box::new(Table { entries, sorted }))
    }
}

impl PartialEq for Dict {
    fn eq(&self, other: &Dict) -> bool {
        self.len() == other.len() && self.by_key().eq(other.by_key())
    }
}

impl Eq for Dict {}

/// By entries in key order: an arbitrary but total order, for sets of
/// values (see [`Value`]'s `Ord`).
impl Ord for Dict {
    fn cmp(&self, other: &Dict) -> Ordering {
        self.by_key().cmp(other.by_key())
    }
}

impl PartialOrd for Dict {
    fn partial_cmp(&self, other: &Dict) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// In key order, so that equal dicts hash alike whatever their order.
impl Hash for Dict {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for (key, value) in self.by_key() {
            key.hash(state);
            value.hash(state);
        }
    }
}

impl<K: Into<Value>, V: Into<Value>> FromIterator<(K, V)> for Dict {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Dict {
        Dict::from_pairs(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl<K: Into<Value>, V: Into<Value>> Extend<(K, V)> for Dict {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for Dict {
    type Item = (Value, Value);
    type IntoIter = std::vec::IntoIter<(Value, Value)>;

    /// The entries in insertion order.
    fn into_iter(self) -> Self::IntoIter {
        self.0.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a Dict {
    type Item = (&'a Value, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Value, Value)>,
        fn(&'a (Value, Value)) -> (&'a Value, &'a Value),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.entries.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_keep_their_first_place_and_last_value() {
        let dict: Dict = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5), ("a", 6)]
            .into_iter()
            .collect();
        let entries: Vec<(String, i64)> = dict
            .iter()
            .map(|(k, v)| (k.as_str().unwrap().into(), v.as_int().unwrap()))
            .collect();
        assert_eq!(entries, [("a".into(), 6), ("b".into(), 5), ("c".into(), 4)]);
        for (key, value) in [("a", 6), ("b", 5), ("c", 4)] {
            assert_eq!(dict.get(&key.into()), Some(&Value::Int(value)));
        }
    }

    #[test]
    fn equality_and_hash_ignore_order() {
        let one: Dict = [("x", 1), ("y", 2)].into_iter().collect();
        let mut two = Dict::new();
        two.insert("y", 2);
        two.insert("x", 1);
        assert!(one == two);
        let hash = |dict: &Dict| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            dict.hash(&mut hasher);
            hasher.finish()
        };
        assert_eq!(hash(&one), hash(&two));
        two.insert("x", 0);
        assert!(one != two);
    }

    #[test]
    fn remove_keeps_the_rest_in_order_and_findable() {
        let mut dict: Dict = (0..10).map(|i| (i, i * 10)).collect();
        assert_eq!(dict.remove(&Value::Int(3)), Some(Value::Int(30)));
        assert_eq!(dict.remove(&Value::Int(3)), None);
        let keys: Vec<i64> = dict.keys().map(|k| k.as_int().unwrap()).collect();
        assert_eq!(keys, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
        for i in [0, 2, 4, 9] {
            assert_eq!(dict.get(&Value::Int(i)), Some(&Value::Int(i * 10)));
        }
    }
}
