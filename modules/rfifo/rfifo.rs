// SPDX-License-Identifier: GPL-2.0

//! `rfifo`: the chapter's flagship device, LDD3's `scullpipe` redone with the semantics of
//! the kernel's own named FIFOs (fifo(7), pipe(7)). Its C twin is `modules-c/cfifo/cfifo.c`;
//! both share the ioctl ABI in `include/uapi/rfifo.h`, and `guest/tests/fifo_semantics.rs`
//! runs one test suite against a `mkfifo` node, `/dev/rfifo0` and `/dev/cfifo0`.
//!
//! `devices=N` (1..=64, default 4) creates `/dev/rfifo0`..; each is a bounded byte FIFO of
//! `capacity` bytes (1..=16 MiB, default 65536; out of range: `insmod` fails with `EINVAL`).
//!
//! - open: `O_RDONLY` blocks until a writer opens and `O_WRONLY` until a reader opens;
//!   `O_RDWR` never blocks. With `O_NONBLOCK` a read-open succeeds at once and a write-open
//!   without a reader fails `ENXIO`. A signal ends the wait with `ERESTARTSYS` (`EINTR`).
//! - read: returns what is there (up to the request); blocks while empty and a writer is
//!   open; 0 (EOF) when empty and no writer is open; `EAGAIN` instead of blocking with
//!   `O_NONBLOCK`.
//! - write: `EPIPE` plus `SIGPIPE` without a reader. A write of at most
//!   `min(PIPE_BUF, capacity)` bytes is atomic: it waits until it fits as a whole (or fails
//!   `EAGAIN` with `O_NONBLOCK`) and is never interleaved with other writers. Larger writes
//!   copy what fits, wake the readers and wait for more room; with `O_NONBLOCK` they write
//!   what fits (a partial count) or fail `EAGAIN` when full. A signal while waiting returns
//!   the bytes written so far, else `ERESTARTSYS`; nothing is lost or duplicated.
//! - Like a FIFO the buffered data is discarded when the last open file is closed, and
//!   `lseek`/`pread`/`pwrite` fail `ESPIPE`.
//! - poll/select/epoll: `POLLIN` when not empty, `POLLOUT` when `min(PIPE_BUF, capacity)`
//!   bytes fit, `POLLHUP` on a reader after the last writer left, `POLLERR` on a writer
//!   without readers (Linux FIFO rules, including no `POLLHUP` for a non-blocking reader
//!   that has not seen a writer yet).
//! - ioctls (`include/uapi/rfifo.h`): `GET_CAPACITY`, `SET_CAPACITY` (`CAP_SYS_ADMIN`, only
//!   while empty), `CLEAR` (`CAP_SYS_ADMIN`), `GET_STATS`; unknown: `ENOTTY`, bad pointer:
//!   `EFAULT`.
//! - `/proc/<pid>/fdinfo/<fd>` shows `bytes_read:` and `bytes_written:` of that open file.
//!
//! Differences from a kernel FIFO (the same in the C twin): capacity is counted in bytes, a
//! FIFO counts pages (so a FIFO may refuse a write a ring would take after unaligned
//! reads); no `O_ASYNC`/`SIGIO`, `FIONREAD`, `F_SETPIPE_SZ` (the ioctls above instead), and
//! `RWF_NOWAIT` is refused by the VFS (`EOPNOTSUPP`, the file is not `FMODE_NOWAIT`).
//!
//! Try it in the guest (`cargo xtask run`):
//!
//! ```text
//! # modprobe rfifo devices=2
//! # cat /dev/rfifo0 &          # blocks in open() until a writer comes
//! # echo hello > /dev/rfifo0   # the reader prints "hello" and sees EOF
//! hello
//! # rmmod rfifo
//! ```
//!
//! Design: a ring buffer (`KVVec<u8>`, head + len) per device behind a `Mutex`, bytes copied
//! directly between the ring and the caller's iov iterator with the lock held only for
//! that (one lock round trip per `read`/`write` unless it has to wait); blocked openers
//! wait on a `CondVar`, blocked readers and writers on the wait queues of [`waitq`]
//! (released lock), and a side is woken only when someone waits on it (counted under the
//! lock) or has polled. Per-open byte counts are kept under the same lock (`LockedBy`).
//!
//! Why not `MiscDevice` (chapter difference): 7.3's `misc_open()` calls the driver's `open`
//! with the global `misc_mtx` held, so an `open` that blocks (as a FIFO open must) stops
//! every other misc-device open on the system, including the partner's: a deadlock. The
//! devices are therefore a plain character-device region (`cdev`, as LDD3's scullpipe did),
//! which 7.3's Rust API does not wrap; [`chrdev`] is the small documented `unsafe` glue
//! (registration, `file_operations` trampolines, `poll`, which 7.3's `MiscDevice` lacks, and
//! `send_sig`/`capable`, which it has no safe wrappers for). [`waitq`] is the other
//! `unsafe` part: reader/writer sleeps as in C, cheaper than 7.3's `CondVar` (see there).
//! Everything else is safe Rust.

