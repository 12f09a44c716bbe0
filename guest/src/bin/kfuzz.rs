//! `kfuzz`: a seeded random syscall driver over device nodes, run inside the guest.
//!
//! `kfuzz --seed S --seconds N [--workers W] DEVICE...` forks W workers; worker `i` draws its
//! operations from a PRNG seeded with `S` and `i`: open with random flags, read/write with
//! random sizes and pointers (valid, NULL, a kernel address, unmapped), random ioctl numbers
//! (mostly in the devices' magics) and arguments, poll or epoll (level- or edge-triggered)
//! with a short wait, dup, fork, close. A 20 ms interval timer
//! interrupts blocking calls (SIGALRM without SA_RESTART), so nothing waits for long and
//! the signal paths run too. The op sequence is a function of the seed; the scheduling is
//! not. It stops by itself, prints the seed and how many ops each worker ran, and exits 0
//! unless a worker died from a signal (a crash in the kernel shows up in the kernel log,
//! which the host scans).
//!
//! `--guided [--corpus DIR]` (needs KCOV: the debug kernel) is coverage-guided instead: a
//! worker runs *programs*, short op sequences ([`Program`], one op per text line), with
//! KCOV enabled on itself; a program that takes a step between two PCs of module code the
//! worker had not seen ([`edge`]) is kept in its corpus and saved to DIR (`<hash>.prog`,
//! shared by the workers and, by `cargo xtask fuzz --coverage-guided`, with the host, so a
//! later run continues it). A program just kept is mutated [`SMASH`] times first; else each
//! next program is, one time in ten, a fresh random one, else a mutation of a corpus program
//! (insert, delete, replace, duplicate an op; change one argument of an op; splice two
//! programs). Besides syscalls a program has `fork` (the rest of the program runs in this
//! task and, at the same time, in a child that shares its files and that the worker does not
//! wait for: its blocking calls may take seconds; `patience MS`, which let the worker's own
//! later calls wait, is still run from saved programs but no longer made), so it reaches
//! what random kfuzz reaches with long-lived fds and forked children: completed long waits
//! and one task woken by another.
//! After each program the worker reads new kernel log records; a report (`BUG:`, `WARNING:`,
//! KASAN, ...) prints the program that preceded it and saves it as `report-<hash>.prog`.
//! `--replay FILE` runs one saved program once.
//!
//! With `RKM_KCOV_DIR` set (coverage runs) both modes write the distinct PCs each worker
//! reached to that directory (`guest::kcov`), relative to their module sections.

use guest::kcov::{self, Kcov};
use std::collections::HashSet;
use std::ffi::CString;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// xorshift64*: small, deterministic.
struct Rng(u64);

