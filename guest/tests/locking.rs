//! The `locking` module: Mutex/SpinLock/SpinLockIrq totals from concurrent work items and an
//! hrtimer, read from `/dev/rust_locking`.

use guest::kmod::{self, Loaded};
use guest::{is_debug_kernel, mode_of, Errno, Kmsg};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const NAME: &str = "locking";
const DEV: &str = "/dev/rust_locking";

/// The report's `key=value` fields, in order, with the line checked for shape.
fn parse(line: &str) -> BTreeMap<String, String> {
    assert!(
        line.ends_with('\n'),
        "one line, newline-terminated: {line:?}"
    );
    assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
    let keys: Vec<&str> = line
        .split_whitespace()
        .map(|kv| kv.split_once('=').expect("key=value").0)
        .collect();
    assert_eq!(
        keys,
        [
            "workers",
            "iterations",
            "mutex_total",
            "spinlock_total",
            "irqlock_total",
            "irq_ticks",
            "unlocked_total",
            "expected",
            "expected_irqlock",
            "result",
            "mutex_cpus",
            "spinlock_cpus",
            "irqlock_cpus",
            "mutex_contended",
            "spinlock_contended",
            "irqlock_contended",
            "worker_cpus"
        ]
    );
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// A `0x..` CPU mask field.
fn mask(r: &BTreeMap<String, String>, k: &str) -> u64 {
    let v = r[k]
        .strip_prefix("0x")
        .unwrap_or_else(|| panic!("{k}={} is not hex", r[k]));
    u64::from_str_radix(v, 16).unwrap_or_else(|_| panic!("{k}={} is not hex", r[k]))
}

fn num(r: &BTreeMap<String, String>, k: &str) -> u64 {
    r[k].parse()
        .unwrap_or_else(|_| panic!("{k}={} is not a number", r[k]))
}

/// Check a report for K workers, N iterations and T ticks: every locked total is exact.
fn check(line: &str, k: u64, n: u64, t: u64) {
    let r = parse(line);
    assert_eq!(num(&r, "workers"), k, "{line}");
    assert_eq!(num(&r, "iterations"), n, "{line}");
    assert_eq!(num(&r, "expected"), k * n, "{line}");
    assert_eq!(
        num(&r, "mutex_total"),
        k * n,
        "Mutex<SharedData> lost updates: {line}"
    );
    assert_eq!(
        num(&r, "spinlock_total"),
        k * n,
        "SpinLock<u32> lost updates: {line}"
    );
    assert_eq!(num(&r, "irq_ticks"), t, "hrtimer callbacks: {line}");
    assert_eq!(num(&r, "expected_irqlock"), k * n + t, "{line}");
    assert_eq!(
        num(&r, "irqlock_total"),
        k * n + t,
        "SpinLockIrq lost updates: {line}"
    );
    let unlocked = num(&r, "unlocked_total");
    assert!(
        unlocked >= 1 && unlocked <= k * n,
        "racy counter out of range: {line}"
    );
    assert_eq!(r["result"], "ok", "{line}");
    // Every lock was held on some CPU, and each work item reports where it ran.
    for lock in ["mutex_cpus", "spinlock_cpus", "irqlock_cpus"] {
        assert_ne!(mask(&r, lock), 0, "{lock}: {line}");
    }
    let workers: Vec<&str> = r["worker_cpus"].split('/').collect();
    assert_eq!(workers.len() as u64, k, "one mask per work item: {line}");
    assert!(
        workers.iter().all(|w| w.starts_with("0x") && *w != "0x0"),
        "{line}"
    );
}

fn online_cpus() -> u32 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) as u32 }
}

