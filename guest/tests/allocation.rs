//! The `allocation` module: KBox/KVec/VVec in init, and its ENOMEM paths, both the
//! deterministic one (`fail_alloc_at=N`) and real allocation failures injected with failslab.

use guest::kmod::{self, Loaded};
use guest::{is_debug_kernel, report_kind, Errno, Kmsg, Record};
use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

const NAME: &str = "allocation";

const SUCCESS_LINES: [&str; 4] = [
    "KBox::new(42): *boxed = 42",
    "KVec::with_capacity(10): pushed 1 and 2: len=2 capacity=10 [1, 2]",
    "VVec::with_capacity(4194304): 4194304 bytes (vmalloc), filled with 0x5a",
    "all 3 allocations succeeded",
];

/// Allocation sites of init, as named in the failure message.
const SITES: [(u32, &str); 3] = [
    (1, "KBox::new"),
    (2, "KVec::with_capacity"),
    (3, "VVec::with_capacity"),
];

/// The module's own lines (prefix stripped) from `recs`.
fn own(recs: &[Record]) -> Vec<String> {
    recs.iter()
        .filter_map(|r| r.text.strip_prefix("allocation: ").map(str::to_string))
        // The kernel's, printed with the module's name by the first out-of-tree load.
        .filter(|l| l != "loading out-of-tree module taints kernel.")
        .collect()
}

/// Kernel reports (the xtask log scan fails the run on them too; this names the step). The
/// walks never go far enough back to reach the loader's early vmalloc() calls, whose failure
/// would print a (harmless) warn_alloc stack dump, so any stack dump is unexpected here; so
/// is fault injection's own announcement (`FAULT_INJECTION: forcing a failure`, printed when
/// its `verbose` is on), which is not a report for the log scan.
fn assert_no_reports(recs: &[Record], step: &str) {
    for r in recs {
        let kind = report_kind(&r.text).or(r.text.contains("FAULT_INJECTION").then_some("fault"));
        assert!(
            kind.is_none(),
            "{step}: kernel report ({}) in the log: {:?}\nlog: {:#?}",
            kind.unwrap_or_default(),
            r.text,
            recs.iter().map(|r| &r.text).collect::<Vec<_>>()
        );
    }
}

/// Every "freeing X" pairs with an allocation made before it.
fn freed(lines: &[String]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("freeing "))
        .collect()
}

#[test]
fn load_logs_the_allocations() {
    kmod::ensure_unloaded(NAME);
    let mut log = Kmsg::new();
    let m = Loaded::new(NAME, "").expect("insmod allocation");
    let recs = log.read();
    let lines = own(&recs);
    assert_eq!(lines, SUCCESS_LINES);
    assert!(
        recs.iter()
            .filter(|r| r.text.starts_with("allocation: "))
            .all(|r| r.level == 6),
        "all at KERN_INFO: {recs:?}"
    );
    drop(m);
    assert!(!kmod::is_loaded(NAME));
    assert_eq!(
        own(&log.read()),
        ["unloading", "freeing KBox", "freeing KVec", "freeing VVec"],
        "fields are dropped in declaration order after Drop::drop"
    );
}

#[test]
fn buffer_size_param_sets_the_vmalloc_size() {
    let mut log = Kmsg::new();
    let m = Loaded::new(NAME, "buffer_size=12345").expect("insmod buffer_size=12345");
    let lines = own(&log.read());
    assert_eq!(
        lines[2],
        "VVec::with_capacity(12345): 12345 bytes (vmalloc), filled with 0x5a"
    );
    drop(m);
}

fn vmalloc_used_kib() -> i64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap();
    let l = s
        .lines()
        .find(|l| l.starts_with("VmallocUsed:"))
        .expect("VmallocUsed");
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn buffer_is_vmalloc_backed_and_freed_on_unload() {
    // 32 MiB moves VmallocUsed far more than anything else happening in the guest.
    const MIB: i64 = 1024;
    kmod::ensure_unloaded(NAME);
    let before = vmalloc_used_kib();
    let m = Loaded::new(NAME, "buffer_size=33554432").expect("insmod with 32 MiB");
    let loaded = vmalloc_used_kib();
    drop(m);
    let after = vmalloc_used_kib();
    // NR_VMALLOC is a vmstat counter: per-CPU deltas may lag a little.
    assert!(
        loaded - before >= 28 * MIB,
        "VmallocUsed grew by {} KiB only (before {before}, loaded {loaded})",
        loaded - before
    );
    assert!(
        after - before < 4 * MIB,
        "VmallocUsed did not come back after rmmod: before {before}, loaded {loaded}, after {after} KiB"
    );
}

