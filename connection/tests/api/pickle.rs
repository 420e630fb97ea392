//! The codec alone, on pickles CPython 3.11 wrote (copied from
//! `ForkingPickler.dumps(obj, protocol)`) and on hostile ones written by
//! hand. The same values against a live Python are in
//! `integration-tests/tests/python_pickle.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use connection::pickle::{decode, encode, Value, MAX_DEPTH};
use connection::{ErrorKind, Result};

use crate::pickle_value::CPYTHON_EVERY_TYPE;

fn refused<T: serde::de::DeserializeOwned + std::fmt::Debug>(pickle: &[u8]) -> String {
    let err = decode::<T>(pickle).expect_err("hostile pickle decoded");
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    // The alternate form appends the cause, where the details are.
    format!("{err:#}")
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Command {
    Stop,
    Wait(u32),
    Move { x: i32, y: i32 },
    Pair(String, bool),
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Job {
    name: String,
    args: Vec<f64>,
    limits: BTreeMap<String, u64>,
    tag: Option<char>,
    commands: Vec<Command>,
    pair: (i8, u128),
}

#[test]
fn values_round_trip() -> Result<()> {
    let job = Job {
        name: "héllo".repeat(100),
        args: vec![1.5, -0.0, f64::INFINITY],
        limits: BTreeMap::from([("a".into(), u64::MAX), ("b".into(), 300)]),
        tag: Some('é'),
        commands: vec![
            Command::Stop,
            Command::Wait(70_000),
            Command::Move { x: -1, y: i32::MIN },
            Command::Pair("p".into(), false),
        ],
        pair: (-128, u128::MAX),
    };
    assert_eq!(decode::<Job>(&encode(&job)?)?, job);
    for n in [
        0i128,
        255,
        256,
        65535,
        65536,
        -1,
        -129,
        i128::from(i64::MIN),
        i128::MIN,
    ] {
        assert_eq!(decode::<i128>(&encode(&n)?)?, n, "{n}");
    }
    let keys: HashMap<(u8, String), ()> = HashMap::from([((1, "k".into()), ())]);
    assert_eq!(decode::<HashMap<(u8, String), ()>>(&encode(&keys)?)?, keys);
    Ok(())
}

#[test]
fn writes_what_cpython_writes_for_small_values() -> Result<()> {
    // pickle.dumps(x, protocol=4) without frames and memo, opcode for opcode.
    assert_eq!(
        encode(&(1, "a", None::<()>))?,
        b"\x80\x04K\x01\x8c\x01aN\x87."
    );
    assert_eq!(encode(&-1i32)?, b"\x80\x04J\xff\xff\xff\xff.");
    assert_eq!(
        encode(&(1u64 << 63))?,
        b"\x80\x04\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x80\x00."
    );
    assert_eq!(encode(&vec![true])?, b"\x80\x04](\x88e.");
    Ok(())
}

#[test]
fn reads_cpython_sets_bytes_and_bytearrays_in_every_protocol() -> Result<()> {
    let cases: [(&[u8], &[u8]); 8] = [
        (b"\x80\x02c_codecs\nencode\nq\x00X\x02\x00\x00\x00abq\x01X\x06\x00\x00\x00latin1q\x02\x86q\x03Rq\x04.", b"ab"),
        (b"\x80\x02c__builtin__\nbytes\nq\x00)Rq\x01.", b""),
        (b"\x80\x02c__builtin__\nbytearray\nq\x00c_codecs\nencode\nq\x01X\x02\x00\x00\x00abq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07.", b"ab"),
        (b"\x80\x03cbuiltins\nbytearray\nq\x00C\x02abq\x01\x85q\x02Rq\x03.", b"ab"),
        (b"\x80\x03cbuiltins\nbytearray\nq\x00)Rq\x01.", b""),
        (b"\x80\x04\x95#\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\tbytearray\x94\x93\x94C\x02ab\x94\x85\x94R\x94.", b"ab"),
        (b"\x80\x05\x95\r\x00\x00\x00\x00\x00\x00\x00\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x94.", b"ab"),
        (b"\x80\x03C\x02abq\x00.", b"ab"),
    ];
    for (pickle, bytes) in cases {
        assert_eq!(decode::<Vec<u8>>(pickle)?, bytes, "{pickle:?}");
    }
    let sets: [(&[u8], &[u32]); 5] = [
        (
            b"\x80\x02c__builtin__\nset\nq\x00]q\x01(K\x01K\x02e\x85q\x02Rq\x03.",
            &[1, 2],
        ),
        (
            b"\x80\x03cbuiltins\nfrozenset\nq\x00]q\x01K\x03a\x85q\x02Rq\x03.",
            &[3],
        ),
        (
            b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00\x8f\x94(K\x01K\x02\x90.",
            &[1, 2],
        ),
        (b"\x80\x05\x8f\x94.", &[]),
        (
            b"\x80\x05\x95\x06\x00\x00\x00\x00\x00\x00\x00(K\x03\x91\x94.",
            &[3],
        ),
    ];
    for (pickle, items) in sets {
        let expected: BTreeSet<u32> = items.iter().copied().collect();
        assert_eq!(decode::<BTreeSet<u32>>(pickle)?, expected, "{pickle:?}");
    }
    Ok(())
}

#[test]
fn reads_memoized_keys_and_shared_values() -> Result<()> {
    // [{"a": 1}, {"a": 2}, 2**64]: the second "a" is a BINGET of the first.
    let pickle = b"\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00]\x94(}\x94\x8c\x01a\x94K\x01s}\x94h\x02K\x02s\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01e.";
    type Dict = HashMap<String, u8>;
    let (first, second, big): (Dict, Dict, u128) = decode(pickle)?;
    assert_eq!((first["a"], second["a"]), (1, 2));
    assert_eq!(big, 1 << 64);
    let err = refused::<(Dict, Dict, u64)>(pickle);
    assert!(err.contains("18446744073709551616"), "{err}");
    Ok(())
}

#[test]
fn integers_too_wide_for_rust_are_errors() {
    let mut pickle = b"\x80\x04\x8a\x20".to_vec();
    pickle.extend([0x11; 32]);
    pickle.push(b'.');
    let err = refused::<u128>(&pickle);
    assert!(err.contains("32 bytes"), "{err}");
    // A long form padded with sign bytes is still a small number.
    let padded = b"\x80\x04\x8a\x12\xfe\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff.";
    assert_eq!(decode::<i8>(padded).unwrap(), -2);
}

#[test]
fn enums_are_names_or_one_entry_dicts() -> Result<()> {
    assert_eq!(decode::<Command>(&encode("Stop")?)?, Command::Stop);
    let moved = HashMap::from([("Move", HashMap::from([("x", 1), ("y", 2)]))]);
    assert_eq!(
        decode::<Command>(&encode(&moved)?)?,
        Command::Move { x: 1, y: 2 }
    );
    let err = refused::<Command>(&encode(&[1, 2])?);
    assert!(err.contains("enum"), "{err}");
    Ok(())
}

#[test]
fn classes_and_functions_are_refused_by_name() {
    // os.system("id") as a pickle, protocol 0 globals and protocol 4's.
    let err = refused::<()>(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.");
    assert!(err.contains("GLOBAL os.system"), "{err}");
    let err = refused::<()>(b"\x80\x04\x8c\x08__main__\x8c\x05Point\x93)\x81}b.");
    assert!(err.contains("STACK_GLOBAL __main__.Point"), "{err}");
    for (opcode, pickle) in [
        ("INST", &b"\x80\x02(imod\nCls\n."[..]),
        ("OBJ", b"\x80\x02(o."),
        ("NEWOBJ", b"\x80\x02N)\x81."),
        ("BUILD", b"\x80\x02N}b."),
        ("EXT1", b"\x80\x02\x82\x01."),
        ("PERSID", b"\x80\x02Pid\n."),
        ("NEXT_BUFFER", b"\x80\x05\x97."),
    ] {
        let err = refused::<()>(pickle);
        assert!(
            err.contains(&format!("refused {opcode}")),
            "{opcode}: {err}"
        );
    }
    // A whitelisted global with arguments CPython never writes.
    let err = refused::<Vec<u8>>(b"\x80\x03cbuiltins\nbytearray\nK\x05\x85R.");
    assert!(err.contains("builtins.bytearray"), "{err}");
    let err = refused::<()>(b"\x80\x02I1\n.");
    assert!(err.contains("protocol 0"), "{err}");
}

#[test]
fn claimed_lengths_are_never_allocated() {
    for opcode in [0x8d_u8, 0x8e, 0x96] {
        // BINUNICODE8, BINBYTES8, BYTEARRAY8 claiming 2^63 bytes.
        let mut pickle = vec![0x80, 5, opcode];
        pickle.extend((1u64 << 63).to_le_bytes());
        pickle.extend(b"abc.");
        let err = refused::<Vec<u8>>(&pickle);
        assert!(err.contains("claims 9223372036854775808 bytes"), "{err}");
    }
    let err = refused::<u8>(b"\x80\x04\x8b\xff\xff\xff\x7f\x01.");
    assert!(err.contains("LONG4 claims"), "{err}");
    let err = refused::<u8>(b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffK\x01.");
    assert!(err.contains("FRAME claims"), "{err}");
}

#[test]
fn every_truncation_of_a_real_pickle_is_an_error() {
    let whole = b"\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00]\x94(}\x94\x8c\x01a\x94K\x01s}\x94h\x02K\x02s\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01e.";
    for end in 0..whole.len() {
        refused::<(HashMap<String, u8>, HashMap<String, u8>, u128)>(&whole[..end]);
    }
    let err = refused::<u8>(b"\x80\x04K\x01.K");
    assert!(err.contains("left over"), "{err}");
}

/// `depth` nested lists: `[[[...]]]`, built without recursion.
pub(crate) fn nested_lists(depth: usize) -> Vec<u8> {
    let mut pickle = vec![0x80, 4];
    pickle.extend(std::iter::repeat(b']').take(depth));
    pickle.extend(std::iter::repeat(b'a').take(depth - 1));
    pickle.push(b'.');
    pickle
}

#[derive(Deserialize, Debug)]
struct Nest(#[allow(dead_code)] Vec<Nest>);

#[test]
fn nesting_is_bounded_and_never_overflows_the_stack() {
    // Each list is two levels here: the newtype `Nest` and its `Vec`.
    assert!(decode::<Nest>(&nested_lists(MAX_DEPTH / 2)).is_ok());
    for depth in [MAX_DEPTH + 2, 1_000_000] {
        let err = refused::<Nest>(&nested_lists(depth));
        assert!(err.contains("nested deeper"), "{err}");
    }
    // A list that contains itself: EMPTY_LIST MEMOIZE BINGET 0 APPEND.
    let err = refused::<Nest>(b"\x80\x04]\x94h\x00a.");
    assert!(err.contains("contains itself"), "{err}");
}

#[test]
fn memo_reuse_cannot_expand_a_small_pickle_without_bound() {
    // L0 = []; each Ln = [Ln-1, Ln-1] through the memo: 2^60 leaves.
    let mut pickle = b"\x80\x04]\x94".to_vec();
    for level in 0..60u32 {
        pickle.extend(b"](");
        pickle.push(b'j');
        pickle.extend(level.to_le_bytes());
        pickle.push(b'j');
        pickle.extend(level.to_le_bytes());
        pickle.extend(b"e\x94");
    }
    pickle.push(b'.');
    let err = refused::<Vec<Nest>>(&pickle);
    assert!(err.contains("budget"), "{err}");
    // bytearray(s) of one memoized latin1 string, a thousand times over.
    let mut pickle = b"\x80\x02c_codecs\nencode\nq\x00X\x00\x10\x00\x00".to_vec();
    pickle.extend([b'x'; 4096]);
    pickle.extend(b"q\x01X\x06\x00\x00\x00latin1q\x02(");
    for _ in 0..1000 {
        pickle.extend(b"h\x00h\x01h\x02\x86R");
    }
    pickle.extend(b"l.");
    let err = refused::<Vec<Vec<u8>>>(&pickle);
    assert!(err.contains("copies more than the message"), "{err}");
}

#[test]
fn memo_misuse_is_an_error() {
    let err = refused::<u8>(b"\x80\x04h\x07.");
    assert!(err.contains("memo entry 7"), "{err}");
    let err = refused::<u8>(b"\x80\x04\x94.");
    assert!(err.contains("MEMOIZE finds too few"), "{err}");
    // Sparse indices cost one entry each, not a table up to the index.
    assert_eq!(decode::<u8>(b"\x80\x04K\x05r\xff\xff\xff\xff.").unwrap(), 5);
}

#[test]
fn random_corruption_of_real_pickles_never_panics() {
    let seeds: Vec<Vec<u8>> = vec![
        encode(&Job {
            name: "n".into(),
            args: vec![1.0],
            limits: BTreeMap::from([("k".into(), 1)]),
            tag: None,
            commands: vec![Command::Wait(3), Command::Stop],
            pair: (1, 2),
        })
        .unwrap(),
        b"\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00]\x94(}\x94\x8c\x01a\x94K\x01s}\x94h\x02K\x02s\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01e.".to_vec(),
        b"\x80\x02c__builtin__\nbytearray\nq\x00c_codecs\nencode\nq\x01X\x02\x00\x00\x00abq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07.".to_vec(),
        CPYTHON_EVERY_TYPE.to_vec(),
    ];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..30_000 {
        let mut pickle = seeds[round % seeds.len()].clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % pickle.len() as u64) as usize;
            pickle[at] = next() as u8;
        }
        let _ = decode::<Job>(&pickle);
        let _ = decode::<(HashMap<String, u8>, HashMap<String, u8>, u128)>(&pickle);
        let _ = decode::<Vec<u8>>(&pickle);
        if let Ok(value) = decode::<Value>(&pickle) {
            let _ = format!("{value:?}");
        }
    }
}

#[test]
fn recv_hints_at_recv_pickle_and_the_reverse() -> Result<()> {
    let (mut a, mut b) = connection::pipe()?;
    a.send_pickle(&HashMap::from([("x", "y")]))?;
    a.send(&7u32)?;
    let err = b.recv::<u32>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(format!("{err:#}").contains("use recv_pickle"), "{err:#}");
    let err = b.recv_pickle::<u32>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(format!("{err:#}").contains("sent with send()"), "{err:#}");

    // Both messages were consumed: the connection goes on.
    a.send_pickle(&[1u8, 2])?;
    assert_eq!(b.recv_pickle::<[u8; 2]>()?, [1, 2]);
    Ok(())
}

#[test]
fn a_recursive_type_cannot_recurse_on_one_node() {
    // `Option` and newtype levels count toward the depth limit: without
    // that, the int 1 read as this type recursed until the stack overflowed.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Nest(Option<Box<Nest>>);
    let message = refused::<Nest>(b"\x80\x04K\x01.");
    assert!(message.contains("nested deeper"), "{message}");
}
