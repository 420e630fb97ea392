//! A pool program whose inputs are byte buffers of mixed sizes, small and
//! large, for `tests/pool_large_inputs.rs`: large inputs go to a worker as
//! messages of their own, straight from buffers that a call reuses from
//! one input to the next, and small ones in batches. Each scenario runs
//! its call several times, so that later calls run on reused buffers, and
//! prints what it found as `label: value` lines.
//!
//! - `mixed`: `map`, `imap` and `map` of plain `Vec<u8>`, over inputs from
//!   0 bytes to 5 MiB interleaved; every output checked, in order.
//! - `killed`: `map_with(..).keep_failures()` over 2 MiB inputs where one input kills its
//!   worker with SIGKILL: that input alone fails, the others come back
//!   right, and the pool replaces the worker.

use connection::serde_bytes::ByteBuf;
use pool::{Pool, Result};

pool::task! {
    /// The input's length and the sum of its bytes, and the input itself
    /// with every byte inverted: a large output for a large input.
    fn digest(data: ByteBuf) -> (usize, u64, ByteBuf) {
        let sum = data.iter().map(|&b| u64::from(b)).sum();
        let inverted = data.iter().map(|&b| !b).collect::<Vec<u8>>();
        (data.len(), sum, ByteBuf::from(inverted))
    }
}

pool::task! {
    /// [`digest`]'s length and sum, of a plain `Vec<u8>`.
    fn digest_vec(data: Vec<u8>) -> (usize, u64) {
        (data.len(), data.iter().map(|&b| u64::from(b)).sum())
    }
}

/// The first byte of the input that kills its worker.
const DEADLY: u8 = 0xEE;

pool::task! {
    /// The sum of the input's bytes; an input starting with [`DEADLY`]
    /// kills this worker instead.
    fn sum_or_die(data: ByteBuf) -> u64 {
        if data.first() == Some(&DEADLY) {
            // SAFETY: kill(2) on this very process; nothing is shared.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
        data.iter().map(|&b| u64::from(b)).sum()
    }
}

/// Sizes that cross every path: empty, tiny, just under and over the
/// 64 KiB from which a lone input skips the batch, and over the 1 MiB
/// from which messages go as shared memory.
const SIZES: [usize; 8] = [0, 1, 70_000, 3 << 20, 17, 65_535, (5 << 20) + 3, 1 << 20];

fn input(index: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ index as u8)
        .collect()
}

fn expected(data: &[u8]) -> (usize, u64) {
    (data.len(), data.iter().map(|&b| u64::from(b)).sum())
}

fn pids(pool: &Pool) -> Vec<u32> {
    let mut pids = pool.worker_pids();
    pids.sort_unstable();
    pids
}

fn mixed(pool: &Pool) -> Result<()> {
    let inputs: Vec<Vec<u8>> = (0..2 * SIZES.len())
        .map(|index| input(index, SIZES[index % SIZES.len()]))
        .collect();
    let right = |outputs: &[(usize, u64, ByteBuf)]| {
        outputs.len() == inputs.len()
            && outputs
                .iter()
                .zip(&inputs)
                .all(|((len, sum, inverted), input)| {
                    (*len, *sum) == expected(input)
                        && inverted.iter().zip(input).all(|(o, i)| *o == !*i)
                        && inverted.len() == input.len()
                })
    };
    for round in 0..2 {
        let buffers = inputs.iter().cloned().map(ByteBuf::from);
        let outputs = pool.map(digest, buffers)?;
        println!("map {round}: {}", right(&outputs));
        let buffers = inputs.iter().cloned().map(ByteBuf::from);
        let outputs = pool.imap(digest, buffers).collect::<Result<Vec<_>>>()?;
        println!("imap {round}: {}", right(&outputs));
        let outputs = pool.map(digest_vec, inputs.iter().cloned())?;
        let all_right = outputs.len() == inputs.len()
            && outputs.iter().zip(&inputs).all(|(o, i)| *o == expected(i));
        println!("map vec {round}: {all_right}");
    }
    Ok(())
}

fn killed(pool: &Pool) -> Result<()> {
    let before = pids(pool);
    for round in 0..3 {
        let inputs: Vec<Vec<u8>> = (0..12)
            .map(|index| {
                let mut data = input(index, 2 << 20);
                data[0] = if index == 5 { DEADLY } else { 0 };
                data
            })
            .collect();
        let outcomes = pool
            .map_with(sum_or_die, inputs.iter().cloned().map(ByteBuf::from))
            .keep_failures()
            .run()?;
        for (index, outcome) in outcomes.iter().enumerate() {
            if let Err(err) = outcome {
                println!("round {round} failed: index={index} kind={:?}", err.kind());
            }
        }
        let others_right = outcomes.len() == inputs.len()
            && outcomes
                .iter()
                .zip(&inputs)
                .enumerate()
                .filter(|(index, _)| *index != 5)
                .all(|(_, (outcome, input))| outcome.as_ref().ok() == Some(&expected(input).1));
        println!("round {round} others right: {others_right}");
    }
    println!("worker replaced: {}", pids(pool) != before);
    Ok(())
}

fn main() -> Result<()> {
    pool::init();
    let pool = Pool::builder()
        .processes(2)
        .handle_interrupts(false)
        .build()?;
    match std::env::args().nth(1).as_deref() {
        Some("mixed") => mixed(&pool)?,
        Some("killed") => killed(&pool)?,
        other => println!("unknown scenario {other:?}"),
    }
    Ok(())
}
