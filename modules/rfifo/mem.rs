// SPDX-License-Identifier: GPL-2.0

//! `unsafe` part 3 of 3: the ring's memory, one zeroed `kvmalloc()` allocation of a fixed
//! size, as the C twin's `kvzalloc()`.
//!
//! `KVVec<u8>` would do, but a ring never grows: its growth path (`reserve`), constructors
//! and the `Layout` plumbing of its drop were 1.2 KB of this module's 14 KB (text, data and
//! unwind tables), for one allocation per first open.
//!
//! Invariants this file relies on and keeps: a [`RingMem`] of `len > 0` bytes owns a
//! `KVmalloc` allocation of exactly `len` zeroed (so initialised) bytes at `ptr`, which
//! nothing else frees or aliases; with `len == 0`, `ptr` is dangling and never
//! dereferenced or freed.

use core::{
    alloc::Layout,
    ops::{
        Deref,
        DerefMut, //
    },
    ptr::NonNull,
    slice, //
};
use kernel::{
    alloc::{
        allocator::KVmalloc,
        AllocError,
        Allocator,
        Flags,
        NumaNode, //
    },
    bindings,
    prelude::*,
};

/// `len` bytes of ring, zeroed when allocated, freed when dropped.
///
/// # Invariants
///
/// If `len > 0`, `ptr` is a `KVmalloc` allocation of `len` initialised bytes owned by this
/// value alone; if `len == 0`, `ptr` is dangling and unused.
pub(crate) struct RingMem {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: `RingMem` owns its bytes (type invariants) like a `KVVec<u8>`, which is `Send`.
unsafe impl Send for RingMem {}
// SAFETY: Shared access only reads the bytes (`Deref`), like `&[u8]`.
unsafe impl Sync for RingMem {}

impl RingMem {
    /// No memory (`len() == 0`).
    pub(crate) const fn empty() -> Self {
        // INVARIANT: `len == 0` with a dangling pointer.
        RingMem {
            ptr: NonNull::dangling(),
            len: 0,
        }
    }

    /// `len` (at least 1) zeroed bytes.
    pub(crate) fn zeroed(len: usize, flags: Flags) -> Result<Self, AllocError> {
        let layout = Layout::array::<u8>(len).map_err(|_| AllocError)?;
        let ptr = KVmalloc::alloc(layout, flags | __GFP_ZERO, NumaNode::NO_NODE)?;
        // INVARIANT: `alloc` returned `len` bytes (`layout`), zeroed by `__GFP_ZERO`, or
        // failed above. `len == 0` would give a dangling pointer, which is never freed.
        Ok(RingMem {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Default for RingMem {
    fn default() -> Self {
        Self::empty()
    }
}

impl Deref for RingMem {
    type Target = [u8];

    #[inline(always)]
    fn deref(&self) -> &[u8] {
        // SAFETY: By the type invariants `ptr` holds `len` initialised bytes owned by
        // `self` (or `len == 0`, where a dangling pointer is allowed); they are borrowed
        // with `self`.
        unsafe { slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for RingMem {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: As in `deref`; `&mut self` makes the borrow unique.
        unsafe { slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for RingMem {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: By the type invariants `ptr` is a `KVmalloc` (`kvrealloc()`)
            // allocation owned by `self` alone, and this is its only `kvfree()`.
            unsafe { bindings::kvfree(self.ptr.as_ptr().cast()) };
        }
    }
}
