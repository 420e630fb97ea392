//! `Value` on its own and through the codec: repr, accessors, conversions,
//! equality, exact types both ways, and hostile pickles read as a `Value`.
//! Against a live CPython: `integration-tests/tests/python_pickle.rs`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde_bytes::ByteBuf;

use connection::pickle::{decode, encode, BigInt, Dict, Value, MAX_DEPTH};
use connection::{ErrorKind, Result};

use crate::pickle::nested_lists;

fn big(exponent: u32, negative: bool) -> Value {
    // 2**exponent, or its negation, from two's complement bytes.
    let mut bytes = vec![0u8; exponent as usize / 8 + 2];
    bytes[exponent as usize / 8] = 1 << (exponent % 8);
    let value = BigInt::from_signed_bytes_le(&bytes);
    if !negative {
        return value.into();
    }
    let mut negated: Vec<u8> = bytes.iter().map(|b| !b).collect();
    for byte in &mut negated {
        let (sum, carry) = byte.overflowing_add(1);
        *byte = sum;
        if !carry {
            break;
        }
    }
    BigInt::from_signed_bytes_le(&negated).into()
}

fn set(items: impl IntoIterator<Item = Value>) -> BTreeSet<Value> {
    items.into_iter().collect()
}

fn refused(pickle: &[u8]) -> String {
    let err = decode::<Value>(pickle).expect_err("hostile pickle decoded");
    assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
    format!("{err:#}")
}

#[test]
fn debug_reads_like_python_repr() {
    // Each right-hand side is what CPython 3.11's repr() printed.
    let cases: Vec<(Value, &str)> = vec![
        (Value::None, "None"),
        (true.into(), "True"),
        ((-5).into(), "-5"),
        (big(100, false), "1267650600228229401496703205376"),
        (big(100, true), "-1267650600228229401496703205376"),
        (1.0.into(), "1.0"),
        (1e16.into(), "1e+16"),
        (1.5e-5.into(), "1.5e-05"),
        (0.0001.into(), "0.0001"),
        ((-0.0).into(), "-0.0"),
        (f64::INFINITY.into(), "inf"),
        (f64::NAN.into(), "nan"),
        (123456789.125.into(), "123456789.125"),
        (1e22.into(), "1e+22"),
        (2.5e-300.into(), "2.5e-300"),
        ("it's".into(), "\"it's\""),
        ("say \"hi\"".into(), "'say \"hi\"'"),
        ("both ' and \"".into(), "'both \\' and \"'"),
        ("tab\tnl\n\0\x7fé✓".into(), "'tab\\tnl\\n\\x00\\x7fé✓'"),
        (Value::Bytes(b"a\0\xff'".to_vec()), "b\"a\\x00\\xff'\""),
        (Value::ByteArray(b"xy".to_vec()), "bytearray(b'xy')"),
        (Value::List(vec![]), "[]"),
        (Value::from(vec![Value::from(1), "a".into()]), "[1, 'a']"),
        (Value::Tuple(vec![]), "()"),
        ((1,).into(), "(1,)"),
        ((1, 2).into(), "(1, 2)"),
        (Value::Set(BTreeSet::new()), "set()"),
        (Value::Set(set([3.into()])), "{3}"),
        (Value::FrozenSet(BTreeSet::new()), "frozenset()"),
        (
            Value::FrozenSet(set([(1, 2).into()])),
            "frozenset({(1, 2)})",
        ),
        (Value::Dict(Dict::new()), "{}"),
        (
            Value::from_iter([
                (
                    Value::from("a"),
                    Value::from((1, ByteBuf::from(b"x".to_vec()))),
                ),
                ((1, 2).into(), Value::None),
            ]),
            "{'a': (1, b'x'), (1, 2): None}",
        ),
    ];
    for (value, repr) in cases {
        assert_eq!(format!("{value:?}"), repr);
    }
}

