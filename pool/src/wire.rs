//! The protocol between a pool and its workers: every message, both ways,
//! is built and parsed here and nowhere else.
//!
//! Each direction is one enum, [`ToWorker`] and [`FromWorker`], with one
//! `encode` and one `parse`. The two messages that carry tasks and results
//! are also built incrementally by [`BatchWriter`] and [`ResultsWriter`]:
//! that is the hot path, where a batch carries many tasks whose inputs are
//! already encoded, and the worker runs each task straight from a slice of
//! the received message and writes each output straight into its reply,
//! with no allocation per task. The writers produce exactly the bytes that
//! `encode` does. Every length is checked on reading: a malformed message is
//! a [`WireError`], never a panic.
//!
//! Written by hand rather than with serde for that hot path. Integers are
//! little endian; `bytes` is a `u32` length and the bytes.
//!
//! Parent to worker:
//! - `S` setup: worker id `u32`, the largest message either side may send
//!   `u64`, then `1` + name `bytes` + input `bytes` for an initializer, or
//!   `0`; then the pool's build id `bytes`.
//! - `B` batch: records until the end, each `N` (task number `u32`, name
//!   `bytes`: the number stands for the name from now on), `C` (chunk id
//!   `u64`, task number `u32`, item count `u32`, each item's input `bytes`)
//!   or `I`, a chunk whose items each carry their input index `u64` before
//!   the input, sent only to a worker whose ready message asked for it.
//! - `Q` quit: finish, reply, exit.
//! - `D` denied: the reason `bytes`: the pool refuses this worker (its
//!   tasks differ from the pool's); the connection ends next.
//! - `K` recall: count `u32`, then that many chunk ids `u64`: give back the
//!   inputs of those chunks not yet started (they are answered with the
//!   status `Returned`), to run elsewhere or not at all.
//!
//! Worker to parent:
//! - `H` ready: pid `u32`, flags `u8` ([`WANTS_INDICES`] asks for `I`
//!   chunks: the worker traces its tasks at DEBUG level), the worker's build
//!   id `bytes` and program name `bytes`; then, with the flag [`HAS_TASKS`]
//!   (a worker whose build id is not the pool's), a count `u32` and each
//!   task's name, input type and output type `bytes`, version `u32` and
//!   code hash `u64`; then, with the flag [`IN_SLURM_JOB`], the Slurm job
//!   id `u64` the worker says it runs in.
//! - `F` setup failed: a failure code `u8` and message `bytes`.
//! - `X` refused: a program that is not a worker tried to start a pool;
//!   the reason `bytes` says so.
//! - `R` results: busy nanoseconds `u64`, then per chunk its id `u64`,
//!   item count `u32`, and per item a status `u8` (0 for success, else a
//!   failure code) and `bytes` (the output or the failure's message). The
//!   status [`PANICKED_AT`], a panic with its details, is followed by the
//!   file `bytes`, line `u32`, column `u32` and backtrace `bytes` (empty
//!   when backtraces are off in the worker).
//!   A chunk's items are those the worker had not answered yet, in order.
//! - `P` partial results: as `R`, but its last chunk is answered only in
//!   part (at least one item, not all that are left): the worker is still
//!   running it and sends what it finished so far, so that a long chunk's
//!   results (and a map's progress) come as its inputs finish. The rest of
//!   that chunk comes first in a later message.
//!
//! A local worker is also told, through its environment, where to find its
//! connection ([`CONNECTION_ENV`]), its progress page ([`PROGRESS_ENV`]) and
//! its parent ([`PARENT_ENV`]).

use std::ops::Range;
use std::time::Duration;

use crate::error::{Error, RemotePanic, MAX_PANIC_FILE, MAX_REMOTE_BACKTRACE};
use crate::spin::MAX_SPIN;
use crate::task::{FailureKind, Fingerprint, TaskFailure};

/// Names the inherited connection of a local worker.
pub(crate) const CONNECTION_ENV: &str = "POOL_WORKER_CONNECTION";

/// Messages from this size up travel between the pool and its local
/// workers as shared memory (recycled memfds: 1.5-2.6x the socket's speed
/// from 256 KiB to 64 MiB in connection's `shared_memory` bench), unless
/// `CONNECTION_SHARED_MEMORY_THRESHOLD` says otherwise for the process. The
/// pool owns both ends, so neither is ever turned into an async end that
/// could not read them.
pub(crate) const SHARED_MEMORY_FROM: usize = 1 << 20;

/// Gives a local worker connection's end the pool's shared-memory
/// threshold.
pub(crate) fn use_shared_memory(conn: &mut connection::Connection) {
    if std::env::var_os(connection::shared::SHARED_MEMORY_THRESHOLD_ENV).is_none() {
        conn.set_shared_memory_threshold(Some(SHARED_MEMORY_FROM));
    }
}
/// Names the inherited progress page of a local worker.
pub(crate) const PROGRESS_ENV: &str = "POOL_WORKER_PROGRESS";
/// The pid of the pool's process, so the worker can notice it is gone.
pub(crate) const PARENT_ENV: &str = "POOL_WORKER_PARENT";

/// The chunk id of a direct call (`Pool::apply` on a lent worker): never
/// one the dispatcher hands out (they count up from 1). A lent worker is
/// sent nothing else until it answers, so it answers at once, without
/// looking for more work to answer with.
pub(crate) const DIRECT_CHUNK: u64 = u64::MAX;

const SETUP: u8 = b'S';
const BATCH: u8 = b'B';
const QUIT: u8 = b'Q';
const RECALL: u8 = b'K';
const DENIED: u8 = b'D';
const READY: u8 = b'H';
const SETUP_FAILED: u8 = b'F';
const REFUSED: u8 = b'X';
const OVER_BUDGET: u8 = b'M';
const LEAVING: u8 = b'L';
const RESULTS: u8 = b'R';
const PARTIAL_RESULTS: u8 = b'P';

const NAME_RECORD: u8 = b'N';
const CHUNK_RECORD: u8 = b'C';
const INDEXED_CHUNK_RECORD: u8 = b'I';

/// Ready flag: send this worker each input's index along with it.
const WANTS_INDICES: u8 = 1;
/// Ready flag: the worker's tasks follow (its build is not the pool's).
const HAS_TASKS: u8 = 2;
/// Ready flag: the Slurm job the worker runs in follows.
const IN_SLURM_JOB: u8 = 4;
/// The fewest bytes a task's fingerprint takes in a ready message.
const FINGERPRINT_MIN: usize = 3 * 4 + 4 + 8;

/// A malformed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError(String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed message: {}", self.0)
    }
}

impl std::error::Error for WireError {}

/// Whether a payload of `len` bytes fits a `bytes` field.
pub(crate) fn fits(len: usize) -> bool {
    u32::try_from(len).is_ok()
}

/// The most a batch adds around the inputs of one chunk of `items` inputs
/// of `task`: the batch's tag, the task's definition, the chunk's header,
/// and each input's index and length.
pub(crate) fn chunk_overhead(task: &str, items: usize) -> usize {
    1 + (1 + 4 + 4 + task.len()) + (1 + 8 + 4 + 4) + items * INPUT_OVERHEAD
}

/// What a batch adds around each input: its index and its length.
pub(crate) const INPUT_OVERHEAD: usize = 8 + 4;

/// An initializer as the setup message carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Initializer<'a> {
    pub(crate) name: &'a str,
    pub(crate) input: &'a [u8],
}