/// On an SMP guest the experiment really runs in parallel: in one experiment, each of the
/// three locks was held by at least two CPUs (work items on the unbound workqueue spread over
/// the CPUs; a few tries allow for one unlucky placement). Contention counts are printed.
#[test]
fn each_lock_is_taken_on_two_cpus_in_one_experiment() {
    let cpus = online_cpus();
    assert!(
        cpus >= 2,
        "this guest has {cpus} CPU(s); the parallel experiment needs 2"
    );
    let _m = Loaded::new(NAME, "workers=8 iterations=20000 irq_ticks=100").expect("insmod");
    let mut seen = Vec::new();
    for _ in 0..5 {
        let line = read_report();
        check(&line, 8, 20_000, 100);
        let r = parse(&line);
        let counts: Vec<u32> = ["mutex_cpus", "spinlock_cpus", "irqlock_cpus"]
            .iter()
            .map(|k| mask(&r, k).count_ones())
            .collect();
        println!(
            "lock CPUs (mutex, spinlock, irqlock) {counts:?}; contended: mutex {} spinlock {} irqlock {}; workers {}",
            r["mutex_contended"], r["spinlock_contended"], r["irqlock_contended"], r["worker_cpus"]
        );
        if counts.iter().all(|&c| c >= 2) {
            return;
        }
        seen.push(line);
    }
    panic!(
        "no experiment had every lock taken on 2+ CPUs:\n{}",
        seen.concat()
    );
}

/// The experiments that logged their report since `log` was last read.
fn experiments_logged(log: &mut Kmsg) -> usize {
    log.lines()
        .into_iter()
        .filter(|l| l.starts_with("locking: workers="))
        .count()
}

fn read_report() -> String {
    std::fs::read_to_string(DEV).expect("read /dev/rust_locking")
}

#[test]
fn load_logs_parameters() {
    kmod::ensure_unloaded(NAME);
    let mut log = Kmsg::new();
    let m = Loaded::new(NAME, "").expect("insmod locking");
    let recs = log.read();
    let rec = recs
        .iter()
        .find(|r| r.text.starts_with("locking: "))
        .expect("load message");
    assert_eq!(
        rec.text,
        "locking: workers=4 iterations=10000 irq_ticks=100: read /dev/rust_locking to run"
    );
    assert_eq!(rec.level, 6);
    assert_eq!(mode_of(DEV).unwrap(), 0o600);
    drop(m);
    assert!(std::fs::metadata(DEV).is_err(), "{DEV} removed on rmmod");
}

#[test]
fn default_run_has_exact_totals_and_is_logged() {
    let _m = Loaded::new(NAME, "").expect("insmod locking");
    let mut log = Kmsg::new();
    let start = Instant::now();
    let line = read_report();
    let took = start.elapsed();
    eprintln!("report ({took:?}): {line}");
    check(&line, 4, 10_000, 100);
    // A few seconds under TCG; lockdep + KASAN (debug kernel) make every lock operation slower.
    let limit = Duration::from_secs(if is_debug_kernel() { 60 } else { 10 });
    assert!(took < limit, "one run took {took:?}");
    let recs = log.read();
    let rec = recs
        .iter()
        .find(|r| r.text.starts_with("locking: workers="))
        .expect("report in the log");
    assert_eq!(
        format!("{}\n", rec.text),
        format!("locking: {line}"),
        "same line as read"
    );
    assert_eq!(rec.level, 6);
}

#[test]
fn params_set_k_n_and_ticks() {
    for (k, n, t) in [
        (1u64, 1u64, 1u64),
        (8, 5000, 50),
        (16, 2000, 7),
        (2, 25_000, 300),
    ] {
        let p = format!("workers={k} iterations={n} irq_ticks={t}");
        let _m = Loaded::new(NAME, &p).unwrap_or_else(|e| panic!("insmod {p}: {e:?}"));
        let line = read_report();
        eprintln!("{p}: {line}");
        check(&line, k, n, t);
    }
}

#[test]
fn one_experiment_per_open_then_eof() {
    let _m = Loaded::new(NAME, "workers=3 iterations=2000 irq_ticks=10").unwrap();
    let mut log = Kmsg::new();
    let mut f = File::open(DEV).unwrap();
    // Small reads: the same report, continued at the file offset.
    let mut got = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        assert!(got.len() < 4096, "no EOF");
    }
    let line = String::from_utf8(got).unwrap();
    check(&line, 3, 2000, 10);
    assert_eq!(f.read(&mut buf).unwrap(), 0, "EOF stays EOF");
    drop(f);
    // A second open runs a second experiment.
    check(&read_report(), 3, 2000, 10);
    let runs = experiments_logged(&mut log);
    assert_eq!(runs, 2, "one experiment per open, not per read()");
}

