//! Fault injection: every allocation on the way through an operation is made to fail, one
//! at a time, with the kernel's per-task `fail-nth` (failslab for kmalloc; fail_page_alloc
//! too on the debug kernel). For n = 1, 2, ... the n-th fault point of the operation fails
//! until an attempt runs with no fault left to inject. Every attempt must either succeed or
//! fail cleanly with the documented errno (ENOMEM), leave nothing behind (no module half
//! loaded, capacity unchanged), and the device must work normally once injection stops.
//! Driven for: insmod of every module, and on rfifo and cfifo: open, write, read,
//! SET_CAPACITY and GET_STATS.

use guest::fault::{configure, FailNth};
use guest::sys::{open, read, write};
use guest::{kmod, Errno};
use std::fs::File;
use std::os::fd::AsRawFd;

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
        total += walk(
            &format!("insmod {m}"),
            &[libc::ENOMEM],
            || kmod::finit(&file, c""),
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