/// The memory limits a worker applies to itself (see
/// `PoolBuilder::max_worker_memory` and `hard_worker_memory`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct MemoryLimits {
    /// Retire once resident memory exceeds this many bytes after an input.
    pub(crate) budget: Option<u64>,
    /// Allocations beyond this many bytes of data fail (`RLIMIT_DATA`).
    pub(crate) hard: Option<u64>,
}

/// The smallest hard limit a worker accepts: below it a worker could not
/// run at all (every allocation would fail and abort it), which a pool
/// (a hostile one included) must not be able to ask for.
pub(crate) const MIN_HARD_MEMORY: u64 = 16 << 20;

/// A message from the pool to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToWorker<'a> {
    /// The first message: who the worker is and what to run first.
    Setup {
        worker_id: u32,
        /// The largest message either side may send (and so receive).
        max_message_size: u64,
        initializer: Option<Initializer<'a>>,
        /// The pool's build id: a worker of another build lists its tasks.
        build_id: &'a str,
        memory: MemoryLimits,
        /// How long the worker checks for its next message before it
        /// blocks on it (`PoolBuilder::spin`), at most `spin::MAX_SPIN`.
        spin: Duration,
    },
    /// Tasks to run, read record by record; built with [`BatchWriter`].
    Batch(Batch<'a>),
    /// Finish, reply, exit.
    Quit,
    /// Give back the unstarted inputs of these chunks.
    Recall { chunks: Vec<u64> },
    /// The pool refuses this worker, and says why.
    Denied { reason: &'a str },
}

impl<'a> ToWorker<'a> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            ToWorker::Setup {
                worker_id,
                max_message_size,
                initializer,
                build_id,
                memory,
                spin,
            } => {
                let mut out = vec![SETUP];
                put_u32(&mut out, *worker_id);
                put_u64(&mut out, *max_message_size);
                match initializer {
                    Some(init) => {
                        out.push(1);
                        put_bytes(&mut out, init.name.as_bytes());
                        put_bytes(&mut out, init.input);
                    }
                    None => out.push(0),
                }
                put_bytes(&mut out, build_id.as_bytes());
                // 0 is no limit: a limit of 0 bytes is never asked for.
                put_u64(&mut out, memory.budget.unwrap_or(0));
                put_u64(&mut out, memory.hard.unwrap_or(0));
                put_u64(&mut out, spin.as_nanos() as u64);
                out
            }
            ToWorker::Batch(batch) => [&[BATCH][..], batch.body].concat(),
            ToWorker::Quit => vec![QUIT],
            ToWorker::Denied { reason } => {
                let mut out = vec![DENIED];
                put_bytes(&mut out, reason.as_bytes());
                out
            }
            ToWorker::Recall { chunks } => {
                let mut out = vec![RECALL];
                put_u32(&mut out, chunks.len() as u32);
                for chunk in chunks {
                    put_u64(&mut out, *chunk);
                }
                out
            }
        }
    }

    pub(crate) fn parse(message: &'a [u8]) -> Result<ToWorker<'a>, WireError> {
        let mut cursor = ByteCursor::new(message);
        let message = match cursor.u8("message tag")? {
            SETUP => {
                let worker_id = cursor.u32("worker id")?;
                let max_message_size = cursor.u64("message limit")?;
                let initializer = match cursor.u8("initializer flag")? {
                    0 => None,
                    1 => Some(Initializer {
                        name: cursor.str("initializer name")?,
                        input: cursor.bytes("initializer input")?,
                    }),
                    other => return Err(WireError(format!("initializer flag {other}"))),
                };
                let build_id = cursor.str("build id")?;
                // Absent from a pool that predates them: no limits.
                let limit = |value: u64| (value > 0).then_some(value);
                let memory = match cursor.at_end() {
                    true => MemoryLimits::default(),
                    false => MemoryLimits {
                        budget: limit(cursor.u64("memory budget")?),
                        hard: limit(cursor.u64("hard memory limit")?),
                    },
                };
                // Absent from a pool that predates it: no spin.
                let spin = match cursor.at_end() {
                    true => Duration::ZERO,
                    false => Duration::from_nanos(cursor.u64("spin")?),
                };
                if spin > MAX_SPIN {
                    return Err(WireError(format!(
                        "a spin of {spin:?}, above the {MAX_SPIN:?} a worker allows"
                    )));
                }
                ToWorker::Setup {
                    worker_id,
                    max_message_size,
                    initializer,
                    build_id,
                    memory,
                    spin,
                }
            }
            BATCH => {
                return Ok(ToWorker::Batch(Batch {
                    body: cursor.rest(),
                }))
            }
            QUIT => ToWorker::Quit,
            DENIED => ToWorker::Denied {
                reason: cursor.str("reason")?,
            },
            RECALL => {
                let count = cursor.u32("recall count")?;
                // Each id takes 8 bytes: a count beyond the message is refused
                // before anything is set aside for it.
                if count as usize > cursor.buf.len().saturating_sub(cursor.pos) / 8 {
                    return Err(WireError(format!(
                        "recall of {count} chunks in a short message"
                    )));
                }
                let chunks = (0..count)
                    .map(|_| cursor.u64("recalled chunk"))
                    .collect::<Result<_, _>>()?;
                ToWorker::Recall { chunks }
            }
            other => {
                return Err(WireError(format!(
                    "unknown message tag {other} to a worker"
                )))
            }
        };
        cursor.expect_end()?;
        Ok(message)
    }
}

/// A received batch: its records, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batch<'a> {
    body: &'a [u8],
}

impl<'a> Batch<'a> {
    pub(crate) fn records(&self) -> BatchRecords<'a> {
        BatchRecords {
            cursor: ByteCursor::new(self.body),
        }
    }
}

/// One record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BatchRecord<'a> {
    /// From now on `number` stands for the task `name`.
    DefineTask {
        number: u32,
        name: &'a str,
    },
    Chunk(ChunkRecord<'a>),
}

/// A chunk: inputs of one task that the worker runs in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkRecord<'a> {
    pub(crate) id: u64,
    pub(crate) task: u32,
    pub(crate) items: ChunkItems<'a>,
}

/// The records of a batch. A malformed record ends the iteration with its
/// error; the items of a chunk are checked before the chunk is yielded, so
/// a worker never runs part of a malformed chunk.
pub(crate) struct BatchRecords<'a> {
    cursor: ByteCursor<'a>,
}

impl<'a> BatchRecords<'a> {
    fn next_record(&mut self) -> Result<BatchRecord<'a>, WireError> {
        let cursor = &mut self.cursor;
        match cursor.u8("record tag")? {
            NAME_RECORD => Ok(BatchRecord::DefineTask {
                number: cursor.u32("task number")?,
                name: cursor.str("task name")?,
            }),
            tag @ (CHUNK_RECORD | INDEXED_CHUNK_RECORD) => {
                let id = cursor.u64("chunk id")?;
                let task = cursor.u32("task number")?;
                let count = cursor.u32("item count")?;
                let indexed = tag == INDEXED_CHUNK_RECORD;
                let start = cursor.pos;
                for _ in 0..count {
                    if indexed {
                        cursor.u64("input index")?;
                    }
                    cursor.bytes("task input")?;
                }
                Ok(BatchRecord::Chunk(ChunkRecord {
                    id,
                    task,
                    items: ChunkItems {
                        cursor: ByteCursor::new(&cursor.buf[start..cursor.pos]),
                        left: count,
                        indexed,
                    },
                }))
            }
            other => Err(WireError(format!("unknown record tag {other}"))),
        }
    }
}