#[test]
fn concurrent_readers_get_independent_exact_reports() {
    let _m = Loaded::new(NAME, "workers=4 iterations=5000 irq_ticks=40").unwrap();
    let readers: Vec<_> = (0..4).map(|_| std::thread::spawn(read_report)).collect();
    for r in readers {
        check(&r.join().unwrap(), 4, 5000, 40);
    }
}

/// Two reads of one open file at once (`pread` at offset 0, a char device has no position
/// lock): the second waits for the experiment the first started and returns its report;
/// one experiment runs.
#[test]
fn a_read_during_the_experiment_waits_for_it() {
    use std::os::unix::fs::FileExt;
    let _m = Loaded::new(NAME, "workers=2 iterations=50000 irq_ticks=10").unwrap();
    let mut log = Kmsg::new();
    let f = std::sync::Arc::new(File::open(DEV).unwrap());
    let read_at_0 = |f: &File| {
        let mut b = vec![0u8; 4096];
        let n = f.read_at(&mut b, 0).expect("pread /dev/rust_locking");
        String::from_utf8(b[..n].to_vec()).unwrap()
    };
    let first = {
        let f = f.clone();
        std::thread::spawn(move || read_at_0(&f))
    };
    // Let the first read start the experiment.
    std::thread::sleep(Duration::from_millis(20));
    let second = read_at_0(&f);
    let first = first.join().unwrap();
    assert_eq!(first, second, "both reads return the one report");
    check(&first, 2, 50000, 10);
    let runs = experiments_logged(&mut log);
    assert_eq!(runs, 1, "one experiment for the file");
}

#[test]
fn device_is_read_only() {
    let _m = Loaded::new(NAME, "").unwrap();
    let mut f = OpenOptions::new()
        .write(true)
        .open(DEV)
        .expect("open O_WRONLY (root)");
    let e = f.write(b"x").expect_err("write must fail");
    assert_eq!(Errno::from(e), Errno(libc::EINVAL), "no write_iter: EINVAL");
}

#[test]
fn invalid_params_are_einval() {
    kmod::ensure_unloaded(NAME);
    for p in [
        "workers=0",
        "workers=65",
        "iterations=0",
        "iterations=1000001",
        "irq_ticks=0",
        "irq_ticks=100001",
    ] {
        let mut log = Kmsg::new();
        assert_eq!(kmod::load(NAME, p), Err(Errno(libc::EINVAL)), "{p}");
        assert!(!kmod::is_loaded(NAME), "{p}");
        let lines: Vec<String> = log
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("locking: "))
            .collect();
        assert_eq!(lines.len(), 1, "{p}: {lines:?}");
        assert!(
            lines[0].starts_with("locking: invalid parameters: "),
            "{p}: {lines:?}"
        );
        assert!(std::fs::metadata(DEV).is_err(), "{p}: no device");
    }
    // The limits themselves are accepted.
    let m = Loaded::new(NAME, "workers=64 iterations=1 irq_ticks=1").expect("workers=64");
    check(&read_report(), 64, 1, 1);
    drop(m);
}

#[test]
fn open_file_pins_the_module() {
    let _m = Loaded::new(NAME, "").unwrap();
    let f = File::open(DEV).unwrap();
    assert_eq!(kmod::unload(NAME), Err(Errno(libc::EAGAIN)));
    drop(f);
    assert_eq!(kmod::unload(NAME), Ok(()));
}

#[test]
fn modinfo_shows_metadata() {
    kmod::assert_metadata(
        NAME,
        "Mutex, SpinLock and SpinLockIrq (chapter: Synchronization Primitives)",
    );
    let mut parms: Vec<String> = kmod::modinfo(NAME, "parm")
        .into_iter()
        .map(|p| p.split(':').next().unwrap().to_string())
        .collect();
    // `params::module_params!` emits the `.modinfo` strings in no particular order.
    parms.sort();
    assert_eq!(parms, ["irq_ticks", "iterations", "workers"]);
}
