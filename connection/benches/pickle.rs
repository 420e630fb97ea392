//! Python to Rust and back with pickles, beside Python to Python.
//!
//! A CPython driver sends 10,000 small dicts one at a time with
//! `Connection.send` and waits for each to come back with `recv()`. Its
//! peer is either this process (`recv_pickle` into a struct, `send_pickle`
//! of the struct) or a second CPython process echoing with `send(recv())`
//! over `multiprocessing.Pipe()`. The driver times its own loop, so both
//! cases measure the same thing from the same side; rounds alternate, and
//! the table reports medians and the median of the per-round ratios.
//!
//! `cargo bench -p connection --bench pickle` measures. Without `--bench`
//! (as `cargo test --benches` runs it) it only checks, with a few dicts,
//! that both cases work. Without python3 it says so and measures nothing.

use std::io::Read;
use std::process::{Command, Stdio};

use connection::{pipe, Connection, ErrorKind};
use serde::{Deserialize, Serialize};

#[path = "stats.rs"]
mod stats;
use stats::median;

/// The driver: `python3 -c DRIVER COUNT rust|python`. With `rust` the
/// peer's end is in `CONN`; with `python` it forks its own echo peer.
/// Prints the seconds its loop took.
const DRIVER: &str = r#"
import os, sys, time
import multiprocessing as mp
from multiprocessing.connection import Connection

def echo(c, parents_end):
    parents_end.close()  # or the driver's close() would never read as EOF here
    try:
        while True:
            c.send(c.recv())
    except EOFError:
        pass

count, peer = int(sys.argv[1]), sys.argv[2]
if peer == "rust":
    c = Connection(int(os.environ["CONN"].split(":")[0]))
else:
    ctx = mp.get_context("fork")
    c, theirs = ctx.Pipe()
    p = ctx.Process(target=echo, args=(theirs, c))
    p.start()
    theirs.close()
dicts = [{"id": i, "op": "resize", "args": [640, 480], "ratio": 1.5, "reply": None}
         for i in range(count)]
start = time.perf_counter()
for d in dicts:
    c.send(d)
    back = c.recv()
elapsed = time.perf_counter() - start
assert back == dicts[-1], back
c.close()
if peer == "python":
    p.join()
print(elapsed)
"#;

/// What the dicts decode into on the Rust side.
#[derive(Serialize, Deserialize)]
struct Small {
    id: u64,
    op: String,
    args: Vec<i32>,
    ratio: f64,
    reply: Option<u32>,
}

fn main() {
    let measure = std::env::args().any(|arg| arg == "--bench");
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if !found {
        println!("pickle bench: skipped, python3 not found");
        return;
    }
    let (rounds, count) = if measure { (9, 10_000) } else { (1, 100) };
    let mut rust = Vec::new();
    let mut python = Vec::new();
    for _ in 0..rounds {
        rust.push(with_rust_peer(count));
        python.push(with_python_peer(count));
    }
    if !measure {
        println!("pickle bench: both cases ran (run `cargo bench -p connection --bench pickle` to measure)");
        return;
    }
    let ratios: Vec<f64> = rust.iter().zip(&python).map(|(r, p)| r / p).collect();
    println!();
    println!(
        "pickle bench: {count} small dicts, each sent by CPython and echoed back; medians of {rounds} alternating rounds"
    );
    println!("{:<34} {:>10} {:>12}", "peer", "seconds", "dicts/s");
    for (name, times) in [
        ("Rust (recv_pickle, send_pickle)", &rust),
        ("CPython (send(recv()))", &python),
    ] {
        let t = median(times);
        println!("{name:<34} {t:>10.4} {:>12.0}", count as f64 / t);
    }
    println!(
        "Rust peer vs CPython peer: {:.3}x the time (lower is faster)",
        median(&ratios)
    );
    println!();
}

fn driver(count: usize, peer: &str) -> Command {
    let mut command = Command::new("python3");
    command
        .args(["-c", DRIVER, &count.to_string(), peer])
        .stdout(Stdio::piped());
    command
}

/// Seconds the driver reports.
fn seconds(mut child: std::process::Child) -> f64 {
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_string(&mut out)
        .expect("read driver output");
    let status = child.wait().expect("wait for the driver");
    assert!(status.success(), "python driver failed: {status}");
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("no time in {out:?}"))
}

fn with_rust_peer(count: usize) -> f64 {
    let (mut conn, theirs) = pipe().expect("pipe");
    let mut command = driver(count, "rust");
    theirs
        .pass_to_child(&mut command, "CONN")
        .expect("pass the pipe end");
    let child = command.spawn().expect("start python3");
    drop(command);
    echo(&mut conn);
    seconds(child)
}

fn echo(conn: &mut Connection) {
    loop {
        match conn.recv_pickle::<Small>() {
            Ok(small) => conn.send_pickle(&small).expect("send the dict back"),
            Err(err) if err.kind() == ErrorKind::Eof => return,
            Err(err) => panic!("recv_pickle: {err}"),
        }
    }
}

fn with_python_peer(count: usize) -> f64 {
    seconds(driver(count, "python").spawn().expect("start python3"))
}
