//! A pool run under a capturing tracing subscriber, for
//! `tests/pool_tracing.rs`.
//!
//! The subscriber is a registry with a small Layer that prints one line on
//! stderr as each `task` span closes, with the span's fields:
//!
//! ```text
//! task span: task=pool_tracing::fail_on_five index=5 worker=2 chunk=2 outcome=TaskFailed error=...
//! ```
//!
//! The program declares `pool::workers_start_in_main!()` and installs it
//! before `pool::init()`, so the workers (copies of this program) have it
//! too: their lines also name the id of the `worker` span
//! around them (`in_worker=N`), and reach this process's stderr through
//! the pool, tagged `[worker N] `.

use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

pool::task! {
    /// Fails for 5, succeeds otherwise.
    fn fail_on_five(x: u32) -> Result<u32, String> {
        if x == 5 { Err(format!("five is not allowed (got {x})")) } else { Ok(x + 100) }
    }
}

/// A span's fields, in the order they were recorded.
#[derive(Default)]
struct Fields(Vec<(&'static str, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name(), value.to_string()));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name(), format!("{value:?}")));
    }
}

/// Prints each `task` span's fields when it closes.
struct TaskSpans;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for TaskSpans {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
                values.record(fields);
            }
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        if span.name() != "task" {
            return;
        }
        let mut line = String::from("task span:");
        if let Some(fields) = span.extensions().get::<Fields>() {
            for (name, value) in &fields.0 {
                let _ = write!(line, " {name}={value}");
            }
        }
        // The enclosing `worker` span, inside a worker process.
        let worker = span
            .scope()
            .skip(1)
            .find(|s| s.name() == "worker")
            .and_then(|s| {
                s.extensions()
                    .get::<Fields>()?
                    .get("id")
                    .map(str::to_string)
            });
        if let Some(worker) = worker {
            let _ = write!(line, " in_worker={worker}");
        }
        eprintln!("{line}");
    }
}

/// Waits (at most `limit`) until the pool's per-worker threads are gone,
/// so that every line the workers wrote has been forwarded to our stderr.
fn wait_for_pool_threads(limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let busy = std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .any(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.starts_with("pool-worker-"))
            });
        if !busy {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("pool threads still running after {limit:?}");
}

// Workers start at `pool::init()`, below the subscriber's set-up.
pool::workers_start_in_main!();

fn main() -> Result<(), pool::Error> {
    // Before init, so that the workers trace too.
    tracing_subscriber::registry().with(TaskSpans).init();
    pool::init();
    let pool = pool::Pool::builder().processes(2).build()?;
    // Two chunks of four, one per worker, both sent at once: every input
    // is sent, and answered, whichever result arrives first.
    match pool.map_with(fail_on_five, 0..8).chunksize(4).run() {
        Ok(out) => println!("map: unexpectedly ok: {out:?}"),
        Err(err) => println!(
            "map: kind={:?} index={:?} task={:?}",
            err.kind(),
            err.index(),
            err.task()
        ),
    }
    // Finishes the chunk still running, handling its results.
    pool.close();
    pool.join();
    drop(pool);
    wait_for_pool_threads(Duration::from_secs(20));
    println!("done");
    Ok(())
}
