//! Helpers of the FIFO tests (`fifo_semantics.rs`, `rfifo_ioctl.rs`, `fifo_hardening.rs`),
//! which run the same cases on rfifo, cfifo and the kernel's own FIFO: the syscalls of
//! [`crate::sys`], reader/writer pairs, data patterns, and [`Pending`], a syscall running in
//! its own thread so that a test can see it block, interrupt it with a signal, and never
//! hang (every wait is bounded).

use crate::Errno;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Once};
use std::thread;
use std::time::{Duration, Instant};

pub use crate::sys::{open, poll, read, set_nonblock, write};
pub use libc::{O_NONBLOCK, O_RDONLY, O_RDWR, O_WRONLY};

/// How long a syscall that must finish may take (TCG is slow).
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for a thread to be seen sleeping in a syscall.
pub const BLOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// Capacity of a Linux pipe/FIFO by default, and of rfifo/cfifo by default.
pub const CAPACITY: usize = 65536;
pub const PIPE_BUF: usize = 4096;

/// Read exactly `n` bytes (blocking fd), or fewer at EOF.
pub fn read_exact(fd: RawFd, n: usize) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let b = read(fd, n - out.len())?;
        if b.is_empty() {
            break;
        }
        out.extend_from_slice(&b);
    }
    Ok(out)
}

/// Everything until EOF (blocking fd), reading `chunk` bytes at a time.
pub fn read_to_eof(fd: RawFd, chunk: usize) -> Result<Vec<u8>, Errno> {
    let mut out = Vec::new();
    loop {
        let b = read(fd, chunk)?;
        if b.is_empty() {
            return Ok(out);
        }
        out.extend_from_slice(&b);
    }
}

/// The revents names of `mask` (for readable assertion messages).
pub fn poll_names(mask: i16) -> Vec<&'static str> {
    [
        (libc::POLLIN, "IN"),
        (libc::POLLRDNORM, "RDNORM"),
        (libc::POLLOUT, "OUT"),
        (libc::POLLWRNORM, "WRNORM"),
        (libc::POLLERR, "ERR"),
        (libc::POLLHUP, "HUP"),
        (libc::POLLNVAL, "NVAL"),
    ]
    .into_iter()
    .filter(|(bit, _)| mask & bit != 0)
    .map(|(_, n)| n)
    .collect()
}

/// `/proc/self/fdinfo/<fd>`.
pub fn fdinfo(fd: &impl AsRawFd) -> String {
    std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap()
}

/// `len` bytes of a recognisable pattern starting at stream offset `from`.
pub fn pattern(from: usize, len: usize) -> Vec<u8> {
    (from..from + len).map(|i| (i % 251) as u8).collect()
}

/// `SIGUSR1` (no `SA_RESTART`: a blocked syscall fails `EINTR`) and `SIGUSR2`
/// (`SA_RESTART`: it restarts) handlers that only count deliveries.
pub static USR1_COUNT: AtomicUsize = AtomicUsize::new(0);
pub static USR2_COUNT: AtomicUsize = AtomicUsize::new(0);

extern "C" fn on_usr1(_: libc::c_int) {
    USR1_COUNT.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn on_usr2(_: libc::c_int) {
    USR2_COUNT.fetch_add(1, Ordering::SeqCst);
}

pub fn install_signal_handlers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (sig, handler, flags) in [
            (libc::SIGUSR1, on_usr1 as extern "C" fn(libc::c_int), 0),
            (
                libc::SIGUSR2,
                on_usr2 as extern "C" fn(libc::c_int),
                libc::SA_RESTART,
            ),
        ] {
            // SAFETY: a zeroed sigaction with a handler that only touches an atomic.
            unsafe {
                let mut sa: libc::sigaction = std::mem::zeroed();
                sa.sa_sigaction = handler as usize;
                sa.sa_flags = flags;
                libc::sigemptyset(&mut sa.sa_mask);
                assert_eq!(libc::sigaction(sig, &sa, std::ptr::null_mut()), 0);
            }
        }
    });
}

/// Run `f` with `SIGPIPE` blocked in this thread; returns its result and whether a
/// `SIGPIPE` was sent to the thread meanwhile (it is then consumed).
pub fn catching_sigpipe<T>(f: impl FnOnce() -> T) -> (T, bool) {
    // SAFETY: signal-mask manipulation of the current thread with valid sigsets.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let r = f();
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut pending);
        let got = libc::sigismember(&pending, libc::SIGPIPE) == 1;
        if got {
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            libc::sigtimedwait(&set, std::ptr::null_mut(), &zero);
        }
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        (r, got)
    }
}

