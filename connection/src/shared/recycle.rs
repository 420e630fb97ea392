//! The recyclable memfds of one sending end, which its copying calls
//! (`send_bytes`, `send`, ...) fill and send again and again. What they
//! cost against fresh memfds, how a receiver hands one back and the
//! bound ([`MAX_MEMFDS`], [`MAX_BYTES`], size classes from [`MIN_CLASS`])
//! are in [`crate::shared`]'s "Recycled memfds".
//!
//! Why wait rather than send fresh memory at once: a sender ahead of its
//! reader that sends fresh memfds makes its reader free their pages too
//! (about 14 ms for 64 MiB here, more than the copy), so the reader falls
//! further behind and every later message is fresh as well; the copying
//! pair ran at half its speed that way.
//!
//! A memfd whose message never reached its receiver (an `UnsentMessage`
//! dropped unsent, a receiver that stopped reading) stays busy until the
//! end is dropped; the bound holds, and later payloads take the others or
//! fresh sealed memfds.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys::shm::{self, Mapping, CONSUMED_GENERATION_AT, RECYCLED_HEADER, SENT_GENERATION_AT};

/// At most this many recyclable memfds per sending end: four 64 MiB
/// messages in flight kept the bench's copying pair busy on both sides.
pub(crate) const MAX_MEMFDS: usize = 4;

/// At most this much payload capacity in recyclable memfds per sending
/// end (each memfd also has a page of header).
pub(crate) const MAX_BYTES: u64 = 256 << 20;

/// The smallest size class: smaller payloads share 1 MiB memfds.
pub(crate) const MIN_CLASS: usize = 1 << 20;

/// One memfd, and the generation of the last message written into it.
#[derive(Debug)]
struct Slot {
    /// A writable mapping of the whole memfd, kept: filling it costs a
    /// `memcpy`, with no page faults after the first use.
    mapping: Mapping,
    memfd: OwnedFd,
    capacity: usize,
    sent: u64,
}

impl Slot {
    fn bytes(&self) -> u64 {
        self.capacity as u64
    }

    /// Whether its receiver consumed its last message. A memfd whose
    /// header cannot be read counts as busy.
    fn is_free(&self) -> bool {
        shm::read_generation(self.memfd.as_fd(), CONSUMED_GENERATION_AT)
            .is_ok_and(|consumed| consumed == self.sent)
    }
}

/// A payload written into a recyclable memfd, ready to be sent: a
/// descriptor of the memfd (the sender keeps its own), the payload's
/// length and its generation.
#[derive(Debug)]
pub(crate) struct Filled {
    pub(crate) memfd: OwnedFd,
    pub(crate) len: usize,
    pub(crate) generation: u64,
}

/// The recyclable memfds of one sending end.
#[derive(Debug, Default)]
pub(crate) struct Recycler {
    slots: Vec<Slot>,
    /// The generation of the last message sent; each message gets the
    /// next, so a stale acknowledgement never frees a memfd.
    generation: u64,
    /// The least time a patient sender waits: zero but in tests, which
    /// must not depend on how fast a loaded machine runs their reader.
    least_patience: Duration,
}

impl Recycler {
    /// Copies `payload` into a free memfd of its class (made if the bound
    /// allows): `Ok(None)` when every memfd is still being read and no new
    /// one fits the bound, so the caller sends another way.
    ///
    /// With `patience`, a sender whose memfds are all being read waits for
    /// one to come free, up to [`patience_for`] its payload: never longer
    /// than a fresh memfd would cost it, and in a steady stream of large
    /// messages the receiver frees one well within that, so the sender
    /// keeps reusing memory instead of paying for fresh pages (which its
    /// receiver would then pay to free, falling further behind).
    pub(crate) fn fill(
        &mut self,
        payload: &[u8],
        patience: bool,
    ) -> std::io::Result<Option<Filled>> {
        let class = size_class(payload.len());
        let deadline =
            patience.then(|| Instant::now() + patience_for(payload.len()).max(self.least_patience));
        let mut pause = FIRST_PAUSE;
        let index = loop {
            if let Some(index) = self.free_slot(class)? {
                break index;
            }
            // Only a memfd of this class being read can come free in time:
            // without one (the bound is taken by memfds of other classes,
            // or the payload never fits it) there is nothing to wait for.
            let awaited = self.slots.iter().any(|slot| slot.capacity == class);
            match deadline {
                Some(deadline) if awaited && Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
                _ => return Ok(None),
            }
        };
        self.generation += 1;
        let generation = self.generation;
        let slot = &mut self.slots[index];
        // Each step that can fail comes before the memfd is marked busy,
        // so a failure leaves it free for the next message.
        let memfd = slot.memfd.try_clone()?;
        slot.mapping.copy_in(RECYCLED_HEADER as usize, payload);
        shm::write_generation(slot.memfd.as_fd(), SENT_GENERATION_AT, generation)?;
        slot.sent = generation;
        Ok(Some(Filled {
            memfd,
            len: payload.len(),
            generation,
        }))
    }

