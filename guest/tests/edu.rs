//! The `edu` PCI drivers: `rust_edu` (modules/edu, `/dev/eduN`) and its C twin `cedu`
//! (modules-c/cedu, `/dev/ceduN`), one suite run against both. The VM has two QEMU `edu`
//! devices (1234:11e8).
//!
//! Differential design: every case in `cases!` is instantiated twice, `rust::NAME` and
//! `c::NAME`; each instance loads its driver alone (the twin unloaded, no `driver_override`),
//! so the driver binds both devices and the case may use `/dev/<node>0` and `<node>1`. The
//! `differential_*` tests bind one device to each driver at the same time (through
//! `driver_override`, then swapped) and run one seeded script of operations on both,
//! comparing every outcome. Expected values never come from a driver: factorials from
//! wrapping products, DMA contents from a model of the device memory, errnos from
//! `include/uapi/edu.h`.
//!
//! Device memory is [`BUF`] = `EDU_BUF_SIZE` = 4095 bytes, not the device's 4096: QEMU before
//! 8.2.1 aborts the whole VM on a transfer that ends at the end of the device memory
//! (`edu_check_range()` in `hw/misc/edu.c`), so both drivers never touch offset 4095, and
//! `offset_4095_is_never_transferred` checks the errnos they give instead.
//!
//! Time: every DMA transfer takes about 100 ms of virtual time and `n = 4_000_000_000`
//! keeps the device's factorial thread busy for seconds, so the DMA counts are small and
//! the slow factorial appears only where a wait must be interrupted.

use edu_uapi as uapi;
use guest::sys::errno::*;
use guest::{edu, kmod, sys, Errno, Kmsg};
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A driver under test.
#[derive(Clone, Copy, Debug)]
struct Driver {
    /// Module name, also the PCI driver's name and the debugfs directory.
    module: &'static str,
    /// Device node prefix: `/dev/<node>N`.
    node: &'static str,
}

const RUST: Driver = Driver {
    module: "rust_edu",
    node: "edu",
};
const C: Driver = Driver {
    module: "cedu",
    node: "cedu",
};

/// Bytes of device memory the drivers use (`EDU_BUF_SIZE`, one short of the device's 4 KiB).
const BUF: usize = uapi::BUF_SIZE;

/// Keeps the device busy for seconds (4e9 multiplications in QEMU's device thread).
const SLOW_N: u32 = 4_000_000_000;

fn errno<T>(r: std::io::Result<T>) -> Result<T, Errno> {
    r.map_err(Errno::from)
}

fn sysfs_write(path: &str, value: &str) -> Result<(), Errno> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(Errno::from)?;
    f.write_at(value.as_bytes(), 0)
        .map(drop)
        .map_err(Errno::from)
}

/// The driver a device is bound to (`None`: unbound).
fn bound_driver(bdf: &str) -> Option<String> {
    std::fs::read_link(format!("/sys/bus/pci/devices/{bdf}/driver"))
        .ok()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
}

fn set_override(bdf: &str, driver: &str) {
    // An empty write ("\n") clears the override.
    sysfs_write(
        &format!("/sys/bus/pci/devices/{bdf}/driver_override"),
        &format!("{driver}\n"),
    )
    .unwrap_or_else(|e| panic!("driver_override of {bdf}: {e:?}"));
}

fn unbind(drv: Driver, bdf: &str) -> Result<(), Errno> {
    sysfs_write(&format!("/sys/bus/pci/drivers/{}/unbind", drv.module), bdf)
}

fn bind(drv: Driver, bdf: &str) -> Result<(), Errno> {
    sysfs_write(&format!("/sys/bus/pci/drivers/{}/bind", drv.module), bdf)
}

/// Both drivers unloaded and no overrides: the state every test starts from and ends in.
fn reset() {
    kmod::ensure_unloaded(RUST.module);
    kmod::ensure_unloaded(C.module);
    for bdf in edu::bdfs() {
        set_override(&bdf, "");
    }
}

/// A probe message: `<module> <bdf>: <name>: QEMU edu 1.0, MSI irq 24, ...`.
#[derive(Clone, Debug)]
struct Probed {
    bdf: String,
    name: String,
    irq_kind: String,
    text: String,
}

fn parse_probe(module: &str, text: &str) -> Option<Probed> {
    let rest = text.strip_prefix(module)?.strip_prefix(' ')?;
    let (bdf, rest) = rest.split_once(": ")?;
    let (name, rest) = rest.split_once(": ")?;
    let rest = rest.strip_prefix("QEMU edu ")?;
    let irq_kind = rest.split(", ").nth(1)?.split(' ').next()?.to_string();
    Some(Probed {
        bdf: bdf.to_string(),
        name: name.to_string(),
        irq_kind,
        text: text.to_string(),
    })
}

/// Waits until `want` probe messages of `drv` appeared in `log`.
fn wait_probes(drv: Driver, log: &mut Kmsg, want: usize) -> Vec<Probed> {
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < want {
        got.extend(
            log.lines()
                .iter()
                .filter_map(|l| parse_probe(drv.module, l)),
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}: {} of {want} probe messages: {got:?}",
            drv.module,
            got.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    got.sort_by(|a, b| a.name.cmp(&b.name));
    got
}

/// A loaded driver bound to devices; unloaded (and overrides cleared) on drop.
struct Bound {
    drv: Driver,
    probed: Vec<Probed>,
}

impl Bound {
    /// Loads `drv` alone with `params`: it binds every `edu` device.
    fn load(drv: Driver, params: &str) -> Bound {
        reset();
        let n = edu::bdfs().len();
        assert_eq!(n, 2, "the VM should have two edu devices");
        let mut log = Kmsg::new();
        kmod::load(drv.module, params).unwrap_or_else(|e| panic!("load {}: {e:?}", drv.module));
        let probed = wait_probes(drv, &mut log, n);
        Bound { drv, probed }
    }

    fn node(&self, i: usize) -> String {
        format!("/dev/{}{i}", self.drv.node)
    }

    fn open(&self, i: usize) -> File {
        open_node(&self.node(i))
    }

    /// `regs` or `stats` of device `i` in debugfs.
    fn debugfs(&self, i: usize, file: &str) -> String {
        debugfs(self.drv, &format!("{}{i}", self.drv.node), file)
    }

    fn bdf(&self, i: usize) -> String {
        let name = format!("{}{i}", self.drv.node);
        self.probed
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no probe message for {name}: {:?}", self.probed))
            .bdf
            .clone()
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        let _ = kmod::unload(self.drv.module);
        for bdf in edu::bdfs() {
            let _ = sysfs_write(&format!("/sys/bus/pci/devices/{bdf}/driver_override"), "\n");
        }
    }
}

fn open_node(path: &str) -> File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {path}: {e}"))
}

