//! How fast `connection::decode` turns payloads into values, against
//! copying the same payload (`to_vec`), the least any decoder must do.
//!
//! Decoding and copying are measured interleaved, many short rounds each,
//! and the table reports the median of the per-round ratios, so that a
//! noisy neighbour on the machine slows both rather than one of them.
//! The ratio is what to compare between two versions of the decoder run in
//! the same session; absolute times mean little on a shared machine.
//!
//! `cargo bench -p connection --bench decode` measures. Run without
//! `--bench` (as `cargo test --benches` does) it only checks that every
//! case decodes.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use connection::{decode, encode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use common::small;

/// One case: a name, its payload, and a decode of it as the case's type.
struct Case {
    name: &'static str,
    payload: Vec<u8>,
    decode: fn(&[u8]),
}

fn case<T: Serialize + DeserializeOwned>(name: &'static str, value: T) -> Case {
    Case {
        name,
        payload: encode(&value).expect("encode"),
        decode: |payload| {
            black_box(decode::<T>(black_box(payload)).expect("decode"));
        },
    }
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "Vec<u8>, 1 MiB",
            (0..1u32 << 20).map(|i| i as u8).collect::<Vec<u8>>(),
        ),
        case(
            "Vec<u64>, 128 Ki small values",
            (0..1u64 << 17).map(|i| i % 200).collect::<Vec<u64>>(),
        ),
        case(
            "Vec<String>, 10 Ki of 20 bytes",
            (0..10_240)
                .map(|i| format!("{i:020}"))
                .collect::<Vec<String>>(),
        ),
        case("small struct, 1 Ki of them", vec![small(); 1024]),
    ]
}

const ROUNDS: usize = 41;

/// Runs `f` `iters` times and returns the time taken.
fn timed(iters: u32, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let measure = std::env::args().any(|arg| arg == "--bench");
    let cases = cases();
    if !measure {
        for case in &cases {
            (case.decode)(&case.payload);
        }
        println!("decode bench: every case decoded (run `cargo bench -p connection --bench decode` to measure)");
        return;
    }
    println!("| case | payload | decode, median | copy, median | decode / copy |");
    println!("| --- | --- | --- | --- | --- |");
    for case in &cases {
        // About 20 ms of decoding per round.
        let once = timed(1, || (case.decode)(&case.payload));
        let iters =
            (Duration::from_millis(20).as_nanos() / once.as_nanos().max(1)).clamp(1, 10_000) as u32;
        let (mut decodes, mut copies, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let decode_time = timed(iters, || (case.decode)(&case.payload));
            let copy_time = timed(iters, || {
                black_box(black_box(&case.payload).to_vec());
            });
            decodes.push(decode_time.as_secs_f64() / f64::from(iters));
            copies.push(copy_time.as_secs_f64() / f64::from(iters));
            ratios.push(decode_time.as_secs_f64() / copy_time.as_secs_f64());
        }
        println!(
            "| {} | {} bytes | {:.1} µs | {:.1} µs | {:.1}x |",
            case.name,
            case.payload.len(),
            median(decodes) * 1e6,
            median(copies) * 1e6,
            median(ratios),
        );
    }
}
