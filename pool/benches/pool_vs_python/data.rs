//! The data-heavy workloads of `pool_vs_python`: `map` over 200 inputs of
//! 4 MiB, as `serde_bytes::ByteBuf` and as plain `Vec<u8>`, each with a
//! small output (a checksum: the target applies to this one) and with an
//! output as large as its input (the bytes inverted); and `map` over
//! 5,000,000 `u64`, its throughput and the parent's peak RSS growth.

use std::time::Instant;

use pool::Pool;
use serde_bytes::ByteBuf;

pool::task! {
    /// A checksum of a byte buffer: the sum of its 64-bit words.
    fn checksum_bytebuf(data: ByteBuf) -> u64 { word_sum(&data) }
}

pool::task! {
    /// [`checksum_bytebuf`] of a plain `Vec<u8>`, encoded byte by byte.
    fn checksum_vec(data: Vec<u8>) -> u64 { word_sum(&data) }
}

pool::task! {
    /// Every byte inverted: an output as large as the input.
    fn invert_bytebuf(data: ByteBuf) -> ByteBuf {
        let mut data = data.into_vec();
        invert(&mut data);
        ByteBuf::from(data)
    }
}

pool::task! {
    /// [`invert_bytebuf`] of a plain `Vec<u8>`.
    fn invert_vec(data: Vec<u8>) -> Vec<u8> {
        let mut data = data;
        invert(&mut data);
        data
    }
}

pool::task! {
    /// The cheapest `u64` task, for the 5,000,000-input map.
    fn same(x: u64) -> u64 { x }
}

pub const BUFFERS: usize = 200;
pub const BUFFER_BYTES: usize = 4 << 20;
pub const SMALL_INPUTS: u64 = 5_000_000;
const RUNS: usize = 3;

/// What the data workloads measured, in MiB of input per second.
pub struct DataMeasured {
    pub bytebuf_checksum: f64,
    pub bytebuf_invert: f64,
    pub vec_checksum: f64,
    pub vec_invert: f64,
    /// The 5,000,000-`u64` map: inputs per second...
    pub small_per_s: f64,
    /// ...and the growth of the parent's peak RSS over its RSS before, MiB.
    pub small_rss_growth_mib: f64,
}

fn word_sum(data: &[u8]) -> u64 {
    // Whole words in a loop the compiler vectorizes, then the last partial
    // word padded with zeros: the task touches every byte at memory speed,
    // as CPython's `zlib.adler32` does on its side.
    let words = data.chunks_exact(8);
    let tail = words.remainder();
    let sum = words.fold(0u64, |sum, word| {
        let word: [u8; 8] = word.try_into().unwrap_or_default();
        sum.wrapping_add(u64::from_le_bytes(word))
    });
    let mut last = [0u8; 8];
    last[..tail.len()].copy_from_slice(tail);
    sum.wrapping_add(u64::from_le_bytes(last))
}

fn invert(data: &mut [u8]) {
    data.iter_mut().for_each(|byte| *byte = !*byte);
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The 5,000,000-`u64` map, on a pool with nothing else done yet in this
/// process beyond a warm-up: `(inputs/s, peak RSS growth in MiB)`.
fn small_inputs(pool: &Pool) -> Result<(f64, f64), pool::Error> {
    pool.map(same, 0..10_000)?;
    // Resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let before = status_kib("VmRSS:").unwrap_or(f64::NAN);
    let began = Instant::now();
    let outputs = pool.map(same, 0..SMALL_INPUTS)?;
    let elapsed = began.elapsed();
    let peak = status_kib("VmHWM:").unwrap_or(f64::NAN);
    assert!(outputs.iter().copied().eq(0..SMALL_INPUTS));
    drop(outputs);
    if !reset {
        println!("(could not reset the peak RSS: the growth shown is an upper bound)");
    }
    Ok((
        SMALL_INPUTS as f64 / elapsed.as_secs_f64(),
        (peak - before) / 1024.0,
    ))
}

/// The best rate of a few runs of `map(task, buffers)`, in MiB of input
/// per second; `check` verifies every run's outputs.
fn best_rate<T: pool::Task>(
    pool: &Pool,
    task: T,
    buffers: &[T::Input],
    check: impl Fn(&[T::Output]),
) -> Result<f64, pool::Error>
where
    T::Input: Clone,
{
    let mut best: f64 = 0.0;
    for _ in 0..RUNS {
        let inputs = buffers.to_vec();
        let began = Instant::now();
        let outputs = pool.map(task, inputs)?;
        let rate =
            (BUFFERS * BUFFER_BYTES) as f64 / (1 << 20) as f64 / began.elapsed().as_secs_f64();
        check(&outputs);
        best = best.max(rate);
    }
    Ok(best)
}

pub fn measure(processes: usize) -> Result<DataMeasured, pool::Error> {
    let pool = Pool::new(processes)?;
    let (small_per_s, small_rss_growth_mib) = small_inputs(&pool)?;

    let plain: Vec<Vec<u8>> = (0..BUFFERS)
        .map(|i| (0..BUFFER_BYTES).map(|j| (i * 7 + j) as u8).collect())
        .collect();
    let sums: Vec<u64> = plain.iter().map(|buffer| word_sum(buffer)).collect();
    let check_sums = |outputs: &[u64]| assert_eq!(outputs, sums);
    let check_inverted = |outputs: &[Vec<u8>]| {
        for (output, input) in outputs.iter().zip(&plain) {
            assert!(output.iter().zip(input).all(|(o, i)| *o == !*i));
        }
        assert_eq!(outputs.len(), plain.len());
    };
    let vec_checksum = best_rate(&pool, checksum_vec, &plain, check_sums)?;
    let vec_invert = best_rate(&pool, invert_vec, &plain, check_inverted)?;
    let buffers: Vec<ByteBuf> = plain.iter().cloned().map(ByteBuf::from).collect();
    let bytebuf_checksum = best_rate(&pool, checksum_bytebuf, &buffers, check_sums)?;
    let bytebuf_invert = best_rate(&pool, invert_bytebuf, &buffers, |outputs| {
        let outputs: Vec<Vec<u8>> = outputs.iter().map(|o| o.to_vec()).collect();
        check_inverted(&outputs);
    })?;
    Ok(DataMeasured {
        bytebuf_checksum,
        bytebuf_invert,
        vec_checksum,
        vec_invert,
        small_per_s,
        small_rss_growth_mib,
    })
}
