//! The FIFO devices' additions to FIFO semantics, for the Rust module (`rfifo`) and its C
//! twin (`cfifo`) alike: the ioctls of `include/uapi/rfifo.h` (through the `rfifo-uapi`
//! crate), `/proc/<pid>/fdinfo`, module refcounting and parameter checks.

use guest::fifo::*;
use guest::kmod::{self, Loaded};
use guest::{sys, Errno, Kmsg};
use rfifo_uapi as uapi;
use std::os::fd::{AsRawFd, OwnedFd};

const MODULES: [&str; 2] = ["rfifo", "cfifo"];

fn dev(m: &str) -> String {
    format!("/dev/{m}0")
}

fn errno<T: std::fmt::Debug>(r: std::io::Result<T>) -> Result<T, Errno> {
    r.map_err(Errno::from)
}

fn raw(fd: &OwnedFd) -> i32 {
    fd.as_raw_fd()
}

#[test]
fn get_capacity_reports_the_module_parameter() {
    for m in MODULES {
        {
            let _l = Loaded::new(m, "capacity=12345").expect("load");
            let fd = open_bounded(&dev(m), O_RDWR).unwrap();
            assert_eq!(errno(uapi::get_capacity(raw(&fd))), Ok(12345), "{m}");
        }
        let _l = Loaded::new(m, "").expect("load");
        let fd = open_bounded(&dev(m), O_RDWR).unwrap();
        assert_eq!(
            errno(uapi::get_capacity(raw(&fd))),
            Ok(65536),
            "{m}: default"
        );
    }
}

#[test]
fn set_capacity_resizes_an_empty_fifo_and_is_ebusy_otherwise() {
    for m in MODULES {
        let _l = Loaded::new(m, "").expect("load");
        let fd = open_bounded(&dev(m), O_RDWR | O_NONBLOCK).unwrap();
        let f = raw(&fd);
        assert_eq!(errno(uapi::set_capacity(f, 4096)), Ok(()), "{m}");
        assert_eq!(errno(uapi::get_capacity(f)), Ok(4096), "{m}");
        assert_eq!(
            write(f, &pattern(0, 10_000)),
            Ok(4096),
            "{m}: the new size is used"
        );
        assert_eq!(
            errno(uapi::set_capacity(f, 8192)),
            Err(Errno(libc::EBUSY)),
            "{m}"
        );
        assert_eq!(
            read(f, 10_000),
            Ok(pattern(0, 4096)),
            "{m}: EBUSY kept the data"
        );
        // Smaller than PIPE_BUF: writes up to the capacity stay atomic.
        assert_eq!(errno(uapi::set_capacity(f, 100)), Ok(()), "{m}");
        assert_eq!(
            write(f, &[1; 200]),
            Ok(100),
            "{m}: larger than the ring: partial"
        );
        assert_eq!(write(f, &[2; 1]), Err(Errno(libc::EAGAIN)), "{m}: full");
        assert_eq!(read(f, 1000).map(|b| b.len()), Ok(100), "{m}");
        assert_eq!(write(f, &[3; 60]), Ok(60), "{m}");
        assert_eq!(
            write(f, &[4; 50]),
            Err(Errno(libc::EAGAIN)),
            "{m}: 50 <= 100 is atomic"
        );
        drop(fd);
        // The size outlives the open files.
        let fd = open_bounded(&dev(m), O_RDWR).unwrap();
        assert_eq!(errno(uapi::get_capacity(raw(&fd))), Ok(100), "{m}");
    }
}

