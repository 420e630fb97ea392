//! Filling a vector's spare capacity without zeroing it first: the one
//! place where received bytes become a vector's length.
//!
//! Reads hand back the part of a buffer they initialised as a `&mut [u8]`
//! (rustix's `read` and `pread` do, and so does
//! [`RacyView::copy_out_racy_uninit`](super::shm::RacyView::copy_out_racy_uninit)),
//! and [`Unfilled`] counts only what came back that way, so the length
//! [`append_filled`] gives a vector is proven initialised by safe code.

use std::mem::MaybeUninit;

use bytemuck::Pod;

/// Memory not yet initialised, filled from its start by reads that say
/// what they initialised.
pub(crate) struct Unfilled<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    filled: usize,
}

impl<'a> Unfilled<'a> {
    /// `buf`, none of it filled yet.
    pub(crate) fn new(buf: &'a mut [MaybeUninit<u8>]) -> Self {
        Unfilled { buf, filled: 0 }
    }

    /// How many bytes there are in all.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Passes the bytes not yet filled to `read`, which returns the ones
    /// it initialised (the start of what it was given), and counts them as
    /// filled: returns how many.
    ///
    /// # Panics
    /// If `read` returns any slice but a start of what it was given.
    pub(crate) fn fill<E>(
        &mut self,
        read: impl for<'b> FnOnce(&'b mut [MaybeUninit<u8>]) -> Result<&'b mut [u8], E>,
    ) -> Result<usize, E> {
        let rest = &mut self.buf[self.filled..];
        let (start, room) = (rest.as_ptr().cast::<u8>(), rest.len());
        let filled = read(rest)?;
        assert!(
            filled.is_empty() || std::ptr::eq(filled.as_ptr(), start) && filled.len() <= room,
            "a read returned bytes other than the start of its buffer"
        );
        self.filled += filled.len();
        Ok(filled.len())
    }
}

/// Copies `src` into the start of `dst`, which must be at least as long,
/// and returns the bytes it initialised there (`write_copy_of_slice`,
/// which the crate's minimum Rust version lacks).
///
/// # Panics
/// If `dst` is shorter than `src`.
pub(crate) fn copy_into_uninit<'a>(dst: &'a mut [MaybeUninit<u8>], src: &[u8]) -> &'a mut [u8] {
    let dst = &mut dst[..src.len()];
    // SAFETY: `dst` and `src` are `src.len()` bytes each (`dst` was cut
    // to that, which panics if it is shorter), and cannot overlap: `dst`
    // is borrowed mutably while `src` is borrowed.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast(), src.len()) };
    // SAFETY: every byte of `dst` was just written, and `MaybeUninit<u8>`
    // has the layout of `u8`.
    unsafe { &mut *(dst as *mut [MaybeUninit<u8>] as *mut [u8]) }
}

/// Runs `fill` over the first `count` elements of `out`'s spare capacity,
/// seen as bytes, then lengthens `out` by the whole elements it filled.
/// What `fill` returns, it returns.
///
/// # Panics
/// If `out` has room for fewer than `count` more elements.
pub(crate) fn append_filled<T: Pod, R>(
    out: &mut Vec<T>,
    count: usize,
    fill: impl FnOnce(&mut Unfilled<'_>) -> R,
) -> R {
    let spare = &mut out.spare_capacity_mut()[..count];
    let bytes = std::mem::size_of_val(spare);
    // SAFETY: `spare` is `bytes` bytes of memory we borrow mutably, aligned
    // for `T` and so for bytes; `MaybeUninit<u8>` asks nothing of what
    // those bytes hold.
    let spare: &mut [MaybeUninit<u8>] =
        unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast(), bytes) };
    let mut unfilled = Unfilled::new(spare);
    let result = fill(&mut unfilled);
    let whole = match std::mem::size_of::<T>() {
        0 => 0,
        size => unfilled.filled / size,
    };
    // SAFETY: `Unfilled::fill` counted only bytes that reads handed back
    // as initialised, from the start of the spare capacity on, so the first
    // `whole` elements past the length are initialised bytes, which any
    // `Pod` value may hold; `whole <= count` is within the capacity.
    unsafe { out.set_len(out.len() + whole) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Socket, Wait};

    /// A pair of connected sockets with `bytes` waiting at the second.
    fn arrived(bytes: &[u8]) -> Socket {
        let (a, b) = Socket::pair().unwrap();
        let mut written = 0;
        while written < bytes.len() {
            written += a.write(&bytes[written..]).unwrap();
        }
        b
    }

    #[test]
    fn a_vector_keeps_only_the_whole_elements_a_read_filled() {
        let socket = arrived(&[1, 0, 0, 0, 2, 0, 0, 0, 3, 0]);
        let mut out: Vec<u32> = Vec::with_capacity(4);
        let filled = append_filled(&mut out, 4, |spare| {
            spare
                .fill(|rest| socket.recv_uninit(rest, Wait::ForRoom))
                .unwrap()
        });
        assert_eq!(filled, 10);
        // The 2 bytes of a third element are not enough to keep it.
        assert_eq!(out, [1, 2]);
    }

    #[test]
    fn reads_fill_one_after_another_up_to_the_room_given() {
        let socket = arrived(b"abcdefgh");
        let mut out = b"xy".to_vec();
        out.reserve(5);
        append_filled(&mut out, 5, |spare| {
            let first = spare
                .fill(|rest| socket.recv_uninit(&mut rest[..2], Wait::ForRoom))
                .unwrap();
            let second = spare
                .fill(|rest| socket.recv_uninit(rest, Wait::ForRoom))
                .unwrap();
            assert_eq!((first, second), (2, 3));
        });
        assert_eq!(out, b"xyabcde");
    }

    #[test]
    #[should_panic(expected = "a read returned bytes other than the start of its buffer")]
    fn bytes_from_elsewhere_are_not_counted_as_filled() {
        // Initialised bytes, but not the buffer's: counting them would give
        // the vector uninitialised elements.
        let other: &'static mut [u8] = Box::leak(vec![7u8; 4].into_boxed_slice());
        let mut out: Vec<u8> = Vec::with_capacity(4);
        append_filled(&mut out, 4, |spare| {
            spare.fill(|_| Ok::<_, ()>(other)).unwrap();
        });
    }
}
