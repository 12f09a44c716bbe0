//! `fifobench`: the in-guest benchmark behind `cargo xtask bench`.
//!
//! For each write size (64 B, 4 KiB, 64 KiB, 1 MiB) one writer process and one reader
//! process move a fixed amount of data through `/dev/rfifo0`, `/dev/cfifo0` and a named FIFO
//! (`mkfifo`, the kernel's pipe code), in interleaved rounds (ABC ABC ...). Then a 1-byte
//! ping-pong between two processes over two devices of each kind, and insmod+rmmod time of
//! each module. Prints one JSON object on stdout (a line starting with `BENCH-JSON `).
//!
//! Usage: `fifobench ROUNDS [SCALE [PLACEMENTS]]`: every transfer moves 1/SCALE of the
//! default amount; PLACEMENTS is a comma-separated list of:
//! - `split`: writer on CPU 0, reader on CPU 1: what real pipes see between two busy
//!   processes;
//! - `shared`: both on CPU 0 under the normal scheduler: how often a wakeup preempts the
//!   waker decides how many transfers each switch carries, and that pattern is chaotic
//!   (two runs of the same code differ by several percent even in guest time);
//! - `batched`: both on CPU 0 as `SCHED_FIFO` tasks of one priority: neither preempts the
//!   other, each runs until it blocks (the writer fills the device, the reader drains it), so
//!   the case measures the code's cost per call and per byte with one switch per fill.
//!
//! The default is `split,shared` (`shared` with one CPU); `cargo xtask bench` asks for
//! `split,batched` in its deterministic mode.

use guest::{kmod, sys};
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Instant;

const SIZES: &[usize] = &[64, 4096, 65536, 1 << 20];

fn total_for(size: usize) -> usize {
    match size {
        64 => 4 << 20,
        4096 => 64 << 20,
        _ => 128 << 20,
    }
}

fn open(path: &str, flags: i32) -> OwnedFd {
    sys::open(path, flags).unwrap_or_else(|e| panic!("open {path}: {e:?}"))
}

fn write_all(fd: &OwnedFd, buf: &[u8]) {
    sys::write_all(fd.as_raw_fd(), buf).unwrap_or_else(|e| panic!("write: {e:?}"));
}

fn read_some(fd: &OwnedFd, buf: &mut [u8]) -> usize {
    sys::read_into(fd.as_raw_fd(), buf).unwrap_or_else(|e| panic!("read: {e:?}"))
}

/// Where the two processes of a case run.
#[derive(Clone, Copy)]
enum Placement {
    /// First process on CPU 0, second on CPU 1.
    Split,
    /// Both on CPU 0.
    Shared,
    /// Both on CPU 0, `SCHED_FIFO` of one priority: each runs until it blocks.
    Batched,
}

impl Placement {
    fn name(self) -> &'static str {
        match self {
            Placement::Split => "split",
            Placement::Shared => "shared",
            Placement::Batched => "batched",
        }
    }

    fn parse(s: &str) -> Placement {
        match s {
            "split" => Placement::Split,
            "shared" => Placement::Shared,
            "batched" => Placement::Batched,
            _ => panic!("unknown placement {s:?} (split, shared, batched)"),
        }
    }

    /// CPUs of (child, parent).
    fn cpus(self) -> (usize, usize) {
        match self {
            Placement::Split => (0, 1),
            Placement::Shared | Placement::Batched => (0, 0),
        }
    }

    /// Pin the calling process to `cpu` and give it this placement's scheduling policy.
    fn enter(self, cpu: usize) {
        pin(cpu);
        if let Placement::Batched = self {
            set_policy(libc::SCHED_FIFO, 1);
        }
    }

    /// Back to every CPU and the normal policy.
    fn leave(self) {
        set_policy(libc::SCHED_OTHER, 0);
        unpin();
    }
}

/// The calling process's scheduling policy.
fn set_policy(policy: i32, prio: i32) {
    let p = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: a valid sched_param for this process (pid 0).
    let r = unsafe { libc::sched_setscheduler(0, policy, &p) };
    assert_eq!(
        r,
        0,
        "sched_setscheduler({policy}, {prio}): {}",
        std::io::Error::last_os_error()
    );
}

