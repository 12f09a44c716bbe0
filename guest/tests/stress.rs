//! Stress with integrity checks: 8 writers x 8 readers through one FIFO device.
//!
//! Every record is `RECORD` bytes (<= PIPE_BUF, so each write is atomic) and carries the
//! writer id, a per-writer sequence number and a checksum of its payload. Readers read
//! exactly one record size at a time, so every read returns one whole record. At the end:
//! no record lost, duplicated, torn (bad checksum) or reordered (per writer, in each
//! reader's stream). Runs against the kernel's own FIFO (reference), `rfifo` and `cfifo`.
//! Sizes: 256 MiB per device on the default kernel, 16 MiB under the debug kernel.

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

fn run_with(path: &str, total: usize, signals: bool) -> usize {
    let per_writer = total / RECORD / WRITERS;
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
    let barrier = Arc::new(Barrier::new(WRITERS + READERS));
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let p = path.to_string();
        let b = barrier.clone();
        readers.push(std::thread::spawn(move || {
            let mut f = OpenOptions::new()
                .read(true)
                .open(&p)
                .expect("open for read");
            register_tid();
            b.wait();
            let mut seen = Seen {
                records: Vec::new(),
                torn: 0,
            };
            let mut buf = [0u8; RECORD];
            loop {
                match f.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
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
            seen
        }));
    }
    let mut writers = Vec::new();
    for w in 0..WRITERS as u32 {
        let p = path.to_string();
        let b = barrier.clone();
        writers.push(std::thread::spawn(move || {
            let mut f = OpenOptions::new()
                .write(true)
                .open(&p)
                .expect("open for write");
            register_tid();
            b.wait();
            let mut buf = [0u8; RECORD];
            for s in 0..per_writer as u32 {
                make_record(w, s, &mut buf);
                loop {
                    match f.write(&buf) {
                        Ok(n) => {
                            assert_eq!(n, RECORD, "a PIPE_BUF write is all or nothing");
                            break;
                        }
                        // Interrupted before anything was written: write it again.
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => panic!("write: {e}"),
                    }
                }
            }
        }));
    }
    for w in writers {
        w.join().expect("writer thread");
    }
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
        let mut last = [None::<u32>; WRITERS];
        for &(w, q) in &s.records {
            assert!((w as usize) < WRITERS, "{path}: bad writer id {w}");
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
    let expected = WRITERS * per_writer;
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
        READERS,
        seen.iter().map(|s| s.records.len()).collect::<Vec<_>>()
    );
    bytes
}

fn with_timeout<F: FnOnce() -> usize + Send + 'static>(f: F) -> usize {
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
