//! Pickles between Rust and the machine's CPython: Python's `send()` of
//! every type the codec maps, in protocols 2 to 5, read with `recv_pickle`;
//! Rust's `send_pickle` of the matching values read by Python's `recv()`
//! and compared there, type for type; hostile pickles from a real Python
//! peer refused with the connection left usable; and the same over a
//! `Listener`/`Client` pair with an authkey.
//!
//! A test skips (saying so on stderr) only where python3 is missing. Every
//! test holds a watchdog and waits for Python with a deadline; nothing
//! asserts on time.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::Duration;

use connection::pickle::{BigInt, Dict, Value};
use connection::{pipe, Address, Client, Connection, ErrorKind, Listener};
use integration_tests::{python3, wait_with_deadline, Watchdog};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

const LIMIT: Duration = Duration::from_secs(120);

/// Values and helpers both Python scripts use: `CASES` are sent to Rust,
/// `BACK` is what Rust's `send_pickle` must turn into, and `same` compares
/// type for type (so `True` is not `1` and a tuple is not a list).
const PY_COMMON: &str = r#"
import os, sys, pickle
from multiprocessing.connection import Connection, Client, Listener
from multiprocessing.reduction import ForkingPickler

x = [1, 2]
NESTED = {"name": "job", "args": (1, 2.5),
          "meta": {"tags": ["a", "b"], "data": b"\x01", "seen": {3}},
          "shared": [x, x]}
CASES = [None, True, False, 0, -1, 255, 65536, -2**31, 2**63 - 1, -2**63,
         2**64 - 1, 2**64, 2**100, 1.5, "", "h\u00e9llo \u2713", "x" * 300,
         b"", b"\x00\xff" * 200, bytearray(b"ab"), bytearray(), [1, 2, 3],
         (1, "a", None), {"a": 1, "b": 2}, {1, 2, 3}, frozenset({"x"}), set(),
         {(1, 2): "pair"}, NESTED, [{"k": i} for i in range(300)]]
BACK = [None, True, False, 0, -1, 255, 65536, -2**31, 2**63 - 1, -2**63,
        2**64 - 1, 2**100, 1.5, "", "h\u00e9llo \u2713", "x" * 300,
        b"", b"\x00\xff" * 200, [1, 2, 3], (1, "a", None), {"a": 1, "b": 2},
        [1, 2, 3], {(1, 2): "pair"},
        {"name": "job", "args": (1, 2.5),
         "meta": {"tags": ["a", "b"], "data": b"\x01", "seen": [3]},
         "shared": [[1, 2], [1, 2]]},
        [{"k": i} for i in range(300)],
        "Stop", {"Move": {"x": 1, "y": -2}}, {"Pair": ("p", True)},
        2**128 - 1, -2**127]

def same(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(p, q) for p, q in zip(a, b))
    return a == b

def check_back(c):
    for i, want in enumerate(BACK):
        got = c.recv()
        if not same(got, want):
            print("MISMATCH", i, repr(got)[:200], "!=", repr(want)[:200], flush=True)
            sys.exit(1)
"#;

/// `python3 -c PY_PIPE`: the pipe end is in `CONN` (`fd:mode`). Sends the
/// cases in protocols 2 to 5 and with plain `send`, checks what comes
/// back, then sends hostile pickles, each followed by a good one.
const PY_PIPE: &str = r#"
import dataclasses
@dataclasses.dataclass
class Point:
    x: int
c = Connection(int(os.environ["CONN"].split(":")[0]))
for protocol in (2, 3, 4, 5):
    for value in CASES:
        c.send_bytes(ForkingPickler.dumps(value, protocol))
for value in CASES:
    c.send(value)
check_back(c)
big = b"\x80\x05\x8e" + (1 << 62).to_bytes(8, "little") + b"abc."
for hostile in (ForkingPickler.dumps(Point(1)), ForkingPickler.dumps(os.system),
                big, b"\x80\x04" + b"]" * 100000 + b"a" * 99999 + b".",
                b"\x80\x04\x95\xff\x00\x00\x00\x00\x00\x00\x00K\x01"):
    c.send_bytes(hostile)
    c.send({"still": "usable"})