use core::{cmp::min, mem};
use kernel::{
    bindings,
    fs::{file::flags, File},
    ioctl::{_IO, _IOR, _IOW},
    iov::{IovIterDest, IovIterSource},
    new_condvar, new_mutex,
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    sync::{Arc, CondVar, LockedBy, Mutex},
    uaccess::UserSlice,
};
use waitq::{PollTable, WaitQueue};

module! {
    type: RfifoModule,
    name: "rfifo",
    authors: ["Rust kernel modules workbench"],
    description: "Bounded FIFO devices with named-FIFO semantics (chapter: scullpipe)",
    license: "GPL",
    params: {
        devices: u32 {
            default: 4,
            description: "Number of /dev/rfifoN devices (1..=64)",
        },
        capacity: u32 {
            default: 65536,
            description: "Buffer size of each device in bytes (1..=16777216)",
        },
    },
}

/// `PIPE_BUF`: writes up to this size are atomic (if the capacity allows).
const PIPE_BUF: usize = 4096;
const MAX_DEVICES: u32 = 64;
const MIN_CAPACITY: u32 = 1;
const MAX_CAPACITY: u32 = 16 * 1024 * 1024;
/// Rings are sized by users: charge them to the opener's memory cgroup (as pipes are) and
/// report a failure as `ENOMEM` without a warning splat in the log.
fn ring_gfp() -> kernel::alloc::Flags {
    GFP_KERNEL_ACCOUNT | __GFP_NOWARN
}

/// The ioctl ABI of `include/uapi/rfifo.h`.
mod uapi {
    use super::*;

    const MAGIC: u32 = 0xB9;

    /// `struct rfifo_stats`: 4 x `__u64` + 2 x `__u32`, no padding.
    #[repr(C)]
    pub(crate) struct Stats {
        pub(crate) bytes_in: u64,
        pub(crate) bytes_out: u64,
        pub(crate) fill: u64,
        pub(crate) opens: u64,
        pub(crate) readers: u32,
        pub(crate) writers: u32,
    }

    impl Stats {
        /// The user-visible bytes (native endianness, C layout).
        pub(crate) fn to_bytes(&self) -> [u8; size_of::<Stats>()] {
            let mut out = [0u8; size_of::<Stats>()];
            let words = [self.bytes_in, self.bytes_out, self.fill, self.opens];
            for (chunk, w) in out.chunks_exact_mut(8).zip(words) {
                chunk.copy_from_slice(&w.to_ne_bytes());
            }
            out[32..36].copy_from_slice(&self.readers.to_ne_bytes());
            out[36..40].copy_from_slice(&self.writers.to_ne_bytes());
            out
        }
    }

    pub(crate) const GET_CAPACITY: u32 = _IOR::<u32>(MAGIC, 1);
    pub(crate) const SET_CAPACITY: u32 = _IOW::<u32>(MAGIC, 2);
    pub(crate) const CLEAR: u32 = _IO(MAGIC, 3);
    pub(crate) const GET_STATS: u32 = _IOR::<Stats>(MAGIC, 4);

    const _: () = assert!(size_of::<Stats>() == 40);
}

/// `poll(2)` event bits (`include/uapi/asm-generic/poll.h`; bindgen does not export the
/// `__poll_t` macros).
mod pollbits {
    pub(crate) const POLLIN: u32 = 0x0001;
    pub(crate) const POLLOUT: u32 = 0x0004;
    pub(crate) const POLLERR: u32 = 0x0008;
    pub(crate) const POLLHUP: u32 = 0x0010;
    pub(crate) const POLLRDNORM: u32 = 0x0040;
    pub(crate) const POLLWRNORM: u32 = 0x0100;
}

fn check_capacity(bytes: u32) -> Result<usize> {
    if (MIN_CAPACITY..=MAX_CAPACITY).contains(&bytes) {
        Ok(bytes as usize)
    } else {
        Err(EINVAL)
    }
}

/// State of one device, protected by [`Fifo::state`].
struct State {
    /// The ring; empty (unallocated) while no file is open, `capacity` bytes otherwise.
    buf: KVVec<u8>,
    /// Size of the ring allocated by the next first open.
    capacity: usize,
    /// Index of the oldest byte.
    head: usize,
    /// Bytes in the ring.
    len: usize,
    /// Open files with read / write access (`O_RDWR` counts for both).
    readers: u32,
    writers: u32,
    /// Number of read / write opens ever: a blocked open waits for the other one to change
    /// (like `pipe_inode_info::{r,w}_counter`), so a partner that came and went counts.
    r_counter: u32,
    w_counter: u32,
    /// Tasks that went to sleep in `read` / `write` since the last wake-up of that side:
    /// the other side wakes them only if non-zero, and resets the count when it does (a
    /// woken task is off the queue; one that waits again counts itself again). A task
    /// woken by a signal stays counted until the next wake-up: one spare wake-up at most.
    rd_waiters: u32,
    wr_waiters: u32,
    /// Someone polled since the last close of all files: wake on every change.
    polled: bool,
    bytes_in: u64,
    bytes_out: u64,
    opens: u64,
}

