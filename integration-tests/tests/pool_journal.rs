//! Resumable maps across real processes: a journaled map SIGKILLed at
//! several points and rerun returns what an uninterrupted run returns,
//! running only what the journal lacks (plus at most what was in flight);
//! a torn last record is dropped; a foreign or damaged journal is an
//! error; a changed input runs again; failures rerun only when asked; a
//! resumed run's progress starts at the journaled count.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use integration_tests::{eventually, line, output_with_deadline, wait_with_deadline};

const PROGRAM: &str = env!("CARGO_BIN_EXE_pool_journal");
const LIMIT: Duration = Duration::from_secs(120);
/// What can be in flight in `resume`: 3 chunks of 4 per worker, 2 workers.
const IN_FLIGHT: usize = 3 * 4 * 2;

/// A directory of the test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("pool-journal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The inputs the run log says ran, in the order they ran.
fn ran(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.parse().ok())
        .collect()
}

fn command(log: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(PROGRAM);
    command.args(args).env("RUN_LOG", log);
    command
}

/// Runs the program to its end; its output, whatever its status.
fn run(log: &Path, args: &[&str]) -> Output {
    output_with_deadline(&mut command(log, args), LIMIT)
}

/// Runs the program to a successful end; its stdout.
fn succeed(log: &Path, args: &[&str]) -> String {
    let out = run(log, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?}: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs `resume` until the run log holds `lines` lines, then SIGKILLs its
/// whole process group (the program and its workers at once); its stdout
/// so far. Returns `None` if it finished first.
fn run_and_kill(log: &Path, args: &[&str], lines: usize) -> Option<String> {
    let mut child = command(log, args)
        .env("NAP_US", "1000")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let reached = eventually(Duration::from_secs(60), || {
        ran(log).len() >= lines || child.try_wait().unwrap().is_some()
    });
    assert!(reached, "the map never ran {lines} inputs");
    let finished = child.try_wait().unwrap().is_some();
    // SAFETY: plain libc call on our own child's process group.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    wait_with_deadline(&mut child, LIMIT);
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    (!finished).then_some(stdout)
}

fn distinct(inputs: &[u64]) -> usize {
    let mut inputs = inputs.to_vec();
    inputs.sort_unstable();
    inputs.dedup();
    inputs.len()
}

fn kill_and_resume(form: &str) {
    let scratch = Scratch::new(&format!("kill-{form}"));
    let (journal, log) = (scratch.path("journal"), scratch.path("run.log"));
    let count: usize = 3000;
    let args = ["resume", form, journal.to_str().unwrap(), "3000"];
    let mut kills = 0;
    for more in [300, 600, 900] {
        let before = ran(&log);
        let Some(stdout) = run_and_kill(&log, &args, before.len() + more) else {
            break;
        };
        kills += 1;
        if form == "map" && kills > 1 {
            // What the journal held: every input run before, but those
            // in flight at the kill.
            let first = line(&stdout, "first progress");
            let replayed: usize = first.split('/').next().unwrap().parse().unwrap();
            let seen = distinct(&before);
            eprintln!("kill {kills}: {seen} inputs had run, {replayed} replayed");
            assert!(
                replayed <= seen && seen - replayed <= IN_FLIGHT,
                "{first} after {seen} ran"
            );
        }
    }
    assert!(
        kills >= 2,
        "the map finished before it could be killed twice"
    );
    let before = ran(&log);
    let stdout = succeed(&log, &args);
    let after = ran(&log);
    let rerun = after.len() - before.len();
    let seen = distinct(&before);
    eprintln!("final run: {seen} inputs had run in {kills} killed runs, {rerun} ran in the last");
    // Only what the journal lacked ran: the inputs never run, and at most
    // those in flight at the last kill.
    assert!(
        rerun >= count - seen && rerun <= count - seen + IN_FLIGHT,
        "{rerun} ran"
    );
    if form == "map" {
        let first = line(&stdout, "first progress");
        let replayed: usize = first.split('/').next().unwrap().parse().unwrap();
        assert_eq!(rerun, count - replayed, "{first}");
    }
    assert_eq!(distinct(&after), count);
    let plain = succeed(&scratch.path("plain.log"), &["plain", "3000"]);
    assert_eq!(line(&stdout, "outputs"), line(&plain, "outputs"));
}

#[test]
fn a_killed_map_resumes_from_its_journal() {
    kill_and_resume("map");
}

#[test]
fn a_killed_imap_resumes_from_its_journal() {
    kill_and_resume("imap");
}

#[test]
fn a_torn_last_record_is_dropped_and_its_input_runs_again() {
    let scratch = Scratch::new("torn");
    let (journal, log) = (scratch.path("journal"), scratch.path("run.log"));
    let args = ["resume", "map", journal.to_str().unwrap(), "100"];
    let whole = succeed(&log, &args);
    assert_eq!(ran(&log).len(), 100);
    // Cut mid-record: the last record loses its checksum and a byte.
    let len = std::fs::metadata(&journal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(len - 9)
        .unwrap();
    let resumed = succeed(&log, &args);
    assert_eq!(line(&resumed, "first progress"), "99/100");
    assert_eq!(
        ran(&log).len(),
        101,
        "exactly the torn record's input ran again"
    );
    assert_eq!(line(&resumed, "outputs"), line(&whole, "outputs"));
    assert_eq!(
        std::fs::metadata(&journal).unwrap().len(),
        len,
        "the record was written anew"
    );
    // Zeros after the last record (blocks a crash left unwritten): dropped.
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes.extend_from_slice(&[0; 4096]);
    std::fs::write(&journal, &bytes).unwrap();
    let again = succeed(&log, &args);
    assert_eq!(line(&again, "first progress"), "100/100");
    assert_eq!(ran(&log).len(), 101, "nothing ran");
}

#[test]
fn a_damaged_or_foreign_journal_is_an_error_and_left_alone() {
    let scratch = Scratch::new("foreign");
    let (journal, log) = (scratch.path("journal"), scratch.path("run.log"));
    let journal_arg = journal.to_str().unwrap();
    succeed(&log, &["resume", "map", journal_arg, "100"]);
    let out = succeed(&log, &["foreign", journal_arg]);
    for form in ["map", "imap"] {
        let said = line(&out, form);
        assert!(said.starts_with("Journal: "), "{said}");
        assert!(said.contains("belongs to another map"), "{said}");
        assert!(said.contains("other_step"), "{said}");
    }
    // A record damaged in the middle, with good records after it.
    let mut bytes = std::fs::read(&journal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&journal, &bytes).unwrap();
    let out = run(&log, &["resume", "map", journal_arg, "100"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Journal") && stderr.contains("is damaged at byte"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&journal).unwrap(),
        bytes,
        "the damaged journal was changed"
    );
    // Not a journal at all.
    let text = b"these are someone's notes, not a journal\n".repeat(10);
    std::fs::write(&journal, &text).unwrap();
    let out = run(&log, &["resume", "map", journal_arg, "100"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not a pool map journal"), "{stderr}");
    assert_eq!(std::fs::read(&journal).unwrap(), text);
    assert_eq!(ran(&log).len(), 100, "no input ran against a bad journal");
}

#[test]
fn a_changed_input_at_a_journaled_index_runs_again() {
    let scratch = Scratch::new("changed");
    let (journal, log) = (scratch.path("journal"), scratch.path("run.log"));
    let journal_arg = journal.to_str().unwrap();
    let out = succeed(&log, &["inputs", journal_arg, "0,1,2,3,4,5,6,7"]);
    assert_eq!(line(&out, "outputs right"), "true");
    assert_eq!(ran(&log).len(), 8);
    let out = succeed(&log, &["inputs", journal_arg, "0,1,2,3,4,105,6,7"]);
    assert_eq!(line(&out, "outputs right"), "true");
    assert_eq!(ran(&log)[8..], [105]);
    // And the new input's result was journaled in turn.
    succeed(&log, &["inputs", journal_arg, "0,1,2,3,4,105,6,7"]);
    assert_eq!(ran(&log).len(), 9);
}

#[test]
fn failures_are_journaled_and_rerun_only_when_asked() {
    let scratch = Scratch::new("failures");
    let (journal, log, flag) = (
        scratch.path("journal"),
        scratch.path("run.log"),
        scratch.path("flag"),
    );
    let journal_arg = journal.to_str().unwrap();
    let failures = |mode: &str| {
        let mut command = command(&log, &["failures", journal_arg, mode]);
        command.env("FLAG", &flag);
        let out = output_with_deadline(&mut command, LIMIT);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = failures("keep");
    assert_eq!(
        line(&out, "failed"),
        "0:TaskFailed:run 5:TaskFailed:run 10:TaskFailed:run 15:TaskFailed:run"
    );
    assert_eq!(ran(&log).len(), 20);
    std::fs::write(&flag, b"").unwrap();
    // The inputs would succeed now, but their failures are journaled.
    let out = failures("keep");
    assert_eq!(
        line(&out, "failed"),
        "0:TaskFailed:journal 5:TaskFailed:journal 10:TaskFailed:journal 15:TaskFailed:journal"
    );
    assert_eq!(line(&out, "outputs right"), "true");
    let out = failures("stop");
    assert_eq!(line(&out, "stopped"), "TaskFailed Some(0)");
    assert_eq!(ran(&log).len(), 20, "nothing ran");
    let out = failures("rerun");
    assert_eq!(line(&out, "failed"), "");
    assert_eq!(line(&out, "outputs right"), "true");
    let mut rerun = ran(&log)[20..].to_vec();
    rerun.sort_unstable();
    assert_eq!(rerun, [0, 5, 10, 15]);
    let out = failures("keep");
    assert_eq!(line(&out, "failed"), "");
    assert_eq!(ran(&log).len(), 24, "the new results were journaled");
}
