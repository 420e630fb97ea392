//! Finds the rare words of every file in a directory: the words a
//! dictionary of common words lacks. Each worker loads the dictionary once
//! (per-worker state, `pool::WorkerState`, installed by the pool's
//! initializer from the dictionary's path) and every task borrows it.
//!
//! Without a directory it generates a corpus and a dictionary of its 60
//! most common words first. It ends by saying how many times each worker
//! loaded the dictionary: once.
//!
//! ```text
//! cargo run --release -p examples --bin rarewords
//! cargo run --release -p examples --bin rarewords -- ~/books --dictionary words.txt
//! ```

#![deny(unsafe_code)]

use std::collections::BTreeMap;
use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use examples::cli::{exit_code, parse_count_in, start_pool, Common};
use examples::rarewords::{load_common_words, rare_words};
use examples::tempdir::TempDir;
use examples::wordfreq::{generate_corpus, list_files, vocabulary, WordCounts};

/// List the words of a directory's files that a dictionary lacks.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Directory of text files [default: a generated corpus]
    dir: Option<PathBuf>,

    /// Dictionary of common words, one per line [default: the generated
    /// corpus's 60 most common words]
    #[arg(long)]
    dictionary: Option<PathBuf>,

    /// Files in the generated corpus
    #[arg(long, default_value_t = 32, value_parser = |s: &str| parse_count_in(s, 1..=10_000))]
    files: u64,

    /// Words in each file of the generated corpus
    #[arg(long, default_value = "50_000", value_parser = |s: &str| parse_count_in(s, 1..=100_000_000))]
    words_per_file: u64,

    /// How many of the most frequent rare words to list
    #[arg(long, default_value_t = 10)]
    top: usize,

    #[command(flatten)]
    common: Common,
}

fn main() -> ExitCode {
    let args = Args::parse();
    exit_code("rarewords", run(&args))
}

fn run(args: &Args) -> Result<(), Box<dyn Error>> {
    let generated = TempDir::new("rarewords")?;
    let dir: &Path = match &args.dir {
        Some(dir) => dir,
        None => {
            let files = args.files as usize;
            generate_corpus(generated.path(), files, args.words_per_file as usize, 1)?;
            generated.path()
        }
    };
    let dictionary = match &args.dictionary {
        Some(path) => path.clone(),
        None => {
            let path = generated.path().join("common-words.dict");
            std::fs::write(&path, vocabulary()[..60].join("\n"))?;
            path
        }
    };
    let files: Vec<PathBuf> = list_files(dir)?
        .into_iter()
        .filter(|file| *file != dictionary)
        .collect();

    let builder = args
        .common
        .pool_builder()?
        .initializer(load_common_words, dictionary);
    let pool = start_pool(builder)?;
    let mut total = WordCounts::default();
    // Each worker's pid, with the most dictionaries it had loaded.
    let mut loads: BTreeMap<u32, u64> = BTreeMap::new();
    for result in pool.imap_unordered(rare_words, files.clone()) {
        let (_index, found) = result?;
        total.merge(found.counts);
        let most = loads.entry(found.worker).or_default();
        *most = (*most).max(found.loads);
    }

    println!(
        "{} rare words, {} distinct, in {} files",
        total.total(),
        total.counts.len(),
        files.len()
    );
    for (rank, (word, count)) in total.top(args.top).into_iter().enumerate() {
        println!("{:>4}. {word:<16} {count:>12}", rank + 1);
    }
    let once = loads.values().all(|&n| n == 1);
    println!(
        "{} workers loaded the dictionary {}",
        loads.len(),
        if once { "once each" } else { "more than once" }
    );
    if !once {
        return Err(format!("dictionary loads per worker: {loads:?}").into());
    }
    Ok(())
}