#[test]
fn accessors_and_indexing() {
    let value = Value::from_iter([
        (Value::from("list"), Value::from(vec![10, 20, 30])),
        ("tuple".into(), (1.5, "x").into()),
        ("bytes".into(), Value::ByteArray(b"ab".to_vec())),
        ((1, 2).into(), "pair".into()),
        ("big".into(), u128::MAX.into()),
    ]);
    assert_eq!(value["list"][0].as_int(), Some(10));
    assert_eq!(value["list"][-1].as_int(), Some(30));
    assert!(value["list"].get(3).is_none() && value["list"].get(-4).is_none());
    assert_eq!(value["tuple"][0].as_float(), Some(1.5));
    assert_eq!(value["tuple"].as_tuple().map(<[Value]>::len), Some(2));
    assert!(value["tuple"].as_list().is_none());
    assert_eq!(value["tuple"].as_seq().map(<[Value]>::len), Some(2));
    assert_eq!(value["bytes"].as_bytes(), Some(&b"ab"[..]));
    assert_eq!(value[(1, 2)].as_str(), Some("pair"));
    assert_eq!(value["big"].as_int(), None);
    assert_eq!(
        value["big"].to_bigint().map(|n| u128::try_from(n).unwrap()),
        Some(u128::MAX)
    );
    assert_eq!(value.as_dict().map(Dict::len), Some(5));
    assert!(value.get("missing").is_none());
    assert!(Value::from(1).get(0).is_none());
    assert_eq!(Value::from(true).as_int(), None);
    assert_eq!(Value::from(1).as_bool(), None);
    assert!(Value::from(()).is_none());
    assert_eq!(value["tuple"].type_name(), "tuple");
}

#[test]
#[should_panic(expected = "has no item 'missing' (dict index)")]
fn indexing_a_missing_key_panics_like_key_error() {
    let _ = &Value::from_iter([("a", 1)])["missing"];
}

#[test]
fn from_impls_pick_the_python_type() {
    assert_eq!(Value::from(i64::MIN), Value::Int(i64::MIN));
    assert!(matches!(Value::from(u64::MAX), Value::BigInt(_)));
    assert!(matches!(Value::from(i128::from(i64::MAX)), Value::Int(_)));
    assert_eq!(Value::from(7u8), Value::Int(7));
    assert_eq!(Value::from(2.5f32), Value::Float(2.5));
    assert_eq!(Value::from('é'), Value::Str("é".into()));
    assert_eq!(Value::from(None::<i32>), Value::None);
    assert_eq!(Value::from(Some("x")), Value::Str("x".into()));
    assert_eq!(
        Value::from(ByteBuf::from(vec![1, 2])),
        Value::Bytes(vec![1, 2])
    );
    assert_eq!(
        Value::from(vec![1u8, 2]),
        Value::List(vec![1.into(), 2.into()])
    );
    assert_eq!(
        Value::from(&["a", "b"][..]),
        Value::List(vec!["a".into(), "b".into()])
    );
    assert_eq!(
        Value::from((1, "a", None::<u8>)),
        Value::Tuple(vec![1.into(), "a".into(), Value::None])
    );
    assert_eq!(
        Value::from(HashSet::from([1, 2])),
        Value::Set(set([1.into(), 2.into()]))
    );
    assert_eq!(
        Value::from(BTreeMap::from([("k", vec![1])])),
        Value::from(HashMap::from([("k", vec![1])]))
    );
}

#[test]
fn equality_and_hashing_follow_the_documented_choices() {
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    let same = |a: Value, b: Value| {
        assert_eq!(a, b);
        assert_eq!(state.hash_one(&a), state.hash_one(&b), "{a:?} {b:?}");
    };
    same(Value::Float(0.0), Value::Float(-0.0));
    same(Value::Float(f64::NAN), Value::Float(-f64::NAN));
    same(Value::Int(5), Value::BigInt(BigInt::from(5)));
    same(
        Value::FrozenSet(set([1.into(), "a".into()])),
        Value::FrozenSet(set(["a".into(), 1.into()])),
    );
    same(
        Value::from_iter([("a", 1), ("b", 2)]),
        Value::from_iter([("b", 2), ("a", 1)]),
    );
    // Python's types stay apart.
    assert_ne!(Value::Int(1), Value::Bool(true));
    assert_ne!(Value::Int(1), Value::Float(1.0));
    assert_ne!(Value::Tuple(vec![]), Value::List(vec![]));
    assert_ne!(Value::Bytes(vec![]), Value::ByteArray(vec![]));
    assert_ne!(
        Value::Set(BTreeSet::new()),
        Value::FrozenSet(BTreeSet::new())
    );
    // NaN keys are one key; 0.0 and -0.0 too, keeping the first.
    let dict: Dict = [(f64::NAN, 1), (f64::NAN, 2), (0.0, 3), (-0.0, 4)]
        .into_iter()
        .collect();
    assert_eq!(format!("{:?}", Value::Dict(dict)), "{nan: 2, 0.0: 4}");
    // Numbers sort numerically across both int variants.
    let sorted: Vec<String> = set([u128::MAX.into(), (-1).into(), big(70, true), 3.into()])
        .iter()
        .map(|v| format!("{v:?}"))
        .collect();
    assert_eq!(
        sorted,
        [
            "-1180591620717411303424",
            "-1",
            "3",
            "340282366920938463463374607431768211455"
        ]
    );
}

