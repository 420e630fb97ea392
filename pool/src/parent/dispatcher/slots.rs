//! The dispatcher's workers, indexed so that nothing it does per event
//! or per chunk walks them all: with thousands of remote workers, a walk
//! per chunk was most of the head's time.
//!
//! Beside the slots themselves, [`Slots`] keeps each slot's place in a
//! few orders (the workers that may take work, by the inputs they hold;
//! the ready ones with inputs to spare, by how many; the starting ones,
//! by deadline) and a few counts. They are kept true by taking every
//! slot mutably through [`SlotMut`], which files the slot again when it
//! is dropped, whatever was done to it.
//!
//! Keeping them costs every chunk a refiling, which with a few workers
//! was most of what a chunk cost the dispatcher (2-worker `apply_async`
//! lost a sixth of its throughput to B-trees and SipHash), so it is kept
//! cheap: the orders are sorted vectors until they grow large
//! (`ordered.rs`), a slot is found by its id along the few slots of a
//! small pool and by a hash of one multiplication ([`IdHasher`]) in a
//! large one, and the order of the workers with inputs to spare,
//! read only by a rebalance, is brought up to date when one reads it, for
//! the workers that changed since ([`Slots::most_queued`]), not at every
//! chunk.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Deref, DerefMut};
use std::time::Instant;

use super::ordered::Ordered;
use super::{MAX_QUEUED_BYTES, MAX_QUEUED_ITEMS, QUEUE_TARGET};
use crate::parent::worker_slot::{State, WorkerSlot};

/// Where a slot is filed, as of its last change.
#[derive(Clone, Copy, Default, PartialEq)]
struct Filed {
    /// Ready and under its task limit: in `takers` with this many inputs.
    taker: Option<u64>,
    /// A taker with nothing queued.
    idle: bool,
    /// Idle and local: a worker the dispatcher may offer to callers.
    idle_local: bool,
    /// Offered or lent to callers: no taker meanwhile.
    lent: bool,
    /// Where it is in `spare`, which lags behind (see `spare_stale`).
    spare: Option<u64>,
    /// In `spare_stale`: its place in `spare` may be out of date.
    spare_stale: bool,
    /// Starting: in `starting` with this deadline.
    starting: Option<Instant>,
    /// Holds chunks, in any state.
    holding: bool,
    live: bool,
    local_live: bool,
}

impl Filed {
    fn of(slot: &WorkerSlot, task_limit: Option<u64>) -> Filed {
        let state = slot.state();
        let ready = state == State::Ready;
        let load = slot.load();
        let taker =
            ready && !slot.is_lent() && task_limit.map_or(true, |limit| slot.items_sent() < limit);
        Filed {
            taker: taker.then_some(load.items),
            idle: taker && load.chunks == 0,
            idle_local: taker && load.chunks == 0 && slot.is_local(),
            lent: slot.is_lent(),
            spare: spare_key(slot),
            spare_stale: false,
            starting: match state {
                State::Starting { deadline } => Some(deadline),
                _ => None,
            },
            holding: load.chunks > 0,
            live: slot.is_live(),
            local_live: slot.is_live() && slot.is_local(),
        }
    }
}

/// Where a slot belongs in `spare`: ready with chunks queued behind the
/// first, with the inputs it holds, which bound those it could spare.
/// Not `spare_items`, which walks the chunks in flight (hundreds of
/// single-input chunks under `apply_async`).
fn spare_key(slot: &WorkerSlot) -> Option<u64> {
    let load = slot.load();
    (slot.state() == State::Ready && load.chunks > 1).then_some(load.items)
}

/// Hashes worker ids with one multiplication. The dispatcher numbers its
/// workers itself, so no peer chooses the keys, and SipHash's defence
/// against chosen keys would only cost each chunk a few hundred
/// instructions. The product's low bits (the table's bucket) differ for
/// consecutive ids; its high bits (hashbrown's tag) mix them all.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.write_u64(u64::from(byte));
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(u64::from(id));
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Up to this many workers a slot is found by its id along `slots`.
const FEW_SLOTS: usize = 8;

