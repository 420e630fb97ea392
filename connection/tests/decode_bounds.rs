//! Hostile payloads for `connection::decode`: forged lengths and counts,
//! deep nesting, damaged valid encodings. Whatever the bytes, decoding
//! returns (no panic, no abort, no endless loop) and its peak memory stays
//! within the documented bound: `4 * E * n` plus a constant for a payload
//! of `n` bytes, `E` the largest in-memory size of a collection element of
//! the type.
//!
//! This test binary counts every allocation (per thread, so tests running
//! side by side do not disturb each other's figures).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;

use connection::pickle::Value;
use connection::{decode, encode, ErrorKind, MAX_DECODE_DEPTH};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The system allocator, keeping count of the bytes the current thread has
/// live and their peak.
struct Counting;

thread_local! {
    // `const` and `Cell`: no lazy initialisation and no destructor, so the
    // allocator can touch them without allocating itself.
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn grew(bytes: usize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(bytes);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn shrank(bytes: usize) {
    let _ = LIVE.try_with(|live| live.set(live.get().wrapping_sub(bytes)));
}

// SAFETY: every method hands the request to `System` unchanged; the
// counting touches only thread-local cells and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is `System.alloc`'s.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the caller guarantees `new_size`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            // Counted as old and new side by side, as a moving realloc is.
            grew(new_size);
            shrank(layout.size());
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the most memory this thread held
/// at once meanwhile, beyond what it held before.
fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(before));
    let result = f();
    (result, PEAK.with(Cell::get) - before)
}

/// Allowance for what a decode allocates whatever the payload: error
/// messages, a few type names.
const CONSTANT: usize = 16 << 10;

/// Decodes `payload` as a `T` whose largest collection element takes
/// `element_size` bytes in memory, and checks the documented bound and
/// that any error is a `Decode` error. `None` when it did not decode.
fn decode_within_bound<T: DeserializeOwned>(
    payload: &[u8],
    element_size: usize,
) -> Result<Option<T>, TestCaseError> {
    let (result, peak) = peak_during(|| decode::<T>(payload));
    let bound = 4 * element_size * payload.len() + CONSTANT;
    prop_assert!(
        peak <= bound,
        "{} bytes decoding as {} peaked at {peak} bytes, over {bound}",
        payload.len(),
        std::any::type_name::<T>()
    );
    match result {
        Ok(value) => Ok(Some(value)),
        Err(err) => {
            prop_assert_eq!(err.kind(), ErrorKind::Decode);
            Ok(None)
        }
    }
}

/// A recursive type reaching every kind of nesting: enum, sequence, box,
/// option, string.
#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
enum Tree {
    Leaf(u64),
    Node(Vec<Tree>),
    Pair(Box<Tree>, Box<Tree>),
    Label(String, Option<Box<Tree>>),
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(Tree::Leaf),
        ".{0,8}".prop_map(|s| Tree::Label(s, None)),
    ];
    leaf.prop_recursive(8, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Tree::Node),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Tree::Pair(Box::new(a), Box::new(b))),
            (".{0,8}", inner).prop_map(|(s, t)| Tree::Label(s, Some(Box::new(t)))),
        ]
    })
}

/// A varint as bincode writes it, in any of its widths, including forged
/// huge values and the reserved marker.
fn varint() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u8..=250).prop_map(|b| vec![b]),
        any::<u16>().prop_map(|n| [&[251u8][..], &n.to_le_bytes()].concat()),
        any::<u32>().prop_map(|n| [&[252u8][..], &n.to_le_bytes()].concat()),
        any::<u64>().prop_map(|n| [&[253u8][..], &n.to_le_bytes()].concat()),
        (1u64 << 20..1 << 40).prop_map(|n| [&[253u8][..], &n.to_le_bytes()].concat()),
        any::<u128>().prop_map(|n| [&[254u8][..], &n.to_le_bytes()].concat()),
        Just(vec![255]),
    ]
}

/// Payloads built from pieces of the format: varints (lengths, counts,
/// tags), option tags, raw bytes, and long runs of one nesting pattern.
fn hostile_payload() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        4 => varint(),
        2 => prop::collection::vec(0u8..=2, 1..4),
        2 => prop::collection::vec(any::<u8>(), 0..32),
        1 => (prop::collection::vec(0u8..=3, 1..4), 1usize..20_000)
            .prop_map(|(pattern, times)| pattern.repeat(times)),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

/// A valid encoding of `value` with a forged varint written over it at
/// `at` (a fraction of its length).
fn damaged(mut valid: Vec<u8>, forged: Vec<u8>, at: f64) -> Vec<u8> {
    let start = ((valid.len() as f64) * at) as usize;
    let end = (start + forged.len()).min(valid.len());
    valid.splice(start..end, forged);
    valid
}

