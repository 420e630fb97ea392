//! The eager map call (`map`, and [`MapWith`](super::map_with::MapWith)
//! with its options): takes inputs from the caller's iterator only as
//! a bounded window has room, encode and submit them chunk by chunk, and
//! collect the results in input order as they arrive, so that the parent
//! holds a window of encoded inputs rather than all of them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver};

use super::command::Commands;
use super::job::{chunk_size, decode_output, encode_item, Item, Job};
use super::journal::{Journal, JournalOptions};
use super::progress::{report, Progress};
use super::sink::{Channel, Delivery};
use super::spare::WINDOW_BYTES;
use crate::error::{ends_the_call, Error, ErrorKind, Result};
use crate::task::Task;

/// Chunks in flight per live worker: one running, one queued behind it,
/// one on its way (encoding or results travelling back).
pub(crate) const CHUNKS_PER_WORKER: usize = 3;
/// An automatic chunk is cut at its share of [`WINDOW_BYTES`], but never
/// below this many bytes: with thousands of workers a share is a few
/// hundred bytes, a handful of small inputs, and every chunk costs the
/// head and the worker a message each way whatever it holds (1,000,000
/// trivial inputs over 10,000 workers went out in chunks of 3). The
/// window may then reach this much per live worker (160 MiB for 10,000),
/// still far less than what each joined worker costs the head.
const MIN_CHUNK_BYTES: usize = 16 << 10;
/// Once a call's inputs have been timed in workers, its automatic chunks
/// carry at least this much work: the inputs left are spread over no more
/// workers than that allows. Every chunk costs the head and a worker a
/// message each way (tens of microseconds of the machine's time with
/// thousands of workers), so a cheap map over a large cluster goes out in
/// chunks of a millisecond's work rather than a handful of inputs, while
/// long tasks still go to every worker. What it costs is at most about
/// this much time spread less evenly at the end.
const MIN_CHUNK_WORK: Duration = Duration::from_millis(1);

/// What an input costs the parent while it is in flight, besides its
/// encoding: its `Item`, the allocation of its encoding (at least a small
/// heap block), its result on the way back, and its place among the
/// results held out of order.
fn input_cost<O>() -> usize {
    std::mem::size_of::<Item>()
        + 32
        + std::mem::size_of::<Delivery>()
        + std::mem::size_of::<Held<O>>()
}

/// A result held until the earlier ones arrive: `None` until it does. A
/// failure is boxed, so that a slot costs little more than an output.
type Held<O> = Option<std::result::Result<O, Box<Error>>>;
/// Results held out of order (waiting for an earlier, slower input) are
/// bounded by this many, or four times the inputs in flight if more.
const MIN_HELD: usize = 1024;
/// What a map call does when an input fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnFailure {
    /// Return that failure; the inputs not yet started are dropped (`map`).
    Stop,
    /// Keep it at its index and go on (`keep_failures`).
    Keep,
}

/// A call's options, as [`MapWith`](super::map_with::MapWith) set them.
pub(crate) struct Options {
    /// The caller's chunk size, or `None` for the automatic one.
    pub(crate) chunksize: Option<usize>,
    pub(crate) on_failure: OnFailure,
    pub(crate) journal: JournalOptions,
}

/// Runs `T` on every input and returns each input's result in input
/// order, passed through `keep` (which may end the call with an error);
/// with [`OnFailure::Stop`], the first failure to arrive instead.
///
/// `total` is the number of inputs the iterator announced, for the chunk
/// sizes and the progress reports: if the iterator yields a different
/// number, the reports' total follows what it yields. With `chunksize`
/// `None`, each chunk's size comes from the inputs left and the workers
/// live when it is cut (Python's four chunks per worker), capped so that
/// the window stays within [`WINDOW_BYTES`] (or [`MIN_CHUNK_BYTES`] per
/// live worker, if more). `on_progress` hears of every
/// batch of results that moved the count.
pub(crate) fn run<T: Task, R>(
    commands: &Commands,
    inputs: impl Iterator<Item = T::Input>,
    total: usize,
    options: Options,
    on_progress: &mut dyn FnMut(Progress),
    keep: impl FnMut(Result<T::Output>) -> Result<R>,
) -> Result<Vec<R>> {
    commands.check_open()?;
    commands.check_task(T::NAME)?;
    let journal = options.journal.open::<T>(commands.max_message_size())?;
    let (sender, receiver) = unbounded();
    let (stream, _cancel_on_return) = Channel::new(sender, commands.cancel_notice().clone());
    let mut call = Call::<T, _, R, _> {
        commands,
        inputs,
        inputs_done: false,
        stream: Some(stream),
        chunksize: options.chunksize.map(|size| size.max(1)),
        on_failure: options.on_failure,
        progress: Progress::new(total),
        next_index: 0,
        in_flight: BTreeMap::new(),
        inputs_in_flight: 0,
        bytes_in_flight: 0,
        next_in_order: 0,
        held: VecDeque::new(),
        outputs: Vec::new(),
        keep,
        journal,
    };
    // The caller's own count, so no reallocation doubles the outputs;
    // an iterator that overstates it only loses the reservation.
    let _ = call.outputs.try_reserve_exact(total);
    call.collect(&receiver, on_progress)?;
    Ok(call.outputs)
}