#[test]
fn set_capacity_rejects_sizes_out_of_range() {
    for m in MODULES {
        let _l = Loaded::new(m, "").expect("load");
        let fd = open_bounded(&dev(m), O_RDWR | O_NONBLOCK).unwrap();
        let f = raw(&fd);
        for bad in [0, uapi::MAX_CAPACITY + 1, u32::MAX] {
            assert_eq!(
                errno(uapi::set_capacity(f, bad)),
                Err(Errno(libc::EINVAL)),
                "{m}: {bad}"
            );
        }
        assert_eq!(
            errno(uapi::set_capacity(f, uapi::MAX_CAPACITY)),
            Ok(()),
            "{m}"
        );
        assert_eq!(errno(uapi::get_capacity(f)), Ok(uapi::MAX_CAPACITY), "{m}");
        assert_eq!(
            errno(uapi::set_capacity(f, uapi::MIN_CAPACITY)),
            Ok(()),
            "{m}"
        );
        assert_eq!(write(f, b"ab"), Ok(1), "{m}: a one-byte ring");
    }
}

/// Run `f` in a thread whose (per-thread, raw syscall) uid is 65534: no capabilities.
fn as_nobody<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    bounded(move || {
        // SAFETY: the raw syscall changes only this thread's credentials (glibc's
        // setresuid() would change every thread of the test process).
        let r = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
        assert_eq!(r, 0, "setresuid: {:?}", Errno::last());
        f()
    })
}

#[test]
fn set_capacity_and_clear_need_cap_sys_admin() {
    for m in MODULES {
        let _l = Loaded::new(m, "").expect("load");
        let fd = open_bounded(&dev(m), O_RDWR).unwrap();
        let f = raw(&fd);
        write(f, b"abc").unwrap();
        let (set, clear, get, stats) = as_nobody(move || {
            (
                errno(uapi::set_capacity(f, 4096)),
                errno(uapi::clear(f)),
                errno(uapi::get_capacity(f)),
                errno(uapi::get_stats(f)).map(|s| s.fill),
            )
        });
        assert_eq!(set, Err(Errno(libc::EPERM)), "{m}: SET_CAPACITY");
        assert_eq!(clear, Err(Errno(libc::EPERM)), "{m}: CLEAR");
        assert_eq!(get, Ok(65536), "{m}: GET_CAPACITY needs no privilege");
        assert_eq!(stats, Ok(3), "{m}: GET_STATS needs no privilege");
        assert_eq!(read(f, 10), Ok(b"abc".to_vec()), "{m}: nothing was cleared");
    }
}

#[test]
fn clear_discards_the_data_and_wakes_a_blocked_writer() {
    for m in MODULES {
        let _l = Loaded::new(m, "").expect("load");
        let (r, w) = pair(&dev(m), false);
        assert_eq!(fill(&w, CAPACITY), Ok(CAPACITY), "{m}");
        let wfd = raw(&w);
        let t = spawn(move || write(wfd, &[0xee; 100]));
        assert!(
            t.blocked_in(libc::SYS_write),
            "{m}: the writer waits for room"
        );
        assert_eq!(errno(uapi::clear(raw(&r))), Ok(()), "{m}");
        assert_eq!(t.join(), Ok(100), "{m}: CLEAR made room");
        let s = errno(uapi::get_stats(raw(&r))).unwrap();
        assert_eq!(
            (s.fill, s.bytes_in, s.bytes_out),
            (100, CAPACITY as u64 + 100, 0),
            "{m}"
        );
        assert_eq!(read(raw(&r), 1000), Ok(vec![0xee; 100]), "{m}");
    }
}

