//! Long kernel operations must give way to signals.
//!
//! - `locking`: reading `/dev/rust_locking` runs an experiment of up to 64 x 10^6 locked
//!   updates plus 10 s of hrtimer ticks. A reader that gets SIGKILL must be gone at once (no
//!   process stuck in the kernel, no hung-task warning), also when it waits for another reader
//!   of the same file; a caught signal ends the read with `EINTR`.
//! - `hello_chardev`: a write of ~2 GiB is consumed 256 bytes at a time. SIGKILL ends it at
//!   once; a caught signal ends it early with the count of the bytes consumed so far, which the
//!   module has counted (no byte is lost or counted twice).
//!
//! Each long operation runs in a child process; the test signals it after ~200 ms and measures
//! how long the child takes to be reaped. Then the module must still work and unload.

use guest::kmod::{self, Loaded};
use guest::{sys, Errno, Kmsg};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long a signalled child may take to be reaped.
const PROMPT: Duration = Duration::from_secs(2);

/// How long the long operation runs before it is signalled.
const HEAD_START: Duration = Duration::from_millis(200);

/// Upper bound for a child that ignores the signal (only to clean up after a failure).
const CLEANUP: Duration = Duration::from_secs(600);

/// A forked child.
struct Child {
    pid: libc::pid_t,
    status: Option<i32>,
}