/// A chunk submitted whose results have not all arrived.
struct InFlight {
    /// One past its last input's index.
    end: usize,
    /// Its inputs whose result has not arrived.
    remaining: usize,
    /// What it counts against [`WINDOW_BYTES`].
    bytes: usize,
}

/// One eager map call in progress.
struct Call<'c, T: Task, I, R, K> {
    commands: &'c Commands,
    inputs: I,
    inputs_done: bool,
    /// The results channel for new chunks; dropped once every input is
    /// submitted, so that the receiver sees the end if the pool goes.
    stream: Option<Arc<Channel>>,
    /// The caller's chunk size, or `None` for the automatic one.
    chunksize: Option<usize>,
    on_failure: OnFailure,
    progress: Progress,
    /// Index of the next input to take from the iterator.
    next_index: usize,
    /// Chunks in flight by their first input's index.
    in_flight: BTreeMap<usize, InFlight>,
    inputs_in_flight: usize,
    bytes_in_flight: usize,
    /// Results from index `next_in_order` on, held until the earlier ones
    /// arrive; one slot per input taken.
    next_in_order: usize,
    held: VecDeque<Held<T::Output>>,
    outputs: Vec<R>,
    keep: K,
    /// Where results are journaled, and journaled ones replayed from.
    journal: Option<Journal>,
}