impl Rng {
    fn new(seed: u64, stream: u64) -> Rng {
        Rng((seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

extern "C" fn on_alarm(_: libc::c_int) {}

/// Signals interrupt blocking calls: SIGALRM (no `SA_RESTART`) every [`ALARM_MS`].
fn install_timer() {
    // SAFETY: a zeroed sigaction with a valid handler and no SA_RESTART is a valid argument.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    set_alarm(ALARM_MS);
}

/// How long a blocking call may wait before SIGALRM interrupts it, normally.
const ALARM_MS: u32 = 20;

/// What a `patience` op may allow, in milliseconds.
const PATIENCE_MS: [u32; 3] = [ALARM_MS, 500, 5000];

/// SIGALRM every `ms` milliseconds from now on.
fn set_alarm(ms: u32) {
    let tv = libc::timeval {
        tv_sec: (ms / 1000) as libc::time_t,
        tv_usec: ((ms % 1000) * 1000) as libc::suseconds_t,
    };
    let t = libc::itimerval {
        it_interval: tv,
        it_value: tv,
    };
    // SAFETY: a valid itimerval; the old value is not asked for.
    unsafe { libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut()) };
}

/// Pointers to hand to the kernel: a valid buffer most of the time, else bad ones.
fn pointer(rng: &mut Rng, buf: &mut [u8]) -> *mut libc::c_void {
    match rng.below(10) {
        0 => std::ptr::null_mut(),
        1 => 0xffff_8880_0000_0000usize as *mut libc::c_void, // kernel direct map
        2 => 0x10usize as *mut libc::c_void,                  // unmapped low page
        _ => buf.as_mut_ptr().cast(),
    }
}

fn size(rng: &mut Rng) -> usize {
    match rng.below(8) {
        0 => 0,
        1 => 1,
        2 => 4096,
        3 => 4097,
        4 => 65536,
        5 => 1 << 20,
        _ => rng.below(8192) as usize,
    }
}

/// Random `open` flags: read, write or both, half of the time non-blocking.
fn open_flags(rng: &mut Rng) -> i32 {
    *rng.pick(&[libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR])
        | if rng.below(2) == 0 {
            libc::O_NONBLOCK
        } else {
            0
        }
}

/// The ioctl numbers our devices define (their uapi crates), as syzkaller's descriptions
/// would give them.
const KNOWN_IOCTLS: [u32; 7] = [
    rfifo_uapi::GET_CAPACITY,
    rfifo_uapi::SET_CAPACITY,
    rfifo_uapi::CLEAR,
    rfifo_uapi::GET_STATS,
    edu_uapi::FACTORIAL,
    edu_uapi::LIVENESS,
    edu_uapi::GET_STATS,
];

/// A random ioctl number: one time in three a defined one ([`KNOWN_IOCTLS`]), else a
/// plausible one (the devices' magics, directions and sizes).
fn ioctl_cmd(rng: &mut Rng) -> u64 {
    if rng.below(3) == 0 {
        return *rng.pick(&KNOWN_IOCTLS) as u64;
    }
    let any = rng.below(256);
    let magic = *rng.pick(&[0xB9u64, 0xB9, 0xBB, b'r' as u64, any]);
    let dir = rng.below(4);
    let anysz = rng.below(1 << 14);
    let sz = *rng.pick(&[0u64, 4, 8, 16, 32, 40, 64, anysz]);
    let nr = rng.below(16);
    (dir << 30) | (sz << 16) | (magic << 8) | nr
}

/// The value an ioctl finds behind its buffer pointer (both modes write it into the buffer
/// first): mostly the sizes and limits that drivers compare against (a FIFO capacity of 1,
/// a page, the 16 MiB maximum and one past it), else any number below 2^20 or 2^32.
fn ioctl_value(rng: &mut Rng) -> u64 {
    match rng.below(4) {
        0 => rng.below(1 << 20),
        1 => rng.below(1 << 32),
        _ => *rng.pick(&[
            0,
            1,
            2,
            16,
            4095,
            4096,
            4097,
            65536,
            1 << 20,
            16 << 20,
            (16 << 20) + 1,
            u32::MAX as u64,
        ]),
    }
}

/// The buffer as an ioctl argument: `value` in its first 8 bytes, zeros up to 64 (the rest
/// of an ioctl struct: reserved fields and flags that must be 0).
fn ioctl_buf(buf: &mut [u8], value: u64) -> usize {
    buf[..8].copy_from_slice(&value.to_ne_bytes());
    buf[8..64].fill(0);
    buf.as_mut_ptr() as usize
}

/// How a `poll` op waits: `poll(2)`, or an epoll instance (level- or edge-triggered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PollHow {
    Poll,
    Epoll,
    EpollEt,
}

impl PollHow {
    const ALL: [PollHow; 3] = [PollHow::Poll, PollHow::Epoll, PollHow::EpollEt];

    fn name(self) -> &'static str {
        match self {
            PollHow::Poll => "poll",
            PollHow::Epoll => "epoll",
            PollHow::EpollEt => "epollet",
        }
    }
}

/// Random poll arguments: events (read, write, both, the `*NORM` variants, none) and a wait
/// of 0 (mostly) or 10 ms.
fn poll_args(rng: &mut Rng) -> (PollHow, u32, i32) {
    let events = *rng.pick(&[
        libc::POLLIN,
        libc::POLLOUT,
        libc::POLLIN | libc::POLLOUT,
        libc::POLLRDNORM | libc::POLLWRNORM,
        0,
    ]) as u32;
    (*rng.pick(&PollHow::ALL), events, *rng.pick(&[0, 0, 10]))
}

/// Wait on `fd` once with `how`.
fn poll_fd(fd: i32, how: PollHow, events: u32, wait_ms: i32) {
    // SAFETY: every pointer passed points to a local of the right type; the kernel validates
    // the fds.
    unsafe {
        if how == PollHow::Poll {
            let mut p = libc::pollfd {
                fd,
                events: events as i16,
                revents: 0,
            };
            libc::poll(&mut p, 1, wait_ms);
            return;
        }
        let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        if ep < 0 {
            return;
        }
        let et = if how == PollHow::EpollEt {
            libc::EPOLLET as u32
        } else {
            0
        };
        let mut ev = libc::epoll_event {
            events: events | et,
            u64: 0,
        };
        if libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) == 0 {
            let mut out = [libc::epoll_event { events: 0, u64: 0 }; 2];
            libc::epoll_wait(ep, out.as_mut_ptr(), 2, wait_ms);
        }
        libc::close(ep);
    }
}

/// Coverage of a worker process when `RKM_KCOV_DIR` is set (random mode): its KCOV buffer
/// is drained into a set every few ops (it would fill up otherwise).
struct Coverage {
    kcov: Kcov,
    seen: HashSet<u64>,
}

impl Coverage {
    fn start() -> Option<Coverage> {
        kcov::out_dir()?;
        let kcov = Kcov::open_enabled(kcov::THREAD_WORDS)
            .map_err(|e| eprintln!("kfuzz: no KCOV: {e}"))
            .ok()?;
        Some(Coverage {
            kcov,
            seen: HashSet::new(),
        })
    }

    fn drain(&mut self) {
        self.seen.extend(self.kcov.pcs());
        self.kcov.reset();
    }

    /// Write what this process reached to `$RKM_KCOV_DIR/kfuzz.<pid>`.
    fn write(mut self) -> usize {
        self.drain();
        write_coverage(&self.seen);
        self.seen.len()
    }
}

