//! Whether a worker that says it is ready runs this program's tasks.
//!
//! A local worker runs this very image (`sys::own_image_command`), so its
//! build id is this program's and nothing more is compared. Any other
//! worker (a `worker_program`, a remote `pool-worker`, a Slurm worker
//! started from a file rebuilt since) lists its tasks in its ready
//! message, and each task this program also has must agree in input type,
//! output type, declared version and code hash, or the worker is refused:
//! stale code never produces results silently. Tasks only the worker has
//! are not looked at.

use std::collections::HashSet;
use std::sync::RwLock;

use crate::error::{Error, ErrorKind};
use crate::sys;
use crate::task::{self, Fingerprint};
use crate::wire::{clip, Identity};

/// How much of a name a worker sent (program, type) a message quotes.
const QUOTED: usize = 200;

/// A worker whose tasks agree with this program's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Build {
    /// This very build.
    Same,
    /// Another build whose tasks, as far as this program has them, agree:
    /// what they call may still differ.
    Other {
        program: String,
        build_id: String,
        /// An executable of this program's name: a rebuild of it, most
        /// likely, rather than a worker program of its own.
        same_program: bool,
        /// The names of every task the worker links.
        tasks: Vec<String>,
    },
}

/// A worker refused because some of its tasks differ from this program's.
#[derive(Debug, Clone)]
pub(crate) struct Mismatch {
    /// `ErrorKind::TaskMismatch`, naming each task and its difference.
    pub(crate) error: Error,
    /// The tasks that differ, as this program names them.
    pub(crate) tasks: Vec<&'static str>,
}

/// Compares a ready worker's identity with this program's.
/// A mismatch is boxed: an `Error` is large, and a refusal rare.
pub(crate) fn check(worker: &Identity<'_>) -> Result<Build, Box<Mismatch>> {
    if sys::is_this_build(worker.build_id) {
        return Ok(Build::Same);
    }
    let program = clip(worker.program, QUOTED);
    let build = short(worker.build_id);
    let Some(tasks) = &worker.tasks else {
        return Err(Box::new(Mismatch {
            error: Error::new(
                ErrorKind::TaskMismatch,
                format!(
                    "worker program {program} (build {build}) did not list its tasks, \
                     though its build is not this program's ({}); the worker was refused",
                    short(sys::build_id())
                ),
            ),
            tasks: Vec::new(),
        }));
    };
    let registry = task::registry();
    let mut seen = HashSet::new();
    let mut differing = Vec::new();
    let mut details = Vec::new();
    for theirs in tasks {
        let Some(entry) = registry.get(theirs.name) else {
            continue;
        };
        let ours = entry.fingerprint();
        if !seen.insert(ours.name) {
            continue;
        }
        let differences = differences(&ours, theirs);
        if !differences.is_empty() {
            differing.push(ours.name);
            details.push(format!("{}: {}", ours.name, differences.join(", ")));
        }
    }
    if differing.is_empty() {
        return Ok(Build::Other {
            program: program.to_string(),
            build_id: clip(worker.build_id, QUOTED).into_owned(),
            same_program: worker.program == sys::program_name(),
            tasks: tasks.iter().map(|task| task.name.to_string()).collect(),
        });
    }
    let error = Error::new(
        ErrorKind::TaskMismatch,
        format!(
            "worker program {program} (build {build}) has another form of {} this program \
             defines ({}); the worker was refused: rebuild it from the same sources",
            if differing.len() == 1 {
                "a task"
            } else {
                "tasks"
            },
            details.join("; ")
        ),
    )
    .with_task(differing[0]);
    Err(Box::new(Mismatch {
        error,
        tasks: differing,
    }))
}

/// The task table of the pool's worker program, once its first worker
/// joined: what a call checks before it sends any input, so that a task
/// the program lacks fails the call at once, saying how to link it.
/// Unknown for a pool whose workers run this very build (they have every
/// task this program has), and not kept for remote workers, which may
/// differ from one another (theirs fail input by input).
#[derive(Debug, Default)]
pub(crate) struct WorkerTasks {
    /// The program, and the names of its tasks.
    table: RwLock<Option<(String, HashSet<String>)>>,
}

impl WorkerTasks {
    /// Keeps the table a local worker of `program` sent when it joined.
    pub(crate) fn record(&self, program: &str, tasks: &[String]) {
        let mut table = self.table.write().unwrap_or_else(|p| p.into_inner());
        if table.is_none() {
            let names = tasks.iter().cloned().collect();
            *table = Some((clip(program, QUOTED).into_owned(), names));
        }
    }

