//! Map journals: each finished input's result appended to a file as it
//! arrives, so that a rerun of the same map skips what a killed run
//! finished ([`MapWith::journal`](crate::MapWith::journal),
//! [`Imap::journal`](crate::Imap::journal)). Written and read by the
//! parent alone; the workers never see it.
//!
//! # File format (version 2)
//!
//! All integers little-endian.
//!
//! ```text
//! header:  magic "POOLJNL\n" (8) | version u32 = 1 | fingerprint length u32
//!          | fingerprint (UTF-8, at most 64 KiB) | checksum u64
//! record:  payload length u32 | input index u64 | input key (16)
//!          | status u8 | payload | checksum u64
//! ```
//!
//! - The fingerprint is `task=<name>\ninput=<type>\noutput=<type>`: the
//!   task's registered name and `std::any::type_name` of its input and
//!   output. A journal whose fingerprint differs is refused
//!   ([`ErrorKind::Journal`]), never mixed in. (`type_name` may change
//!   between compiler versions: a program rebuilt by another Rust may
//!   refuse an old journal, which then has to be removed.)
//! - The input key identifies the input as encoded for the worker. An
//!   encoding shorter than 16 bytes is the key itself: its length (one
//!   byte), the bytes, zeros, and the status's bit 7 set (so it can never
//!   be mistaken for a digest). A longer one's key is the first 16 bytes
//!   of its SHA-256, bit 7 clear: collision-resistant, so a changed input
//!   at the same index is never served an old output by accident (a
//!   64-bit non-crypto hash would make that merely unlikely, and inputs
//!   may be chosen by whoever feeds the job); 128 bits keep the record
//!   short. Short inputs are kept rather than hashed because SHA-256 of
//!   one block, even with the CPU's SHA extensions, was about half of
//!   what a journal cost a map of trivial tasks per input.
//! - Status (bits 0-6) 0: the payload is the encoded output, as the
//!   worker sent it. Status 1: a failure; the payload is the error kind's
//!   code (one byte, [`kind_code`]) and its message in UTF-8.
//! - Version 1 (before input keys) had SHA-256 digests for every input;
//!   this pool refuses it with [`ErrorKind::Journal`] (remove the file).
//! - The checksum is a 64-bit multiply-xor hash ([`checksum`]) of
//!   everything before it in the header or record: it only has to catch
//!   torn and damaged records, and it costs a few cycles per 8 bytes
//!   (SHA-256 here, even with the CPU's SHA extensions, held a map of a
//!   million trivial inputs at a third of its speed).
//!
//! A later record for an index replaces an earlier one (a failure rerun,
//! an input that changed). Reading stops at the first record that is
//! incomplete or fails its checksum where only zeros or nothing follow
//! (a write torn by a kill or a crash): that tail is cut off and
//! overwritten. A damaged record with valid data after it is corruption,
//! an error. Reading is bounded: a record's payload is at most the pool's
//! message limit and no more than the file holds; what is kept in memory
//! per record is its index, digest, status and place in the file (about
//! 60 bytes), payloads are read back when replayed.
//!
//! # Write policy
//!
//! Records are written to the file (`write(2)`, no user-space buffer
//! left behind) after each batch of results, so a killed program (SIGKILL,
//! a time limit) loses at most the batch being written, whose torn tail
//! the next run drops; each write also starts the disk's writeback
//! (`sync_file_range`), so that a sync waits for less. The file is
//! flushed to disk (`fdatasync`) at most
//! once per sync interval ([`DEFAULT_JOURNAL_SYNC`], 1 s) and when the map
//! ends, so a crash of the machine loses at most about one interval of
//! results.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::compress256;
use sha2::digest::generic_array::GenericArray;

use super::job::Item;
use super::sink::{Delivery, Outcome, Payload};
use crate::error::{ends_the_call, Error, ErrorKind, Result};
use crate::task::Task;