/// `i % cap` for `i < 2 * cap` (ring indices), without a division.
fn wrap(i: usize, cap: usize) -> usize {
    if i >= cap {
        i - cap
    } else {
        i
    }
}

impl State {
    /// After bytes were added: must the readers be woken? (Sleepers, or pollers waiting
    /// for the empty -> non-empty change.) Resets the sleeper count.
    fn take_rd_waiters(&mut self, was_empty: bool) -> bool {
        mem::take(&mut self.rd_waiters) > 0 || (was_empty && self.polled)
    }

    /// After room was made: must the writers be woken? Resets the sleeper count.
    fn take_wr_waiters(&mut self) -> bool {
        mem::take(&mut self.wr_waiters) > 0 || self.polled
    }

    fn free(&self) -> usize {
        // `len <= buf.len()` always.
        self.buf.len().wrapping_sub(self.len)
    }

    /// Largest write that must not be split (`PIPE_BUF`, or the whole ring if smaller).
    fn atomic_max(&self) -> usize {
        min(PIPE_BUF, self.buf.len())
    }

    /// Move up to `n <= self.len` bytes from the ring to `iov`; returns the bytes moved
    /// (fewer than `n` only if the user buffer faulted).
    ///
    /// Ring invariants used for the unchecked (wrapping) arithmetic in here and in
    /// [`State::copy_in`]: `head < cap` (or `head == 0`), `len <= cap`, `cap = buf.len()`
    /// `<= MAX_CAPACITY`, so no sum of two of them overflows a `usize`. `copy_to_iter` /
    /// `copy_from_iter` return at most the length of the slice they were given.
    #[inline(always)]
    fn copy_out(&mut self, iov: &mut IovIterDest<'_>, n: usize) -> usize {
        let cap = self.buf.len();
        let head = self.head;
        // `head <= cap`: cannot underflow.
        let first = min(n, cap.wrapping_sub(head));
        // `head + first <= cap`.
        let mut done = iov.copy_to_iter(&self.buf[head..head.wrapping_add(first)]);
        if done == first && n > first {
            // `n - first < n <= len <= cap`; the sum is at most `n`.
            done = done.wrapping_add(iov.copy_to_iter(&self.buf[..n.wrapping_sub(first)]));
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
        // A 64-bit byte counter: wraps after 16 EiB, like the C twin's `u64`.
        self.bytes_out = self.bytes_out.wrapping_add(done as u64);
        done
    }

    /// Move up to `n <= self.free()` bytes from `iov` into the ring; returns the bytes
    /// moved (fewer than `n` only if the user buffer faulted).
    #[inline(always)]
    fn copy_in(&mut self, iov: &mut IovIterSource<'_>, n: usize) -> usize {
        let cap = self.buf.len();
        // `head + len < 2 * cap` (see `copy_out` for the invariants), so `tail < cap`.
        let tail = wrap(self.head.wrapping_add(self.len), cap);
        let first = min(n, cap.wrapping_sub(tail));
        // `tail + first <= cap`.
        let mut done = iov.copy_from_iter(&mut self.buf[tail..tail.wrapping_add(first)]);
        if done == first && n > first {
            // `n - first < n <= free <= cap`; the sum is at most `n`.
            done = done.wrapping_add(iov.copy_from_iter(&mut self.buf[..n.wrapping_sub(first)]));
        }
        // `done <= n <= free = cap - len`.
        self.len = self.len.wrapping_add(done);
        // A 64-bit byte counter: wraps after 16 EiB, like the C twin's `u64`.
        self.bytes_in = self.bytes_in.wrapping_add(done as u64);
        done
    }

    fn stats(&self) -> uapi::Stats {
        uapi::Stats {
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            fill: self.len as u64,
            opens: self.opens,
            readers: self.readers,
            writers: self.writers,
        }
    }
}

/// One `/dev/rfifoN`.
#[pin_data]
struct Fifo {
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
    open_wait: CondVar,
}

impl Fifo {
    fn new(capacity: usize) -> Result<Arc<Fifo>> {
        Arc::pin_init(
            pin_init!(Fifo {
                state <- new_mutex!(State {
                    buf: KVVec::new(),
                    capacity,
                    head: 0,
                    len: 0,
                    readers: 0,
                    writers: 0,
                    r_counter: 0,
                    w_counter: 0,
                    rd_waiters: 0,
                    wr_waiters: 0,
                    polled: false,
                    bytes_in: 0,
                    bytes_out: 0,
                    opens: 0,
                }),
                rd_wait <- WaitQueue::new(c"rfifo::rd_wait", kernel::static_lock_class!()),
                wr_wait <- WaitQueue::new(c"rfifo::wr_wait", kernel::static_lock_class!()),
                open_wait <- new_condvar!("rfifo::open_wait"),
            }),
            GFP_KERNEL,
        )
    }
}

/// One open file of a [`Fifo`] (the file's private data).
struct OpenFile {
    fifo: Arc<Fifo>,
    /// Counted as a reader / writer of `fifo` (set once counted; undone on drop).
    readable: bool,
    writable: bool,
    /// A non-blocking read open without writers: no `POLLHUP` until a writer has opened
    /// (`w_counter` moved on), like `file::f_pipe` for FIFOs.
    hup_after: Option<u32>,
    /// Bytes moved through this open file, updated under the device lock that `read` and
    /// `write` hold anyway (a plain add instead of an atomic read-modify-write per call).
    io: LockedBy<IoCounts, State>,
}

/// Per-open-file byte counters (`/proc/<pid>/fdinfo`).
#[derive(Default)]
struct IoCounts {
    read: u64,
    written: u64,
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

impl OpenFile {
    /// `open(2)`: the FIFO rules of `fifo_open()` in `fs/pipe.c`.
    fn open(fifo: &Arc<Fifo>, file: &File) -> Result<KBox<OpenFile>> {
        let mut me = KBox::new(
            OpenFile {
                fifo: fifo.clone(),
                readable: false,
                writable: false,
                hup_after: None,
                io: LockedBy::new(&fifo.state, IoCounts::default()),
            },
            GFP_KERNEL,
        )?;
        // On error `me` is dropped after the lock was released; its `Drop` undoes whatever
        // was counted (a partner wait interrupted by a signal).
        me.attach(fifo, file)?;
        Ok(me)
    }

