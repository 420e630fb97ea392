//! Builds and runs the programs of the `examples` package for the
//! `examples_*` tests.
//!
//! Cargo gives a test the paths of its own package's binaries only, and
//! the example programs live in another package. So the first test that
//! needs one runs `cargo build -p examples -p worker-bin --bins` (the same
//! cargo, the same profile, the same target directory: a no-op when they
//! are up to date)
//! and takes each binary's path from cargo's own JSON report rather than
//! guessing the target directory's layout.

#![allow(dead_code)] // Each test file uses a different part of this module.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use integration_tests::wait_with_deadline;

/// What a finished example program left behind.
pub struct Run {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Its exit code, if it exited rather than being killed.
    pub code: Option<i32>,
    /// Everything it printed on stdout.
    pub stdout: String,
    /// Everything it printed on stderr.
    pub stderr: String,
}

/// The path of the example program `name`, built on first use.
pub fn example_bin(name: &str) -> PathBuf {
    static BINS: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    let bins = BINS.get_or_init(build_examples);
    match bins.get(name) {
        Some(path) => path.clone(),
        None => panic!("cargo built no binary {name:?}; it built {:?}", bins.keys()),
    }
}

fn build_examples() -> HashMap<String, PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args([
            "build",
            "--quiet",
            "-p",
            "examples",
            "-p",
            "worker-bin",
            "--bins",
        ])
        .args(["--message-format", "json-render-diagnostics"])
        .arg("--manifest-path")
        .arg(&manifest);
    if !cfg!(debug_assertions) {
        cargo.arg("--release");
    }
    let output = cargo
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo to build the example programs");
    assert!(
        output.status.success(),
        "cargo build -p examples failed: {}",
        output.status
    );
    let report = String::from_utf8_lossy(&output.stdout);
    let bins: HashMap<String, PathBuf> = report
        .lines()
        .filter(|line| line.contains(r#""reason":"compiler-artifact""#))
        .filter_map(|line| json_string_field(line, "executable"))
        .map(PathBuf::from)
        .filter_map(|path| Some((path.file_name()?.to_str()?.to_string(), path)))
        .collect();
    assert!(!bins.is_empty(), "cargo reported no executables:\n{report}");
    bins
}

/// The value of the string field `key` in one line of cargo's JSON output
/// (`None` when absent or `null`). Cargo writes compact JSON with no space
/// after the colon; paths rarely hold escapes, but `\\` and `\"` are undone.
fn json_string_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

/// How long an example may run in a test before it counts as hung. The
/// inputs are small: a healthy run takes a second or two even in debug.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// Runs the example program `name` with `args` and the extra environment
/// variables `env`, and returns what it printed. Panics (failing the test)
/// if it does not finish in time, so a test never hangs on a stuck program
/// or pool.
pub fn run_example(name: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(example_bin(name))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("start {name}: {err}"));
    // Drain both pipes in threads: a program blocked on a full pipe would
    // otherwise never exit.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let status = wait_with_deadline(&mut child, TIME_LIMIT);
    Run {
        success: status.success(),
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Like [`run_example`], but fails the test, showing both streams, unless
/// the program succeeds with nothing on stderr; returns its stdout.
///
/// stderr is a pipe here, not a terminal, so the programs must draw no
/// progress bar: a bar (or any chatter) on stderr is a failure.
pub fn run_ok(name: &str, args: &[&str]) -> String {
    let run = run_example(name, args, &[]);
    assert!(
        run.success && run.stderr.is_empty(),
        "{name} {args:?} exited with {:?}\nstdout:\n{}\nstderr:\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// The value after `label` on the first line of `text` that starts with it
/// (leading spaces ignored), trimmed.
pub fn field<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.trim_start().strip_prefix(label))
        .map(str::trim)
}

/// A fresh, empty directory for one test, under cargo's scratch directory
/// for integration tests (inside the target directory, so nothing leaks
/// into the system's temporary directory).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("examples-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    dir
}

/// Asserts that a run failed cleanly: a non-zero exit with a message on
/// stderr that contains `expected`, and no panic or backtrace.
pub fn assert_clean_failure(run: &Run, expected: &str) {
    assert!(!run.success, "expected a failure; stdout:\n{}", run.stdout);
    assert!(
        run.stderr.contains(expected),
        "stderr lacks {expected:?}:\n{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("panicked") && !run.stderr.contains("RUST_BACKTRACE"),
        "the program panicked:\n{}",
        run.stderr
    );
}
