//! `edubench`: the `edu` PCI drivers' part of `cargo xtask bench`, `rust_edu` (Rust) against
//! `cedu` (its C twin), each bound to one of the VM's two QEMU `edu` devices.
//!
//! Per round, drivers interleaved (Rust, C, Rust, C, ...), one caller process:
//!
//! - `liveness`: `EDU_IOC_LIVENESS` round trips per second (one MMIO write and one MMIO read
//!   under the device lock, plus the ioctl path);
//! - `factorial`: `EDU_IOC_FACTORIAL` round trips per second with `n = 10`: MMIO write, the
//!   device's thread computes, MSI interrupt, hard handler (ack), threaded handler, wake-up of
//!   the caller, MMIO read of the result;
//! - `dma_64`, `dma_4095`: `pwrite` transfers per second of 64 and 4095 bytes (one DMA each
//!   and its completion interrupt). QEMU's model completes a transfer 100 ms of *virtual*
//!   time after the command (a timer in `hw/misc/edu.c`), so both drivers are bounded by
//!   10 transfers/s: the device, not the driver, is the bound there.
//!
//! Every result is checked (inverse, factorial value, byte count), so a broken driver cannot
//! look fast. `edubench ROUNDS [SCALE]`: every case does 1/SCALE of its default count.
//! Prints one JSON object on stdout, a line starting with `BENCH-JSON `.

use guest::kmod;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

/// (JSON key and module, device node).
const DRIVERS: [(&str, &str); 2] = [("rust_edu", "/dev/edu0"), ("cedu", "/dev/cedu0")];

/// Binds device 0 to `rust_edu` and device 1 to `cedu` (`driver_override`); returns the BDFs.
fn bind_one_each() -> Vec<String> {
    for (m, _) in DRIVERS {
        let _ = kmod::unload(m); // not loaded: fine
    }
    let bdfs = guest::edu::bdfs();
    assert_eq!(
        bdfs.len(),
        2,
        "the VM should have two edu devices: {bdfs:?}"
    );
    // Both overrides before either load: else the first driver loaded binds both devices.
    for ((m, _), bdf) in DRIVERS.iter().zip(&bdfs) {
        std::fs::write(format!("/sys/bus/pci/devices/{bdf}/driver_override"), m).unwrap();
    }
    for (m, node) in DRIVERS {
        kmod::load(m, "").unwrap_or_else(|e| panic!("insmod {m}: {e:?}"));
        let start = Instant::now();
        while !std::path::Path::new(node).exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{node} did not appear"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    bdfs
}

fn open(node: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(node)
        .unwrap_or_else(|e| panic!("{node}: {e}"))
}

/// Operations per second of `n` calls of `op`.
fn per_sec(n: usize, mut op: impl FnMut(usize)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        op(i);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn liveness(f: &std::fs::File, n: usize) -> f64 {
    per_sec(n, |i| {
        let v = (i as u32).wrapping_mul(0x9e37_79b9);
        assert_eq!(edu_uapi::liveness(f.as_raw_fd(), v).unwrap(), !v);
    })
}

fn factorial(f: &std::fs::File, n: usize) -> f64 {
    per_sec(n, |_| {
        assert_eq!(
            edu_uapi::factorial(f.as_raw_fd(), 10, 0).unwrap(),
            3_628_800
        );
    })
}

fn dma(f: &std::fs::File, n: usize, len: usize) -> f64 {
    let data = vec![0x5au8; len];
    per_sec(n, |i| {
        let off = (i * 64) % (edu_uapi::BUF_SIZE - len + 1);
        assert_eq!(f.write_at(&data, off as u64).unwrap(), len);
    })
}

fn json_stats(v: &mut [f64]) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let (m, lo, hi) = (v[v.len() / 2], v[0], v[v.len() - 1]);
    format!("{{\"median\":{m:.3},\"min\":{lo:.3},\"max\":{hi:.3},\"runs\":{v:?}}}")
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    let scale: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1).max(1);
    let bdfs = bind_one_each();
    let files: Vec<std::fs::File> = DRIVERS.iter().map(|(_, node)| open(node)).collect();
    let irq = |m: &str, node: &str| {
        let dir = node.trim_start_matches("/dev/");
        let stats = std::fs::read_to_string(format!("/sys/kernel/debug/{m}/{dir}/stats"))
            .unwrap_or_default();
        stats
            .lines()
            .find_map(|l| l.strip_prefix("irq "))
            .unwrap_or("?")
            .to_string()
    };
    type Case = (&'static str, usize, fn(&std::fs::File, usize) -> f64);
    let cases: [Case; 4] = [
        ("liveness", 40_000, liveness),
        ("factorial", 4_000, factorial),
        ("dma_64", 12, |f, n| dma(f, n, 64)),
        ("dma_4095", 12, |f, n| dma(f, n, edu_uapi::BUF_SIZE)),
    ];
    // Warm-up: first touches of the code paths and the buffers.
    for f in &files {
        liveness(f, 100);
        factorial(f, 10);
        dma(f, 1, 64);
    }
    let mut out = String::from("{\"per_sec\":{");
    for (ci, (name, count, run)) in cases.iter().enumerate() {
        // The DMA cases are bounded by the device's timer: scaling them down saves little.
        let n = if name.starts_with("dma") {
            *count
        } else {
            (*count / scale).max(1)
        };
        let mut runs = vec![Vec::new(); DRIVERS.len()];
        for _ in 0..rounds {
            for (k, f) in files.iter().enumerate() {
                runs[k].push(run(f, n));
            }
        }
        out.push_str(&format!("{}\"{name}\":{{", if ci > 0 { "," } else { "" }));
        for (k, (m, _)) in DRIVERS.iter().enumerate() {
            let sep = if k > 0 { "," } else { "" };
            out.push_str(&format!("{sep}\"{m}\":{}", json_stats(&mut runs[k])));
        }
        out.push_str(&format!(",\"calls\":{n}}}"));
        eprintln!("edubench: {name} done");
    }
    let stats: Vec<String> = DRIVERS
        .iter()
        .zip(&files)
        .map(|((m, _), f)| format!("\"{m}\":{:?}", edu_uapi::get_stats(f.as_raw_fd()).unwrap()))
        .collect();
    eprintln!("edubench: device counters {}", stats.join(", "));
    drop(files);
    out.push_str("},\"binding\":{");
    for (k, ((m, node), bdf)) in DRIVERS.iter().zip(&bdfs).enumerate() {
        let sep = if k > 0 { "," } else { "" };
        out.push_str(&format!(
            "{sep}\"{m}\":{{\"bdf\":\"{bdf}\",\"irq\":\"{}\"}}",
            irq(m, node)
        ));
    }
    out.push_str(&format!("}},\"rounds\":{rounds},\"scale\":{scale}}}"));
    for (m, _) in DRIVERS {
        let _ = kmod::unload(m); // not loaded: fine
    }
    println!("BENCH-JSON {out}");
}