impl<'a> Iterator for BatchRecords<'a> {
    type Item = Result<BatchRecord<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.cursor.at_end() {
            return None;
        }
        let record = self.next_record();
        if record.is_err() {
            self.cursor.pos = self.cursor.buf.len();
        }
        Some(record)
    }
}

/// One input of a chunk: its index among its call's inputs, if the worker
/// asked for indices, and its encoded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkItem<'a> {
    pub(crate) index: Option<u64>,
    pub(crate) input: &'a [u8],
}

/// The inputs of a chunk, already checked to be well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChunkItems<'a> {
    cursor: ByteCursor<'a>,
    left: u32,
    indexed: bool,
}

impl ChunkItems<'_> {
    pub(crate) fn remaining(&self) -> u32 {
        self.left
    }
}

impl<'a> Iterator for ChunkItems<'a> {
    type Item = ChunkItem<'a>;

    fn next(&mut self) -> Option<ChunkItem<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Checked when the chunk was read, so these cannot fail; if they
        // did, the chunk would just end early.
        let index = match self.indexed {
            true => Some(self.cursor.u64("input index").ok()?),
            false => None,
        };
        let input = self.cursor.bytes("task input").ok()?;
        Some(ChunkItem { index, input })
    }
}

/// Builds a batch record by record, reusing its buffer from batch to batch.
pub(crate) struct BatchWriter {
    buf: Vec<u8>,
}

/// Whether a chunk's items carry their input indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Indices {
    Sent,
    Omitted,
}

impl BatchWriter {
    pub(crate) fn new() -> BatchWriter {
        BatchWriter { buf: vec![BATCH] }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.len() == 1
    }

    /// The size of the message so far.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn define_task(&mut self, number: u32, name: &str) {
        self.buf.push(NAME_RECORD);
        put_u32(&mut self.buf, number);
        put_bytes(&mut self.buf, name.as_bytes());
    }

    /// Adds a chunk of `(input index, input)`; the indices travel only if
    /// `indices` says so. Each input must [fit](fits).
    pub(crate) fn chunk<'i>(
        &mut self,
        id: u64,
        task: u32,
        indices: Indices,
        inputs: impl ExactSizeIterator<Item = (usize, &'i [u8])>,
    ) {
        put_chunk_start(&mut self.buf, id, task, indices, inputs.len());
        for (index, input) in inputs {
            put_input_start(&mut self.buf, indices, index, input.len());
            self.buf.extend_from_slice(input);
        }
    }

    /// The whole message, as [`ToWorker::encode`] would write it.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn clear(&mut self) {
        self.buf.truncate(1);
    }
}

/// The most [`lone_chunk_header`] writes: the batch's tag, a chunk's
/// header, and its one input's index and length.
pub(crate) const LONE_CHUNK_ROOM: usize = 1 + CHUNK_START + INPUT_OVERHEAD;

/// A chunk record's header: its tag, id, task number and item count.
const CHUNK_START: usize = 1 + 8 + 4 + 4;

/// The start of a batch that is one chunk of one input of `input_len`
/// bytes, which follows it: with the input, the same bytes as a
/// [`BatchWriter`] holding that chunk alone. A large input goes out this
/// way straight from the buffer it was encoded into, its header written
/// in the room kept in front of it, instead of being copied into a batch.
pub(crate) fn lone_chunk_header(
    id: u64,
    task: u32,
    indices: Indices,
    index: usize,
    input_len: usize,
) -> Vec<u8> {
    let mut header = Vec::with_capacity(LONE_CHUNK_ROOM);
    header.push(BATCH);
    put_chunk_start(&mut header, id, task, indices, 1);
    put_input_start(&mut header, indices, index, input_len);
    header
}

/// Writes a chunk record's header.
fn put_chunk_start(out: &mut Vec<u8>, id: u64, task: u32, indices: Indices, items: usize) {
    out.push(match indices {
        Indices::Sent => INDEXED_CHUNK_RECORD,
        Indices::Omitted => CHUNK_RECORD,
    });
    put_u64(out, id);
    put_u32(out, task);
    put_u32(out, items as u32);
}

/// Writes what comes before an input in a chunk: its index if the chunk
/// carries them, and its length. The input must [fit](fits).
fn put_input_start(out: &mut Vec<u8>, indices: Indices, index: usize, len: usize) {
    if indices == Indices::Sent {
        put_u64(out, index as u64);
    }
    put_u32(out, len as u32);
}

