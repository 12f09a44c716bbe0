//! Stress with integrity checks: 8 writers x 8 readers through one FIFO device.
//!
//! Every record is `RECORD` bytes (<= PIPE_BUF, so each write is atomic) and carries the
//! writer id, a per-writer sequence number and a checksum of its payload. Readers read
//! exactly one record size at a time, so every read returns one whole record. At the end:
//! no record lost, duplicated, torn (bad checksum) or reordered (per writer, in each
//! reader's stream). Runs against the kernel's own FIFO (reference), `rfifo` and `cfifo`.
//! Sizes: 256 MiB per device on the default kernel, 16 MiB under the debug kernel.
//!
//! Proof that the run was parallel, not just correct: every worker notes the CPUs it ran on
//! (`sched_getcpu()` after each transfer) and its voluntary context switches
//! (`getrusage(RUSAGE_THREAD)`: a transfer that blocked slept and was woken). The many-worker
//! cases assert that readers and writers each ran on at least two CPUs (when the guest has
//! them: `smp::all_cpus_online` checks that it does) and that readers and writers blocked and
//! were woken. The pinned cases put one writer and one reader on different CPUs (`split`) or
//! on the same CPU (`shared`) and assert the placement held and that reads blocked and were
//! woken.

use guest::kmod::Loaded;
use guest::{is_debug_kernel, Errno};
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const WRITERS: usize = 8;
const READERS: usize = 8;
const RECORD: usize = 4096;

fn total_bytes() -> usize {
    if is_debug_kernel() {
        16 << 20
    } else {
        256 << 20
    }
}

/// FNV-1a over the payload.
fn checksum(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn make_record(writer: u32, seq: u32, buf: &mut [u8; RECORD]) {
    buf[0..4].copy_from_slice(&writer.to_le_bytes());
    buf[4..8].copy_from_slice(&seq.to_le_bytes());
    // Payload depends on writer and seq so a record spliced from two others fails.
    let mut x = (writer as u64) << 32 | seq as u64 | 1;
    for chunk in buf[12..].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    let c = checksum(&buf[12..]);
    buf[8..12].copy_from_slice(&c.to_le_bytes());
}

struct Seen {
    /// (writer, seq) per reader, in the order read.
    records: Vec<(u32, u32)>,
    torn: usize,
    evidence: Evidence,
}

/// Where and how a worker ran.
#[derive(Default, Clone)]
struct Evidence {
    /// Bit i set: the worker was seen on CPU i.
    cpus: u64,
    /// Voluntary context switches of the worker thread during the run.
    slept: i64,
}

impl Evidence {
    fn start() -> (Evidence, i64) {
        (Evidence::default(), voluntary_switches())
    }

    fn note_cpu(&mut self) {
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        assert!(cpu >= 0, "sched_getcpu: {:?}", Errno::last());
        self.cpus |= 1 << cpu;
    }

    fn finish(mut self, start: i64) -> Evidence {
        self.slept = voluntary_switches() - start;
        self
    }
}

fn voluntary_switches() -> i64 {
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer; RUSAGE_THREAD covers the calling thread.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) }, 0);
    ru.ru_nvcsw
}

fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) as u32 }
}

/// Pin the calling thread to `cpu`.
fn pin_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: valid set; pid 0 = the calling thread.
    let r = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(r, 0, "pin to CPU {cpu}: {:?}", Errno::last());
}

fn cpu_list(mask: u64) -> Vec<u32> {
    (0..64).filter(|i| mask & (1 << i) != 0).collect()
}

/// The shape of one run.
#[derive(Clone, Copy)]
struct Shape {
    writers: usize,
    readers: usize,
    total: usize,
    signals: bool,
    /// Pin all writers to the first CPU and all readers to the second.
    pin: Option<(usize, usize)>,
}

impl Shape {
    fn many(total: usize, signals: bool) -> Shape {
        Shape {
            writers: WRITERS,
            readers: READERS,
            total,
            signals,
            pin: None,
        }
    }
}

