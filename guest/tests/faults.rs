//! Fault injection: every allocation on the way through an operation is made to fail, one
//! at a time, with the kernel's per-task `fail-nth` (failslab for kmalloc; fail_page_alloc
//! too on the debug kernel). For n = 1, 2, ... the n-th fault point of the operation fails
//! until an attempt runs with no fault left to inject. Every attempt must either succeed or
//! fail cleanly with the documented errno (ENOMEM), leave nothing behind (no module half
//! loaded, capacity unchanged), and the device must work normally once injection stops.
//! Driven for: insmod of every module, and on rfifo and cfifo: open, write, read,
//! SET_CAPACITY and GET_STATS.

use guest::{kmod, Errno};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;

/// Configure the fault attributes so that `fail-nth` reaches GFP_KERNEL allocations and
/// injections do not print stack dumps (which the log scan would rightly flag).
fn configure() {
    let set = |p: &str, v: &str| {
        let path = format!("/sys/kernel/debug/{p}");
        if std::path::Path::new(&path).exists() {
            std::fs::write(&path, v).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    };
    for attr in ["failslab", "fail_page_alloc"] {
        set(&format!("{attr}/verbose"), "0");
        set(&format!("{attr}/ignore-gfp-wait"), "N");
        set(&format!("{attr}/probability"), "0");
    }
    set("fail_page_alloc/min-order", "0");
    set("fail_page_alloc/ignore-gfp-highmem", "N");
    assert!(
        std::path::Path::new("/sys/kernel/debug/failslab").exists(),
        "failslab debugfs is missing (CONFIG_FAILSLAB + FAULT_INJECTION_DEBUG_FS)"
    );
}

/// This thread's `fail-nth`, kept open so arming and reading it allocate nothing.
struct FailNth(File);

impl FailNth {
    fn new() -> FailNth {
        FailNth(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/proc/thread-self/fail-nth")
                .expect("open /proc/thread-self/fail-nth"),
        )
    }
    fn arm(&self, n: u32) {
        self.0
            .write_at(n.to_string().as_bytes(), 0)
            .expect("arm fail-nth");
    }
    /// True when the armed fault was injected (the counter reached 0), then disarms.
    fn injected(&self) -> bool {
        let mut buf = [0u8; 16];
        let len = self.0.read_at(&mut buf, 0).expect("read fail-nth");
        let left: u32 = std::str::from_utf8(&buf[..len])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        self.0.write_at(b"0", 0).expect("disarm fail-nth");
        left == 0
    }
}

/// Walk `op` through its fault points. `op` returns Ok or the errno; `allowed` lists the
/// errnos a failure may have; `check` runs after each attempt (invariants). Returns the
/// number of injected faults.
fn walk(
    what: &str,
    allowed: &[i32],
    mut op: impl FnMut() -> Result<(), Errno>,
    mut check: impl FnMut(bool),
) -> u32 {
    let f = FailNth::new();
    for (injected, n) in (1..=2000).enumerate() {
        f.arm(n);
        let r = op();
        let hit = f.injected();
        if let Err(e) = r {
            assert!(
                allowed.contains(&e.0),
                "{what}: fault point {n} gave {e:?}, expected one of {allowed:?}"
            );
        }
        check(r.is_ok());
        if !hit {
            assert!(
                r.is_ok(),
                "{what}: failed with {r:?} although no fault was injected"
            );
            println!("{what}: {injected} fault points, each failed cleanly; then succeeded");
            return injected as u32;
        }
    }
    panic!("{what}: more than 2000 fault points");
}

fn modules() -> Vec<String> {
    kmod::installed()
}

#[test]
fn insmod_of_every_module_fails_cleanly_at_every_allocation() {
    configure();
    let mut total = 0;
    for m in modules() {
        kmod::ensure_unloaded(&m);
        // Open the file before arming, so the faults land in finit_module() itself.
        let file = File::open(kmod::path(&m)).expect("module file");
        let empty = std::ffi::CString::new("").unwrap();
        total += walk(
            &format!("insmod {m}"),
            &[libc::ENOMEM],
            || {
                // SAFETY: valid fd and NUL-terminated params.
                let r = unsafe {
                    libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), empty.as_ptr(), 0)
                };
                if r == 0 {
                    Ok(())
                } else {
                    Err(Errno::last())
                }
            },
            |ok| {
                if ok {
                    kmod::unload(&m).unwrap_or_else(|e| panic!("rmmod {m}: {e:?}"));
                }
                assert!(
                    !kmod::is_loaded(&m),
                    "{m} left loaded after a failed insmod"
                );
                assert!(
                    !std::path::Path::new(&format!("/sys/module/{m}")).exists(),
                    "/sys/module/{m} left behind"
                );
            },
        );
        // Injection off: loads and unloads normally.
        kmod::load(&m, "").unwrap_or_else(|e| panic!("{m} after injection: {e:?}"));
        kmod::unload(&m).unwrap();
    }
    println!("insmod: {total} injected faults in all");
    assert!(
        total > 0,
        "no fault was injected at all: is fail-nth working?"
    );
}