#[test]
fn stats_count_bytes_opens_and_current_ends() {
    for m in MODULES {
        let _l = Loaded::new(m, "").expect("load");
        let path = dev(m);
        let stats = |fd: &OwnedFd| errno(uapi::get_stats(raw(fd))).unwrap();
        let r = open(&path, O_RDONLY | O_NONBLOCK).unwrap();
        let s = stats(&r);
        assert_eq!((s.opens, s.readers, s.writers), (1, 1, 0), "{m}: {s:?}");
        let w = open_bounded(&path, O_WRONLY).unwrap();
        write(raw(&w), &[7; 100]).unwrap();
        read(raw(&r), 40).unwrap();
        let s = stats(&w);
        assert_eq!(
            s,
            uapi::Stats {
                bytes_in: 100,
                bytes_out: 40,
                fill: 60,
                opens: 2,
                readers: 1,
                writers: 1
            },
            "{m}"
        );
        let rw = open_bounded(&path, O_RDWR).unwrap();
        let s = stats(&rw);
        assert_eq!(
            (s.opens, s.readers, s.writers),
            (3, 2, 2),
            "{m}: O_RDWR counts twice"
        );
        drop((r, w, rw));
        // The last close discarded the 60 bytes; the totals stay.
        let rw = open_bounded(&path, O_RDWR).unwrap();
        let s = stats(&rw);
        assert_eq!(
            s,
            uapi::Stats {
                bytes_in: 100,
                bytes_out: 40,
                fill: 0,
                opens: 4,
                readers: 1,
                writers: 1
            },
            "{m}"
        );
    }
}

#[test]
fn unknown_ioctls_fail_enotty() {
    for m in MODULES {
        let _l = Loaded::new(m, "").expect("load");
        let fd = open_bounded(&dev(m), O_RDWR).unwrap();
        let mut buf = [0u64; 8];
        let arg = buf.as_mut_ptr() as usize;
        for cmd in [
            uapi::ioc(uapi::IOC_NONE, uapi::MAGIC, 99, 0),
            // GET_CAPACITY with the wrong size encoded.
            uapi::ioc(uapi::IOC_READ, uapi::MAGIC, 1, 8),
            libc::TCGETS as u32,
            libc::FIONREAD as u32,
        ] {
            // SAFETY: `buf` has 64 bytes, more than any of these commands could write.
            assert_eq!(
                unsafe { sys::ioctl(raw(&fd), cmd.into(), arg) },
                Err(Errno(libc::ENOTTY)),
                "{m}: cmd {cmd:#x}"
            );
        }
    }
}

#[test]
fn bad_ioctl_pointers_fail_efault() {
    for m in MODULES {
        let _l = Loaded::new(m, "").expect("load");
        let fd = open_bounded(&dev(m), O_RDWR).unwrap();
        for (name, cmd) in [
            ("GET_CAPACITY", uapi::GET_CAPACITY),
            ("SET_CAPACITY", uapi::SET_CAPACITY),
            ("GET_STATS", uapi::GET_STATS),
        ] {
            for addr in [0usize, 8] {
                // SAFETY: addresses 0 and 8 are never mapped.
                assert_eq!(
                    unsafe { sys::ioctl(raw(&fd), cmd.into(), addr) },
                    Err(Errno(libc::EFAULT)),
                    "{m}: {name} at {addr:#x}"
                );
            }
        }
        assert_eq!(
            errno(uapi::get_capacity(raw(&fd))),
            Ok(65536),
            "{m}: unchanged"
        );
    }
}

fn fdinfo_counts(fd: &OwnedFd) -> (u64, u64) {
    let info = fdinfo(fd);
    let get = |key: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in fdinfo:\n{info}"))
            .trim()
            .parse()
            .unwrap()
    };
    (get("bytes_read:"), get("bytes_written:"))
}

#[test]
fn fdinfo_shows_per_open_byte_counts() {
    for m in MODULES {
        let _l = Loaded::new(m, "").expect("load");
        let (r, w) = pair(&dev(m), false);
        write(raw(&w), &[1; 123]).unwrap();
        read(raw(&r), 100).unwrap();
        assert_eq!(fdinfo_counts(&w), (0, 123), "{m}: writer");
        assert_eq!(fdinfo_counts(&r), (100, 0), "{m}: reader");
        let rw = open_bounded(&dev(m), O_RDWR).unwrap();
        write(raw(&rw), &[2; 5]).unwrap();
        read(raw(&rw), 28).unwrap();
        assert_eq!(fdinfo_counts(&rw), (28, 5), "{m}: O_RDWR file");
        assert!(
            fdinfo(&rw).starts_with("pos:"),
            "{m}: the VFS lines come first"
        );
    }
}

