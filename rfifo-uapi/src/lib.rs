//! Userspace side of `include/uapi/rfifo.h`, the ioctl ABI of `/dev/rfifoN` (the Rust
//! module `modules/rfifo`) and `/dev/cfifoN` (its C twin `modules-c/cfifo`).
//!
//! The numbers are computed like the kernel's `_IO`/`_IOR`/`_IOW` (asm-generic encoding);
//! the host tests check them, and the layout of [`Stats`], against the C header.
//!
//! ```no_run
//! use std::os::fd::AsRawFd;
//! let f = std::fs::OpenOptions::new().read(true).write(true).open("/dev/rfifo0")?;
//! let cap = rfifo_uapi::get_capacity(f.as_raw_fd())?;
//! let stats = rfifo_uapi::get_stats(f.as_raw_fd())?;
//! println!("{cap} bytes, {} buffered", stats.fill);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::os::fd::RawFd;
use uapi_ioc::check;

/// `RFIFO_IOC_MAGIC`.
pub const MAGIC: u32 = 0xB9;
/// `RFIFO_MIN_CAPACITY` / `RFIFO_MAX_CAPACITY`: bounds of `capacity=` and `SET_CAPACITY`.
pub const MIN_CAPACITY: u32 = 1;
pub const MAX_CAPACITY: u32 = 16 * 1024 * 1024;
/// Writes of at most this many bytes are atomic (`PIPE_BUF`, if the capacity allows).
pub const PIPE_BUF: usize = 4096;

/// `struct rfifo_stats`: device totals since the module was loaded, and current values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Bytes accepted by `write()`.
    pub bytes_in: u64,
    /// Bytes returned by `read()` (`CLEAR` does not count).
    pub bytes_out: u64,
    /// Bytes in the buffer now.
    pub fill: u64,
    /// Successful `open()` calls.
    pub opens: u64,
    /// Open files with read access now (`O_RDWR` counts).
    pub readers: u32,
    /// Open files with write access now (`O_RDWR` counts).
    pub writers: u32,
}

/// The `_IOC` encoding (`_IOC_NONE`, `_IOC_WRITE`, `_IOC_READ`, `_IOC(...)`), from `uapi-ioc`.
pub use uapi_ioc::{ioc, IOC_NONE, IOC_READ, IOC_WRITE};

/// `RFIFO_IOC_GET_CAPACITY`: `_IOR(MAGIC, 1, __u32)`.
pub const GET_CAPACITY: u32 = ioc(IOC_READ, MAGIC, 1, size_of::<u32>());
/// `RFIFO_IOC_SET_CAPACITY`: `_IOW(MAGIC, 2, __u32)`; empty buffer and `CAP_SYS_ADMIN` only.
pub const SET_CAPACITY: u32 = ioc(IOC_WRITE, MAGIC, 2, size_of::<u32>());
/// `RFIFO_IOC_CLEAR`: `_IO(MAGIC, 3)`; `CAP_SYS_ADMIN` only.
pub const CLEAR: u32 = ioc(IOC_NONE, MAGIC, 3, 0);
/// `RFIFO_IOC_GET_STATS`: `_IOR(MAGIC, 4, struct rfifo_stats)`.
pub const GET_STATS: u32 = ioc(IOC_READ, MAGIC, 4, size_of::<Stats>());

/// `RFIFO_IOC_GET_CAPACITY`.
pub fn get_capacity(fd: RawFd) -> io::Result<u32> {
    let mut v: u32 = 0;
    // SAFETY: `v` is a valid, writable `__u32` for the duration of the call.
    check(unsafe { libc::ioctl(fd, GET_CAPACITY as _, &mut v as *mut u32) })?;
    Ok(v)
}

/// `RFIFO_IOC_SET_CAPACITY`.
pub fn set_capacity(fd: RawFd, bytes: u32) -> io::Result<()> {
    // SAFETY: `bytes` is a valid, readable `__u32` for the duration of the call.
    check(unsafe { libc::ioctl(fd, SET_CAPACITY as _, &bytes as *const u32) })?;
    Ok(())
}

/// `RFIFO_IOC_CLEAR`.
pub fn clear(fd: RawFd) -> io::Result<()> {
    // SAFETY: `_IO` ioctl, the argument is unused.
    check(unsafe { libc::ioctl(fd, CLEAR as _, 0usize) })?;
    Ok(())
}

/// `RFIFO_IOC_GET_STATS`.
pub fn get_stats(fd: RawFd) -> io::Result<Stats> {
    let mut s = Stats::default();
    // SAFETY: `s` is a valid, writable `struct rfifo_stats` for the duration of the call.
    check(unsafe { libc::ioctl(fd, GET_STATS as _, &mut s as *mut Stats) })?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;
    use uapi_ioc::header::{assert_layout, defines, ioctl_number, number};

    const HEADER: &str = include_str!("../../include/uapi/rfifo.h");

    /// The size of a type the header's `_IOR`/`_IOW` name.
    fn size(ty: &str) -> usize {
        match ty {
            "__u32" => 4,
            "struct rfifo_stats" => size_of::<Stats>(),
            other => panic!("unknown type {other}"),
        }
    }

    #[test]
    fn constants_match_the_c_header() {
        let d = defines(HEADER);
        assert_eq!(number(&d["RFIFO_IOC_MAGIC"]), MAGIC);
        assert_eq!(number(&d["RFIFO_MIN_CAPACITY"]), MIN_CAPACITY);
        assert_eq!(number(&d["RFIFO_MAX_CAPACITY"]), MAX_CAPACITY);
        for (name, ours) in [
            ("RFIFO_IOC_GET_CAPACITY", GET_CAPACITY),
            ("RFIFO_IOC_SET_CAPACITY", SET_CAPACITY),
            ("RFIFO_IOC_CLEAR", CLEAR),
            ("RFIFO_IOC_GET_STATS", GET_STATS),
        ] {
            assert_eq!(ioctl_number(&d[name], &d, size), ours, "{name}");
        }
    }

    #[test]
    fn known_encodings() {
        // Independent of the parser above: the values the kernel's macros produce on x86-64.
        assert_eq!(GET_CAPACITY, 0x8004_b901);
        assert_eq!(SET_CAPACITY, 0x4004_b902);
        assert_eq!(CLEAR, 0x0000_b903);
        assert_eq!(GET_STATS, 0x8028_b904);
    }

    #[test]
    fn stats_layout_matches_the_c_struct() {
        // Field order and types as declared in the header, no padding.
        assert_layout(
            HEADER,
            "rfifo_stats",
            &[
                ("__u64", "bytes_in", offset_of!(Stats, bytes_in)),
                ("__u64", "bytes_out", offset_of!(Stats, bytes_out)),
                ("__u64", "fill", offset_of!(Stats, fill)),
                ("__u64", "opens", offset_of!(Stats, opens)),
                ("__u32", "readers", offset_of!(Stats, readers)),
                ("__u32", "writers", offset_of!(Stats, writers)),
            ],
            size_of::<Stats>(),
        );
    }

    #[test]
    fn ioctls_on_a_regular_file_fail_enotty() {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open("Cargo.toml").unwrap();
        let e = get_capacity(f.as_raw_fd()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    }
}