/// What a run proved beyond the data: CPUs and sleeps of readers and writers.
struct Parallel {
    reader_cpus: u64,
    writer_cpus: u64,
    reader_sleeps: i64,
    writer_sleeps: i64,
}

extern "C" fn on_sigusr1(_: libc::c_int) {}

/// Thread ids of the workers, for the signaller.
static TIDS: std::sync::Mutex<Vec<libc::pid_t>> = std::sync::Mutex::new(Vec::new());

fn register_tid() {
    // SAFETY: gettid has no preconditions.
    TIDS.lock().unwrap().push(unsafe { libc::gettid() });
}

/// Run the workload on `path`; returns the bytes verified. With `signals`, a thread sends
/// SIGUSR1 (handler installed without SA_RESTART) to random workers every ~200 us, so
/// blocked reads and writes return EINTR and are retried: still nothing may be lost.
fn run(path: &str) -> usize {
    run_with(path, total_bytes(), false)
}

/// The many-worker run with the parallel-evidence assertions.
fn run_with(path: &str, total: usize, signals: bool) -> usize {
    let (bytes, p) = run_shape(path, Shape::many(total, signals));
    let want = online_cpus().min(2);
    assert!(
        p.reader_cpus.count_ones() >= want && p.writer_cpus.count_ones() >= want,
        "{path}: readers ran on CPUs {:?}, writers on {:?}; expected at least {want} CPUs each",
        cpu_list(p.reader_cpus),
        cpu_list(p.writer_cpus)
    );
    assert!(
        p.reader_sleeps > 0 && p.writer_sleeps > 0,
        "{path}: no blocking seen (reader sleeps {}, writer sleeps {})",
        p.reader_sleeps,
        p.writer_sleeps
    );
    bytes
}