/// A map keyed by worker id.
type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

/// The dispatcher's workers (see the module's documentation).
pub(super) struct Slots {
    slots: Vec<WorkerSlot>,
    /// Where each slot is filed, by the slot's position.
    filed: Vec<Filed>,
    /// Each worker's position in `slots`.
    positions: IdMap<usize>,
    /// Workers that may be given work, by (inputs held, id).
    takers: Ordered<(u64, u32)>,
    /// Ready workers with chunks queued behind the first, which may hold
    /// inputs another could take over, by (inputs held, id), as of when
    /// it was last read: the workers in `spare_stale` may have moved.
    spare: Ordered<(u64, u32)>,
    /// Workers whose place in `spare` may have changed since it was last
    /// read (each once: see `Filed::spare_stale`).
    spare_stale: Vec<u32>,
    /// Starting workers, by (deadline, id).
    starting: Ordered<(Instant, u32)>,
    /// Idle local workers, which may be offered to callers.
    idle_local: Ordered<u32>,
    idle: usize,
    lent: usize,
    holding: usize,
    live: usize,
    local_live: usize,
    /// The pool's `max_tasks_per_child`: a worker given that many inputs
    /// takes no more.
    task_limit: Option<u64>,
}

impl Slots {
    pub(super) fn new(task_limit: Option<u64>) -> Slots {
        Slots {
            slots: Vec::new(),
            filed: Vec::new(),
            positions: IdMap::default(),
            takers: Ordered::default(),
            spare: Ordered::default(),
            spare_stale: Vec::new(),
            starting: Ordered::default(),
            idle_local: Ordered::default(),
            idle: 0,
            lent: 0,
            holding: 0,
            live: 0,
            local_live: 0,
            task_limit,
        }
    }

    pub(super) fn push(&mut self, slot: WorkerSlot) {
        let position = self.slots.len();
        self.positions.insert(slot.id(), position);
        self.slots.push(slot);
        self.filed.push(Filed::default());
        self.refile(position);
    }

    /// Takes worker `id`'s slot out.
    pub(super) fn remove(&mut self, id: u32) -> Option<WorkerSlot> {
        let position = self.positions.remove(&id)?;
        let was = self.filed[position];
        self.file(id, &was, &Filed::default());
        if was.spare_stale {
            self.spare_stale.retain(|&stale| stale != id);
        }
        self.filed.swap_remove(position);
        let slot = self.slots.swap_remove(position);
        if let Some(moved) = self.slots.get(position) {
            self.positions.insert(moved.id(), position);
        }
        Some(slot)
    }

    /// Worker `id`'s position in `slots`: found by a look along them
    /// while they are few (a few compares cost a chunk less than hashing
    /// the id), in `positions` otherwise.
    #[inline]
    fn position(&self, id: u32) -> Option<usize> {
        if self.slots.len() <= FEW_SLOTS {
            return self.slots.iter().position(|slot| slot.id() == id);
        }
        self.positions.get(&id).copied()
    }

    /// The slot of worker `id`, which is filed.
    fn filed_slot(&self, id: u32) -> &WorkerSlot {
        let position = self.position(id).expect("a filed worker has a slot");
        &self.slots[position]
    }

    pub(super) fn get(&self, id: u32) -> Option<&WorkerSlot> {
        self.position(id).map(|position| &self.slots[position])
    }