print("DONE", flush=True)
"#;

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Meta {
    tags: Vec<String>,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    seen: BTreeSet<i32>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Nested {
    name: String,
    args: (i32, f64),
    meta: Meta,
    shared: Vec<Vec<i32>>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Order {
    Stop,
    Move { x: i32, y: i32 },
    Pair(String, bool),
}

/// Lists in lists, as deep as a pickle makes them.
#[derive(Deserialize, Debug)]
struct Nest(#[allow(dead_code)] Vec<Nest>);

fn nested() -> Nested {
    Nested {
        name: "job".into(),
        args: (1, 2.5),
        meta: Meta {
            tags: vec!["a".into(), "b".into()],
            data: vec![1],
            seen: BTreeSet::from([3]),
        },
        shared: vec![vec![1, 2], vec![1, 2]],
    }
}

fn keyed() -> Vec<HashMap<String, i32>> {
    (0..300).map(|i| HashMap::from([("k".into(), i)])).collect()
}

/// Receives `CASES` (see `PY_COMMON`) in order, each as its Rust type.
fn recv_cases(conn: &mut Connection) {
    macro_rules! expect {
        ($ty:ty, $value:expr) => {{
            let got: $ty = conn.recv_pickle().expect(stringify!($ty));
            assert_eq!(got, $value, "as {}", stringify!($ty));
        }};
    }
    expect!(Option<i32>, None);
    expect!(bool, true);
    expect!(bool, false);
    expect!(u8, 0);
    expect!(i32, -1);
    expect!(u8, 255);
    expect!(u32, 65536);
    expect!(i32, i32::MIN);
    expect!(i64, i64::MAX);
    expect!(i64, i64::MIN);
    expect!(u64, u64::MAX);
    let err = conn.recv_pickle::<u64>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode, "2**64 as u64: {err}");
    expect!(u128, 1 << 100);
    expect!(f64, 1.5);
    expect!(String, "");
    expect!(String, "héllo ✓");
    expect!(String, "x".repeat(300));
    expect!(Vec<u8>, b"");
    expect!(ByteBuf, ByteBuf::from(b"\x00\xff".repeat(200)));
    expect!(Vec<u8>, b"ab");
    expect!(Vec<u8>, b"");
    expect!(Vec<i64>, [1, 2, 3]);
    expect!((i32, String, Option<u8>), (1, "a".into(), None));
    expect!(
        BTreeMap<String, i32>,
        BTreeMap::from([("a".into(), 1), ("b".into(), 2)])
    );
    expect!(BTreeSet<i32>, BTreeSet::from([1, 2, 3]));
    expect!(HashSet<String>, HashSet::from(["x".to_string()]));
    expect!(Vec<i32>, []);
    expect!(
        HashMap<(i32, i32), String>,
        HashMap::from([((1, 2), "pair".into())])
    );
    expect!(Nested, nested());
    expect!(Vec<HashMap<String, i32>>, keyed());
}

/// Sends what `BACK` (see `PY_COMMON`) expects.
fn send_back(conn: &mut Connection) -> connection::Result<()> {
    conn.send_pickle(&None::<i32>)?;
    conn.send_pickle(&true)?;
    conn.send_pickle(&false)?;
    conn.send_pickle(&0u8)?;
    conn.send_pickle(&-1i32)?;
    conn.send_pickle(&255u8)?;
    conn.send_pickle(&65536u32)?;
    conn.send_pickle(&i32::MIN)?;
    conn.send_pickle(&i64::MAX)?;
    conn.send_pickle(&i64::MIN)?;
    conn.send_pickle(&u64::MAX)?;
    conn.send_pickle(&(1u128 << 100))?;
    conn.send_pickle(&1.5f64)?;
    conn.send_pickle("")?;
    conn.send_pickle("héllo ✓")?;
    conn.send_pickle(&"x".repeat(300))?;
    conn.send_pickle(&ByteBuf::new())?;
    conn.send_pickle(&ByteBuf::from(b"\x00\xff".repeat(200)))?;
    conn.send_pickle(&vec![1, 2, 3])?;
    conn.send_pickle(&(1, "a", None::<u8>))?;
    conn.send_pickle(&BTreeMap::from([("a", 1), ("b", 2)]))?;
    conn.send_pickle(&BTreeSet::from([1, 2, 3]))?;
    conn.send_pickle(&HashMap::from([((1, 2), "pair")]))?;
    conn.send_pickle(&nested())?;
    conn.send_pickle(&keyed())?;
    conn.send_pickle(&Order::Stop)?;
    conn.send_pickle(&Order::Move { x: 1, y: -2 })?;
    conn.send_pickle(&Order::Pair("p".into(), true))?;
    conn.send_pickle(&u128::MAX)?;
    conn.send_pickle(&i128::MIN)
}

fn python_child(py: &str, script: &str, conn: Connection) -> std::process::Child {
    let mut command = Command::new(py);
    command
        .arg("-c")
        .arg(format!("{PY_COMMON}\n{script}"))
        .stdout(Stdio::piped());
    conn.pass_to_child(&mut command, "CONN").unwrap();
    let child = command.spawn().expect("spawn python3");
    drop(command);
    child
}

fn assert_done(mut child: std::process::Child) {
    let status = wait_with_deadline(&mut child, LIMIT);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(
        status.success() && out.contains("DONE"),
        "python: {status} {out}"
    );
}

#[test]
fn python_and_rust_exchange_every_mapped_type_over_a_pipe() {
    let Some(py) = python3() else { return };
    let _watchdog = Watchdog::start("python pickle pipe test", LIMIT);
    let (mut conn, child_end) = pipe().unwrap();
    let child = python_child(py, PY_PIPE, child_end);

    for _ in 0..5 {
        recv_cases(&mut conn);
    }
    send_back(&mut conn).unwrap();

    let expected = [
        "STACK_GLOBAL __main__.Point",
        "posix.system",
        "claims 4611686018427387904 bytes",
        "nested deeper than 128",
        "FRAME claims 255 bytes",
    ];
    for what in expected {
        let err = conn.recv_pickle::<Nest>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
        assert!(format!("{err:#}").contains(what), "{what}: {err:#}");
        let next: HashMap<String, String> = conn.recv_pickle().unwrap();
        assert_eq!(next["still"], "usable");
    }
    assert_done(child);
}

/// `python3 -c PY_SEND_TWICE`: Python's plain `send()` of one dict, twice.
const PY_SEND_TWICE: &str = r#"
c = Connection(int(os.environ["CONN"].split(":")[0]))
c.send({"a": 1})
c.send({"a": 1})
print("DONE", flush=True)
"#;

/// The issue's first symptom: Python's `send()` into our `recv()` failed
/// with a bare UTF-8 error. Now the error says what to call instead, and
/// the message after it still reads.
#[test]
fn recv_of_a_python_pickle_says_to_use_recv_pickle() {
    let Some(py) = python3() else { return };
    let _watchdog = Watchdog::start("python pickle hint test", LIMIT);
    let (mut conn, child_end) = pipe().unwrap();
    let child = python_child(py, PY_SEND_TWICE, child_end);
    let err = conn.recv::<String>().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Decode);
    assert!(
        format!("{err:#}").contains("this looks like a Python pickle: use recv_pickle"),
        "{err}"
    );
    let dict: HashMap<String, i32> = conn.recv_pickle().unwrap();
    assert_eq!(dict["a"], 1);
    assert_done(child);
}

/// `python3 -c PY_LISTENER`: CPython's Listener with an authkey on
/// 127.0.0.1; prints its port, accepts one client, then answers each
/// request `{"op": "add", "args": [...]}` with `{"sum": ..., "n": ...}`
/// until it receives None, and checks `BACK` after that.
const PY_LISTENER: &str = r#"
l = Listener(("127.0.0.1", 0), authkey=b"pickle key")
print(l.address[1], flush=True)
c = l.accept()
while True:
    req = c.recv()
    if req is None:
        break
    c.send({"sum": sum(req["args"]), "n": len(req["args"]), "op": req["op"]})
check_back(c)
print("DONE", flush=True)
"#;

#[derive(Serialize)]
struct Request<'a> {
    op: &'a str,
    args: Vec<i64>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Reply {
    sum: i64,
    n: usize,
    op: String,
}

#[test]
fn rust_client_and_python_listener_with_an_authkey_exchange_pickles() {
    let Some(py) = python3() else { return };
    let _watchdog = Watchdog::start("python pickle listener test", LIMIT);
    let mut child = Command::new(py)
        .arg("-c")
        .arg(format!("{PY_COMMON}\n{PY_LISTENER}"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut port = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut port).unwrap();
    let address: Address = format!("tcp:127.0.0.1:{}", port.trim()).parse().unwrap();
    let mut conn = Client::connect_with_authkey(&address, b"pickle key").unwrap();

    for n in 0..50 {
        let args: Vec<i64> = (0..n).collect();
        conn.send_pickle(&Request { op: "add", args }).unwrap();
        let reply: Reply = conn.recv_pickle().unwrap();
        let expected = Reply {
            sum: (0..n).sum(),
            n: n as usize,
            op: "add".into(),
        };
        assert_eq!(reply, expected);
    }
    conn.send_pickle(&()).unwrap();
    send_back(&mut conn).unwrap();
    let status = wait_with_deadline(&mut child, LIMIT);
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    assert!(
        status.success() && out.contains("DONE"),
        "python: {status} {out}"
    );
}

/// The reverse roles: CPython's `Client` with an authkey sends its own
/// pickles to a Rust `Listener` (see also the `pickle_service` example).
const PY_CLIENT: &str = r#"
c = Client(("127.0.0.1", int(sys.argv[1])), authkey=b"pickle key")
for value in CASES:
    c.send(value)
check_back(c)
print("DONE", flush=True)
"#;

#[test]
fn python_client_sends_pickles_to_a_rust_listener_with_an_authkey() {
    let Some(py) = python3() else { return };
    let _watchdog = Watchdog::start("python pickle client test", LIMIT);
    let mut listener = Listener::builder()
        .authkey(b"pickle key")
        .bind(&Address::localhost(0))
        .unwrap();
    let Address::Tcp(socket) = listener.address().clone() else {
        panic!("not TCP: {}", listener.address())
    };
    let child = Command::new(py)
        .arg("-c")
        .arg(format!("{PY_COMMON}\n{PY_CLIENT}"))
        .arg(socket.port().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut conn = listener.accept().unwrap();
    recv_cases(&mut conn);
    send_back(&mut conn).unwrap();
    assert_done(child);
}

/// `python3 -c PY_VALUES`: every plain type, nested, sent in protocols 2
/// to 5 to a Rust peer that reads each as a `pickle::Value`; then the same
/// values back from Rust's `send_pickle`, checked type for type (dict
/// order, float signs and NaN included); then hostile pickles, each
/// followed by a good one.
const PY_VALUES: &str = r#"
import math
frozen = frozenset({"a", (1, 2)})
VALUES = [None, True, False, 0, -1, 2**63 - 1, 2**64, 2**100, -2**100, 2**4000,
          1.5, float("inf"), float("-inf"), float("nan"), -0.0,
          "", "h\u00e9llo \u2713", b"", b"\x00\xff" * 200, bytearray(), bytearray(b"ab"),
          [], (), (1,), (1, "a", None, 2.5), set(), {1, "x", (2, 3)}, frozenset(), frozen,
          {}, {(1, 2): "pair", frozen: [set()], b"k": bytearray(b"v"), None: ([],),
               -2**100: 1.5, True: (1,), 2.5: {"nested": (1, (2, (3,)))}},
          [[1, (2, [3, {4: (5, frozenset({6}))}])]],
          {"floats": (float("inf"), float("nan"), -0.0),
           "empty": ([], (), {}, set(), frozenset(), b"", bytearray(), "")}]

def exact(a, b):
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(exact(p, q) for p, q in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            exact(ka, kb) and exact(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    if isinstance(a, (set, frozenset)):
        return len(a) == len(b) and all(any(exact(x, y) for y in b) for x in a)
    return a == b

c = Connection(int(os.environ["CONN"].split(":")[0]))
for protocol in (2, 3, 4, 5):
    for value in VALUES:
        c.send_bytes(ForkingPickler.dumps(value, protocol))
# Mismatches are reported at the end, so that the Rust side runs to its
# last check and the test's failure shows them.
mismatches = []
for i, want in enumerate(VALUES):
    got = c.recv()
    if not exact(got, want):
        mismatches.append(f"{i}: {repr(got)[:300]} != {repr(want)[:300]}")
for hostile in (b"\x80\x04}]K\x01s.",                       # {[]: 1}
                b"\x80\x04\x8f(]\x90.",                      # {[]}
                b"\x80\x04)" + b"\x85" * 100000 + b".",      # ((((...))))
                b"\x80\x05\x8e" + (1 << 62).to_bytes(8, "little") + b"abc.",
                b"\x80\x04\x8c\x08__main__\x8c\x05Point\x93)\x81}b."):
    c.send_bytes(hostile)
    c.send(("still", "usable"))
if mismatches:
    print("MISMATCH", *mismatches, sep="\n", flush=True)
    sys.exit(1)
print("DONE", flush=True)
"#;

/// What `VALUES` in `PY_VALUES` reads as, built in Rust.
fn python_values() -> Vec<Value> {
    // 2**n or -2**n, from two's complement bytes: bit n set, or every
    // bit from n up.
    let big = |n: usize, negative: bool| -> Value {
        let mut bytes = vec![0u8; n / 8 + 2];
        if negative {
            bytes.truncate(n / 8 + 1);
            bytes[n / 8] = 0xff << (n % 8);
        } else {
            bytes[n / 8] = 1 << (n % 8);
        }
        BigInt::from_signed_bytes_le(&bytes).into()
    };
    let set = |items: Vec<Value>| items.into_iter().collect::<BTreeSet<Value>>();
    let frozen = Value::FrozenSet(set(vec!["a".into(), (1, 2).into()]));
    vec![
        Value::None,
        true.into(),
        false.into(),
        0.into(),
        (-1).into(),
        i64::MAX.into(),
        (1u128 << 64).into(),
        big(100, false),
        big(100, true),
        big(4000, false),
        1.5.into(),
        f64::INFINITY.into(),
        f64::NEG_INFINITY.into(),
        f64::NAN.into(),
        (-0.0).into(),
        "".into(),
        "héllo ✓".into(),
        Value::Bytes(vec![]),
        Value::Bytes(b"\x00\xff".repeat(200)),
        Value::ByteArray(vec![]),
        Value::ByteArray(b"ab".to_vec()),
        Value::List(vec![]),
        Value::Tuple(vec![]),
        (1,).into(),
        (1, "a", None::<u8>, 2.5).into(),
        Value::Set(BTreeSet::new()),
        Value::Set(set(vec![1.into(), "x".into(), (2, 3).into()])),
        Value::FrozenSet(BTreeSet::new()),
        frozen.clone(),
        Value::Dict(Dict::new()),
        Value::from_iter([
            ((1, 2).into(), Value::from("pair")),
            (frozen, Value::from(vec![Value::Set(BTreeSet::new())])),
            (Value::Bytes(b"k".to_vec()), Value::ByteArray(b"v".to_vec())),
            (Value::None, Value::Tuple(vec![Value::List(vec![])])),
            (big(100, true), 1.5.into()),
            (true.into(), (1,).into()),
            (2.5.into(), Value::from_iter([("nested", (1, (2, (3,))))])),
        ]),
        // [[1, (2, [3, {4: (5, frozenset({6}))}])]]
        Value::List(vec![Value::List(vec![
            1.into(),
            Value::from((
                2,
                Value::List(vec![
                    3.into(),
                    Value::from_iter([(4, (5, Value::FrozenSet(set(vec![6.into()]))))]),
                ]),
            )),
        ])]),
        Value::from_iter([
            ("floats", Value::from((f64::INFINITY, f64::NAN, -0.0))),
            (
                "empty",
                Value::Tuple(vec![
                    Value::List(vec![]),
                    Value::Tuple(vec![]),
                    Value::Dict(Dict::new()),
                    Value::Set(BTreeSet::new()),
                    Value::FrozenSet(BTreeSet::new()),
                    Value::Bytes(vec![]),
                    Value::ByteArray(vec![]),
                    "".into(),
                ]),
            ),
        ]),
    ]
}

#[test]
fn python_and_rust_exchange_every_plain_type_as_a_value() {
    let Some(py) = python3() else { return };
    let _watchdog = Watchdog::start("python pickle value test", LIMIT);
    let (mut conn, child_end) = pipe().unwrap();
    let child = python_child(py, PY_VALUES, child_end);

    let expected = python_values();
    for protocol in 2..=5 {
        for (i, want) in expected.iter().enumerate() {
            let got: Value = conn.recv_pickle().unwrap();
            assert_eq!(&got, want, "protocol {protocol}, value {i}");
            // The repr also tells -0.0 from 0.0, NaN, and dict order.
            assert_eq!(
                format!("{got:?}"),
                format!("{want:?}"),
                "protocol {protocol}"
            );
        }
    }
    for value in &expected {
        conn.send_pickle(value).unwrap();
    }
    let hostile = [
        "unhashable type: 'list' cannot be a dict key",
        "unhashable type: 'list' cannot be a set item",
        "nested deeper than 128",
        "claims 4611686018427387904 bytes",
        "STACK_GLOBAL __main__.Point",
    ];
    for what in hostile {
        let err = conn.recv_pickle::<Value>().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Decode, "{err}");
        assert!(format!("{err:#}").contains(what), "{what}: {err:#}");
        let next: Value = conn.recv_pickle().unwrap();
        assert_eq!(next, Value::from(("still", "usable")));
    }
    assert_done(child);
}