fn run_shape(path: &str, shape: Shape) -> (usize, Parallel) {
    let Shape {
        writers: nw,
        readers: nr,
        total,
        signals,
        pin,
    } = shape;
    let per_writer = total / RECORD / nw;
    TIDS.lock().unwrap().clear();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut interrupts = 0u64;
    let signaller = signals.then(|| {
        // SAFETY: installing a no-op handler without SA_RESTART.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigusr1 as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        }
        let done = done.clone();
        std::thread::spawn(move || {
            let mut sent = 0u64;
            let mut x: u64 = 0x2545_f491;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let tids = TIDS.lock().unwrap().clone();
                if !tids.is_empty() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let tid = tids[(x % tids.len() as u64) as usize];
                    // SAFETY: signalling a thread of this process.
                    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGUSR1) };
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            sent
        })
    });
    let start = Instant::now();
    // Readers open first (a read-open blocks until a writer comes; open them in threads).
    let barrier = Arc::new(Barrier::new(nw + nr));
    let mut readers = Vec::new();
    for _ in 0..nr {
        let p = path.to_string();
        let b = barrier.clone();
        readers.push(std::thread::spawn(move || {
            if let Some((_, cpu)) = pin {
                pin_thread(cpu);
            }
            let mut f = OpenOptions::new()
                .read(true)
                .open(&p)
                .expect("open for read");
            register_tid();
            b.wait();
            let (evidence, switches) = Evidence::start();
            let mut seen = Seen {
                records: Vec::new(),
                torn: 0,
                evidence,
            };
            let mut buf = [0u8; RECORD];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        seen.evidence.note_cpu();
                        assert_eq!(n, RECORD, "a read returned a partial record ({n} bytes)");
                        let w = u32::from_le_bytes(buf[0..4].try_into().unwrap());
                        let s = u32::from_le_bytes(buf[4..8].try_into().unwrap());
                        let c = u32::from_le_bytes(buf[8..12].try_into().unwrap());
                        if c != checksum(&buf[12..]) {
                            seen.torn += 1;
                        }
                        seen.records.push((w, s));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => panic!("read: {e}"),
                }
            }
            seen.evidence = seen.evidence.finish(switches);
            seen
        }));
    }
    let mut writers = Vec::new();
    for w in 0..nw as u32 {
        let p = path.to_string();
        let b = barrier.clone();
        writers.push(std::thread::spawn(move || {
            if let Some((cpu, _)) = pin {
                pin_thread(cpu);
            }
            let mut f = OpenOptions::new()
                .write(true)
                .open(&p)
                .expect("open for write");
            register_tid();
            b.wait();
            let (mut ev, switches) = Evidence::start();
            let mut buf = [0u8; RECORD];
            for s in 0..per_writer as u32 {
                make_record(w, s, &mut buf);
                loop {
                    match f.write(&buf) {
                        Ok(n) => {
                            ev.note_cpu();
                            assert_eq!(n, RECORD, "a PIPE_BUF write is all or nothing");
                            break;
                        }
                        // Interrupted before anything was written: write it again.
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => panic!("write: {e}"),
                    }
                }
            }
            ev.finish(switches)
        }));
    }
    let wev: Vec<Evidence> = writers
        .into_iter()
        .map(|w| w.join().expect("writer thread"))
        .collect();
    let seen: Vec<Seen> = readers
        .into_iter()
        .map(|r| r.join().expect("reader thread"))
        .collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(s) = signaller {
        interrupts = s.join().expect("signaller");
        assert!(interrupts > 0, "no signal was sent");
    }
    let torn: usize = seen.iter().map(|s| s.torn).sum();
    assert_eq!(torn, 0, "{path}: torn records");
    let mut all = HashSet::new();
    let mut dups = 0;
    for s in &seen {
        let mut last = vec![None::<u32>; nw];
        for &(w, q) in &s.records {
            assert!((w as usize) < nw, "{path}: bad writer id {w}");
            if let Some(prev) = last[w as usize] {
                assert!(q > prev, "{path}: writer {w} reordered: {q} after {prev}");
            }
            last[w as usize] = Some(q);
            if !all.insert((w, q)) {
                dups += 1;
            }
        }
    }
    assert_eq!(dups, 0, "{path}: duplicated records");
    let expected = nw * per_writer;
    assert_eq!(all.len(), expected, "{path}: lost records");
    let bytes = expected * RECORD;
    let secs = start.elapsed().as_secs_f64();
    if signals {
        println!("{path}: {interrupts} SIGUSR1 sent to blocked/running workers");
    }
    println!(
        "{path}: {expected} records, {} MiB verified in {secs:.1} s ({:.0} MB/s), {} readers got {:?}",
        bytes >> 20,
        bytes as f64 / secs / 1e6,
        nr,
        seen.iter().map(|s| s.records.len()).collect::<Vec<_>>()
    );
    let p = Parallel {
        reader_cpus: seen.iter().fold(0, |m, s| m | s.evidence.cpus),
        writer_cpus: wev.iter().fold(0, |m, e| m | e.cpus),
        reader_sleeps: seen.iter().map(|s| s.evidence.slept).sum(),
        writer_sleeps: wev.iter().map(|e| e.slept).sum(),
    };
    println!(
        "{path}: readers on CPUs {:?} ({} sleeps), writers on CPUs {:?} ({} sleeps)",
        cpu_list(p.reader_cpus),
        p.reader_sleeps,
        cpu_list(p.writer_cpus),
        p.writer_sleeps
    );
    (bytes, p)
}

fn with_timeout<T: Send + 'static, F: FnOnce() -> T + Send + 'static>(f: F) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(Ok(b)) => b,
        Ok(Err(p)) => std::panic::resume_unwind(p),
        Err(_) => panic!("stress run did not finish in 300 s (hang?)"),
    }
}