fn map_of_vecs() -> impl Strategy<Value = HashMap<String, Vec<u64>>> {
    prop::collection::hash_map(".{0,6}", prop::collection::vec(any::<u64>(), 0..8), 0..8)
}

const STRING: usize = 1;
const VEC_VEC_U8: usize = std::mem::size_of::<Vec<u8>>();
const MAP_ENTRY: usize = std::mem::size_of::<(String, Vec<u64>)>();
const TREE: usize = std::mem::size_of::<Tree>();

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn hostile_payloads_decode_within_the_bound(payload in hostile_payload()) {
        decode_within_bound::<String>(&payload, STRING)?;
        decode_within_bound::<Vec<Vec<u8>>>(&payload, VEC_VEC_U8)?;
        decode_within_bound::<HashMap<String, Vec<u64>>>(&payload, MAP_ENTRY)?;
        decode_within_bound::<Tree>(&payload, TREE)?;
        decode_within_bound::<Vec<()>>(&payload, 1)?;
    }

    #[test]
    fn damaged_encodings_decode_within_the_bound(
        tree in tree(),
        map in map_of_vecs(),
        vecs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..16), 0..16),
        forged in varint(),
        at in 0.0..1.0f64,
    ) {
        let tree = damaged(encode(&tree).unwrap(), forged.clone(), at);
        decode_within_bound::<Tree>(&tree, TREE)?;
        decode_within_bound::<HashMap<String, Vec<u64>>>(
            &damaged(encode(&map).unwrap(), forged.clone(), at),
            MAP_ENTRY,
        )?;
        let vecs = damaged(encode(&vecs).unwrap(), forged, at);
        decode_within_bound::<Vec<Vec<u8>>>(&vecs, VEC_VEC_U8)?;
    }

    #[test]
    fn valid_values_round_trip_within_the_bound(
        tree in tree(),
        map in map_of_vecs(),
        text in ".{0,64}",
    ) {
        let decoded = decode_within_bound::<Tree>(&encode(&tree).unwrap(), TREE)?;
        prop_assert_eq!(decoded.unwrap(), tree);
        let payload = encode(&map).unwrap();
        let decoded = decode_within_bound::<HashMap<String, Vec<u64>>>(&payload, MAP_ENTRY)?;
        prop_assert_eq!(decoded.unwrap(), map);
        let decoded = decode_within_bound::<String>(&encode(&text).unwrap(), STRING)?;
        prop_assert_eq!(decoded.unwrap(), text);
    }
}

#[test]
fn a_forged_count_reserves_no_more_than_the_bytes_left() {
    // A Vec<Vec<u8>> claiming 2^20 elements (as many as could be empty,
    // so not refused up front), then 100 empty ones: trusting the count,
    // serde would reserve its 1 MiB cap for the outer Vec before failing.
    let mut payload = vec![253];
    payload.extend_from_slice(&(1u64 << 20).to_le_bytes());
    payload.extend_from_slice(&[0; 100]);
    let (result, peak) = peak_during(|| decode::<Vec<Vec<u8>>>(&payload));
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Decode);
    assert!(
        peak <= 4 * VEC_VEC_U8 * payload.len() + CONSTANT,
        "peak {peak}"
    );
}

#[test]
fn a_forged_string_length_allocates_nothing_for_it() {
    // A 4 MiB payload whose string claims 60 GiB: the old limit ladder let
    // such a claim through once the payload passed 2^28 bytes.
    let mut payload = vec![253];
    payload.extend_from_slice(&(60u64 << 30).to_le_bytes());
    payload.resize(4 << 20, b'x');
    let (result, peak) = peak_during(|| decode::<String>(&payload));
    assert_eq!(result.unwrap_err().kind(), ErrorKind::Decode);
    assert!(peak <= CONSTANT, "peak {peak}");
}

#[test]
fn deep_nesting_is_refused_at_the_documented_depth() {
    // Tree::Label("", Some(..)) nests three levels per link: the enum, the
    // variant's fields and the Option holding a value; the Leaf at the end
    // one more.
    let link = [3u8, 0, 1];
    let fits = link.repeat((MAX_DECODE_DEPTH - 1) / 3);
    let too_deep = link.repeat(MAX_DECODE_DEPTH);
    let end = [0u8, 7];
    assert!(decode::<Tree>(&[fits, end.to_vec()].concat()).is_ok());
    assert_eq!(
        decode::<Tree>(&[too_deep, end.to_vec()].concat())
            .unwrap_err()
            .kind(),
        ErrorKind::Decode
    );
}

