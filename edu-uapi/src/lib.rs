//! Userspace side of `include/uapi/edu.h`, the ABI of `/dev/eduN` (the Rust driver
//! `modules/edu`, module `rust_edu`) and `/dev/ceduN` (its C twin `modules-c/cedu`) for
//! QEMU's `edu` PCI device.
//!
//! The numbers are computed like the kernel's `_IOR`/`_IOWR` (asm-generic encoding); the host
//! tests check them, and the layouts of [`Factorial`] and [`Stats`], against the C header.
//!
//! ```no_run
//! use std::os::fd::AsRawFd;
//! use std::os::unix::fs::FileExt;
//! let f = std::fs::OpenOptions::new().read(true).write(true).open("/dev/edu0")?;
//! assert_eq!(edu_uapi::factorial(f.as_raw_fd(), 5, 0)?, 120);
//! assert_eq!(edu_uapi::liveness(f.as_raw_fd(), 0x1234_5678)?, !0x1234_5678);
//! f.write_all_at(b"hello", 100)?; // one DMA transfer into device memory
//! let mut back = [0u8; 5];
//! f.read_exact_at(&mut back, 100)?;
//! println!("{:?}", edu_uapi::get_stats(f.as_raw_fd())?);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::os::fd::RawFd;
use uapi_ioc::check;

/// `EDU_IOC_MAGIC`.
pub const MAGIC: u32 = 0xBB;
/// `EDU_BUF_SIZE`: bytes of device memory behind the file offsets `0..BUF_SIZE`.
///
/// 4095, one short of the device's [`DEVICE_MEM_SIZE`]: QEMU before 8.2.1 aborts the whole VM
/// on a DMA transfer that ends at the end of the device memory (`edu_check_range()` in
/// `hw/misc/edu.c` checks the end with `<`), so the drivers never touch offset 4095: a write
/// there fails `ENOSPC`, a read there returns 0 (end of file).
pub const BUF_SIZE: usize = 4095;
/// The size of the `edu` device's memory (device addresses 0x40000..0x41000).
pub const DEVICE_MEM_SIZE: usize = 4096;
/// `EDU_DEFAULT_TIMEOUT_MS` (a `timeout_ms` of 0) and `EDU_MAX_TIMEOUT_MS`.
pub const DEFAULT_TIMEOUT_MS: u32 = 30_000;
pub const MAX_TIMEOUT_MS: u32 = 600_000;

/// `struct edu_factorial`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Factorial {
    /// In: the device computes `n!` modulo 2^32.
    pub n: u32,
    /// In: 0 = [`DEFAULT_TIMEOUT_MS`], at most [`MAX_TIMEOUT_MS`].
    pub timeout_ms: u32,
    /// In: must be 0.
    pub flags: u32,
    /// Out.
    pub result: u32,
}

/// `struct edu_stats`: totals since the device was bound.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Completion interrupts the driver handled (one per factorial or DMA completion the
    /// device signalled, also when two arrive in one interrupt).
    pub interrupts: u64,
    /// Factorials the device finished (given-up ones included).
    pub factorials: u64,
    /// DMA transfers the device finished (given-up ones included).
    pub dma_transfers: u64,
    /// Bytes of those transfers.
    pub dma_bytes: u64,
}

/// The `_IOC` encoding (`_IOC_NONE`, `_IOC_WRITE`, `_IOC_READ`, `_IOC(...)`), from `uapi-ioc`.
pub use uapi_ioc::{ioc, IOC_NONE, IOC_READ, IOC_WRITE};

/// `EDU_IOC_FACTORIAL`: `_IOWR(MAGIC, 1, struct edu_factorial)`.
pub const FACTORIAL: u32 = ioc(IOC_READ | IOC_WRITE, MAGIC, 1, size_of::<Factorial>());
/// `EDU_IOC_LIVENESS`: `_IOWR(MAGIC, 2, __u32)`.
pub const LIVENESS: u32 = ioc(IOC_READ | IOC_WRITE, MAGIC, 2, size_of::<u32>());
/// `EDU_IOC_GET_STATS`: `_IOR(MAGIC, 3, struct edu_stats)`.
pub const GET_STATS: u32 = ioc(IOC_READ, MAGIC, 3, size_of::<Stats>());

/// `ioctl(fd, cmd, arg)` with a raw argument (for error-path tests such as `EFAULT`).
pub fn ioctl_raw(fd: RawFd, cmd: u32, arg: usize) -> io::Result<libc::c_int> {
    // SAFETY: The kernel validates `arg`; a bad pointer fails with EFAULT, it is not
    // dereferenced in this process.
    check(unsafe { libc::ioctl(fd, cmd as _, arg) })
}

/// `EDU_IOC_FACTORIAL` with a full request (flags, timeout); returns it with `result` set.
pub fn factorial_req(fd: RawFd, mut req: Factorial) -> io::Result<Factorial> {
    // SAFETY: `req` is a valid, writable `struct edu_factorial` for the duration of the call.
    check(unsafe { libc::ioctl(fd, FACTORIAL as _, &mut req as *mut Factorial) })?;
    Ok(req)
}