fn refcnt(m: &str) -> u32 {
    std::fs::read_to_string(format!("/sys/module/{m}/refcnt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// An open file pins the module (`file_operations::owner`): `delete_module(O_NONBLOCK)`,
/// what `rmmod` does, fails with `EWOULDBLOCK` (= `EAGAIN`; 7.3's `try_stop_module()`,
/// which `rmmod` reports as "in use") and the device keeps working.
#[test]
fn rmmod_while_open_fails_and_the_device_keeps_working() {
    for m in MODULES {
        let _l = Loaded::new(m, "").expect("load");
        assert_eq!(refcnt(m), 0, "{m}");
        let fd = open_bounded(&dev(m), O_RDWR).unwrap();
        // chrdev_open() takes one reference through the cdev (`cdev.owner`) and one through
        // `file_operations::owner`; both are dropped when the file is released.
        assert_eq!(refcnt(m), 2, "{m}: the open file pins the module");
        assert_eq!(kmod::unload(m), Err(Errno(libc::EWOULDBLOCK)), "{m}");
        let (rc, out) = guest::sh(&format!("rmmod {m}"));
        assert_ne!(rc, 0, "{m}: rmmod fails: {out}");
        assert!(kmod::is_loaded(m), "{m}");
        write(raw(&fd), b"still here").unwrap();
        assert_eq!(read(raw(&fd), 100), Ok(b"still here".to_vec()), "{m}");
        drop(fd);
        assert_eq!(refcnt(m), 0, "{m}");
        assert_eq!(kmod::unload(m), Ok(()), "{m}: unloads once closed");
        assert!(!std::path::Path::new(&dev(m)).exists(), "{m}: node removed");
    }
}

#[test]
fn invalid_parameters_fail_einval() {
    for m in MODULES {
        for params in [
            "devices=0",
            "devices=65",
            "capacity=0",
            "capacity=16777217",
            "devices=-1",
        ] {
            kmod::ensure_unloaded(m);
            assert_eq!(
                kmod::load(m, params),
                Err(Errno(libc::EINVAL)),
                "{m} {params}"
            );
            assert!(!kmod::is_loaded(m), "{m} {params}");
        }
        let _l = Loaded::new(m, "devices=64 capacity=16777216").expect("the largest values");
        assert!(std::path::Path::new(&format!("/dev/{m}63")).exists(), "{m}");
        assert!(
            !std::path::Path::new(&format!("/dev/{m}64")).exists(),
            "{m}"
        );
    }
}

#[test]
fn devices_parameter_creates_char_device_nodes() {
    use std::os::unix::fs::FileTypeExt;
    for m in MODULES {
        let mut log = Kmsg::new();
        {
            let _l = Loaded::new(m, "devices=2 capacity=4096").expect("load");
            for i in 0..2 {
                let meta = std::fs::metadata(format!("/dev/{m}{i}")).unwrap();
                assert!(meta.file_type().is_char_device(), "{m}{i}");
            }
            assert!(!std::path::Path::new(&format!("/dev/{m}2")).exists(), "{m}");
            let rec = log
                .wait_for(&format!("{m}: 2 devices of 4096 bytes"), JOIN_TIMEOUT)
                .unwrap_or_else(|| panic!("{m}: load message"));
            assert_eq!(rec.level, 6, "{m}: KERN_INFO");
            // Each node is its own FIFO.
            let a = open_bounded(&format!("/dev/{m}0"), O_RDWR | O_NONBLOCK).unwrap();
            let b = open_bounded(&format!("/dev/{m}1"), O_RDWR | O_NONBLOCK).unwrap();
            write(raw(&a), b"zero").unwrap();
            assert_eq!(read(raw(&b), 10), Err(Errno(libc::EAGAIN)), "{m}");
            assert_eq!(read(raw(&a), 10), Ok(b"zero".to_vec()), "{m}");
        }
        assert!(
            !std::path::Path::new(&format!("/dev/{m}0")).exists(),
            "{m}: removed"
        );
    }
}