    /// Worker `id`'s slot, filed again once the guard is dropped.
    pub(super) fn get_mut(&mut self, id: u32) -> Option<SlotMut<'_>> {
        let position = self.position(id)?;
        Some(SlotMut {
            slots: self,
            position,
        })
    }

    pub(super) fn iter(&self) -> std::slice::Iter<'_, WorkerSlot> {
        self.slots.iter()
    }

    /// Runs `f` on every slot, filing each again: a walk of them all, for
    /// what is rare (the pool's end, a cancellation, a clock tick).
    pub(super) fn for_each_mut(&mut self, mut f: impl FnMut(&mut WorkerSlot)) {
        for position in 0..self.slots.len() {
            f(&mut self.slots[position]);
            self.refile(position);
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The worker to give a chunk of `items` inputs and `bytes` bytes,
    /// given the recent time per input: among the ready workers under
    /// their task limit, the one holding fewest inputs that has nothing
    /// queued, or room for the chunk (work, inputs and bytes queued all
    /// within bounds). `surplus`: more chunks wait than idle workers
    /// could start now.
    pub(super) fn pick(
        &self,
        items: u64,
        bytes: usize,
        nanos_per_item: Option<f64>,
        surplus: bool,
    ) -> Option<u32> {
        for &(held, id) in self.takers.iter() {
            let slot = self.filed_slot(id);
            let load = slot.load();
            if load.chunks == 0 {
                return Some(id);
            }
            // Work is queued ahead of a worker only while it is short:
            // without a measure of task time yet, or with tasks too long
            // to queue, a worker gets more when it frees up, so that no
            // worker idles while another holds inputs it has not started.
            let queued_work = nanos_per_item.map_or(f64::INFINITY, |n| n * (held + items) as f64);
            let few_enough = held + items <= MAX_QUEUED_ITEMS;
            let room = few_enough && load.bytes + bytes <= MAX_QUEUED_BYTES;
            if queued_work > QUEUE_TARGET.as_nanos() as f64 || !few_enough {
                // Timed long tasks, though, go one chunk behind the one a
                // worker runs while more wait than idle workers could
                // start: that chunk would wait in the head anyway, and
                // queued it starts without the round trip of a result
                // and the next input (at thousands of workers finishing
                // at once, a burst that costs the cores tens of
                // milliseconds). Should a worker free up with nothing
                // left to take, `rebalance` takes such chunks back for it.
                let one_behind = surplus && nanos_per_item.is_some() && load.chunks == 1;
                // Every worker after this one holds at least as many.
                return (one_behind && room).then_some(id);
            }
            if room {
                return Some(id);
            }
        }
        None
    }

    /// How many workers may take work and hold none.
    pub(super) fn idle(&self) -> usize {
        self.idle
    }

    /// The ready workers with chunks queued behind the first, holding
    /// most inputs first, with how many they hold (at least as many as
    /// they could spare).
    pub(super) fn most_queued(&mut self) -> impl Iterator<Item = (u64, &WorkerSlot)> + '_ {
        for id in std::mem::take(&mut self.spare_stale) {
            let Some(position) = self.position(id) else {
                continue;
            };
            let now = spare_key(&self.slots[position]);
            let filed = &mut self.filed[position];
            filed.spare_stale = false;
            let was = std::mem::replace(&mut filed.spare, now);
            self.spare
                .change(was.map(|held| (held, id)), now.map(|held| (held, id)));
        }
        let slots = &*self;
        slots
            .spare
            .iter()
            .rev()
            .map(|&(held, id)| (held, slots.filed_slot(id)))
    }

    /// The idle local workers, which may be offered to callers.
    pub(super) fn idle_local(&self) -> Vec<u32> {
        self.idle_local.iter().copied().collect()
    }

    /// How many workers are offered or lent to callers.
    pub(super) fn lent(&self) -> usize {
        self.lent
    }

    /// Whether any worker holds chunks.
    pub(super) fn any_holding(&self) -> bool {
        self.holding > 0
    }

    /// How many workers are starting or ready.
    pub(super) fn live(&self) -> usize {
        self.live
    }

    /// How many local workers are starting or ready.
    pub(super) fn local_live(&self) -> usize {
        self.local_live
    }

    pub(super) fn any_starting(&self) -> bool {
        !self.starting.is_empty()
    }

    /// The soonest start-up deadline.
    pub(super) fn first_deadline(&self) -> Option<Instant> {
        self.starting.first().map(|&(deadline, _)| deadline)
    }

    /// The starting workers whose deadline is `now` or past.
    pub(super) fn late(&self, now: Instant) -> Vec<u32> {
        self.starting
            .iter()
            .take_while(|&&(deadline, _)| deadline <= now)
            .map(|&(_, id)| id)
            .collect()
    }

    fn refile(&mut self, position: usize) {
        let slot = &self.slots[position];
        let mut now = Filed::of(slot, self.task_limit);
        let was = self.filed[position];
        // `spare` is brought up to date when read: until then the slot
        // stays where it was, noted as stale once.
        if now.spare != was.spare && !was.spare_stale {
            self.spare_stale.push(slot.id());
            now.spare_stale = true;
        } else {
            now.spare_stale = was.spare_stale;
        }
        now.spare = was.spare;
        if now == was {
            return;
        }
        self.file(slot.id(), &was, &now);
        self.filed[position] = now;
    }

    /// Moves worker `id` in the orders and counts from where `was` filed
    /// it to where `now` does.
    #[inline]
    fn file(&mut self, id: u32, was: &Filed, now: &Filed) {
        let keyed = |key: Option<u64>| key.map(|key| (key, id));
        self.takers.change(keyed(was.taker), keyed(now.taker));
        self.spare.change(keyed(was.spare), keyed(now.spare));
        let starting = |filed: &Filed| filed.starting.map(|deadline| (deadline, id));
        self.starting.change(starting(was), starting(now));
        self.idle_local
            .change(was.idle_local.then_some(id), now.idle_local.then_some(id));
        let count = |total: &mut usize, was: bool, now: bool| {
            *total = *total + usize::from(now) - usize::from(was);
        };
        count(&mut self.idle, was.idle, now.idle);
        count(&mut self.lent, was.lent, now.lent);
        count(&mut self.holding, was.holding, now.holding);
        count(&mut self.live, was.live, now.live);
        count(&mut self.local_live, was.local_live, now.local_live);
    }
}