    /// Whether the worker program has `task`, as far as it is known: an
    /// [`ErrorKind::UnknownTask`] error that says how to link it if not.
    pub(crate) fn check(&self, task: &'static str) -> Result<(), Error> {
        let table = self.table.read().unwrap_or_else(|p| p.into_inner());
        match &*table {
            Some((program, names)) if !names.contains(task) => Err(not_linked(program, task)),
            _ => Ok(()),
        }
    }
}

/// The error for a call of `task`, which worker program `program` lacks.
pub(crate) fn not_linked(program: &str, task: &'static str) -> Error {
    Error::new(
        ErrorKind::UnknownTask,
        format!(
            "`{task}` is not in worker program {program}'s task table: the linker keeps \
             only the tasks a program refers to (a crate it depends on but never names is \
             not linked at all); name the task in the worker program's main, e.g. with \
             `pool::link_tasks!({path});`, and rebuild it; no input was sent",
            path = task.strip_prefix("crate::").unwrap_or(task)
        ),
    )
    .with_task(task)
}

/// How the worker's form of a task differs from ours, each difference
/// saying which side has what.
fn differences(ours: &Fingerprint<'_>, theirs: &Fingerprint<'_>) -> Vec<String> {
    let mut out = Vec::new();
    for (what, mine, other) in [
        ("input type", ours.input, theirs.input),
        ("output type", ours.output, theirs.output),
    ] {
        if mine != other {
            out.push(format!(
                "{what} `{}` in the worker, `{mine}` here",
                clip(other, QUOTED)
            ));
        }
    }
    if ours.version != theirs.version {
        out.push(format!(
            "version {} in the worker, {} here",
            theirs.version, ours.version
        ));
    }
    if ours.code != theirs.code {
        out.push("its function's code as written in task! differs".to_string());
    }
    out
}

/// A build id as messages show it: its kind and first twelve digits.
pub(crate) fn short(build_id: &str) -> &str {
    match build_id {
        "" => "unknown",
        id => id
            .get(..id.find(':').map_or(0, |colon| colon + 1) + 12)
            .unwrap_or(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Task;

    crate::task! { fn probe(x: u64) -> String { x.to_string() } }

    fn worker<'a>(build_id: &'a str, tasks: Option<Vec<Fingerprint<'a>>>) -> Identity<'a> {
        Identity {
            build_id,
            program: "other-program",
            tasks,
        }
    }

    fn ours() -> Fingerprint<'static> {
        task::registry()[probe::NAME].fingerprint()
    }

    #[test]
    fn this_build_is_the_same_whatever_it_lists() {
        let identity = worker(sys::build_id(), None);
        assert_eq!(check(&identity).unwrap(), Build::Same);
    }

    #[test]
    fn another_build_with_agreeing_or_unknown_tasks_is_accepted() {
        let unknown = Fingerprint {
            name: "elsewhere::task",
            input: "u8",
            output: "u8",
            version: 9,
            code: 0,
        };
        let identity = worker("gnu:00", Some(vec![ours(), unknown]));
        let Build::Other { same_program, .. } = check(&identity).unwrap() else {
            panic!("expected another build");
        };
        assert!(!same_program);
    }

    #[test]
    fn a_differing_task_refuses_the_worker_saying_which_side_has_what() {
        let theirs = Fingerprint {
            input: "u32",
            version: 3,
            ..ours()
        };
        let mismatch = check(&worker("gnu:0123456789abcdef", Some(vec![theirs]))).unwrap_err();
        assert_eq!(mismatch.tasks, [probe::NAME]);
        let err = &mismatch.error;
        assert_eq!(err.kind(), ErrorKind::TaskMismatch);
        assert_eq!(err.task(), Some(probe::NAME));
        let text = err.to_string();
        for part in [
            "other-program",
            "gnu:0123456789ab",
            "input type `u32` in the worker, `u64` here",
            "version 3 in the worker, 0 here",
        ] {
            assert!(text.contains(part), "{part:?} not in {text}");
        }
        assert!(!text.contains("output type"), "{text}");
        assert!(!text.contains("code"), "{text}");
        let theirs = Fingerprint {
            code: ours().code ^ 1,
            ..ours()
        };
        let err = check(&worker("gnu:01", Some(vec![theirs])))
            .unwrap_err()
            .error;
        assert!(err.to_string().contains("its function's code"), "{err}");
    }

    #[test]
    fn another_build_that_lists_nothing_is_refused() {
        let err = check(&worker("gnu:00", None)).unwrap_err().error;
        assert_eq!(err.kind(), ErrorKind::TaskMismatch);
    }
}