#[test]
fn fail_alloc_at_gives_enomem_and_frees_earlier_allocations() {
    kmod::ensure_unloaded(NAME);
    let expect_freed: [&[&str]; 3] = [&[], &["KBox"], &["KVec", "KBox"]];
    for (n, what) in SITES {
        let mut log = Kmsg::new();
        assert_eq!(
            kmod::load(NAME, &format!("fail_alloc_at={n}")),
            Err(Errno(libc::ENOMEM)),
            "fail_alloc_at={n}"
        );
        assert!(
            !kmod::is_loaded(NAME),
            "a failed init leaves nothing loaded"
        );
        let recs = log.read();
        assert_no_reports(&recs, &format!("fail_alloc_at={n}"));
        let lines = own(&recs);
        let fail_line = format!("allocation {n} ({what}) failed: ENOMEM");
        let at = lines
            .iter()
            .position(|l| *l == fail_line)
            .unwrap_or_else(|| panic!("no {fail_line:?} in {lines:?}"));
        assert_eq!(
            lines[at - 1],
            format!("fail_alloc_at={n}: not calling {what}")
        );
        assert_eq!(
            lines[..at - 1],
            SUCCESS_LINES[..n as usize - 1],
            "steps before {n}"
        );
        assert_eq!(
            freed(&lines),
            expect_freed[n as usize - 1],
            "reverse order, nothing leaked"
        );
        let err = recs.iter().find(|r| r.text.ends_with(&fail_line)).unwrap();
        assert_eq!(err.level, 3, "the failure is pr_err!");
    }
    // A later normal load works.
    let m = Loaded::new(NAME, "").expect("normal load after the failures");
    drop(m);
}

#[test]
fn invalid_params_are_einval() {
    kmod::ensure_unloaded(NAME);
    for p in ["buffer_size=0", "buffer_size=67108865", "fail_alloc_at=4"] {
        let mut log = Kmsg::new();
        assert_eq!(kmod::load(NAME, p), Err(Errno(libc::EINVAL)), "{p}");
        assert!(!kmod::is_loaded(NAME));
        let lines = own(&log.read());
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("invalid parameters: "), "{lines:?}");
    }
    assert_eq!(
        kmod::load(NAME, "buffer_size=-1"),
        Err(Errno(libc::EINVAL)),
        "not a usize"
    );
    assert_eq!(
        kmod::load(NAME, "fail_alloc_at=x"),
        Err(Errno(libc::EINVAL)),
        "not a u32"
    );
    assert!(!kmod::is_loaded(NAME));
}