/// How often a journal is flushed to disk by default: what a crash of
/// the machine (not of the program) can lose.
pub const DEFAULT_JOURNAL_SYNC: Duration = Duration::from_secs(1);

const MAGIC: [u8; 8] = *b"POOLJNL\n";
const VERSION: u32 = 2;
const MAX_FINGERPRINT: usize = 64 << 10;
const DIGEST: usize = 16;
/// A record's bytes before its payload.
const RECORD_HEAD: usize = 4 + 8 + DIGEST + 1;
const CHECKSUM: usize = 8;
const OK: u8 = 0;
const FAILED: u8 = 1;
/// The status's flag of a key that is the input itself.
const INLINE: u8 = 0x80;

/// What identifies an encoded input in a record (see the module's
/// documentation): the input itself if short, else a digest of it.
#[derive(Clone, Copy, PartialEq, Eq)]
struct InputKey {
    bytes: [u8; DIGEST],
    inline: bool,
}

impl InputKey {
    fn of(input: &[u8]) -> InputKey {
        if input.len() < DIGEST {
            let mut bytes = [0; DIGEST];
            bytes[0] = input.len() as u8;
            bytes[1..=input.len()].copy_from_slice(input);
            InputKey {
                bytes,
                inline: true,
            }
        } else {
            InputKey {
                bytes: digest(input),
                inline: false,
            }
        }
    }
}

/// What the caller asked of a journal: none without a path.
#[derive(Clone, Debug)]
pub(crate) struct JournalOptions {
    pub(crate) path: Option<PathBuf>,
    pub(crate) sync: Duration,
    pub(crate) rerun_failures: bool,
}

impl Default for JournalOptions {
    fn default() -> JournalOptions {
        JournalOptions {
            path: None,
            sync: DEFAULT_JOURNAL_SYNC,
            rerun_failures: false,
        }
    }
}

impl JournalOptions {
    /// The journal these options ask for, opened; `None` without a path.
    pub(crate) fn open<T: Task>(&self, max_record: u64) -> Result<Option<Journal>> {
        match &self.path {
            Some(path) => Journal::open::<T>(path, self, max_record).map(Some),
            None => Ok(None),
        }
    }
}

/// A journaled result: where its payload is.
struct Entry {
    key: InputKey,
    failed: bool,
    offset: u64,
    len: u32,
}

/// The keys of the inputs in flight, by index. A call takes its
/// inputs in index order and a bounded window of them is in flight, so
/// this is a queue from the oldest index still waiting: cheaper than a
/// hash map, which a map of a million trivial inputs would feel.
#[derive(Default)]
struct Pending {
    first: usize,
    keys: VecDeque<Option<InputKey>>,
}

impl Pending {
    fn insert(&mut self, index: usize, key: InputKey) {
        if self.keys.is_empty() {
            self.first = index;
        }
        let Some(offset) = index.checked_sub(self.first) else {
            return;
        };
        if offset == self.keys.len() {
            self.keys.push_back(Some(key));
            return;
        }
        if self.keys.len() < offset {
            self.keys.resize(offset, None);
            self.keys.push_back(Some(key));
            return;
        }
        self.keys[offset] = Some(key);
    }

    fn remove(&mut self, index: usize) -> Option<InputKey> {
        let offset = index.checked_sub(self.first)?;
        let key = self.keys.get_mut(offset)?.take();
        while matches!(self.keys.front(), Some(None)) {
            self.keys.pop_front();
            self.first += 1;
        }
        key
    }
}

/// An open journal of one map call.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    task: &'static str,
    entries: HashMap<u64, Entry>,
    /// Keys of the inputs submitted whose results have not arrived.
    pending: Pending,
    /// Records not yet written.
    buffer: Vec<u8>,
    sync: Duration,
    last_sync: Instant,
    unsynced: bool,
    rerun_failures: bool,
}

