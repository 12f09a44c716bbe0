// SPDX-License-Identifier: GPL-2.0

//! `rfifo`: the chapter's flagship device, LDD3's `scullpipe` redone with the semantics of
//! the kernel's own named FIFOs (fifo(7), pipe(7)). Its C twin is `modules-c/cfifo/cfifo.c`;
//! both share the ioctl ABI in `include/uapi/rfifo.h`, and `guest/tests/fifo_semantics.rs`
//! runs one test suite against a `mkfifo` node, `/dev/rfifo0` and `/dev/cfifo0`.
//!
//! `devices=N` (1..=64, default 4) creates `/dev/rfifo0`..; each is a bounded byte FIFO of
//! `capacity` bytes (1..=16 MiB, default 65536; out of range: `insmod` fails with `EINVAL`).
//! Both are readable in `/sys/module/rfifo/parameters/`; given twice (`insmod` arguments,
//! or `options` in modprobe.d and then `modprobe` arguments) the last value wins, as with
//! C's `module_param`.
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
//!   that has not seen a writer yet). Once a reader has polled with `EPOLLET`, every write
//!   wakes the readers (an edge-triggered reader that does not drain still gets an event
//!   per write), as `pipe_write()` does.
//! - ioctls (`include/uapi/rfifo.h`): `GET_CAPACITY`, `SET_CAPACITY` (`CAP_SYS_ADMIN`, only
//!   while empty), `CLEAR` (`CAP_SYS_ADMIN`), `GET_STATS`; unknown: `ENOTTY`, bad pointer:
//!   `EFAULT`. The same from 32-bit programs (`compat_ioctl`; the ABI has one layout).
//! - `/proc/<pid>/fdinfo/<fd>` shows `bytes_read:` and `bytes_written:` of that open file.
//!
//! Waiting for each other: each device has one mutex, held by `read`/`write` across the
//! copy to or from user memory (as a pipe's mutex is). A copy that faults slowly (a buffer
//! backed by userfaultfd, a FUSE mmap, a swapped-out page) therefore delays that device's
//! other readers and writers, its opens and closes and its four ioctls, which wait for the
//! mutex uninterruptibly (a signal does not end the wait; the C twin is the same). `poll`,
//! `select`, `epoll` and `/proc/<pid>/fdinfo` never take the mutex and answer at once.
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
//! Design: a ring buffer (`mem.rs`, head + len) per device behind a `Mutex`, bytes copied
//! directly between the ring and the caller's iov iterator with the lock held only for
//! that (one lock round trip per `read`/`write` unless it has to wait); blocked openers,
//! readers and writers wait on the wait queues of `waitq.rs` (released lock), and a side
//! is woken only when someone sleeps on it (flagged under the lock), or polled and the
//! status it polls changed (or polled edge-triggered, for readers). Per-open byte counts are
//! atomics, added to after each `read`/`write`. `poll` reads a status word that every
//! change publishes under the lock, checked in two comparisons per `read`/`write`
//! (`fifo.rs`). A `write` that fits is copied in one go; only one that must wait or be
//! split takes the general path. The devices are a list owned by the module; open files
//! borrow theirs (`chrdev.rs`).
//!
//! Files (Kbuild builds `rfifo.rs`; rustc follows the `mod` declarations):
//!
//! | file | what | `unsafe` |
//! |---|---|---|
//! | `rfifo.rs` | module, parameters, init | no |
//! | `uapi.rs` | ioctl ABI (`include/uapi/rfifo.h`), poll bits | no |
//! | `ring.rs` | ring arithmetic and accounting, capacity checks; KUnit suite `rfifo_ring` | no |
//! | `fifo.rs` | the FIFO rules: open, read, write, poll, ioctls, fdinfo, release | no |
//! | `waitq.rs` | wait queues for sleeping readers/writers and pollers | yes, invariants at its top |
//! | `chrdev.rs` | `cdev` region, `file_operations` trampolines, `send_sig`, `capable` | yes, invariants at its top |
//! | `mem.rs` | the ring's memory (one zeroed `kvmalloc()`) | yes, invariants at its top |
//!
//! How this differs from the chapter's code (a `cdev` region instead of `MiscDevice`, and
//! why: 7.3's `misc_open()` holds the global `misc_mtx` across a blocking FIFO open) is in
//! [docs/chapter-map.md](../../docs/chapter-map.md), with the other API differences.

use crate::{
    fifo::Devices,
    ring::check_capacity,
    uapi::{
        MAX_CAPACITY,
        MIN_CAPACITY, //
    },
};
use kernel::prelude::*;

mod chrdev;
mod fifo;
mod mem;
#[path = "../common/params.rs"]
mod params;
mod ring;
mod uapi;
mod waitq;

module! {
    type: RfifoModule,
    name: "rfifo",
    authors: ["Rust kernel modules workbench"],
    description: "Bounded FIFO devices with named-FIFO semantics (chapter: scullpipe)",
    license: "GPL",
}

// The parameters are declared like C's `module_param(.., 0444)`: a second `name=value` on the
// command line (or from modprobe.d and the command line) overrides the first. 7.3's
// `module!` parameters are set once and fail the load with `EEXIST` on a repeat, which
// `modprobe` then takes for "already loaded" (exit 0, no device).
params::module_params! {
    devices: u32 {
        default: 4,
        permissions: 0o444,
        description: "Number of /dev/rfifoN devices (1..=64)",
    },
    capacity: u32 {
        default: 65536,
        permissions: 0o444,
        description: "Buffer size of each device in bytes (1..=16777216)",
    },
}

const MAX_DEVICES: u32 = 64;

#[pin_data]
struct RfifoModule {
    #[pin]
    devs: chrdev::Registration,
}

impl kernel::InPlaceModule for RfifoModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // The registration makes the devices openable as its last step and must stay the
        // last fallible step here: an init that fails after it would free the module under
        // an open sleeping in it (`chrdev.rs`).
        try_pin_init!(RfifoModule {
            devs <- chrdev::Registration::new(c"rfifo", make_fifos()?),
        })
    }
}

fn make_fifos() -> Result<Devices> {
    let n = devices.get();
    let bytes = capacity.get();
    if !(1..=MAX_DEVICES).contains(&n) {
        pr_err!("devices={n} is out of range 1..={MAX_DEVICES}\n");
        return Err(EINVAL);
    }
    let Ok(cap) = check_capacity(bytes) else {
        pr_err!("capacity={bytes} is out of range {MIN_CAPACITY}..={MAX_CAPACITY}\n");
        return Err(EINVAL);
    };
    let fifos = Devices::new(n as usize, cap)?;
    pr_info!("{n} devices of {cap} bytes\n");
    Ok(fifos)
}
