//! Typed bulk messages against byte messages, between two processes
//! (issue 10's first target): 16 MiB values sent one way over a `pipe()`
//! with `send`/`recv`, `send_slice`/`recv_vec`, and the baseline
//! `send_bytes`/`recv_bytes` of the same number of bytes.
//!
//! Each measurement sends `count` messages one way; the clock stops when
//! the peer (this binary re-executed, see [`PEER_ENV`]) has received and
//! checked them all and acknowledged. Every receive, the baseline's
//! included, returns a freshly allocated value, as a program receiving
//! data does. Throughput counts the value's data bytes (16 MiB of bytes
//! or `f64`s; 13 MB of string contents), whatever the encoding adds.
//! Baseline and case alternate, many short rounds each, and the ratio
//! reported is the median of the per-round ratios, so that a noisy
//! neighbour slows both rather than one.
//!
//! `cargo bench -p connection --bench bulk` measures. Run without
//! `--bench` (as `cargo test --benches` does) it only checks, with one
//! small round, that every case works end to end.

mod common;

use std::process::Child;
use std::time::Instant;

use connection::serde_bytes::ByteBuf;
use connection::Connection;
use serde::{Deserialize, Serialize};

#[path = "stats.rs"]
mod stats;
use stats::median;

/// Set in the re-executed child: it receives instead of sending.
const PEER_ENV: &str = "CONNECTION_BULK_BENCH_PEER";
const CONTROL_ENV: &str = "CONNECTION_BULK_BENCH_CONTROL";
const DATA_ENV: &str = "CONNECTION_BULK_BENCH_DATA";

/// What is sent, and with which pair of calls.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
enum Case {
    /// `send_bytes` / `recv_bytes`: the baseline.
    Bytes,
    /// `send` / `recv` of a `serde_bytes::ByteBuf`.
    ByteBuf,
    /// `send_slice` / `recv_vec::<f64>`.
    PodF64,
    /// `send` / `recv` of a plain `Vec<f64>`.
    VecF64,
    /// `send` / `recv` of a plain `Vec<u8>`.
    VecU8,
    /// `send` / `recv` of a `Vec<String>`.
    Strings,
}

/// What the parent asks of the peer before each measurement.
#[derive(Serialize, Deserialize, Debug, Clone, Copy)]
struct Job {
    case: Case,
    count: u64,
    /// How many data bytes (or elements, for `f64`s and strings) each
    /// message holds, for the peer's check.
    items: usize,
}

/// The values of one run, made once.
struct Values {
    bytes: Vec<u8>,
    byte_buf: ByteBuf,
    floats: Vec<f64>,
    strings: Vec<String>,
}

/// Thirteen bytes of contents per string, a million of them: 13 MB.
const STRING_LEN: usize = 13;

impl Values {
    fn new(data_bytes: usize) -> Values {
        let bytes = common::pattern(data_bytes);
        let floats: Vec<f64> = (0..data_bytes / 8).map(|i| i as f64 * 0.5).collect();
        let string_count = data_bytes * 1_000_000 / (16 << 20);
        let strings = (0..string_count)
            .map(|i| format!("{i:0width$}", width = STRING_LEN))
            .collect();
        Values {
            byte_buf: ByteBuf::from(bytes.clone()),
            bytes,
            floats,
            strings,
        }
    }

    /// The data bytes one message of `case` carries, and its item count.
    fn size_of(&self, case: Case) -> (usize, usize) {
        match case {
            Case::Bytes | Case::ByteBuf | Case::VecU8 => (self.bytes.len(), self.bytes.len()),
            Case::PodF64 | Case::VecF64 => (self.floats.len() * 8, self.floats.len()),
            Case::Strings => (self.strings.len() * STRING_LEN, self.strings.len()),
        }
    }

    fn send(&self, conn: &mut Connection, case: Case) -> connection::Result<()> {
        match case {
            Case::Bytes => conn.send_bytes(&self.bytes),
            Case::ByteBuf => conn.send(&self.byte_buf),
            Case::PodF64 => conn.send_slice(&self.floats),
            Case::VecF64 => conn.send(&self.floats),
            Case::VecU8 => conn.send(&self.bytes),
            Case::Strings => conn.send(&self.strings),
        }
    }
}

struct Plan {
    rounds: usize,
    count: u64,
    data_bytes: usize,
}

/// One line of the table.
struct Row {
    case: Case,
    what: &'static str,
    baseline_gbps: f64,
    gbps: f64,
    ratio: f64,
    target: Option<f64>,
}

