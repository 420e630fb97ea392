//! The pool's `task` spans, captured by the `pool_tracing` program's own
//! subscriber in the parent and in each worker: one per input on each
//! side, with its task name and input index; the parent's also name the
//! worker and the outcome, the failing input's the error kind.

use std::process::Command;
use std::time::Duration;

use integration_tests::output_with_deadline;

const TASK: &str = "pool_tracing::fail_on_five";

/// The value of ` name=` in a `task span:` line (up to the next space, or
/// to the end for `error`, the last field).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let rest = &line[start..];
    if name == "error" {
        return Some(rest);
    }
    Some(rest.split(' ').next().unwrap_or(rest))
}

#[test]
fn every_input_gets_a_task_span_in_the_parent_and_in_its_worker() {
    let out = output_with_deadline(
        &mut Command::new(env!("CARGO_BIN_EXE_pool_tracing")),
        Duration::from_secs(60),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains(&format!(
            "map: kind=TaskFailed index=Some(5) task=Some({TASK:?})"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("done"), "{stdout}\n{stderr}");
    assert!(!stderr.contains("still running"), "{stderr}");

    let parent: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("task span:"))
        .collect();
    // "[worker N] task span: ...", with N taken from the tag.
    let workers: Vec<(&str, &str)> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("[worker "))
        .filter_map(|l| l.split_once("] task span:"))
        .collect();
    assert_eq!(parent.len(), 8, "{stderr}");
    assert_eq!(workers.len(), 8, "{stderr}");

    for index in 0..8 {
        let index_text = index.to_string();
        let mine: Vec<&&str> = parent
            .iter()
            .filter(|l| field(l, "index") == Some(index_text.as_str()))
            .collect();
        assert_eq!(mine.len(), 1, "input {index}:\n{stderr}");
        let line = mine[0];
        assert_eq!(field(line, "task"), Some(TASK), "{line}");
        let worker = field(line, "worker").expect("worker field");
        assert!(field(line, "chunk").is_some(), "{line}");
        if index == 5 {
            assert_eq!(field(line, "outcome"), Some("TaskFailed"), "{line}");
            assert_eq!(
                field(line, "error"),
                Some("five is not allowed (got 5)"),
                "{line}"
            );
        } else {
            assert_eq!(field(line, "outcome"), Some("ok"), "{line}");
            assert_eq!(field(line, "error"), None, "{line}");
        }

        // The worker that ran it traced it too, inside its `worker` span,
        // and its line reached our stderr tagged with its id.
        let theirs: Vec<&(&str, &str)> = workers
            .iter()
            .filter(|(_, l)| field(l, "index") == Some(index_text.as_str()))
            .collect();
        assert_eq!(theirs.len(), 1, "input {index}:\n{stderr}");
        let (tag, line) = theirs[0];
        assert_eq!(*tag, worker, "input {index} ran elsewhere:\n{stderr}");
        assert_eq!(field(line, "task"), Some(TASK), "{line}");
        assert_eq!(field(line, "in_worker"), Some(worker), "{line}");
    }
}