fn open(path: &str, flags: i32) -> Result<OwnedFd, Errno> {
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    if fd < 0 {
        Err(Errno::last())
    } else {
        // SAFETY: a fresh fd that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
}

fn write(fd: RawFd, data: &[u8]) -> Result<usize, Errno> {
    // SAFETY: data is valid for reads of its length.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    if n < 0 {
        Err(Errno::last())
    } else {
        Ok(n as usize)
    }
}

fn read(fd: RawFd, n: usize) -> Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; n];
    // SAFETY: buf is valid for writes of its length.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), n) };
    if r < 0 {
        return Err(Errno::last());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn device_ops(module: &'static str, dev: &str) {
    configure();
    let _m = kmod::Loaded::new(module, "").expect("load");
    let mut total = 0;
    // open (O_RDWR never blocks on a FIFO)
    total += walk(
        &format!("{dev} open"),
        &[libc::ENOMEM],
        || open(dev, libc::O_RDWR | libc::O_NONBLOCK).map(drop),
        |_| {},
    );
    let fd = open(dev, libc::O_RDWR | libc::O_NONBLOCK).unwrap();
    let raw = fd.as_raw_fd();
    // write then read back: a failed write must not have queued anything.
    let mut queued = 0usize;
    total += walk(
        &format!("{dev} write"),
        &[libc::ENOMEM],
        || write(raw, b"0123456789").map(|n| queued += n),
        |_| {},
    );
    let back = read(raw, 4096).unwrap();
    assert_eq!(back.len(), queued, "{dev}: bytes queued vs read back");
    // read: there are always 16 bytes queued; a failed read must not consume them.
    const DATA: &[u8] = b"0123456789abcdef";
    assert_eq!(write(raw, DATA).unwrap(), 16);
    total += walk(
        &format!("{dev} read"),
        &[libc::ENOMEM],
        || {
            let got = read(raw, 16)?;
            assert_eq!(got, DATA, "{dev}: read returned other bytes");
            Ok(())
        },
        |ok| {
            if ok {
                assert_eq!(write(raw, DATA).unwrap(), 16);
            }
        },
    );
    assert_eq!(
        read(raw, 64).unwrap(),
        DATA,
        "{dev}: the queued bytes survived"
    );
    // SET_CAPACITY allocates a new buffer: a failure leaves the old capacity.
    let before = rfifo_uapi::get_capacity(raw).unwrap();
    total += walk(
        &format!("{dev} SET_CAPACITY"),
        &[libc::ENOMEM],
        || rfifo_uapi::set_capacity(raw, 1 << 20).map_err(Errno::from),
        |ok| {
            let now = rfifo_uapi::get_capacity(raw).unwrap();
            if ok {
                assert_eq!(now, 1 << 20);
                rfifo_uapi::set_capacity(raw, before).unwrap();
            } else {
                assert_eq!(
                    now, before,
                    "{dev}: capacity changed by a failed SET_CAPACITY"
                );
            }
        },
    );
    total += walk(
        &format!("{dev} GET_STATS"),
        &[libc::ENOMEM],
        || rfifo_uapi::get_stats(raw).map(drop).map_err(Errno::from),
        |_| {},
    );
    // Injection off: the device works.
    assert_eq!(write(raw, b"still works").unwrap(), 11);
    assert_eq!(read(raw, 64).unwrap(), b"still works");
    println!("{dev}: {total} injected faults over open/write/read/ioctl");
}

#[test]
fn rfifo_operations_fail_cleanly_under_injection() {
    device_ops("rfifo", "/dev/rfifo0");
}

#[test]
fn cfifo_operations_fail_cleanly_under_injection() {
    device_ops("cfifo", "/dev/cfifo0");
}