fn write_coverage(seen: &HashSet<u64>) {
    let Some(dir) = kcov::out_dir() else {
        return;
    };
    let pcs: Vec<u64> = seen.iter().copied().collect();
    let lines = kcov::relative_lines(&pcs, &kcov::module_sections());
    let text: String = lines.into_iter().map(|l| l + "\n").collect();
    let path = format!("{dir}/kfuzz.{}", std::process::id());
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("kfuzz: {path}: {e}");
    }
}

/// One worker: `deadline` bounds it in time. Returns the number of ops run.
fn worker(seed: u64, id: u64, devices: &[String], deadline: Instant) -> u64 {
    let mut cov = Coverage::start();
    let mut rng = Rng::new(seed, id);
    let mut buf = vec![0u8; 1 << 20];
    let mut fds: Vec<i32> = Vec::new();
    let paths: Vec<CString> = devices
        .iter()
        .map(|d| CString::new(d.as_str()).unwrap())
        .collect();
    let mut ops = 0u64;
    let mut children = 0;
    while Instant::now() < deadline {
        ops += 1;
        if ops.is_multiple_of(32) {
            if let Some(c) = cov.as_mut() {
                c.drain();
            }
        }
        let fd = if fds.is_empty() { -1 } else { *rng.pick(&fds) };
        // SAFETY (for every libc call below): the kernel validates fds and user pointers;
        // bad ones are the point. Buffers passed as "valid" are `buf`, at least as large as
        // the size passed, since sizes are capped at buf.len().
        unsafe {
            match rng.below(100) {
                0..=14 => {
                    let flags = open_flags(&mut rng);
                    let p = rng.pick(&paths);
                    let f = libc::open(p.as_ptr(), flags);
                    if f >= 0 {
                        fds.push(f);
                    }
                }
                15..=36 if fd >= 0 => {
                    let n = size(&mut rng).min(buf.len());
                    let p = pointer(&mut rng, &mut buf);
                    libc::read(fd, p, n);
                }
                37..=58 if fd >= 0 => {
                    let n = size(&mut rng).min(buf.len());
                    let p = pointer(&mut rng, &mut buf);
                    libc::write(fd, p, n);
                }
                59..=73 if fd >= 0 => {
                    let cmd = ioctl_cmd(&mut rng);
                    let arg = match rng.below(4) {
                        0 => 0usize,
                        1 => ioctl_buf(&mut buf, ioctl_value(&mut rng)),
                        2 => 0xffff_8880_0000_0000usize,
                        _ => rng.below(1 << 20) as usize,
                    };
                    libc::ioctl(fd, cmd as _, arg);
                }
                74..=79 if fd >= 0 => {
                    let (how, events, wait_ms) = poll_args(&mut rng);
                    poll_fd(fd, how, events, wait_ms);
                }
                80..=84 if fd >= 0 => {
                    let d = libc::dup(fd);
                    if d >= 0 {
                        fds.push(d);
                    }
                }
                85..=89 if children < 4 => {
                    let pid = libc::fork();
                    if pid == 0 {
                        // The child inherits the fds; does a few ops of its own and exits.
                        let until = Instant::now() + Duration::from_millis(100);
                        worker(rng.next(), id + 1000, devices, until);
                        libc::_exit(0);
                    } else if pid > 0 {
                        children += 1;
                    }
                }
                90..=94 if fd >= 0 => {
                    let pos = fds.iter().position(|&f| f == fd).unwrap();
                    fds.swap_remove(pos);
                    libc::close(fd);
                }
                95..=99 => {
                    let mut st = 0;
                    if libc::waitpid(-1, &mut st, libc::WNOHANG) > 0 {
                        children -= 1;
                    }
                }
                _ => {}
            }
        }
        if fds.len() > 64 {
            // SAFETY: closing our own fd.
            unsafe { libc::close(fds.remove(0)) };
        }
    }
    for f in fds {
        // SAFETY: closing our own fd.
        unsafe { libc::close(f) };
    }
    while children > 0 {
        let mut st = 0;
        // SAFETY: reaping our children.
        if unsafe { libc::wait(&mut st) } < 0 {
            break;
        }
        children -= 1;
    }
    if let Some(c) = cov {
        let n = c.write();
        if id < 1000 {
            println!("kfuzz: worker {id} reached {n} distinct PCs");
        }
    }
    ops
}

// ---- Coverage-guided mode ----

/// Where an op's buffer pointer points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ptr {
    Buf,
    Null,
    Kernel,
    Low,
}

impl Ptr {
    fn random(rng: &mut Rng) -> Ptr {
        match rng.below(10) {
            0 => Ptr::Null,
            1 => Ptr::Kernel,
            2 => Ptr::Low,
            _ => Ptr::Buf,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ptr::Buf => "buf",
            Ptr::Null => "null",
            Ptr::Kernel => "kernel",
            Ptr::Low => "low",
        }
    }

    fn parse(s: &str) -> Option<Ptr> {
        [Ptr::Buf, Ptr::Null, Ptr::Kernel, Ptr::Low]
            .into_iter()
            .find(|p| p.name() == s)
    }

