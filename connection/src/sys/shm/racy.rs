//! Copying out of a read-only mapping of memory that another process may
//! write meanwhile (a recyclable memfd): relaxed atomic loads, never a
//! `&[u8]`, so a sender that writes while we read garbles what we copy but
//! never breaks a guarantee of Rust's.
//!
//! Atomic loads on read-only memory are sound only as far as std promises
//! that a relaxed load is a plain load there (a wider one may be a
//! compare-exchange, which faults on a read-only page): up to 8 bytes on
//! the 64-bit targets its table lists, 4 on the 32-bit ones, and nothing on
//! targets it does not list (the "Atomic accesses to read-only memory"
//! section of `std::sync::atomic`). So a [`RacyView`] loads bytes and
//! `usize` words, the native width and never wider than that limit on a
//! listed target; on the others it cannot be made at all, and a recyclable
//! memfd is copied out with `pread` instead.

use std::mem::{size_of, MaybeUninit};

/// Compiles `yes` on the targets listed, `no` everywhere else: the list
/// is written once.
macro_rules! by_target_arch {
    ([$($arch:literal),* $(,)?] yes: $yes:item no: $no:item) => {
        #[cfg(any($(target_arch = $arch),*))]
        $yes
        #[cfg(not(any($(target_arch = $arch),*)))]
        $no
    };
}

/// A read-only mapping of a whole memfd that its sender may still write,
/// only ever copied out of ([`copy_out_racy`](RacyView::copy_out_racy)).
#[derive(Debug)]
pub(crate) struct RacyView(loads::Inner);

/// The word a copy loads at a time: the native width.
type Word = usize;
const WORD: usize = size_of::<Word>();

// The targets std's table lists, at 8 bytes then at 4: on each, a relaxed
// load of a `usize` (8 or 4 bytes there, or 4 under an ABI with 32-bit
// pointers such as x32) is within its limit.
by_target_arch! {
    [
        "x86_64", "aarch64", "loongarch64", "mips64", "mips64r6", "powerpc64", "riscv64",
        "sparc64", "s390x",
        "x86", "arm", "loongarch32", "mips", "mips32r6", "powerpc", "riscv32", "sparc", "hexagon",
    ]
    yes: mod loads {
        use std::io;
        use std::os::fd::BorrowedFd;
        use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};

        use super::{RacyView, Word, WORD};
        use crate::sys::shm::Mapping;

        pub(super) type Inner = Mapping;

        impl RacyView {
            /// Maps a checked recyclable memfd of `len` bytes read-only.
            pub(crate) fn map(fd: BorrowedFd<'_>, len: usize) -> io::Result<RacyView> {
                Mapping::read_only(fd, len).map(RacyView)
            }

            pub(super) fn len(&self) -> usize {
                self.0.len
            }

            pub(super) fn byte_at(&self, at: usize) -> u8 {
                debug_assert!(at < self.0.len);
                // SAFETY: `at` is inside the mapping (the callers check),
                // which stays mapped while `self` lives; its memory is only
                // ever read, through atomics, whatever another process does.
                // A relaxed load of one byte is a plain load on this target,
                // as std promises (see the module's comment), so it does not
                // write the read-only page.
                unsafe { AtomicU8::from_ptr(self.0.ptr.as_ptr().add(at)).load(Relaxed) }
            }

            /// The word at byte `at`, which must be word-aligned.
            #[inline(always)]
            pub(super) fn word_at(&self, at: usize) -> Word {
                let ptr = self.0.ptr.as_ptr().wrapping_add(at).cast::<Word>();
                debug_assert!(ptr.is_aligned() && at + WORD <= self.0.len);
                // SAFETY: as for `byte_at`; the callers pass an aligned
                // word inside the mapping; a relaxed load of a `usize` is a
                // plain load on every target this is compiled for, no wider
                // than std's limit for read-only memory there.
                unsafe { AtomicUsize::from_ptr(ptr).load(Relaxed) }
            }
        }
    }
    no: mod loads {
        use std::io;
        use std::os::fd::BorrowedFd;

        use super::{RacyView, Word};

        /// Nothing, so that no racy copy can ever run here.
        #[derive(Debug)]
        pub(super) enum Inner {}

        impl RacyView {
            /// `Unsupported`: this target promises no atomic load on
            /// read-only memory; read the memfd with `pread`.
            pub(crate) fn map(_fd: BorrowedFd<'_>, _len: usize) -> io::Result<RacyView> {
                Err(io::ErrorKind::Unsupported.into())
            }

            pub(super) fn len(&self) -> usize {
                match self.0 {}
            }

            pub(super) fn byte_at(&self, _at: usize) -> u8 {
                match self.0 {}
            }

            pub(super) fn word_at(&self, _at: usize) -> Word {
                match self.0 {}
            }
        }
    }
}

