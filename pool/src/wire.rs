//! The messages between a pool and its workers, and their byte layout.
//!
//! Written by hand rather than with serde because this is the hot path:
//! a batch carries many tasks, each task's input is already encoded, and
//! the worker runs each task straight from a slice of the received message
//! and writes each output straight into its reply, with no allocation per
//! task. Every length is checked on reading: a malformed message is an
//! error, never a panic.
//!
//! Integers are little endian; `bytes` is a `u32` length and the bytes.
//!
//! Parent to worker:
//! - `S` setup: worker id `u32`, then `1` + name `bytes` + input `bytes`
//!   for an initializer, or `0`.
//! - `B` batch: records until the end, each `N` (task number `u32`, name
//!   `bytes`: the number stands for the name from now on), `C` (chunk id
//!   `u64`, task number `u32`, item count `u32`, each item's input `bytes`)
//!   or `I`, a chunk whose items each carry their input index `u64` before
//!   the input, sent only to a worker whose ready message asked for it.
//! - `Q` quit: finish, reply, exit.
//!
//! Worker to parent:
//! - `H` ready: pid `u32`, then optionally flags `u8`: [`WANTS_INDICES`]
//!   asks for `I` chunks (the worker traces its tasks at DEBUG level).
//! - `F` setup failed: a failure.
//! - `X` refused: a program that is not a worker tried to start a pool;
//!   the message says so.
//! - `R` results: busy nanoseconds `u64`, then per chunk its id `u64`,
//!   item count `u32`, and per item a status `u8` (0 for success, else a
//!   failure code) and `bytes` (the output or the failure's message).

use crate::task::{FailureKind, TaskFailure};

pub(crate) const SETUP: u8 = b'S';
pub(crate) const BATCH: u8 = b'B';
pub(crate) const QUIT: u8 = b'Q';
pub(crate) const READY: u8 = b'H';
pub(crate) const SETUP_FAILED: u8 = b'F';
pub(crate) const REFUSED: u8 = b'X';
pub(crate) const RESULTS: u8 = b'R';

const NAME_RECORD: u8 = b'N';
const CHUNK_RECORD: u8 = b'C';
const INDEXED_CHUNK_RECORD: u8 = b'I';

/// Ready flag: send this worker each input's index along with it.
pub(crate) const WANTS_INDICES: u8 = 1;

/// A malformed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError(pub(crate) String);

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed message: {}", self.0)
    }
}

impl std::error::Error for WireError {}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Appends `bytes` with its length. Callers check beforehand that the
/// length fits in a `u32` (see [`fits`]).
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// Whether a payload of `len` bytes can be carried.
pub(crate) fn fits(len: usize) -> bool {
    u32::try_from(len).is_ok()
}

/// A cursor over a received message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn take(&mut self, len: usize, what: &str) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.buf.len())
            .ok_or_else(|| {
                WireError(format!(
                    "{what} needs {len} bytes at offset {} of {}",
                    self.pos,
                    self.buf.len()
                ))
            })?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, WireError> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, WireError> {
        let mut word = [0u8; 8];
        word.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(word))
    }

    pub(crate) fn bytes(&mut self, what: &str) -> Result<&'a [u8], WireError> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    pub(crate) fn str(&mut self, what: &str) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes(what)?)
            .map_err(|_| WireError(format!("{what} is not UTF-8")))
    }

    /// Reads a status byte and its payload: `Ok(range of the output in the
    /// message)` or the failure.
    pub(crate) fn outcome(
        &mut self,
    ) -> Result<Result<std::ops::Range<usize>, TaskFailure>, WireError> {
        let status = self.u8("status")?;
        let payload = self.bytes("result")?;
        if status == 0 {
            let end = self.pos;
            return Ok(Ok(end - payload.len()..end));
        }
        let kind = FailureKind::from_code(status)
            .ok_or_else(|| WireError(format!("unknown failure code {status}")))?;
        Ok(Err(TaskFailure::new(
            kind,
            String::from_utf8_lossy(payload),
        )))
    }
}

/// The setup message: the worker's id and its initializer, if any.
pub(crate) fn setup(worker_id: u32, initializer: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut out = vec![SETUP];
    put_u32(&mut out, worker_id);
    match initializer {
        Some((name, input)) => {
            out.push(1);
            put_bytes(&mut out, name.as_bytes());
            put_bytes(&mut out, input);
        }
        None => out.push(0),
    }
    out
}

/// Builds a batch message record by record.
pub(crate) struct BatchWriter {
    buf: Vec<u8>,
}

impl BatchWriter {
    pub(crate) fn new() -> BatchWriter {
        BatchWriter { buf: vec![BATCH] }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.len() == 1
    }