    /// The index of a free memfd of `class`: one that exists, or a new one
    /// (in place of a free memfd of another class if the bound needs it).
    fn free_slot(&mut self, class: usize) -> std::io::Result<Option<usize>> {
        if let Some(index) = self
            .slots
            .iter()
            .position(|slot| slot.capacity == class && slot.is_free())
        {
            return Ok(Some(index));
        }
        let new_bytes = class as u64;
        if new_bytes > MAX_BYTES {
            // Never fits: keep the memfds that will.
            return Ok(None);
        }
        // Free memfds of other classes make room for this one, the
        // largest first.
        loop {
            let used: u64 = self.slots.iter().map(Slot::bytes).sum();
            if self.slots.len() < MAX_MEMFDS && used + new_bytes <= MAX_BYTES {
                break;
            }
            let evictable = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| slot.capacity != class && slot.is_free())
                .max_by_key(|(_, slot)| slot.capacity)
                .map(|(index, _)| index);
            match evictable {
                Some(index) => drop(self.slots.swap_remove(index)),
                None => return Ok(None),
            }
        }
        let memfd = shm::create_recyclable(class)?;
        let mapping = Mapping::read_write(memfd.as_fd(), RECYCLED_HEADER as usize + class)?;
        self.slots.push(Slot {
            mapping,
            memfd,
            capacity: class,
            sent: 0,
        });
        Ok(Some(self.slots.len() - 1))
    }

    /// Makes a patient sender wait at least `patience` for a memfd.
    #[cfg(test)]
    pub(crate) fn set_least_patience(&mut self, patience: Duration) {
        self.least_patience = patience;
    }

    /// How many memfds this end holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

/// How long a sender may wait for one of its memfds to come free: about
/// what a fresh sealed memfd would cost it instead (filling fresh memory
/// runs at about 1.6 GB/s on the machine this crate is measured on; see
/// the `shared_memory` bench), and at least a millisecond.
pub(crate) fn patience_for(len: usize) -> Duration {
    Duration::from_millis(1).max(Duration::from_nanos(len as u64 / 3 * 2))
}

/// The first pause between two looks at a busy memfd's header; each pause
/// doubles up to [`LONGEST_PAUSE`], so a memfd that comes free is seen
/// within a fraction of the time its receiver took to copy it out.
const FIRST_PAUSE: Duration = Duration::from_micros(10);
const LONGEST_PAUSE: Duration = Duration::from_micros(200);

/// The capacity of the memfd that carries a `len`-byte payload.
fn size_class(len: usize) -> usize {
    len.max(MIN_CLASS)
        .checked_next_power_of_two()
        .unwrap_or(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_over_the_bound_goes_elsewhere_and_evicts_nothing() {
        let mut recycler = Recycler::default();
        let filled = match recycler.fill(b"small", false) {
            Ok(filled) => filled.unwrap(),
            Err(err) => return eprintln!("skipped: no memfds here ({err})"),
        };
        // Its receiver read it: the memfd is free.
        let fd = filled.memfd.as_fd();
        shm::write_generation(fd, CONSUMED_GENERATION_AT, filled.generation).unwrap();
        // Zeroed by the allocator, never touched: costs no memory.
        let huge = vec![0u8; MAX_BYTES as usize + 1];
        assert!(recycler.fill(&huge, false).unwrap().is_none());
        assert_eq!(recycler.len(), 1);
    }

    #[test]
    fn a_new_class_takes_the_place_of_a_free_memfd_never_of_a_busy_one() {
        let mut recycler = Recycler::default();
        let mut sent = Vec::new();
        for _ in 0..MAX_MEMFDS {
            match recycler.fill(b"small", false) {
                Ok(filled) => sent.push(filled.unwrap()),
                Err(err) => return eprintln!("skipped: no memfds here ({err})"),
            }
        }
        assert_eq!(recycler.len(), MAX_MEMFDS);
        let larger = vec![3u8; 2 * MIN_CLASS];
        // All four are being read: no room, nothing evicted.
        assert!(recycler.fill(&larger, false).unwrap().is_none());
        assert_eq!(recycler.len(), MAX_MEMFDS);
        let first = &sent[0];
        let fd = first.memfd.as_fd();
        shm::write_generation(fd, CONSUMED_GENERATION_AT, first.generation).unwrap();
        let filled = recycler
            .fill(&larger, false)
            .unwrap()
            .expect("a free memfd made room");
        assert_eq!(filled.len, larger.len());
        assert_eq!(recycler.len(), MAX_MEMFDS);
        let mut copy = vec![0u8; larger.len()];
        shm::read_at(filled.memfd.as_fd(), &mut copy, RECYCLED_HEADER).unwrap();
        assert_eq!(copy, larger);
    }

    #[test]
    fn classes_are_powers_of_two_from_a_mebibyte() {
        assert_eq!(size_class(1), MIN_CLASS);
        assert_eq!(size_class(MIN_CLASS + 1), 2 * MIN_CLASS);
        assert_eq!(size_class(64 << 20), 64 << 20);
    }
}
