// SPDX-License-Identifier: GPL-2.0

//! The user-visible ABI of `include/uapi/edu.h` (shared with the C twin and the `edu-uapi`
//! crate, whose host tests compare it with the header), and the pure rules behind it:
//! how a file offset and length map to device memory, and the factorial timeout.

use kernel::{
    ioctl::{
        _IOR,
        _IOWR, //
    },
    prelude::*,
};

const MAGIC: u32 = 0xBB;

/// `EDU_BUF_SIZE`.
pub(crate) const BUF_SIZE: usize = crate::regs::BUF_SIZE;
/// `EDU_DEFAULT_TIMEOUT_MS` / `EDU_MAX_TIMEOUT_MS`.
pub(crate) const DEFAULT_TIMEOUT_MS: u32 = 30_000;
pub(crate) const MAX_TIMEOUT_MS: u32 = 600_000;

/// `struct edu_factorial`: four `__u32`, 16 bytes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Factorial {
    pub(crate) n: u32,
    pub(crate) timeout_ms: u32,
    pub(crate) flags: u32,
    pub(crate) result: u32,
}

// SAFETY: Four `u32`s, no padding: every bit pattern is valid.
unsafe impl kernel::transmute::FromBytes for Factorial {}
// SAFETY: Four `u32`s, no padding: no uninitialized bytes.
unsafe impl kernel::transmute::AsBytes for Factorial {}

/// `struct edu_stats`: four `__u64`, 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub(crate) struct Stats {
    pub(crate) interrupts: u64,
    pub(crate) factorials: u64,
    pub(crate) dma_transfers: u64,
    pub(crate) dma_bytes: u64,
}

// SAFETY: Four `u64`s, no padding: no uninitialized bytes.
unsafe impl kernel::transmute::AsBytes for Stats {}

pub(crate) const FACTORIAL: u32 = _IOWR::<Factorial>(MAGIC, 1);
pub(crate) const LIVENESS: u32 = _IOWR::<u32>(MAGIC, 2);
pub(crate) const GET_STATS: u32 = _IOR::<Stats>(MAGIC, 3);

const _: () = assert!(size_of::<Factorial>() == 16 && size_of::<Stats>() == 32);

/// Direction of a transfer, for [`span`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Dir {
    /// `read`/`pread`: device memory -> caller.
    Read,
    /// `write`/`pwrite`: caller -> device memory.
    Write,
}

/// The part of device memory a `read`/`write` of `len` bytes at file offset `pos` moves:
/// `Ok(None)` for nothing (zero length, or a read at or past the end: end of file),
/// `Ok(Some((offset, count)))` with `1 <= count` and `offset + count <= BUF_SIZE`
/// (shortened at the end), `ENOSPC` for a write at or past the end, `EINVAL` for a
/// negative offset (the VFS already refuses those).
pub(crate) fn span(pos: i64, len: usize, dir: Dir) -> Result<Option<(usize, usize)>> {
    if pos < 0 {
        return Err(EINVAL);
    }
    if len == 0 {
        return Ok(None);
    }
    let off = match usize::try_from(pos) {
        Ok(off) if off < BUF_SIZE => off,
        _ if dir == Dir::Read => return Ok(None),
        _ => return Err(ENOSPC),
    };
    Ok(Some((off, len.min(BUF_SIZE - off))))
}

/// The timeout of a `FACTORIAL` call in milliseconds (0: the default; too large: `EINVAL`).
pub(crate) fn timeout_ms(requested: u32) -> Result<u32> {
    match requested {
        0 => Ok(DEFAULT_TIMEOUT_MS),
        t if t <= MAX_TIMEOUT_MS => Ok(t),
        _ => Err(EINVAL),
    }
}

#[kunit_tests(rust_edu_uapi)]
mod tests {
    use super::*;

    #[test]
    fn spans_inside_and_across_the_end() {
        assert_eq!(BUF_SIZE, 4095);
        assert_eq!(span(0, 4095, Dir::Write), Ok(Some((0, 4095))));
        assert_eq!(span(0, 1, Dir::Read), Ok(Some((0, 1))));
        assert_eq!(span(4094, 1, Dir::Write), Ok(Some((4094, 1))));
        assert_eq!(span(4000, 200, Dir::Read), Ok(Some((4000, 95))));
        assert_eq!(span(1, usize::MAX, Dir::Write), Ok(Some((1, 4094))));
    }

    #[test]
    fn spans_never_touch_the_last_device_byte() {
        // Offset 4095 (device address 0x40fff): QEMU < 8.2.1 aborts the VM on a transfer
        // that ends at the end of the device memory (`regs.rs` rule 6).
        assert_eq!(span(0, 4096, Dir::Write), Ok(Some((0, 4095))));
        assert_eq!(span(0, 4096, Dir::Read), Ok(Some((0, 4095))));
        assert_eq!(span(4094, 2, Dir::Write), Ok(Some((4094, 1))));
        assert_eq!(span(4095, 1, Dir::Write), Err(ENOSPC));
        assert_eq!(span(4095, 1, Dir::Read), Ok(None));
    }

    #[test]
    fn spans_at_and_past_the_end() {
        assert_eq!(span(4096, 1, Dir::Read), Ok(None));
        assert_eq!(span(4096, 1, Dir::Write), Err(ENOSPC));
        assert_eq!(span(i64::MAX, 10, Dir::Read), Ok(None));
        assert_eq!(span(i64::MAX, 10, Dir::Write), Err(ENOSPC));
        assert_eq!(span(-1, 10, Dir::Read), Err(EINVAL));
    }

    #[test]
    fn zero_lengths_move_nothing() {
        assert_eq!(span(0, 0, Dir::Write), Ok(None));
        assert_eq!(span(5000, 0, Dir::Write), Ok(None));
    }

    #[test]
    fn timeouts() {
        assert_eq!(timeout_ms(0), Ok(DEFAULT_TIMEOUT_MS));
        assert_eq!(timeout_ms(1), Ok(1));
        assert_eq!(timeout_ms(MAX_TIMEOUT_MS), Ok(MAX_TIMEOUT_MS));
        assert_eq!(timeout_ms(MAX_TIMEOUT_MS + 1), Err(EINVAL));
    }
}
