//! `kfuzz`: a seeded random syscall driver over device nodes, run inside the guest.
//!
//! `kfuzz --seed S --seconds N [--workers W] DEVICE...` forks W workers; worker `i` draws its
//! operations from a PRNG seeded with `S` and `i`: open with random flags, read/write with
//! random sizes and pointers (valid, NULL, a kernel address, unmapped), random ioctl numbers
//! (mostly in the devices' magics) and arguments, dup, fork, close. A 20 ms interval timer
//! interrupts blocking calls (SIGALRM without SA_RESTART), so nothing waits for long and
//! the signal paths run too. The op sequence is a function of the seed; the scheduling is
//! not. It stops by itself, prints the seed and how many ops each worker ran, and exits 0
//! unless a worker died from a signal (a crash in the kernel shows up in the kernel log,
//! which the host scans).

use std::ffi::CString;
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

fn install_timer() {
    // SAFETY: a zeroed sigaction with a valid handler and no SA_RESTART is a valid argument.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let t = libc::itimerval {
            it_interval: libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            },
            it_value: libc::timeval {
                tv_sec: 0,
                tv_usec: 20_000,
            },
        };
        libc::setitimer(libc::ITIMER_REAL, &t, std::ptr::null_mut());
    }
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

/// One worker: `deadline` bounds it in time. Returns the number of ops run.
fn worker(seed: u64, id: u64, devices: &[String], deadline: Instant) -> u64 {
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
        let fd = if fds.is_empty() { -1 } else { *rng.pick(&fds) };
        // SAFETY (for every libc call below): the kernel validates fds and user pointers;
        // bad ones are the point. Buffers passed as "valid" are `buf`, at least as large as
        // the size passed, since sizes are capped at buf.len().
        unsafe {
            match rng.below(100) {
                0..=14 => {
                    let flags = *rng.pick(&[libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR])
                        | if rng.below(2) == 0 {
                            libc::O_NONBLOCK
                        } else {
                            0
                        };
                    let p = rng.pick(&paths);
                    let f = libc::open(p.as_ptr(), flags);
                    if f >= 0 {
                        fds.push(f);
                    }
                }
                15..=39 if fd >= 0 => {
                    let n = size(&mut rng).min(buf.len());
                    let p = pointer(&mut rng, &mut buf);
                    libc::read(fd, p, n);
                }
                40..=64 if fd >= 0 => {
                    let n = size(&mut rng).min(buf.len());
                    let p = pointer(&mut rng, &mut buf);
                    libc::write(fd, p, n);
                }
                65..=79 if fd >= 0 => {
                    // Mostly plausible numbers: the devices' magics, directions and sizes.
                    let any = rng.below(256);
                    let magic = *rng.pick(&[0xB9u64, 0xB9, b'r' as u64, any]);
                    let dir = rng.below(4);
                    let anysz = rng.below(1 << 14);
                    let sz = *rng.pick(&[0u64, 4, 8, 40, 64, anysz]);
                    let nr = rng.below(16);
                    let cmd = (dir << 30) | (sz << 16) | (magic << 8) | nr;
                    let arg = match rng.below(4) {
                        0 => 0usize,
                        1 => buf.as_mut_ptr() as usize,
                        2 => 0xffff_8880_0000_0000usize,
                        _ => rng.below(1 << 20) as usize,
                    };
                    libc::ioctl(fd, cmd as _, arg);
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
    ops
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seed, mut seconds, mut workers) = (1u64, 10u64, 4u64);
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
            d => devices.push(d.to_string()),
        }
    }
    if devices.is_empty() {
        eprintln!("usage: kfuzz --seed S --seconds N [--workers W] DEVICE...");
        std::process::exit(2);
    }
    println!("kfuzz: seed {seed}, {seconds} s, {workers} workers, devices {devices:?}");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut pids = Vec::new();
    for id in 0..workers {
        // SAFETY: fork in a single-threaded program.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            install_timer();
            let ops = worker(seed, id, &devices, deadline);
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
        }
    }
    println!("kfuzz: done, seed {seed}, {bad} workers died");
    std::process::exit(if bad == 0 { 0 } else { 1 });
}