    pub(crate) fn define_task(&mut self, number: u32, name: &str) {
        self.buf.push(NAME_RECORD);
        put_u32(&mut self.buf, number);
        put_bytes(&mut self.buf, name.as_bytes());
    }

    /// Adds a chunk of `(input index, input)`; the indices travel only
    /// when `with_indices` is set.
    pub(crate) fn chunk<'i>(
        &mut self,
        id: u64,
        task: u32,
        with_indices: bool,
        inputs: impl ExactSizeIterator<Item = (usize, &'i [u8])>,
    ) {
        self.buf.push(if with_indices {
            INDEXED_CHUNK_RECORD
        } else {
            CHUNK_RECORD
        });
        put_u64(&mut self.buf, id);
        put_u32(&mut self.buf, task);
        put_u32(&mut self.buf, inputs.len() as u32);
        for (index, input) in inputs {
            if with_indices {
                put_u64(&mut self.buf, index as u64);
            }
            put_bytes(&mut self.buf, input);
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub(crate) fn clear(&mut self) {
        self.buf.truncate(1);
    }
}

/// One record of a batch, as the worker reads it.
pub(crate) enum BatchRecord<'a> {
    DefineTask {
        number: u32,
        name: &'a str,
    },
    /// `indexed`: each item's input is preceded by its index `u64`.
    Chunk {
        id: u64,
        task: u32,
        items: u32,
        indexed: bool,
    },
}

/// Reads the next record of a batch (after the `B`); the items of a chunk
/// follow it and are read with [`Reader::bytes`].
pub(crate) fn next_record<'a>(
    reader: &mut Reader<'a>,
) -> Result<Option<BatchRecord<'a>>, WireError> {
    if reader.at_end() {
        return Ok(None);
    }
    match reader.u8("record tag")? {
        NAME_RECORD => Ok(Some(BatchRecord::DefineTask {
            number: reader.u32("task number")?,
            name: reader.str("task name")?,
        })),
        tag @ (CHUNK_RECORD | INDEXED_CHUNK_RECORD) => Ok(Some(BatchRecord::Chunk {
            id: reader.u64("chunk id")?,
            task: reader.u32("task number")?,
            items: reader.u32("item count")?,
            indexed: tag == INDEXED_CHUNK_RECORD,
        })),
        other => Err(WireError(format!("unknown record tag {other}"))),
    }
}

/// Builds a results message in the worker.
pub(crate) struct ResultsWriter {
    buf: Vec<u8>,
    chunks: usize,
}

const BUSY_OFFSET: usize = 1;

impl ResultsWriter {
    pub(crate) fn new() -> ResultsWriter {
        let mut writer = ResultsWriter {
            buf: Vec::with_capacity(4096),
            chunks: 0,
        };
        writer.clear();
        writer
    }

    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.buf.push(RESULTS);
        put_u64(&mut self.buf, 0);
        self.chunks = 0;
    }

    pub(crate) fn chunks(&self) -> usize {
        self.chunks
    }

    pub(crate) fn add_busy(&mut self, nanos: u64) {
        let slot = &mut self.buf[BUSY_OFFSET..BUSY_OFFSET + 8];
        let mut word = [0u8; 8];
        word.copy_from_slice(slot);
        let total = u64::from_le_bytes(word).saturating_add(nanos);
        slot.copy_from_slice(&total.to_le_bytes());
    }

    pub(crate) fn begin_chunk(&mut self, id: u64, items: u32) {
        put_u64(&mut self.buf, id);
        put_u32(&mut self.buf, items);
        self.chunks += 1;
    }

    /// Runs `produce` to write one item's output in place; its failure, or
    /// an output too large to carry, becomes the item's failure.
    pub(crate) fn item(&mut self, produce: impl FnOnce(&mut Vec<u8>) -> Result<(), TaskFailure>) {
        let status_at = self.buf.len();
        self.buf.push(0);
        put_u32(&mut self.buf, 0);
        let start = self.buf.len();
        let result = produce(&mut self.buf);
        let len = self.buf.len() - start;
        let failure = match result {
            Ok(()) if fits(len) => None,
            Ok(()) => Some(TaskFailure::new(
                FailureKind::Encode,
                format!("output of {len} bytes is too large to send"),
            )),
            Err(failure) => Some(failure),
        };
        match failure {
            None => {
                self.buf[start - 4..start].copy_from_slice(&(len as u32).to_le_bytes());
            }
            Some(failure) => {
                self.buf.truncate(status_at);
                self.buf.push(failure.kind as u8);
                put_bytes(&mut self.buf, failure.message.as_bytes());
            }
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf
    }
}

