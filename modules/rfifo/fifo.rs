// SPDX-License-Identifier: GPL-2.0

//! The FIFO rules of one device (`fifo_open()`, `pipe_read()`, `pipe_write()`,
//! `pipe_poll()` of `fs/pipe.c`) and the ioctls: safe Rust over the ring of
//! [`crate::ring`], the wait queues of [`crate::waitq`] and 7.3's `Mutex`.
//! [`crate::chrdev`] calls the [`OpenFile`] methods from the `file_operations`.
//!
//! Locking: [`Fifo::state`] (a mutex) protects everything a `read`/`write` changes and is
//! held across the copy between the ring and user memory (as `pipe->mutex` is), so a copy
//! that faults slowly delays the device's other readers, writers, opens, closes and ioctls.
//! `poll` and `show_fdinfo` never take it: `poll` reads [`Fifo::status`], a snapshot that
//! every change publishes under the lock, and the per-open byte counts are atomics.

use crate::{
    chrdev,
    mem::RingMem,
    ring::{
        check_capacity,
        ring_gfp,
        Ring, //
    },
    uapi::{
        self,
        poll::*, //
    },
    waitq::{
        PollTable,
        WaitQueue, //
    },
};
use core::{
    cmp::min,
    mem::take, //
};
use kernel::{
    bindings,
    fs::{
        file::flags,
        File, //
    },
    iov::{
        IovIterDest,
        IovIterSource, //
    },
    prelude::*,
    sync::{
        atomic::{
            Atomic,
            Full,
            Relaxed, //
        },
        barrier::smp_mb,
        new_mutex,
        Mutex,
        MutexGuard, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

/// State of one device, protected by [`Fifo::state`].
pub(crate) struct State {
    ring: Ring,
    /// Open files with read / write access (`O_RDWR` counts for both).
    readers: u32,
    writers: u32,
    /// Number of read / write opens ever: a blocked open waits for the other one to change
    /// (like `pipe_inode_info::{r,w}_counter`), so a partner that came and went counts.
    r_counter: u32,
    w_counter: u32,
    /// A task went to sleep in `read` / `write` since the last wake-up of that side: the
    /// other side wakes them only if set, and clears it when it does (a woken task is off
    /// the queue; one that waits again sets it again). A task woken by a signal leaves it
    /// set until the next wake-up: one spare wake-up at most.
    rd_waiting: bool,
    wr_waiting: bool,
    opens: u64,
    /// The value last stored in [`Fifo::status`].
    published: u64,
}

/// Bits of [`Fifo::status`]: what `poll` needs to know, as one word. The upper 32 bits are
/// `w_counter` (for the `POLLHUP` rule of non-blocking readers).
const READABLE: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const NO_READERS: u64 = 1 << 2;
const NO_WRITERS: u64 = 1 << 3;

impl State {
    /// The [`Fifo::status`] word of this state.
    fn status(&self) -> u64 {
        let mut s = u64::from(self.w_counter) << 32;
        if !self.ring.is_empty() {
            s |= READABLE;
        }
        if self.ring.writable() {
            s |= WRITABLE;
        }
        if self.readers == 0 {
            s |= NO_READERS;
        }
        if self.writers == 0 {
            s |= NO_WRITERS;
        }
        s
    }

    /// Publish the status for `poll` after a change (lock held); returns whether it changed.
    fn publish(&mut self, fifo: &Fifo) -> bool {
        let s = self.status();
        if s == self.published {
            return false;
        }
        self.published = s;
        fifo.store_status(s);
        true
    }

    /// [`State::publish`] after a `read` took the fill down from `before` (> 0) or a
    /// `write` took it up: only `READABLE` and `WRITABLE` can change (an open file published
    /// the rest), and only when the fill crosses 0 or the low water mark. The common case
    /// is two comparisons; a change is stored without recomputing the other bits.
    #[inline(always)]
    fn publish_fill(&mut self, fifo: &Fifo, before: usize) -> bool {
        let (after, low) = (self.ring.len(), self.ring.low_water());
        if (before != 0) == (after != 0) && (before <= low) == (after <= low) {
            return false;
        }
        let mut s = self.published & !(READABLE | WRITABLE);
        if after != 0 {
            s |= READABLE;
        }
        if after <= low {
            s |= WRITABLE;
        }
        self.published = s;
        fifo.store_status(s);
        true
    }

    /// After bytes were added (and published, `changed`): must the readers be woken?
    /// Sleepers, pollers of a changed status, and edge-triggered pollers after every write
    /// (see [`Fifo::pollers`]). Clears `rd_waiting`.
    #[inline(always)]
    fn take_rd_waiters(&mut self, fifo: &Fifo, changed: bool) -> bool {
        take(&mut self.rd_waiting) || (changed && fifo.pollers()) || fifo.edge_polled.load(Relaxed)
    }

    /// After room was made (and published, `changed`): must the writers be woken? Sleepers,
    /// and pollers of a changed status (as `pipe_read()` wakes the writers only when the
    /// pipe was full: an unchanged status tells no poller anything new). Clears
    /// `wr_waiting`.
    #[inline(always)]
    fn take_wr_waiters(&mut self, fifo: &Fifo, changed: bool) -> bool {
        take(&mut self.wr_waiting) || (changed && fifo.pollers())
    }

    fn stats(&self) -> uapi::Stats {
        uapi::Stats {
            bytes_in: self.ring.bytes_in(),
            bytes_out: self.ring.bytes_out(),
            fill: self.ring.len() as u64,
            opens: self.opens,
            readers: self.readers,
            writers: self.writers,
        }
    }
}

/// One `/dev/rfifoN`.
#[pin_data]
pub(crate) struct Fifo {
    #[pin]
    state: Mutex<State>,
    /// Readers wait here for data (or for the last writer to leave); pollers for `POLLIN`.
    #[pin]
    rd_wait: WaitQueue,
    /// Writers wait here for room (or for the last reader to leave); pollers for `POLLOUT`.
    #[pin]
    wr_wait: WaitQueue,
    /// Blocking opens wait here for their partner.
    #[pin]
    open_wait: WaitQueue,
    /// What `poll` reads without the lock (the `READABLE`, ... bits and `w_counter`),
    /// stored under the lock by [`State::publish`] after every change.
    status: Atomic<u64>,
    /// Someone polled since the last close of all files: a waker that changed the status
    /// wakes the pollers (see [`Fifo::pollers`] for the ordering).
    polled: Atomic<bool>,
    /// A reader polled with `EPOLLET` since the last close of all files: every write wakes
    /// the readers, as `pipe->pseudo_edgetrigger` makes `pipe_write()` do (an edge-triggered
    /// reader that does not drain still gets an event per write).
    edge_polled: Atomic<bool>,
    /// The device made before this one ([`Devices`]).
    next: Option<Pin<KBox<Fifo>>>,
}

/// The devices of the module: a list of boxed [`Fifo`]s, the last made first. One small
/// allocation per device; one `KBox::pin_slice` of them cost 1.1 KB more module code (its
/// `Vec` growth and partial-initialisation paths).
pub(crate) struct Devices {
    head: Option<Pin<KBox<Fifo>>>,
    count: usize,
}

impl Devices {
    /// `count` devices whose rings will be `capacity` bytes (from [`check_capacity`]).
    pub(crate) fn new(count: usize, capacity: usize) -> Result<Self> {
        let mut devs = Devices {
            head: None,
            count: 0,
        };
        while devs.count < count {
            let mut fifo = KBox::pin_init(Fifo::new(capacity), GFP_KERNEL)?;
            *fifo.as_mut().project().next = devs.head.take();
            devs.head = Some(fifo);
            devs.count += 1;
        }
        Ok(devs)
    }

    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Device `index` (from 0), if there is one.
    pub(crate) fn get(&self, index: usize) -> Option<&Fifo> {
        let mut steps = self.count.checked_sub(index.checked_add(1)?)?;
        let mut fifo = self.head.as_deref()?;
        while steps > 0 {
            fifo = fifo.next.as_deref()?;
            steps -= 1;
        }
        Some(fifo)
    }
}

impl Drop for Devices {
    /// One device at a time: dropping the head would drop the list recursively.
    fn drop(&mut self) {
        let mut next = self.head.take();
        while let Some(mut fifo) = next {
            next = fifo.as_mut().project().next.take();
        }
    }
}

impl Fifo {
    /// A device whose ring will be `capacity` bytes (from [`check_capacity`]).
    fn new(capacity: usize) -> impl PinInit<Self, Error> {
        try_pin_init!(Fifo {
            state <- new_mutex!(State {
                ring: Ring::new(capacity),
                readers: 0,
                writers: 0,
                r_counter: 0,
                w_counter: 0,
                rd_waiting: false,
                wr_waiting: false,
                opens: 0,
                // No status is all ones: the first `publish` stores.
                published: u64::MAX,
            }),
            rd_wait <- WaitQueue::new(c"rfifo::rd_wait", kernel::static_lock_class!()),
            wr_wait <- WaitQueue::new(c"rfifo::wr_wait", kernel::static_lock_class!()),
            open_wait <- WaitQueue::new(c"rfifo::open_wait", kernel::static_lock_class!()),
            status: Atomic::new(0),
            polled: Atomic::new(false),
            edge_polled: Atomic::new(false),
            next: None,
        })
    }

    /// Store a changed status for `poll` (lock held). An `xchg()` is fully ordered, as
    /// [`Fifo::pollers`] needs: one call for the store and the barrier.
    #[inline(always)]
    fn store_status(&self, s: u64) {
        self.status.xchg(s, Full);
    }

    /// Called with the lock held right after a changed status was stored: are there pollers
    /// to wake?
    ///
    /// A poller registers on the wait queue, sets `polled`, `smp_mb()`, reads `status`; a
    /// waker stores `status` with a fully ordered `xchg()` ([`Fifo::store_status`]), then
    /// reads `polled`. With the two full barriers at least one of them sees the other's
    /// store: the poller the new status, or the waker `polled`, and the waker's `wake_all`
    /// (taken only after that read, a control dependency) then finds the poller on the
    /// queue. An unchanged status needs no call: whatever a poller read is still true.
    #[inline(always)]
    fn pollers(&self) -> bool {
        self.polled.load(Relaxed)
    }
}

/// One open file of a [`Fifo`] (the file's private data).
pub(crate) struct OpenFile {
    /// The device; it outlives its open files (`crate::chrdev`'s invariants).
    fifo: &'static Fifo,
    /// Counted as a reader / writer of `fifo` (set once counted; undone on drop).
    readable: bool,
    writable: bool,
    /// A non-blocking read open without writers: no `POLLHUP` until a writer has opened
    /// (`w_counter` moved on), like `file::f_pipe` for FIFOs.
    hup_after: Option<u32>,
    /// Bytes read / written through this open file (`/proc/<pid>/fdinfo`, which reads them
    /// without the device lock); added to after each `read` / `write`, as in the C twin.
    bytes_read: Atomic<u64>,
    bytes_written: Atomic<u64>,
}

/// `O_NONBLOCK` of `file`, read anew each time (`fcntl(F_SETFL)` may change it).
fn nonblocking(file: &File) -> bool {
    // `File` is `repr(transparent)` over `struct file`: this is `file.as_ptr()` without the
    // out-of-line call to the shared generic `Opaque::get` (it sits on the path to every sleep).
    let raw = core::ptr::from_ref(file).cast::<bindings::file>();
    // SAFETY: `raw` points to the valid file behind `file`. A volatile read is the
    // `READ_ONCE(file->f_flags)` of `File::flags()`.
    let f = unsafe { (&raw const (*raw).f_flags).read_volatile() };
    f & flags::O_NONBLOCK != 0
}

/// `Ok(done)` if something was done, else `Err(err)` (a write's partial count wins).
fn partial_or(done: usize, err: Error) -> Result<usize> {
    if done > 0 {
        Ok(done)
    } else {
        Err(err)
    }
}

impl OpenFile {
    /// `open(2)`: the FIFO rules of `fifo_open()` in `fs/pipe.c`.
    pub(crate) fn open(fifo: &'static Fifo, file: &File) -> Result<KBox<OpenFile>> {
        let mut me = KBox::new(
            OpenFile {
                fifo,
                readable: false,
                writable: false,
                hup_after: None,
                bytes_read: Atomic::new(0),
                bytes_written: Atomic::new(0),
            },
            GFP_KERNEL,
        )?;
        // On error `me` is dropped after the lock was released; its `Drop` undoes whatever
        // was counted (a partner wait interrupted by a signal).
        me.attach(file)?;
        Ok(me)
    }

    /// Count `self` as a reader and/or writer of its device and wait for the partner if
    /// needed.
    fn attach(&mut self, file: &File) -> Result {
        let fifo = self.fifo;
        let f = file.flags();
        let nonblock = f & flags::O_NONBLOCK != 0;
        let (rd, wr) = match f & flags::O_ACCMODE {
            flags::O_RDONLY => (true, false),
            flags::O_WRONLY => (false, true),
            flags::O_RDWR => (true, true),
            _ => return Err(EINVAL),
        };
        let mut st = fifo.state.lock();
        if wr && !rd && nonblock && st.readers == 0 {
            return Err(ENXIO);
        }
        // First open file: allocate the ring (freed again by the last close).
        st.ring.allocate()?;
        // The counts cannot overflow: each open file counts once, and files are fewer than
        // `u32::MAX`. The open counters wrap (only their changes matter).
        if rd {
            st.readers = st.readers.wrapping_add(1);
            st.r_counter = st.r_counter.wrapping_add(1);
            self.readable = true;
        }
        if wr {
            st.writers = st.writers.wrapping_add(1);
            st.w_counter = st.w_counter.wrapping_add(1);
            self.writable = true;
        }
        st.publish(fifo);
        fifo.open_wait.wake_all();
        // A reader waits for a writer's open and a writer for a reader's (their counters).
        let for_writer = rd && !wr && st.writers == 0;
        if for_writer && nonblock {
            self.hup_after = Some(st.w_counter);
        } else if for_writer || (wr && !rd && st.readers == 0) {
            let partner = |st: &State| {
                if for_writer {
                    st.w_counter
                } else {
                    st.r_counter
                }
            };
            let seen = partner(&st);
            while partner(&st) == seen {
                st = match fifo.open_wait.wait(st, |_| (), || ()) {
                    Ok(st) => st,
                    // A signal: the open fails unless the partner came meanwhile.
                    Err(st) if partner(&st) == seen => return Err(ERESTARTSYS),
                    Err(st) => st,
                };
            }
        }
        st.opens = st.opens.wrapping_add(1);
        Ok(())
    }

    /// `read(2)`: the rules of `pipe_read()`.
    ///
    /// One lock round trip when data is there; the writers are woken (after the unlock)
    /// only if one sleeps, or polled and the status changed.
    pub(crate) fn read(&self, file: &File, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let want = iov.len();
        if want == 0 {
            return Ok(0);
        }
        let fifo = self.fifo;
        let mut st = fifo.state.lock();
        loop {
            let before = st.ring.len();
            if before > 0 {
                let n = st.ring.copy_out(iov, min(want, before));
                if n == 0 {
                    return Err(EFAULT);
                }
                let changed = st.publish_fill(fifo, before);
                let wake = st.take_wr_waiters(fifo, changed);
                drop(st);
                if wake {
                    fifo.wr_wait.wake_all();
                }
                self.bytes_read.add(n as u64, Relaxed);
                return Ok(n);
            }
            if st.writers == 0 {
                return Ok(0);
            }
            if nonblocking(file) {
                return Err(EAGAIN);
            }
            // A pending signal ends the read here, after the data and EOF checks, like
            // `wait_event_interruptible()` in `pipe_read()`.
            st = fifo
                .rd_wait
                .wait(st, |st| st.rd_waiting = true, || ())
                .map_err(|_| ERESTARTSYS)?;
        }
    }

    /// `write(2)`: the rules of `pipe_write()`, with byte (not page) granularity.
    ///
    /// One lock round trip when the whole write fits (atomic or not, it is then copied in
    /// one go); the readers are woken (after the unlock) only if one sleeps, or polled and
    /// the status changed, or polled edge-triggered. Anything else is [`OpenFile::write_wait`].
    pub(crate) fn write(&self, file: &File, iov: &mut IovIterSource<'_>) -> Result<usize> {
        let total = iov.len();
        if total == 0 {
            return Ok(0);
        }
        let fifo = self.fifo;
        let mut st = fifo.state.lock();
        if st.readers == 0 || total > st.ring.free() {
            return self.write_wait(file, iov, total, st);
        }
        let before = st.ring.len();
        let n = st.ring.copy_in(iov, total);
        let wake = n > 0 && {
            let changed = st.publish_fill(fifo, before);
            st.take_rd_waiters(fifo, changed)
        };
        drop(st);
        if wake {
            fifo.rd_wait.wake_all();
        }
        // A fault stops the copy short: what was copied counts, as in `write_wait`.
        if n == 0 {
            return Err(EFAULT);
        }
        self.bytes_written.add(n as u64, Relaxed);
        Ok(n)
    }

    /// [`OpenFile::write`] when it does not all fit at once, or without readers: copies in
    /// pieces (a large write) or all at once (an atomic one), waiting for room between.
    #[inline(never)]
    fn write_wait(
        &self,
        file: &File,
        iov: &mut IovIterSource<'_>,
        total: usize,
        mut st: MutexGuard<'_, State>,
    ) -> Result<usize> {
        let fifo = self.fifo;
        let mut done: usize = 0;
        let mut wake_readers = false;
        let mut sigpipe = false;
        let ret = loop {
            if st.readers == 0 {
                sigpipe = true;
                break partial_or(done, EPIPE);
            }
            // `done <= total` always (it grows by at most `remaining`).
            let remaining = total.wrapping_sub(done);
            let free = st.ring.free();
            let chunk = if total <= st.ring.atomic_max() {
                // Atomic: all of it or nothing (yet).
                if free >= remaining {
                    remaining
                } else {
                    0
                }
            } else {
                min(free, remaining)
            };
            if chunk > 0 {
                let before = st.ring.len();
                let n = st.ring.copy_in(iov, chunk);
                // `n <= chunk <= remaining`.
                done = done.wrapping_add(n);
                if n > 0 {
                    let changed = st.publish_fill(fifo, before);
                    wake_readers |= st.take_rd_waiters(fifo, changed);
                }
                if n < chunk {
                    break partial_or(done, EFAULT);
                }
                if done == total {
                    break Ok(done);
                }
                continue;
            }
            // The file flags are read only when the write would block: `fcntl(F_SETFL)`
            // may change them at any time, so this is as current as reading them on entry.
            if nonblocking(file) {
                break partial_or(done, EAGAIN);
            }
            let wake = take(&mut wake_readers);
            match fifo.wr_wait.wait(
                st,
                |st| st.wr_waiting = true,
                // They must drain what we wrote before we can go on.
                || {
                    if wake {
                        fifo.rd_wait.wake_all();
                    }
                },
            ) {
                Ok(guard) => st = guard,
                Err(guard) => {
                    // A signal is pending (nothing was queued, the lock is still held).
                    st = guard;
                    wake_readers = wake;
                    break partial_or(done, ERESTARTSYS);
                }
            }
        };
        drop(st);
        if wake_readers {
            fifo.rd_wait.wake_all();
        }
        if done > 0 {
            self.bytes_written.add(done as u64, Relaxed);
        }
        if sigpipe {
            chrdev::send_sigpipe_to_current();
        }
        ret
    }

    /// `poll(2)`: the mask of `pipe_poll()`, without the device lock (like `pipe_poll()`):
    /// a poll never waits for a `read`/`write` in progress. Registers on the wait queues
    /// first, then reads the published status (see [`Fifo::pollers`]).
    pub(crate) fn poll(&self, file: &File, table: &PollTable) -> u32 {
        let fifo = self.fifo;
        if self.readable {
            table.register(file, &fifo.rd_wait);
            if table.edge_triggered() && !fifo.edge_polled.load(Relaxed) {
                fifo.edge_polled.store(true, Relaxed);
            }
        }
        if self.writable {
            table.register(file, &fifo.wr_wait);
        }
        if !fifo.polled.load(Relaxed) {
            fifo.polled.store(true, Relaxed);
        }
        smp_mb(Full);
        let st = fifo.status.load(Relaxed);
        let mut mask = 0;
        if self.readable {
            if st & READABLE != 0 {
                mask |= POLLIN | POLLRDNORM;
            }
            // The upper half is `w_counter`.
            if st & NO_WRITERS != 0 && self.hup_after != Some((st >> 32) as u32) {
                mask |= POLLHUP;
            }
        }
        if self.writable {
            if st & WRITABLE != 0 {
                mask |= POLLOUT | POLLWRNORM;
            }
            if st & NO_READERS != 0 {
                mask |= POLLERR;
            }
        }
        mask
    }

    /// `ioctl(2)`: one method per command of `include/uapi/rfifo.h`; `arg` is the user
    /// pointer of the commands that take one.
    pub(crate) fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        let user = |len| UserSlice::new(UserPtr::from_addr(arg), len);
        match cmd {
            uapi::GET_CAPACITY => self.get_capacity(user(size_of::<u32>()))?,
            uapi::SET_CAPACITY => self.set_capacity(user(size_of::<u32>()))?,
            uapi::CLEAR => self.clear()?,
            uapi::GET_STATS => self.get_stats(user(size_of::<uapi::Stats>()))?,
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }

    /// `RFIFO_IOC_GET_CAPACITY`: the ring size as a `__u32`.
    fn get_capacity(&self, out: UserSlice) -> Result {
        // `capacity <= MAX_CAPACITY` fits a `u32`.
        let cap = self.fifo.state.lock().ring.capacity() as u32;
        out.writer().write_slice(&cap.to_ne_bytes())
    }

    /// `RFIFO_IOC_SET_CAPACITY` (`CAP_SYS_ADMIN`): a new ring of the given size, only while
    /// the ring is empty (`EBUSY`).
    fn set_capacity(&self, arg: UserSlice) -> Result {
        if !chrdev::capable_sys_admin() {
            return Err(EPERM);
        }
        let mut bytes = [0u8; size_of::<u32>()];
        arg.reader().read_slice(&mut bytes)?;
        let cap = check_capacity(u32::from_ne_bytes(bytes))?;
        let fifo = self.fifo;
        // Allocate before locking; `ring` (the old ring, or the new one on `EBUSY`) is
        // dropped after the unlock.
        let mut ring = RingMem::zeroed(cap, ring_gfp())?;
        let mut st = fifo.state.lock();
        st.ring.replace(&mut ring)?;
        fifo.changed(st);
        Ok(())
    }

    /// `RFIFO_IOC_CLEAR` (`CAP_SYS_ADMIN`): discard the buffered bytes.
    fn clear(&self) -> Result {
        if !chrdev::capable_sys_admin() {
            return Err(EPERM);
        }
        let fifo = self.fifo;
        let mut st = fifo.state.lock();
        st.ring.clear();
        fifo.changed(st);
        Ok(())
    }

    /// `RFIFO_IOC_GET_STATS`: a `struct rfifo_stats`.
    fn get_stats(&self, out: UserSlice) -> Result {
        let stats = self.fifo.state.lock().stats();
        out.writer().write_slice(stats.to_words().as_bytes())
    }

    /// `/proc/<pid>/fdinfo/<fd>`: this open file's byte counts (read, written), without the
    /// device lock.
    pub(crate) fn byte_counts(&self) -> (u64, u64) {
        (
            self.bytes_read.load(Relaxed),
            self.bytes_written.load(Relaxed),
        )
    }
}

impl Fifo {
    /// After an ioctl made room: publish, unlock, wake the writers if needed.
    fn changed(&self, mut st: MutexGuard<'_, State>) {
        let changed = st.publish(self);
        let wake = st.take_wr_waiters(self, changed);
        drop(st);
        if wake {
            self.wr_wait.wake_all();
        }
    }
}

impl Drop for OpenFile {
    /// `release`: the last reader leaving wakes the writers (EPIPE, `POLLERR`), the last
    /// writer the readers (EOF, `POLLHUP`); the last file discards the data.
    fn drop(&mut self) {
        if !self.readable && !self.writable {
            return;
        }
        let fifo = self.fifo;
        let mut st = fifo.state.lock();
        let mut wake_rd = false;
        let mut wake_wr = false;
        // `self` was counted (`readable`/`writable`), so the counts are not zero.
        if self.readable {
            st.readers = st.readers.wrapping_sub(1);
            wake_wr = st.readers == 0;
        }
        if self.writable {
            st.writers = st.writers.wrapping_sub(1);
            wake_rd = st.writers == 0;
        }
        if wake_rd {
            st.rd_waiting = false;
        }
        if wake_wr {
            st.wr_waiting = false;
        }
        let ring = if st.readers == 0 && st.writers == 0 {
            // No file is left to poll (this was the last one).
            fifo.polled.store(false, Relaxed);
            fifo.edge_polled.store(false, Relaxed);
            Some(st.ring.release())
        } else {
            None
        };
        st.publish(fifo);
        drop(st);
        drop(ring);
        if wake_rd {
            fifo.rd_wait.wake_all();
        }
        if wake_wr {
            fifo.wr_wait.wake_all();
        }
    }
}