    fn get(self, buf: &mut [u8]) -> *mut libc::c_void {
        match self {
            Ptr::Buf => buf.as_mut_ptr().cast(),
            Ptr::Null => std::ptr::null_mut(),
            Ptr::Kernel => 0xffff_8880_0000_0000usize as *mut libc::c_void,
            Ptr::Low => 0x10usize as *mut libc::c_void,
        }
    }
}

/// One operation of a program. `slot` picks one of the program's open fds (modulo their
/// number; the op is skipped when there is none).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Open {
        path: String,
        flags: i32,
    },
    Read {
        slot: usize,
        size: usize,
        ptr: Ptr,
    },
    Write {
        slot: usize,
        size: usize,
        ptr: Ptr,
        fill: u8,
    },
    /// `arg` is the argument itself with `ptr` [`Ptr::Low`], the value written to the first
    /// 8 bytes of the buffer with [`Ptr::Buf`] (what a `_IOW` ioctl reads; zeros follow up
    /// to 64 bytes), else unused.
    Ioctl {
        slot: usize,
        cmd: u64,
        arg: u64,
        ptr: Ptr,
    },
    /// `poll(2)` or `epoll_wait(2)` (a new epoll instance, level- or edge-triggered).
    Poll {
        slot: usize,
        how: PollHow,
        events: u32,
        wait_ms: i32,
    },
    Dup {
        slot: usize,
    },
    Close {
        slot: usize,
    },
    /// Blocking calls after this one may wait `ms` before SIGALRM interrupts them (until the
    /// program ends; then [`ALARM_MS`] again). Only in saved programs of earlier runs:
    /// [`Op::Fork`] reaches the same long waits without stalling the worker.
    Patience {
        ms: u32,
    },
    /// The rest of the program runs twice at the same time: in this task and in a forked
    /// child that shares its open files (what the child does guides only through this task's
    /// coverage, as the other side: a blocked read woken by its write, a full FIFO drained by
    /// its read; in coverage runs its own PCs are counted too, as random kfuzz's children's
    /// are). The worker does not wait for the child, whose blocking calls may each wait up to
    /// [`CHILD_ALARM_MS`]: a read of `/dev/rust_locking` there sees its experiment through
    /// while the worker goes on. Random kfuzz gets the same from its forked children.
    Fork,
}

impl Op {
    fn random(rng: &mut Rng, devices: &[String]) -> Op {
        let slot = rng.below(4) as usize;
        match rng.below(100) {
            0..=17 => {
                let flags = open_flags(rng);
                Op::Open {
                    path: rng.pick(devices).clone(),
                    flags,
                }
            }
            18..=39 => Op::Read {
                slot,
                size: size(rng),
                ptr: Ptr::random(rng),
            },
            40..=61 => Op::Write {
                slot,
                size: size(rng),
                ptr: Ptr::random(rng),
                fill: rng.below(256) as u8,
            },
            62..=81 => {
                let cmd = ioctl_cmd(rng);
                let (arg, ptr) = match rng.below(4) {
                    0 => (0, Ptr::Null),
                    1 => (ioctl_value(rng), Ptr::Buf),
                    2 => (0, Ptr::Kernel),
                    _ => (rng.below(1 << 20), Ptr::Low),
                };
                Op::Ioctl {
                    slot,
                    cmd,
                    arg,
                    ptr,
                }
            }
            82..=89 => {
                let (how, events, wait_ms) = poll_args(rng);
                Op::Poll {
                    slot,
                    how,
                    events,
                    wait_ms,
                }
            }
            90..=94 => Op::Dup { slot },
            95..=96 => Op::Close { slot },
            // No `patience`: a long wait in the worker stalls it (measured: more so with each
            // mutation of a kept program that waits); a forked child waits instead.
            _ => Op::Fork,
        }
    }

    /// The same op with one argument changed (the fd slot, a size, a pointer, one field of
    /// an ioctl number, the value behind it...); ops without arguments become a new op.
    fn tweak(&self, rng: &mut Rng, devices: &[String]) -> Op {
        let mut op = self.clone();
        let slot = rng.below(4) as usize;
        let near = |rng: &mut Rng, n: usize| match rng.below(4) {
            0 => n.saturating_sub(1),
            1 => n + 1,
            2 => n / 2,
            _ => size(rng),
        };
        match &mut op {
            Op::Open { path, flags } => match rng.below(2) {
                0 => *path = rng.pick(devices).clone(),
                _ => *flags = open_flags(rng),
            },
            Op::Read { slot: s, size, ptr } => match rng.below(3) {
                0 => *s = slot,
                1 => *size = near(rng, *size),
                _ => *ptr = Ptr::random(rng),
            },
            Op::Write {
                slot: s,
                size,
                ptr,
                fill,
            } => match rng.below(4) {
                0 => *s = slot,
                1 => *size = near(rng, *size),
                2 => *ptr = Ptr::random(rng),
                _ => *fill = rng.below(256) as u8,
            },
            Op::Ioctl {
                slot: s,
                cmd,
                arg,
                ptr,
            } => match rng.below(6) {
                0 => *s = slot,
                // nr, direction, size: one field of the number at a time.
                1 => *cmd = (*cmd & !0xff) | rng.below(16),
                2 => *cmd = (*cmd & !(3 << 30)) | (rng.below(4) << 30),
                3 => *cmd = (*cmd & !(0x3fff << 16)) | (ioctl_cmd(rng) & (0x3fff << 16)),
                4 => *arg = ioctl_value(rng),
                _ => {
                    *ptr = Ptr::random(rng);
                    *arg = ioctl_value(rng);
                }
            },
            Op::Poll {
                slot: s,
                how,
                events,
                wait_ms,
            } => {
                let (h, e, w) = poll_args(rng);
                match rng.below(4) {
                    0 => *s = slot,
                    1 => *how = h,
                    2 => *events = e,
                    _ => *wait_ms = w,
                }
            }
            Op::Dup { slot: s } | Op::Close { slot: s } => *s = slot,
            Op::Patience { ms } => *ms = *rng.pick(&PATIENCE_MS),
            Op::Fork => return Op::random(rng, devices),
        }
        op
    }