/// A message from a worker to the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FromWorker<'a> {
    /// Set up and waiting for tasks.
    Ready {
        pid: u32,
        /// The worker traces its tasks and wants their input indices.
        wants_indices: bool,
        /// The Slurm job a remote worker says it runs in.
        slurm_job: Option<u64>,
        identity: Identity<'a>,
    },
    /// The initializer failed.
    SetupFailed(TaskFailure),
    /// The program the pool started ran its own `main` and tried to start
    /// a pool instead of becoming a worker.
    Refused { reason: &'a str },
    /// Resident memory was over the budget after an input: the worker
    /// gives back every input it has not started and waits to be told to
    /// quit.
    OverBudget { resident: u64 },
    /// The worker was told to leave (its job's time limit is near: Slurm's
    /// warning signal): as over budget, it gives back every input it has
    /// not started, finishes the one it runs, and waits to be told to quit.
    Leaving,
    /// Results of chunks, in the order they were sent; built with
    /// [`ResultsWriter`].
    Results(Results<'a>),
}

impl<'a> FromWorker<'a> {
    pub(crate) fn encode(&self) -> Vec<u8> {
        match self {
            FromWorker::Ready {
                pid,
                wants_indices,
                slurm_job,
                identity,
            } => {
                let mut out = vec![READY];
                put_u32(&mut out, *pid);
                let mut flags = if *wants_indices { WANTS_INDICES } else { 0 };
                if identity.tasks.is_some() {
                    flags |= HAS_TASKS;
                }
                if slurm_job.is_some() {
                    flags |= IN_SLURM_JOB;
                }
                out.push(flags);
                put_bytes(&mut out, identity.build_id.as_bytes());
                put_bytes(&mut out, identity.program.as_bytes());
                if let Some(tasks) = &identity.tasks {
                    put_u32(&mut out, tasks.len() as u32);
                    for task in tasks {
                        put_bytes(&mut out, task.name.as_bytes());
                        put_bytes(&mut out, task.input.as_bytes());
                        put_bytes(&mut out, task.output.as_bytes());
                        put_u32(&mut out, task.version);
                        put_u64(&mut out, task.code);
                    }
                }
                if let Some(job) = slurm_job {
                    put_u64(&mut out, *job);
                }
                out
            }
            FromWorker::SetupFailed(failure) => {
                let mut out = vec![SETUP_FAILED, failure.kind as u8];
                put_bytes(&mut out, failure.message.as_bytes());
                out
            }
            FromWorker::Refused { reason } => {
                let mut out = vec![REFUSED];
                put_bytes(&mut out, reason.as_bytes());
                out
            }
            FromWorker::OverBudget { resident } => {
                let mut out = vec![OVER_BUDGET];
                put_u64(&mut out, *resident);
                out
            }
            FromWorker::Leaving => vec![LEAVING],
            FromWorker::Results(results) => results.message.to_vec(),
        }
    }

    pub(crate) fn parse(message: &'a [u8]) -> Result<FromWorker<'a>, WireError> {
        let mut cursor = ByteCursor::new(message);
        let parsed = match cursor.u8("message tag")? {
            RESULTS | PARTIAL_RESULTS => {
                let busy_nanos = cursor.u64("busy time")?;
                // One pass over the headers that sets nothing aside, so a
                // message costs no more than its own bytes until its chunks
                // are checked against those sent (`ResultChunks`, then
                // `ResultItems`, read it again then, in place).
                while !cursor.at_end() {
                    cursor.result_chunk()?;
                }
                FromWorker::Results(Results {
                    message,
                    busy_nanos,
                })
            }
            READY => {
                let pid = cursor.u32("pid")?;
                let flags = cursor.u8("ready flags")?;
                let build_id = cursor.str("build id")?;
                let program = cursor.str("program name")?;
                let tasks = match flags & HAS_TASKS {
                    0 => None,
                    _ => Some(cursor.fingerprints()?),
                };
                let slurm_job = match flags & IN_SLURM_JOB {
                    0 => None,
                    _ => Some(cursor.u64("Slurm job id")?),
                };
                FromWorker::Ready {
                    pid,
                    wants_indices: flags & WANTS_INDICES != 0,
                    slurm_job,
                    identity: Identity {
                        build_id,
                        program,
                        tasks,
                    },
                }
            }
            SETUP_FAILED => {
                let code = cursor.u8("failure code")?;
                let kind = FailureKind::from_code(code)
                    .ok_or_else(|| WireError(format!("unknown failure code {code}")))?;
                FromWorker::SetupFailed(TaskFailure::new(kind, cursor.str("failure message")?))
            }
            REFUSED => FromWorker::Refused {
                reason: cursor.str("reason")?,
            },
            OVER_BUDGET => FromWorker::OverBudget {
                resident: cursor.u64("resident bytes")?,
            },
            LEAVING => FromWorker::Leaving,
            other => {
                return Err(WireError(format!(
                    "unknown message tag {other} from a worker"
                )))
            }
        };
        cursor.expect_end()?;
        Ok(parsed)
    }
}

/// Which build of which program a worker runs, and, if that is not the
/// pool's own build, its tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity<'a> {
    /// What tells its build from others (see `sys::build_id`).
    pub(crate) build_id: &'a str,
    /// The executable's file name.
    pub(crate) program: &'a str,
    /// Every task the worker links, unless its build is the pool's.
    pub(crate) tasks: Option<Vec<Fingerprint<'a>>>,
}

/// A received results message, its structure checked: every chunk's
/// header and every item's status and length lie within it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Results<'a> {
    message: &'a [u8],
    /// How long the worker was busy with these chunks, in nanoseconds.
    pub(crate) busy_nanos: u64,
}

/// The chunks of a results message, read in place, header by header:
/// nothing is allocated, so a message's chunks can be checked against the
/// chunks in flight before anything is made of its items.
#[derive(Debug, Clone)]
pub(crate) struct ResultChunks<'a> {
    cursor: ByteCursor<'a>,
}

impl<'a> ResultChunks<'a> {
    /// The chunks of `message`, which [`FromWorker::parse`] accepted as
    /// results (the reader parses it; the dispatcher reads it). In other
    /// bytes, the chunks end before the first malformed one.
    pub(crate) fn of(message: &'a [u8]) -> ResultChunks<'a> {
        ResultChunks {
            cursor: ByteCursor::at(message, RESULTS_START),
        }
    }
}

impl ResultChunks<'_> {
    /// The next chunk's id and item count, read without moving on and
    /// without reading its items, so that a chunk can be judged by its
    /// header before its items cost anything; `None` at the end (or at a
    /// malformed header).
    pub(crate) fn peek_header(&self) -> Option<(u64, u32)> {
        let mut cursor = self.cursor.clone();
        if cursor.at_end() {
            return None;
        }
        Some((cursor.u64("chunk id").ok()?, cursor.u32("item count").ok()?))
    }
}

/// Where a results message's first chunk starts: after its tag and busy time.
const RESULTS_START: usize = 1 + 8;

/// Whether a results message answers its last chunk only in part (a `P`
/// message: the worker is still running that chunk).
pub(crate) fn is_partial(message: &[u8]) -> bool {
    message.first() == Some(&PARTIAL_RESULTS)
}

impl Iterator for ResultChunks<'_> {
    type Item = ResultChunk;

    fn next(&mut self) -> Option<ResultChunk> {
        if self.cursor.at_end() {
            return None;
        }
        let chunk = self.cursor.result_chunk();
        if chunk.is_err() {
            self.cursor.pos = self.cursor.buf.len();
        }
        chunk.ok()
    }
}

/// What a chunk's results say of it, without its items' results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResultChunk {
    pub(crate) id: u64,
    /// How many items the worker answered for it.
    pub(crate) items: u32,
    /// Some of its inputs are given back unstarted (status `Returned`).
    pub(crate) gives_back: bool,
}

/// Every item's result in a results message, chunk after chunk, in order,
/// read in place. Which chunk each belongs to is the business of whoever
/// checked the message's [chunks](ResultChunks); malformed bytes (never
/// in a message [`FromWorker::parse`] accepted) end the items.
#[derive(Debug, Clone)]
pub(crate) struct ResultItems<'a> {
    cursor: ByteCursor<'a>,
    /// Items left in the current chunk.
    left: u32,
}

impl<'a> ResultItems<'a> {
    pub(crate) fn of(message: &'a [u8]) -> ResultItems<'a> {
        ResultItems {
            cursor: ByteCursor::at(message, RESULTS_START),
            left: 0,
        }
    }

    #[inline]
    fn read(&mut self) -> Result<ItemResult<'a>, WireError> {
        while self.left == 0 {
            self.cursor.u64("chunk id")?;
            self.left = self.cursor.u32("item count")?;
        }
        self.left -= 1;
        self.cursor.item_result()
    }
}

impl<'a> Iterator for ResultItems<'a> {
    type Item = ItemResult<'a>;

    #[inline]
    fn next(&mut self) -> Option<ItemResult<'a>> {
        if self.left == 0 && self.cursor.at_end() {
            return None;
        }
        let item = self.read();
        if item.is_err() {
            self.cursor.pos = self.cursor.buf.len();
            self.left = 0;
        }
        item.ok()
    }
}

/// One input's result as a worker reported it: where its encoded output
/// lies in the results message, or why it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemResult<'a> {
    Output(Range<usize>),
    Failed {
        kind: FailureKind,
        message: &'a [u8],
        /// Where a panic happened, as the worker reported it.
        panic: Option<PanicReport<'a>>,
    },
}

/// A panic's details as they arrived: a worker's word, unchecked text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PanicReport<'a> {
    pub(crate) file: &'a [u8],
    pub(crate) line: u32,
    pub(crate) column: u32,
    pub(crate) backtrace: &'a [u8],
}

/// The error of an input a worker reported failed (`ItemResult::Failed`).
pub(crate) fn failure_error(
    kind: FailureKind,
    message: &[u8],
    panic: Option<PanicReport<'_>>,
) -> Error {
    Error::from_failure(
        kind.error_kind(),
        String::from_utf8_lossy(message).into_owned(),
        panic.map(|report| {
            RemotePanic::from_worker(report.file, report.line, report.column, report.backtrace)
        }),
    )
}

