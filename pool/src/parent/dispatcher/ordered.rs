//! A set kept in order for the dispatcher's index of workers
//! (`slots.rs`): a sorted vector while it is small, a B-tree once it is
//! large. Most pools have a few workers, where the index is updated at
//! every chunk and a B-tree's update costs several times a few compares
//! and a short move; a pool of thousands needs the B-tree's logarithm.

use std::collections::BTreeSet;
use std::fmt;

/// Past this many keys the set becomes a B-tree...
const SMALL_MAX: usize = 64;
/// ...and back under this many a vector again (not at once below
/// `SMALL_MAX`, so that a set near the bound is not rebuilt every time).
const SMALL_AGAIN: usize = SMALL_MAX / 2;
/// Up to this many keys a vector is searched from its start: for the
/// few workers of most pools a few compares in a row cost less than a
/// binary search's halving (callgrind, 2 workers: 118 instructions a
/// change with the binary search).
const LINEAR_MAX: usize = 8;

/// Where `key` is in the sorted `keys`, or where it would go, as
/// `binary_search` says.
#[inline]
fn search<K: Ord>(keys: &[K], key: &K) -> Result<usize, usize> {
    if keys.len() > LINEAR_MAX {
        return keys.binary_search(key);
    }
    let at = keys.iter().take_while(|k| *k < key).count();
    match keys.get(at) {
        Some(k) if k == key => Ok(at),
        _ => Err(at),
    }
}

/// A set of keys in order (see the module's documentation).
pub(super) enum Ordered<K> {
    /// Sorted, without duplicates.
    Small(Vec<K>),
    Large(BTreeSet<K>),
}

impl<K> Default for Ordered<K> {
    fn default() -> Ordered<K> {
        Ordered::Small(Vec::new())
    }
}

impl<K: Ord + Copy> Ordered<K> {
    /// Moves a key from `was` (in the set, if some) to `now`: adds it,
    /// takes it out or changes it. A change that keeps a key near its
    /// place (a worker's count of inputs, one chunk more or less) moves
    /// nothing else in the vector.
    #[inline]
    pub(super) fn change(&mut self, was: Option<K>, now: Option<K>) {
        // Most changes of a worker leave most of its keys as they were.
        if was != now {
            self.replace(was, now);
        }
    }

    fn replace(&mut self, was: Option<K>, now: Option<K>) {
        match (was, now) {
            (Some(was), Some(now)) => match self {
                Ordered::Small(keys) => match search(keys, &was) {
                    Ok(mut at) => {
                        keys[at] = now;
                        while at > 0 && keys[at - 1] > keys[at] {
                            keys.swap(at - 1, at);
                            at -= 1;
                        }
                        while at + 1 < keys.len() && keys[at + 1] < keys[at] {
                            keys.swap(at, at + 1);
                            at += 1;
                        }
                        // `now` was there already: one is enough.
                        let twice = (at > 0 && keys[at - 1] == keys[at])
                            || (at + 1 < keys.len() && keys[at + 1] == keys[at]);
                        if twice {
                            keys.remove(at);
                        }
                    }
                    Err(_) => self.insert(now),
                },
                Ordered::Large(_) => {
                    self.remove(&was);
                    self.insert(now);
                }
            },
            (Some(was), None) => self.remove(&was),
            (None, Some(now)) => self.insert(now),
            (None, None) => {}
        }
    }

    /// Adds `key`, if it is not there yet.
    pub(super) fn insert(&mut self, key: K) {
        match self {
            Ordered::Small(keys) => {
                if let Err(at) = search(keys, &key) {
                    keys.insert(at, key);
                    if keys.len() > SMALL_MAX {
                        *self = Ordered::Large(keys.drain(..).collect());
                    }
                }
            }
            Ordered::Large(keys) => {
                keys.insert(key);
            }
        }
    }

    /// Takes `key` out, if it is there.
    pub(super) fn remove(&mut self, key: &K) {
        match self {
            Ordered::Small(keys) => {
                if let Ok(at) = search(keys, key) {
                    keys.remove(at);
                }
            }
            Ordered::Large(keys) => {
                keys.remove(key);
                if keys.len() < SMALL_AGAIN {
                    *self = Ordered::Small(std::mem::take(keys).into_iter().collect());
                }
            }
        }
    }