impl RacyView {
    /// Copies `dst.len()` bytes from `offset` on into `dst`. A sender that
    /// writes meanwhile can garble what we copy, nothing more. Panics if
    /// the range is outside the mapping.
    pub(crate) fn copy_out_racy(&self, offset: usize, dst: &mut [u8]) {
        // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and
        // `copy_out_racy_uninit` only ever stores initialized bytes, so
        // `dst` stays initialized.
        let dst = unsafe { &mut *(dst as *mut [u8] as *mut [MaybeUninit<u8>]) };
        self.copy_out_racy_uninit(offset, dst);
    }

    /// [`copy_out_racy`](Self::copy_out_racy) into memory not yet
    /// initialized (a `Vec`'s spare capacity), which it initializes whole:
    /// no pass of zeroes before the copy. Returns `dst`, initialized.
    pub(crate) fn copy_out_racy_uninit<'a>(
        &self,
        offset: usize,
        dst: &'a mut [MaybeUninit<u8>],
    ) -> &'a mut [u8] {
        let end = offset.checked_add(dst.len()).expect("range overflows");
        assert!(end <= self.len(), "copy past the end of the mapping");
        if dst.is_empty() {
            return &mut [];
        }
        // The mapping starts page-aligned: a word's alignment is its
        // offset's.
        let head = offset.next_multiple_of(WORD).min(end) - offset;
        let words = (dst.len() - head) / WORD;
        let (front, rest) = dst.split_at_mut(head);
        let (middle, tail) = rest.split_at_mut(words * WORD);
        for (i, byte) in front.iter_mut().enumerate() {
            byte.write(self.byte_at(offset + i));
        }
        let word_base = offset + head;
        let word_at = |i: usize| self.word_at(word_base + i * WORD);
        if !stream_words(middle, word_at) {
            let out = middle.as_mut_ptr().cast::<Word>();
            copy_words(words, word_at, |i, word| {
                // SAFETY: word `i` lies within `middle` (`i < words`, and
                // `middle` is `words` words), which we borrow mutably;
                // unaligned, since `dst` may start anywhere.
                unsafe { out.add(i).write_unaligned(word) }
            });
        }
        let tail_start = offset + head + words * WORD;
        for (i, byte) in tail.iter_mut().enumerate() {
            byte.write(self.byte_at(tail_start + i));
        }
        // SAFETY: `u8` has the layout of `MaybeUninit<u8>`, and every byte
        // of `dst` was written above: `front` and `tail` a byte at a time,
        // `middle` a word at a time (`stream_words` or `copy_words`).
        unsafe { &mut *(dst as *mut [MaybeUninit<u8>] as *mut [u8]) }
    }
}

/// Stores `words` words, each `load(i)` as `store(i, _)`, eight a step:
/// the loads issue back to back, which keeps a copy at `memcpy`'s speed
/// (a word a step ran about 7% slower).
#[inline(always)]
fn copy_words(words: usize, load: impl Fn(usize) -> Word, mut store: impl FnMut(usize, Word)) {
    let mut i = 0;
    while i + 8 <= words {
        let loaded: [Word; 8] = std::array::from_fn(|k| load(i + k));
        for (k, word) in loaded.into_iter().enumerate() {
            store(i + k, word);
        }
        i += 8;
    }
    while i < words {
        store(i, load(i));
        i += 1;
    }
}

/// Fills `out` (a whole number of words) with the words of `load`, with
/// stores that go past the caches, when the copy is long enough for that
/// to pay and `out` is aligned for them; whether it did.
#[cfg(all(target_arch = "x86_64", target_pointer_width = "64"))]
#[inline(always)]
fn stream_words(out: &mut [MaybeUninit<u8>], load: impl Fn(usize) -> Word) -> bool {
    use std::arch::x86_64::{_mm_sfence, _mm_stream_si64};
    let words = out.len() / WORD;
    let out = out.as_mut_ptr().cast::<Word>();
    if words < STREAM_WORDS || !out.is_aligned() {
        return false;
    }
    copy_words(words, load, |i, word| {
        // SAFETY: word `i < words` lies within `out`, which we borrow
        // mutably, and `out` is 8-aligned (checked; a word is 8 bytes
        // here); the instruction needs SSE2, which every x86_64 has.
        unsafe { _mm_stream_si64(out.add(i).cast(), word as i64) }
    });
    // SAFETY: a plain fence, ordering the streaming stores before whatever
    // reads `out` next.
    unsafe { _mm_sfence() };
    true
}

/// Elsewhere every copy takes ordinary stores.
#[cfg(not(all(target_arch = "x86_64", target_pointer_width = "64")))]
#[inline(always)]
fn stream_words(_out: &mut [MaybeUninit<u8>], _load: impl Fn(usize) -> Word) -> bool {
    false
}

/// From this many words up (16 MiB), [`RacyView::copy_out_racy`] stores
/// past the caches: such a copy would push out most of what they hold
/// anyway, and ordinary stores first read every destination line. Below
/// it the copy may still sit in the last-level cache (32 MiB on the
/// machine measured) when its reader decodes it, as a pool worker does
/// with its 4 MiB inputs; glibc's `memcpy` draws its line in the same
/// region.
#[cfg(all(target_arch = "x86_64", target_pointer_width = "64"))]
const STREAM_WORDS: usize = (16 << 20) / WORD;