/// The item status of a panic sent with its location and backtrace
/// ([`FailureKind::Panicked`] is one without them, when they did not fit).
pub(crate) const PANICKED_AT: u8 = 8;

/// What a panic's details take besides their text: the file's and
/// backtrace's lengths, the line and the column.
const PANIC_DETAILS: usize = 4 + 4 + 4 + 4;

impl ItemResult<'_> {
    /// The worker gave the input back unstarted (after a recall).
    pub(crate) fn is_returned(&self) -> bool {
        matches!(self, ItemResult::Failed { kind, .. } if *kind == FailureKind::Returned)
    }
}

/// Builds a results message in the worker, never larger than its limit.
pub(crate) struct ResultsWriter {
    buf: Vec<u8>,
    chunks: usize,
    /// The chunk being written: its id, where its header starts, the items
    /// announced in that header and those written so far.
    chunk_id: u64,
    chunk_at: usize,
    announced: u32,
    written: u32,
    /// The largest message the pool accepts.
    limit: usize,
    /// Room kept for the status and length of the chunk's inputs still to
    /// come, so that none of them can take the message past the limit.
    reserve: usize,
}

const BUSY_OFFSET: usize = 1;
/// The status and length before each input's output or failure message.
const ITEM_HEADER: usize = 1 + 4;
/// The bytes of a results message around a lone output: tag, busy time,
/// chunk id and item count, status and length.
const LONE_OUTPUT_OVERHEAD: usize = 1 + 8 + 8 + 4 + 1 + 4;

impl ResultsWriter {
    /// A writer whose messages stay within `limit` bytes.
    pub(crate) fn new(limit: u64) -> ResultsWriter {
        let mut writer = ResultsWriter {
            buf: Vec::with_capacity(4096),
            chunks: 0,
            chunk_id: 0,
            chunk_at: 0,
            announced: 0,
            written: 0,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            reserve: 0,
        };
        writer.clear();
        writer
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.buf.push(RESULTS);
        put_u64(&mut self.buf, 0);
        self.chunks = 0;
        self.reserve = 0;
    }

    pub(crate) fn chunks(&self) -> usize {
        self.chunks
    }

    /// Whether the message holds half its limit or more: time to send it
    /// before another chunk's outputs join it.
    pub(crate) fn is_half_full(&self) -> bool {
        self.buf.len() >= self.limit / 2
    }

    pub(crate) fn add_busy(&mut self, nanos: u64) {
        let slot = &mut self.buf[BUSY_OFFSET..BUSY_OFFSET + 8];
        let mut word = [0u8; 8];
        word.copy_from_slice(slot);
        let total = u64::from_le_bytes(word).saturating_add(nanos);
        slot.copy_from_slice(&total.to_le_bytes());
    }

    pub(crate) fn begin_chunk(&mut self, id: u64, items: u32) {
        self.chunk_id = id;
        self.chunk_at = self.buf.len();
        self.announced = items;
        self.written = 0;
        put_u64(&mut self.buf, id);
        put_u32(&mut self.buf, items);
        self.chunks += 1;
        self.reserve = items as usize * ITEM_HEADER;
    }

    /// Ends the message part way through the chunk being written, after
    /// the items written so far, making it a partial results message
    /// (`P`). Returns the chunk's id and how many of its items are left,
    /// for [`begin_chunk`](ResultsWriter::begin_chunk) once this message
    /// is sent and cleared; `None`, changing nothing, unless some of the
    /// chunk's items are written and some are not.
    pub(crate) fn end_partway(&mut self) -> Option<(u64, u32)> {
        if self.chunks == 0 || self.written == 0 || self.written >= self.announced {
            return None;
        }
        let count = self.chunk_at + 8;
        self.buf[count..count + 4].copy_from_slice(&self.written.to_le_bytes());
        self.buf[0] = PARTIAL_RESULTS;
        Some((self.chunk_id, self.announced - self.written))
    }

    /// Runs `produce` to write one item's output in place; its failure, or
    /// an output too large to carry, becomes the item's failure. An output
    /// that would take the message past its limit is too large: it fails
    /// alone, with a message saying so, and the worker goes on.
    pub(crate) fn item(&mut self, produce: impl FnOnce(&mut Vec<u8>) -> Result<(), TaskFailure>) {
        self.written = self.written.saturating_add(1);
        self.reserve = self.reserve.saturating_sub(ITEM_HEADER);
        // What this input may take: the limit, less what the chunk's later
        // inputs need at the least (their status and length).
        let cap = self.limit.saturating_sub(self.reserve);
        let status_at = self.buf.len();
        self.buf.push(0);
        put_u32(&mut self.buf, 0);
        let start = self.buf.len();
        let result = produce(&mut self.buf);
        let len = self.buf.len() - start;
        let failure = match result {
            Ok(()) if fits(len) && self.buf.len() <= cap => None,
            Ok(()) if len.saturating_add(LONE_OUTPUT_OVERHEAD) > self.limit || !fits(len) => {
                Some(TaskFailure::new(
                    FailureKind::TooLarge,
                    format!(
                        "output of {len} bytes is over the pool's message limit of {} bytes \
                         (PoolBuilder::max_message_size raises it; 4 GiB - 1 at most)",
                        self.limit
                    ),
                ))
            }
            Ok(()) => Some(TaskFailure::new(
                FailureKind::TooLarge,
                format!(
                    "output of {len} bytes does not fit in one message with the other outputs \
                     of its chunk under the pool's message limit of {} bytes \
                     (a smaller chunksize or a larger PoolBuilder::max_message_size helps)",
                    self.limit
                ),
            )),
            Err(failure) => Some(failure),
        };
        match failure {
            None => {
                self.buf[start - 4..start].copy_from_slice(&(len as u32).to_le_bytes());
            }
            Some(failure) => {
                self.buf.truncate(status_at);
                let room = cap.saturating_sub(status_at + ITEM_HEADER);
                put_failure(&mut self.buf, &failure, room);
            }
        }
    }