    /// The keys, least first.
    pub(super) fn iter(&self) -> Iter<'_, K> {
        match self {
            Ordered::Small(keys) => Iter::Small(keys.iter()),
            Ordered::Large(keys) => Iter::Large(keys.iter()),
        }
    }

    pub(super) fn first(&self) -> Option<&K> {
        self.iter().next()
    }

    pub(super) fn is_empty(&self) -> bool {
        match self {
            Ordered::Small(keys) => keys.is_empty(),
            Ordered::Large(keys) => keys.is_empty(),
        }
    }
}

impl<K: Ord + Copy> PartialEq for Ordered<K> {
    fn eq(&self, other: &Ordered<K>) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<K: Ord + Copy + fmt::Debug> fmt::Debug for Ordered<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The keys of an [`Ordered`] set, in order either way.
pub(super) enum Iter<'a, K> {
    Small(std::slice::Iter<'a, K>),
    Large(std::collections::btree_set::Iter<'a, K>),
}

impl<'a, K> Iterator for Iter<'a, K> {
    type Item = &'a K;

    fn next(&mut self) -> Option<&'a K> {
        match self {
            Iter::Small(keys) => keys.next(),
            Iter::Large(keys) => keys.next(),
        }
    }
}

impl<K> DoubleEndedIterator for Iter<'_, K> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self {
            Iter::Small(keys) => keys.next_back(),
            Iter::Large(keys) => keys.next_back(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The look along a short vector finds what a binary search finds,
    /// at every length it is used for and past it.
    #[test]
    fn search_agrees_with_binary_search() {
        for len in 0..=LINEAR_MAX + 2 {
            let keys: Vec<u64> = (0..len as u64).map(|k| 2 * k + 1).collect();
            for key in 0..=2 * len as u64 + 1 {
                assert_eq!(
                    search(&keys, &key),
                    keys.binary_search(&key),
                    "{keys:?} {key}"
                );
            }
        }
    }

    /// A walk of inserts and removes that takes the set past its bound
    /// and back, checked against a B-tree at every step.
    #[test]
    fn keys_stay_in_order_across_the_change_of_form_and_back() {
        let mut ordered = Ordered::default();
        let mut expected = BTreeSet::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut step = |ordered: &mut Ordered<(u64, u32)>, insert: bool| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = (x % 50, (x >> 32) as u32 % 4);
            if insert {
                ordered.insert(key);
                expected.insert(key);
            } else {
                ordered.remove(&key);
                expected.remove(&key);
            }
            assert!(ordered.iter().eq(expected.iter()));
            assert!(ordered.iter().rev().eq(expected.iter().rev()));
            assert_eq!(ordered.first(), expected.first());
            assert_eq!(ordered.is_empty(), expected.is_empty());
        };
        let mut large = false;
        for _ in 0..2_000 {
            step(&mut ordered, true);
            large |= matches!(ordered, Ordered::Large(_));
        }
        assert!(large, "the set never became a B-tree");
        // Mostly removes, down to the vector again.
        for round in 0..20_000 {
            step(&mut ordered, round % 5 == 0);
        }
        assert!(matches!(ordered, Ordered::Small(_)));
    }

    /// Keys changed in place end where a remove and an insert would put
    /// them, whatever they became (present already or not, nearby or
    /// far), in either form.
    #[test]
    fn a_changed_key_ends_where_it_belongs() {
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for size in [3, 40, 150] {
            let mut ordered = Ordered::default();
            let mut expected = BTreeSet::new();
            for _ in 0..size {
                let key = next() % (2 * size);
                ordered.insert(key);
                expected.insert(key);
            }
            for _ in 0..5_000 {
                let present: Vec<u64> = expected.iter().copied().collect();
                let r = next();
                let was = (r % 4 > 0 && !present.is_empty())
                    .then(|| present[(r >> 8) as usize % present.len()]);
                let r = next();
                let now = (r % 4 > 0).then_some(r % (2 * size));
                ordered.change(was, now);
                if let Some(was) = was {
                    expected.remove(&was);
                }
                if let Some(now) = now {
                    expected.insert(now);
                }
                assert!(ordered.iter().eq(expected.iter()), "size {size}");
            }
        }
    }
}