impl<T, I, R, K> Call<'_, T, I, R, K>
where
    T: Task,
    I: Iterator<Item = T::Input>,
    K: FnMut(Result<T::Output>) -> Result<R>,
{
    /// Submits and collects until every input's result is in `outputs`.
    fn collect(
        &mut self,
        receiver: &Receiver<Vec<Delivery>>,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Result<()> {
        let mut reported = None;
        self.top_up()?;
        self.emit_in_order()?;
        report(self.progress, &mut reported, on_progress);
        while !(self.inputs_done && self.in_flight.is_empty()) {
            let batch = receiver.recv().map_err(|_| {
                Error::new(
                    ErrorKind::Closed,
                    "the pool stopped before the map finished",
                )
            })?;
            let first_failure = self.absorb(batch);
            if let Some(journal) = &mut self.journal {
                journal.flush()?;
            }
            report(self.progress, &mut reported, on_progress);
            if let Some(err) = first_failure {
                if self.on_failure == OnFailure::Stop || ends_the_call(&err) {
                    return Err(err);
                }
            }
            self.emit_in_order()?;
            self.top_up()?;
            self.emit_in_order()?;
            report(self.progress, &mut reported, on_progress);
        }
        if let Some(journal) = &mut self.journal {
            journal.finish()?;
        }
        Ok(())
    }

    /// Whether another chunk may go out: always when none is in flight,
    /// else while the chunks, the bytes and the results held out of
    /// order are all within bounds.
    fn has_room(&self) -> bool {
        if self.in_flight.is_empty() {
            return true;
        }
        // Spread over all the work outstanding, in flight included: cut by
        // the inputs left alone, room shrank at the end and held a timed
        // map's last inputs back until results came in, a round late.
        let workers = self.spread(self.inputs_left() + self.inputs_in_flight);
        let held = self.held.len().saturating_sub(self.inputs_in_flight);
        if held >= MIN_HELD.max(4 * self.inputs_in_flight) {
            return false;
        }
        // A chunk for every worker, whatever their size; more only within
        // the byte cap.
        self.in_flight.len() < workers
            || (self.in_flight.len() < CHUNKS_PER_WORKER * workers
                && self.bytes_in_flight < WINDOW_BYTES)
    }

    /// Takes inputs from the iterator, encodes them and submits them chunk
    /// by chunk while the window has room. With [`OnFailure::Stop`], an
    /// input that cannot be encoded ends the call.
    fn top_up(&mut self) -> Result<()> {
        let input_cost = input_cost::<T::Output>();
        while !self.inputs_done && self.has_room() {
            let left = self.inputs_left();
            let workers = self.spread(left);
            let (size, byte_cap) = match self.chunksize {
                Some(size) => (size, usize::MAX),
                None => (
                    chunk_size(left, workers),
                    (WINDOW_BYTES / (CHUNKS_PER_WORKER * workers)).max(MIN_CHUNK_BYTES),
                ),
            };
            let first = self.next_index;
            let mut items = Vec::with_capacity(size.min(4096));
            let mut bytes = 0;
            while items.len() < size && bytes < byte_cap {
                let Some(input) = self.inputs.next() else {
                    self.inputs_done = true;
                    break;
                };
                let index = self.next_index;
                self.next_index += 1;
                self.progress.total = self.progress.total.max(self.next_index);
                self.held.push_back(None);
                let (buffer, room) = match &self.stream {
                    Some(stream) => stream.spare_buffer(),
                    None => (Vec::new(), 0),
                };
                let limit = self.commands.max_message_size();
                match encode_item::<T>(&input, index, limit, buffer, room) {
                    Ok(item) => {
                        if let Some(journal) = &mut self.journal {
                            if let Some(replayed) = journal.replay_or_start(&item)? {
                                self.hold(index, decode_output::<T>(replayed));
                                continue;
                            }
                        }
                        bytes += item.input().len() + input_cost;
                        items.push(item);
                    }
                    Err(err) if self.on_failure == OnFailure::Stop => return Err(err),
                    Err(err) => self.hold(index, Err(err)),
                }
            }
            if !items.is_empty() {
                self.submit(first, items, bytes);
            }
        }
        if self.inputs_done {
            // What the iterator yielded is the total, whatever it announced.
            self.progress.total = self.next_index;
            self.stream = None;
        }
        Ok(())
    }

    /// The inputs not yet cut into chunks.
    fn inputs_left(&self) -> usize {
        self.progress.total.saturating_sub(self.next_index)
    }

    /// How many workers `inputs` of the call are spread over: every live
    /// one, but with automatic chunks once its inputs have been timed, no
    /// more than gives each chunk [`MIN_CHUNK_WORK`] of their work
    /// (Python's four chunks each).
    fn spread(&self, inputs: usize) -> usize {
        let live = self.commands.live_workers().max(1);
        let nanos = self.stream.as_ref().and_then(|s| s.nanos_per_item());
        match nanos {
            Some(nanos) if inputs > 0 && self.chunksize.is_none() => {
                let chunks = inputs as f64 * nanos / MIN_CHUNK_WORK.as_nanos() as f64;
                live.min(((chunks / 4.0).ceil() as usize).max(1))
            }
            _ => live,
        }
    }

    fn submit(&mut self, first: usize, items: Vec<Item>, bytes: usize) {
        let Some(stream) = &self.stream else {
            return;
        };
        self.inputs_in_flight += items.len();
        self.bytes_in_flight += bytes;
        let chunk = InFlight {
            end: self.next_index,
            remaining: items.len(),
            bytes,
        };
        self.in_flight.insert(first, chunk);
        self.commands
            .submit(vec![Job::streamed::<T>(items, stream)]);
    }

    /// Files a result at its index, counting it in the progress.
    fn hold(&mut self, index: usize, result: Result<T::Output>) {
        if let Some(slot) = index
            .checked_sub(self.next_in_order)
            .and_then(|offset| self.held.get_mut(offset))
        {
            self.progress.count(result.is_err());
            *slot = Some(result.map_err(Box::new));
        }
    }

    /// Files a batch of results, counting each input once; returns the
    /// batch's first failure, if any (one that ends the call first).
    fn absorb(&mut self, batch: Vec<Delivery>) -> Option<Error> {
        let mut first_failure: Option<Error> = None;
        for delivery in batch {
            let waiting = delivery
                .index
                .checked_sub(self.next_in_order)
                .and_then(|offset| self.held.get(offset))
                .is_some_and(Option::is_none);
            if !waiting || !self.arrived(delivery.index) {
                continue;
            }
            let index = delivery.index;
            if let Some(journal) = &mut self.journal {
                journal.record(index, &delivery.outcome);
            }
            let result = decode_output::<T>(delivery);
            if let Err(err) = &result {
                let ends = ends_the_call(err);
                if first_failure.is_none()
                    || (ends && !first_failure.as_ref().is_some_and(ends_the_call))
                {
                    first_failure = Some(err.clone());
                }
            }
            self.hold(index, result);
        }
        first_failure
    }

    /// Counts the result of input `index` off its chunk; false if no chunk
    /// in flight holds it (it failed before it was submitted).
    fn arrived(&mut self, index: usize) -> bool {
        let Some((&first, chunk)) = self.in_flight.range_mut(..=index).next_back() else {
            return false;
        };
        if index >= chunk.end {
            return false;
        }
        chunk.remaining -= 1;
        self.inputs_in_flight -= 1;
        if chunk.remaining == 0 {
            self.bytes_in_flight -= chunk.bytes;
            self.in_flight.remove(&first);
        }
        true
    }

    /// Moves the results that are next in input order to the outputs.
    fn emit_in_order(&mut self) -> Result<()> {
        while matches!(self.held.front(), Some(Some(_))) {
            let Some(Some(result)) = self.held.pop_front() else {
                break;
            };
            self.next_in_order += 1;
            self.outputs.push((self.keep)(result.map_err(|err| *err))?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use crossbeam_channel::Receiver;

    use super::*;
    use crate::parent::command::Command;
    use crate::parent::sink::{CancelNotice, Payload, Sink};

    crate::task! { fn echo(x: u32) -> u32 { x } }

    fn ok(index: usize, value: u32) -> Delivery {
        let message = Arc::new(connection::encode(&value).unwrap());
        let len = message.len();
        Delivery {
            index,
            outcome: Ok(Payload::new(message, 0..len)),
        }
    }

    fn failed(index: usize, kind: ErrorKind) -> Delivery {
        Delivery {
            index,
            outcome: Err(Error::new(kind, "failed").with_index(index)),
        }
    }

    /// Commands to a fake dispatcher that reports `live` workers.
    fn commands(live: usize) -> (Commands, Receiver<Command>) {
        let (sender, receiver) = unbounded();
        let live = Arc::new(AtomicUsize::new(live));
        let (notice, _) = CancelNotice::pair();
        (Commands::new(sender, 0, live, u64::MAX, notice), receiver)
    }

    /// What a fake dispatcher saw of one map call.
    #[derive(Default)]
    struct Seen {
        chunk_sizes: Vec<usize>,
        most_chunks_out: usize,
        most_inputs_out: usize,
    }

    /// A dispatcher that holds every job until the map can submit no more,
    /// then answers one (alternately the oldest and the newest, so results
    /// arrive out of order), echoing each input, until `total` are answered.
    fn fake_dispatcher(commands: Receiver<Command>, total: usize) -> Seen {
        let mut seen = Seen::default();
        let mut held: VecDeque<Job> = VecDeque::new();
        let mut answered = 0;
        let mut newest = false;
        while answered < total {
            let command = match held.is_empty() {
                true => commands.recv().ok(),
                false => commands
                    .recv_timeout(std::time::Duration::from_millis(20))
                    .ok(),
            };
            if let Some(Command::SubmitMany(jobs)) = command {
                for job in jobs {
                    seen.chunk_sizes.push(job.items.len());
                    held.push_back(job);
                }
                seen.most_chunks_out = seen.most_chunks_out.max(held.len());
                let out = held.iter().map(|job| job.items.len()).sum();
                seen.most_inputs_out = seen.most_inputs_out.max(out);
                continue;
            }
            let job = match newest {
                true => held.pop_back(),
                false => held.pop_front(),
            };
            newest = !newest;
            let Some(mut job) = job else { continue };
            let batch: Vec<Delivery> = std::mem::take(&mut job.items)
                .into_iter()
                .map(|item| {
                    let len = item.input().len();
                    let payload = Payload::new(Arc::new(item.input().to_vec()), 0..len);
                    Delivery {
                        index: item.index,
                        outcome: Ok(payload),
                    }
                })
                .collect();
            answered += batch.len();
            if let Sink::Channel(stream) = &job.sink {
                stream.send(batch);
            }
        }
        seen
    }

    fn map_on_fake(live: usize, total: usize, chunksize: Option<usize>) -> (Vec<u32>, Seen) {
        run_on_fake::<echo>(live, (0..total as u32).collect(), chunksize)
    }

    /// A map of `T` over `inputs` on a fake dispatcher that reports `live`
    /// workers and echoes each input as its output.
    fn run_on_fake<T: Task>(
        live: usize,
        inputs: Vec<T::Input>,
        chunksize: Option<usize>,
    ) -> (Vec<T::Output>, Seen)
    where
        T::Input: Send,
        T::Output: Send,
    {
        let (commands, receiver) = commands(live);
        let total = inputs.len();
        std::thread::scope(|scope| {
            let dispatcher = scope.spawn(move || fake_dispatcher(receiver, total));
            let outputs = run::<T, _>(
                &commands,
                inputs.into_iter(),
                total,
                Options {
                    chunksize,
                    on_failure: OnFailure::Stop,
                    journal: JournalOptions::default(),
                },
                &mut |_| {},
                |result| result,
            )
            .unwrap();
            (outputs, dispatcher.join().unwrap())
        })
    }

    #[test]
    fn inputs_are_taken_as_the_window_has_room_and_results_come_back_in_order() {
        // Twice what the window holds.
        let cost = input_cost::<u32>();
        let total = 2 * WINDOW_BYTES / cost;
        let (outputs, seen) = map_on_fake(2, total, None);
        assert!(outputs.iter().copied().eq(0..total as u32));
        assert!(seen.most_chunks_out <= CHUNKS_PER_WORKER * 2);
        // Each input counts at least `cost`; the last chunk may take
        // the window past its cap by one chunk's cap.
        let chunk_cap = WINDOW_BYTES / (CHUNKS_PER_WORKER * 2);
        let most = (WINDOW_BYTES + chunk_cap) / cost;
        assert!(
            seen.most_inputs_out <= most,
            "{} > {most}",
            seen.most_inputs_out
        );
    }

    crate::task! {
        fn echo_bytes(x: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf { x }
    }

    #[test]
    fn chunks_of_large_inputs_are_bounded_by_bytes_as_well_as_by_count() {
        const MIB: usize = 1 << 20;
        let total = 40;
        let inputs: Vec<serde_bytes::ByteBuf> = (0..total)
            .map(|i| serde_bytes::ByteBuf::from(vec![i as u8; MIB]))
            .collect();
        let (outputs, seen) = run_on_fake::<echo_bytes>(2, inputs.clone(), None);
        assert_eq!(outputs, inputs);
        // By count alone (Python's rule) the first chunks would hold 5
        // inputs: 40 over 4 chunks for each of 2 workers. A chunk is cut
        // once it holds its share of the window, so it passes the share
        // by one input at most.
        let share = WINDOW_BYTES / (CHUNKS_PER_WORKER * 2);
        let most = share.div_ceil(MIB);
        assert!(
            seen.chunk_sizes.iter().all(|&size| size <= most),
            "{:?}",
            seen.chunk_sizes
        );
        assert!(
            seen.most_inputs_out * MIB <= WINDOW_BYTES + share + MIB,
            "{} MiB out",
            seen.most_inputs_out
        );
    }

    #[test]
    fn automatic_chunks_are_sized_by_the_live_workers() {
        let (outputs, seen) = map_on_fake(6, 64, None);
        assert_eq!(outputs.len(), 64);
        // 64 inputs over 4 chunks for each of 6 workers: 3, then smaller.
        assert_eq!(seen.chunk_sizes[0], 3);
        assert!(seen.chunk_sizes.iter().all(|&size| size <= 3));
        assert!(seen.chunk_sizes.len() >= 6 * 4);
    }

    /// Maps `echo` over `0..total` with automatic chunks.
    fn map_echo_automatic(commands: &Commands, total: usize) -> Result<Vec<u32>> {
        let options = Options {
            chunksize: None,
            on_failure: OnFailure::Stop,
            journal: JournalOptions::default(),
        };
        run::<echo, _>(
            commands,
            0..total as u32,
            total,
            options,
            &mut |_| {},
            |result| result,
        )
    }

    /// Answers `job` as a worker running `echo` would, noting
    /// `nanos_per_item` of work per input if given; returns its size.
    fn echo_answer(mut job: Job, nanos_per_item: Option<f64>) -> usize {
        let size = job.items.len();
        let batch = std::mem::take(&mut job.items)
            .into_iter()
            .map(|item| {
                let input = item.input().to_vec();
                let len = input.len();
                Delivery {
                    index: item.index,
                    outcome: Ok(Payload::new(Arc::new(input), 0..len)),
                }
            })
            .collect();
        if let Sink::Channel(stream) = &job.sink {
            if let Some(nanos) = nanos_per_item {
                stream.note_nanos_per_item(nanos);
            }
            stream.send(batch);
        }
        size
    }

    /// Maps `echo` over `total` inputs with `live` workers reported, on a
    /// fake dispatcher that answers each chunk as it comes, noting
    /// `nanos_per_item` of work per input if given; returns the chunks'
    /// sizes.
    fn chunks_answered_at_once(
        live: usize,
        total: usize,
        nanos_per_item: Option<f64>,
    ) -> Vec<usize> {
        let (commands, receiver) = commands(live);
        std::thread::scope(|scope| {
            let dispatcher = scope.spawn(move || {
                let mut sizes = Vec::new();
                while let Ok(Command::SubmitMany(jobs)) = receiver.recv() {
                    for job in jobs {
                        sizes.push(echo_answer(job, nanos_per_item));
                    }
                }
                sizes
            });
            let outputs = map_echo_automatic(&commands, total).unwrap();
            assert!(outputs.into_iter().eq(0..total as u32));
            drop(commands);
            dispatcher.join().unwrap()
        })
    }

    #[test]
    fn many_workers_do_not_shrink_chunks_of_small_inputs_below_pythons_size() {
        // 200,000 inputs over 4 chunks for each of 10,000 workers: 5. The
        // window's share per chunk (16 MiB over 30,000) would hold 3.
        let sizes = chunks_answered_at_once(10_000, 200_000, None);
        assert_eq!(sizes[0], 5);
    }

    #[test]
    fn timed_cheap_inputs_go_in_chunks_of_a_millisecond_of_work() {
        // 100 ns an input: a millisecond is 10,000 inputs, cut down to
        // the window's share of the few workers that need.
        let sizes = chunks_answered_at_once(10_000, 200_000, Some(100.0));
        let largest = sizes.iter().copied().max().unwrap();
        assert!(largest >= 2_000, "largest chunk {largest}");
        // Python's size would make 40,000 chunks. Before the first answer
        // times the inputs, at most one chunk a worker goes out (10,000
        // of Python's size, however the threads are scheduled); after it,
        // a few dozen more.
        assert!(sizes.len() < 20_000, "{} chunks", sizes.len());
        // Long inputs still go one chunk to a worker, Python's size.
        let sizes = chunks_answered_at_once(1_000, 8_000, Some(1e9));
        assert!(sizes.iter().all(|&size| size <= 2), "{sizes:?}");
    }

    #[test]
    fn a_timed_map_of_long_inputs_sends_its_last_inputs_without_waiting_for_results() {
        // 200 workers, 800 inputs of 200 ms each: the first 600 go out at
        // once (three chunks a worker), then 200 are answered (timing the
        // inputs) and the rest must all go out with nothing more answered.
        // Room cut with the inputs left held the last few back a round.
        let (live, total) = (200, 800);
        let (commands, receiver) = commands(live);
        std::thread::scope(|scope| {
            let dispatcher = scope.spawn(move || {
                let patience = std::time::Duration::from_secs(60);
                let mut out: VecDeque<Job> = VecDeque::new();
                let mut sent = 0;
                let mut answered = 0;
                while answered < total {
                    // Answer 200 once 600 are out, then only once all are.
                    let answer = (sent == 600 && answered == 0) || sent == total;
                    if !answer {
                        match receiver.recv_timeout(patience) {
                            Ok(Command::SubmitMany(jobs)) => {
                                sent += jobs.iter().map(|job| job.items.len()).sum::<usize>();
                                out.extend(jobs);
                            }
                            Ok(_) => {}
                            Err(_) => return (sent, answered),
                        }
                        continue;
                    }
                    let count = if sent == total { out.len() } else { 200 };
                    for job in out.drain(..count) {
                        answered += echo_answer(job, Some(2e8));
                    }
                }
                (sent, answered)
            });
            let outputs = map_echo_automatic(&commands, total);
            drop(commands);
            let (sent, answered) = dispatcher.join().unwrap();
            assert_eq!((sent, answered), (total, total), "inputs held back");
            assert!(outputs.unwrap().into_iter().eq(0..total as u32));
        })
    }

    #[test]
    fn a_chosen_chunk_size_is_kept() {
        let (outputs, seen) = map_on_fake(2, 1000, Some(7));
        assert_eq!(outputs.len(), 1000);
        let (last, full) = seen.chunk_sizes.split_last().unwrap();
        assert!(full.iter().all(|&size| size == 7));
        assert_eq!(*last, 1000 % 7);
    }

    #[test]
    fn an_iterator_that_ends_early_sets_the_total() {
        let (commands, receiver) = commands(1);
        let mut reports = Vec::new();
        std::thread::scope(|scope| {
            scope.spawn(move || fake_dispatcher(receiver, 5));
            let outputs = run::<echo, _>(
                &commands,
                0..5,
                9,
                Options {
                    chunksize: None,
                    on_failure: OnFailure::Keep,
                    journal: JournalOptions::default(),
                },
                &mut |progress| reports.push(progress),
                Ok,
            )
            .unwrap();
            assert_eq!(outputs.len(), 5);
        });
        let last = reports.last().unwrap();
        assert_eq!((last.done, last.total), (5, 5));
    }

    type Keep = fn(Result<u32>) -> Result<u32>;

    /// A call with `n` inputs taken and submitted as one chunk.
    fn call_with(n: usize, commands: &Commands) -> Call<'_, echo, std::ops::Range<u32>, u32, Keep> {
        let (sender, _receiver) = unbounded();
        let (stream, _cancel) = Channel::new(sender, commands.cancel_notice().clone());
        let mut call = Call {
            commands,
            inputs: 0..0,
            inputs_done: true,
            stream: Some(stream),
            chunksize: None,
            on_failure: OnFailure::Keep,
            progress: Progress::new(n),
            next_index: n,
            in_flight: BTreeMap::new(),
            inputs_in_flight: 0,
            bytes_in_flight: 0,
            next_in_order: 0,
            held: (0..n).map(|_| None).collect(),
            outputs: Vec::new(),
            keep: std::convert::identity as Keep,
            journal: None,
        };
        let items = (0..n).map(|index| Item::new(index, Vec::new())).collect();
        call.submit(0, items, 0);
        call
    }

    #[test]
    fn each_input_counts_once_and_failures_are_kept_at_their_index() {
        let (commands, _receiver) = commands(1);
        let mut call = call_with(3, &commands);
        let first = call.absorb(vec![ok(2, 20), failed(0, ErrorKind::TaskFailed), ok(2, 99)]);
        assert_eq!(first.map(|err| err.kind()), Some(ErrorKind::TaskFailed));
        assert_eq!((call.progress.done, call.progress.failed), (2, 1));
        // A result for an index already filed, or out of range, counts nothing.
        assert!(call.absorb(vec![ok(0, 1), ok(7, 7)]).is_none());
        assert_eq!((call.progress.done, call.progress.failed), (2, 1));
        assert_eq!(call.inputs_in_flight, 1);
        call.absorb(vec![ok(1, 10)]);
        assert!(call.progress.is_finished());
        assert!(call.in_flight.is_empty());
        let results: Vec<_> = call.held.into_iter().flatten().collect();
        assert_eq!(results[0].as_ref().unwrap_err().index(), Some(0));
        assert_eq!(results[1].as_ref().ok(), Some(&10));
        assert_eq!(results[2].as_ref().ok(), Some(&20));
    }

    #[test]
    fn a_call_ending_error_wins_over_an_input_failure_in_the_same_batch() {
        let (commands, _receiver) = commands(1);
        let mut call = call_with(2, &commands);
        let first = call.absorb(vec![
            failed(0, ErrorKind::Panicked),
            failed(1, ErrorKind::Interrupted),
        ]);
        assert_eq!(first.map(|err| err.kind()), Some(ErrorKind::Interrupted));
    }

    #[test]
    fn reports_only_moves() {
        let mut seen = Vec::new();
        let mut last = None;
        let mut progress = Progress::new(2);
        report(progress, &mut last, &mut |p| seen.push(p.done));
        report(progress, &mut last, &mut |p| seen.push(p.done));
        progress.count(false);
        report(progress, &mut last, &mut |p| seen.push(p.done));
        assert_eq!(seen, [0, 1]);
    }
}
