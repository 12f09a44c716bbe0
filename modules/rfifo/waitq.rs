// SPDX-License-Identifier: GPL-2.0

//! `unsafe` part 1 of 2: wait queues for blocked readers and writers (and pollers), used
//! like C's `wait_event_interruptible_exclusive()` (as `cfifo.c` does).
//!
//! Invariants this file relies on and keeps (each `unsafe` block names the one it uses):
//!
//! - A [`WaitQueue`]'s `wait_queue_head` is initialised in place by [`WaitQueue::new`] and
//!   pinned until it is dropped.
//! - A sleeper's `wait_queue_entry` lives in [`WaitQueue::wait`]'s stack frame and is off
//!   the queue (`finish_wait`) before that frame returns.
//! - A poll entry (`poll_wait` through [`PollTable::register`]) may only be added for a file
//!   that keeps its queue alive: the queue's owner must outlive every open file of the
//!   device (rfifo: the module owns the `Fifo` that owns the queue and outlives its open
//!   files, see `chrdev.rs`). Then no poll entry and no RCU reader of one is left when the
//!   queue is dropped (see the `PinnedDrop`), so the drop needs neither
//!   `wake_up_pollfree()` nor an RCU grace period.
//! - A [`PollTable`] holds a `poll_table` pointer that is null or valid for the `poll` call
//!   it was made for, and is not `Send`.
//!
//! 7.3's `CondVar`/`PollCondVar` would do, but every sleep through them costs about ten
//! more out-of-line calls (non-inlined `Opaque` accessors, the `init_wait` and
//! `signal_pending` helpers, `CondVar::notify`) and re-checks for signals separately; under
//! the test VM's TCG each call is an indirect-jump lookup, which made the 1-byte ping-pong
//! ~8% slower than the C twin. [`WaitQueue::wait`] is the `prepare_to_wait_event()` /
//! `schedule()` / `finish_wait()` sequence of the C macro, with the mutex released around
//! `schedule()`. Blocked opens use it too (one wait site, no `CondVar` code in the module).

use core::{
    marker::PhantomData,
    mem::MaybeUninit,
    ptr, //
};
use kernel::{
    bindings,
    fs::File,
    prelude::*,
    sync::{
        LockClassKey,
        MutexGuard, //
    },
    task::{
        TASK_INTERRUPTIBLE,
        TASK_NORMAL, //
    },
    types::Opaque,
};

/// A `wait_queue_head_t`.
///
/// # Invariants
///
/// `head` is initialised by [`WaitQueue::new`] and pinned until dropped; poll entries are
/// only added for files that keep the queue alive (see the file's invariants).
#[pin_data(PinnedDrop)]
pub(crate) struct WaitQueue {
    #[pin]
    head: Opaque<bindings::wait_queue_head>,
}

// SAFETY: A `wait_queue_head` may be used from any thread (its own spinlock protects it).
unsafe impl Send for WaitQueue {}
// SAFETY: As above: every operation on it takes its spinlock.
unsafe impl Sync for WaitQueue {}

impl WaitQueue {
    pub(crate) fn new(name: &'static CStr, key: Pin<&'static LockClassKey>) -> impl PinInit<Self> {
        pin_init!(Self {
            // SAFETY: `slot` is valid for writes; `name` and `key` are `'static`.
            head <- Opaque::ffi_init(|slot| unsafe {
                bindings::__init_waitqueue_head(slot, name.as_char_ptr(), key.as_ptr())
            }),
        })
    }

    /// The raw head (`Opaque` is `repr(transparent)`; its shared generic `get` would be an
    /// out-of-line call).
    #[inline(always)]
    fn raw(&self) -> *mut bindings::wait_queue_head {
        ptr::from_ref(&self.head)
            .cast_mut()
            .cast::<bindings::wait_queue_head>()
    }

    /// `wake_up_all()`: wakes every sleeper and poller.
    #[inline(always)]
    pub(crate) fn wake_all(&self) {
        // SAFETY: `raw()` is an initialised head (type invariant); `__wake_up` may be
        // called from any context.
        unsafe { bindings::__wake_up(self.raw(), TASK_NORMAL, 0, ptr::null_mut()) };
    }