impl Child {
    /// Run `f` in a child process; its return value is the exit status. `f` must only make
    /// system calls (the parent is multi-threaded: no allocation, no locks after fork).
    fn spawn(f: impl FnOnce() -> i32) -> Child {
        // SAFETY: fork; the child runs `f`, which only makes system calls, then `_exit`s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {:?}", Errno::last());
        if pid == 0 {
            let code = f();
            // SAFETY: leaving the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        Child { pid, status: None }
    }

    /// Has the child exited? Reaps it if so.
    fn try_wait(&mut self) -> Option<i32> {
        if self.status.is_none() {
            let mut st = 0;
            // SAFETY: waiting for our own child, without blocking.
            let r = unsafe { libc::waitpid(self.pid, &mut st, libc::WNOHANG) };
            if r == self.pid {
                self.status = Some(st);
            }
        }
        self.status
    }

    /// Wait up to `limit` for the child; the wait status and how long it took.
    fn wait_for(&mut self, limit: Duration) -> Option<(i32, Duration)> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.try_wait() {
                return Some((st, start.elapsed()));
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signalling our own child (not yet reaped, so the pid is still ours).
        assert_eq!(unsafe { libc::kill(self.pid, sig) }, 0, "kill");
    }

    /// Send `sig` after the head start (the child must still be busy then), and return the
    /// wait status and how long the child took to be reaped after the signal. When it takes
    /// longer than [`PROMPT`] the test fails, after waiting for the child to finish anyway.
    fn interrupt(&mut self, sig: i32, what: &str) -> (i32, Duration) {
        std::thread::sleep(HEAD_START);
        assert_eq!(
            self.try_wait(),
            None,
            "{what}: the operation ended before the signal; it is not long enough for this test"
        );
        self.signal(sig);
        match self.wait_for(PROMPT) {
            Some(r) => {
                eprintln!("{what}: reaped {:?} after signal {sig}", r.1);
                r
            }
            None => {
                let late = self.wait_for(CLEANUP).map(|(_, t)| t + PROMPT);
                panic!("{what}: child not reaped within {PROMPT:?} of signal {sig} (took {late:?})")
            }
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.wait_for(CLEANUP);
        }
    }
}

/// Install a handler for `sig` without `SA_RESTART` (so a blocked system call returns `EINTR`
/// or a short count instead of restarting). Only system calls: callable in a forked child.
fn catch_without_restart(sig: i32) {
    extern "C" fn handler(_: i32) {}
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe (does nothing).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

fn was_killed(st: i32) -> bool {
    libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL
}

fn open(path: &str, flags: i32) -> OwnedFd {
    sys::open(path, flags).unwrap_or_else(|e| panic!("open {path}: {e:?}"))
}

/// A pipe whose read end the parent keeps: the child reports a number through it.
struct Pipe {
    r: i32,
    w: i32,
}

impl Pipe {
    fn new() -> Pipe {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for two fds.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        Pipe {
            r: fds[0],
            w: fds[1],
        }
    }

    /// In the child: send `v`.
    fn send(&self, v: i64) {
        let _ = sys::write(self.w, &v.to_ne_bytes());
    }

    /// In the parent, after the child exited: the value it sent.
    fn recv(&mut self) -> Option<i64> {
        // SAFETY: closing the parent's copy of the write end (the child's is closed).
        unsafe { libc::close(self.w) };
        self.w = -1;
        let mut b = [0u8; 8];
        let n = sys::read_into(self.r, &mut b);
        (n == Ok(8)).then(|| i64::from_ne_bytes(b))
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        // SAFETY: closing our own fds (`w` is -1 once `recv` closed it).
        unsafe {
            libc::close(self.r);
            if self.w >= 0 {
                libc::close(self.w);
            }
        }
    }
}

/// `read(2)` of up to 512 bytes: the count, or -errno.
fn read_fd(fd: i32) -> i64 {
    let mut buf = [0u8; 512];
    match sys::read_into(fd, &mut buf) {
        Ok(n) => n as i64,
        Err(e) => -i64::from(e.0),
    }
}

// ---------------------------------------------------------------------------------------------
// locking

const LOCKING: &str = "locking";
const LOCKING_DEV: &str = "/dev/rust_locking";

/// After the interrupted reads: the module unloads at once (no work item or timer left behind)
/// and a fresh load still gives an exact report.
fn locking_still_works(m: Loaded) {
    drop(m);
    assert!(
        !kmod::is_loaded(LOCKING),
        "rmmod right after the reader died"
    );
    let _m = Loaded::new(LOCKING, "workers=4 iterations=2000 irq_ticks=5").expect("reload");
    let line = std::fs::read_to_string(LOCKING_DEV).expect("read report");
    assert!(
        line.starts_with("workers=4 iterations=2000 mutex_total=8000 spinlock_total=8000 ")
            && line.contains(" result=ok"),
        "{line}"
    );
}

/// SIGKILL a reader whose experiment spends its time in `iterations` locked updates.
#[test]
fn killable_locking_read_sigkill_during_iterations() {
    let m = Loaded::new(LOCKING, "workers=64 iterations=1000000 irq_ticks=1").expect("insmod");
    let mut log = Kmsg::new();
    let fd = open(LOCKING_DEV, libc::O_RDONLY);
    let mut child = Child::spawn(|| {
        read_fd(fd.as_raw_fd());
        0
    });
    drop(fd); // the parent's copy
    let (st, _) = child.interrupt(libc::SIGKILL, "64 x 10^6 iterations");
    assert!(was_killed(st), "status {st:#x}");
    let lines = log.lines();
    assert!(
        !lines.iter().any(|l| l.starts_with("locking: workers=64 ")),
        "a killed reader's experiment does not report: {lines:?}"
    );
    locking_still_works(m);
}

/// SIGKILL a reader whose experiment spends its time waiting for 10 s of hrtimer ticks.
#[test]
fn killable_locking_read_sigkill_during_ticks() {
    let m = Loaded::new(LOCKING, "workers=1 iterations=1 irq_ticks=100000").expect("insmod");
    let fd = open(LOCKING_DEV, libc::O_RDONLY);
    let mut child = Child::spawn(|| {
        read_fd(fd.as_raw_fd());
        0
    });
    drop(fd); // the parent's copy
    let (st, _) = child.interrupt(libc::SIGKILL, "100000 ticks");
    assert!(was_killed(st), "status {st:#x}");
    locking_still_works(m);
}

/// Two processes share one open file: the second reader waits for the first one's experiment
/// (one experiment per open); that wait must be killable too.
#[test]
fn killable_locking_second_reader_of_the_same_file() {
    let m = Loaded::new(LOCKING, "workers=1 iterations=1 irq_ticks=100000").expect("insmod");
    let fd = open(LOCKING_DEV, libc::O_RDONLY);
    let mut first = Child::spawn(|| {
        read_fd(fd.as_raw_fd());
        0
    });
    std::thread::sleep(Duration::from_millis(100));
    let mut second = Child::spawn(|| {
        read_fd(fd.as_raw_fd());
        0
    });
    drop(fd); // the parent's copy
    let (st, _) = second.interrupt(libc::SIGKILL, "second reader");
    assert!(was_killed(st), "status {st:#x}");
    assert_eq!(first.try_wait(), None, "the first reader still runs");
    let (st, _) = first.interrupt(libc::SIGKILL, "first reader");
    assert!(was_killed(st), "status {st:#x}");
    locking_still_works(m);
}

/// A caught signal (handler without `SA_RESTART`) ends the read with `EINTR`; nothing is read.
#[test]
fn killable_locking_read_caught_signal_is_eintr() {
    let m = Loaded::new(LOCKING, "workers=1 iterations=1 irq_ticks=100000").expect("insmod");
    let fd = open(LOCKING_DEV, libc::O_RDONLY);
    let mut pipe = Pipe::new();
    let mut child = Child::spawn(|| {
        catch_without_restart(libc::SIGUSR1);
        pipe.send(read_fd(fd.as_raw_fd()));
        0
    });
    drop(fd); // the parent's copy
    let (st, _) = child.interrupt(libc::SIGUSR1, "read with SIGUSR1");
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "{st:#x}");
    assert_eq!(pipe.recv(), Some(-i64::from(libc::EINTR)), "read(2) result");
    locking_still_works(m);
}

// ---------------------------------------------------------------------------------------------
// hello_chardev

const HELLO: &str = "hello_chardev";
const HELLO_DEV: &str = "/dev/rust_hello";

/// A write of `MAX_RW_COUNT` (2 GiB - 4 KiB) bytes: 1024 iovecs over one 2 MiB buffer.
struct HugeWrite {
    _buf: Vec<u8>,
    iov: Vec<libc::iovec>,
}

impl HugeWrite {
    const CHUNK: usize = 2 << 20;
    const IOVS: usize = 1024;
    const MAX_RW_COUNT: i64 = (i32::MAX as i64) & !4095;

