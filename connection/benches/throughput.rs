//! Latency and throughput of `Connection` against a raw baseline, between
//! two processes (issue 2's performance targets).
//!
//! The baseline is what a careful hand-written protocol would do over a
//! `std::os::unix::net::UnixStream` pair: a 4-byte big-endian length and the
//! payload, reused buffers, no serde. Both sides run in two processes: this
//! binary re-executes itself as the peer (see `two_processes.rs`) and hands it its
//! ends with `Connection::pass_to_child`.
//!
//! Raw and ours are measured interleaved, several rounds each, and the table
//! reports medians, so that a noisy neighbour on the machine slows both
//! rather than one of them. The ratio is the median of the per-round ratios.
//!
//! `cargo bench -p connection` measures. Run without `--bench` (as
//! `cargo test --benches` does) it only checks, with a few iterations, that
//! every case works end to end.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use common::{pattern, small, Small};
#[path = "stats.rs"]
mod stats;
#[path = "common/two_processes.rs"]
mod two_processes;
use stats::median;
use two_processes::Bench;

/// The raw baseline joins header and payload in one write up to this size,
/// as `Connection` does (and CPython), so that both make one system call.
const RAW_SMALL: usize = 16 * 1024;

/// What the parent asks the peer to do next, sent on the control connection
/// outside any timed section.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
enum Job {
    /// Echo `iters` byte messages back.
    RawEcho {
        iters: u64,
    },
    OursEcho {
        iters: u64,
    },
    /// Echo `iters` [`Small`] values back.
    OursStructEcho {
        iters: u64,
    },
    /// Receive `count` messages of `size` bytes into one buffer, then ack.
    RawSink {
        count: u64,
        size: usize,
    },
    OursSink {
        count: u64,
        size: usize,
    },
}

fn main() {
    if two_processes::is_peer() {
        peer();
        return;
    }
    let measure = std::env::args().any(|arg| arg == "--bench");
    let plan = if measure { Plan::full() } else { Plan::smoke() };
    let mut bench = Bench::start();
    let rows = run_cases(&mut bench, &plan);
    bench.finish();
    if measure {
        print_table(&rows, plan.rounds);
    } else {
        println!("throughput bench: every case ran (run `cargo bench -p connection` to measure)");
    }
}

/// How much work each measurement does.
struct Plan {
    rounds: usize,
    round_trips: u64,
    mib1_count: u64,
    mib16_count: u64,
}

impl Plan {
    fn full() -> Plan {
        // Many short rounds rather than a few long ones: a burst of load
        // from a neighbour then spoils a few pairs, which the median
        // discards, instead of a large share of the run.
        Plan {
            rounds: 41,
            round_trips: 1_500,
            mib1_count: 120,
            mib16_count: 8,
        }
    }

    fn smoke() -> Plan {
        Plan {
            rounds: 1,
            round_trips: 10,
            mib1_count: 2,
            mib16_count: 1,
        }
    }
}

/// One line of the table.
struct Row {
    case: &'static str,
    unit: &'static str,
    raw: f64,
    ours: f64,
    /// Median over rounds of ours/raw (for latencies) or ours/raw
    /// throughput (for throughputs).
    ratio: f64,
    target: Target,
}

#[derive(Clone, Copy)]
enum Target {
    AtMost(f64),
    AtLeast(f64),
}

impl Target {
    fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtMost(limit) => ratio <= limit,
            Target::AtLeast(limit) => ratio >= limit,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::AtMost(limit) => write!(f, "<= {limit:.2}x"),
            Target::AtLeast(limit) => write!(f, ">= {limit:.2}x"),
        }
    }
}

fn run_cases(bench: &mut Bench, plan: &Plan) -> Vec<Row> {
    let payload64 = pattern(64);
    let struct_size = connection::encode(&small()).expect("encode").len();
    let struct_payload = pattern(struct_size);
    let mib1 = pattern(1 << 20);
    let mib16 = pattern(16 << 20);
    let n = plan.round_trips;

    // Warm up both paths (page faults, caches, the peer's first allocations).
    raw_round_trips(bench, &payload64, n.min(1_000));
    ours_round_trips(bench, &payload64, n.min(1_000));
    raw_sink(bench, &mib16, 2.min(plan.mib16_count));
    ours_sink(bench, &mib16, 2.min(plan.mib16_count));

    vec![
        latency_row(
            bench,
            plan,
            "64 B send_bytes/recv_bytes round trip",
            1.15,
            |b, raw| {
                if raw {
                    raw_round_trips(b, &payload64, n)
                } else {
                    ours_round_trips(b, &payload64, n)
                }
            },
        ),
        throughput_row(
            bench,
            plan,
            "1 MiB send_bytes + recv_bytes_into",
            |b, raw| {
                if raw {
                    raw_sink(b, &mib1, plan.mib1_count)
                } else {
                    ours_sink(b, &mib1, plan.mib1_count)
                }
            },
        ),
        throughput_row(
            bench,
            plan,
            "16 MiB send_bytes + recv_bytes_into",
            |b, raw| {
                if raw {
                    raw_sink(b, &mib16, plan.mib16_count)
                } else {
                    ours_sink(b, &mib16, plan.mib16_count)
                }
            },
        ),
        latency_row(
            bench,
            plan,
            "small struct send/recv round trip",
            1.3,
            |b, raw| {
                if raw {
                    raw_round_trips(b, &struct_payload, n)
                } else {
                    ours_struct_round_trips(b, n)
                }
            },
        ),
    ]
}

