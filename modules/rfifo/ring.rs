// SPDX-License-Identifier: GPL-2.0

//! The byte ring of one device: capacity bounds, wrap-around index arithmetic, the copies
//! between the ring and the caller's buffer and their accounting. Safe code, used under the
//! device lock (`crate::fifo`); its KUnit suite `rfifo_ring` is at the end of this file.
//!
//! The copies are generic over [`Source`]/[`Sink`] so that the same arithmetic runs on user
//! memory (`IovIterSource`/`IovIterDest`, a copy may stop short at a fault) and, in the
//! tests, on slices that stop short where a test wants them to.

use crate::{
    mem::RingMem,
    uapi::{
        MAX_CAPACITY,
        MIN_CAPACITY, //
    },
};
use core::cmp::min;
use kernel::{
    alloc::Flags,
    iov::{
        IovIterDest,
        IovIterSource, //
    },
    prelude::*,
};

/// `PIPE_BUF`: writes up to this size are atomic (if the capacity allows).
pub(crate) const PIPE_BUF: usize = 4096;

/// Rings are sized by users: charge them to the opener's memory cgroup (as pipes are) and
/// report a failure as `ENOMEM` without a warning splat in the log.
pub(crate) fn ring_gfp() -> Flags {
    GFP_KERNEL_ACCOUNT | __GFP_NOWARN
}

/// `bytes` as a ring size if it is within `MIN_CAPACITY..=MAX_CAPACITY`, else `EINVAL`.
pub(crate) fn check_capacity(bytes: u32) -> Result<usize> {
    if (MIN_CAPACITY..=MAX_CAPACITY).contains(&bytes) {
        Ok(bytes as usize)
    } else {
        Err(EINVAL)
    }
}

/// [`Ring::low_water`] of a ring of `cap` bytes: `cap - min(PIPE_BUF, cap)`.
fn low_water_of(cap: usize) -> usize {
    cap - min(PIPE_BUF, cap)
}

/// `i % cap` for `i < 2 * cap` (ring indices), without a division.
#[inline(always)]
fn wrap(i: usize, cap: usize) -> usize {
    if i >= cap {
        i - cap
    } else {
        i
    }
}

/// Where [`Ring::copy_in`] takes bytes from.
pub(crate) trait Source {
    /// Fill the start of `dst`; returns the bytes copied (`<= dst.len()`, fewer on a fault).
    fn take(&mut self, dst: &mut [u8]) -> usize;
}

/// Where [`Ring::copy_out`] puts bytes.
pub(crate) trait Sink {
    /// Consume the start of `src`; returns the bytes copied (`<= src.len()`, fewer on a
    /// fault).
    fn put(&mut self, src: &[u8]) -> usize;
}

impl Source for IovIterSource<'_> {
    #[inline(always)]
    fn take(&mut self, dst: &mut [u8]) -> usize {
        self.copy_from_iter(dst)
    }
}

impl Sink for IovIterDest<'_> {
    #[inline(always)]
    fn put(&mut self, src: &[u8]) -> usize {
        self.copy_to_iter(src)
    }
}

/// A bounded byte FIFO: `len` bytes starting at `head`, wrapping at the end of `buf`.
///
/// # Invariants
///
/// `buf.len()` is 0 (no ring allocated) or within `MIN_CAPACITY..=MAX_CAPACITY`;
/// `len <= buf.len()`; `head < buf.len()` or `head == 0`. So no sum of two of `head`, `len`
/// and `buf.len()` overflows a `usize`, which the unchecked (wrapping) arithmetic below
/// relies on. `low_water == low_water_of(buf.len())`. [`Source::take`] / [`Sink::put`]
/// return at most the length of the slice they were given.
pub(crate) struct Ring {
    /// The ring; empty (unallocated) while no file is open.
    buf: RingMem,
    /// Size of the ring that [`Ring::allocate`] allocates.
    capacity: usize,
    /// Index of the oldest byte.
    head: usize,
    /// Bytes in the ring.
    len: usize,
    /// The fill at or below which [`Ring::atomic_max`] bytes fit ([`Ring::writable`]).
    low_water: usize,
    /// Bytes ever copied in / out (64-bit counters: they wrap after 16 EiB, like the C
    /// twin's `u64`).
    bytes_in: u64,
    bytes_out: u64,
}

