// SPDX-License-Identifier: GPL-2.0

//! The user-visible constants: the ioctl ABI of `include/uapi/rfifo.h` (shared with the C
//! twin and the `rfifo-uapi` crate, whose host tests compare it with the header) and the
//! `poll(2)` event bits.

use kernel::ioctl::{
    _IO,
    _IOR,
    _IOW, //
};

const MAGIC: u32 = 0xB9;

/// `RFIFO_MIN_CAPACITY` / `RFIFO_MAX_CAPACITY`: bounds of the `capacity` parameter and of
/// `SET_CAPACITY`, in bytes.
pub(crate) const MIN_CAPACITY: u32 = 1;
pub(crate) const MAX_CAPACITY: u32 = 16 * 1024 * 1024;

/// `struct rfifo_stats`: 4 x `__u64` + 2 x `__u32`, no padding. The same 40 bytes on 32-
/// and 64-bit userspace (no pointers, no `long`, the `__u32`s last), so a 32-bit
/// program's ioctls need no translation (`compat_ptr_ioctl`).
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
    /// The user-visible layout (native endianness, C layout) as five `__u64` words: the
    /// two `__u32`s share the last one, `readers` at the lower address.
    pub(crate) fn to_words(&self) -> [u64; 5] {
        let (r, w) = (u64::from(self.readers), u64::from(self.writers));
        let last = if cfg!(target_endian = "little") {
            r | (w << 32)
        } else {
            (r << 32) | w
        };
        [self.bytes_in, self.bytes_out, self.fill, self.opens, last]
    }
}

pub(crate) const GET_CAPACITY: u32 = _IOR::<u32>(MAGIC, 1);
pub(crate) const SET_CAPACITY: u32 = _IOW::<u32>(MAGIC, 2);
pub(crate) const CLEAR: u32 = _IO(MAGIC, 3);
pub(crate) const GET_STATS: u32 = _IOR::<Stats>(MAGIC, 4);

const _: () = assert!(size_of::<Stats>() == 40);

/// `poll(2)` event bits (`include/uapi/asm-generic/poll.h` and `eventpoll.h`; bindgen does
/// not export the `__poll_t` macros).
pub(crate) mod poll {
    pub(crate) const POLLIN: u32 = 0x0001;
    pub(crate) const POLLOUT: u32 = 0x0004;
    pub(crate) const POLLERR: u32 = 0x0008;
    pub(crate) const POLLHUP: u32 = 0x0010;
    pub(crate) const POLLRDNORM: u32 = 0x0040;
    pub(crate) const POLLWRNORM: u32 = 0x0100;
}