/// The first [`DIGEST`] bytes of the SHA-256 of `bytes`, through
/// `sha2`'s block function (which uses the CPU's SHA extensions where it
/// has them) with the padding done here: an input is hashed once, whole,
/// so the streaming `Digest` API's block buffer (zeroing, copying, its
/// bookkeeping) was a third of what a journal cost per input beside the
/// compression itself.
fn digest(bytes: &[u8]) -> [u8; DIGEST] {
    /// SHA-256's initial state (FIPS 180-4, 5.3.3).
    const INITIAL: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    let mut state = INITIAL;
    let mut blocks = bytes.chunks_exact(64);
    for block in &mut blocks {
        compress256(
            &mut state,
            std::slice::from_ref(GenericArray::from_slice(block)),
        );
    }
    // The padding: the rest, a one bit, zeros, the length in bits
    // (big-endian), in one block or two.
    let rest = blocks.remainder();
    let mut tail = [0u8; 128];
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()] = 0x80;
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    let bits = (bytes.len() as u64).wrapping_mul(8);
    tail[tail_len - 8..tail_len].copy_from_slice(&bits.to_be_bytes());
    for block in tail[..tail_len].chunks_exact(64) {
        compress256(
            &mut state,
            std::slice::from_ref(GenericArray::from_slice(block)),
        );
    }
    let mut out = [0; DIGEST];
    for (bytes, word) in out.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// A 64-bit checksum of `parts`, one after the other: eight bytes at a
/// time through a multiply-xor mix (the constants are the 64-bit golden
/// ratio and MurmurHash3's finalizer), then the length. Not a defence
/// against forgery (nothing on a local disk needs one), only against torn
/// and damaged records, at a few cycles per eight bytes: SHA-256 here cost
/// a trivial map a tenth of its speed.
fn checksum(parts: &[&[u8]]) -> [u8; CHECKSUM] {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut hash: u64 = 0x243f_6a88_85a3_08d3;
    let mut len = 0u64;
    let mut mix = |word: u64| hash = (hash ^ word).wrapping_mul(K).rotate_left(29);
    for part in parts {
        len += part.len() as u64;
        let mut words = part.chunks_exact(8);
        for word in &mut words {
            let mut bytes = [0; 8];
            bytes.copy_from_slice(word);
            mix(u64::from_le_bytes(bytes));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut bytes = [0; 8];
            bytes[..rest.len()].copy_from_slice(rest);
            mix(u64::from_le_bytes(bytes) ^ ((rest.len() as u64) << 59));
        }
    }
    mix(len);
    let mut hash = hash ^ (hash >> 33);
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    hash.to_le_bytes()
}

/// The stable code of a failure's kind in a journal.
fn kind_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::TaskFailed => 1,
        ErrorKind::Panicked => 2,
        ErrorKind::WorkerDied => 3,
        ErrorKind::Timeout => 4,
        ErrorKind::UnknownTask => 5,
        ErrorKind::Encode => 6,
        ErrorKind::MessageTooLarge => 7,
        ErrorKind::Decode => 8,
        ErrorKind::Connection => 9,
        _ => 0,
    }
}

fn kind_of(code: u8) -> Option<ErrorKind> {
    Some(match code {
        1 => ErrorKind::TaskFailed,
        2 => ErrorKind::Panicked,
        3 => ErrorKind::WorkerDied,
        4 => ErrorKind::Timeout,
        5 => ErrorKind::UnknownTask,
        6 => ErrorKind::Encode,
        7 => ErrorKind::MessageTooLarge,
        8 => ErrorKind::Decode,
        9 => ErrorKind::Connection,
        _ => return None,
    })
}

fn fingerprint<T: Task>() -> String {
    format!(
        "task={}\ninput={}\noutput={}",
        T::NAME,
        std::any::type_name::<T::Input>(),
        std::any::type_name::<T::Output>()
    )
}

fn header(fingerprint: &str) -> Vec<u8> {
    let mut header = Vec::with_capacity(16 + fingerprint.len() + CHECKSUM);
    header.extend_from_slice(&MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&(fingerprint.len() as u32).to_le_bytes());
    header.extend_from_slice(fingerprint.as_bytes());
    let sum = checksum(&[&header]);
    header.extend_from_slice(&sum);
    header
}