/// A slot taken mutably; filed again when dropped.
pub(super) struct SlotMut<'a> {
    slots: &'a mut Slots,
    position: usize,
}

impl Deref for SlotMut<'_> {
    type Target = WorkerSlot;

    fn deref(&self) -> &WorkerSlot {
        &self.slots.slots[self.position]
    }
}

impl DerefMut for SlotMut<'_> {
    fn deref_mut(&mut self) -> &mut WorkerSlot {
        &mut self.slots.slots[self.position]
    }
}

impl Drop for SlotMut<'_> {
    fn drop(&mut self) {
        self.slots.refile(self.position);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parent::job::{encode_input, Job};
    use crate::parent::sink::{ResultCell, Sink};
    use crate::parent::worker_slot::tests::numbered_slot;
    use crate::task::Task;

    crate::task! {
        fn double(x: u64) -> u64 { 2 * x }
    }

    fn job(items: u64) -> Job {
        Job {
            task: double::NAME,
            items: (0..items)
                .map(|i| encode_input::<double>(&i, i as usize, u64::MAX).unwrap())
                .collect(),
            sink: Sink::Single(ResultCell::new()),
        }
    }

    /// What `slots` filed agrees with the slots as they are now, once
    /// the order read lazily (`spare`) was read.
    fn assert_filed_truly(slots: &mut Slots) {
        let _ = slots.most_queued();
        assert!(slots.spare_stale.is_empty());
        let mut fresh = Slots::new(slots.task_limit);
        for (position, slot) in slots.slots.iter().enumerate() {
            assert_eq!(slots.positions[&slot.id()], position);
            let filed = Filed::of(slot, slots.task_limit);
            assert!(slots.filed[position] == filed, "worker {}", slot.id());
            if let Some(held) = filed.taker {
                fresh.takers.insert((held, slot.id()));
            }
            if let Some(spare) = filed.spare {
                fresh.spare.insert((spare, slot.id()));
            }
        }
        assert_eq!(slots.takers, fresh.takers);
        assert_eq!(slots.spare, fresh.spare);
        let idle = slots
            .iter()
            .filter(|s| Filed::of(s, slots.task_limit).idle)
            .count();
        assert_eq!(slots.idle(), idle);
        let live = slots.iter().filter(|s| s.is_live()).count();
        assert_eq!(slots.live(), live);
    }

    #[test]
    fn the_least_loaded_ready_worker_is_picked_and_every_change_is_filed() {
        let mut slots = Slots::new(Some(5));
        // Each worker's end and the I/O thread live as long as its slot.
        let mut ends = Vec::new();
        for id in 1..=3 {
            let (slot, worker, io) = numbered_slot(id, u64::MAX);
            slots.push(slot);
            ends.push((worker, io));
        }
        assert!(slots.any_starting());
        assert_eq!(slots.pick(1, 8, None, false), None, "none is ready");
        for id in 1..=3 {
            assert!(slots.get_mut(id).unwrap().mark_ready(0, None, false));
        }
        assert!(!slots.any_starting());
        assert_eq!(slots.idle(), 3);
        assert_filed_truly(&mut slots);

        slots.get_mut(1).unwrap().push_chunk(1, 0, job(2));
        slots.get_mut(2).unwrap().push_chunk(2, 0, job(1));
        assert_filed_truly(&mut slots);
        assert_eq!(slots.idle(), 1);
        // The idle one first, then the one holding fewest inputs, while
        // it has room by the time inputs take.
        assert_eq!(slots.pick(1, 8, Some(1_000.0), false), Some(3));
        slots.get_mut(3).unwrap().push_chunk(3, 0, job(3));
        assert_eq!(slots.pick(1, 8, Some(1_000.0), false), Some(2));
        // No room for long inputs once every worker holds some, unless
        // more wait than idle workers could start: then one chunk goes
        // behind the one a worker holds, if they have been timed...
        assert_eq!(slots.pick(1, 8, Some(1e9), false), None);
        assert_eq!(slots.pick(1, 8, Some(1e9), true), Some(2));
        assert_eq!(slots.pick(1, 8, None, true), None);
        // Nor for one past its task limit (5): worker 3 holds 3 of them.
        slots.get_mut(3).unwrap().push_chunk(4, 0, job(2));
        assert_filed_truly(&mut slots);
        assert!(!slots.takers.iter().any(|&(_, id)| id == 3));

        // A second chunk may be inputs to spare for an idle worker.
        slots.get_mut(2).unwrap().push_chunk(5, 0, job(4));
        let queued: Vec<_> = slots.most_queued().map(|(n, s)| (n, s.id())).collect();
        assert_eq!(queued, [(5, 3), (5, 2)]);
        // Never a third chunk for long inputs: worker 1 (one chunk) is
        // the only one left to take one.
        assert_eq!(slots.pick(1, 8, Some(1e9), true), Some(1));
        slots.get_mut(1).unwrap().push_chunk(6, 0, job(1));
        assert_eq!(slots.pick(1, 8, Some(1e9), true), None);
        slots.get_mut(2).unwrap().kill();
        let _ = slots.get_mut(2).unwrap().take_back();
        assert_filed_truly(&mut slots);
        let queued: Vec<_> = slots.most_queued().map(|(n, s)| (n, s.id())).collect();
        assert_eq!(queued, [(5, 3), (3, 1)]);
        assert_eq!(slots.live(), 2);

        // Taking a slot out moves the last into its place.
        assert!(slots.remove(1).is_some());
        assert!(slots.get(1).is_none());
        assert_eq!(slots.get(3).map(|s| s.id()), Some(3));
        assert_filed_truly(&mut slots);
        slots.for_each_mut(|slot| slot.kill());
        assert_filed_truly(&mut slots);
        assert_eq!(slots.live(), 0);
    }
}
