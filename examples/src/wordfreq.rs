//! Word frequencies over a directory of text files: the kernels behind the
//! `wordfreq` program, and the deterministic corpus it generates when it is
//! given no directory. [`count_words`] is the kernel as a pool task.

use std::collections::HashMap;
use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::rng::{stream_seed, SplitMix64};

/// Word counts: each word (lower case) and how many times it occurs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordCounts {
    /// Occurrences of each word.
    pub counts: HashMap<String, u64>,
}

impl WordCounts {
    /// Counts the words of `text`.
    ///
    /// A word is a maximal run of alphanumeric characters or apostrophes
    /// inside a word ("don't"), compared in lower case.
    ///
    /// # Examples
    ///
    /// ```
    /// let counts = examples::wordfreq::WordCounts::of_text("The cat; the HAT. Don't!");
    /// assert_eq!(counts.counts["the"], 2);
    /// assert_eq!(counts.counts["don't"], 1);
    /// assert_eq!(counts.total(), 5);
    /// ```
    pub fn of_text(text: &str) -> WordCounts {
        let mut counts = WordCounts::default();
        for word in words(text) {
            // Look up before allocating: almost every word is a repeat.
            match counts.counts.get_mut(word.as_str()) {
                Some(n) => *n += 1,
                None => {
                    counts.counts.insert(word, 1);
                }
            }
        }
        counts
    }

    /// Adds `other`'s counts to these.
    pub fn merge(&mut self, other: WordCounts) {
        for (word, n) in other.counts {
            *self.counts.entry(word).or_insert(0) += n;
        }
    }

    /// The number of words counted, repeats included.
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    /// The `n` most frequent words, most frequent first; ties in
    /// alphabetical order, so the listing is the same on every run.
    pub fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self
            .counts
            .iter()
            .map(|(word, &count)| (word.as_str(), count))
            .collect();
        all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }
}

/// The words of `text`, lower-cased.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|word| word.trim_matches('\''))
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
}

/// Counts the words of the file at `path`. Bytes that are not UTF-8 are
/// read as U+FFFD, which separates words, so a stray binary file is counted
/// rather than refused.
pub fn count_file(path: &Path) -> io::Result<WordCounts> {
    let bytes = fs::read(path)
        .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
    Ok(WordCounts::of_text(&String::from_utf8_lossy(&bytes)))
}

pool::task! {
    /// [`count_file`] as a pool task: `pool.imap_unordered(count_words, paths)`.
    /// A file that cannot be read fails this task alone, with the reason.
    pub fn count_words(path: PathBuf) -> Result<WordCounts, io::Error> {
        count_file(&path)
    }
}

/// The regular files directly inside `dir`, sorted by name. A missing or
/// unreadable directory is an error naming it.
pub fn list_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let context = |err: io::Error| io::Error::new(err.kind(), format!("{}: {err}", dir.display()));
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(context)? {
        let entry = entry.map_err(context)?;
        let path = entry.path();
        // Follow symlinks: a link to a text file is a text file here, and a
        // dangling link is an error naming it rather than a silent skip.
        let metadata = fs::metadata(&path)
            .map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", path.display())))?;
        if metadata.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The vocabulary of the generated corpus, most frequent first. Frequencies
/// follow Zipf's law, as in natural text: the k-th word is drawn with
/// weight 1/k.
const VOCABULARY: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "a",
    "in",
    "is",
    "that",
    "it",
    "was",
    "for",
    "on",
    "are",
    "as",
    "with",
    "his",
    "they",
    "at",
    "be",
    "this",
    "from",
    "have",
    "or",
    "by",
    "one",
    "had",
    "not",
    "but",
    "what",
    "all",
    "were",
    "when",
    "we",
    "there",
    "can",
    "an",
    "your",
    "which",
    "their",
    "said",
    "if",
    "do",
    "will",
    "each",
    "about",
    "how",
    "up",
    "out",
    "them",
    "then",
    "she",
    "many",
    "some",
    "so",
    "these",
    "would",
    "other",
    "into",
    "has",
    "more",
    "her",
    "two",
    "like",
    "him",
    "see",
    "time",
    "could",
    "no",
    "make",
    "than",
    "first",
    "been",
    "its",
    "who",
    "now",
    "people",
    "my",
    "made",
    "over",
    "did",
    "down",
    "only",
    "way",
    "find",
    "use",
    "may",
    "water",
    "long",
    "little",
    "very",
    "after",
    "words",
    "called",
    "just",
    "where",
    "most",
    "know",
    "process",
    "pool",
    "worker",
    "message",
    "pipe",
    "connection",
    "prime",
    "sieve",
    "parallel",
    "task",
    "result",
    "queue",
    "signal",
    "socket",
    "buffer",
    "thread",
    "kernel",
];