/// At most `limit` characters of `text`, for an error message.
fn shortened(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

impl Journal {
    /// Opens (or creates) the journal of a map of `T` and reads what it
    /// holds; records of at most `max_record` bytes of payload.
    fn open<T: Task>(path: &Path, options: &JournalOptions, max_record: u64) -> Result<Journal> {
        let path = path.to_path_buf();
        let mut journal = Journal {
            file: OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .open(&path)
                .map_err(|err| journal_error(&path, "could not be opened", err))?,
            path,
            task: T::NAME,
            entries: HashMap::new(),
            pending: Pending::default(),
            buffer: Vec::new(),
            sync: options.sync,
            last_sync: Instant::now(),
            unsynced: false,
            rerun_failures: options.rerun_failures,
        };
        let fingerprint = fingerprint::<T>();
        let expected = header(&fingerprint);
        let len = journal.metadata_len()?;
        let start = journal.check_header(&expected, &fingerprint, len)?;
        if start == 0 {
            // New, or a header torn while it was first written.
            journal.cut(0)?;
            journal.buffer.extend_from_slice(&expected);
            journal.write_out()?;
            journal.sync_now()?;
        } else {
            let end = journal.scan(start, len, max_record)?;
            if end < len {
                tracing::warn!(
                    journal = %journal.path.display(),
                    dropped = len - end,
                    "dropping a torn last record of the map journal"
                );
                journal.cut(end)?;
            }
        }
        Ok(journal)
    }

    fn metadata_len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|meta| meta.len())
            .map_err(|err| self.error("could not be read", err))
    }

    fn error(&self, what: &str, err: std::io::Error) -> Error {
        journal_error(&self.path, what, err)
    }

    fn invalid(&self, why: String) -> Error {
        Error::new(
            ErrorKind::Journal,
            format!("map journal {}: {why}", self.path.display()),
        )
        .with_task(self.task)
    }

    /// Checks the file's header against `expected`: the offset of the
    /// first record, or 0 if the file holds no header yet (empty, or the
    /// start of this very header, torn).
    fn check_header(&self, expected: &[u8], fingerprint: &str, len: u64) -> Result<u64> {
        let mut head = vec![0; (len.min(16)) as usize];
        self.read_at(&mut head, 0)?;
        if len < expected.len() as u64 {
            let mut whole = vec![0; len as usize];
            self.read_at(&mut whole, 0)?;
            if expected.starts_with(&whole) {
                return Ok(0);
            }
        }
        if head.len() < 16 || head[..8] != MAGIC {
            return Err(self.invalid(
                "is not a pool map journal (wrong magic); remove it or choose another path".into(),
            ));
        }
        let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        if version != VERSION {
            return Err(self.invalid(format!(
                "is in format version {version}; this pool reads version {VERSION}"
            )));
        }
        let found_len = u32::from_le_bytes([head[12], head[13], head[14], head[15]]) as usize;
        let header_len = 16 + found_len as u64 + CHECKSUM as u64;
        if found_len > MAX_FINGERPRINT || header_len > len {
            return Err(self.invalid("has a damaged header".into()));
        }
        let mut found = vec![0; header_len as usize];
        self.read_at(&mut found, 0)?;
        let (body, sum) = found.split_at(found.len() - CHECKSUM);
        if checksum(&[body]) != sum {
            return Err(self.invalid("has a damaged header".into()));
        }
        if found != expected {
            let theirs = String::from_utf8_lossy(&body[16..]);
            return Err(self.invalid(format!(
                "belongs to another map ({}), not to this one ({})",
                shortened(&theirs, 300).replace('\n', ", "),
                fingerprint.replace('\n', ", ")
            )));
        }
        Ok(header_len)
    }

    /// Reads the records from `start`; returns where the valid ones end
    /// (before a torn tail, if any).
    fn scan(&mut self, start: u64, len: u64, max_record: u64) -> Result<u64> {
        let mut reader = BufReader::with_capacity(1 << 16, &self.file);
        // `append` mode reads from the start: skip the header.
        std::io::copy(&mut (&mut reader).take(start), &mut std::io::sink())
            .map_err(|err| self.error("could not be read", err))?;
        let mut at = start;
        let mut head = [0; RECORD_HEAD];
        let mut payload = Vec::new();
        let mut sum = [0; CHECKSUM];
        while at < len {
            let left = len - at;
            if left < (RECORD_HEAD + CHECKSUM) as u64 {
                return Ok(at);
            }
            read_exact(&mut reader, &mut head, &self.path)?;
            let payload_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            let size = (RECORD_HEAD + CHECKSUM) as u64 + u64::from(payload_len);
            if size > left {
                // Runs past the end: a torn write.
                return Ok(at);
            }
            let status = head[RECORD_HEAD - 1] & !INLINE;
            if u64::from(payload_len) > max_record || status > FAILED {
                return self.torn_or_corrupt(at, len);
            }
            payload.clear();
            payload.resize(payload_len as usize, 0);
            read_exact(&mut reader, &mut payload, &self.path)?;
            read_exact(&mut reader, &mut sum, &self.path)?;
            if checksum(&[&head, &payload]) != sum {
                return self.torn_or_corrupt(at, len);
            }
            let mut index = [0; 8];
            index.copy_from_slice(&head[4..12]);
            let mut bytes = [0; DIGEST];
            bytes.copy_from_slice(&head[12..12 + DIGEST]);
            let key = InputKey {
                bytes,
                inline: head[RECORD_HEAD - 1] & INLINE != 0,
            };
            self.entries.insert(
                u64::from_le_bytes(index),
                Entry {
                    key,
                    failed: status == FAILED,
                    offset: at + RECORD_HEAD as u64,
                    len: payload_len,
                },
            );
            at += size;
        }
        Ok(at)
    }

    /// A damaged record at `at`: a torn tail if it is the last thing in
    /// the file (its declared size reaches the end) or nothing but zeros
    /// is left from it on (what a crash leaves of blocks allocated but
    /// never written); else corruption.
    fn torn_or_corrupt(&self, at: u64, len: u64) -> Result<u64> {
        let mut head = [0; 4];
        self.read_at(&mut head, at)?;
        let size = (RECORD_HEAD + CHECKSUM) as u64 + u64::from(u32::from_le_bytes(head));
        if at + size == len {
            return Ok(at);
        }
        let mut block = vec![0; 1 << 16];
        let mut from = at;
        while from < len {
            let n = block.len().min((len - from) as usize);
            self.read_at(&mut block[..n], from)?;
            if block[..n].iter().any(|&byte| byte != 0) {
                return Err(self.corrupt(at));
            }
            from += n as u64;
        }
        Ok(at)
    }

    fn corrupt(&self, at: u64) -> Error {
        self.invalid(format!(
            "is damaged at byte {at} (a record fails its checksum, with more records after it); \
             it is left as it is"
        ))
    }

    fn read_at(&self, buffer: &mut [u8], offset: u64) -> Result<()> {
        self.file
            .read_exact_at(buffer, offset)
            .map_err(|err| self.error("could not be read", err))
    }

    /// Cuts the file at `len` (dropping a torn tail).
    fn cut(&mut self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|err| self.error("could not be cut at its torn tail", err))
    }

    /// Where input `item` stands: its journaled result, if the journal
    /// holds one for its index and the same encoded input (and it is not a
    /// failure to rerun); else `None`, and the input is noted as
    /// submitted, so that its result is journaled when it arrives.
    pub(crate) fn replay_or_start(&mut self, item: &Item) -> Result<Option<Delivery>> {
        let index = item.index;
        let key = InputKey::of(item.input());
        let found = self
            .entries
            .get(&(index as u64))
            .filter(|entry| entry.key == key && !(entry.failed && self.rerun_failures));
        let Some(entry) = found else {
            self.pending.insert(index, key);
            return Ok(None);
        };
        let mut payload = vec![0; entry.len as usize];
        self.read_at(&mut payload, entry.offset)?;
        let outcome = match entry.failed {
            false => {
                let len = payload.len();
                Ok(Payload::new(Arc::new(payload), 0..len))
            }
            true => Err(self.failure(&payload, index)?),
        };
        Ok(Some(Delivery { index, outcome }))
    }

    fn failure(&self, payload: &[u8], index: usize) -> Result<Error> {
        let kind = payload
            .first()
            .and_then(|&code| kind_of(code))
            .ok_or_else(|| {
                self.invalid(format!(
                    "holds a failure of an unknown kind for input {index}"
                ))
            })?;
        let message = String::from_utf8_lossy(&payload[1..]);
        Ok(
            Error::new(kind, format!("{message} (from the map journal)"))
                .with_task(self.task)
                .with_index(index),
        )
    }

    /// Adds the record of an input's result to those to write, unless it
    /// is not the input's own outcome (the call ended, the caller
    /// cancelled) or the input was not submitted by this call.
    pub(crate) fn record(&mut self, index: usize, outcome: &Outcome) {
        let status = match outcome {
            Err(err) if ends_the_call(err) || err.kind() == ErrorKind::Cancelled => return,
            Err(_) => FAILED,
            Ok(_) => OK,
        };
        let Some(key) = self.pending.remove(index) else {
            return;
        };
        let failure;
        let payload: &[u8] = match outcome {
            Ok(payload) => payload.bytes(),
            Err(err) => {
                let mut bytes = vec![kind_code(err.kind())];
                bytes.extend_from_slice(err.message().as_bytes());
                failure = bytes;
                &failure
            }
        };
        // The head built on the stack (fixed-size stores), then the record
        // appended to the batch's buffer: no allocation of its own, and
        // the checksum computed from the parts in hand.
        let mut head = [0; RECORD_HEAD];
        head[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[4..12].copy_from_slice(&(index as u64).to_le_bytes());
        head[12..12 + DIGEST].copy_from_slice(&key.bytes);
        head[RECORD_HEAD - 1] = if key.inline { status | INLINE } else { status };
        let sum = checksum(&[&head, payload]);
        self.buffer.reserve(RECORD_HEAD + payload.len() + CHECKSUM);
        self.buffer.extend_from_slice(&head);
        self.buffer.extend_from_slice(payload);
        self.buffer.extend_from_slice(&sum);
    }

    /// Writes the records added so far, and flushes the file to disk if
    /// the sync interval has passed.
    pub(crate) fn flush(&mut self) -> Result<()> {
        self.write_out()?;
        if self.unsynced && self.last_sync.elapsed() >= self.sync {
            self.sync_now()?;
        }
        Ok(())
    }

    /// Writes and flushes to disk what is left: the map ended.
    pub(crate) fn finish(&mut self) -> Result<()> {
        self.write_out()?;
        if self.unsynced {
            self.sync_now()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let written = (&self.file).write_all(&self.buffer);
        self.buffer.clear();
        self.unsynced = true;
        // The disk starts on the records now rather than at the next
        // sync, which then waits for less: at the end of a map of a
        // million trivial inputs, the last `fdatasync` alone cost a tenth
        // of its time.
        let _ = crate::sys::start_writeback(&self.file);
        written.map_err(|err| {
            self.error(
                "could not be written (the results that arrived are returned by the call, \
                 but a rerun will run them again)",
                err,
            )
        })
    }

    fn sync_now(&mut self) -> Result<()> {
        self.last_sync = Instant::now();
        self.unsynced = false;
        self.file
            .sync_data()
            .map_err(|err| self.error("could not be flushed to disk", err))
    }
}

/// A journal dropped before its map ended (an error, an imap dropped)
/// writes what it holds, so that the rerun need not run it again.
impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.write_out();
    }
}