/// A closure (usually one syscall) running in its own thread.
pub struct Pending<T> {
    tid: libc::pid_t,
    finished: Arc<AtomicBool>,
    rx: mpsc::Receiver<T>,
    handle: Option<thread::JoinHandle<()>>,
}

pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Pending<T> {
    install_signal_handlers();
    let (tx, rx) = mpsc::channel();
    let (tid_tx, tid_rx) = mpsc::channel();
    let finished = Arc::new(AtomicBool::new(false));
    let fin = finished.clone();
    let handle = thread::spawn(move || {
        // SAFETY: gettid has no preconditions.
        tid_tx.send(unsafe { libc::gettid() }).unwrap();
        let r = f();
        fin.store(true, Ordering::SeqCst);
        let _ = tx.send(r);
    });
    let tid = tid_rx.recv().unwrap();
    Pending {
        tid,
        finished,
        rx,
        handle: Some(handle),
    }
}

impl<T> Pending<T> {
    pub fn finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// Wait (bounded) until the thread sleeps interruptibly in syscall `nr`
    /// (`/proc/self/task/<tid>/syscall` and `stat`); false if it finished or never did.
    pub fn blocked_in(&self, nr: libc::c_long) -> bool {
        self.blocked_in_any(&[nr])
    }

    /// [`Pending::blocked_in`] one of several syscalls (e.g. `poll` or `ppoll`).
    pub fn blocked_in_any(&self, nrs: &[libc::c_long]) -> bool {
        let nrs: Vec<String> = nrs.iter().map(|n| n.to_string()).collect();
        let dir = format!("/proc/self/task/{}", self.tid);
        let start = Instant::now();
        while start.elapsed() < BLOCK_TIMEOUT {
            if self.finished() {
                return false;
            }
            let sc = std::fs::read_to_string(format!("{dir}/syscall")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("{dir}/stat")).unwrap_or_default();
            // `pid (comm) S ...`: the state follows the last ')'.
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next();
            let in_nr = sc
                .split_whitespace()
                .next()
                .is_some_and(|n| nrs.iter().any(|x| x == n));
            if in_nr && state == Some('S') {
                // Still there a little later: it really waits.
                thread::sleep(Duration::from_millis(50));
                return !self.finished();
            }
            thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Send `sig` to the thread.
    pub fn signal(&self, sig: libc::c_int) {
        let pt = self.handle.as_ref().unwrap().as_pthread_t();
        // SAFETY: the thread is not joined yet, so its pthread_t is valid.
        unsafe { libc::pthread_kill(pt, sig) };
    }

    /// `SIGUSR1`: a blocked syscall returns `EINTR`.
    pub fn interrupt(&self) {
        self.signal(libc::SIGUSR1);
    }

    /// The result, within [`JOIN_TIMEOUT`]; on timeout the thread is interrupted (so the
    /// test process does not hang) and the test fails.
    pub fn join(mut self) -> T {
        match self.rx.recv_timeout(JOIN_TIMEOUT) {
            Ok(v) => {
                self.handle.take().unwrap().join().unwrap();
                v
            }
            Err(_) => {
                for _ in 0..50 {
                    self.interrupt();
                    if self.rx.recv_timeout(Duration::from_millis(100)).is_ok() {
                        break;
                    }
                }
                panic!("a syscall did not finish within {JOIN_TIMEOUT:?}");
            }
        }
    }
}

/// `f()` in a thread, bounded by [`JOIN_TIMEOUT`] (for calls that must not block).
pub fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn(f).join()
}

/// `open()` that must not hang the test.
pub fn open_bounded(path: &str, flags: i32) -> Result<OwnedFd, Errno> {
    let p = path.to_string();
    bounded(move || open(&p, flags))
}

/// A connected reader/writer pair: a non-blocking read open (never blocks), then a write
/// open (there is a reader), then the reader made blocking; `nonblock` applies to both.
pub fn pair(path: &str, nonblock: bool) -> (OwnedFd, OwnedFd) {
    let r = open(path, O_RDONLY | O_NONBLOCK).expect("read open");
    let w =
        open_bounded(path, O_WRONLY | if nonblock { O_NONBLOCK } else { 0 }).expect("write open");
    set_nonblock(r.as_raw_fd(), nonblock);
    (r, w)
}

/// Fill with `n` bytes of pattern through a non-blocking write; returns the count written.
pub fn fill(w: &OwnedFd, n: usize) -> Result<usize, Errno> {
    let fd = w.as_raw_fd();
    let was_nonblocking = set_nonblock(fd, true);
    let r = write(fd, &pattern(0, n));
    set_nonblock(fd, was_nonblocking);
    r
}