#[test]
fn modinfo_shows_metadata() {
    kmod::assert_metadata(
        NAME,
        "KBox, KVec and a vmalloc-backed VVec (chapter: Memory Allocation)",
    );
    let parms = kmod::modinfo(NAME, "parm");
    assert!(
        parms.iter().any(|p| p.starts_with("buffer_size:")),
        "{parms:?}"
    );
    assert!(
        parms.iter().any(|p| p.starts_with("fail_alloc_at:")),
        "{parms:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Real allocation failures with failslab.
//
// Loading a module allocates a lot before and after the module's `init` runs, and some of
// those allocations (e.g. the vmalloc() of the module file) print a warning with a stack dump
// when they fail. So the tests do not fail "the first allocation": they count the slab
// allocations of a successful `finit_module`, then walk backwards from the last one, failing
// one allocation per load. The walk passes the allocations made after init (the load still
// succeeds), then the module's own ones (ENOMEM + the module's message; a few allocations in
// there are optional, e.g. vmalloc's per-CPU preload, and the load succeeds), then the
// loader's allocation just before init (ENOMEM, no module message); it stops a few steps
// later, far from the early loader allocations.

const DEBUGFS: &str = "/sys/kernel/debug";

/// Sets fault-injection attributes (`/sys/kernel/debug/<dir>/<attr>`) and restores them on drop.
struct Failslab {
    saved: Vec<(String, String)>,
}

impl Failslab {
    fn new() -> Failslab {
        assert!(
            std::path::Path::new(&format!("{DEBUGFS}/failslab")).exists(),
            "{DEBUGFS}/failslab missing (CONFIG_FAILSLAB, CONFIG_FAULT_INJECTION_DEBUG_FS, debugfs)"
        );
        let mut f = Failslab { saved: Vec::new() };
        // No "FAULT_INJECTION: forcing a failure" + stack dump per injected failure.
        f.set_in("failslab", "verbose", "0");
        // GFP_KERNEL allocations can sleep (__GFP_DIRECT_RECLAIM): include them.
        f.set_in("failslab", "ignore-gfp-wait", "N");
        f.set_in("failslab", "cache-filter", "N");
        // Debug kernel (CONFIG_FAIL_PAGE_ALLOC): keep page allocations out of fail-nth's count
        // (GFP_KERNEL ones are skipped with ignore-gfp-wait=Y), whatever an earlier test left.
        if std::path::Path::new(&format!("{DEBUGFS}/fail_page_alloc")).exists() {
            f.set_in("fail_page_alloc", "verbose", "0");
            f.set_in("fail_page_alloc", "ignore-gfp-wait", "Y");
            f.set_in("fail_page_alloc", "probability", "0");
        }
        f
    }

    fn set_in(&mut self, dir: &str, attr: &str, value: &str) {
        let p = format!("{DEBUGFS}/{dir}/{attr}");
        if !self.saved.iter().any(|(a, _)| *a == p) {
            let old = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
            self.saved.push((p.clone(), old.trim().to_string()));
        }
        std::fs::write(&p, value).unwrap_or_else(|e| panic!("write {value} to {p}: {e}"));
    }

    /// Set a failslab attribute.
    fn set(&mut self, attr: &str, value: &str) {
        self.set_in("failslab", attr, value);
    }

    fn get(&self, attr: &str) -> i64 {
        let p = format!("{DEBUGFS}/failslab/{attr}");
        std::fs::read_to_string(&p).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Failslab {
    fn drop(&mut self) {
        for (p, v) in self.saved.iter().rev() {
            let _ = std::fs::write(p, v);
        }
    }
}

/// A per-thread /proc file (fail-nth, make-it-fail), opened in advance so that opening it
/// does not allocate while failure injection is armed. These files cannot seek: use
/// pread/pwrite at offset 0.
struct TaskKnob(File);

impl TaskKnob {
    fn open(name: &str) -> TaskKnob {
        let p = format!("/proc/thread-self/{name}");
        TaskKnob(
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .unwrap_or_else(|e| panic!("{p}: {e}")),
        )
    }

    fn set(&mut self, v: u64) {
        let s = v.to_string();
        assert_eq!(self.0.write_at(s.as_bytes(), 0).unwrap(), s.len());
    }

    fn get(&mut self) -> u64 {
        let mut buf = [0u8; 32];
        let n = self.0.read_at(&mut buf, 0).unwrap();
        std::str::from_utf8(&buf[..n])
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// `finit_module` on an already open file, with `knob` set to `on` right before the syscall
/// and to `off` (if any) right after it.
fn finit_armed(ko: &File, knob: &mut TaskKnob, on: u64, off: Option<u64>) -> Result<(), Errno> {
    knob.set(on);
    let r = kmod::finit(ko, c"");
    if let Some(v) = off {
        knob.set(v);
    }
    r
}

/// What one load with one injected failure did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Loaded (the failed allocation was after init, or nothing failed).
    Loaded,
    /// ENOMEM from the module's own allocation `site`.
    ModuleEnomem { site: u32 },
    /// ENOMEM from the loader (no module message).
    LoaderEnomem,
}

/// Classify a load result and its log; asserts what must hold in every case.
fn classify(res: Result<(), Errno>, recs: &[Record], step: &str) -> Outcome {
    assert_no_reports(recs, step);
    let lines = own(recs);
    match res {
        Ok(()) => {
            assert!(kmod::is_loaded(NAME), "{step}: success but not loaded");
            assert_eq!(lines, SUCCESS_LINES, "{step}");
            kmod::unload(NAME).expect("rmmod after a successful load");
            Outcome::Loaded
        }
        Err(Errno(libc::ENOMEM)) => {
            assert!(!kmod::is_loaded(NAME), "{step}: ENOMEM but loaded");
            let site = SITES.iter().find_map(|(n, what)| {
                let l = format!("allocation {n} ({what}) failed: ENOMEM");
                lines.contains(&l).then_some(*n)
            });
            match site {
                Some(n) => {
                    assert!(
                        !lines.iter().any(|l| l.starts_with("fail_alloc_at")),
                        "{step}"
                    );
                    assert_eq!(
                        lines[..n as usize - 1],
                        SUCCESS_LINES[..n as usize - 1],
                        "{step}"
                    );
                    let expect: &[&str] = [&[][..], &["KBox"], &["KVec", "KBox"]][n as usize - 1];
                    assert_eq!(freed(&lines), expect, "{step}: earlier allocations freed");
                    Outcome::ModuleEnomem { site: n }
                }
                None => {
                    // The loader failed (init did not run: once init succeeded, the load
                    // cannot fail any more).
                    assert!(
                        lines.is_empty(),
                        "{step}: loader ENOMEM with module lines {lines:?}"
                    );
                    Outcome::LoaderEnomem
                }
            }
        }
        Err(e) => {
            panic!("{step}: finit_module failed with {e:?}; only ENOMEM or success are allowed")
        }
    }
}

/// Walk results: which module sites failed, and every step's position and outcome.
struct Walk {
    sites: BTreeSet<u32>,
    steps: Vec<(i64, Outcome)>,
}

impl Walk {
    fn new() -> Walk {
        Walk {
            sites: BTreeSet::new(),
            steps: Vec::new(),
        }
    }

    fn outcomes(&self) -> impl Iterator<Item = &Outcome> {
        self.steps.iter().map(|(_, o)| o)
    }

    /// Record an outcome at position `at`; `true` when the walk should stop (below init).
    fn record(&mut self, at: i64, o: Outcome) -> bool {
        if let Outcome::ModuleEnomem { site } = o {
            self.sites.insert(site);
        }
        self.steps.push((at, o));
        let is_module = |o: &Outcome| matches!(o, Outcome::ModuleEnomem { .. });
        let loader_after = |from_last: bool| {
            let pos = if from_last {
                self.outcomes()
                    .collect::<Vec<_>>()
                    .iter()
                    .rposition(|o| is_module(o))
            } else {
                self.outcomes().position(is_module)
            };
            pos.map_or(0, |p| {
                self.outcomes()
                    .skip(p + 1)
                    .filter(|o| **o == Outcome::LoaderEnomem)
                    .count()
            })
        };
        // Every site of init failed and the walk is past init (the loader's allocation just
        // before init failed), or it is clearly below init.
        (self.sites.len() == 3 && loader_after(true) >= 1) || loader_after(false) >= 8
    }

    /// Positions of the module's failures (highest first).
    fn module_positions(&self) -> Vec<i64> {
        self.steps
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::ModuleEnomem { .. }))
            .map(|(at, _)| *at)
            .collect()
    }

    fn check(&self, how: &str, all_sites: bool) {
        eprintln!("{how}: {:?}", self.steps);
        assert!(
            self.outcomes()
                .any(|o| matches!(o, Outcome::ModuleEnomem { .. })),
            "{how}: no injected failure hit the module's init"
        );
        if all_sites {
            assert_eq!(
                self.sites,
                BTreeSet::from([1, 2, 3]),
                "{how}: every allocation of init failed at least once"
            );
        }
        // Note: a failure inside init may still let the load succeed: vmalloc() preloads a
        // spare vmap_area per CPU and tolerates that allocation failing.
        // And a normal load still works.
        let m = Loaded::new(NAME, "").expect("normal load after failslab");
        drop(m);
    }
}

const MAX_STEPS: usize = 150;

#[test]
fn failslab_fail_nth_walks_through_init() {
    kmod::ensure_unloaded(NAME);
    let _fs = Failslab::new();
    let ko = File::open(kmod::path(NAME)).unwrap();
    let mut nth = TaskKnob::open("fail-nth");

    // Count the slab allocations of a successful load.
    const BIG: u64 = 1_000_000;
    let mut log = Kmsg::new();
    let res = finit_armed(&ko, &mut nth, BIG, None);
    let total = BIG - nth.get();
    nth.set(0);
    assert_eq!(res, Ok(()), "calibration load");
    assert_eq!(own(&log.read()), SUCCESS_LINES);
    kmod::unload(NAME).unwrap();
    eprintln!("fail-nth: a successful load made {total} slab allocations");
    assert!(
        total > 50,
        "calibration: a module load made only {total} slab allocations"
    );

    let mut walk = Walk::new();
    for k in 0..MAX_STEPS as u64 {
        let n = total - k;
        assert!(
            n > total / 2,
            "walked too far back (fail-nth={n} of {total}): {:?}",
            walk.steps
        );
        let mut log = Kmsg::new();
        let res = finit_armed(&ko, &mut nth, n, None);
        nth.set(0);
        let o = classify(res, &log.read(), &format!("fail-nth={n} of {total}"));
        if walk.record(n as i64, o) {
            break;
        }
    }
    // The number of allocations before init varies by one or two between loads (vmalloc's
    // per-CPU preload), so a site may have been stepped over: walk the init window again. The
    // debug kernel allocates much more around every allocation (kmemleak metadata, which may
    // fail without consequence, debugobjects, stack depot), so the count varies more there:
    // it gets more passes and must only show at least one failure of the module's init.
    let debug = is_debug_kernel();
    for pass in 0..if debug { 6 } else { 4 } {
        let pos = walk.module_positions();
        if walk.sites.len() == 3 || pos.is_empty() {
            break;
        }
        let hi = pos.iter().max().unwrap() + 2;
        let lo = pos.iter().min().unwrap() - 3 - pass;
        for n in (lo.max(1)..=hi).rev() {
            let mut log = Kmsg::new();
            let res = finit_armed(&ko, &mut nth, n as u64, None);
            nth.set(0);
            let o = classify(
                res,
                &log.read(),
                &format!("pass {pass}: fail-nth={n} of {total}"),
            );
            walk.record(n, o);
        }
    }
    walk.check("fail-nth", !debug);
}

#[test]
fn failslab_space_probability_task_filter_walks_through_init() {
    kmod::ensure_unloaded(NAME);
    let mut fs = Failslab::new();
    // Fail only this thread (make-it-fail), always (probability 100, interval 1), at most once
    // per load (times 1), after `space` bytes of allocations.
    fs.set("task-filter", "Y");
    fs.set("probability", "100");
    fs.set("interval", "1");
    fs.set("times", "0");
    let ko = File::open(kmod::path(NAME)).unwrap();
    let mut fail = TaskKnob::open("make-it-fail");

    // Bytes allocated by a successful load: start with a budget that never runs out.
    const BIG: i64 = 1 << 30;
    fs.set("space", &BIG.to_string());
    fs.set("times", "1");
    let mut log = Kmsg::new();
    let res = finit_armed(&ko, &mut fail, 1, Some(0));
    assert_eq!(res, Ok(()), "calibration load");
    assert_eq!(fs.get("times"), 1, "nothing failed during calibration");
    let total = BIG - fs.get("space");
    eprintln!("space: a successful load allocated {total} bytes (object sizes)");
    // Far more than this; a smaller number means the calibration went wrong, and walking from
    // it would fail the loader's first allocations.
    assert!(
        total > 4096,
        "calibration: a load allocated only {total} bytes"
    );
    assert_eq!(own(&log.read()), SUCCESS_LINES);
    kmod::unload(NAME).unwrap();

    // With space = s, the first allocation that finds space <= its size fails; `space` then
    // holds what was left, so `s - left` is where the failed allocation started. Using that as
    // the next budget fails the allocation just before it. The byte count before init varies
    // from load to load (vmalloc's per-CPU preloads), more than the allocation count does, so
    // this walk only has to hit the module's init at least once (the fail-nth walk above
    // requires every site).
    let mut walk = Walk::new();
    let mut s = total;
    for _ in 0..MAX_STEPS {
        // init is near the end of a load: never walk into the loader's first allocations.
        assert!(
            s > total / 2,
            "walked too far back (space={s} of {total}): {:?}",
            walk.steps
        );
        fs.set("space", &s.to_string());
        fs.set("times", "1");
        let mut log = Kmsg::new();
        let res = finit_armed(&ko, &mut fail, 1, Some(0));
        let injected = fs.get("times") == 0;
        let left = fs.get("space");
        fs.set("times", "0");
        eprintln!("space={s}: {res:?}, injected={injected}, left={left}");
        let o = classify(res, &log.read(), &format!("space={s} of {total}"));
        if !injected {
            assert_eq!(
                o,
                Outcome::Loaded,
                "space={s}: failed without an injected failure"
            );
            s -= 1;
            continue;
        }
        if walk.record(s, o) {
            break;
        }
        s -= left.max(1);
    }
    walk.check("space", false);
}
