//! Jobs: chunks of encoded inputs on their way from a pool call to the
//! workers, and the encoding and decoding each call does at its ends.

use std::sync::Arc;

use super::sink::{Channel, Delivery, Sink};
use crate::error::{Error, ErrorKind, Result};
use crate::task::Task;
use crate::wire;

/// One input of a job.
pub(crate) struct Item {
    pub(crate) index: usize,
    /// The encoded input, after `room` bytes kept free in front of it for
    /// the header of a message that carries it alone
    /// ([`Item::with_header`]).
    buffer: Vec<u8>,
    room: usize,
    /// How many times a worker died while running this input.
    pub(crate) deaths: u32,
    /// How many times a remote worker running this input was lost.
    pub(crate) losses: u32,
    /// How many workers ended while they held this input and had started
    /// none of what they held: workers that could not take what they were
    /// sent (a message they refused, a crash while reading it).
    pub(crate) bounces: u32,
}

impl Item {
    pub(crate) fn new(index: usize, input: Vec<u8>) -> Item {
        Item {
            index,
            buffer: input,
            room: 0,
            deaths: 0,
            losses: 0,
            bounces: 0,
        }
    }

    /// The encoded input.
    pub(crate) fn input(&self) -> &[u8] {
        self.buffer.get(self.room..).unwrap_or_default()
    }

    /// Whether its buffer keeps `bytes` free in front of the input.
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        self.room >= bytes
    }

    /// The input with `header` written just before it, as one message,
    /// with no copy of the input; `None` if its buffer has no room for
    /// `header`.
    pub(crate) fn with_header(&mut self, header: &[u8]) -> Option<&[u8]> {
        let start = self.room.checked_sub(header.len())?;
        self.buffer[start..self.room].copy_from_slice(header);
        Some(&self.buffer[start..])
    }

    /// Its buffer, for the call to encode another input into.
    pub(crate) fn into_buffer(self) -> Vec<u8> {
        self.buffer
    }
}

/// A chunk of inputs for one task, run by one worker in one go.
pub(crate) struct Job {
    pub(crate) task: &'static str,
    pub(crate) items: Vec<Item>,
    pub(crate) sink: Sink,
}

impl Job {
    /// A job of `T` whose results go to `stream`.
    pub(crate) fn streamed<T: Task>(items: Vec<Item>, stream: &Arc<Channel>) -> Job {
        Job {
            task: T::NAME,
            items,
            sink: Sink::Channel(Arc::clone(stream)),
        }
    }

    pub(crate) fn input_bytes(&self) -> usize {
        self.items.iter().map(|item| item.input().len()).sum()
    }

    /// The size of the job as one chunk of a batch on its own.
    pub(crate) fn wire_size(&self) -> usize {
        self.input_bytes() + wire::chunk_overhead(self.task, self.items.len())
    }

    /// Splits off the inputs that take the job past `limit` bytes on the
    /// wire, as a job of their own; `None` if it fits (or is one input,
    /// which was checked against the limit when it was encoded).
    pub(crate) fn split_to_fit(&mut self, limit: u64) -> Option<Job> {
        if self.items.len() < 2 || self.wire_size() as u64 <= limit {
            return None;
        }
        let mut size = wire::chunk_overhead(self.task, 0) as u64;
        let keep = self
            .items
            .iter()
            .take_while(|item| {
                size += (item.input().len() + wire::INPUT_OVERHEAD) as u64;
                size <= limit
            })
            .count()
            .max(1);
        Some(Job {
            task: self.task,
            items: self.items.split_off(keep),
            sink: self.sink.clone(),
        })
    }

    /// Fails every input still in the job with errors made by `error`.
    pub(crate) fn fail_all(&mut self, error: impl Fn(&Item) -> Error) {
        for item in std::mem::take(&mut self.items) {
            let err = error(&item).with_task(self.task).with_index(item.index);
            self.sink.deliver_now(item.index, Err(err));
        }
    }
}

/// A job dropped with inputs still in it (the pool stopped, or a thread
/// unwound) answers them, so that no caller waits forever.
impl Drop for Job {
    fn drop(&mut self) {
        if !self.items.is_empty() && !self.sink.is_cancelled() {
            self.fail_all(|_| {
                Error::new(
                    ErrorKind::Closed,
                    "the pool stopped before running this task",
                )
            });
        }
    }
}

/// Python's automatic chunk size, for the next chunk: the inputs left
/// spread over four chunks per live worker.
pub(crate) fn chunk_size(inputs_left: usize, workers: usize) -> usize {
    inputs_left.div_ceil(4 * workers.max(1)).max(1)
}

/// Encodes input `index` of a call to `T`, which must fit in a message of
/// `limit` bytes on its own.
pub(crate) fn encode_input<T: Task>(input: &T::Input, index: usize, limit: u64) -> Result<Item> {
    encode_item::<T>(input, index, limit, Vec::new(), 0)
}

/// [`encode_input`] into `buffer`, after `room` bytes kept free for a
/// message header ([`Item::with_header`]): a spare buffer of the call's,
/// so that a large input lands in pages already faulted in and can go out
/// with no copy into a batch.
pub(crate) fn encode_item<T: Task>(
    input: &T::Input,
    index: usize,
    limit: u64,
    mut buffer: Vec<u8>,
    room: usize,
) -> Result<Item> {
    crate::task::keep_linked::<T>();
    buffer.clear();
    buffer.resize(room, 0);
    connection::encode_into(input, &mut buffer).map_err(|err| {
        Error::from_connection(err, "encode the input")
            .with_task(T::NAME)
            .with_index(index)
    })?;
    let encoded_len = buffer.len() - room;
    let needed = encoded_len as u64 + wire::chunk_overhead(T::NAME, 1) as u64;
    if needed > limit || !wire::fits(encoded_len) {
        return Err(Error::new(
            ErrorKind::MessageTooLarge,
            format!(
                "input of {encoded_len} bytes is over the pool's message limit of {limit} bytes \
                 (PoolBuilder::max_message_size raises it; 4 GiB - 1 at most)"
            ),
        )
        .with_task(T::NAME)
        .with_index(index));
    }
    Ok(Item {
        room,
        ..Item::new(index, buffer)
    })
}

/// Decodes a result of a call to `T`.
pub(crate) fn decode_output<T: Task>(delivery: Delivery) -> Result<T::Output> {
    let payload = delivery.outcome?;
    connection::decode(payload.bytes()).map_err(|err| {
        Error::from_connection(err, "decode the output")
            .with_task(T::NAME)
            .with_index(delivery.index)
    })
}