    /// Count `self` as a reader and/or writer of `fifo` (its own `fifo`) and wait for the
    /// partner if needed.
    fn attach(&mut self, fifo: &Fifo, file: &File) -> Result {
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
        if st.buf.is_empty() {
            // First open file: allocate the ring (freed again by the last close).
            st.buf = KVVec::from_elem(0u8, st.capacity, ring_gfp())?;
        }
        if rd {
            st.readers += 1;
            st.r_counter = st.r_counter.wrapping_add(1);
            self.readable = true;
        }
        if wr {
            st.writers += 1;
            st.w_counter = st.w_counter.wrapping_add(1);
            self.writable = true;
        }
        fifo.open_wait.notify_all();
        if rd && !wr && st.writers == 0 {
            if nonblock {
                self.hup_after = Some(st.w_counter);
            } else {
                let seen = st.w_counter;
                while st.w_counter == seen {
                    if fifo.open_wait.wait_interruptible(&mut st) {
                        break;
                    }
                }
                if st.w_counter == seen {
                    return Err(ERESTARTSYS);
                }
            }
        } else if wr && !rd && st.readers == 0 {
            let seen = st.r_counter;
            while st.r_counter == seen {
                if fifo.open_wait.wait_interruptible(&mut st) {
                    break;
                }
            }
            if st.r_counter == seen {
                return Err(ERESTARTSYS);
            }
        }
        st.opens += 1;
        Ok(())
    }