fn main() {
    if std::env::var_os(PEER_ENV).is_some() {
        peer();
        return;
    }
    let measure = std::env::args().any(|arg| arg == "--bench");
    // Any other argument picks the cases whose description contains it
    // (`cargo bench --bench bulk -- Vec<u8>`), for profiling one at a time.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let plan = if measure {
        Plan {
            rounds: 21,
            count: 4,
            data_bytes: 16 << 20,
        }
    } else {
        Plan {
            rounds: 1,
            count: 1,
            data_bytes: 1 << 20,
        }
    };
    let values = Values::new(plan.data_bytes);
    let mut bench = Bench::start();
    // Warm up: page faults, the peer's first allocations.
    for case in [Case::Bytes, Case::PodF64] {
        bench.measure(&values, case, 1);
    }
    let cases = [
        (Case::ByteBuf, "serde_bytes::ByteBuf send/recv", Some(0.9)),
        (Case::PodF64, "send_slice/recv_vec::<f64>", Some(0.9)),
        (Case::VecF64, "Vec<f64> send/recv", Some(0.6)),
        (Case::VecU8, "Vec<u8> send/recv", Some(0.4)),
        (Case::Strings, "Vec<String> (13 B each) send/recv", None),
    ];
    let rows: Vec<Row> = cases
        .into_iter()
        .filter(|(_, what, _)| filters.is_empty() || filters.iter().any(|f| what.contains(f)))
        .map(|(case, what, target)| {
            let mut baseline = Vec::new();
            let mut ours = Vec::new();
            for round in 0..plan.rounds {
                let mut pair = [Case::Bytes, case];
                if round % 2 == 1 {
                    pair.reverse();
                }
                for which in pair {
                    let gbps = bench.measure(&values, which, plan.count);
                    if which == Case::Bytes {
                        baseline.push(gbps);
                    } else {
                        ours.push(gbps);
                    }
                }
            }
            let ratios: Vec<f64> = ours.iter().zip(&baseline).map(|(o, b)| o / b).collect();
            Row {
                case,
                what,
                baseline_gbps: median(&baseline),
                gbps: median(&ours),
                ratio: median(&ratios),
                target,
            }
        })
        .collect();
    bench.finish();
    if measure {
        print_table(&rows, &plan);
    } else {
        println!(
            "bulk bench: every case ran (run `cargo bench -p connection --bench bulk` to measure)"
        );
    }
}

fn print_table(rows: &[Row], plan: &Plan) {
    println!();
    println!(
        "connection bulk bench: {} MiB messages one way over pipe() between two processes, \
         medians of {} interleaved rounds of {} messages",
        plan.data_bytes >> 20,
        plan.rounds,
        plan.count
    );
    println!(
        "{:<36} {:>16} {:>12} {:>8} {:>8}  result",
        "case", "send_bytes GB/s", "case GB/s", "ratio", "target"
    );
    for row in rows {
        let (target, result) = match row.target {
            Some(limit) if row.ratio >= limit => (format!(">= {limit:.1}x"), "PASS"),
            Some(limit) => (format!(">= {limit:.1}x"), "FAIL"),
            None => ("-".to_string(), "(no target)"),
        };
        println!(
            "{:<36} {:>16.3} {:>12.3} {:>7.3}x {:>8}  {result}",
            row.what, row.baseline_gbps, row.gbps, row.ratio, target
        );
        let _ = row.case;
    }
    println!();
}

/// The parent's side: the peer process and the connections to it.
struct Bench {
    peer: Child,
    control: Connection,
    data: Connection,
}

impl Bench {
    fn start() -> Bench {
        let (control, control_peer) = connection::pipe().expect("control pipe");
        let (data, data_peer) = connection::pipe().expect("data pipe");
        let peer = common::spawn_peer(
            PEER_ENV,
            vec![(control_peer, CONTROL_ENV), (data_peer, DATA_ENV)],
        );
        Bench {
            peer,
            control,
            data,
        }
    }

    /// Sends `count` messages of `case` and returns the data throughput in
    /// GB/s, timed until the peer has received and checked them all.
    fn measure(&mut self, values: &Values, case: Case, count: u64) -> f64 {
        let (data_bytes, items) = values.size_of(case);
        common::order(&mut self.control, &Job { case, count, items });
        let start = Instant::now();
        for _ in 0..count {
            values.send(&mut self.data, case).expect("send");
        }
        let ack = self.data.recv_bytes().expect("ack");
        let elapsed = start.elapsed();
        assert_eq!(ack, b"ok");
        (count as f64 * data_bytes as f64) / elapsed.as_secs_f64() / 1e9
    }

    fn finish(mut self) {
        drop(self.control);
        let status = self.peer.wait().expect("wait for peer");
        assert!(status.success(), "bench peer failed: {status}");
    }
}

// --- The peer process ---------------------------------------------------------

fn peer() {
    let mut control = Connection::from_env(CONTROL_ENV).expect("control connection");
    let mut data = Connection::from_env(DATA_ENV).expect("data connection");
    while let Some(job) = common::next_job::<Job>(&mut control) {
        for _ in 0..job.count {
            receive_and_check(&mut data, job.case, job.items);
        }
        data.send_bytes(b"ok").expect("peer: ack");
    }
}

/// Receives one message of `case` and checks, cheaply and alike for every
/// case, that it arrived whole: its length and its last item.
fn receive_and_check(data: &mut Connection, case: Case, items: usize) {
    let last = items - 1;
    match case {
        Case::Bytes => check_bytes(&data.recv_bytes().expect("peer: recv_bytes"), items),
        Case::ByteBuf => check_bytes(&data.recv::<ByteBuf>().expect("peer: ByteBuf"), items),
        Case::VecU8 => check_bytes(&data.recv::<Vec<u8>>().expect("peer: Vec<u8>"), items),
        Case::PodF64 | Case::VecF64 => {
            let floats = if case == Case::PodF64 {
                data.recv_vec::<f64>().expect("peer: recv_vec")
            } else {
                data.recv::<Vec<f64>>().expect("peer: Vec<f64>")
            };
            assert_eq!(floats.len(), items, "peer: f64 count");
            assert_eq!(floats[last], last as f64 * 0.5, "peer: last f64");
        }
        Case::Strings => {
            let strings = data.recv::<Vec<String>>().expect("peer: Vec<String>");
            assert_eq!(strings.len(), items, "peer: string count");
            assert_eq!(strings[last], format!("{last:0width$}", width = STRING_LEN));
        }
    }
}

fn check_bytes(bytes: &[u8], len: usize) {
    assert_eq!(bytes.len(), len, "peer: message length");
    assert_eq!(bytes[len - 1], ((len - 1) % 251) as u8, "peer: last byte");
}