    fn text(&self) -> String {
        match self {
            Op::Open { path, flags } => format!("open {path} 0x{flags:x}"),
            Op::Read { slot, size, ptr } => format!("read {slot} {size} {}", ptr.name()),
            Op::Write {
                slot,
                size,
                ptr,
                fill,
            } => format!("write {slot} {size} {} {fill}", ptr.name()),
            // `ptr` low with an argument: the number itself.
            Op::Ioctl {
                slot,
                cmd,
                arg,
                ptr,
            } => format!("ioctl {slot} 0x{cmd:x} {} {arg}", ptr.name()),
            Op::Poll {
                slot,
                how,
                events,
                wait_ms,
            } => format!("{} {slot} 0x{events:x} {wait_ms}", how.name()),
            Op::Dup { slot } => format!("dup {slot}"),
            Op::Close { slot } => format!("close {slot}"),
            Op::Patience { ms } => format!("patience {ms}"),
            Op::Fork => "fork".to_string(),
        }
    }

    fn parse(line: &str) -> Option<Op> {
        let w: Vec<&str> = line.split_whitespace().collect();
        let num = |s: &str| -> Option<u64> {
            match s.strip_prefix("0x") {
                Some(h) => u64::from_str_radix(h, 16).ok(),
                None => s.parse().ok(),
            }
        };
        Some(match w.as_slice() {
            ["open", path, flags] => Op::Open {
                path: path.to_string(),
                flags: num(flags)? as i32,
            },
            ["read", slot, size, ptr] => Op::Read {
                slot: num(slot)? as usize,
                size: num(size)? as usize,
                ptr: Ptr::parse(ptr)?,
            },
            ["write", slot, size, ptr, fill] => Op::Write {
                slot: num(slot)? as usize,
                size: num(size)? as usize,
                ptr: Ptr::parse(ptr)?,
                fill: num(fill)? as u8,
            },
            ["ioctl", slot, cmd, ptr, arg] => Op::Ioctl {
                slot: num(slot)? as usize,
                cmd: num(cmd)?,
                ptr: Ptr::parse(ptr)?,
                arg: num(arg)?,
            },
            [how, slot, events, wait_ms] if PollHow::ALL.iter().any(|h| h.name() == *how) => {
                Op::Poll {
                    slot: num(slot)? as usize,
                    how: *PollHow::ALL.iter().find(|h| h.name() == *how)?,
                    events: num(events)? as u32,
                    wait_ms: wait_ms.parse::<i32>().ok()?.clamp(0, 60_000),
                }
            }
            ["dup", slot] => Op::Dup {
                slot: num(slot)? as usize,
            },
            ["close", slot] => Op::Close {
                slot: num(slot)? as usize,
            },
            ["fork"] => Op::Fork,
            ["patience", ms] => Op::Patience {
                ms: num(ms)?.clamp(1, 60_000) as u32,
            },
            _ => return None,
        })
    }
}

/// A sequence of ops run in one process from no open fds; its text is one op per line.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Program(Vec<Op>);

/// Ops per program at most.
const MAX_OPS: usize = 16;
/// Children of `fork` ops a worker has running at most (`fork` ops past this run in this
/// task only).
const MAX_FORKS: usize = 4;
/// A forked child's SIGALRM period: its blocking calls may wait this long (the worker goes
/// on meanwhile: programs do not wait for their children).
const CHILD_ALARM_MS: u32 = 5000;

/// A worker's children from `fork` ops, still running.
#[derive(Default)]
struct Kids(Vec<libc::pid_t>);

impl Kids {
    /// Forget the ones that ended; how many still run.
    fn reap(&mut self) -> usize {
        self.0.retain(|&pid| {
            let mut st = 0;
            // SAFETY: polling our own child.
            unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) == 0 }
        });
        self.0.len()
    }

    /// Wait for all of them: each blocking call of theirs ends within [`CHILD_ALARM_MS`]; a
    /// child still running after `grace` is killed.
    fn finish(&mut self, grace: Duration) {
        let end = Instant::now() + grace;
        while self.reap() > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
        }
        for &pid in &self.0 {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
        }
        self.0.clear();
    }
}

