//! How fast `connection::encode` and `connection::decode` turn values into
//! payloads and back, against copying the payload (`to_vec`), the least
//! either must do.
//!
//! Encoding, decoding and copying are measured interleaved, many short
//! rounds each, and the table reports the medians of the per-round ratios,
//! so that a noisy neighbour on the machine slows all three rather than one
//! of them. The ratios are what to compare between two versions of the
//! codec run in the same session; absolute times mean little on a shared
//! machine. It uses only the public API, so an older version can run it.
//!
//! `cargo bench -p connection --bench codec` measures. Run without
//! `--bench` (as `cargo test --benches` does) it only checks that every
//! case encodes and decodes.

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use connection::{decode, encode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use common::small;

/// One case: a name, its payload, an encode of the value, and a decode of
/// the payload as the value's type.
struct Case {
    name: &'static str,
    payload: Vec<u8>,
    encode: Box<dyn Fn()>,
    decode: fn(&[u8]),
}

fn case<T: Serialize + DeserializeOwned + 'static>(name: &'static str, value: T) -> Case {
    Case {
        name,
        payload: encode(&value).expect("encode"),
        encode: Box::new(move || {
            black_box(encode(black_box(&value)).expect("encode"));
        }),
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
            "Vec<f64>, 128 Ki",
            (0..1u32 << 17)
                .map(|i| f64::from(i) * 0.5)
                .collect::<Vec<f64>>(),
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
            (case.encode)();
            (case.decode)(&case.payload);
        }
        println!("codec bench: every case encoded and decoded (run `cargo bench -p connection --bench codec` to measure)");
        return;
    }
    println!("| case | payload | encode, median | decode, median | copy, median | encode / copy | decode / copy |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for case in &cases {
        // About 20 ms of decoding per round, and as many encodes and copies.
        let once = timed(1, || (case.decode)(&case.payload));
        let iters =
            (Duration::from_millis(20).as_nanos() / once.as_nanos().max(1)).clamp(1, 10_000) as u32;
        let [mut encodes, mut decodes, mut copies, mut encode_ratios, mut decode_ratios] =
            [(); 5].map(|()| Vec::new());
        let per_iter = |time: Duration| time.as_secs_f64() / f64::from(iters);
        for _ in 0..ROUNDS {
            let encode_time = per_iter(timed(iters, || (case.encode)()));
            let decode_time = per_iter(timed(iters, || (case.decode)(&case.payload)));
            let copy_time = per_iter(timed(iters, || {
                black_box(black_box(&case.payload).to_vec());
            }));
            encodes.push(encode_time);
            decodes.push(decode_time);
            copies.push(copy_time);
            encode_ratios.push(encode_time / copy_time);
            decode_ratios.push(decode_time / copy_time);
        }
        println!(
            "| {} | {} bytes | {:.1} µs | {:.1} µs | {:.1} µs | {:.1}x | {:.1}x |",
            case.name,
            case.payload.len(),
            median(encodes) * 1e6,
            median(decodes) * 1e6,
            median(copies) * 1e6,
            median(encode_ratios),
            median(decode_ratios),
        );
    }
}