/// The generated corpus's words, most frequent first.
pub fn vocabulary() -> &'static [&'static str] {
    VOCABULARY
}

/// Writes a corpus of `files` text files of `words_per_file` words each into
/// `dir` (which must exist), drawn from a fixed vocabulary by a generator
/// seeded with `seed`: the same arguments always write the same bytes.
/// Returns the paths written, sorted.
pub fn generate_corpus(
    dir: &Path,
    files: usize,
    words_per_file: usize,
    seed: u64,
) -> io::Result<Vec<PathBuf>> {
    // Cumulative Zipf weights, to draw a word by binary search.
    let cumulative: Vec<f64> = VOCABULARY
        .iter()
        .enumerate()
        .scan(0.0, |sum, (rank, _)| {
            *sum += 1.0 / (rank + 1) as f64;
            Some(*sum)
        })
        .collect();
    let total_weight = cumulative[cumulative.len() - 1];

    let mut paths = Vec::with_capacity(files);
    for index in 0..files {
        let path = dir.join(format!("text-{index:04}.txt"));
        let mut out = BufWriter::new(fs::File::create(&path)?);
        let mut rng = SplitMix64::new(stream_seed(seed, index as u64));
        for n in 0..words_per_file {
            let target = rng.next_f64() * total_weight;
            let rank = cumulative.partition_point(|&c| c <= target);
            let word = VOCABULARY[rank.min(VOCABULARY.len() - 1)];
            // Twelve words to a line, with a capital and a full stop now and
            // then, so the tokenizer has case and punctuation to deal with.
            let capitalise = n % 12 == 0 && rng.below(2) == 0;
            if capitalise {
                let mut chars = word.chars();
                let first = chars.next().map(|c| c.to_ascii_uppercase());
                write!(out, "{}{}", first.unwrap_or_default(), chars.as_str())?;
            } else {
                out.write_all(word.as_bytes())?;
            }
            let separator = match n % 12 {
                11 => ".\n",
                5 => ", ",
                _ => " ",
            };
            out.write_all(separator.as_bytes())?;
        }
        out.flush()?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tempdir::TempDir;

    #[test]
    fn words_are_lowercased_and_split_on_punctuation() {
        let counts = WordCounts::of_text("It's a pool-worker's pool.\n'Quoted' 42 times; ÉTÉ été");
        let mut got: Vec<_> = counts
            .counts
            .iter()
            .map(|(w, &n)| (w.as_str(), n))
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("42", 1),
                ("a", 1),
                ("it's", 1),
                ("pool", 2),
                ("quoted", 1),
                ("times", 1),
                ("worker's", 1),
                ("été", 2),
            ]
        );
    }

    #[test]
    fn merge_adds_and_top_breaks_ties_alphabetically() {
        let mut a = WordCounts::of_text("b a c");
        a.merge(WordCounts::of_text("c b d"));
        assert_eq!(a.total(), 6);
        assert_eq!(a.top(3), [("b", 2), ("c", 2), ("a", 1)]);
    }

    #[test]
    fn corpus_is_deterministic_and_zipf_shaped() {
        let first = TempDir::new("wordfreq-test").unwrap();
        let second = TempDir::new("wordfreq-test").unwrap();
        let a = generate_corpus(first.path(), 3, 2000, 9).unwrap();
        let b = generate_corpus(second.path(), 3, 2000, 9).unwrap();
        assert_eq!(a.len(), 3);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(fs::read(x).unwrap(), fs::read(y).unwrap());
        }
        let mut total = WordCounts::default();
        for path in list_files(first.path()).unwrap() {
            total.merge(count_file(&path).unwrap());
        }
        assert_eq!(total.total(), 3 * 2000);
        assert_eq!(total.top(1)[0].0, "the");
        // Different files draw different words.
        assert_ne!(fs::read(&a[0]).unwrap(), fs::read(&a[1]).unwrap());
    }

    #[test]
    fn unreadable_file_fails_its_task_with_its_name() {
        let dir = TempDir::new("wordfreq-test").unwrap();
        let missing = dir.path().join("gone.txt");
        let err = count_words.call(missing).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("gone.txt"), "{err}");
    }

    #[test]
    fn dangling_symlink_is_an_error_naming_it() {
        let dir = TempDir::new("wordfreq-test").unwrap();
        std::os::unix::fs::symlink("nowhere", dir.path().join("link.txt")).unwrap();
        let err = list_files(dir.path()).unwrap_err();
        assert!(err.to_string().contains("link.txt"), "{err}");
    }

    #[test]
    fn missing_directory_error_names_it() {
        let err = list_files(Path::new("/surely/not/here")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("/surely/not/here"), "{err}");
    }
}