/// `ForkingPickler.dumps(obj)` by CPython 3.11 of an object holding every
/// plain type, nested, with tuple and frozenset keys, and `repr(obj)`
/// (sets of at most one item, so that the repr has one order).
pub(crate) const CPYTHON_EVERY_TYPE: &[u8] = b"\x80\x04\x95L\x01\x00\x00\x00\x00\x00\x00]\x94(N\x88\x89K\x00J\xff\xff\xff\xff\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x7f\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80\x8a\x09\x00\x00\x00\x00\x00\x00\x00\x00\x01\x8a\x0d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10\x8a\x0d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0G?\xf8\x00\x00\x00\x00\x00\x00G\x7f\xf0\x00\x00\x00\x00\x00\x00G\xff\xf0\x00\x00\x00\x00\x00\x00G\x7f\xf8\x00\x00\x00\x00\x00\x00G\x80\x00\x00\x00\x00\x00\x00\x00G>z\xd7\xf2\x9a\xbc\xafH\x8c\x00\x94\x8c\x0ch\xc3\xa9llo \xe2\x9c\x93\x0a'\x94C\x00\x94C\x04\x00\xff'\x22\x94\x8c\x08builtins\x94\x8c\x09bytearray\x94\x93\x94)R\x94h\x07C\x02ab\x94\x85\x94R\x94]\x94)K\x01\x85\x94K\x01\x8c\x01a\x94N\x87\x94\x8f\x94\x8f\x94(K\x03\x90(\x91\x94(K\x01K\x02\x86\x94\x91\x94}\x94}\x94(h\x13\x8c\x04pair\x94(h\x0e\x91\x94]\x94\x8f\x94aC\x01k\x94h\x07C\x01v\x94\x85\x94R\x94N]\x94\x85\x94\x8a\x0d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf0G?\xf8\x00\x00\x00\x00\x00\x00\x88h\x0dG@\x04\x00\x00\x00\x00\x00\x00}\x94\x8c\x01n\x94K\x01K\x02K\x03\x85\x94\x86\x94\x86\x94sue.";
const CPYTHON_EVERY_TYPE_REPR: &str = "[None, True, False, 0, -1, 9223372036854775807, -9223372036854775808, 18446744073709551616, 1267650600228229401496703205376, -1267650600228229401496703205376, 1.5, inf, -inf, nan, -0.0, 1e-07, '', \"héllo ✓\\n'\", b'', b'\\x00\\xff\\'\"', bytearray(b''), bytearray(b'ab'), [], (), (1,), (1, 'a', None), set(), {3}, frozenset(), frozenset({(1, 2)}), {}, {(1, 2): 'pair', frozenset({'a'}): [set()], b'k': bytearray(b'v'), None: ([],), -1267650600228229401496703205376: 1.5, True: (1,), 2.5: {'n': (1, (2, (3,)))}}]";

#[test]
fn reads_every_type_as_cpython_wrote_it_and_writes_it_back() -> Result<()> {
    let value = decode::<Value>(CPYTHON_EVERY_TYPE)?;
    // The repr shows every type, dict order, -0.0 and nan as Python does.
    assert_eq!(format!("{value:?}"), CPYTHON_EVERY_TYPE_REPR);
    let items = value.as_list().unwrap();
    assert!(matches!(items[8], Value::BigInt(_)));
    assert!(items[13].as_float().unwrap().is_nan());
    assert!(items[14].as_float().unwrap().is_sign_negative());
    let back = decode::<Value>(&encode(&value)?)?;
    assert_eq!(back, value);
    assert_eq!(format!("{back:?}"), CPYTHON_EVERY_TYPE_REPR);
    // A value inside other serde types keeps its types too.
    let wrapped: (Value, Option<Value>) = decode(&encode(&(&value, Some(&value)))?)?;
    assert_eq!(wrapped, (value.clone(), Some(value)));
    Ok(())
}