fn debugfs(drv: Driver, name: &str, file: &str) -> String {
    let path = format!("/sys/kernel/debug/{}/{name}/{file}", drv.module);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `key value` lines of a debugfs file.
fn field(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(key)).then(|| it.next().unwrap_or("").to_string())
        })
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

fn hex(s: &str) -> u32 {
    u32::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// A small deterministic generator (tests must be reproducible).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn factorial(fd: RawFd, n: u32) -> Result<u32, Errno> {
    errno(uapi::factorial(fd, n, 0))
}

fn stats(f: &File) -> uapi::Stats {
    uapi::get_stats(f.as_raw_fd()).expect("GET_STATS")
}

// ---- signals ----

static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_sigusr1(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// SIGUSR1 counts into [`SIGNALS`]; with `restart`, interrupted calls restart (`SA_RESTART`).
fn catch_sigusr1(restart: bool) {
    // SAFETY: a zeroed sigaction is valid; the handler is async-signal-safe (one atomic add).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigusr1 as extern "C" fn(libc::c_int) as usize;
        sa.sa_flags = if restart { libc::SA_RESTART } else { 0 };
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
}

fn signal_thread<T>(h: &std::thread::JoinHandle<T>) {
    // SAFETY: the thread is alive (joined later), SIGUSR1 has a handler.
    assert_eq!(
        unsafe { libc::pthread_kill(h.as_pthread_t(), libc::SIGUSR1) },
        0
    );
}

/// Is device `i`'s factorial unit computing (debugfs `regs`, status bit 0)?
fn computing(b: &Bound, i: usize) -> bool {
    hex(&field(&b.debugfs(i, "regs"), "status")) & 1 != 0
}

// ---- the cases, each run against both drivers ----

fn probe_binds_every_edu_device(drv: Driver) {
    let b = Bound::load(drv, "");
    let bdfs = edu::bdfs();
    assert_eq!(b.probed.len(), bdfs.len());
    for (i, bdf) in bdfs.iter().enumerate() {
        let p = &b.probed[i];
        assert_eq!(p.name, format!("{}{i}", drv.node), "{p:?}");
        assert!(bdfs.contains(&p.bdf), "{p:?}");
        assert!(p.text.contains("QEMU edu 1.0, MSI irq "), "{}", p.text);
        let size = format!("{BUF}-byte DMA buffer at 0x");
        assert!(p.text.contains(&size), "{}", p.text);
        // The buffer must be reachable with the device's 28-bit DMA addresses.
        let addr = p.text.rsplit("0x").next().unwrap();
        let addr = u64::from_str_radix(addr.trim(), 16).unwrap();
        assert!(
            addr + BUF as u64 <= 1 << 28,
            "DMA buffer above 256 MiB: {}",
            p.text
        );
        let rd = |f: &str| {
            std::fs::read_to_string(format!("/sys/bus/pci/devices/{bdf}/{f}"))
                .unwrap()
                .trim()
                .to_string()
        };
        assert_eq!(rd("vendor"), "0x1234");
        assert_eq!(rd("device"), "0x11e8");
        assert_eq!(rd("enable"), "1", "{bdf} enabled while bound");
        assert_eq!(bound_driver(bdf).as_deref(), Some(drv.module), "{bdf}");
    }
    for i in 0..2 {
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::metadata(b.node(i)).unwrap();
        assert!(meta.file_type().is_char_device(), "{}", b.node(i));
        let regs = b.debugfs(i, "regs");
        assert_eq!(hex(&field(&regs, "id")), 0x0100_00ed, "{regs}");
        assert_eq!(
            hex(&field(&regs, "status")) & 0x80,
            0x80,
            "IRQFACT on: {regs}"
        );
        let st = b.debugfs(i, "stats");
        assert_eq!(field(&st, "irq"), "MSI", "{st}");
    }
    // Unloading unbinds: nodes, debugfs and the binding go, the device is disabled again.
    let mut log = Kmsg::new();
    kmod::unload(drv.module).unwrap();
    let lines = log.lines();
    for (i, bdf) in bdfs.iter().enumerate() {
        assert!(!std::path::Path::new(&b.node(i)).exists());
        assert_eq!(bound_driver(bdf), None);
        let enable = std::fs::read_to_string(format!("/sys/bus/pci/devices/{bdf}/enable"));
        assert_eq!(enable.unwrap().trim(), "0", "{bdf} disabled after unbind");
        let msg = format!("{} {bdf}: {}{i}: unbound", drv.module, drv.node);
        let msg2 = format!("{} {bdf}: {}{}: unbound", drv.module, drv.node, 1 - i);
        assert!(
            lines.iter().any(|l| *l == msg || *l == msg2),
            "no unbind message for {bdf}: {lines:?}"
        );
    }
    assert!(!std::path::Path::new(&format!("/sys/kernel/debug/{}", drv.module)).exists());
}

fn intx_when_msi_is_off(drv: Driver) {
    let b = Bound::load(drv, "msi=0");
    for p in &b.probed {
        assert_eq!(p.irq_kind, "INTx", "{}", p.text);
    }
    assert_eq!(
        std::fs::read_to_string(format!("/sys/module/{}/parameters/msi", drv.module))
            .unwrap()
            .trim(),
        "N"
    );
    for i in 0..2 {
        let f = b.open(i);
        let s0 = stats(&f);
        assert_eq!(factorial(f.as_raw_fd(), 12), Ok(479_001_600));
        let data: Vec<u8> = (0..64u8).collect();
        assert_eq!(sys::pwrite(f.as_raw_fd(), &data, 64), Ok(64));
        assert_eq!(sys::pread(f.as_raw_fd(), 64, 64), Ok(data));
        let s1 = stats(&f);
        assert_eq!(s1.interrupts - s0.interrupts, 3, "{s0:?} -> {s1:?}");
        assert_eq!(field(&b.debugfs(i, "stats"), "irq"), "INTx");
    }
}

fn liveness_many_values(drv: Driver) {
    let b = Bound::load(drv, "");
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let edges = [0u32, 1, 0x8000_0000, u32::MAX, 0x5555_5555, 0xaaaa_aaaa];
    for i in 0..2 {
        let f = b.open(i);
        let fd = f.as_raw_fd();
        for v in edges
            .into_iter()
            .chain((0..2000).map(|_| rng.next() as u32))
        {
            assert_eq!(
                errno(uapi::liveness(fd, v)),
                Ok(!v),
                "{}: {v:#x}",
                b.node(i)
            );
        }
    }
}

fn factorials_match_wrapping_products(drv: Driver) {
    let b = Bound::load(drv, "");
    let f = b.open(0);
    let fd = f.as_raw_fd();
    let s0 = stats(&f);
    let ns: Vec<u32> = (0..=40)
        .chain([100, 1000, 4095, 65_535, 100_000, 1_000_000, 12_345_678])
        .collect();
    for &n in &ns {
        assert_eq!(
            factorial(fd, n),
            Ok(uapi::expected_factorial(n)),
            "{n}! on {}",
            b.node(0)
        );
    }
    // Also through the second device, and with an explicit timeout.
    let g = b.open(1);
    assert_eq!(
        errno(uapi::factorial(g.as_raw_fd(), 13, 5000)),
        Ok(1_932_053_504)
    );
    let s1 = stats(&f);
    assert_eq!(s1.factorials - s0.factorials, ns.len() as u64);
    assert_eq!(s1.interrupts - s0.interrupts, ns.len() as u64);
}

fn stats_count_exactly(drv: Driver) {
    let b = Bound::load(drv, "");
    let f = b.open(1);
    let fd = f.as_raw_fd();
    let s0 = stats(&f);
    for n in 1..=5 {
        factorial(fd, n).unwrap();
    }
    assert_eq!(sys::pwrite(f.as_raw_fd(), &[7u8; 100], 0), Ok(100));
    assert_eq!(sys::pwrite(f.as_raw_fd(), &[8u8; 1000], 1000), Ok(1000));
    assert_eq!(sys::pread(f.as_raw_fd(), 10, 5).unwrap().len(), 10);
    // Liveness, stats and no-op reads/writes do not use the device's engines.
    uapi::liveness(fd, 3).unwrap();
    assert_eq!(sys::pread(f.as_raw_fd(), 0, 0), Ok(vec![]));
    assert_eq!(sys::pread(f.as_raw_fd(), 10, BUF as i64), Ok(vec![]));
    let s1 = stats(&f);
    assert_eq!(
        (
            s1.factorials - s0.factorials,
            s1.dma_transfers - s0.dma_transfers,
            s1.dma_bytes - s0.dma_bytes,
            s1.interrupts - s0.interrupts
        ),
        (5, 3, 1110, 8),
        "{s0:?} -> {s1:?}"
    );
    let text = b.debugfs(1, "stats");
    assert_eq!(field(&text, "factorials"), s1.factorials.to_string());
    assert_eq!(field(&text, "dma_transfers"), s1.dma_transfers.to_string());
    assert_eq!(field(&text, "dma_bytes"), s1.dma_bytes.to_string());
    assert_eq!(field(&text, "interrupts"), s1.interrupts.to_string());
    // The other device counted nothing of it.
    let g = b.open(0);
    assert_eq!(stats(&g).dma_bytes, 0);
}

fn dma_round_trips(drv: Driver) {
    let b = Bound::load(drv, "");
    // Both devices at once, one thread each: their memories are independent.
    let handles: Vec<_> = (0..2)
        .map(|i| {
            let f = b.open(i);
            let node = b.node(i);
            std::thread::spawn(move || {
                let mut rng = Rng(0xfeed_0000 + i as u64);
                let mut model = rng.bytes(BUF);
                assert_eq!(sys::pwrite(f.as_raw_fd(), &model, 0), Ok(BUF), "{node}");
                assert_eq!(
                    sys::pread(f.as_raw_fd(), BUF, 0).as_ref(),
                    Ok(&model),
                    "{node}"
                );
                let last = (BUF - 1, 1);
                for (off, len) in [(1, 1), (7, 100), last, (2048, 2047), (511, 1025)] {
                    let data = rng.bytes(len);
                    assert_eq!(
                        sys::pwrite(f.as_raw_fd(), &data, off as i64),
                        Ok(len),
                        "{node} {off}+{len}"
                    );
                    model[off..off + len].copy_from_slice(&data);
                }
                for (off, len) in [(0, BUF), (3, 77), (4000, BUF - 4000)] {
                    assert_eq!(
                        sys::pread(f.as_raw_fd(), len, off as i64).as_deref(),
                        Ok(&model[off..off + len]),
                        "{node} {off}+{len}"
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn offsets_lengths_and_bad_buffers(drv: Driver) {
    let b = Bound::load(drv, "");
    let f = b.open(0);
    let pattern: Vec<u8> = (0..BUF as u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(sys::pwrite(f.as_raw_fd(), &pattern, 0), Ok(BUF));
    // Across the end: shortened; at or past the end: EOF / ENOSPC; empty: nothing.
    assert_eq!(
        sys::pread(f.as_raw_fd(), 200, 4000).as_deref(),
        Ok(&pattern[4000..])
    );
    assert_eq!(sys::pread(f.as_raw_fd(), 1, BUF as i64), Ok(vec![]));
    assert_eq!(sys::pread(f.as_raw_fd(), 1, 1 << 40), Ok(vec![]));
    assert_eq!(sys::pwrite(f.as_raw_fd(), &[1u8; 10], 4090), Ok(BUF - 4090));
    assert_eq!(
        sys::pwrite(f.as_raw_fd(), &[1u8; 1], BUF as i64),
        Err(ENOSPC)
    );
    assert_eq!(sys::pwrite(f.as_raw_fd(), &[1u8; 1], 1 << 40), Err(ENOSPC));
    assert_eq!(sys::pwrite(f.as_raw_fd(), &[], 5000), Ok(0));
    assert_eq!(sys::pwrite(f.as_raw_fd(), &[1u8; 1], -1), Err(EINVAL));
    assert_eq!(sys::pread(f.as_raw_fd(), 1, -1), Err(EINVAL));
    // A write larger than the memory stops at its end.
    assert_eq!(
        sys::pwrite(f.as_raw_fd(), &vec![9u8; 5000], 4000),
        Ok(BUF - 4000)
    );
    let mut model = pattern.clone();
    model[4000..].fill(9);
    // lseek is not supported; read/write use and advance the file position.
    assert_eq!(sys::lseek(f.as_raw_fd(), 0, libc::SEEK_SET), Err(ESPIPE));
    let mut g = b.open(0);
    use std::io::{Read, Write};
    assert_eq!(g.write(&[0xaa; 16]).unwrap(), 16);
    assert_eq!(g.write(&[0xbb; 16]).unwrap(), 16);
    model[..16].fill(0xaa);
    model[16..32].fill(0xbb);
    let mut buf = [0u8; 32];
    assert_eq!(g.read(&mut buf).unwrap(), 32);
    assert_eq!(&buf[..], &model[32..64], "read continues at position 32");
    // Bad user buffers: EFAULT, and a failed write changed nothing.
    // SAFETY: the kernel checks the bad pointers; nothing is dereferenced here.
    unsafe {
        let r = libc::pwrite(f.as_raw_fd(), 8 as *const libc::c_void, 16, 0);
        assert_eq!((r, Errno::last()), (-1, EFAULT));
        let r = libc::pread(f.as_raw_fd(), 8 as *mut libc::c_void, 16, 0);
        assert_eq!((r, Errno::last()), (-1, EFAULT));
        // Read into read-only memory (this program's text).
        let text = sys::pwrite as *const () as *mut libc::c_void;
        let r = libc::pread(f.as_raw_fd(), text, 16, 0);
        assert_eq!((r, Errno::last()), (-1, EFAULT));
    }
    assert_eq!(sys::pread(f.as_raw_fd(), BUF, 0).as_ref(), Ok(&model));
}

/// Offset 4095, the device's last byte: QEMU < 8.2.1 aborts the VM on a transfer ending
/// there, so the drivers never transfer it: a write at it fails `ENOSPC`, a read at it is
/// end of file, a transfer across it is shortened; the VM survives all of them.
fn offset_4095_is_never_transferred(drv: Driver) {
    let b = Bound::load(drv, "");
    const MEM: usize = uapi::DEVICE_MEM_SIZE;
    assert_eq!(BUF, MEM - 1);
    let last = (MEM - 1) as i64;
    let f = b.open(1);
    let s0 = stats(&f);
    assert_eq!(sys::pwrite(f.as_raw_fd(), &[0xee; 1], last), Err(ENOSPC));
    assert_eq!(sys::pwrite(f.as_raw_fd(), &[0xee; 100], last), Err(ENOSPC));
    assert_eq!(sys::pread(f.as_raw_fd(), 1, last), Ok(vec![]));
    assert_eq!(sys::pread(f.as_raw_fd(), MEM, last), Ok(vec![]));
    // None of these reached the device.
    assert_eq!(stats(&f).dma_transfers, s0.dma_transfers);
    // Whole-memory and across-the-end transfers stop one byte short of the device's end.
    let data: Vec<u8> = (0..MEM as u32).map(|i| (i * 13 + 1) as u8).collect();
    assert_eq!(sys::pwrite(f.as_raw_fd(), &data, 0), Ok(BUF));
    let regs = b.debugfs(1, "regs");
    assert_eq!(hex(&field(&regs, "dma_dst")), 0x40000, "{regs}");
    assert_eq!(
        hex(&field(&regs, "dma_count")),
        0xfff,
        "last byte not sent: {regs}"
    );
    assert_eq!(
        sys::pread(f.as_raw_fd(), MEM, 0).as_deref(),
        Ok(&data[..BUF])
    );
    assert_eq!(sys::pwrite(f.as_raw_fd(), &[0x77; 2], last - 1), Ok(1));
    assert_eq!(sys::pread(f.as_raw_fd(), 2, last - 1), Ok(vec![0x77]));
    let s1 = stats(&f);
    assert_eq!(
        (
            s1.dma_transfers - s0.dma_transfers,
            s1.dma_bytes - s0.dma_bytes
        ),
        (4, 2 * BUF as u64 + 2),
        "{s0:?} -> {s1:?}"
    );
    // read()/write() at the file position: the position stops at 4095, then ENOSPC / EOF.
    let mut g = b.open(1);
    use std::io::{Read, Write};
    assert_eq!(g.write(&data).unwrap(), BUF);
    assert_eq!(errno(g.write(&data[..1])), Err(ENOSPC));
    let mut buf = [0u8; 8];
    assert_eq!(g.read(&mut buf).unwrap(), 0, "end of file at 4095");
    // The device still works (the VM did not abort, the driver is not stuck).
    assert_eq!(factorial(f.as_raw_fd(), 5), Ok(120));
}

fn bad_ioctls(drv: Driver) {
    let b = Bound::load(drv, "");
    let f = b.open(0);
    let fd = f.as_raw_fd();
    let raw = |cmd: u32, arg: usize| errno(uapi::ioctl_raw(fd, cmd, arg)).map(drop);
    let rw = uapi::IOC_READ | uapi::IOC_WRITE;
    let mut word = 0u32;
    let word_ptr = &mut word as *mut u32 as usize;
    // Unknown numbers, wrong sizes, wrong directions, another magic: ENOTTY.
    for cmd in [
        uapi::ioc(rw, uapi::MAGIC, 4, 4),
        uapi::ioc(rw, uapi::MAGIC, 0, 4),
        uapi::ioc(rw, uapi::MAGIC, 1, 8),
        uapi::ioc(rw, uapi::MAGIC, 2, 8),
        uapi::ioc(uapi::IOC_READ, uapi::MAGIC, 2, 4),
        uapi::ioc(uapi::IOC_NONE, uapi::MAGIC, 1, 0),
        uapi::ioc(uapi::IOC_READ, uapi::MAGIC, 3, 16),
        uapi::ioc(rw, 0xB9, 2, 4),
        0,
    ] {
        assert_eq!(raw(cmd, word_ptr), Err(ENOTTY), "cmd {cmd:#x}");
    }
    // Bad pointers: EFAULT.
    for cmd in [uapi::FACTORIAL, uapi::LIVENESS, uapi::GET_STATS] {
        for arg in [0usize, 8, usize::MAX - 8] {
            assert_eq!(raw(cmd, arg), Err(EFAULT), "cmd {cmd:#x} arg {arg:#x}");
        }
    }
    // Results into read-only memory: EFAULT (the device still computed, nothing else).
    let text = sys::pwrite as *const () as usize;
    assert_eq!(raw(uapi::LIVENESS, text), Err(EFAULT));
    // Bad request fields: EINVAL, nothing computed.
    let s0 = stats(&f);
    let req = |flags, timeout_ms| {
        errno(uapi::factorial_req(
            fd,
            uapi::Factorial {
                n: 5,
                timeout_ms,
                flags,
                result: 0,
            },
        ))
    };
    assert_eq!(req(1, 0), Err(EINVAL));
    assert_eq!(req(0x8000_0000, 0), Err(EINVAL));
    assert_eq!(req(0, uapi::MAX_TIMEOUT_MS + 1), Err(EINVAL));
    assert_eq!(req(0, u32::MAX), Err(EINVAL));
    assert_eq!(stats(&f).factorials, s0.factorials);
    // The longest timeout is fine; the result overwrites only `result`.
    let done = req(0, uapi::MAX_TIMEOUT_MS).unwrap();
    assert_eq!(
        done,
        uapi::Factorial {
            n: 5,
            timeout_ms: uapi::MAX_TIMEOUT_MS,
            flags: 0,
            result: 120
        }
    );
}

fn slow_factorial_interrupted_by_a_signal(drv: Driver) {
    let b = Bound::load(drv, "");
    catch_sigusr1(false);
    let f = b.open(0);
    let fd = f.as_raw_fd();
    let s0 = stats(&f);
    let slow = std::thread::spawn(move || {
        let start = Instant::now();
        (factorial(fd, SLOW_N), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(computing(&b, 0), "the slow factorial should be running");
    let sent = Instant::now();
    signal_thread(&slow);
    let (r, _) = slow.join().unwrap();
    assert_eq!(r, Err(EINTR));
    assert!(
        sent.elapsed() < Duration::from_secs(2),
        "the wait did not end promptly on the signal"
    );
    // The device is still busy with SLOW_N; the next caller must wait for it and get its
    // own result, never SLOW_N's (which is 0: it has more than 32 factors of two).
    assert!(computing(&b, 0), "SLOW_N should still be running");
    assert_eq!(factorial(fd, 10), Ok(3_628_800));
    let s1 = stats(&f);
    assert_eq!(
        s1.factorials - s0.factorials,
        2,
        "SLOW_N and 10 both finished"
    );
    assert_eq!(field(&b.debugfs(0, "regs"), "factorial"), "0x00375f00");
}

fn factorial_timeout(drv: Driver) {
    let b = Bound::load(drv, "");
    let f = b.open(1);
    let fd = f.as_raw_fd();
    let start = Instant::now();
    assert_eq!(errno(uapi::factorial(fd, SLOW_N, 200)), Err(ETIMEDOUT));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(190) && took < Duration::from_secs(2),
        "timed out after {took:?}"
    );
    // A second caller with a short timeout times out too while SLOW_N runs.
    assert_eq!(errno(uapi::factorial(fd, 3, 100)), Err(ETIMEDOUT));
    assert_eq!(errno(uapi::factorial(fd, 7, 0)), Ok(5040));
}

fn signals_while_waiting_for_the_engine(drv: Driver) {
    let b = Bound::load(drv, "");
    catch_sigusr1(false);
    let f = b.open(0);
    let fd = f.as_raw_fd();
    // A holds the factorial engine with SLOW_N; B waits for the engine.
    let a = std::thread::spawn(move || factorial(fd, SLOW_N));
    std::thread::sleep(Duration::from_millis(200));
    let g = b.open(0);
    let gfd = g.as_raw_fd();
    let bt = std::thread::spawn(move || factorial(gfd, 5));
    std::thread::sleep(Duration::from_millis(200));
    assert!(!bt.is_finished() && !a.is_finished());
    signal_thread(&bt);
    assert_eq!(bt.join().unwrap(), Err(EINTR));
    assert!(!a.is_finished(), "A is unaffected by B's signal");
    signal_thread(&a);
    assert_eq!(a.join().unwrap(), Err(EINTR));
    // DMA: a transfer interrupted after it started still completes on the device; the
    // next caller waits for it. The memory holds either the old or the new bytes, whole.
    let old = vec![0x11u8; 2048];
    let new = vec![0x22u8; 2048];
    assert_eq!(sys::pwrite(f.as_raw_fd(), &old, 1024), Ok(2048));
    let h = std::thread::spawn({
        let f = b.open(0);
        let new = new.clone();
        move || sys::pwrite(f.as_raw_fd(), &new, 1024)
    });
    std::thread::sleep(Duration::from_millis(30));
    signal_thread(&h);
    let r = h.join().unwrap();
    assert!(r == Err(EINTR) || r == Ok(2048), "{r:?}");
    let back = sys::pread(f.as_raw_fd(), 2048, 1024).unwrap();
    assert!(
        back == old || back == new,
        "mixed contents after an interrupted write"
    );
    // A read interrupted while its transfer runs: EINTR; the next read is right.
    let h = std::thread::spawn({
        let f = b.open(0);
        move || sys::pread(f.as_raw_fd(), 2048, 1024).map(|v| v.len())
    });
    std::thread::sleep(Duration::from_millis(30));
    signal_thread(&h);
    let r = h.join().unwrap();
    assert!(r == Err(EINTR) || r == Ok(2048), "{r:?}");
    assert_eq!(sys::pread(f.as_raw_fd(), 2048, 1024), Ok(back));
    assert_eq!(factorial(fd, 6), Ok(720));
}

fn sa_restart_restarts_transparently(drv: Driver) {
    let b = Bound::load(drv, "");
    catch_sigusr1(true);
    SIGNALS.store(0, Ordering::SeqCst);
    let f = b.open(1);
    let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    assert_eq!(sys::pwrite(f.as_raw_fd(), &data, 1000), Ok(3000));
    let h = std::thread::spawn({
        let f = b.open(1);
        move || sys::pread(f.as_raw_fd(), 3000, 1000)
    });
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(40));
        if !h.is_finished() {
            signal_thread(&h);
        }
    }
    assert_eq!(
        h.join().unwrap(),
        Ok(data),
        "restarted read returns the right bytes"
    );
    assert!(
        SIGNALS.load(Ordering::SeqCst) >= 1,
        "no signal was delivered"
    );
    let fd = f.as_raw_fd();
    let h = std::thread::spawn(move || factorial(fd, 20));
    signal_thread(&h);
    assert_eq!(h.join().unwrap(), Ok(uapi::expected_factorial(20)));
}

/// A forked child: runs `f` (syscalls only, no allocation: the parent is multi-threaded)
/// and exits with its return value.
fn fork_child(f: impl FnOnce() -> i32) -> libc::pid_t {
    // SAFETY: fork; the child only makes system calls on memory allocated before the fork,
    // then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {:?}", Errno::last());
    if pid == 0 {
        let code = f();
        // SAFETY: terminate the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    pid
}

fn wait_child(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: `pid` is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "child {pid} died: status {status:#x}"
    );
    libc::WEXITSTATUS(status)
}

/// Work of one child process: liveness, factorials and DMA in its own 1 KiB of device
/// memory. Everything it needs is prepared before the fork.
struct ChildWork {
    values: Vec<u32>,
    ns: Vec<u32>,
    expected: Vec<u32>,
    /// (offset, data) pairs to write and read back.
    chunks: Vec<(usize, Vec<u8>)>,
    back: Vec<u8>,
}

impl ChildWork {
    fn new(rng: &mut Rng, region: usize) -> ChildWork {
        let ns: Vec<u32> = (0..10).map(|_| rng.below(200) as u32).collect();
        let chunks = (0..3)
            .map(|_| {
                let len = 1 + rng.below(1024) as usize;
                let off = region * 1024 + rng.below((1024 - len + 1) as u64) as usize;
                (off, rng.bytes(len))
            })
            .collect();
        ChildWork {
            values: (0..200).map(|_| rng.next() as u32).collect(),
            expected: ns.iter().map(|&n| uapi::expected_factorial(n)).collect(),
            ns,
            chunks,
            back: vec![0u8; 1024],
        }
    }

    fn bytes(&self) -> u64 {
        self.chunks.iter().map(|(_, d)| 2 * d.len() as u64).sum()
    }

    /// Exit code 0 on success, else which check failed.
    fn run(&mut self, fd: RawFd) -> i32 {
        for (k, &v) in self.values.iter().enumerate() {
            let mut w = v;
            // SAFETY: `w` is a valid `__u32`.
            let r = unsafe { libc::ioctl(fd, uapi::LIVENESS as _, &mut w as *mut u32) };
            if r != 0 || w != !v {
                return 10 + (k % 10) as i32;
            }
            if k % 20 == 0 {
                let i = k / 20;
                let mut req = uapi::Factorial {
                    n: self.ns[i],
                    ..Default::default()
                };
                // SAFETY: `req` is a valid `struct edu_factorial`.
                let r = unsafe { libc::ioctl(fd, uapi::FACTORIAL as _, &mut req) };
                if r != 0 || req.result != self.expected[i] {
                    return 30 + i as i32;
                }
            }
        }
        for (k, (off, data)) in self.chunks.iter().enumerate() {
            // SAFETY: buffers valid for their lengths.
            unsafe {
                let n = libc::pwrite(fd, data.as_ptr().cast(), data.len(), *off as i64);
                if n != data.len() as isize {
                    return 50 + k as i32;
                }
                let back = &mut self.back[..data.len()];
                let n = libc::pread(fd, back.as_mut_ptr().cast(), back.len(), *off as i64);
                if n != data.len() as isize || back != &data[..] {
                    return 60 + k as i32;
                }
            }
        }
        0
    }
}

fn concurrent_processes_exact_results(drv: Driver) {
    let b = Bound::load(drv, "");
    let files = [b.open(0), b.open(1)];
    let before = [stats(&files[0]), stats(&files[1])];
    let mut rng = Rng(0xc0ffee);
    // Three processes per device, each in its own kilobyte of the device memory.
    let mut work: Vec<(usize, ChildWork)> = (0..6)
        .map(|k| (k % 2, ChildWork::new(&mut rng, k / 2)))
        .collect();
    let mut expected_bytes = [0u64; 2];
    for (dev, w) in &work {
        expected_bytes[*dev] += w.bytes();
    }
    let fds = [files[0].as_raw_fd(), files[1].as_raw_fd()];
    let pids: Vec<_> = work
        .iter_mut()
        .map(|(dev, w)| {
            let fd = fds[*dev];
            fork_child(move || w.run(fd))
        })
        .collect();
    let codes: Vec<i32> = pids.into_iter().map(wait_child).collect();
    assert_eq!(
        codes,
        vec![0; 6],
        "children's exit codes (0 = all results right)"
    );
    for dev in 0..2 {
        let s = stats(&files[dev]);
        let d = (
            s.factorials - before[dev].factorials,
            s.dma_transfers - before[dev].dma_transfers,
            s.dma_bytes - before[dev].dma_bytes,
            s.interrupts - before[dev].interrupts,
        );
        assert_eq!(
            d,
            (30, 18, expected_bytes[dev], 48),
            "{}: factorials, transfers, bytes, interrupts",
            b.node(dev)
        );
    }
}

fn unbind_and_bind_under_load(drv: Driver) {
    let b = Bound::load(drv, "");
    catch_sigusr1(false);
    let bdf0 = b.bdf(0);
    let dev1 = b.open(1);
    for round in 0..2 {
        let f = b.open(0);
        let fd = f.as_raw_fd();
        // In flight at the unbind: a slow factorial, a DMA reader, and a caller waiting
        // for the factorial engine.
        let slow = std::thread::spawn(move || factorial(fd, SLOW_N));
        std::thread::sleep(Duration::from_millis(100));
        let queued = std::thread::spawn(move || factorial(fd, 3));
        let reader = std::thread::spawn({
            let f = b.open(0);
            move || loop {
                match sys::pread(f.as_raw_fd(), BUF, 0) {
                    Ok(v) => assert_eq!(v.len(), BUF),
                    Err(e) => return e,
                }
            }
        });
        // Device 1 keeps working throughout.
        let other = std::thread::spawn({
            let f = dev1.try_clone().unwrap();
            move || {
                for n in 0..300u32 {
                    assert_eq!(
                        factorial(f.as_raw_fd(), n % 30),
                        Ok(uapi::expected_factorial(n % 30))
                    );
                    assert_eq!(errno(uapi::liveness(f.as_raw_fd(), n)), Ok(!n));
                }
            }
        });
        std::thread::sleep(Duration::from_millis(250));
        let start = Instant::now();
        unbind(drv, &bdf0).unwrap_or_else(|e| panic!("round {round}: unbind: {e:?}"));
        let took = start.elapsed();
        assert!(took < Duration::from_secs(3), "unbind took {took:?}");
        assert_eq!(
            slow.join().unwrap(),
            Err(ENODEV),
            "round {round}: in-flight factorial"
        );
        assert_eq!(
            queued.join().unwrap(),
            Err(ENODEV),
            "round {round}: queued caller"
        );
        assert_eq!(reader.join().unwrap(), ENODEV, "round {round}: DMA reader");
        // The open file stays open; everything on it fails ENODEV.
        assert_eq!(factorial(fd, 1), Err(ENODEV));
        assert_eq!(errno(uapi::liveness(fd, 1)), Err(ENODEV));
        assert_eq!(
            errno(uapi::get_stats(fd)).map(drop),
            Ok(()),
            "stats of the gone device"
        );
        assert_eq!(sys::pread(f.as_raw_fd(), 1, 0), Err(ENODEV));
        assert_eq!(sys::pwrite(f.as_raw_fd(), &[1], 0), Err(ENODEV));
        assert_eq!(bound_driver(&bdf0), None);
        assert!(
            !std::path::Path::new(&b.node(0)).exists(),
            "node of the unbound device"
        );
        other.join().unwrap();
        // Bind again: a fresh /dev node (the name is free again) that works, even while the
        // device still computes SLOW_N from before.
        let mut log = Kmsg::new();
        bind(drv, &bdf0).unwrap_or_else(|e| panic!("round {round}: bind: {e:?}"));
        let p = wait_probes(drv, &mut log, 1);
        assert_eq!(
            (p[0].bdf.as_str(), p[0].name.clone()),
            (bdf0.as_str(), format!("{}0", drv.node))
        );
        let g = b.open(0);
        assert_eq!(factorial(g.as_raw_fd(), 9), Ok(362_880));
        assert_eq!(factorial(fd, 9), Err(ENODEV), "the old file stays dead");
        drop(f);
    }
    // Unbind with a DMA transfer in flight and nothing else: the transfer must be over
    // before the buffer is freed (KASAN would see a late device write into freed memory).
    let f = b.open(0);
    let h = std::thread::spawn(move || sys::pwrite(f.as_raw_fd(), &[0x5a; BUF], 0));
    std::thread::sleep(Duration::from_millis(30));
    unbind(drv, &bdf0).unwrap();
    let r = h.join().unwrap();
    assert!(r == Err(ENODEV) || r == Ok(BUF), "{r:?}");
    bind(drv, &bdf0).unwrap();
    let g = b.open(0);
    assert_eq!(sys::pread(g.as_raw_fd(), 4, 0).unwrap().len(), 4);
}

fn rmmod_while_bound_and_open(drv: Driver) {
    let b = Bound::load(drv, "");
    let f = b.open(0);
    // An open file holds the module: rmmod fails (EWOULDBLOCK with O_NONBLOCK, as rmmod).
    assert_eq!(kmod::unload(drv.module), Err(Errno(libc::EWOULDBLOCK)));
    assert!(kmod::is_loaded(drv.module));
    assert_eq!(factorial(f.as_raw_fd(), 4), Ok(24), "still works");
    drop(f);
    // Bound, nothing open: rmmod unbinds every device.
    let mut log = Kmsg::new();
    kmod::unload(drv.module).unwrap();
    let unbound = log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with(drv.module) && l.ends_with(": unbound"))
        .count();
    assert_eq!(unbound, 2);
    for bdf in edu::bdfs() {
        assert_eq!(bound_driver(&bdf), None);
    }
    drop(b);
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        mod rust {
            $(#[test] fn $name() { super::$name(super::RUST) })*
        }
        mod c {
            $(#[test] fn $name() { super::$name(super::C) })*
        }
    };
}

cases!(
    probe_binds_every_edu_device,
    intx_when_msi_is_off,
    liveness_many_values,
    factorials_match_wrapping_products,
    stats_count_exactly,
    dma_round_trips,
    offsets_lengths_and_bad_buffers,
    offset_4095_is_never_transferred,
    bad_ioctls,
    slow_factorial_interrupted_by_a_signal,
    factorial_timeout,
    signals_while_waiting_for_the_engine,
    sa_restart_restarts_transparently,
    concurrent_processes_exact_results,
    unbind_and_bind_under_load,
    rmmod_while_bound_and_open,
);

// ---- both drivers at once ----

/// One scripted operation and its outcome, for comparing the twins.
#[derive(Debug, PartialEq)]
enum Outcome {
    Value(u32),
    Bytes(Vec<u8>),
    Count(usize),
    Err(Errno),
}

fn outcome<T>(r: Result<T, Errno>, f: impl FnOnce(T) -> Outcome) -> Outcome {
    match r {
        Ok(v) => f(v),
        Err(e) => Outcome::Err(e),
    }
}

/// A seeded script of operations (liveness, factorials, DMA, bad input) on one device.
fn script(path: &str, seed: u64) -> (Vec<Outcome>, uapi::Stats) {
    let f = open_node(path);
    let fd = f.as_raw_fd();
    let s0 = stats(&f);
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for step in 0..60 {
        let o = match rng.below(8) {
            0 | 1 => outcome(errno(uapi::liveness(fd, rng.next() as u32)), Outcome::Value),
            2 | 3 => outcome(factorial(fd, rng.below(5000) as u32), Outcome::Value),
            4 if step % 3 == 0 => {
                let off = rng.below(4200) as i64;
                let len = 1 + rng.below(300) as usize;
                let data = rng.bytes(len);
                outcome(sys::pwrite(f.as_raw_fd(), &data, off), Outcome::Count)
            }
            5 if step % 3 == 0 => {
                let off = rng.below(4200) as i64;
                outcome(
                    sys::pread(f.as_raw_fd(), 1 + rng.below(300) as usize, off),
                    Outcome::Bytes,
                )
            }
            6 => {
                let cmd = uapi::ioc(uapi::IOC_READ, uapi::MAGIC, 1 + rng.below(6) as u32, 4);
                outcome(errno(uapi::ioctl_raw(fd, cmd, 8)), |v| {
                    Outcome::Value(v as u32)
                })
            }
            _ => outcome(
                errno(uapi::factorial(
                    fd,
                    1,
                    uapi::MAX_TIMEOUT_MS + rng.below(2) as u32,
                )),
                Outcome::Value,
            ),
        };
        out.push(o);
    }
    let s1 = stats(&f);
    let d = uapi::Stats {
        interrupts: s1.interrupts - s0.interrupts,
        factorials: s1.factorials - s0.factorials,
        dma_transfers: s1.dma_transfers - s0.dma_transfers,
        dma_bytes: s1.dma_bytes - s0.dma_bytes,
    };
    (out, d)
}

/// Binds device `rust_dev` to `rust_edu` and the other to `cedu` (driver_override), both at
/// once, and runs the same script on both in parallel.
fn one_device_each(rust_dev: usize) {
    reset();
    let bdfs = edu::bdfs();
    set_override(&bdfs[rust_dev], RUST.module);
    set_override(&bdfs[1 - rust_dev], C.module);
    let mut log = Kmsg::new();
    kmod::load(RUST.module, "").unwrap();
    let _r = Bound {
        drv: RUST,
        probed: wait_probes(RUST, &mut log, 1),
    };
    kmod::load(C.module, "").unwrap();
    let _c = Bound {
        drv: C,
        probed: wait_probes(C, &mut log, 1),
    };
    assert_eq!(_r.bdf(0), bdfs[rust_dev]);
    assert_eq!(_c.bdf(0), bdfs[1 - rust_dev]);
    assert_eq!(bound_driver(&bdfs[rust_dev]).as_deref(), Some(RUST.module));
    assert_eq!(bound_driver(&bdfs[1 - rust_dev]).as_deref(), Some(C.module));
    // Clean device memory first, so that reads compare equal.
    for path in ["/dev/edu0", "/dev/cedu0"] {
        assert_eq!(
            sys::pwrite(open_node(path).as_raw_fd(), &[0u8; BUF], 0),
            Ok(BUF)
        );
    }
    let seed = 0x5eed + rust_dev as u64;
    let h = std::thread::spawn(move || script("/dev/cedu0", seed));
    let (rust, rust_stats) = script("/dev/edu0", seed);
    let (c, c_stats) = h.join().unwrap();
    for (k, (r, c)) in rust.iter().zip(&c).enumerate() {
        assert_eq!(r, c, "step {k}: rust_edu vs cedu");
    }
    assert_eq!(rust_stats, c_stats, "stats deltas");
    assert!(
        rust_stats.factorials > 0 && rust_stats.dma_transfers > 0,
        "{rust_stats:?}"
    );
}

#[test]
fn differential_one_device_per_driver() {
    one_device_each(0);
}

#[test]
fn differential_swapped_devices() {
    one_device_each(1);
}
