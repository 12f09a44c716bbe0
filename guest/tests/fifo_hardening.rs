//! Hardening of the FIFO devices, each case on the Rust module (`rfifo`) and its C twin
//! (`cfifo`), and where it applies on the kernel's own FIFO as the reference:
//!
//! - module parameters given twice (insmod, modprobe.d + command line): the last value wins,
//!   as with C's `module_param`;
//! - the ioctls from a 32-bit program (`guest/c/fifo_ioctl32.c`, the compat ioctl path);
//! - an open racing with an `insmod` whose init fails after the first device node exists
//!   (fault injection): it must be refused, never left sleeping in a freed module;
//! - `poll` and `/proc/<pid>/fdinfo` while a reader is stalled mid-copy on a user buffer
//!   that faults slowly (userfaultfd): they must not wait for it;
//! - insmod + rmmod time with 64 devices (printed, not asserted).

use guest::fault::{self, FailNth};
use guest::fifo::*;
use guest::kmod::{self, Loaded};
use guest::{is_debug_kernel, sh, sys, Errno};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

fn raw(fd: &OwnedFd) -> RawFd {
    fd.as_raw_fd()
}

/// `/sys/module/<m>/parameters/<p>`, trimmed; `None` if there is no such file.
fn sysfs_param(m: &str, p: &str) -> Option<String> {
    std::fs::read_to_string(format!("/sys/module/{m}/parameters/{p}"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// What a loaded FIFO module shows: (`GET_CAPACITY` of device 0, number of devices,
/// the `capacity` parameter in sysfs).
fn observed(m: &str) -> (Result<u32, Errno>, usize, Option<String>) {
    let cap = open_bounded(&format!("/dev/{m}0"), O_RDWR | O_NONBLOCK)
        .and_then(|fd| rfifo_uapi::get_capacity(raw(&fd)).map_err(Errno::from));
    let devices = (0..64)
        .take_while(|i| std::path::Path::new(&format!("/dev/{m}{i}")).exists())
        .count();
    (cap, devices, sysfs_param(m, "capacity"))
}

// ---- 1. repeated module parameters: the last value wins --------------------------------

fn repeated_params_on_insmod(m: &'static str) {
    let load = Loaded::new(m, "capacity=4096 devices=2 capacity=8192 devices=3");
    assert_eq!(
        load.as_ref().err(),
        None,
        "{m}: insmod with parameters given twice must load (C's module_param: last wins)"
    );
    assert_eq!(
        observed(m),
        (Ok(8192), 3, Some("8192".to_string())),
        "{m}: (GET_CAPACITY, devices, sysfs capacity) after capacity=4096 devices=2 \
         capacity=8192 devices=3"
    );
}

#[test]
fn repeated_param_last_value_wins_rfifo() {
    repeated_params_on_insmod("rfifo");
}

#[test]
fn repeated_param_last_value_wins_cfifo() {
    repeated_params_on_insmod("cfifo");
}

/// `options M capacity=4096 devices=2` in /etc/modprobe.d, then `modprobe M capacity=8192`:
/// modprobe passes "capacity=4096 devices=2 capacity=8192" (configuration first).
fn modprobe_conf_then_command_line(m: &'static str) {
    kmod::ensure_unloaded(m);
    let conf = "/etc/modprobe.d/fifo_hardening.conf";
    std::fs::create_dir_all("/etc/modprobe.d").unwrap();
    std::fs::write(conf, format!("options {m} capacity=4096 devices=2\n")).unwrap();
    let (rc, out) = sh(&format!("modprobe {m} capacity=8192"));
    let seen = observed(m);
    let loaded = kmod::is_loaded(m);
    kmod::ensure_unloaded(m);
    std::fs::remove_file(conf).unwrap();
    println!("{m}: modprobe exit {rc}, output {out:?}, loaded {loaded}, observed {seen:?}");
    assert_eq!((rc, loaded), (0, true), "{m}: modprobe: {out}");
    assert_eq!(
        seen,
        (Ok(8192), 2, Some("8192".to_string())),
        "{m}: (GET_CAPACITY, devices, sysfs capacity): the command line comes last and wins"
    );
}

#[test]
fn modprobe_conf_then_command_line_last_wins_rfifo() {
    modprobe_conf_then_command_line("rfifo");
}

#[test]
fn modprobe_conf_then_command_line_last_wins_cfifo() {
    modprobe_conf_then_command_line("cfifo");
}

// ---- 2. ioctls from a 32-bit program ---------------------------------------------------

fn compat_ioctls(m: &'static str) {
    let prog = "/tests/bin32/fifo_ioctl32";
    assert!(
        std::path::Path::new(prog).exists(),
        "{prog} is missing (xtask builds guest/c/*.c with gcc -m32)"
    );
    let _l = Loaded::new(m, "").expect("load");
    let dev = format!("/dev/{m}0");
    let (rc, out) = sh(&format!("{prog} {dev} 65536"));
    println!("{out}");
    assert_eq!(rc, 0, "{m}: the 32-bit program's ioctls:\n{out}");
    assert!(out.contains("0 failed"), "{out}");
}

#[test]
fn ioctls_from_a_32bit_program_rfifo() {
    compat_ioctls("rfifo");
}

#[test]
fn ioctls_from_a_32bit_program_cfifo() {
    compat_ioctls("cfifo");
}

// ---- 3. an open racing with a failing init ---------------------------------------------

/// What the racing opener saw.
#[derive(Default)]
struct Seen {
    /// `ENXIO`: the node existed but the device was not (yet) openable.
    enxio: AtomicUsize,
    /// Opens that succeeded (only possible once the module is fully loaded).
    opened: AtomicUsize,
    /// Anything else.
    other: AtomicUsize,
}

/// Load `m` with 64 devices while fault point `n` of the load fails, with a thread trying
/// to open `/dev/<m>0` for reading (which blocks until a writer comes) all the while.
/// Returns whether the load succeeded; panics if the opener is left sleeping in `open()`
/// of a module whose load failed.
fn racing_open(m: &str, file: &File, n: u32, seen: &Arc<Seen>) -> bool {
    let stop = Arc::new(AtomicBool::new(false));
    let dev = format!("/dev/{m}0");
    let (st, sn, d) = (stop.clone(), seen.clone(), dev.clone());
    let opener = spawn(move || {
        while !st.load(Ordering::SeqCst) {
            match open(&d, O_RDONLY) {
                Ok(_) => sn.opened.fetch_add(1, Ordering::SeqCst),
                Err(Errno(libc::ENOENT)) => 0,
                Err(Errno(libc::ENXIO)) => sn.enxio.fetch_add(1, Ordering::SeqCst),
                Err(_) => sn.other.fetch_add(1, Ordering::SeqCst),
            };
        }
    });
    let f = FailNth::new();
    f.arm(n);
    let r = kmod::finit(file, c"devices=64");
    f.left();
    stop.store(true, Ordering::SeqCst);
    match r {
        Ok(()) => {
            // A blocked read open completes once a writer is there; keep it until the
            // opener has seen `stop`.
            let w = open(&dev, O_RDWR | O_NONBLOCK).expect("open after a successful load");
            opener.join();
            drop(w);
            kmod::unload(m).expect("rmmod");
            true
        }
        Err(e) => {
            assert_eq!(e, Errno(libc::ENOMEM), "{m}: fault point {n}");
            // An open that raced with the failed load returns (ENOENT or ENXIO, which may
            // take a `request_module()` round trip); one that sleeps on is inside the module
            // being freed.
            let t = Instant::now();
            while !opener.finished() && t.elapsed() < BLOCK_TIMEOUT {
                std::thread::sleep(Duration::from_millis(5));
            }
            if !opener.finished() {
                // Waking it runs freed module code: the log scan then shows the damage.
                opener.interrupt();
                panic!(
                    "{m}: fault point {n}: insmod failed with {e:?} while an opener slept in \
                     open() of {dev}, inside the module being freed"
                );
            }
            opener.join();
            assert!(!kmod::is_loaded(m), "{m} left loaded");
            false
        }
    }
}

fn open_during_failing_init(m: &'static str) {
    fault::configure();
    kmod::ensure_unloaded(m);
    let file = File::open(kmod::path(m)).unwrap();
    // How many fault points a successful load with 64 devices passes.
    let f = FailNth::new();
    const BIG: u32 = 1_000_000;
    f.arm(BIG);
    kmod::finit(&file, c"devices=64").expect("load without injection");
    let points = BIG - f.left();
    kmod::unload(m).unwrap();
    // Spread the attempts over the load (most fault points are in the 64 device_create()s).
    let attempts: u32 = if is_debug_kernel() { 16 } else { 40 };
    let seen = Arc::new(Seen::default());
    let (mut failed, mut loaded) = (0, 0);
    for i in 1..=attempts {
        let n = points * i / (attempts + 1);
        if racing_open(m, &file, n.max(1), &seen) {
            loaded += 1;
        } else {
            failed += 1;
        }
    }
    let (enxio, opened, other) = (
        seen.enxio.load(Ordering::SeqCst),
        seen.opened.load(Ordering::SeqCst),
        seen.other.load(Ordering::SeqCst),
    );
    println!(
        "{m}: {points} fault points; {attempts} attempts: {failed} loads failed, {loaded} \
         succeeded; the opener got ENXIO {enxio} times, opened {opened} times, other {other}"
    );
    assert!(failed > 0, "{m}: no injected fault failed the load");
    assert!(
        enxio + opened > 0,
        "{m}: the opener never reached a device node during a load: the race was not exercised"
    );
    // Injection off: loads and works.
    let _l = Loaded::new(m, "").expect("load after the walk");
    let (r, w) = pair(&format!("/dev/{m}0"), true);
    write(raw(&w), b"ok").unwrap();
    assert_eq!(read(raw(&r), 8), Ok(b"ok".to_vec()));
}

#[test]
fn open_during_failing_init_is_refused_rfifo() {
    open_during_failing_init("rfifo");
}

#[test]
fn open_during_failing_init_is_refused_cfifo() {
    open_during_failing_init("cfifo");
}

// ---- 6. poll and fdinfo while a reader is stalled mid-copy -----------------------------

const UFFD_API: u64 = 0xAA;
const UFFDIO_API: u64 = 0xC018_AA3F;
const UFFDIO_REGISTER: u64 = 0xC020_AA00;
const UFFDIO_COPY: u64 = 0xC028_AA03;
const UFFDIO_REGISTER_MODE_MISSING: u64 = 1;
const UFFD_EVENT_PAGEFAULT: u8 = 0x12;

/// Anonymous memory whose first touch of each page waits until the test fills it in
/// (userfaultfd, missing-page mode; faults from the kernel's user copies included).
struct SlowMemory {
    uffd: OwnedFd,
    area: *mut u8,
    len: usize,
}

// SAFETY: `area` is a private mapping owned by this value; threads only pass its address to
// syscalls.
unsafe impl Send for SlowMemory {}
// SAFETY: As above.
unsafe impl Sync for SlowMemory {}

impl SlowMemory {
    fn new(len: usize) -> SlowMemory {
        // SAFETY: plain syscalls; every result is checked.
        unsafe {
            let fd = libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK);
            assert!(fd >= 0, "userfaultfd: {:?}", Errno::last());
            let uffd = OwnedFd::from_raw_fd(fd as RawFd);
            let mut api = [UFFD_API, 0, 0];
            let r = sys::ioctl(fd as RawFd, UFFDIO_API, api.as_mut_ptr() as usize);
            assert_eq!(r, Ok(0), "UFFDIO_API");
            let area = libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(area, libc::MAP_FAILED);
            let mut reg = [area as u64, len as u64, UFFDIO_REGISTER_MODE_MISSING, 0];
            let r = sys::ioctl(fd as RawFd, UFFDIO_REGISTER, reg.as_mut_ptr() as usize);
            assert_eq!(r, Ok(0), "UFFDIO_REGISTER");
            SlowMemory {
                uffd,
                area: area.cast(),
                len,
            }
        }
    }

    /// The address of the next page fault, waiting up to `timeout`.
    fn next_fault(&self, timeout: Duration) -> Option<u64> {
        let fd = raw(&self.uffd);
        if poll(fd, libc::POLLIN, timeout.as_millis() as i32).ok()? & libc::POLLIN == 0 {
            return None;
        }
        let mut msg = [0u8; 32]; // `struct uffd_msg`
        let n = sys::read_into(fd, &mut msg);
        (n == Ok(32) && msg[0] == UFFD_EVENT_PAGEFAULT)
            .then(|| u64::from_ne_bytes(msg[16..24].try_into().unwrap()))
    }

    /// Fill the page at `addr` with zeroes, which wakes the faulting task.
    fn resolve(&self, addr: u64) {
        let page = 4096u64;
        let zero = vec![0u8; page as usize];
        let mut copy = [addr & !(page - 1), zero.as_ptr() as u64, page, 0, 0];
        // SAFETY: `copy` is a valid `struct uffdio_copy`; the source page lives meanwhile.
        let r = unsafe { sys::ioctl(raw(&self.uffd), UFFDIO_COPY, copy.as_mut_ptr() as usize) };
        assert_eq!(r, Ok(0), "UFFDIO_COPY");
    }
}

impl Drop for SlowMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` and nobody uses it any more.
        unsafe { libc::munmap(self.area.cast(), self.len) };
    }
}

/// `f()` in a thread: its result if it returns within `limit`, else `None` (the thread is
/// left to finish on its own).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// A reader stalled in the middle of copying data out to a slow buffer (holding whatever
/// lock the device holds around the copy); meanwhile `poll()` of both ends and reading
/// `/proc/<pid>/fdinfo/<fd>` from other threads. Returns (poll returned promptly with the
/// right mask, fdinfo returned promptly, the reader got its bytes).
fn stalled_copy(path: &str) -> (Option<(i16, i16)>, bool, Result<usize, Errno>) {
    const PROMPT: Duration = Duration::from_secs(3);
    let (r, w) = pair(path, false);
    write(raw(&w), &[b'x'; 100]).unwrap();
    let mem = Arc::new(SlowMemory::new(4 * 4096));
    let (rfd, wfd) = (raw(&r), raw(&w));
    let m = mem.clone();
    let reader = spawn(move || {
        // SAFETY: `m.area` is valid for 100 bytes; its first touch faults (userfaultfd).
        unsafe { sys::read_to_addr(rfd, m.area as usize, 100) }
    });
    let fault = mem.next_fault(Duration::from_secs(10));
    assert!(
        fault.is_some(),
        "{path}: the reader did not fault on its buffer"
    );
    let polled = within(PROMPT, move || {
        (
            poll(rfd, libc::POLLIN, 0).unwrap_or(-1),
            poll(wfd, libc::POLLOUT, 0).unwrap_or(-1),
        )
    });
    let pid = std::process::id();
    let fdinfo = within(PROMPT, move || {
        std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{rfd}")).is_ok()
    });
    mem.resolve(fault.unwrap());
    let got = reader.join();
    (polled, fdinfo == Some(true), got)
}

#[test]
fn poll_and_fdinfo_do_not_wait_for_a_reader_stalled_in_a_copy() {
    let fifo = format!("/tmp/fifo_hardening.{}", std::process::id());
    let _ = std::fs::remove_file(&fifo);
    let c = std::ffi::CString::new(fifo.clone()).unwrap();
    // SAFETY: valid path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let _r = Loaded::new("rfifo", "").expect("load rfifo");
    let _c = Loaded::new("cfifo", "").expect("load cfifo");
    // The reader copies 100 bytes while 100 were there: the ring has data during the
    // stall (POLLIN), and room (POLLOUT).
    let expected = (
        Some((libc::POLLIN, libc::POLLOUT)),
        true,
        Ok::<usize, Errno>(100),
    );
    let mut report = String::new();
    let mut ok = true;
    for (name, path) in [
        ("fifo", fifo.as_str()),
        ("rfifo", "/dev/rfifo0"),
        ("cfifo", "/dev/cfifo0"),
    ] {
        let got = stalled_copy(path);
        let mark = if got == expected { "ok  " } else { "DIFF" };
        ok &= got == expected;
        report += &format!("{mark} {name:5}: (poll masks, fdinfo in time, read) {got:?}\n");
    }
    let _ = std::fs::remove_file(&fifo);
    println!("{report}");
    assert!(ok, "expected {expected:?}:\n{report}");
}

// ---- 9. load and unload time -----------------------------------------------------------

#[test]
fn insmod_rmmod_time_with_64_devices() {
    let rounds = if is_debug_kernel() { 3 } else { 10 };
    for m in ["rfifo", "cfifo"] {
        kmod::ensure_unloaded(m);
        let (mut load, mut unload) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..rounds {
            let t = Instant::now();
            kmod::load(m, "devices=64").expect("load");
            load += t.elapsed();
            assert!(
                std::path::Path::new(&format!("/dev/{m}63")).exists(),
                "{m}: /dev/{m}63 missing"
            );
            let t = Instant::now();
            kmod::unload(m).expect("unload");
            unload += t.elapsed();
            assert!(!kmod::is_loaded(m));
        }
        println!(
            "{m}: devices=64, {rounds} rounds: insmod {:.2} ms, rmmod {:.2} ms (mean)",
            load.as_secs_f64() * 1000.0 / rounds as f64,
            unload.as_secs_f64() * 1000.0 / rounds as f64
        );
    }
}