#[test]
fn reads_what_cpython_writes_for_bytearray_frozenset_and_wide_ints() -> Result<()> {
    // pickle.dumps((bytearray(b"ab"), frozenset({1}), {2}, 2**100, (3,)), p)
    // for p in 2, 3, 4, 5, from CPython 3.11.
    let pickles: [&[u8]; 4] = [
        b"\x80\x02(c__builtin__\x0abytearray\x0aq\x00c_codecs\x0aencode\x0aq\x01X\x02\x00\x00\x00abq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05\x85q\x06Rq\x07c__builtin__\x0afrozenset\x0aq\x08]q\x09K\x01a\x85q\x0aRq\x0bc__builtin__\x0aset\x0aq\x0c]q\x0dK\x02a\x85q\x0eRq\x0f\x8a\x0d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10K\x03\x85q\x10tq\x11.",
        b"\x80\x03(cbuiltins\x0abytearray\x0aq\x00C\x02abq\x01\x85q\x02Rq\x03cbuiltins\x0afrozenset\x0aq\x04]q\x05K\x01a\x85q\x06Rq\x07cbuiltins\x0aset\x0aq\x08]q\x09K\x02a\x85q\x0aRq\x0b\x8a\x0d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10K\x03\x85q\x0ctq\x0d.",
        b"\x80\x04\x95D\x00\x00\x00\x00\x00\x00\x00(\x8c\x08builtins\x94\x8c\x09bytearray\x94\x93\x94C\x02ab\x94\x85\x94R\x94(K\x01\x91\x94\x8f\x94(K\x02\x90\x8a\x0d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10K\x03\x85\x94t\x94.",
        b"\x80\x05\x95.\x00\x00\x00\x00\x00\x00\x00(\x96\x02\x00\x00\x00\x00\x00\x00\x00ab\x94(K\x01\x91\x94\x8f\x94(K\x02\x90\x8a\x0d\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x10K\x03\x85\x94t\x94.",
    ];
    let expected = Value::Tuple(vec![
        Value::ByteArray(b"ab".to_vec()),
        Value::FrozenSet(set([1.into()])),
        Value::Set(set([2.into()])),
        big(100, false),
        (3,).into(),
    ]);
    for pickle in pickles {
        assert_eq!(decode::<Value>(pickle)?, expected, "{pickle:?}");
    }
    // Plain serde types still read them as before.
    let (bytes, frozen, _, wide, _): (Vec<u8>, Vec<u8>, BTreeSet<u8>, u128, (u8,)) =
        decode(pickles[2])?;
    assert_eq!((bytes, frozen, wide), (b"ab".to_vec(), vec![1], 1 << 100));
    // And BigInt reads any int.
    let wide: (BigInt, BigInt, BigInt, BigInt, BigInt) =
        decode(&encode(&(1, -1, u128::MAX, i128::MIN, big(300, true)))?)?;
    assert_eq!(wide.2, BigInt::from(u128::MAX));
    assert_eq!(Value::from(wide.4), big(300, true));
    Ok(())
}

#[test]
fn repeated_keys_keep_the_last_value_as_python_does() -> Result<()> {
    // {1: 2, "a": 0, 1: 3} written by hand (CPython never repeats a key).
    let value = decode::<Value>(b"\x80\x04}(K\x01K\x02\x8c\x01aK\x00K\x01K\x03u.")?;
    assert_eq!(format!("{value:?}"), "{1: 3, 'a': 0}");
    Ok(())
}

