//! A small async service in front of a pool: each line on stdin is a
//! request, `N` or `START..END`, answered on stdout with the number of
//! primes in that range, as soon as a worker has counted them. Requests do
//! not wait for each other: every one is its own tokio task awaiting its
//! `apply_async`, so many are in flight at once and quick answers overtake
//! slow ones.
//!
//! ```text
//! printf '1e6\n10..20\n1e9\n' | cargo run --release -p examples --bin prime_service
//! ```

#![deny(unsafe_code)]

use std::error::Error;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use clap::Parser;
use examples::cli::{exit_code, parse_count, start_pool, Common};
use examples::primes::{count_primes, MAX_LIMIT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

/// Answer prime-counting requests from stdin, many at once, on a pool.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: Common,
}

/// A request line: `N` (the primes below N) or `START..END`.
fn parse_request(line: &str) -> Result<std::ops::Range<u64>, String> {
    let bound = |text: &str| {
        parse_count(text.trim()).and_then(|n| match n <= MAX_LIMIT {
            true => Ok(n),
            false => Err(format!("{n} is over the limit of {MAX_LIMIT}")),
        })
    };
    match line.split_once("..") {
        Some((start, end)) => Ok(bound(start)?..bound(end)?),
        None => Ok(0..bound(line)?),
    }
}

fn main() -> ExitCode {
    pool::init();
    let args = Args::parse();
    exit_code("prime_service", run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let pool = Arc::new(start_pool(args.common.pool_builder()?)?);
    // Two runtime threads are plenty: they only wait; the counting happens
    // in the pool's worker processes.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    runtime.block_on(serve(pool))
}

async fn serve(pool: Arc<pool::Pool>) -> Result<(), Box<dyn Error>> {
    // One writer owns stdout, so that answers are whole lines.
    let (answers, mut to_write) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = to_write.recv().await {
            stdout.write_all(line.as_bytes()).await?;
        }
        stdout.flush().await
    });
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most_in_flight = Arc::new(AtomicUsize::new(0));
    let mut requests = 0;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut handlers = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim().to_string();
        if line.is_empty() {
            continue;
        }
        requests += 1;
        let answers = answers.clone();
        let range = match parse_request(&line) {
            Ok(range) => range,
            Err(why) => {
                let _ = answers.send(format!("{line}: error: {why}\n"));
                continue;
            }
        };
        // Submitted here, in request order; awaited in a task of its own.
        let counted = pool.apply_async(count_primes, range);
        let now = in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        most_in_flight.fetch_max(now, Ordering::Relaxed);
        let in_flight = Arc::clone(&in_flight);
        handlers.push(tokio::spawn(async move {
            let answer = match counted.await {
                Ok(count) => format!("{line}: {count}\n"),
                Err(err) => format!("{line}: error: {err:#}\n"),
            };
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = answers.send(answer);
        }));
    }
    for handler in handlers {
        handler.await?;
    }
    drop(answers);
    writer.await??;
    eprintln!(
        "served {requests} requests, at most {} in flight at once",
        most_in_flight.load(Ordering::Relaxed)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_request;

    #[test]
    fn requests_are_limits_or_ranges() {
        assert_eq!(parse_request("100"), Ok(0..100));
        assert_eq!(parse_request("1e3"), Ok(0..1000));
        assert_eq!(parse_request(" 10..20 "), Ok(10..20));
        assert!(parse_request("ten").is_err());
        assert!(parse_request("1e13").is_err());
    }
}
