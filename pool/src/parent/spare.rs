//! The spare buffers of one `map` or `imap` call: the buffers of its large
//! encoded inputs, given back when their results arrive, for its next
//! inputs to be encoded into. A large input then lands in pages already
//! faulted in (on the VM measured, a fresh page costs about six copies to
//! fault in and free), and with room kept in front of it for the header
//! of a message that carries it alone, straight from its buffer
//! ([`Item::with_header`](super::job::Item::with_header)).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::wire;

/// What the inputs in flight of one `map` or `imap` call may cost the
/// parent once every live worker has a chunk: what keeps its memory flat
/// whatever the input count. Here, beside the spare buffers it also
/// bounds, so that the calls and the buffers they share take it from one
/// place. A chunk of automatic size is cut at `WINDOW_BYTES /
/// (CHUNKS_PER_WORKER * workers)`, or `MIN_CHUNK_BYTES` if more (see
/// `map.rs`), so the window is at most `WINDOW_BYTES` plus one chunk, or
/// one chunk per live worker if that is more (large inputs, many workers).
pub(crate) const WINDOW_BYTES: usize = 16 << 20;

/// Encoded inputs from this size up have their buffers kept: below it, a
/// fresh allocation costs less than the bookkeeping, and the input goes
/// in a batch anyway.
pub(crate) const SPARE_BUFFER_MIN: usize = 64 << 10;
/// A call keeps at most this many spare buffers...
const MOST_BUFFERS: usize = 8;
/// ...holding at most this many bytes of earlier inputs (each buffer cut
/// to at most twice its last input): the parent holds at most about twice
/// as much again as its window.
const MOST_BYTES: usize = WINDOW_BYTES;

/// The spare buffers of one call, shared by the call (which takes them)
/// and the dispatcher (which gives them back).
#[derive(Default)]
pub(crate) struct SpareBuffers {
    /// Each buffer, cleared, with the length it had.
    buffers: Mutex<Vec<(Vec<u8>, usize)>>,
    /// How many there are, read without the lock, so that a call of small
    /// inputs never takes it.
    count: AtomicUsize,
}

impl SpareBuffers {
    /// Keeps `buffer` if it is large enough to be worth it and the spare
    /// buffers stay within their bounds; else frees it.
    pub(crate) fn give_back(&self, mut buffer: Vec<u8>) {
        let used = buffer.len();
        if used < SPARE_BUFFER_MIN {
            return;
        }
        let mut buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        let held: usize = buffers.iter().map(|(_, used)| used).sum();
        if buffers.len() < MOST_BUFFERS && held + used <= MOST_BYTES {
            buffer.clear();
            // A buffer that once held a much larger input still holds its
            // pages: counted by its last use alone, eight of them could
            // hold eight of the largest inputs. Cut to about that use, it
            // holds at most twice what it is counted for.
            if buffer.capacity() / 2 > used {
                buffer.shrink_to(used);
            }
            buffers.push((buffer, used));
            self.count.store(buffers.len(), Ordering::Release);
        }
    }

    /// A buffer to encode the next input into, and the room to keep in
    /// front of the input: a spare buffer with room for
    /// [`wire::LONE_CHUNK_ROOM`], or a new empty one without room (small
    /// inputs, which go in batches, and the first large ones).
    pub(crate) fn take(&self) -> (Vec<u8>, usize) {
        if self.count.load(Ordering::Acquire) == 0 {
            return (Vec::new(), 0);
        }
        let mut buffers = self.buffers.lock().unwrap_or_else(|p| p.into_inner());
        let taken = buffers.pop();
        self.count.store(buffers.len(), Ordering::Release);
        match taken {
            Some((buffer, _)) => (buffer, wire::LONE_CHUNK_ROOM),
            None => (Vec::new(), 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_come_back_within_the_bounds_and_small_ones_never() {
        let spare = SpareBuffers::default();
        assert_eq!(spare.take(), (Vec::new(), 0));
        spare.give_back(vec![1; SPARE_BUFFER_MIN - 1]);
        assert_eq!(spare.take().1, 0);
        let large = vec![2; 4 << 20];
        let at = large.as_ptr();
        spare.give_back(large);
        let (buffer, room) = spare.take();
        assert_eq!(
            (buffer.as_ptr(), buffer.len(), room),
            (at, 0, wire::LONE_CHUNK_ROOM)
        );
        // Bounded by the bytes they held.
        for _ in 0..MOST_BUFFERS {
            spare.give_back(vec![3; 4 << 20]);
        }
        let kept = std::iter::from_fn(|| Some(spare.take()).filter(|(_, room)| *room > 0)).count();
        assert_eq!(kept, MOST_BYTES / (4 << 20));
        // And by their count.
        for _ in 0..2 * MOST_BUFFERS {
            spare.give_back(vec![4; SPARE_BUFFER_MIN]);
        }
        let kept = std::iter::from_fn(|| Some(spare.take()).filter(|(_, room)| *room > 0)).count();
        assert_eq!(kept, MOST_BUFFERS);
    }

    #[test]
    fn a_large_buffer_reused_for_a_smaller_input_is_held_at_about_its_new_size() {
        let spare = SpareBuffers::default();
        // Each had a large input (its pages touched), then a small one.
        for _ in 0..MOST_BUFFERS {
            let mut buffer = vec![1u8; MOST_BYTES];
            buffer.truncate(SPARE_BUFFER_MIN);
            spare.give_back(buffer);
        }
        let held: usize = std::iter::from_fn(|| Some(spare.take()).filter(|(_, room)| *room > 0))
            .map(|(buffer, _)| buffer.capacity())
            .sum();
        assert!(held <= 2 * MOST_BYTES, "{} MiB held", held >> 20);
    }
}