#[test]
fn unhashable_keys_and_set_items_are_refused_both_ways() {
    let cases: [(&[u8], &str); 6] = [
        // {[]: 1}
        (
            b"\x80\x04}]K\x01s.",
            "unhashable type: 'list' cannot be a dict key",
        ),
        // {([],): 1}: a tuple holding a list
        (
            b"\x80\x04}]\x85K\x01s.",
            "unhashable type: 'list' cannot be a dict key",
        ),
        // {bytearray(b"a"): 1}
        (
            b"\x80\x05}\x96\x01\x00\x00\x00\x00\x00\x00\x00aK\x01s.",
            "unhashable type: 'bytearray'",
        ),
        // {{}}: a set holding a dict
        (
            b"\x80\x04\x8f(}\x90.",
            "unhashable type: 'dict' cannot be a set item",
        ),
        // frozenset({set()})
        (
            b"\x80\x04(\x8f\x91.",
            "unhashable type: 'set' cannot be a frozenset item",
        ),
        // {frozenset({(1, [])}): 0}, the list two levels down
        (
            b"\x80\x04}(K\x01]\x86\x91K\x00s.",
            "cannot be a frozenset item",
        ),
    ];
    for (pickle, expected) in cases {
        let err = refused(pickle);
        assert!(err.contains(expected), "{expected}: {err}");
    }
    for value in [
        Value::from_iter([(Value::List(vec![]), 1)]),
        Value::from_iter([(Value::from((1, Value::Dict(Dict::new()))), 1)]),
        Value::Set(set([Value::ByteArray(vec![])])),
    ] {
        let err = encode(&value).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Encode);
        assert!(format!("{err:#}").contains("unhashable type"), "{err:#}");
    }
}

#[test]
fn hostile_pickles_get_clear_errors() {
    // Each list is one level for a Value: the root and 128 levels below.
    assert!(decode::<Value>(&nested_lists(MAX_DEPTH + 1)).is_ok());
    for depth in [MAX_DEPTH + 2, 1_000_000] {
        let err = refused(&nested_lists(depth));
        assert!(err.contains("nested deeper than 128"), "{err}");
    }
    // Tuples and frozensets go through the exact path: bounded as well.
    let mut tuples = vec![0x80, 4, b')'];
    tuples.extend(std::iter::repeat(0x85).take(100_000)); // TUPLE1
    tuples.push(b'.');
    assert!(refused(&tuples).contains("nested deeper"));
    // A list that contains itself.
    assert!(refused(b"\x80\x04]\x94h\x00a.").contains("contains itself"));
    // Claimed sizes far past the message, before anything is set aside.
    for opcode in [0x8d_u8, 0x8e, 0x96] {
        let mut pickle = vec![0x80, 5, opcode];
        pickle.extend((1u64 << 63).to_le_bytes());
        pickle.extend(b"abc.");
        assert!(refused(&pickle).contains("claims 9223372036854775808 bytes"));
    }
    assert!(refused(b"\x80\x04\x8b\xff\xff\xff\x7f\x01.").contains("LONG4 claims"));
    // The copy budget holds for a Value as for any type: see
    // tests/decode_bounds.rs, which measures its memory.
    // Classes are refused as for any type.
    assert!(
        refused(b"\x80\x04\x8c\x08__main__\x8c\x05Point\x93)\x81}b.").contains("__main__.Point")
    );
}

#[test]
fn other_formats_get_what_they_can_express() {
    let value = Value::from_iter([
        (Value::from("t"), Value::from((1, "a"))),
        ("b".into(), Value::Bytes(b"\x01".to_vec())),
        ("s".into(), Value::FrozenSet(set([2.into()]))),
        ("n".into(), Value::None),
        ("i".into(), u128::MAX.into()),
    ]);
    let json = serde_json::to_string(&value).unwrap();
    assert_eq!(
        json,
        r#"{"t":[1,"a"],"b":[1],"s":[2],"n":null,"i":340282366920938463463374607431768211455}"#
    );
    let back: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        format!("{back:?}"),
        "{'t': [1, 'a'], 'b': [1], 's': [2], 'n': None, 'i': 3.402823669209385e+38}"
    );
    let err = serde_json::to_string(&Value::from_iter([((1, 2), 3)])).unwrap_err();
    assert!(err.to_string().contains("key must be a string"), "{err}");
    // send/recv's own format does not describe itself: a Value cannot be
    // read back from it, as the docs say.
    let err = connection::decode::<Value>(&connection::encode(&value).unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
}

#[test]
fn a_value_is_as_small_as_the_memory_bound_says() {
    // The module docs' figure for memo expansion into a Value rests on it.
    assert_eq!(std::mem::size_of::<Value>(), 32);
}
