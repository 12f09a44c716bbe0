//! The guest's one syscall layer: thin `libc` wrappers that return the exact errno
//! ([`Errno`]) instead of `-1`, because the tests assert errnos (`Err(Errno(libc::EFAULT))`).
//!
//! Every test binary and program of this crate goes through here for `open`, `read`,
//! `write`, `ioctl`, `fcntl` and `poll`, except `kfuzz`, whose random syscall mix ignores
//! results on purpose. The rfifo ioctls have typed wrappers in `rfifo-uapi` (`io::Result`,
//! which converts into [`Errno`]). `rustix`/`nix` would do the same; they are not
//! available offline here, and this is all the tests need.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// An errno value, printed with its symbolic name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub fn last() -> Errno {
        Errno(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    }

    pub fn name(self) -> &'static str {
        match self.0 {
            libc::EPERM => "EPERM",
            libc::ENOENT => "ENOENT",
            libc::EINTR => "EINTR",
            libc::EIO => "EIO",
            libc::ENXIO => "ENXIO",
            libc::E2BIG => "E2BIG",
            libc::EBADF => "EBADF",
            libc::EAGAIN => "EAGAIN",
            libc::ENOMEM => "ENOMEM",
            libc::EACCES => "EACCES",
            libc::EFAULT => "EFAULT",
            libc::EBUSY => "EBUSY",
            libc::EEXIST => "EEXIST",
            libc::ENODEV => "ENODEV",
            libc::EINVAL => "EINVAL",
            libc::ENOTTY => "ENOTTY",
            libc::ENOSPC => "ENOSPC",
            libc::EPIPE => "EPIPE",
            libc::ERANGE => "ERANGE",
            libc::ENOSYS => "ENOSYS",
            libc::ENOEXEC => "ENOEXEC",
            libc::EOVERFLOW => "EOVERFLOW",
            _ => "E?",
        }
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

/// The errnos the tests expect, as [`Errno`] constants: `use guest::sys::errno::*;` and
/// `assert_eq!(r, Err(EFAULT))`.
pub mod errno {
    use super::Errno;

    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const ENXIO: Errno = Errno(libc::ENXIO);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EFAULT: Errno = Errno(libc::EFAULT);
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const ENOTTY: Errno = Errno(libc::ENOTTY);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const ESPIPE: Errno = Errno(libc::ESPIPE);
    pub const EPIPE: Errno = Errno(libc::EPIPE);
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);
}

impl From<io::Error> for Errno {
    fn from(e: io::Error) -> Errno {
        Errno(e.raw_os_error().unwrap_or(0))
    }
}

impl From<Errno> for io::Error {
    fn from(e: Errno) -> io::Error {
        io::Error::from_raw_os_error(e.0)
    }
}

/// A libc return value: `r`, or the errno when it is negative (`-1` and `errno`).
#[inline]
pub fn cvt<T: Into<i64> + Copy>(r: T) -> Result<T, Errno> {
    if r.into() < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

/// `open(path, flags | O_CLOEXEC)`.
pub fn open(path: &str, flags: i32) -> Result<OwnedFd, Errno> {
    let p = CString::new(path).expect("no NUL in a path");
    // SAFETY: a valid NUL-terminated path.
    let fd = cvt(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `read(fd, buf, buf.len())`: the count read.
#[inline]
pub fn read_into(fd: RawFd, buf: &mut [u8]) -> Result<usize, Errno> {
    // SAFETY: `buf` is valid for writes of its length.
    Ok(cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) } as i64)? as usize)
}

/// `read(fd, buf, n)`: the bytes read.
pub fn read(fd: RawFd, n: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; n];
    let r = read_into(fd, &mut buf)?;
    buf.truncate(r);
    Ok(buf)
}

/// `pread(fd, buf, n, off)`: the bytes read.
pub fn pread(fd: RawFd, n: usize, off: i64) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; n];
    // SAFETY: `buf` is valid for writes of `n` bytes.
    let r = cvt(unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), n, off) } as i64)?;
    buf.truncate(r as usize);
    Ok(buf)
}

/// `pwrite(fd, data, off)`: the count written.
pub fn pwrite(fd: RawFd, data: &[u8], off: i64) -> Result<usize, Errno> {
    // SAFETY: `data` is valid for reads of its length.
    let r = cvt(unsafe { libc::pwrite(fd, data.as_ptr().cast(), data.len(), off) } as i64)?;
    Ok(r as usize)
}

/// `lseek(fd, off, whence)`: the new offset.
pub fn lseek(fd: RawFd, off: i64, whence: i32) -> Result<i64, Errno> {
    // SAFETY: a plain syscall; the kernel checks `fd`.
    cvt(unsafe { libc::lseek(fd, off, whence) })
}