#[test]
fn stress_kernel_fifo_reference() {
    let path = "/tmp/stress.fifo";
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "{:?}",
        Errno::last()
    );
    with_timeout(move || run(path));
}

#[test]
fn stress_rfifo() {
    let _m = Loaded::new("rfifo", "").expect("load rfifo");
    with_timeout(|| run("/dev/rfifo0"));
}

#[test]
fn stress_cfifo() {
    let _m = Loaded::new("cfifo", "").expect("load cfifo");
    with_timeout(|| run("/dev/cfifo0"));
}

/// Signals while blocked: 32 MiB (4 MiB on debug) with SIGUSR1 storms, zero loss.
fn signal_total() -> usize {
    if is_debug_kernel() {
        4 << 20
    } else {
        32 << 20
    }
}

#[test]
fn stress_signals_kernel_fifo_reference() {
    let path = "/tmp/stress-sig.fifo";
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    with_timeout(move || run_with(path, signal_total(), true));
}

#[test]
fn stress_signals_rfifo() {
    let _m = Loaded::new("rfifo", "").expect("load rfifo");
    with_timeout(|| run_with("/dev/rfifo0", signal_total(), true));
}

#[test]
fn stress_signals_cfifo() {
    let _m = Loaded::new("cfifo", "").expect("load cfifo");
    with_timeout(|| run_with("/dev/cfifo0", signal_total(), true));
}

/// Pinned: one writer and one reader, on different CPUs (`split`) or the same CPU
/// (`shared`). 32 MiB (4 MiB on debug); the placement must have held for every transfer and
/// reads must have blocked and been woken.
fn pinned(path: &str, split: bool) {
    let cpus = if split { (0, 1) } else { (0, 0) };
    if split {
        assert!(
            online_cpus() >= 2,
            "the split case needs 2 CPUs; the guest has {}",
            online_cpus()
        );
    }
    let shape = Shape {
        writers: 1,
        readers: 1,
        total: if is_debug_kernel() { 4 << 20 } else { 32 << 20 },
        signals: false,
        pin: Some(cpus),
    };
    let p = path.to_string();
    let (_, par) = with_timeout(move || run_shape(&p, shape));
    assert_eq!(
        cpu_list(par.writer_cpus),
        vec![cpus.0 as u32],
        "{path}: writer CPUs"
    );
    assert_eq!(
        cpu_list(par.reader_cpus),
        vec![cpus.1 as u32],
        "{path}: reader CPUs"
    );
    // Reads blocked on an empty FIFO and were woken by writes. (Writers block only when the
    // reader falls behind a full buffer: on split CPUs a device writer may never have to.)
    assert!(
        par.reader_sleeps > 0,
        "{path}: no blocking read seen (reader sleeps {}, writer sleeps {})",
        par.reader_sleeps,
        par.writer_sleeps
    );
}

fn fresh_fifo(path: &str) -> &str {
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path).unwrap();
    // SAFETY: valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    path
}

#[test]
fn pinned_split_kernel_fifo_reference() {
    pinned(fresh_fifo("/tmp/pinned-split.fifo"), true);
}

#[test]
fn pinned_split_rfifo() {
    let _m = Loaded::new("rfifo", "").expect("load rfifo");
    pinned("/dev/rfifo0", true);
}

#[test]
fn pinned_split_cfifo() {
    let _m = Loaded::new("cfifo", "").expect("load cfifo");
    pinned("/dev/cfifo0", true);
}

#[test]
fn pinned_shared_kernel_fifo_reference() {
    pinned(fresh_fifo("/tmp/pinned-shared.fifo"), false);
}

#[test]
fn pinned_shared_rfifo() {
    let _m = Loaded::new("rfifo", "").expect("load rfifo");
    pinned("/dev/rfifo0", false);
}

#[test]
fn pinned_shared_cfifo() {
    let _m = Loaded::new("cfifo", "").expect("load cfifo");
    pinned("/dev/cfifo0", false);
}
