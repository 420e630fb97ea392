//! Counts the words of every file in a directory on every core, then
//! merges the counts here: the pool's `imap_unordered`.
//!
//! Each file is one task. `pool.imap_unordered(count_words, files)` yields
//! each file's counts as soon as a worker has them, in whatever order they
//! finish, and this process folds them into the total: a map in the workers,
//! a reduce in the parent. Without a directory, it writes a corpus of
//! generated text to a temporary directory first (the same text for the same
//! `--seed`), and removes it at the end.
//!
//! ```text
//! cargo run --release -p examples --bin wordfreq
//! cargo run --release -p examples --bin wordfreq -- ~/books --top 20
//! ```

#![deny(unsafe_code)]

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use examples::cli::{exit_code, parse_count_in, start_pool, timed, Common, Report};
use examples::progress;
use examples::tempdir::TempDir;
use examples::wordfreq::{count_file, count_words, generate_corpus, list_files, WordCounts};

/// Count word frequencies over the files of a directory, one file per task.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Directory of text files to count [default: a generated corpus]
    dir: Option<PathBuf>,

    /// How many of the most frequent words to list
    #[arg(long, default_value_t = 10)]
    top: usize,

    /// Files in the generated corpus
    #[arg(long, default_value_t = 32, value_parser = |s: &str| parse_count_in(s, 1..=10_000))]
    files: u64,

    /// Words in each file of the generated corpus
    #[arg(long, default_value = "200_000", value_parser = |s: &str| parse_count_in(s, 1..=100_000_000))]
    words_per_file: u64,

    /// Seed of the generated corpus
    #[arg(long, default_value_t = 1)]
    seed: u64,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    // In a worker process this runs the worker loop and never returns.
    pool::init();
    let args = Args::parse();
    exit_code("wordfreq", run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    // Keep the generated corpus (if any) alive until the end of the run.
    let generated;
    let dir: &Path = match &args.dir {
        Some(dir) => dir,
        None => {
            generated = TempDir::new("wordfreq-corpus")?;
            let files = args.files as usize;
            generate_corpus(
                generated.path(),
                files,
                args.words_per_file as usize,
                args.seed,
            )?;
            println!(
                "generated {files} files of {} words in {}",
                args.words_per_file,
                generated.path().display()
            );
            generated.path()
        }
    };
    let files = list_files(dir)?;
    if files.is_empty() {
        return Err(format!("{}: no files to count", dir.display()).into());
    }
    let workers = args.common.workers();
    let builder = args.common.pool_builder()?;

    let bar = progress::bar(files.len() as u64, "files", args.common.quiet);
    let mut remote = 0;
    let (total, parallel) = timed(|| -> Result<WordCounts, pool::Error> {
        let pool = start_pool(builder)?;
        let mut total = WordCounts::default();
        // Each result comes with its input's index, which a sum ignores.
        for result in pool.imap_unordered(count_words, files.clone()) {
            let (_index, counts) = result?;
            total.merge(counts);
            bar.inc(1);
        }
        remote = pool.remote_workers_joined();
        Ok(total)
    });
    bar.finish_and_clear();
    let total = total?;

    println!(
        "{} words, {} distinct, in {} files",
        total.total(),
        total.counts.len(),
        files.len()
    );
    for (rank, (word, count)) in total.top(args.top).into_iter().enumerate() {
        println!("{:>4}. {word:<16} {count:>12}", rank + 1);
    }

    let serial = if args.common.no_serial {
        None
    } else {
        let spinner = progress::spinner("serial run, for comparison", args.common.quiet);
        let (serial_total, serial) = timed(|| -> std::io::Result<WordCounts> {
            let mut total = WordCounts::default();
            for file in &files {
                total.merge(count_file(file)?);
            }
            Ok(total)
        });
        spinner.finish_and_clear();
        if serial_total? != total {
            return Err("the serial counts differ from the pool's".into());
        }
        Some(serial)
    };
    println!(
        "{}",
        Report::new(workers, parallel, serial).with_remote(remote)
    );
    Ok(())
}