/// `write(fd, data)`: the count written.
#[inline]
pub fn write(fd: RawFd, data: &[u8]) -> Result<usize, Errno> {
    // SAFETY: `data` is valid for reads of its length.
    Ok(cvt(unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) } as i64)? as usize)
}

/// `write` until all of `data` is written (a blocking fd).
#[inline]
pub fn write_all(fd: RawFd, mut data: &[u8]) -> Result<(), Errno> {
    while !data.is_empty() {
        let n = write(fd, data)?;
        assert!(n > 0, "write returned 0");
        data = &data[n..];
    }
    Ok(())
}

/// `read(fd, addr, len)` with any address, for the tests of bad user pointers.
///
/// # Safety
/// The kernel writes up to `len` bytes at `addr` if it is mapped and writable in this
/// process: it must be memory nothing else uses (or not mapped at all, the usual point).
pub unsafe fn read_to_addr(fd: RawFd, addr: usize, len: usize) -> Result<usize, Errno> {
    // SAFETY: the caller's contract; the kernel validates `addr`.
    Ok(cvt(unsafe { libc::read(fd, addr as *mut libc::c_void, len) } as i64)? as usize)
}

/// `write(fd, addr, len)` with any address, for the tests of bad user pointers. The kernel
/// only reads at `addr` (and fails `EFAULT` where nothing is mapped).
pub fn write_from_addr(fd: RawFd, addr: usize, len: usize) -> Result<usize, Errno> {
    // SAFETY: the kernel validates `addr` and only reads from it.
    Ok(cvt(unsafe { libc::write(fd, addr as *const libc::c_void, len) } as i64)? as usize)
}

/// `ioctl(fd, cmd, arg)`: its non-negative return value.
///
/// # Safety
/// When `cmd` makes the kernel write through `arg`, `arg` must be writable memory of the
/// size the command writes, or not mapped at all (then the call fails `EFAULT`).
pub unsafe fn ioctl(fd: RawFd, cmd: u64, arg: usize) -> Result<i32, Errno> {
    // SAFETY: the caller's contract.
    cvt(unsafe { libc::ioctl(fd, cmd as _, arg) })
}

/// `fcntl(F_GETFL)`.
pub fn status_flags(fd: RawFd) -> Result<i32, Errno> {
    // SAFETY: a plain fcntl call; the kernel checks `fd`.
    cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })
}

/// Set or clear `O_NONBLOCK` with `fcntl(F_SETFL)`; returns whether it was set before.
pub fn set_nonblock(fd: RawFd, on: bool) -> bool {
    let fl = status_flags(fd).unwrap_or_else(|e| panic!("F_GETFL: {e:?}"));
    let new = if on {
        fl | libc::O_NONBLOCK
    } else {
        fl & !libc::O_NONBLOCK
    };
    // SAFETY: a plain fcntl call on a valid fd.
    let r = cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, new) });
    assert_eq!(r, Ok(0), "F_SETFL");
    fl & libc::O_NONBLOCK != 0
}

/// `poll()` of one fd: its `revents`.
pub fn poll(fd: RawFd, events: i16, timeout_ms: i32) -> Result<i16, Errno> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    cvt(unsafe { libc::poll(&mut p, 1, timeout_ms) })?;
    Ok(p.revents)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn errors_carry_the_errno() {
        assert_eq!(
            open("/nonexistent/x", libc::O_RDONLY).err(),
            Some(Errno(libc::ENOENT))
        );
        assert_eq!(format!("{:?}", Errno(libc::EFAULT)), "EFAULT(14)");
        assert_eq!(read(-1, 1), Err(Errno(libc::EBADF)));
        let e: io::Error = Errno(libc::EPIPE).into();
        assert_eq!(Errno::from(e), Errno(libc::EPIPE));
    }

    #[test]
    fn a_pipe_round_trip() {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for two fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: both fds were just created and are owned by nobody else.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let (r, w) = (r.as_raw_fd(), w.as_raw_fd());
        write_all(w, b"hello").unwrap();
        assert_eq!(poll(r, libc::POLLIN, 0), Ok(libc::POLLIN));
        assert!(!set_nonblock(r, true));
        assert_eq!(read(r, 64), Ok(b"hello".to_vec()));
        assert_eq!(read(r, 64), Err(Errno(libc::EAGAIN)));
        assert!(set_nonblock(r, false));
        assert_eq!(write_from_addr(w, 8, 1), Err(Errno(libc::EFAULT)));
        write_all(w, b"x").unwrap();
        // SAFETY: address 8 is never mapped.
        assert_eq!(unsafe { read_to_addr(r, 8, 1) }, Err(Errno(libc::EFAULT)));
    }
}