    /// The whole message, as [`FromWorker::encode`] would write it.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

/// Writes a failure's status and message, and a panic's details when
/// there are some and they fit: all in at most `room` bytes past the
/// status and the message's length.
fn put_failure(out: &mut Vec<u8>, failure: &TaskFailure, room: usize) {
    let message = clip(&failure.message, room.min(MAX_FAILURE_MESSAGE));
    let left = room - message.len();
    match &failure.panic {
        Some(panic) if left >= PANIC_DETAILS => {
            let left = left - PANIC_DETAILS;
            out.push(PANICKED_AT);
            put_bytes(out, message.as_bytes());
            let file = clip(panic.location.file(), left.min(MAX_PANIC_FILE));
            put_bytes(out, file.as_bytes());
            put_u32(out, panic.location.line());
            put_u32(out, panic.location.column());
            // The top frames, nearest the panic, are the ones kept.
            let left = left - file.len();
            let backtrace = panic.backtrace.as_deref().unwrap_or_default();
            put_bytes(
                out,
                clip(backtrace, left.min(MAX_REMOTE_BACKTRACE)).as_bytes(),
            );
        }
        _ => {
            out.push(failure.kind as u8);
            put_bytes(out, message.as_bytes());
        }
    }
}

/// The longest failure message sent: a task's error or panic text can be
/// as long as it likes, but it must not crowd out the outputs it travels with.
const MAX_FAILURE_MESSAGE: usize = 64 * 1024;

/// `message`, cut to at most `max` bytes (at a character boundary, saying
/// how long it was when there is room for that).
pub(crate) fn clip(message: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if message.len() <= max {
        return message.into();
    }
    let note = format!("... ({} bytes in all)", message.len());
    let mut end = max.saturating_sub(note.len());
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    match end + note.len() <= max {
        true => format!("{}{note}", &message[..end]).into(),
        false => {
            let mut end = max;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message[..end].into()
        }
    }
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends `bytes` with its length; callers check [`fits`] beforehand
/// (a task's input when it is encoded, names and messages are short).
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// A read position in a received message: every read checks the length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ByteCursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> ByteCursor<'a> {
    fn new(buf: &'a [u8]) -> ByteCursor<'a> {
        ByteCursor { buf, pos: 0 }
    }

    fn at(buf: &'a [u8], pos: usize) -> ByteCursor<'a> {
        ByteCursor { buf, pos }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn expect_end(&self) -> Result<(), WireError> {
        match self.at_end() {
            true => Ok(()),
            false => Err(WireError(format!(
                "{} bytes left over at offset {}",
                self.buf.len() - self.pos,
                self.pos
            ))),
        }
    }

    fn rest(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos.min(self.buf.len())..];
        self.pos = self.buf.len();
        rest
    }

    // The reads are inlined, their errors made out of line: results are
    // read in place, item by item, on the dispatcher's hot path.
    #[inline]
    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], WireError> {
        match self.buf.get(self.pos..).and_then(|rest| rest.get(..len)) {
            Some(slice) => {
                self.pos += len;
                Ok(slice)
            }
            None => Err(self.short(len, what)),
        }
    }

    #[cold]
    #[inline(never)]
    fn short(&self, len: usize, what: &str) -> WireError {
        WireError(format!(
            "{what} needs {len} bytes at offset {} of {}",
            self.pos,
            self.buf.len()
        ))
    }

    #[inline]
    fn u8(&mut self, what: &str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    #[inline]
    fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        let mut word = [0u8; 4];
        word.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(word))
    }

    #[inline]
    fn u64(&mut self, what: &str) -> Result<u64, WireError> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(word))
    }

    #[inline]
    fn bytes(&mut self, what: &str) -> Result<&'a [u8], WireError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    /// A count and that many task fingerprints. The count is checked
    /// against what is left of the message before anything is set aside
    /// for it.
    fn fingerprints(&mut self) -> Result<Vec<Fingerprint<'a>>, WireError> {
        let count = self.u32("task count")? as usize;
        if count > self.buf.len().saturating_sub(self.pos) / FINGERPRINT_MIN {
            return Err(WireError(format!("{count} tasks in a short message")));
        }
        (0..count)
            .map(|_| {
                Ok(Fingerprint {
                    name: self.str("task name")?,
                    input: self.str("input type")?,
                    output: self.str("output type")?,
                    version: self.u32("task version")?,
                    code: self.u64("code hash")?,
                })
            })
            .collect()
    }

    fn str(&mut self, what: &str) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes(what)?)
            .map_err(|_| WireError(format!("{what} is not UTF-8")))
    }

    /// Reads a chunk of a results message: its header, and its items to
    /// the end, noting whether any is given back.
    #[inline]
    fn result_chunk(&mut self) -> Result<ResultChunk, WireError> {
        let id = self.u64("chunk id")?;
        let items = self.u32("item count")?;
        let mut gives_back = false;
        for _ in 0..items {
            gives_back |= self.item_result()?.is_returned();
        }
        Ok(ResultChunk {
            id,
            items,
            gives_back,
        })
    }

    /// Reads an item's status byte and its payload.
    #[inline]
    fn item_result(&mut self) -> Result<ItemResult<'a>, WireError> {
        let status = self.u8("status")?;
        let payload = self.bytes("result")?;
        if status == 0 {
            return Ok(ItemResult::Output(self.pos - payload.len()..self.pos));
        }
        if status == PANICKED_AT {
            return Ok(ItemResult::Failed {
                kind: FailureKind::Panicked,
                message: payload,
                panic: Some(PanicReport {
                    file: self.bytes("panic file")?,
                    line: self.u32("panic line")?,
                    column: self.u32("panic column")?,
                    backtrace: self.bytes("backtrace")?,
                }),
            });
        }
        let kind = FailureKind::from_code(status)
            .ok_or_else(|| WireError(format!("unknown failure code {status}")))?;
        Ok(ItemResult::Failed {
            kind,
            message: payload,
            panic: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = Result<Range<usize>, (FailureKind, String)>;

    /// Every item's result in a results message, with its chunk's id.
    fn item_results(results: &Results<'_>) -> Vec<(u64, Outcome)> {
        let mut items = ResultItems::of(results.message);
        let all: Vec<_> = ResultChunks::of(results.message)
            .flat_map(|chunk| {
                let taken: Vec<_> = items.by_ref().take(chunk.items as usize).collect();
                assert_eq!(taken.len(), chunk.items as usize);
                assert_eq!(chunk.gives_back, taken.iter().any(ItemResult::is_returned));
                taken.into_iter().map(move |item| (chunk.id, outcome(item)))
            })
            .collect();
        assert_eq!(items.next(), None);
        all
    }

    fn outcome(item: ItemResult<'_>) -> Outcome {
        match item {
            ItemResult::Output(range) => Ok(range),
            ItemResult::Failed { kind, message, .. } => {
                Err((kind, String::from_utf8_lossy(message).into_owned()))
            }
        }
    }

    fn failure(item: &(u64, Outcome)) -> (FailureKind, String) {
        item.1.clone().unwrap_err()
    }

    fn output(item: &(u64, Outcome)) -> Range<usize> {
        item.1.clone().unwrap()
    }

    fn items(record: &BatchRecord<'_>) -> Vec<(Option<u64>, Vec<u8>)> {
        match record {
            BatchRecord::Chunk(chunk) => chunk
                .items
                .clone()
                .map(|item| (item.index, item.input.to_vec()))
                .collect(),
            BatchRecord::DefineTask { .. } => panic!("expected a chunk, got {record:?}"),
        }
    }

    #[test]
    fn batch_round_trips() {
        let mut batch = BatchWriter::new();
        assert!(batch.is_empty());
        batch.define_task(0, "demo::double");
        let inputs = [(5, &b"ab"[..]), (6, &b""[..])];
        batch.chunk(41, 0, Indices::Omitted, inputs.into_iter());
        batch.chunk(42, 0, Indices::Sent, [(9, &b"cd"[..])].into_iter());
        let ToWorker::Batch(parsed) = ToWorker::parse(batch.bytes()).unwrap() else {
            panic!("expected a batch");
        };
        assert_eq!(ToWorker::Batch(parsed).encode(), batch.bytes());
        let records: Vec<_> = parsed.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(
            records[0],
            BatchRecord::DefineTask {
                number: 0,
                name: "demo::double"
            }
        );
        let BatchRecord::Chunk(first) = &records[1] else {
            panic!("expected a chunk");
        };
        assert_eq!((first.id, first.task, first.items.remaining()), (41, 0, 2));
        assert_eq!(
            items(&records[1]),
            [(None, b"ab".to_vec()), (None, b"".to_vec())]
        );
        assert_eq!(items(&records[2]), [(Some(9), b"cd".to_vec())]);
    }

    #[test]
    fn results_round_trip_including_failures() {
        let mut results = ResultsWriter::new(1 << 20);
        results.begin_chunk(7, 3);
        results.item(|out| {
            out.extend_from_slice(b"out");
            Ok(())
        });
        results.item(|out| {
            out.extend_from_slice(b"partial output is discarded");
            Err(TaskFailure::new(FailureKind::Panicked, "boom"))
        });
        results.item(|_| Ok(()));
        results.add_busy(5);
        results.add_busy(6);
        assert_eq!(results.chunks(), 1);
        let buf = results.bytes();
        let FromWorker::Results(parsed) = FromWorker::parse(buf).unwrap() else {
            panic!("expected results");
        };
        assert_eq!(FromWorker::Results(parsed.clone()).encode(), buf);
        assert_eq!(parsed.busy_nanos, 11);
        let outcomes = item_results(&parsed);
        assert_eq!(outcomes.len(), 3);
        assert!(outcomes.iter().all(|(chunk, _)| *chunk == 7));
        assert_eq!(&buf[output(&outcomes[0])], b"out");
        assert_eq!(
            failure(&outcomes[1]),
            (FailureKind::Panicked, "boom".to_string())
        );
        assert!(output(&outcomes[2]).is_empty());
    }

    fn panic_failure(file: &str, backtrace: &str) -> TaskFailure {
        TaskFailure {
            panic: Some(crate::error::RemotePanic {
                location: crate::error::PanicLocation::new(file, 12, 5),
                backtrace: Some(backtrace.to_string()),
            }),
            ..TaskFailure::new(FailureKind::Panicked, "boom")
        }
    }

    /// The panic details of a results message's only item.
    fn lone_panic(message: &[u8]) -> Option<PanicReport<'_>> {
        match ResultItems::of(message).next() {
            Some(ItemResult::Failed { panic, .. }) => panic,
            other => panic!("expected a failure, got {other:?}"),
        }
    }

    #[test]
    fn a_panic_travels_with_its_location_and_a_bounded_backtrace() {
        let mut results = ResultsWriter::new(1 << 20);
        results.begin_chunk(1, 1);
        results.item(|_| Err(panic_failure("src/main.rs", "  0: demo::parse\n")));
        let FromWorker::Results(parsed) = FromWorker::parse(results.bytes()).unwrap() else {
            panic!("expected results");
        };
        assert_eq!(
            failure(&item_results(&parsed)[0]),
            (FailureKind::Panicked, "boom".to_string())
        );
        let report = lone_panic(results.bytes()).expect("details");
        assert_eq!(
            (report.file, report.line, report.column, report.backtrace),
            (&b"src/main.rs"[..], 12, 5, &b"  0: demo::parse\n"[..])
        );

        // A long backtrace keeps its top and the documented size; in a
        // small message the details give way to the message, never the
        // limit.
        let long = "  1: frame\n".repeat(100_000);
        for limit in [40usize, 60, 200, 4096, 1 << 20] {
            let mut results = ResultsWriter::new(limit as u64);
            results.begin_chunk(1, 1);
            results.item(|_| Err(panic_failure(&"f".repeat(5000), &long)));
            assert!(results.bytes().len() <= limit, "{limit}");
            let FromWorker::Results(_) = FromWorker::parse(results.bytes()).unwrap() else {
                panic!("expected results");
            };
            if let Some(report) = lone_panic(results.bytes()) {
                assert!(report.file.len() <= MAX_PANIC_FILE);
                assert!(report.backtrace.len() <= MAX_REMOTE_BACKTRACE);
                assert!(long
                    .as_bytes()
                    .starts_with(&report.backtrace[..report.backtrace.len().min(24)]));
            }
        }
        let mut results = ResultsWriter::new(1 << 20);
        results.begin_chunk(1, 1);
        results.item(|_| Err(panic_failure("src/main.rs", &long)));
        let report = lone_panic(results.bytes()).expect("details");
        assert!(report.backtrace.len() > MAX_REMOTE_BACKTRACE - 100);
    }

    #[test]
    fn a_panic_whose_details_are_cut_short_is_refused() {
        let mut results = ResultsWriter::new(1 << 20);
        results.begin_chunk(1, 1);
        results.item(|_| Err(panic_failure("src/main.rs", "")));
        let whole = results.bytes();
        for end in RESULTS_START + 13..whole.len() {
            assert!(FromWorker::parse(&whole[..end]).is_err(), "{end}");
        }
    }

    #[test]
    fn a_chunk_answered_in_parts_ends_a_partial_message_then_goes_on() {
        let mut results = ResultsWriter::new(1 << 20);
        results.begin_chunk(3, 1);
        results.item(|out| {
            out.push(1);
            Ok(())
        });
        results.begin_chunk(4, 3);
        // Nothing of chunk 4 written yet: no part to send.
        assert_eq!(results.end_partway(), None);
        results.item(|out| {
            out.push(2);
            Ok(())
        });
        assert_eq!(results.end_partway(), Some((4, 2)));
        let buf = results.bytes().to_vec();
        assert!(is_partial(&buf));
        let FromWorker::Results(parsed) = FromWorker::parse(&buf).unwrap() else {
            panic!("expected results");
        };
        let outcomes = item_results(&parsed);
        let chunks: Vec<u64> = outcomes.iter().map(|(chunk, _)| *chunk).collect();
        assert_eq!(chunks, [3, 4]);
        assert_eq!(&buf[output(&outcomes[1])], [2]);
        // The rest of chunk 4 starts the next message, a whole one.
        results.clear();
        results.begin_chunk(4, 2);
        for byte in [3, 4] {
            results.item(|out| {
                out.push(byte);
                Ok(())
            });
        }
        assert_eq!(results.end_partway(), None);
        assert!(!is_partial(results.bytes()));
        let FromWorker::Results(parsed) = FromWorker::parse(results.bytes()).unwrap() else {
            panic!("expected results");
        };
        assert_eq!(item_results(&parsed).len(), 2);
    }

    #[test]
    fn an_output_over_the_limit_fails_alone() {
        let mut results = ResultsWriter::new(1000);
        results.begin_chunk(1, 3);
        results.item(|out| {
            out.extend_from_slice(&[7; 10]);
            Ok(())
        });
        results.item(|out| {
            out.extend_from_slice(&[8; 990]);
            Ok(())
        });
        results.item(|out| {
            out.extend_from_slice(&[9; 900]);
            Ok(())
        });
        let buf = results.bytes().to_vec();
        let FromWorker::Results(parsed) = FromWorker::parse(&buf).unwrap() else {
            panic!("expected results");
        };
        let outcomes = item_results(&parsed);
        assert_eq!(&buf[output(&outcomes[0])], [7; 10]);
        let alone = failure(&outcomes[1]);
        assert_eq!(alone.0, FailureKind::TooLarge);
        assert!(
            alone.1.contains("output of 990 bytes is over"),
            "{}",
            alone.1
        );
        let together = failure(&outcomes[2]);
        assert_eq!(together.0, FailureKind::TooLarge);
        assert!(
            together.1.contains("with the other outputs"),
            "{}",
            together.1
        );
    }

    #[test]
    fn failures_and_returned_inputs_never_take_a_message_past_its_limit() {
        for limit in [64usize, 100, 300, 1000] {
            let mut results = ResultsWriter::new(limit as u64);
            results.begin_chunk(1, 4);
            results.item(|out| {
                // Fills the message to the limit, less the others' room.
                out.resize(out.len() + limit.saturating_sub(9 + 12 + 4 * 5), 1);
                Ok(())
            });
            results.item(|out| {
                out.extend_from_slice(&vec![2; limit]);
                Ok(())
            });
            results.item(|_| Err(TaskFailure::new(FailureKind::Failed, "x".repeat(100_000))));
            results.item(|_| Err(TaskFailure::new(FailureKind::Returned, "")));
            assert!(
                results.bytes().len() <= limit,
                "{} > {limit}",
                results.bytes().len()
            );
            let parsed = FromWorker::parse(results.bytes()).unwrap();
            let FromWorker::Results(parsed) = parsed else {
                panic!("expected results");
            };
            assert_eq!(item_results(&parsed).len(), 4);
        }
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("short", 10), "short");
        let long = "y".repeat(1000);
        let clipped = clip(&long, 100);
        assert!(clipped.len() <= 100 && clipped.ends_with("(1000 bytes in all)"));
    }

    #[test]
    fn a_lone_chunk_is_the_batch_of_that_chunk_alone() {
        let input = vec![5u8; 1000];
        for indices in [Indices::Sent, Indices::Omitted] {
            let mut batch = BatchWriter::new();
            batch.chunk(u64::MAX - 3, 9, indices, [(77, &input[..])].into_iter());
            let header = lone_chunk_header(u64::MAX - 3, 9, indices, 77, input.len());
            assert!(header.len() <= LONE_CHUNK_ROOM);
            assert_eq!([&header[..], &input].concat(), batch.bytes());
        }
    }

    #[test]
    fn chunk_overhead_covers_what_a_batch_adds() {
        let mut batch = BatchWriter::new();
        batch.define_task(7, "demo::task");
        let inputs = [(1, &b"abc"[..]), (2, &b"de"[..])];
        batch.chunk(9, 7, Indices::Sent, inputs.into_iter());
        assert_eq!(batch.len(), chunk_overhead("demo::task", 2) + 5);
    }

    #[test]
    fn a_setup_asking_for_a_spin_beyond_the_limit_is_refused() {
        let setup = |spin| ToWorker::Setup {
            worker_id: 1,
            max_message_size: 1 << 20,
            initializer: None,
            build_id: "b",
            memory: MemoryLimits::default(),
            spin,
        };
        let most = setup(MAX_SPIN).encode();
        assert_eq!(ToWorker::parse(&most).unwrap(), setup(MAX_SPIN));
        let beyond = setup(MAX_SPIN + Duration::from_nanos(1)).encode();
        let err = ToWorker::parse(&beyond).unwrap_err();
        assert!(err.0.contains("spin"), "{err:?}");
        // From a pool that sends no spin: none.
        let old = &most[..most.len() - 8];
        assert_eq!(ToWorker::parse(old).unwrap(), setup(Duration::ZERO));
    }

    #[test]
    fn every_whole_message_round_trips() {
        let to_worker = [
            ToWorker::Setup {
                worker_id: 3,
                max_message_size: 1 << 30,
                initializer: Some(Initializer {
                    name: "demo::init",
                    input: b"in",
                }),
                build_id: "gnu:0123",
                memory: MemoryLimits {
                    budget: Some(256 << 20),
                    hard: None,
                },
                spin: Duration::from_micros(50),
            },
            ToWorker::Setup {
                worker_id: 4,
                max_message_size: u64::MAX,
                initializer: None,
                build_id: "",
                memory: MemoryLimits {
                    budget: None,
                    hard: Some(1 << 30),
                },
                spin: Duration::ZERO,
            },
            ToWorker::Quit,
            ToWorker::Recall {
                chunks: vec![3, u64::MAX],
            },
            ToWorker::Recall { chunks: vec![] },
            ToWorker::Denied {
                reason: "another form of a task",
            },
        ];
        for message in to_worker {
            assert_eq!(ToWorker::parse(&message.encode()).unwrap(), message);
        }
        let from_worker = [
            FromWorker::Ready {
                pid: 77,
                wants_indices: true,
                slurm_job: None,
                identity: Identity {
                    build_id: "gnu:ab",
                    program: "pool-worker",
                    tasks: None,
                },
            },
            FromWorker::Ready {
                pid: 78,
                wants_indices: false,
                slurm_job: Some(u64::MAX - 1),
                identity: Identity {
                    build_id: "",
                    program: "",
                    tasks: Some(vec![
                        Fingerprint {
                            name: "demo::a",
                            input: "u64",
                            output: "()",
                            version: u32::MAX,
                            code: 1,
                        },
                        Fingerprint {
                            name: "demo::b",
                            input: "(alloc::string::String, u8)",
                            output: "i32",
                            version: 0,
                            code: u64::MAX,
                        },
                    ]),
                },
            },
            FromWorker::SetupFailed(TaskFailure::new(FailureKind::Failed, "no")),
            FromWorker::Refused {
                reason: "not a worker",
            },
            FromWorker::OverBudget { resident: 3 << 28 },
            FromWorker::Leaving,
        ];
        for message in from_worker {
            assert_eq!(FromWorker::parse(&message.encode()).unwrap(), message);
        }
    }

    #[test]
    fn truncated_and_garbage_input_are_errors_not_panics() {
        let mut batch = BatchWriter::new();
        batch.chunk(1, 2, Indices::Omitted, [(0, &b"xyz"[..])].into_iter());
        let full = batch.bytes().to_vec();
        for cut in 2..full.len() {
            let ToWorker::Batch(parsed) = ToWorker::parse(&full[..cut]).unwrap() else {
                panic!("expected a batch");
            };
            let records: Vec<_> = parsed.records().collect();
            assert!(records.iter().any(Result::is_err), "cut at {cut}");
        }
        let mut results = ResultsWriter::new(1 << 20);
        results.begin_chunk(1, 1);
        results.item(|out| {
            out.push(1);
            Ok(())
        });
        let full = results.bytes().to_vec();
        // Tag and busy time alone (9 bytes) are a valid message without chunks.
        for cut in (0..full.len()).filter(|&cut| cut != 9) {
            assert!(FromWorker::parse(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(ToWorker::parse(b"Z").is_err());
        assert!(ToWorker::parse(b"Qx").is_err());
        assert!(ToWorker::parse(&[RECALL, 0xff, 0xff, 0xff, 0xff, 1, 2]).is_err());
        assert!(FromWorker::parse(&[RESULTS, 0, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(FromWorker::parse(&[SETUP_FAILED, 9, 0, 0, 0, 0]).is_err());
        // A ready message claiming more tasks than it could hold.
        let ready = [
            &[READY, 1, 0, 0, 0, HAS_TASKS, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[0xff; 4],
        ];
        assert!(FromWorker::parse(&ready.concat()).is_err());
        assert!(FromWorker::parse(&[REFUSED, 0xff, 0xff, 0xff, 0xff, 1]).is_err());
        let ToWorker::Batch(parsed) = ToWorker::parse(b"BZ").unwrap() else {
            panic!("expected a batch");
        };
        assert!(parsed.records().next().unwrap().is_err());
    }
}