    /// Sleep until woken, the lock of `guard` released meanwhile: queues the current task
    /// (exclusive, interruptible), runs `queued` under the lock (to publish that it
    /// waits: a waker that sees this under the lock and wakes after its unlock finds the
    /// task queued, so no wake-up is lost), unlocks, runs `unlocked`, sleeps, and relocks.
    ///
    /// With a signal pending nothing is queued and the still-held guard comes back as
    /// `Err`.
    #[inline(always)]
    pub(crate) fn wait<'a, T: Unpin>(
        &self,
        mut guard: MutexGuard<'a, T>,
        queued: impl FnOnce(&mut T),
        unlocked: impl FnOnce(),
    ) -> Result<MutexGuard<'a, T>, MutexGuard<'a, T>> {
        let head = self.raw();
        let mut entry = MaybeUninit::<bindings::wait_queue_entry>::uninit();
        let entry = entry.as_mut_ptr();
        // SAFETY: `entry` is valid for writes; it stays in this frame (never moved) until
        // `finish_wait` below has taken it off the queue.
        unsafe { bindings::init_wait_entry(entry, bindings::WQ_FLAG_EXCLUSIVE as c_int) };
        // SAFETY: `head` is initialised (type invariant), `entry` was just initialised.
        // On a pending signal the entry is left unqueued.
        if unsafe { bindings::prepare_to_wait_event(head, entry, TASK_INTERRUPTIBLE) } != 0 {
            return Err(guard);
        }
        queued(&mut guard);
        let lock = guard.lock_ref();
        drop(guard);
        unlocked();
        // SAFETY: Process context without locks held (the mutex was released above).
        unsafe { bindings::schedule() };
        // SAFETY: `head` and `entry` as above; removes the entry if no waker did.
        unsafe { bindings::finish_wait(head, entry) };
        Ok(lock.lock())
    }
}

#[pinned_drop]
impl PinnedDrop for WaitQueue {
    /// Nothing to detach, and no RCU grace period to wait for (it used to be one per queue:
    /// 128 per `rmmod` with 64 devices, about 1.2 s in the test VM).
    ///
    /// Why that is correct: the queue's owner outlives every open file of the device (the
    /// file's invariants), and every poll entry is gone before its file's `release`:
    /// `select`/`poll` remove theirs before the syscall returns and hold a file reference
    /// meanwhile; io_uring and aio polls hold a file reference while armed; epoll removes
    /// its entries in `eventpoll_release()`, which `__fput()` calls before `release`, and
    /// `ep_remove_wait_queue()` finishes its RCU read-side section (under `ep->mtx`) before
    /// that returns. Sleepers hold a file reference too. `wake_up_pollfree()` plus a grace
    /// period is for queues that die while files still poll them (`signalfd`, binder), and
    /// `PollCondVar` does it because it cannot know its owner's lifetime.
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: `raw()` is an initialised head (type invariant); nobody else uses it now.
        let empty = unsafe {
            let head = &raw const (*self.raw()).head;
            core::ptr::eq((*head).next.cast_const(), head)
        };
        debug_assert!(empty, "rfifo: wait queue dropped with entries on it");
    }
}

/// A `poll_table` for the duration of a `poll` call.
///
/// # Invariants
///
/// `table` is null or a valid `poll_table` while this exists.
pub(crate) struct PollTable {
    table: *mut bindings::poll_table,
    _not_send: PhantomData<*mut ()>,
}

impl PollTable {
    /// # Safety
    ///
    /// `table` must be null or valid for as long as the returned value is used.
    pub(crate) unsafe fn from_raw(table: *mut bindings::poll_table) -> Self {
        Self {
            table,
            _not_send: PhantomData,
        }
    }

    /// `poll_wait(file, wq, table)`.
    pub(crate) fn register(&self, file: &File, wq: &WaitQueue) {
        // SAFETY: `file` is valid for the call, `table` is null or valid (type
        // invariant), and `wq` outlives every open file of its device, so every poll entry
        // made here is removed before it goes away (the file's invariants).
        unsafe { bindings::poll_wait(file.as_ptr(), wq.raw(), self.table) }
    }

    /// Does this poll come from an edge-triggered epoll item (`EPOLLET` in the table's
    /// key, as `pipe_poll()` checks)?
    pub(crate) fn edge_triggered(&self) -> bool {
        const EPOLLET: u32 = 1 << 31;
        if self.table.is_null() {
            return false;
        }
        // SAFETY: `table` is non-null, so valid for this `poll` call (type invariant).
        unsafe { (*self.table)._key & EPOLLET != 0 }
    }
}