pub(crate) fn failure(tag: u8, failure: &TaskFailure) -> Vec<u8> {
    let mut out = vec![tag, failure.kind as u8];
    put_bytes(&mut out, failure.message.as_bytes());
    out
}

pub(crate) fn read_failure(reader: &mut Reader<'_>) -> Result<TaskFailure, WireError> {
    let code = reader.u8("failure code")?;
    let kind = FailureKind::from_code(code)
        .ok_or_else(|| WireError(format!("unknown failure code {code}")))?;
    Ok(TaskFailure::new(kind, reader.str("failure message")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips() {
        let mut batch = BatchWriter::new();
        assert!(batch.is_empty());
        batch.define_task(0, "demo::double");
        batch.chunk(41, 0, false, [(5, &b"ab"[..]), (6, &b""[..])].into_iter());
        batch.chunk(42, 0, true, [(9, &b"cd"[..])].into_iter());
        let mut reader = Reader::new(batch.bytes());
        assert_eq!(reader.u8("tag").unwrap(), BATCH);
        match next_record(&mut reader).unwrap() {
            Some(BatchRecord::DefineTask { number: 0, name }) => assert_eq!(name, "demo::double"),
            _ => panic!("expected a task definition"),
        }
        match next_record(&mut reader).unwrap() {
            Some(BatchRecord::Chunk {
                id: 41,
                task: 0,
                items: 2,
                indexed: false,
            }) => {}
            _ => panic!("expected a chunk"),
        }
        assert_eq!(reader.bytes("item").unwrap(), b"ab");
        assert_eq!(reader.bytes("item").unwrap(), b"");
        match next_record(&mut reader).unwrap() {
            Some(BatchRecord::Chunk {
                id: 42,
                task: 0,
                items: 1,
                indexed: true,
            }) => {}
            _ => panic!("expected an indexed chunk"),
        }
        assert_eq!(reader.u64("index").unwrap(), 9);
        assert_eq!(reader.bytes("item").unwrap(), b"cd");
        assert!(next_record(&mut reader).unwrap().is_none());
    }

    #[test]
    fn results_round_trip_including_failures() {
        let mut results = ResultsWriter::new();
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
        let mut reader = Reader::new(buf);
        assert_eq!(reader.u8("tag").unwrap(), RESULTS);
        assert_eq!(reader.u64("busy").unwrap(), 11);
        assert_eq!(reader.u64("id").unwrap(), 7);
        assert_eq!(reader.u32("items").unwrap(), 3);
        let first = reader.outcome().unwrap().unwrap();
        assert_eq!(&buf[first], b"out");
        let second = reader.outcome().unwrap().unwrap_err();
        assert_eq!(second, TaskFailure::new(FailureKind::Panicked, "boom"));
        assert!(reader.outcome().unwrap().unwrap().is_empty());
        assert!(reader.at_end());
    }

    #[test]
    fn truncated_and_garbage_input_are_errors_not_panics() {
        let mut batch = BatchWriter::new();
        batch.chunk(1, 2, false, [(0, &b"xyz"[..])].into_iter());
        let full = batch.bytes().to_vec();
        for cut in 1..full.len() {
            let mut reader = Reader::new(&full[1..cut]);
            let outcome = next_record(&mut reader).and_then(|_| reader.bytes("item").map(drop));
            assert!(outcome.is_err() || cut == full.len(), "cut at {cut}");
        }
        let mut reader = Reader::new(b"Z");
        assert!(next_record(&mut reader).is_err());
        let mut reader = Reader::new(&[9, 0, 0, 0, 0]);
        assert!(reader.outcome().is_err());
        let mut reader = Reader::new(&[0xff, 0xff, 0xff, 0xff, 1]);
        assert!(reader.bytes("huge").is_err());
    }

    #[test]
    fn setup_and_failure_messages_round_trip() {
        let msg = setup(3, Some(("demo::init", b"in")));
        let mut reader = Reader::new(&msg);
        assert_eq!(reader.u8("tag").unwrap(), SETUP);
        assert_eq!(reader.u32("id").unwrap(), 3);
        assert_eq!(reader.u8("flag").unwrap(), 1);
        assert_eq!(reader.str("name").unwrap(), "demo::init");
        assert_eq!(reader.bytes("input").unwrap(), b"in");
        let failed = failure(SETUP_FAILED, &TaskFailure::new(FailureKind::Failed, "no"));
        let mut reader = Reader::new(&failed[1..]);
        assert_eq!(read_failure(&mut reader).unwrap().message, "no");
    }
}
