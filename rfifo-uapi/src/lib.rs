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

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
/// `_IOC_NONE`, `_IOC_WRITE`, `_IOC_READ` (asm-generic, also x86).
pub const IOC_NONE: u32 = 0;
pub const IOC_WRITE: u32 = 1;
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    assert!(size < 1 << IOC_SIZEBITS);
    (dir << IOC_DIRSHIFT)
        | (ty << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

/// `RFIFO_IOC_GET_CAPACITY`: `_IOR(MAGIC, 1, __u32)`.
pub const GET_CAPACITY: u32 = ioc(IOC_READ, MAGIC, 1, size_of::<u32>());
/// `RFIFO_IOC_SET_CAPACITY`: `_IOW(MAGIC, 2, __u32)`; empty buffer and `CAP_SYS_ADMIN` only.
pub const SET_CAPACITY: u32 = ioc(IOC_WRITE, MAGIC, 2, size_of::<u32>());
/// `RFIFO_IOC_CLEAR`: `_IO(MAGIC, 3)`; `CAP_SYS_ADMIN` only.
pub const CLEAR: u32 = ioc(IOC_NONE, MAGIC, 3, 0);
/// `RFIFO_IOC_GET_STATS`: `_IOR(MAGIC, 4, struct rfifo_stats)`.
pub const GET_STATS: u32 = ioc(IOC_READ, MAGIC, 4, size_of::<Stats>());

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

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
    use std::collections::HashMap;
    use std::mem::offset_of;

    const HEADER: &str = include_str!("../../include/uapi/rfifo.h");

    /// `#define NAME VALUE` lines of the header (value text trimmed).
    fn defines() -> HashMap<String, String> {
        HEADER
            .lines()
            .filter_map(|l| l.strip_prefix("#define "))
            .filter_map(|l| {
                let (name, value) = l.split_once(char::is_whitespace)?;
                Some((name.to_string(), value.trim().to_string()))
            })
            .collect()
    }

    fn number(s: &str) -> u32 {
        let s = s.trim();
        if let Some(h) = s.strip_prefix("0x") {
            u32::from_str_radix(h, 16).unwrap()
        } else if let Some(inner) = s.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
            inner.split('*').map(number).product()
        } else {
            s.parse().unwrap()
        }
    }

    /// Evaluates `_IO(RFIFO_IOC_MAGIC, n)`, `_IOR(...)`, `_IOW(...)` as the header spells them.
    fn ioctl_number(value: &str, d: &HashMap<String, String>) -> u32 {
        let (mac, args) = value.split_once('(').unwrap();
        let args: Vec<&str> = args
            .strip_suffix(')')
            .unwrap()
            .split(',')
            .map(str::trim)
            .collect();
        let ty = number(&d[args[0]]);
        let nr = number(args[1]);
        let size = |t: &str| match t {
            "__u32" => 4,
            "struct rfifo_stats" => size_of::<Stats>(),
            other => panic!("unknown type {other}"),
        };
        match mac {
            "_IO" => ioc(IOC_NONE, ty, nr, 0),
            "_IOR" => ioc(IOC_READ, ty, nr, size(args[2])),
            "_IOW" => ioc(IOC_WRITE, ty, nr, size(args[2])),
            other => panic!("unknown macro {other}"),
        }
    }

    #[test]
    fn constants_match_the_c_header() {
        let d = defines();
        assert_eq!(number(&d["RFIFO_IOC_MAGIC"]), MAGIC);
        assert_eq!(number(&d["RFIFO_MIN_CAPACITY"]), MIN_CAPACITY);
        assert_eq!(number(&d["RFIFO_MAX_CAPACITY"]), MAX_CAPACITY);
        for (name, ours) in [
            ("RFIFO_IOC_GET_CAPACITY", GET_CAPACITY),
            ("RFIFO_IOC_SET_CAPACITY", SET_CAPACITY),
            ("RFIFO_IOC_CLEAR", CLEAR),
            ("RFIFO_IOC_GET_STATS", GET_STATS),
        ] {
            assert_eq!(ioctl_number(&d[name], &d), ours, "{name}");
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
        let body = HEADER
            .split("struct rfifo_stats {")
            .nth(1)
            .unwrap()
            .split("};")
            .next()
            .unwrap();
        let fields: Vec<(String, String)> = body
            .lines()
            .filter_map(|l| l.trim().split_once(';').map(|(decl, _)| decl.to_string()))
            .filter(|decl| !decl.is_empty())
            .map(|decl| {
                let (ty, name) = decl.rsplit_once(char::is_whitespace).unwrap();
                (ty.trim().to_string(), name.to_string())
            })
            .collect();
        let ours = [
            ("__u64", "bytes_in", offset_of!(Stats, bytes_in)),
            ("__u64", "bytes_out", offset_of!(Stats, bytes_out)),
            ("__u64", "fill", offset_of!(Stats, fill)),
            ("__u64", "opens", offset_of!(Stats, opens)),
            ("__u32", "readers", offset_of!(Stats, readers)),
            ("__u32", "writers", offset_of!(Stats, writers)),
        ];
        assert_eq!(fields.len(), ours.len(), "{fields:?}");
        let mut offset = 0;
        for ((cty, cname), (ty, name, off)) in fields.iter().zip(ours) {
            assert_eq!((cty.as_str(), cname.as_str()), (ty, name));
            assert_eq!(off, offset, "{name}");
            offset += if ty == "__u64" { 8 } else { 4 };
        }
        assert_eq!(size_of::<Stats>(), offset);
    }

    #[test]
    fn ioctls_on_a_regular_file_fail_enotty() {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open("Cargo.toml").unwrap();
        let e = get_capacity(f.as_raw_fd()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    }
}