    fn new() -> HugeWrite {
        let mut buf = vec![b'z'; Self::CHUNK];
        let iov = (0..Self::IOVS)
            .map(|_| libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: Self::CHUNK,
            })
            .collect();
        HugeWrite { _buf: buf, iov }
    }

    /// `writev(2)`: the count, or -errno.
    fn run(&self, fd: i32) -> i64 {
        // SAFETY: every iovec points into `_buf`, valid for `CHUNK` bytes of reads.
        let n = unsafe { libc::writev(fd, self.iov.as_ptr(), self.iov.len() as i32) };
        sys::cvt(n as i64).unwrap_or_else(|e| -i64::from(e.0))
    }
}

/// The module's `Received N bytes` counts and its `Total received: N bytes` (after rmmod).
fn hello_counts(log: &mut Kmsg) -> (Vec<i64>, Option<i64>) {
    let mut received = Vec::new();
    let mut total = None;
    for l in log.lines() {
        let Some(l) = l.strip_prefix("hello_chardev: ") else {
            continue;
        };
        let num = |s: &str| s.strip_suffix(" bytes").and_then(|n| n.parse().ok());
        if let Some(n) = l.strip_prefix("Received ").and_then(num) {
            received.push(n);
        } else if let Some(n) = l.strip_prefix("Total received: ").and_then(num) {
            total = Some(n);
        }
    }
    (received, total)
}

/// The device still reads and writes, and the module unloads.
fn hello_still_works(fd_path: &str) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fd_path)
        .unwrap();
    assert_eq!(sys::write(f.as_raw_fd(), b"hi"), Ok(2));
    assert_eq!(std::fs::read(fd_path).unwrap(), b"Hello from Rust!\n");
}

#[test]
fn killable_hello_chardev_huge_write_sigkill() {
    kmod::ensure_unloaded(HELLO);
    let mut log = Kmsg::new();
    let m = Loaded::new(HELLO, "").expect("insmod hello_chardev");
    let w = HugeWrite::new();
    let fd = open(HELLO_DEV, libc::O_WRONLY);
    let mut child = Child::spawn(|| {
        w.run(fd.as_raw_fd());
        0
    });
    drop(fd); // the parent's copy
    let (st, _) = child.interrupt(libc::SIGKILL, "2 GiB write");
    assert!(was_killed(st), "status {st:#x}");
    hello_still_works(HELLO_DEV);
    drop(m);
    assert!(!kmod::is_loaded(HELLO));
    let (received, total) = hello_counts(&mut log);
    eprintln!("received {received:?}, total {total:?}");
    // The killed write reported what it had consumed (or nothing, if it never started), then
    // the 2-byte write; the total is exactly their sum.
    assert_eq!(received.last(), Some(&2), "{received:?}");
    assert!(received.len() <= 2, "{received:?}");
    assert!(
        received[..received.len() - 1]
            .iter()
            .all(|&n| n > 0 && n < HugeWrite::MAX_RW_COUNT),
        "{received:?}"
    );
    assert_eq!(total, Some(received.iter().sum()), "{received:?}");
}

#[test]
fn killable_hello_chardev_huge_write_caught_signal_returns_short_count() {
    kmod::ensure_unloaded(HELLO);
    let mut log = Kmsg::new();
    let m = Loaded::new(HELLO, "").expect("insmod hello_chardev");
    let w = HugeWrite::new();
    let fd = open(HELLO_DEV, libc::O_WRONLY);
    let mut pipe = Pipe::new();
    let mut child = Child::spawn(|| {
        catch_without_restart(libc::SIGUSR1);
        pipe.send(w.run(fd.as_raw_fd()));
        0
    });
    drop(fd); // the parent's copy
    let (st, _) = child.interrupt(libc::SIGUSR1, "2 GiB write with SIGUSR1");
    assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "{st:#x}");
    let n = pipe.recv().expect("writev result");
    eprintln!("writev returned {n} of {}", HugeWrite::MAX_RW_COUNT);
    assert!(
        n > 0 && n < HugeWrite::MAX_RW_COUNT,
        "a short count after 200 ms: {n}"
    );
    drop(m);
    let (received, total) = hello_counts(&mut log);
    assert_eq!(received, [n], "the module logs the count write(2) returned");
    assert_eq!(total, Some(n), "and counted exactly those bytes");
}