/// A payload of at least 64 KiB, which `recv` reads apart when it is one
/// byte string: a varint (forged or true) and a body of some length
/// around the one it claims, with bytes that are or are not UTF-8.
fn large_payload() -> impl Strategy<Value = Vec<u8>> {
    let body_len = prop_oneof![Just(65_536usize), 65_530usize..70_000, Just(1 << 20)];
    (varint(), body_len, any::<bool>(), any::<u8>(), -2i64..=2).prop_map(
        |(forged, len, text, byte, shift)| {
            // Half the time, a prefix that tells the truth, or nearly.
            let prefix = if text {
                let claimed = (len as i64 + shift).max(0) as u64;
                encode(&claimed).unwrap()
            } else {
                forged
            };
            let fill = if text { b'a' + byte % 26 } else { byte };
            [prefix, vec![fill; len]].concat()
        },
    )
}

/// Receives `payload` as a `T` through a pipe (another thread sends it,
/// then a sentinel), checks the receive's peak memory, that an error is a
/// `Decode` error, and that the sentinel comes next.
fn recv_within_bound<T: DeserializeOwned>(
    payload: &[u8],
    element_size: usize,
) -> Result<(), TestCaseError> {
    let (mut a, mut b) = connection::pipe().unwrap();
    let sent = payload.to_vec();
    let writer = std::thread::spawn(move || {
        a.send_bytes(&sent).unwrap();
        a.send(&"sentinel").unwrap();
    });
    let (result, peak) = peak_during(|| b.recv::<T>());
    // The payload's buffer and, when the type was not a byte string, a
    // joined copy of it; a read chunk ahead of what arrived; the decode.
    let n = payload.len();
    let bound = 2 * n + (1 << 20) + 4 * element_size * n + CONSTANT;
    prop_assert!(
        peak <= bound,
        "{n} bytes received as {} peaked at {peak} bytes, over {bound}",
        std::any::type_name::<T>()
    );
    if let Err(err) = result {
        prop_assert_eq!(err.kind(), ErrorKind::Decode, "{:#}", err);
    }
    prop_assert_eq!(b.recv::<String>().unwrap(), "sentinel");
    writer.join().unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `recv` reads a large payload that is one byte string apart and
    /// offers it to the type whole: forged and true prefixes, bodies that
    /// are and are not UTF-8, types that are and are not byte strings.
    #[test]
    fn large_payloads_received_whole_stay_within_the_bound(payload in large_payload()) {
        recv_within_bound::<String>(&payload, STRING)?;
        recv_within_bound::<connection::serde_bytes::ByteBuf>(&payload, STRING)?;
        recv_within_bound::<Vec<u8>>(&payload, STRING)?;
        recv_within_bound::<Vec<u16>>(&payload, 2)?;
        recv_within_bound::<Vec<Vec<u8>>>(&payload, VEC_VEC_U8)?;
        recv_within_bound::<Tree>(&payload, TREE)?;
    }
}

/// `L0 = []; Ln = [Ln-1, Ln-1]` through the pickle memo, `levels` deep:
/// `2^(levels+1) - 1` lists from a few hundred bytes.
fn memo_doubling_pickle(levels: u32) -> Vec<u8> {
    let mut pickle = b"\x80\x04]\x94".to_vec();
    for level in 0..levels {
        pickle.extend(b"](j");
        pickle.extend(level.to_le_bytes());
        pickle.push(b'j');
        pickle.extend(level.to_le_bytes());
        pickle.extend(b"e\x94");
    }
    pickle.push(b'.');
    pickle
}

/// The worst a small pickle can make `pickle::Value` hold: a value the
/// memo hands out over and over is copied each time, up to the copy
/// budget of 4 Mi values (plus 16 per byte). A `Value` is 32 bytes, and
/// each one here sits in its parent's list once, so the copies cost about
/// 32 bytes per value of the budget; the module docs give the figure.
#[test]
fn a_pickle_value_expanded_through_the_memo_stays_within_its_budget() {
    let budget_values = (4 << 20) + 16 * 300;
    // 2^22 - 1 lists: just inside the budget.
    let fits = memo_doubling_pickle(21);
    let (result, peak) = peak_during(|| connection::pickle::decode::<Value>(&fits));
    let value = result.unwrap();
    assert_eq!(value.as_list().map(<[Value]>::len), Some(2));
    eprintln!(
        "{}-byte pickle, 2^22 - 1 lists as a Value: peak {peak} bytes ({:.1} per value of the budget)",
        fits.len(),
        peak as f64 / budget_values as f64
    );
    assert!(peak <= 40 * budget_values + CONSTANT, "peak {peak}");
    drop(value);
    // One level more is over the budget: refused, having held no more.
    let over = memo_doubling_pickle(22);
    let (result, peak) = peak_during(|| connection::pickle::decode::<Value>(&over));
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(format!("{err:#}").contains("budget"), "{err:#}");
    eprintln!(
        "{}-byte pickle over the budget: peak {peak} bytes before the error",
        over.len()
    );
    assert!(peak <= 40 * budget_values + CONSTANT, "peak {peak}");
}
