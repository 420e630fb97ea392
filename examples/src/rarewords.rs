//! Rare words: the words of each file that a dictionary of common words
//! lacks. The dictionary is per-worker state ([`pool::WorkerState`]):
//! each worker loads it once, from the path its initializer is given, and
//! every task borrows it; nobody declares a `static` for it.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use pool::WorkerState;
use serde::{Deserialize, Serialize};

use crate::wordfreq::{count_file, WordCounts};

/// Dictionaries loaded by this process: 1 in each worker, however many
/// files it checks (reported, to show it).
static LOADS: AtomicU64 = AtomicU64::new(0);

/// The common words, one per line in a file, as a worker holds them.
pub struct CommonWords(HashSet<String>);

impl CommonWords {
    /// Reads the dictionary at `path`: one word per line, any case.
    pub fn load(path: &Path) -> io::Result<CommonWords> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
        LOADS.fetch_add(1, Ordering::Relaxed);
        Ok(CommonWords(
            text.lines()
                .map(|word| word.trim().to_lowercase())
                .filter(|word| !word.is_empty())
                .collect(),
        ))
    }
}

/// Installed by [`load_common_words`], the pool's initializer: no `build`,
/// so a pool without that initializer fails each input saying so.
impl WorkerState for CommonWords {}

pool::task! {
    /// The initializer: loads the dictionary at `path` into this worker.
    pub fn load_common_words(path: PathBuf) -> io::Result<()> {
        CommonWords::load(&path)?.install();
        Ok(())
    }
}

/// One file's rare words, and who counted them.
#[derive(Debug, Serialize, Deserialize)]
pub struct RareWords {
    /// The file's words missing from the dictionary, with their counts.
    pub counts: WordCounts,
    /// The worker's pid.
    pub worker: u32,
    /// How many times that worker had loaded the dictionary by then.
    pub loads: u64,
}

/// The words of `counts` that `common` lacks.
pub fn rare(counts: WordCounts, common: &HashSet<String>) -> WordCounts {
    WordCounts {
        counts: counts
            .counts
            .into_iter()
            .filter(|(word, _)| !common.contains(word))
            .collect(),
    }
}

/// What a task may fail with: an unreadable file, or no dictionary.
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

pool::task! {
    /// The rare words of the file at `path`, by the worker's dictionary.
    pub fn rare_words(path: PathBuf) -> Result<RareWords, Failure> {
        let counts = count_file(&path)?;
        Ok(RareWords {
            counts: CommonWords::with(|common| rare(counts, &common.0))?,
            worker: std::process::id(),
            loads: LOADS.load(Ordering::Relaxed),
        })
    }
}
