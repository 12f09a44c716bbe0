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

/// Run the workload on `path`; returns the bytes verified.
fn run(path: &str) -> usize {
    let per_writer = total_bytes() / RECORD / WRITERS;
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
            b.wait();
            let mut buf = [0u8; RECORD];
            for s in 0..per_writer as u32 {
                make_record(w, s, &mut buf);
                let n = f.write(&buf).expect("write");
                assert_eq!(n, RECORD, "a blocking write of PIPE_BUF bytes is whole");
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
