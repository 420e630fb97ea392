//! A pool program whose inputs and outputs are 8 MiB byte buffers, for
//! `tests/pool_shared_memory.rs`: it prints whether they came back whole,
//! and the evidence that they travelled as shared memory between this
//! parent and its local workers (the process-wide counters of
//! `connection::shared_memory_stats`, here and in the worker).

use pool::{Pool, Result};

const LEN: usize = 8 << 20;

pool::task! {
    /// The buffer reversed, and how many shared-memory messages this
    /// worker had received when it ran (its input's among them).
    fn reverse(bytes: Vec<u8>) -> (Vec<u8>, u64) {
        let received = connection::shared_memory_stats().received;
        (bytes.into_iter().rev().collect(), received)
    }
}

fn main() -> Result<()> {
    pool::init();
    let pool = Pool::builder()
        .processes(2)
        .handle_interrupts(false)
        .build()?;
    let inputs: Vec<Vec<u8>> = (0..4u8)
        .map(|seed| {
            (0..LEN)
                .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                .collect()
        })
        .collect();
    let before = connection::shared_memory_stats();
    let outputs = pool.map(reverse, inputs.clone())?;
    let after = connection::shared_memory_stats();
    let whole = outputs
        .iter()
        .zip(&inputs)
        .all(|((output, _), input)| output.iter().rev().eq(input.iter()));
    println!("round trip: {whole}");
    println!("parent sent: {}", after.sent - before.sent);
    println!("parent received: {}", after.received - before.received);
    let worker_received = outputs
        .iter()
        .map(|(_, received)| *received)
        .min()
        .unwrap_or(0);
    println!("worker received at least: {worker_received}");
    Ok(())
}