fn read_exact(reader: &mut impl Read, buffer: &mut [u8], path: &Path) -> Result<()> {
    reader
        .read_exact(buffer)
        .map_err(|err| journal_error(path, "could not be read", err))
}

fn journal_error(path: &Path, what: &str, err: std::io::Error) -> Error {
    Error::new(
        ErrorKind::Journal,
        format!("map journal {} {what}", path.display()),
    )
    .with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::task! { fn echo(x: u32) -> u32 { x } }
    crate::task! { fn other(x: u32) -> u32 { x } }

    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let path = std::env::temp_dir()
                .join(format!("pool-journal-unit-{name}-{}", std::process::id()));
            let _ = std::fs::remove_file(&path);
            Scratch(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn open<T: Task>(path: &Path) -> Result<Journal> {
        Journal::open::<T>(path, &JournalOptions::default(), 1 << 20)
    }

    fn ok(bytes: &[u8]) -> Outcome {
        Ok(Payload::new(Arc::new(bytes.to_vec()), 0..bytes.len()))
    }

    /// A journal of `n` results, input `i` encoded as `[i]`, output `[i, i]`.
    fn journal_of(path: &Path, n: u8) {
        let mut journal = open::<echo>(path).unwrap();
        for i in 0..n {
            let item = Item::new(usize::from(i), vec![i]);
            assert!(journal.replay_or_start(&item).unwrap().is_none());
            journal.record(usize::from(i), &ok(&[i, i]));
        }
        journal.finish().unwrap();
    }

    fn replayed(journal: &mut Journal, index: usize, input: u8) -> Option<Vec<u8>> {
        let item = Item::new(index, vec![input]);
        let delivery = journal.replay_or_start(&item).unwrap()?;
        Some(delivery.outcome.unwrap().bytes().to_vec())
    }

    /// The digest is SHA-256's, at every length around the padding's
    /// one- and two-block cases and past a block.
    #[test]
    fn the_digest_is_the_start_of_sha256() {
        use sha2::{Digest as _, Sha256};
        let bytes: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..bytes.len() {
            let input = &bytes[..len];
            assert_eq!(
                digest(input)[..],
                Sha256::digest(input)[..DIGEST],
                "length {len}"
            );
        }
    }

    #[test]
    fn results_come_back_for_the_same_index_and_input_only() {
        let scratch = Scratch::new("round-trip");
        journal_of(&scratch.0, 5);
        let mut journal = open::<echo>(&scratch.0).unwrap();
        assert_eq!(replayed(&mut journal, 3, 3), Some(vec![3, 3]));
        assert_eq!(replayed(&mut journal, 3, 4), None, "a changed input");
        assert_eq!(replayed(&mut journal, 7, 7), None, "an index never run");
    }

    /// Inputs of 16 bytes and more are known by their digest, shorter
    /// ones by themselves: at and around that length, only the very same
    /// input at the same index gets the journaled output.
    #[test]
    fn short_and_long_inputs_are_reused_only_when_unchanged() {
        let scratch = Scratch::new("lengths");
        let input = |len: usize, fill: u8| vec![fill; len];
        let lengths = [0, 1, 14, 15, 16, 17, 63, 64, 100];
        let mut journal = open::<echo>(&scratch.0).unwrap();
        for (index, &len) in lengths.iter().enumerate() {
            let item = Item::new(index, input(len, 7));
            assert!(journal.replay_or_start(&item).unwrap().is_none());
            journal.record(index, &ok(&[index as u8]));
        }
        journal.finish().unwrap();
        drop(journal);
        let mut journal = open::<echo>(&scratch.0).unwrap();
        for (index, &len) in lengths.iter().enumerate() {
            let mut changed = input(len, 7);
            match changed.last_mut() {
                Some(last) => *last = 8,
                None => changed.push(0),
            }
            let fresh = journal.replay_or_start(&Item::new(index, changed)).unwrap();
            assert!(fresh.is_none(), "a changed input of {len} bytes was reused");
            let same = journal.replay_or_start(&Item::new(index, input(len, 7)));
            let output = same
                .unwrap()
                .map(|delivery| delivery.outcome.unwrap().bytes().to_vec());
            assert_eq!(output, Some(vec![index as u8]), "an input of {len} bytes");
        }
    }

    #[test]
    fn failures_replay_with_their_kind_unless_rerun() {
        let scratch = Scratch::new("failures");
        let mut journal = open::<echo>(&scratch.0).unwrap();
        journal.replay_or_start(&Item::new(0, vec![0])).unwrap();
        journal.record(0, &Err(Error::new(ErrorKind::Panicked, "boom")));
        journal.replay_or_start(&Item::new(1, vec![1])).unwrap();
        journal.record(1, &Err(Error::new(ErrorKind::Interrupted, "ctrl-c")));
        journal.finish().unwrap();
        drop(journal);
        let mut journal = open::<echo>(&scratch.0).unwrap();
        let delivery = journal
            .replay_or_start(&Item::new(0, vec![0]))
            .unwrap()
            .unwrap();
        let err = delivery.outcome.unwrap_err();
        assert_eq!((err.kind(), err.index()), (ErrorKind::Panicked, Some(0)));
        assert!(err.message().starts_with("boom"));
        // What ended the call is not the input's outcome: not journaled.
        assert!(journal
            .replay_or_start(&Item::new(1, vec![1]))
            .unwrap()
            .is_none());
        let options = JournalOptions {
            rerun_failures: true,
            ..JournalOptions::default()
        };
        let mut journal = Journal::open::<echo>(&scratch.0, &options, 1 << 20).unwrap();
        assert!(journal
            .replay_or_start(&Item::new(0, vec![0]))
            .unwrap()
            .is_none());
    }

    #[test]
    fn another_tasks_journal_is_refused() {
        let scratch = Scratch::new("foreign");
        journal_of(&scratch.0, 2);
        let err = open::<other>(&scratch.0).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::Journal);
        assert!(err.message().contains("belongs to another map"), "{err}");
    }

    #[test]
    fn a_record_that_claims_more_than_the_file_holds_is_a_torn_tail() {
        let scratch = Scratch::new("claims");
        journal_of(&scratch.0, 3);
        let len = std::fs::metadata(&scratch.0).unwrap().len();
        let mut bytes = std::fs::read(&scratch.0).unwrap();
        let mut record = vec![0xff; RECORD_HEAD + CHECKSUM];
        record[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&record);
        std::fs::write(&scratch.0, &bytes).unwrap();
        let mut journal = open::<echo>(&scratch.0).unwrap();
        assert_eq!(std::fs::metadata(&scratch.0).unwrap().len(), len);
        assert_eq!(replayed(&mut journal, 2, 2), Some(vec![2, 2]));
    }

    /// Garbage after a good header, and garbage alone: an error or a
    /// journal, never a panic, and memory bounded by what the file holds.
    #[test]
    fn garbage_never_panics() {
        let scratch = Scratch::new("garbage");
        journal_of(&scratch.0, 0);
        let header = std::fs::read(&scratch.0).unwrap();
        let mut state: u64 = 0x1234_5678;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..300 {
            let len = (next() % 300) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if round % 3 != 0 {
                let mut with_header = header.clone();
                with_header.append(&mut bytes);
                bytes = with_header;
            }
            if round % 5 == 0 && bytes.len() > header.len() + 4 {
                // A plausible length, so the record's body is read.
                let at = header.len();
                bytes[at..at + 4].copy_from_slice(&((next() % 64) as u32).to_le_bytes());
            }
            std::fs::write(&scratch.0, &bytes).unwrap();
            if let Err(err) = open::<echo>(&scratch.0) {
                assert_eq!(err.kind(), ErrorKind::Journal, "{err}");
            }
        }
    }
}