impl Program {
    fn random(rng: &mut Rng, devices: &[String]) -> Program {
        let n = 1 + rng.below(8) as usize;
        // Start with an open: most ops need an fd.
        let mut ops = vec![Op::random(rng, devices)];
        while !matches!(ops[0], Op::Open { .. }) {
            ops[0] = Op::random(rng, devices);
        }
        ops.extend((1..n).map(|_| Op::random(rng, devices)));
        Program(ops)
    }

    fn text(&self) -> String {
        self.0.iter().fold(String::new(), |mut s, op| {
            let _ = writeln!(s, "{}", op.text());
            s
        })
    }

    fn parse(text: &str) -> Option<Program> {
        let ops: Option<Vec<Op>> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(Op::parse)
            .collect();
        ops.filter(|o| !o.is_empty()).map(Program)
    }

    /// A name from the content (FNV-1a), so equal programs share a file.
    fn hash(&self) -> String {
        let h = self.text().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        format!("{h:016x}")
    }

    fn mutate(&self, rng: &mut Rng, corpus: &[Program], devices: &[String]) -> Program {
        let mut ops = self.0.clone();
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(ops.len() as u64) as usize;
            match rng.below(7) {
                0 if ops.len() < MAX_OPS => ops.insert(i, Op::random(rng, devices)),
                5 | 6 => ops[i] = ops[i].tweak(rng, devices),
                1 if ops.len() > 1 => {
                    ops.remove(i);
                }
                2 if ops.len() < MAX_OPS => {
                    let op = ops[i].clone();
                    ops.insert(i, op);
                }
                3 if !corpus.is_empty() => {
                    let other = &rng.pick(corpus).0;
                    let cut = rng.below(other.len() as u64) as usize;
                    ops.truncate(i + 1);
                    ops.extend(other[cut..].iter().cloned());
                    ops.truncate(MAX_OPS);
                }
                _ => ops[i] = Op::random(rng, devices),
            }
        }
        Program(ops)
    }

    /// Run it; every fd it opened is closed at the end. With `trace`, returns how many PCs
    /// it held after each op (where each op's part of the trace ends). `kids`: the worker's
    /// children still running from `fork` ops, this program's join them (not waited for).
    fn run(&self, buf: &mut [u8], trace: Option<&Kcov>, kids: &mut Kids) -> Vec<usize> {
        let mut ends = Vec::new();
        let mut fds: Vec<i32> = Vec::new();
        // Still the worker (`false` in a forked child).
        let mut parent = true;
        let mut patience = ALARM_MS;
        // In a forked child of a coverage run: its own KCOV, for the measurement only.
        let mut child_kcov: Option<Kcov> = None;
        for op in &self.0 {
            let fd = |slot: usize| (!fds.is_empty()).then(|| fds[slot % fds.len()]);
            // SAFETY (every libc call): the kernel validates fds and user pointers; bad ones
            // are the point. `buf` is at least as large as any size passed (capped below).
            unsafe {
                match op {
                    Op::Open { path, flags } => {
                        let Ok(p) = CString::new(path.as_str()) else {
                            continue;
                        };
                        let f = libc::open(p.as_ptr(), *flags);
                        if f >= 0 {
                            fds.push(f);
                        }
                    }
                    Op::Read { slot, size, ptr } => {
                        if let Some(fd) = fd(*slot) {
                            libc::read(fd, ptr.get(buf), (*size).min(buf.len()));
                        }
                    }
                    Op::Write {
                        slot,
                        size,
                        ptr,
                        fill,
                    } => {
                        if let Some(fd) = fd(*slot) {
                            let n = (*size).min(buf.len());
                            buf[..n].fill(*fill);
                            libc::write(fd, ptr.get(buf), n);
                        }
                    }
                    Op::Ioctl {
                        slot,
                        cmd,
                        arg,
                        ptr,
                    } => {
                        if let Some(fd) = fd(*slot) {
                            let a = match ptr {
                                Ptr::Low => *arg as usize,
                                Ptr::Buf => ioctl_buf(buf, *arg),
                                p => p.get(buf) as usize,
                            };
                            libc::ioctl(fd, *cmd as _, a);
                        }
                    }
                    Op::Poll {
                        slot,
                        how,
                        events,
                        wait_ms,
                    } => {
                        if let Some(fd) = fd(*slot) {
                            poll_fd(fd, *how, *events, *wait_ms);
                        }
                    }
                    Op::Dup { slot } => {
                        if let Some(fd) = fd(*slot) {
                            let d = libc::dup(fd);
                            if d >= 0 {
                                fds.push(d);
                            }
                        }
                    }
                    Op::Close { slot } => {
                        if !fds.is_empty() {
                            let i = slot % fds.len();
                            libc::close(fds.swap_remove(i));
                        }
                    }
                    Op::Patience { ms } => {
                        patience = *ms;
                        set_alarm(patience);
                    }
                    Op::Fork if parent && kids.reap() < MAX_FORKS => {
                        let pid = libc::fork();
                        if pid == 0 {
                            // Timers are not inherited; the child's blocking calls may wait
                            // long (a `locking` experiment to its end) but must still end.
                            set_alarm(CHILD_ALARM_MS);
                            parent = false;
                            child_kcov =
                                kcov::out_dir().and_then(|_| Kcov::open_enabled(1 << 16).ok());
                        } else if pid > 0 {
                            kids.0.push(pid);
                        }
                    }
                    Op::Fork => {}
                }
            }
            if let Some(k) = trace {
                ends.push(k.count());
            }
        }
        for f in fds {
            // SAFETY: closing our own fd.
            unsafe { libc::close(f) };
        }
        if !parent {
            if let Some(k) = child_kcov {
                write_coverage(&k.pcs().into_iter().collect());
            }
            // SAFETY: leaving the forked child without the parent's exit handlers.
            unsafe { libc::_exit(0) }
        }
        if patience != ALARM_MS {
            set_alarm(ALARM_MS);
        }
        ends
    }
}