impl Ring {
    /// An unallocated ring that [`Ring::allocate`] makes `capacity` bytes large
    /// (`capacity` from [`check_capacity`]).
    pub(crate) fn new(capacity: usize) -> Self {
        Ring {
            buf: RingMem::empty(),
            capacity,
            head: 0,
            len: 0,
            low_water: 0,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Allocate the ring if it is not (the first open file).
    pub(crate) fn allocate(&mut self) -> Result {
        if self.buf.is_empty() {
            self.buf = RingMem::zeroed(self.capacity, ring_gfp())?;
            self.low_water = low_water_of(self.capacity);
        }
        Ok(())
    }

    /// Discard the data and hand the memory back (the last close); the caller drops it,
    /// preferably after unlocking.
    pub(crate) fn release(&mut self) -> RingMem {
        self.head = 0;
        self.len = 0;
        self.low_water = 0;
        core::mem::take(&mut self.buf)
    }

    /// Swap in `buf` (of [`check_capacity`] bytes, allocated by the caller) as the new ring
    /// and the new capacity; `buf` then holds the old ring, for the caller to drop
    /// (preferably after unlocking). `EBUSY` (nothing changed) unless the ring is empty.
    pub(crate) fn replace(&mut self, buf: &mut RingMem) -> Result {
        if self.len > 0 {
            return Err(EBUSY);
        }
        self.capacity = buf.len();
        self.head = 0;
        self.low_water = low_water_of(self.capacity);
        core::mem::swap(&mut self.buf, buf);
        Ok(())
    }

    /// Discard the data (`CLEAR`); not counted as read.
    pub(crate) fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// The capacity `GET_CAPACITY` reports (the size of the ring, or of the next one).
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn bytes_in(&self) -> u64 {
        self.bytes_in
    }

    pub(crate) fn bytes_out(&self) -> u64 {
        self.bytes_out
    }

    /// Room left (0 while unallocated).
    pub(crate) fn free(&self) -> usize {
        // `len <= buf.len()` (type invariant).
        self.buf.len().wrapping_sub(self.len)
    }

    /// Largest write that must not be split (`PIPE_BUF`, or the whole ring if smaller).
    pub(crate) fn atomic_max(&self) -> usize {
        min(PIPE_BUF, self.buf.len())
    }

    /// The fill at or below which [`Ring::writable`] holds.
    #[inline(always)]
    pub(crate) fn low_water(&self) -> usize {
        self.low_water
    }

    /// Does a write of [`Ring::atomic_max`] bytes fit (`free() >= atomic_max()`)?
    #[inline(always)]
    pub(crate) fn writable(&self) -> bool {
        self.len <= self.low_water
    }

    /// Move up to `n <= self.len()` bytes from the ring to `sink`; returns the bytes moved
    /// (fewer than `n` only if the sink faulted).
    #[inline(always)]
    pub(crate) fn copy_out<S: Sink>(&mut self, sink: &mut S, n: usize) -> usize {
        let cap = self.buf.len();
        let head = self.head;
        // `head <= cap` (type invariant): the split does not panic.
        let (before_head, from_head) = self.buf.split_at(head);
        let first = min(n, from_head.len());
        let mut done = sink.put(&from_head[..first]);
        if done == first && n > first {
            // The rest wrapped to the start: `n - first <= len - (cap - head) <= head`.
            done = done.wrapping_add(sink.put(&before_head[..n.wrapping_sub(first)]));
        }
        // `done <= n <= len`.
        self.len = self.len.wrapping_sub(done);
        // An empty ring restarts at 0 so later copies are more often one piece.
        self.head = if self.len == 0 {
            0
        } else {
            // `head + done < 2 * cap`.
            wrap(head.wrapping_add(done), cap)
        };
        self.bytes_out = self.bytes_out.wrapping_add(done as u64);
        done
    }

    /// Move up to `n <= self.free()` bytes from `src` into the ring; returns the bytes
    /// moved (fewer than `n` only if the source faulted).
    #[inline(always)]
    pub(crate) fn copy_in<S: Source>(&mut self, src: &mut S, n: usize) -> usize {
        let cap = self.buf.len();
        // `head + len < 2 * cap` (type invariant), so `tail < cap`.
        let tail = wrap(self.head.wrapping_add(self.len), cap);
        let (before_tail, from_tail) = self.buf.split_at_mut(tail);
        let first = min(n, from_tail.len());
        let mut done = src.take(&mut from_tail[..first]);
        if done == first && n > first {
            // The rest wraps to the start, before `head <= tail`: `n - first <= head`.
            done = done.wrapping_add(src.take(&mut before_tail[..n.wrapping_sub(first)]));
        }
        // `done <= n <= free = cap - len`.
        self.len = self.len.wrapping_add(done);
        self.bytes_in = self.bytes_in.wrapping_add(done as u64);
        done
    }
}

// Built into the module that `cargo xtask test` loads; `make RKM_NO_KUNIT=1` (the `Kbuild`
// turns it into `--cfg rkm_no_kunit`) leaves it out, as shipped and benchmarked.
#[cfg(not(rkm_no_kunit))]
#[kunit_tests(rfifo_ring)]
mod tests {
    use super::*;

    /// A source of the bytes `next, next + 1, ...` that faults after `limit` bytes.
    struct Counting {
        next: u8,
        limit: usize,
    }

    impl Source for Counting {
        fn take(&mut self, dst: &mut [u8]) -> usize {
            let n = min(dst.len(), self.limit);
            for b in &mut dst[..n] {
                *b = self.next;
                self.next = self.next.wrapping_add(1);
            }
            self.limit -= n;
            n
        }
    }

    /// A sink that collects into a fixed buffer and faults after `limit` bytes.
    struct Collect {
        got: [u8; 32],
        len: usize,
        limit: usize,
    }

    impl Collect {
        fn new(limit: usize) -> Self {
            Collect {
                got: [0; 32],
                len: 0,
                limit,
            }
        }

        fn bytes(&self) -> &[u8] {
            &self.got[..self.len]
        }
    }

    impl Sink for Collect {
        fn put(&mut self, src: &[u8]) -> usize {
            let n = min(min(src.len(), self.limit), self.got.len() - self.len);
            self.got[self.len..self.len + n].copy_from_slice(&src[..n]);
            self.len += n;
            self.limit -= n;
            n
        }
    }

    fn source(first: u8) -> Counting {
        Counting {
            next: first,
            limit: usize::MAX,
        }
    }

    /// An allocated ring of `cap` bytes.
    fn ring(cap: usize) -> Result<Ring> {
        let mut r = Ring::new(cap);
        r.allocate()?;
        Ok(r)
    }

    #[test]
    fn capacity_bounds_are_checked() {
        assert_eq!(check_capacity(0), Err(EINVAL));
        assert_eq!(check_capacity(1), Ok(1));
        assert_eq!(check_capacity(65536), Ok(65536));
        assert_eq!(check_capacity(MAX_CAPACITY), Ok(MAX_CAPACITY as usize));
        assert_eq!(check_capacity(MAX_CAPACITY + 1), Err(EINVAL));
        assert_eq!(check_capacity(u32::MAX), Err(EINVAL));
    }

    #[test]
    fn wrap_reduces_indices_below_twice_the_capacity() {
        assert_eq!(wrap(0, 8), 0);
        assert_eq!(wrap(7, 8), 7);
        assert_eq!(wrap(8, 8), 0);
        assert_eq!(wrap(15, 8), 7);
        assert_eq!(wrap(0, 1), 0);
        assert_eq!(wrap(1, 1), 0);
    }

    #[test]
    fn unallocated_ring_has_no_room() -> Result {
        let mut r = Ring::new(8);
        assert_eq!((r.free(), r.atomic_max(), r.capacity()), (0, 0, 8));
        r.allocate()?;
        assert_eq!((r.free(), r.atomic_max(), r.len()), (8, 8, 0));
        Ok(())
    }

    #[test]
    fn atomic_max_is_pipe_buf_or_the_whole_ring() -> Result {
        assert_eq!(ring(100)?.atomic_max(), 100);
        assert_eq!(ring(PIPE_BUF)?.atomic_max(), PIPE_BUF);
        assert_eq!(ring(PIPE_BUF + 1)?.atomic_max(), PIPE_BUF);
        Ok(())
    }

    #[test]
    fn writable_is_free_at_least_atomic_max() -> Result {
        for cap in [1, 100, PIPE_BUF, PIPE_BUF + 1, 3 * PIPE_BUF] {
            let low = cap - min(PIPE_BUF, cap);
            // Both sides of the low water mark, empty and full.
            for fill in [0, low.saturating_sub(1), low, low + 1, cap - 1, cap] {
                let fill = min(fill, cap);
                let mut r = ring(cap)?;
                assert_eq!(r.copy_in(&mut source(0), fill), fill);
                // The triple names the case in a failure report.
                let fits = r.free() >= r.atomic_max();
                assert_eq!((cap, fill, r.writable()), (cap, fill, fits));
            }
            let mut r = ring(cap)?;
            r.copy_in(&mut source(0), cap);
            assert!(!r.writable());
            let mem = r.release();
            assert!(r.writable() && mem.len() == cap);
        }
        let mut r = ring(8)?;
        r.copy_in(&mut source(0), 8);
        r.clear();
        let mut bigger = RingMem::zeroed(PIPE_BUF * 2, GFP_KERNEL)?;
        r.replace(&mut bigger)?;
        assert_eq!(r.low_water(), PIPE_BUF);
        Ok(())
    }

    #[test]
    fn bytes_come_out_in_order_across_the_wrap() -> Result {
        let mut r = ring(8)?;
        assert_eq!(r.copy_in(&mut source(0), 5), 5);
        let mut out = Collect::new(usize::MAX);
        assert_eq!(r.copy_out(&mut out, 3), 3);
        assert_eq!(out.bytes(), [0, 1, 2]);
        // head 3, len 2: the next 6 bytes go to 5..8 and then 0..3.
        assert_eq!(r.free(), 6);
        assert_eq!(r.copy_in(&mut source(5), 6), 6);
        assert_eq!((r.len(), r.free()), (8, 0));
        let mut out = Collect::new(usize::MAX);
        assert_eq!(r.copy_out(&mut out, 8), 8);
        assert_eq!(out.bytes(), [3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!((r.len(), r.head), (0, 0));
        assert_eq!((r.bytes_in(), r.bytes_out()), (11, 11));
        Ok(())
    }

    #[test]
    fn an_emptied_ring_restarts_at_index_zero() -> Result {
        let mut r = ring(8)?;
        r.copy_in(&mut source(0), 6);
        r.copy_out(&mut Collect::new(usize::MAX), 6);
        assert_eq!(r.head, 0);
        // So 8 bytes now fit in one piece.
        assert_eq!(r.copy_in(&mut source(0), 8), 8);
        assert_eq!(r.head, 0);
        Ok(())
    }

    #[test]
    fn a_faulting_source_counts_only_what_was_copied() -> Result {
        let mut r = ring(8)?;
        r.copy_in(&mut source(0), 6);
        r.copy_out(&mut Collect::new(usize::MAX), 4);
        // head 4, len 2, tail 6: 2 bytes fit before the end, then a fault after 3.
        let mut src = Counting {
            next: 100,
            limit: 3,
        };
        assert_eq!(r.copy_in(&mut src, 5), 3);
        assert_eq!((r.len(), r.bytes_in()), (5, 9));
        let mut out = Collect::new(usize::MAX);
        assert_eq!(r.copy_out(&mut out, 5), 5);
        assert_eq!(out.bytes(), [4, 5, 100, 101, 102]);
        Ok(())
    }

    #[test]
    fn a_faulting_sink_keeps_the_rest_in_the_ring() -> Result {
        let mut r = ring(8)?;
        r.copy_in(&mut source(0), 8);
        r.copy_out(&mut Collect::new(usize::MAX), 6);
        r.copy_in(&mut source(8), 4);
        // head 6, len 6 (6, 7 | 8, 9, 10, 11): the sink faults in the second piece.
        let mut out = Collect::new(3);
        assert_eq!(r.copy_out(&mut out, 6), 3);
        assert_eq!(out.bytes(), [6, 7, 8]);
        assert_eq!((r.len(), r.head, r.bytes_out()), (3, 1, 9));
        // A sink that faults at once moves nothing.
        assert_eq!(r.copy_out(&mut Collect::new(0), 3), 0);
        assert_eq!((r.len(), r.head), (3, 1));
        let mut out = Collect::new(usize::MAX);
        assert_eq!(r.copy_out(&mut out, 3), 3);
        assert_eq!(out.bytes(), [9, 10, 11]);
        Ok(())
    }

    #[test]
    fn a_one_byte_ring_works() -> Result {
        let mut r = ring(1)?;
        for i in 0..4u8 {
            assert_eq!(r.copy_in(&mut source(i), 1), 1);
            assert_eq!(r.free(), 0);
            let mut out = Collect::new(usize::MAX);
            assert_eq!(r.copy_out(&mut out, 1), 1);
            assert_eq!(out.bytes(), [i]);
        }
        Ok(())
    }

    #[test]
    fn replace_needs_an_empty_ring_and_release_discards() -> Result {
        let mut r = ring(8)?;
        r.copy_in(&mut source(0), 3);
        let mut bigger = RingMem::zeroed(16, GFP_KERNEL)?;
        assert_eq!(r.replace(&mut bigger), Err(EBUSY));
        assert_eq!((r.capacity(), r.len(), bigger.len()), (8, 3, 16));
        r.clear();
        assert_eq!((r.len(), r.free(), r.bytes_out()), (0, 8, 0));
        r.replace(&mut bigger)?;
        assert_eq!((bigger.len(), r.capacity(), r.free()), (8, 16, 16));
        r.copy_in(&mut source(0), 5);
        let mem = r.release();
        assert_eq!((mem.len(), r.len(), r.free(), r.capacity()), (16, 0, 0, 16));
        assert_eq!(r.bytes_in(), 8);
        Ok(())
    }
}
