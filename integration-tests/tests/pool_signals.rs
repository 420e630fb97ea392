//! Signals from outside: a worker SIGKILLed during a map, the parent
//! SIGKILLed, and Ctrl-C to the whole process group.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use integration_tests::{eventually, process_alive, wait_with_deadline, Watchdog};

const LIMIT: Duration = Duration::from_secs(60);

/// Starts a `pool_program` scenario in its own process group and reads up
/// to its first `pids:` line.
fn start(mode: &str) -> (Child, BufReader<ChildStdout>, Vec<u32>) {
    let (child, stdout, pids) = start_any(mode);
    assert_eq!(pids.len(), 2, "{pids:?}");
    (child, stdout, pids)
}

/// [`start`] for any number of workers (and lines before `pids:`).
fn start_any(mode: &str) -> (Child, BufReader<ChildStdout>, Vec<u32>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pool_program"))
        .arg(mode)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn pool_program");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let _watchdog = Watchdog::start(mode, LIMIT);
    let mut line = String::new();
    while !line.starts_with("pids: ") {
        line.clear();
        let read = stdout.read_line(&mut line).expect("read pids");
        assert!(read > 0, "{mode}: no pids line");
    }
    let pids: Vec<u32> = line
        .trim_start_matches("pids: ")
        .split_whitespace()
        .map(|pid| pid.parse().expect("pid"))
        .collect();
    (child, stdout, pids)
}

fn rest_of(mut reader: impl Read) -> String {
    let _watchdog = Watchdog::start("reading output", LIMIT);
    let mut text = String::new();
    let _ = reader.read_to_string(&mut text);
    text
}

fn send(pid: i32, signal: i32) {
    // SAFETY: kill takes plain integers; the pid is one of our test's.
    let ret = unsafe { libc::kill(pid, signal) };
    assert_eq!(ret, 0, "kill({pid}, {signal})");
}

#[test]
fn a_worker_killed_from_outside_fails_one_input_and_the_rest_complete() {
    let (mut child, stdout, pids) = start("long_map");
    std::thread::sleep(Duration::from_millis(300));
    send(pids[0] as i32, libc::SIGKILL);
    let stderr = child.stderr.take().expect("stderr");
    let output = rest_of(stdout);
    let status = wait_with_deadline(&mut child, LIMIT);
    assert!(status.success(), "{status}\n{output}\n{}", rest_of(stderr));
    assert!(
        output.contains("imap error: kind=WorkerDied")
            && output.contains("message=killed by signal 9 (SIGKILL) while running this task"),
        "{output}"
    );
    assert_eq!(output.matches("error:").count(), 1, "{output}");
    assert!(output.contains("imap ok: 29"), "{output}");
    let after = output
        .lines()
        .find_map(|l| l.strip_prefix("pids: "))
        .unwrap_or_default();
    assert!(
        !after.contains(&pids[0].to_string()),
        "dead worker still listed: {after}"
    );
    assert_eq!(
        after.split_whitespace().count(),
        2,
        "a replacement should run: {after}"
    );
}

#[test]
fn workers_exit_when_the_parent_is_killed() {
    let (mut child, _stdout, pids) = start("wait_forever");
    assert!(pids.iter().all(|&pid| process_alive(pid)));
    send(child.id() as i32, libc::SIGKILL);
    wait_with_deadline(&mut child, LIMIT);
    let gone = eventually(Duration::from_secs(2), || {
        pids.iter().all(|&pid| !process_alive(pid))
    });
    assert!(gone, "workers {pids:?} outlived their parent");
}

#[test]
fn ctrl_c_interrupts_the_map_without_noise_or_leftover_workers() {
    let (mut child, stdout, pids) = start("ctrl_c");
    std::thread::sleep(Duration::from_millis(300));
    // As a terminal does: the whole foreground process group.
    send(-(child.id() as i32), libc::SIGINT);
    let stderr = child.stderr.take().expect("stderr");
    let output = rest_of(stdout);
    let status = wait_with_deadline(&mut child, LIMIT);
    let errors = rest_of(stderr);
    assert!(status.success(), "{status}\n{output}\n{errors}");
    assert!(output.contains("interrupted"), "{output}");
    assert!(
        !errors.contains("panicked") && !errors.contains("backtrace"),
        "{errors}"
    );
    let gone = eventually(Duration::from_secs(2), || {
        pids.iter().all(|&pid| !process_alive(pid))
    });
    assert!(gone, "workers {pids:?} outlived the program");
}

#[test]
fn ctrl_c_ends_a_wait_for_remote_workers_that_never_join() {
    let (mut child, stdout, _) = start_any("remote_alone");
    // The map is waiting (or about to) for a worker that never comes.
    std::thread::sleep(Duration::from_millis(300));
    send(-(child.id() as i32), libc::SIGINT);
    let output = rest_of(stdout);
    let status = wait_with_deadline(&mut child, LIMIT);
    assert!(status.success(), "{status}\n{output}");
    assert!(output.contains("interrupted"), "{output}");
    assert!(
        output.contains("get: kind=WaitTimedOut"),
        "a timed get bounds the wait: {output}"
    );
    assert!(
        output.contains("pending: kind=Interrupted"),
        "the queued apply_async fails too: {output}"
    );
}