    /// `read(2)`: the rules of `pipe_read()`.
    ///
    /// One lock round trip when data is there; the per-open counter is updated under that
    /// lock and the writers are woken (after the unlock) only if one sleeps or polled.
    fn read(&self, file: &File, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let want = iov.len();
        if want == 0 {
            return Ok(0);
        }
        let fifo = &*self.fifo;
        let mut st = fifo.state.lock();
        loop {
            if st.len > 0 {
                let avail = st.len;
                let n = st.copy_out(iov, min(want, avail));
                if n == 0 {
                    return Err(EFAULT);
                }
                let wake = st.take_wr_waiters();
                let io = self.io.access_mut(&mut st);
                io.read = io.read.wrapping_add(n as u64);
                drop(st);
                if wake {
                    fifo.wr_wait.wake_all();
                }
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
                .wait(
                    st,
                    |st| st.rd_waiters = st.rd_waiters.saturating_add(1),
                    || (),
                )
                .map_err(|_| ERESTARTSYS)?;
        }
    }

    /// `write(2)`: the rules of `pipe_write()`, with byte (not page) granularity.
    fn write(&self, file: &File, iov: &mut IovIterSource<'_>) -> Result<usize> {
        let total = iov.len();
        if total == 0 {
            return Ok(0);
        }
        let fifo = &*self.fifo;
        let mut done: usize = 0;
        let mut wake_readers = false;
        let mut st = fifo.state.lock();
        let partial_or = |done: usize, err: Error| if done > 0 { Ok(done) } else { Err(err) };
        let ret = loop {
            if st.readers == 0 {
                chrdev::send_sigpipe_to_current();
                break partial_or(done, EPIPE);
            }
            // `done <= total` always (it grows by at most `remaining`).
            let remaining = total.wrapping_sub(done);
            let free = st.free();
            let chunk = if total <= st.atomic_max() {
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
                let was_empty = st.len == 0;
                let n = st.copy_in(iov, chunk);
                // `n <= chunk <= remaining`.
                done = done.wrapping_add(n);
                wake_readers |= n > 0 && st.take_rd_waiters(was_empty);
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
            let wake = mem::take(&mut wake_readers);
            match fifo.wr_wait.wait(
                st,
                |st| st.wr_waiters = st.wr_waiters.saturating_add(1),
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
        if done > 0 {
            let io = self.io.access_mut(&mut st);
            io.written = io.written.wrapping_add(done as u64);
        }
        drop(st);
        if wake_readers {
            fifo.rd_wait.wake_all();
        }
        ret
    }

    /// `poll(2)`: the mask of `pipe_poll()`.
    fn poll(&self, file: &File, table: &PollTable) -> u32 {
        use pollbits::*;
        let fifo = &*self.fifo;
        if self.readable {
            table.register(file, &fifo.rd_wait);
        }
        if self.writable {
            table.register(file, &fifo.wr_wait);
        }
        let mut st = fifo.state.lock();
        st.polled = true;
        let mut mask = 0;
        if self.readable {
            if st.len > 0 {
                mask |= POLLIN | POLLRDNORM;
            }
            if st.writers == 0 && self.hup_after != Some(st.w_counter) {
                mask |= POLLHUP;
            }
        }
        if self.writable {
            if st.free() >= st.atomic_max() {
                mask |= POLLOUT | POLLWRNORM;
            }
            if st.readers == 0 {
                mask |= POLLERR;
            }
        }
        mask
    }

    fn ioctl(&self, cmd: u32, arg: usize) -> Result<isize> {
        let fifo = &*self.fifo;
        let user = |len| UserSlice::new(UserPtr::from_addr(arg), len);
        match cmd {
            uapi::GET_CAPACITY => {
                let cap = fifo.state.lock().capacity as u32;
                user(size_of::<u32>()).writer().write(&cap)?;
            }
            uapi::SET_CAPACITY => {
                if !chrdev::capable_sys_admin() {
                    return Err(EPERM);
                }
                let cap = check_capacity(user(size_of::<u32>()).reader().read::<u32>()?)?;
                // Allocate before locking; dropped (after the unlock) if not needed.
                let mut ring = KVVec::from_elem(0u8, cap, ring_gfp())?;
                let mut st = fifo.state.lock();
                if st.len > 0 {
                    return Err(EBUSY);
                }
                st.capacity = cap;
                st.head = 0;
                mem::swap(&mut st.buf, &mut ring);
                let wake = st.take_wr_waiters();
                drop(st);
                if wake {
                    fifo.wr_wait.wake_all();
                }
            }
            uapi::CLEAR => {
                if !chrdev::capable_sys_admin() {
                    return Err(EPERM);
                }
                let mut st = fifo.state.lock();
                st.len = 0;
                st.head = 0;
                let wake = st.take_wr_waiters();
                drop(st);
                if wake {
                    fifo.wr_wait.wake_all();
                }
            }
            uapi::GET_STATS => {
                let stats = fifo.state.lock().stats();
                user(size_of::<uapi::Stats>())
                    .writer()
                    .write_slice(&stats.to_bytes())?;
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }

    fn show_fdinfo(&self, m: &SeqFile) {
        let (read, written) = {
            let mut st = self.fifo.state.lock();
            let io = self.io.access_mut(&mut st);
            (io.read, io.written)
        };
        seq_print!(m, "bytes_read:\t{read}\nbytes_written:\t{written}\n");
    }
}

impl Drop for OpenFile {
    /// `release`: the last reader leaving wakes the writers (EPIPE, `POLLERR`), the last
    /// writer the readers (EOF, `POLLHUP`); the last file discards the data.
    fn drop(&mut self) {
        if !self.readable && !self.writable {
            return;
        }
        let fifo = &*self.fifo;
        let mut st = fifo.state.lock();
        let mut wake_rd = false;
        let mut wake_wr = false;
        if self.readable {
            st.readers -= 1;
            wake_wr = st.readers == 0;
        }
        if self.writable {
            st.writers -= 1;
            wake_rd = st.writers == 0;
        }
        if wake_rd {
            st.rd_waiters = 0;
        }
        if wake_wr {
            st.wr_waiters = 0;
        }
        let ring = if st.readers == 0 && st.writers == 0 {
            st.len = 0;
            st.head = 0;
            st.polled = false;
            Some(mem::take(&mut st.buf))
        } else {
            None
        };
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

#[pin_data]
struct RfifoModule {
    #[pin]
    devs: chrdev::Registration,
}

impl kernel::InPlaceModule for RfifoModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(RfifoModule {
            devs <- chrdev::Registration::new(c"rfifo", make_fifos()?),
        })
    }
}

fn make_fifos() -> Result<KVec<Arc<Fifo>>> {
    let n = module_parameters::devices.value();
    let bytes = module_parameters::capacity.value();
    if !(1..=MAX_DEVICES).contains(&n) {
        pr_err!("devices={n} is out of range 1..={MAX_DEVICES}\n");
        return Err(EINVAL);
    }
    let Ok(cap) = check_capacity(bytes) else {
        pr_err!("capacity={bytes} is out of range {MIN_CAPACITY}..={MAX_CAPACITY}\n");
        return Err(EINVAL);
    };
    let mut fifos = KVec::with_capacity(n as usize, GFP_KERNEL)?;
    for _ in 0..n {
        fifos.push(Fifo::new(cap)?, GFP_KERNEL)?;
    }
    pr_info!("{n} devices of {cap} bytes\n");
    Ok(fifos)
}

/// Wait queues for blocked readers and writers (and pollers), used like C's
/// `wait_event_interruptible_exclusive()` (as `cfifo.c` does).
///
/// 7.3's `CondVar`/`PollCondVar` would do, but every sleep through them costs about ten
/// more out-of-line calls (non-inlined `Opaque` accessors, the `init_wait` and
/// `signal_pending` helpers, `CondVar::notify`) and re-checks for signals separately; under
/// the test VM's TCG each call is an indirect-jump lookup, which made the 1-byte ping-pong
/// ~8% slower than the C twin. [`WaitQueue::wait`] is the `prepare_to_wait_event()` /
/// `schedule()` / `finish_wait()` sequence of the C macro, with the mutex released around
/// `schedule()`; `PinnedDrop` mirrors `PollCondVar`'s (poll entries, then an RCU grace
/// period).
mod waitq {
    use super::*;
    use core::{marker::PhantomData, mem::MaybeUninit, ptr};
    use kernel::{
        sync::{rcu::synchronize_rcu, LockClassKey, MutexGuard},
        task::{TASK_INTERRUPTIBLE, TASK_NORMAL},
        types::Opaque,
    };

    /// A `wait_queue_head_t`.
    ///
    /// # Invariants
    ///
    /// `head` is initialised by [`WaitQueue::new`] and pinned until `drop`, which detaches
    /// every poll entry and waits an RCU grace period before the memory may go away.
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
        pub(crate) fn new(
            name: &'static CStr,
            key: Pin<&'static LockClassKey>,
        ) -> impl PinInit<Self> {
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
        fn drop(self: Pin<&mut Self>) {
            // SAFETY: `raw()` is an initialised head. Detaches poll entries (as `PollCondVar`
            // does); sleepers cannot exist: they hold a file reference.
            unsafe { bindings::__wake_up_pollfree(self.raw()) };
            // Epoll frees its entries after an RCU grace period.
            synchronize_rcu();
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
            // invariant), and `wq` stays valid for an RCU grace period after its last poll
            // entry is removed (its `drop`).
            unsafe { bindings::poll_wait(file.as_ptr(), wq.raw(), self.table) }
        }
    }
}

/// The `unsafe` glue: a character-device region whose `file_operations` call the safe
/// [`OpenFile`] methods, and the two kernel calls without a safe 7.3 wrapper.
///
/// 7.3 has no Rust abstraction for `cdev`s, and its `MiscDevice` cannot host a blocking
/// `open` (see the crate docs) and has no `poll`. This mirrors `kernel::miscdevice`'s
/// trampolines: the private data of a file is a `KBox<OpenFile>` from `open` to `release`.
mod chrdev {
    use super::*;
    use kernel::{
        error::{from_err_ptr, to_result},
        task::Task,
        types::{ForeignOwnable, Opaque},
        ModuleMetadata,
    };

    /// `/dev/<name>0`.. backed by one `cdev` over `fifos.len()` minors.
    ///
    /// # Invariants
    ///
    /// After initialisation: `base` is a registered chrdev region of `fifos.len()` minors,
    /// `cdev` is initialised with [`FOPS`] and added for it, `class` is a live class with one
    /// device per minor. All fields other than `cdev` are written before `cdev_add` and never
    /// change, so `open` may read them from any thread.
    #[pin_data(PinnedDrop)]
    pub(crate) struct Registration {
        #[pin]
        cdev: Opaque<bindings::cdev>,
        fifos: KVec<Arc<Fifo>>,
        base: bindings::dev_t,
        class: *mut bindings::class,
    }

    // SAFETY: The raw `class` pointer is only passed to the (thread-safe) driver core in
    // `drop`; the `cdev` is managed by the kernel's own locking; `fifos` is `Send + Sync`.
    unsafe impl Send for Registration {}
    // SAFETY: Shared access only reads fields that never change after initialisation (see
    // the type invariants).
    unsafe impl Sync for Registration {}

    const OWNER: *mut bindings::module =
        <crate::LocalModule as ModuleMetadata>::THIS_MODULE.as_ptr();

    /// The `file_operations` of every device. `llseek` stays `None` and `open` calls
    /// `stream_open()`, so `lseek`/`pread`/`pwrite` fail `ESPIPE` as on a FIFO. `owner`
    /// makes `chrdev_open()` pin the module while a file is open, as `cdev.owner` does too
    /// (`rmmod` then fails: `delete_module()` returns `EWOULDBLOCK`).
    const FOPS: bindings::file_operations = bindings::file_operations {
        owner: OWNER,
        open: Some(open),
        release: Some(release),
        read_iter: Some(read_iter),
        write_iter: Some(write_iter),
        poll: Some(poll),
        unlocked_ioctl: Some(ioctl),
        show_fdinfo: Some(show_fdinfo),
        ..pin_init::zeroed()
    };

    fn mkdev(base: bindings::dev_t, i: usize) -> bindings::dev_t {
        base + i as bindings::dev_t
    }

    impl Registration {
        pub(crate) fn new(
            name: &'static CStr,
            fifos: KVec<Arc<Fifo>>,
        ) -> impl PinInit<Self, Error> {
            let init = move |slot: *mut Self| -> Result {
                let count = fifos.len();
                let mut base: bindings::dev_t = 0;
                // SAFETY: `base` is a valid out-pointer; `name` is a static C string.
                to_result(unsafe {
                    bindings::alloc_chrdev_region(&mut base, 0, count as u32, name.as_char_ptr())
                })?;
                // SAFETY: `name` is a static C string (the class keeps the pointer).
                let class =
                    match from_err_ptr(unsafe { bindings::class_create(name.as_char_ptr()) }) {
                        Ok(class) => class,
                        Err(e) => {
                            // SAFETY: We registered this region just above.
                            unsafe { bindings::unregister_chrdev_region(base, count as u32) };
                            return Err(e);
                        }
                    };
                // SAFETY: `slot` is valid for writes and pinned (`pin_init_from_closure`); the
                // fields are written before `cdev_add` publishes the device (type invariant).
                unsafe {
                    (&raw mut (*slot).fifos).write(fifos);
                    (&raw mut (*slot).base).write(base);
                    (&raw mut (*slot).class).write(class);
                }
                // SAFETY: `slot` is valid and pinned, so the `cdev` never moves.
                let cdev = unsafe { Opaque::cast_into(&raw const (*slot).cdev) };
                // SAFETY: `cdev` points to writable memory for a `struct cdev`; `FOPS` is
                // `'static` (promoted constant).
                unsafe {
                    bindings::cdev_init(cdev, &FOPS);
                    (*cdev).owner = OWNER;
                }
                // SAFETY: `cdev` is initialised; `base` is our region of `count` minors.
                let mut ret = to_result(unsafe { bindings::cdev_add(cdev, base, count as u32) });
                let mut created = 0;
                if ret.is_ok() {
                    while created < count {
                        // SAFETY: `class` is live; the format takes one `unsigned int`.
                        let dev = unsafe {
                            bindings::device_create(
                                class,
                                core::ptr::null_mut(),
                                mkdev(base, created),
                                core::ptr::null_mut(),
                                c"%s%u".as_char_ptr(),
                                name.as_char_ptr(),
                                created as c_uint,
                            )
                        };
                        if let Err(e) = from_err_ptr(dev) {
                            ret = Err(e);
                            break;
                        }
                        created += 1;
                    }
                    if ret.is_err() {
                        // SAFETY: The cdev was added above.
                        unsafe { bindings::cdev_del(cdev) };
                    }
                }
                if ret.is_err() {
                    // SAFETY: Undo the steps above in reverse order: the devices we created,
                    // the class, the region; then drop the `fifos` we moved into `slot`,
                    // which the caller will treat as uninitialised.
                    unsafe {
                        for i in 0..created {
                            bindings::device_destroy(class, mkdev(base, i));
                        }
                        bindings::class_destroy(class);
                        bindings::unregister_chrdev_region(base, count as u32);
                        core::ptr::drop_in_place(&raw mut (*slot).fifos);
                    }
                }
                ret
            };
            // SAFETY: On `Ok` every field of `*slot` was initialised; on `Err` nothing is
            // left registered and the only written field with a destructor was dropped.
            unsafe { pin_init::pin_init_from_closure(init) }
        }

        /// The registration whose `cdev` is `cdev`.
        ///
        /// # Safety
        ///
        /// `cdev` must be the `cdev` field of a live `Registration`.
        unsafe fn from_cdev<'a>(cdev: *mut bindings::cdev) -> &'a Registration {
            let field = Opaque::cast_from(cdev).cast_mut();
            // SAFETY: By the caller, `field` is the `cdev` field of a live `Registration`.
            unsafe { &*kernel::container_of!(field, Registration, cdev) }
        }
    }

    #[pinned_drop]
    impl PinnedDrop for Registration {
        fn drop(self: Pin<&mut Self>) {
            let count = self.fifos.len();
            // SAFETY: By the type invariants these were all created by `new`; removing the
            // devices and the cdev first stops new opens. Open files cannot exist here: each
            // holds a reference on this module, which is being unloaded.
            unsafe {
                for i in 0..count {
                    bindings::device_destroy(self.class, mkdev(self.base, i));
                }
                bindings::class_destroy(self.class);
                bindings::cdev_del(self.cdev.get());
                bindings::unregister_chrdev_region(self.base, count as u32);
            }
        }
    }

    /// The open file behind `file`.
    ///
    /// # Safety
    ///
    /// `file` must be a file of ours between a successful `open` and its `release`.
    unsafe fn open_file<'a>(file: *mut bindings::file) -> &'a OpenFile {
        // SAFETY: By the caller, `private_data` holds the `KBox<OpenFile>` from `open`, which
        // `release` (not yet run) is the only one to take back.
        unsafe { <KBox<OpenFile> as ForeignOwnable>::borrow((*file).private_data) }
    }

    /// # Safety
    ///
    /// Called by `chrdev_open()` for an inode of our region with the file being opened.
    unsafe extern "C" fn open(inode: *mut bindings::inode, raw: *mut bindings::file) -> c_int {
        // SAFETY: `chrdev_open()` found our `cdev` by the inode's device number and holds a
        // reference on it and on this module (its owner) for the whole call, so the
        // `Registration` around it is alive.
        let reg = unsafe { Registration::from_cdev((*inode).__bindgen_anon_5.i_cdev) };
        // SAFETY: `inode` is valid for the call.
        let minor = unsafe { (*inode).i_rdev } & bindings::MINORMASK;
        let index = minor.wrapping_sub(reg.base & bindings::MINORMASK) as usize;
        let Some(fifo) = reg.fifos.get(index) else {
            return ENXIO.to_errno();
        };
        // SAFETY: `inode` and `raw` are the inode and file being opened. Marks the file as a
        // stream (no file position): `lseek`/`pread`/`pwrite` fail `ESPIPE`.
        unsafe { bindings::stream_open(inode, raw) };
        // SAFETY: The file is valid for the call and nobody holds an `fdget_pos` on it.
        let file = unsafe { File::from_raw_file(raw) };
        match OpenFile::open(fifo, file) {
            Ok(of) => {
                // SAFETY: `open` may set the private data; `release` takes it back.
                unsafe { (*raw).private_data = of.into_foreign() };
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// Called once by the VFS when the last reference to a file of ours goes away.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, raw: *mut bindings::file) -> c_int {
        // SAFETY: `open` stored a `KBox<OpenFile>` here; release is the last user.
        drop(unsafe { <KBox<OpenFile> as ForeignOwnable>::from_foreign((*raw).private_data) });
        0
    }

    /// # Safety
    ///
    /// Called by the VFS with a valid kiocb of one of our files and a destination iterator.
    unsafe extern "C" fn read_iter(
        kiocb: *mut bindings::kiocb,
        iter: *mut bindings::iov_iter,
    ) -> isize {
        // SAFETY: The kiocb is valid for the call; its file is ours and open.
        let raw = unsafe { (*kiocb).ki_filp };
        // SAFETY: As above; no `fdget_pos` without `f_pos_lock` on a stream file.
        let file = unsafe { File::from_raw_file(raw) };
        // SAFETY: `iter` is a valid `ITER_DEST` iterator used only through this reference.
        let iov = unsafe { IovIterDest::from_raw(iter) };
        // SAFETY: `raw` is between `open` and `release`.
        match unsafe { open_file(raw) }.read(file, iov) {
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// Called by the VFS with a valid kiocb of one of our files and a source iterator.
    unsafe extern "C" fn write_iter(
        kiocb: *mut bindings::kiocb,
        iter: *mut bindings::iov_iter,
    ) -> isize {
        // SAFETY: The kiocb is valid for the call; its file is ours and open.
        let raw = unsafe { (*kiocb).ki_filp };
        // SAFETY: As above; no `fdget_pos` without `f_pos_lock` on a stream file.
        let file = unsafe { File::from_raw_file(raw) };
        // SAFETY: `iter` is a valid `ITER_SOURCE` iterator used only through this reference.
        let iov = unsafe { IovIterSource::from_raw(iter) };
        // SAFETY: `raw` is between `open` and `release`.
        match unsafe { open_file(raw) }.write(file, iov) {
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// Called by the VFS with one of our open files and a valid (or null) poll table.
    unsafe extern "C" fn poll(
        raw: *mut bindings::file,
        table: *mut bindings::poll_table_struct,
    ) -> bindings::__poll_t {
        // SAFETY: The file is valid for the call; no `fdget_pos` without `f_pos_lock`.
        let file = unsafe { File::from_raw_file(raw) };
        // SAFETY: `table` is null or valid for the call.
        let table = unsafe { PollTable::from_raw(table) };
        // SAFETY: `raw` is between `open` and `release`.
        unsafe { open_file(raw) }.poll(file, &table)
    }

    /// # Safety
    ///
    /// Called by the VFS with one of our open files.
    unsafe extern "C" fn ioctl(raw: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
        // SAFETY: `raw` is between `open` and `release`.
        match unsafe { open_file(raw) }.ioctl(cmd, arg) {
            Ok(v) => v as c_long,
            Err(e) => e.to_errno() as c_long,
        }
    }

    /// # Safety
    ///
    /// Called by procfs with a seq_file it owns for the call and one of our open files.
    unsafe extern "C" fn show_fdinfo(m: *mut bindings::seq_file, raw: *mut bindings::file) {
        // SAFETY: `m` is valid and used only by this thread for the call.
        let m = unsafe { SeqFile::from_raw(m) };
        // SAFETY: `raw` is between `open` and `release`.
        unsafe { open_file(raw) }.show_fdinfo(m);
    }

    /// `send_sig(SIGPIPE, current, 0)`, as `pipe_write()` does.
    pub(crate) fn send_sigpipe_to_current() {
        // SAFETY: The current task is valid while it runs this code; `send_sig` may be
        // called from process context without locks held.
        unsafe { bindings::send_sig(bindings::SIGPIPE as c_int, Task::current_raw(), 0) };
    }

    /// `capable(CAP_SYS_ADMIN)` for the current task.
    pub(crate) fn capable_sys_admin() -> bool {
        // SAFETY: `capable` only reads the current task's credentials; process context.
        unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as c_int) }
    }
}
