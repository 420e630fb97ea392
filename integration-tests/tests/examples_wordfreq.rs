//! `wordfreq` counts words over a directory with `imap_unordered` and
//! merges in the parent; check its totals and top words against a serial
//! count done here, on a directory made for the test and on the corpus it
//! generates.

mod examples_support;

use std::collections::HashMap;
use std::path::Path;

use examples_support::{assert_clean_failure, field, run_example, run_ok, scratch_dir};

/// Word counts over the files directly in `dir`, by the program's stated
/// rule (runs of letters, digits and inner apostrophes, in lower case),
/// written independently of its code.
fn serial_counts(dir: &Path) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        let mut word = String::new();
        for c in text.chars().chain([' ']) {
            if c.is_alphanumeric() || c == '\'' {
                word.push(c);
            } else {
                let trimmed = word.trim_matches('\'');
                if !trimmed.is_empty() {
                    *counts.entry(trimmed.to_lowercase()).or_insert(0) += 1;
                }
                word.clear();
            }
        }
    }
    counts
}

/// The "N words, D distinct, in F files" line as numbers.
fn totals(out: &str) -> (u64, usize, usize) {
    let line = out
        .lines()
        .find(|line| line.contains(" words, "))
        .unwrap_or_else(|| panic!("no totals in:\n{out}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    assert_eq!(numbers.len(), 3, "{line}");
    (numbers[0], numbers[1] as usize, numbers[2] as usize)
}

/// The ranked lines "  1. word   count" as (word, count).
fn top_words(out: &str) -> Vec<(String, u64)> {
    out.lines()
        .filter_map(|line| {
            let (rank, rest) = line.trim_start().split_once(". ")?;
            rank.parse::<u32>().ok()?;
            let mut parts = rest.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.parse().ok()?))
        })
        .collect()
}

#[test]
fn counts_a_directory_like_a_serial_count() {
    let dir = scratch_dir("wordfreq-dir");
    std::fs::write(dir.join("a.txt"), "The cat sat. THE cat's hat!\n").unwrap();
    std::fs::write(dir.join("b.md"), "the end; 'quoted' words, the END\n").unwrap();
    std::fs::write(dir.join("c.bin"), b"caf\xe9 the\xffhat\n").unwrap();
    std::fs::write(dir.join("empty"), "").unwrap();
    // Subdirectories are not descended into.
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/ignored.txt"), "zebra zebra zebra zebra").unwrap();
    let expected = serial_counts(&dir);

    let out = run_ok(
        "wordfreq",
        &[dir.to_str().unwrap(), "-w", "2", "--top", "3"],
    );
    let total: u64 = expected.values().sum();
    assert_eq!(totals(&out), (total, expected.len(), 4), "{out}");
    let mut ranked: Vec<(String, u64)> = expected.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(3);
    assert_eq!(top_words(&out), ranked, "{out}");
    // The same, spelled out: "the" and "THE" are one word, a quoted word is
    // a word, bytes that are not UTF-8 separate words, and ties are listed
    // alphabetically.
    let expected_top = [("the", 5), ("end", 2), ("hat", 2)].map(|(w, n)| (w.to_string(), n));
    assert_eq!(ranked, expected_top);
    assert!(!out.contains("zebra"), "{out}");
}

#[test]
fn generated_corpus_is_counted_exactly_and_reproducibly() {
    let args = [
        "--files",
        "5",
        "--words-per-file",
        "3000",
        "--seed",
        "11",
        "-w",
        "2",
    ];
    let first = run_ok("wordfreq", &args);
    let second = run_ok("wordfreq", &args);
    // Twelve words a line and every one is counted.
    assert_eq!(totals(&first).0, 5 * 3000, "{first}");
    assert_eq!(totals(&first).2, 5, "{first}");
    assert_eq!(top_words(&first).len(), 10, "{first}");
    assert_eq!(top_words(&first), top_words(&second));
    assert_eq!(top_words(&first)[0].0, "the", "Zipf's most frequent word");
    // The corpus lived in a temporary directory that is gone now.
    let corpus = field(&first, "generated 5 files of 3000 words in").expect("corpus path");
    assert!(!Path::new(corpus).exists(), "{corpus} was left behind");
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let dir = scratch_dir("wordfreq-missing").join("not-here");
    let run = run_example("wordfreq", &[dir.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1));
    assert_clean_failure(&run, "not-here");
    assert_clean_failure(&run, "No such file");
}

#[test]
fn an_empty_directory_is_a_clear_error() {
    let dir = scratch_dir("wordfreq-empty");
    let run = run_example("wordfreq", &[dir.to_str().unwrap()], &[]);
    assert_eq!(run.code, Some(1));
    assert_clean_failure(&run, "no files to count");
}

#[test]
fn bad_arguments_are_clap_errors_not_panics() {
    for args in [
        &["--files", "0"][..],
        &["--words-per-file", "x"],
        &["--top", "-3"],
    ] {
        let run = run_example("wordfreq", args, &[]);
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert_clean_failure(&run, "error:");
    }
}