/// The kernel's RT throttling: real-time tasks get this much of each second.
const RT_RUNTIME: &str = "/proc/sys/kernel/sched_rt_runtime_us";

/// Real-time tasks may use the whole CPU (no 50 ms pause per second, which would land in a
/// `batched` case's time). Returns the old setting.
fn rt_unthrottled() -> Option<String> {
    let old = std::fs::read_to_string(RT_RUNTIME).ok()?;
    std::fs::write(RT_RUNTIME, "-1").ok()?;
    Some(old)
}

/// Pin the calling process to one CPU (panics if the CPU is not online: no silent fallback).
fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` < CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: valid set of the right size for this process (pid 0).
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(
        r,
        0,
        "pin to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
}

/// Allow the calling process on every CPU again.
fn unpin() {
    // SAFETY: as in `pin`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..online_cpus() {
        // SAFETY: `cpu` < CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: as in `pin`.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
}

fn online_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) as usize }
}

/// MB/s for `size`-byte writes of `total` bytes through `path`, writer in a child process.
fn throughput(path: &str, size: usize, total: usize, place: Placement) -> f64 {
    let (child_cpu, parent_cpu) = place.cpus();
    // SAFETY: fork in a single-threaded program.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        place.enter(child_cpu);
        let fd = open(path, libc::O_WRONLY);
        let buf = vec![0x5au8; size];
        for _ in 0..total / size {
            write_all(&fd, &buf);
        }
        // SAFETY: leaving the child.
        unsafe { libc::_exit(0) };
    }
    place.enter(parent_cpu);
    let fd = open(path, libc::O_RDONLY);
    let mut buf = vec![0u8; size];
    let start = Instant::now();
    let mut got = 0;
    loop {
        let n = read_some(&fd, &mut buf);
        if n == 0 {
            break;
        }
        got += n;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(fd);
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    place.leave();
    assert_eq!(got, total, "{path}: bytes moved");
    total as f64 / secs / 1e6
}

/// Round-trip time in microseconds for 1-byte ping-pong over `a` and `b`.
fn pingpong(a: &str, b: &str, rounds: usize, place: Placement) -> f64 {
    let (child_cpu, parent_cpu) = place.cpus();
    // SAFETY: fork in a single-threaded program.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        place.enter(child_cpu);
        let rd = open(a, libc::O_RDONLY);
        let wr = open(b, libc::O_WRONLY);
        let mut c = [0u8; 1];
        for _ in 0..rounds {
            assert_eq!(read_some(&rd, &mut c), 1);
            write_all(&wr, &c);
        }
        // SAFETY: leaving the child.
        unsafe { libc::_exit(0) };
    }
    place.enter(parent_cpu);
    let wr = open(a, libc::O_WRONLY);
    let rd = open(b, libc::O_RDONLY);
    let mut c = [1u8; 1];
    let start = Instant::now();
    for _ in 0..rounds {
        write_all(&wr, &c);
        assert_eq!(read_some(&rd, &mut c), 1);
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    drop((wr, rd));
    // SAFETY: reaping our child.
    unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
    place.leave();
    us
}

/// The test build of rfifo, with its KUnit suite (`cargo xtask bench` installs it here; the
/// modules under `/lib/modules` are the builds as shipped).
const RFIFO_KUNIT_KO: &str = "/bin/rfifo-kunit.ko";

/// insmod+rmmod cycles per round: with 20, rounds differed by up to 5% (grace periods and
/// wakeups land differently); 100 average that out.
const LOAD_CYCLES: usize = 100;

/// Average insmod+rmmod time of `module` (from `path`) in milliseconds over `n` cycles.
fn load_cycle_ms(module: &str, path: &str, n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        let f = std::fs::File::open(path).unwrap();
        kmod::finit(&f, c"").unwrap_or_else(|e| panic!("insmod {module}: {e:?}"));
        kmod::unload(module).unwrap_or_else(|e| panic!("rmmod {module}: {e:?}"));
    }
    start.elapsed().as_secs_f64() * 1e3 / n as f64
}

fn median_spread(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn json_stats(v: &mut [f64]) -> String {
    let (m, lo, hi) = median_spread(v);
    format!(
        "{{\"median\":{m:.3},\"min\":{lo:.3},\"max\":{hi:.3},\"runs\":{:?}}}",
        v
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let scale: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let placements: Vec<Placement> = match args.next() {
        Some(list) => list.split(',').map(Placement::parse).collect(),
        None if online_cpus() >= 2 => vec![Placement::Split, Placement::Shared],
        None => vec![Placement::Shared],
    };
    let rt_old = placements
        .iter()
        .any(|p| matches!(p, Placement::Batched))
        .then(rt_unthrottled)
        .flatten();
    for p in ["/tmp/bench.fifo", "/tmp/bench2.fifo"] {
        let _ = std::fs::remove_file(p);
        let c = std::ffi::CString::new(p).unwrap();
        // SAFETY: valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
    let kinds: [(&str, &str, &str); 3] = [
        ("rfifo", "/dev/rfifo0", "/dev/rfifo1"),
        ("cfifo", "/dev/cfifo0", "/dev/cfifo1"),
        ("fifo", "/tmp/bench.fifo", "/tmp/bench2.fifo"),
    ];
    let mut out = String::from("{\"throughput_mbs\":{");
    for (pi, &place) in placements.iter().enumerate() {
        let sep = if pi > 0 { "," } else { "" };
        out.push_str(&format!("{sep}\"{}\":{{", place.name()));
        for (si, &size) in SIZES.iter().enumerate() {
            let mut runs: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
            for _ in 0..rounds {
                for (ki, (_, path, _)) in kinds.iter().enumerate() {
                    runs[ki].push(throughput(path, size, total_for(size) / scale, place));
                }
            }
            out.push_str(&format!("{}\"{size}\":{{", if si > 0 { "," } else { "" }));
            for (ki, (name, _, _)) in kinds.iter().enumerate() {
                let sep = if ki > 0 { "," } else { "" };
                out.push_str(&format!("{sep}\"{name}\":{}", json_stats(&mut runs[ki])));
            }
            out.push('}');
            eprintln!("fifobench: {} size {size} done", place.name());
        }
        out.push('}');
    }
    out.push_str("},\"pingpong_us\":{");
    for (pi, &place) in placements.iter().enumerate() {
        let sep = if pi > 0 { "," } else { "" };
        out.push_str(&format!("{sep}\"{}\":{{", place.name()));
        let mut runs: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
        for _ in 0..rounds {
            for (ki, (_, a, b)) in kinds.iter().enumerate() {
                runs[ki].push(pingpong(a, b, 5000 / scale, place));
            }
        }
        for (ki, (name, _, _)) in kinds.iter().enumerate() {
            let sep = if ki > 0 { "," } else { "" };
            out.push_str(&format!("{sep}\"{name}\":{}", json_stats(&mut runs[ki])));
        }
        out.push('}');
    }
    out.push_str("},\"load_unload_ms\":{");
    // The modules are loaded by the job; unload them to time load cycles.
    let mods = ["rfifo", "cfifo", "minimal"];
    for m in mods {
        let _ = kmod::unload(m);
    }
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    // (JSON key, module name, file)
    let mut cycles: Vec<(&str, &str, String)> = mods
        .iter()
        .map(|m| (*m, *m, format!("/lib/modules/{}/extra/{m}.ko", rel.trim())))
        .collect();
    if std::path::Path::new(RFIFO_KUNIT_KO).exists() {
        cycles.push(("rfifo_kunit", "rfifo", RFIFO_KUNIT_KO.to_string()));
    }
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); cycles.len()];
    // On one CPU: a cycle that moves between CPUs costs more, and differently each time.
    pin(0);
    for _ in 0..rounds {
        for (i, (_, m, path)) in cycles.iter().enumerate() {
            runs[i].push(load_cycle_ms(m, path, LOAD_CYCLES));
        }
    }
    unpin();
    if let Some(old) = rt_old {
        let _ = std::fs::write(RT_RUNTIME, old.trim());
    }
    for (i, (key, _, _)) in cycles.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        out.push_str(&format!("{sep}\"{key}\":{}", json_stats(&mut runs[i])));
    }
    out.push_str(&format!(
        "}},\"rounds\":{rounds},\"scale\":{scale},\"online_cpus\":{}}}",
        online_cpus()
    ));
    println!("BENCH-JSON {out}");
}