/// `EDU_IOC_FACTORIAL`: `n!` modulo 2^32 (`timeout_ms` 0: the default).
pub fn factorial(fd: RawFd, n: u32, timeout_ms: u32) -> io::Result<u32> {
    let req = Factorial {
        n,
        timeout_ms,
        ..Factorial::default()
    };
    Ok(factorial_req(fd, req)?.result)
}

/// `EDU_IOC_LIVENESS`: the device's bitwise inverse of `value`.
pub fn liveness(fd: RawFd, value: u32) -> io::Result<u32> {
    let mut v = value;
    // SAFETY: `v` is a valid, writable `__u32` for the duration of the call.
    check(unsafe { libc::ioctl(fd, LIVENESS as _, &mut v as *mut u32) })?;
    Ok(v)
}

/// `EDU_IOC_GET_STATS`.
pub fn get_stats(fd: RawFd) -> io::Result<Stats> {
    let mut s = Stats::default();
    // SAFETY: `s` is a valid, writable `struct edu_stats` for the duration of the call.
    check(unsafe { libc::ioctl(fd, GET_STATS as _, &mut s as *mut Stats) })?;
    Ok(s)
}

/// What the device computes: `n!` modulo 2^32 (`0! = 1`).
pub fn expected_factorial(n: u32) -> u32 {
    (1..=n).fold(1u32, |acc, k| acc.wrapping_mul(k))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;
    use uapi_ioc::header::{assert_layout, defines, ioctl_number, number};

    const HEADER: &str = include_str!("../../include/uapi/edu.h");

    /// The size of a type the header's `_IOR`/`_IOWR` name.
    fn size(ty: &str) -> usize {
        match ty {
            "__u32" => 4,
            "struct edu_factorial" => size_of::<Factorial>(),
            "struct edu_stats" => size_of::<Stats>(),
            other => panic!("unknown type {other}"),
        }
    }

    #[test]
    fn constants_match_the_c_header() {
        let d = defines(HEADER);
        assert_eq!(number(&d["EDU_IOC_MAGIC"]), MAGIC);
        assert_eq!(number(&d["EDU_BUF_SIZE"]) as usize, BUF_SIZE);
        assert_eq!(
            BUF_SIZE,
            DEVICE_MEM_SIZE - 1,
            "offset 4095 stays unused (QEMU < 8.2.1)"
        );
        assert_eq!(number(&d["EDU_DEFAULT_TIMEOUT_MS"]), DEFAULT_TIMEOUT_MS);
        assert_eq!(number(&d["EDU_MAX_TIMEOUT_MS"]), MAX_TIMEOUT_MS);
        for (name, ours) in [
            ("EDU_IOC_FACTORIAL", FACTORIAL),
            ("EDU_IOC_LIVENESS", LIVENESS),
            ("EDU_IOC_GET_STATS", GET_STATS),
        ] {
            assert_eq!(ioctl_number(&d[name], &d, size), ours, "{name}");
        }
    }

    #[test]
    fn known_encodings() {
        // Independent of the parser above: the values the kernel's macros produce on x86-64.
        assert_eq!(FACTORIAL, 0xc010_bb01);
        assert_eq!(LIVENESS, 0xc004_bb02);
        assert_eq!(GET_STATS, 0x8020_bb03);
    }

    #[test]
    fn layouts_match_the_c_structs() {
        assert_layout(
            HEADER,
            "edu_factorial",
            &[
                ("__u32", "n", offset_of!(Factorial, n)),
                ("__u32", "timeout_ms", offset_of!(Factorial, timeout_ms)),
                ("__u32", "flags", offset_of!(Factorial, flags)),
                ("__u32", "result", offset_of!(Factorial, result)),
            ],
            size_of::<Factorial>(),
        );
        assert_layout(
            HEADER,
            "edu_stats",
            &[
                ("__u64", "interrupts", offset_of!(Stats, interrupts)),
                ("__u64", "factorials", offset_of!(Stats, factorials)),
                ("__u64", "dma_transfers", offset_of!(Stats, dma_transfers)),
                ("__u64", "dma_bytes", offset_of!(Stats, dma_bytes)),
            ],
            size_of::<Stats>(),
        );
    }

    #[test]
    fn expected_factorials_wrap() {
        assert_eq!(expected_factorial(0), 1);
        assert_eq!(expected_factorial(1), 1);
        assert_eq!(expected_factorial(12), 479_001_600);
        // 13! = 6227020800 = 1 * 2^32 + 1932053504.
        assert_eq!(expected_factorial(13), 1_932_053_504);
        // From 34 on, n! has at least 32 factors of two.
        assert_eq!(expected_factorial(34), 0);
    }

    #[test]
    fn ioctls_on_a_regular_file_fail_enotty() {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open("Cargo.toml").unwrap();
        let e = get_stats(f.as_raw_fd()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
    }
}