/// The corpus directory's programs, by file name.
fn load_corpus(dir: &str) -> Vec<(String, Program)> {
    let mut v: Vec<(String, Program)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !name.ends_with(".prog") || name.starts_with("report-") {
                        return None;
                    }
                    let text = std::fs::read_to_string(e.path()).ok()?;
                    Some((name, Program::parse(&text)?))
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn save(dir: &str, name: &str, p: &Program) {
    let path = format!("{dir}/{name}");
    if !std::path::Path::new(&path).exists() {
        if let Err(e) = std::fs::write(&path, p.text()) {
            eprintln!("kfuzz: {path}: {e}");
        }
    }
}

/// The signal of a step from PC `prev` to PC `pc` in the KCOV trace of one op (`prev` 0: its
/// first PC), as syzkaller's: a program that takes a known branch to a known block in a new
/// order counts as new, a finer guide than the PCs alone.
fn edge(prev: u64, pc: u64) -> u64 {
    pc ^ prev.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

/// Mutations of each newly kept program that run next: the neighbourhood of a program that
/// reached new code (a size one off, the next ioctl number, another fd) is where more is.
const SMASH: usize = 8;

/// One coverage-guided worker (a process of its own, single-threaded: KCOV is per task).
/// Returns the ops run.
fn guided_worker(
    seed: u64,
    id: u64,
    devices: &[String],
    corpus_dir: &str,
    deadline: Instant,
) -> u64 {
    let kcov = match Kcov::open_enabled(kcov::THREAD_WORDS) {
        Ok(k) => k,
        Err(e) => {
            println!("kfuzz: worker {id}: --guided needs KCOV (the debug kernel): {e}");
            std::process::exit(2);
        }
    };
    let mut rng = Rng::new(seed, id);
    let mut buf = vec![0u8; 1 << 20];
    let mut seen: HashSet<u64> = HashSet::new();
    let mut signal: HashSet<u64> = HashSet::new();
    let mut known: HashSet<String> = HashSet::new();
    let mut corpus: Vec<Program> = Vec::new();
    let mut log = guest::Kmsg::new();
    let (mut ops, mut execs, mut kept, mut loaded) = (0u64, 0u64, 0u64, 0u64);
    // Start from the saved corpus: run each once for the coverage it has.
    let mut queue: Vec<Program> = Vec::new();
    // Mutations of the programs just kept, run before any other (syzkaller's "smash").
    let mut smash: Vec<Program> = Vec::new();
    let mut kids = Kids::default();
    let rescan = |known: &mut HashSet<String>, queue: &mut Vec<Program>| {
        for (name, p) in load_corpus(corpus_dir) {
            if known.insert(name) {
                queue.push(p);
            }
        }
    };
    rescan(&mut known, &mut queue);
    loaded += queue.len() as u64;
    while Instant::now() < deadline {
        let (prog, from_corpus) = match queue.pop() {
            Some(p) => (p, true),
            None if !smash.is_empty() => (smash.pop().unwrap(), false),
            None if corpus.is_empty() || rng.below(10) == 0 => {
                (Program::random(&mut rng, devices), false)
            }
            None => {
                let base = rng.pick(&corpus).clone();
                (base.mutate(&mut rng, &corpus, devices), false)
            }
        };
        kcov.reset();
        let ends = prog.run(&mut buf, Some(&kcov), &mut kids);
        let pcs = kcov.pcs();
        execs += 1;
        ops += prog.0.len() as u64;
        let mut new = 0;
        let mut start = 0;
        // Each op's trace on its own: a step from one syscall into the next is no edge.
        for end in ends.into_iter().chain([pcs.len()]) {
            let end = end.clamp(start, pcs.len());
            let mut prev = 0;
            for &pc in &pcs[start..end] {
                seen.insert(pc);
                new += usize::from(signal.insert(edge(prev, pc)));
                prev = pc;
            }
            start = end;
        }
        if new > 0 || from_corpus {
            if new > 0 && !from_corpus {
                kept += 1;
                let name = format!("{}.prog", prog.hash());
                save(corpus_dir, &name, &prog);
                known.insert(name);
                for _ in 0..SMASH {
                    smash.push(prog.mutate(&mut rng, &corpus, devices));
                }
            }
            corpus.push(prog.clone());
        }
        let reports: Vec<String> = log
            .lines()
            .into_iter()
            .filter(|l| guest::report_kind(l).is_some())
            .collect();
        if !reports.is_empty() {
            let name = format!("report-{}.prog", prog.hash());
            save(corpus_dir, &name, &prog);
            println!(
                "kfuzz: worker {id}: a kernel report after this program ({corpus_dir}/{name}; \
                 `kfuzz --replay` runs it):\n{}kfuzz: the report starts: {}",
                prog.text(),
                reports[0]
            );
        }
        if execs.is_multiple_of(256) {
            rescan(&mut known, &mut queue);
        }
    }
    kids.finish(Duration::from_secs(20));
    println!(
        "kfuzz: worker {id}: {execs} programs, {kept} kept (corpus {} with {loaded} loaded), \
         {} distinct PCs, {} edges",
        corpus.len(),
        seen.len(),
        signal.len()
    );
    write_coverage(&seen);
    ops
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seed, mut seconds, mut workers) = (1u64, 10u64, 4u64);
    let (mut guided, mut corpus, mut replay) = (false, "/tmp/kfuzz-corpus".to_string(), None);
    let mut devices = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed N"),
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds N")
            }
            "--workers" => {
                workers = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--workers N")
            }
            "--guided" => guided = true,
            "--corpus" => corpus = args.next().expect("--corpus DIR"),
            "--replay" => replay = Some(args.next().expect("--replay FILE")),
            d => devices.push(d.to_string()),
        }
    }
    if let Some(file) = replay {
        let text = std::fs::read_to_string(&file).expect("read the program");
        let prog = Program::parse(&text).expect("a kfuzz program");
        println!("kfuzz: replaying {file}:\n{}", prog.text());
        install_timer();
        let mut kids = Kids::default();
        prog.run(&mut vec![0u8; 1 << 20], None, &mut kids);
        kids.finish(Duration::from_secs(20));
        println!("kfuzz: done");
        return;
    }
    if devices.is_empty() {
        eprintln!(
            "usage: kfuzz --seed S --seconds N [--workers W] [--guided [--corpus DIR]] DEVICE...\n       kfuzz --replay FILE"
        );
        std::process::exit(2);
    }
    println!(
        "kfuzz: seed {seed}, {seconds} s, {workers} workers, {}, devices {devices:?}",
        if guided {
            format!("coverage-guided (corpus {corpus})")
        } else {
            "random".to_string()
        }
    );
    if guided {
        std::fs::create_dir_all(&corpus).expect("the corpus directory");
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut pids = Vec::new();
    for id in 0..workers {
        // SAFETY: fork in a single-threaded program.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            install_timer();
            let ops = if guided {
                guided_worker(seed, id, &devices, &corpus, deadline)
            } else {
                worker(seed, id, &devices, deadline)
            };
            println!("kfuzz: worker {id} ran {ops} ops");
            // SAFETY: leaving the child without running the parent's atexit handlers.
            unsafe { libc::_exit(0) };
        }
        pids.push(pid);
    }
    let mut bad = 0;
    for pid in pids {
        let mut st = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
        if libc::WIFSIGNALED(st) {
            println!(
                "kfuzz: worker pid {pid} killed by signal {}",
                libc::WTERMSIG(st)
            );
            bad += 1;
        } else if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) != 0 {
            println!("kfuzz: worker pid {pid} exited {}", libc::WEXITSTATUS(st));
            bad += 1;
        }
    }
    println!("kfuzz: done, seed {seed}, {bad} workers failed");
    std::process::exit(if bad == 0 { 0 } else { 1 });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_round_trip_through_their_text() {
        let devices = vec!["/dev/rfifo0".to_string(), "/dev/rust_hello".to_string()];
        let mut rng = Rng::new(7, 0);
        let mut corpus = Vec::new();
        for _ in 0..200 {
            let p = Program::random(&mut rng, &devices);
            assert!(matches!(p.0[0], Op::Open { .. }));
            assert_eq!(Program::parse(&p.text()), Some(p.clone()), "{}", p.text());
            let m = p.mutate(&mut rng, &corpus, &devices);
            assert!(!m.0.is_empty() && m.0.len() <= MAX_OPS);
            assert_eq!(Program::parse(&m.text()), Some(m.clone()));
            for op in &m.0 {
                let t = op.tweak(&mut rng, &devices);
                assert_eq!(Op::parse(&t.text()), Some(t.clone()), "{}", t.text());
            }
            corpus.push(p);
        }
        assert_eq!(Program::parse("# nothing\n"), None);
        assert_eq!(Program::parse("open /dev/x 0x2\nfrobnicate 1\n"), None);
        assert_ne!(corpus[0].hash(), corpus[1].hash());
        let polls = corpus
            .iter()
            .flat_map(|p| &p.0)
            .filter(|op| matches!(op, Op::Poll { .. }))
            .count();
        assert!(polls > 0, "no poll op in 200 programs");
        assert_eq!(
            Op::parse("epollet 1 0x1 10"),
            Some(Op::Poll {
                slot: 1,
                how: PollHow::EpollEt,
                events: 1,
                wait_ms: 10
            })
        );
    }
}