/// Runs raw and ours alternately (which goes first alternates too) and
/// returns the per-round results of each.
fn rounds<F: FnMut(&mut Bench, bool) -> f64>(
    bench: &mut Bench,
    plan: &Plan,
    mut run: F,
) -> (Vec<f64>, Vec<f64>) {
    let mut raw = Vec::with_capacity(plan.rounds);
    let mut ours = Vec::with_capacity(plan.rounds);
    for round in 0..plan.rounds {
        if round % 2 == 0 {
            raw.push(run(bench, true));
            ours.push(run(bench, false));
        } else {
            ours.push(run(bench, false));
            raw.push(run(bench, true));
        }
    }
    (raw, ours)
}

fn latency_row<F: FnMut(&mut Bench, bool) -> Duration>(
    bench: &mut Bench,
    plan: &Plan,
    case: &'static str,
    limit: f64,
    mut run: F,
) -> Row {
    let per_op = |d: Duration| d.as_secs_f64() * 1e6 / plan.round_trips as f64;
    let (raw, ours) = rounds(bench, plan, |b, is_raw| per_op(run(b, is_raw)));
    Row {
        case,
        unit: "us/op",
        raw: median(&raw),
        ours: median(&ours),
        ratio: median_ratio(&ours, &raw),
        target: Target::AtMost(limit),
    }
}

fn throughput_row<F: FnMut(&mut Bench, bool) -> (Duration, u64)>(
    bench: &mut Bench,
    plan: &Plan,
    case: &'static str,
    mut run: F,
) -> Row {
    let gbps = |(d, bytes): (Duration, u64)| bytes as f64 / d.as_secs_f64() / 1e9;
    let (raw, ours) = rounds(bench, plan, |b, is_raw| gbps(run(b, is_raw)));
    Row {
        case,
        unit: "GB/s",
        raw: median(&raw),
        ours: median(&ours),
        ratio: median_ratio(&ours, &raw),
        target: Target::AtLeast(0.9),
    }
}

fn median_ratio(ours: &[f64], raw: &[f64]) -> f64 {
    let ratios: Vec<f64> = ours.iter().zip(raw).map(|(o, r)| o / r).collect();
    median(&ratios)
}

fn print_table(rows: &[Row], rounds: usize) {
    println!();
    println!("connection throughput bench: two processes, medians of {rounds} interleaved rounds");
    println!(
        "{:<40} {:>14} {:>14} {:>7} {:>9}  result",
        "case", "raw", "ours", "ratio", "target"
    );
    for row in rows {
        println!(
            "{:<40} {:>8.3} {:<5} {:>8.3} {:<5} {:>6.3}x {:>9}  {}",
            row.case,
            row.raw,
            row.unit,
            row.ours,
            row.unit,
            row.ratio,
            row.target.to_string(),
            if row.target.met(row.ratio) {
                "PASS"
            } else {
                "MISS"
            }
        );
    }
    println!();
}

// --- Timed loops, parent side -------------------------------------------

fn raw_round_trips(bench: &mut Bench, payload: &[u8], iters: u64) -> Duration {
    bench.order(Job::RawEcho { iters });
    let mut reply = Vec::new();
    let start = Instant::now();
    for _ in 0..iters {
        raw_send(&mut bench.raw, payload, &mut bench.raw_scratch).expect("raw send");
        raw_recv(&mut bench.raw, &mut reply).expect("raw recv");
        assert_eq!(reply, payload);
    }
    start.elapsed()
}

fn ours_round_trips(bench: &mut Bench, payload: &[u8], iters: u64) -> Duration {
    bench.order(Job::OursEcho { iters });
    let start = Instant::now();
    for _ in 0..iters {
        bench.ours.send_bytes(payload).expect("send_bytes");
        let reply = bench.ours.recv_bytes().expect("recv_bytes");
        assert_eq!(reply, payload);
    }
    start.elapsed()
}

fn ours_struct_round_trips(bench: &mut Bench, iters: u64) -> Duration {
    bench.order(Job::OursStructEcho { iters });
    let value = small();
    let start = Instant::now();
    for _ in 0..iters {
        bench.ours.send(&value).expect("send");
        let reply: Small = bench.ours.recv().expect("recv");
        assert_eq!(reply, value);
    }
    start.elapsed()
}

/// Sends `count` messages one way; the clock stops when the peer has
/// received them all.
fn raw_sink(bench: &mut Bench, payload: &[u8], count: u64) -> (Duration, u64) {
    bench.order(Job::RawSink {
        count,
        size: payload.len(),
    });
    let mut ack = Vec::new();
    let start = Instant::now();
    for _ in 0..count {
        raw_send(&mut bench.raw, payload, &mut bench.raw_scratch).expect("raw send");
    }
    raw_recv(&mut bench.raw, &mut ack).expect("raw ack");
    (start.elapsed(), count * payload.len() as u64)
}

fn ours_sink(bench: &mut Bench, payload: &[u8], count: u64) -> (Duration, u64) {
    bench.order(Job::OursSink {
        count,
        size: payload.len(),
    });
    bench.time_sends(payload, count)
}

// --- The raw baseline's framing --------------------------------------------

fn raw_send(stream: &mut UnixStream, payload: &[u8], scratch: &mut Vec<u8>) -> std::io::Result<()> {
    let header = (payload.len() as i32).to_be_bytes();
    if payload.len() <= RAW_SMALL {
        scratch.clear();
        scratch.extend_from_slice(&header);
        scratch.extend_from_slice(payload);
        stream.write_all(scratch)
    } else {
        stream.write_all(&header)?;
        stream.write_all(payload)
    }
}

/// Reads one message into `out`, reusing its allocation.
fn raw_recv(stream: &mut UnixStream, out: &mut Vec<u8>) -> std::io::Result<()> {
    let len = raw_header(stream)?;
    out.resize(len, 0);
    stream.read_exact(out)
}

fn raw_recv_into(stream: &mut UnixStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let len = raw_header(stream)?;
    stream.read_exact(&mut buf[..len])?;
    Ok(len)
}

fn raw_header(stream: &mut UnixStream) -> std::io::Result<usize> {
    let mut header = [0u8; 4];
    stream.read_exact(&mut header)?;
    usize::try_from(i32::from_be_bytes(header))
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "negative length"))
}

// --- The peer process ---------------------------------------------------------

fn peer() {
    let (mut orders, mut ours, mut raw) = two_processes::claim_peer_ends();
    let mut scratch = Vec::new();
    let mut message = Vec::new();
    let mut sink = Vec::new();
    while let Some(job) = orders.next_job::<Job>() {
        match job {
            Job::RawEcho { iters } => {
                for _ in 0..iters {
                    raw_recv(&mut raw, &mut message).expect("peer: raw recv");
                    raw_send(&mut raw, &message, &mut scratch).expect("peer: raw send");
                }
            }
            Job::OursEcho { iters } => {
                for _ in 0..iters {
                    let message = ours.recv_bytes().expect("peer: recv_bytes");
                    ours.send_bytes(&message).expect("peer: send_bytes");
                }
            }
            Job::OursStructEcho { iters } => {
                for _ in 0..iters {
                    let value: Small = ours.recv().expect("peer: recv");
                    ours.send(&value).expect("peer: send");
                }
            }
            Job::RawSink { count, size } => {
                sink.resize(size, 0);
                for _ in 0..count {
                    let len = raw_recv_into(&mut raw, &mut sink).expect("peer: raw recv_into");
                    check_sink(&sink, len, size);
                }
                raw_send(&mut raw, b"ok", &mut scratch).expect("peer: raw ack");
            }
            Job::OursSink { count, size } => {
                sink.resize(size, 0);
                for _ in 0..count {
                    let len = ours
                        .recv_bytes_into(&mut sink, 0)
                        .expect("peer: recv_bytes_into");
                    check_sink(&sink, len, size);
                }
                ours.send_bytes(b"ok").expect("peer: ack");
            }
        }
    }
}

/// A cheap check, the same for raw and ours, that whole messages arrived.
fn check_sink(sink: &[u8], len: usize, size: usize) {
    assert_eq!(len, size, "peer: message length");
    assert_eq!(sink[size - 1], ((size - 1) % 251) as u8, "peer: last byte");
}
