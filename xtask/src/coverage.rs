//! `coverage`: which lines of our modules the guest tests (and the fuzzer) run, from KCOV.
//!
//! The debug kernel has `CONFIG_KCOV` (`kernel/debug.config`) and only code built with
//! `KCOV_INSTRUMENT := y` is instrumented: our modules (each `Kbuild` has the line). The
//! default profile has no KCOV and no debug info: coverage needs `--profile debug`, always.
//!
//! 1. Guest: the job exports `RKM_KCOV_DIR`; every thread of the test binaries then collects
//!    its own KCOV trace (`guest/src/kcov.rs`) and writes the distinct PCs it hit, relative
//!    to their module section (`MODULE SECTION 0xOFFSET`), to a file there; `kfuzz` does the
//!    same per worker. The job sends `sort | uniq -c` of all of them back.
//! 2. Host: the coverage points of each module are the calls to
//!    `__sanitizer_cov_trace_pc` in its `.ko` (relocations against that symbol: the PC KCOV
//!    records is the call's return address, `r_offset + 4`). Each point is mapped to its
//!    source lines (the call instruction, with every inlined frame) by `llvm-symbolizer` on
//!    the module linked for decoding (`decode::Symbols::linked_module`). A line of
//!    `modules/` or `modules-c/` is covered when a point on it was hit.
//! 3. Output: `target/coverage/lcov.info`, `target/coverage/html/index.html` (Debian's
//!    `genhtml`) and a table per module: lines hit / lines, functions hit / functions.
//!
//! The test binaries run one test at a time (`RUST_TEST_THREADS=1`): the PCs of a test's
//! thread are resolved against the module layout when the thread ends, and a test beside it
//! that reloads a module would move that module first.
//!
//! Not covered, by KCOV's design: code that runs outside the test's own task (kernel
//! threads, workqueue items, timers and hrtimers, softirqs, interrupt handlers, RCU
//! callbacks), and what the job's shell runs (`modprobe` in the KUnit pass). A thread that
//! runs more than `THREAD_WORDS` PCs of module code without unloading a module keeps only
//! the first ones.

use crate::build::{self, Artifacts};
use crate::decode::{self, Location, Symbols};
use crate::kernel::{self, Profile};
use crate::protocol::Job;
use crate::toolchain::llvm_tool;
use crate::vm::{self, JobBoot, Machine};
use crate::{coverage_gaps, flags, initramfs, logscan, setup, util};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the guest collects (`RKM_KCOV_DIR`).
pub const GUEST_DIR: &str = "/tmp/kcov";
/// `guest::kcov::DIR_ENV`.
pub const DIR_ENV: &str = "RKM_KCOV_DIR";
/// The name of the collected PCs on the results channel.
const SENT: &str = "kcov";
/// The instrumentation's callee.
const TRACE_PC: &str = "__sanitizer_cov_trace_pc";

impl flags::Coverage {
    /// Returns false when the kernel log has a report or a test failed.
    pub fn run(self) -> Result<bool> {
        setup::ensure_ready()?;
        let fuzz = (self.fuzz_seconds > 0).then_some(FuzzRun {
            seconds: self.fuzz_seconds,
            seed: self.seed,
            workers: self.workers,
            guided: !self.random,
        });
        if !self.merge.is_empty() {
            return merge(&self.merge);
        }
        collect(
            self.vcpus.machine(),
            !self.no_tests,
            &self.filter,
            fuzz,
            self.timeout,
        )
    }
}

/// A fuzz campaign inside a coverage run.
#[derive(Debug, Clone, Copy)]
pub struct FuzzRun {
    pub seconds: u64,
    pub seed: u64,
    pub workers: u64,
    pub guided: bool,
}

/// Boot the debug kernel, run the tests (`tests`; with `filters`, a test binary whose name
/// contains one runs whole, else its tests whose names contain one) and/or `fuzz` with KCOV, and
/// write and print the coverage. False when the kernel log has a report or a test binary
/// failed.
pub fn collect(
    machine: Machine,
    tests: bool,
    filters: &[String],
    fuzz: Option<FuzzRun>,
    timeout: u64,
) -> Result<bool> {
    let k = kernel::ensure(Profile::Debug, false)?;
    let config = std::fs::read_to_string(k.build.join(".config")).unwrap_or_default();
    if !config.lines().any(|l| l == "CONFIG_KCOV=y") {
        bail!("the debug kernel has no CONFIG_KCOV (kernel/debug.config)");
    }
    let art = build::build_all(&k)?;
    let mut job = Job::new(machine);
    job.report_cpus()
        // World-writable: a test thread that dropped to uid 65534 (`as_nobody`) writes its
        // coverage there too.
        .shell(&format!("mkdir -p {GUEST_DIR} && chmod 1777 {GUEST_DIR}"))
        .export(DIR_ENV, GUEST_DIR);
    if tests {
        // One test at a time: a thread's PCs are resolved against the module layout when
        // it ends, so a test running beside it must not unload or reload a module first
        // (fifo_hardening, faults and the edu tests do).
        job.export("RUST_TEST_THREADS", "1");
        for (name, _) in &art.tests {
            let whole = filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
            let args: Vec<&str> = if whole {
                Vec::new()
            } else {
                filters.iter().map(String::as_str).collect()
            };
            job.run_test_binary(name, &args);
        }
    }
    if let Some(f) = fuzz {
        let (seed, seconds, workers) = (
            f.seed.to_string(),
            f.seconds.to_string(),
            f.workers.to_string(),
        );
        let mut argv = vec![
            "kfuzz",
            "--seed",
            &seed,
            "--seconds",
            &seconds,
            "--workers",
            &workers,
        ];
        if f.guided {
            argv.push("--guided");
        }
        argv.push(Job::NEW_DEVICES);
        // Both edu drivers get a device (else the first loaded binds both), as in `fuzz`.
        job.remember_devices()
            .edu_one_device_each(false)
            .load_modules(&initramfs::module_names(&art))
            .new_devices()
            .run_marked("kfuzz", &argv);
    }
    job.send_output(
        SENT,
        &format!("cat {GUEST_DIR}/* 2>/dev/null | sort | uniq -c"),
    );
    eprintln!(
        "coverage: booting {} (KCOV) for {}{}",
        k.release()?,
        if tests { "the guest tests" } else { "" },
        match fuzz {
            Some(f) => format!(
                "{}{} s of {} fuzzing",
                if tests { " and " } else { "" },
                f.seconds,
                if f.guided {
                    "coverage-guided"
                } else {
                    "random"
                }
            ),
            None => String::new(),
        }
    );
    let o = vm::boot_job(&k, &art, &job, &JobBoot::quiet("coverage", timeout))?;
    let mut ok = true;
    for p in o.results.programs() {
        if p.status != 0 {
            eprintln!("coverage: {} exited {}", p.name, p.status);
            ok = false;
        }
        if p.name == "kfuzz" {
            print!("{}", p.output);
        }
    }
    let syms = Symbols::new(&k, &art);
    // The report a test provokes on purpose (warn_demo) is excused as in `test`.
    let reports = crate::expected::split(&o.dmesg, logscan::scan(&o.dmesg)).unexpected;
    for r in &reports {
        println!("[{}]\n{}", r.kind, decode::annotate(&r.text, &syms));
    }
    ok &= reports.is_empty();
    let sent = o
        .results
        .file(SENT)
        .context("the guest did not send its coverage back")?;
    let dir = util::target_dir().join("coverage");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("pcs.txt"), &sent)?;
    write_reports(&syms, &art, &sent)?;
    Ok(ok)
}

/// The coverage of saved runs (`pcs.txt` of earlier `coverage` runs, same modules) taken
/// together, without booting: a line is covered when any run reached it.
pub fn merge(files: &[PathBuf]) -> Result<bool> {
    let k = kernel::ensure(Profile::Debug, false)?;
    let art = build::build_all(&k)?;
    let mut sent = String::new();
    for f in files {
        sent += &std::fs::read_to_string(f).with_context(|| format!("{}", f.display()))?;
    }
    eprintln!("coverage: merging {} saved runs", files.len());
    write_reports(&Symbols::new(&k, &art), &art, &sent)?;
    Ok(true)
}

/// From the PCs sent back (`uniq -c` lines): `lcov.info`, the HTML, `uncovered.txt` and the
/// table.
fn write_reports(syms: &Symbols, art: &Artifacts, sent: &str) -> Result<()> {
    let hits = parse_hits(sent);
    let modules = measure(syms, art, &hits)?;
    let dir = util::target_dir().join("coverage");
    std::fs::create_dir_all(&dir)?;
    let lcov = dir.join("lcov.info");
    std::fs::write(&lcov, lcov_info(&modules))?;
    let uncovered = dir.join("uncovered.txt");
    std::fs::write(
        &uncovered,
        coverage_gaps::report(&merged(&modules).uncovered()),
    )?;
    let html = genhtml(&lcov, &dir.join("html"));
    print!("{}", table(&modules));
    let unmatched: u64 = hits.unmatched.values().sum();
    println!(
        "coverage: {} distinct PCs hit in module code ({} not at a known coverage point); \
         lcov {}; html {}; uncovered lines by kind {}",
        hits.points.len(),
        unmatched,
        lcov.display(),
        match html {
            Ok(p) => p.display().to_string(),
            Err(e) => format!("not written ({e:#})"),
        },
        uncovered.display()
    );
    Ok(())
}

/// The PCs the guest reported.
#[derive(Debug, Default)]
pub struct Hits {
    /// `(module, section, offset)` -> in how many flushes (threads, workers) it was hit.
    pub points: BTreeMap<(String, String, u64), u64>,
    /// Lines that did not parse or PCs outside every module (`?`), with their counts.
    pub unmatched: BTreeMap<String, u64>,
}

/// Parse `uniq -c` of the guest's `MODULE SECTION 0xOFFSET` lines.
pub fn parse_hits(text: &str) -> Hits {
    let mut h = Hits::default();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let w: Vec<&str> = line.split_whitespace().collect();
        let parsed = match w.as_slice() {
            [n, m, s, off] if *m != "?" => n.parse::<u64>().ok().zip(
                off.strip_prefix("0x")
                    .and_then(|o| u64::from_str_radix(o, 16).ok())
                    .map(|o| (m.to_string(), s.to_string(), o)),
            ),
            _ => None,
        };
        match parsed {
            Some((n, key)) => *h.points.entry(key).or_default() += n,
            None => {
                let n = w.first().and_then(|n| n.parse().ok()).unwrap_or(1);
                *h.unmatched.entry(line.trim().to_string()).or_default() += n;
            }
        }
    }
    h
}

/// One coverage point of a module: where KCOV's PC is, and its source lines.
#[derive(Debug, Clone)]
pub struct Point {
    pub section: String,
    /// The PC KCOV records, relative to the section (the call's return address).
    pub offset: u64,
    /// Innermost first (inlined frames), paths absolute.
    pub locations: Vec<Location>,
    /// Its block ends in a panic, `BUG` or `WARN` ([`coverage_gaps::assert_points`]).
    pub assert: bool,
    /// It is in a function nothing calls ([`coverage_gaps::dead_points`]).
    pub dead: bool,
}

/// `(section, r_offset)` of every call to `__sanitizer_cov_trace_pc` in `llvm-readelf -rW`
/// output of a relocatable object.
pub fn trace_pc_calls(readelf_r: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    for line in readelf_r.lines() {
        if let Some(rest) = line.strip_prefix("Relocation section '") {
            section = rest
                .split('\'')
                .next()
                .and_then(|s| s.strip_prefix(".rela"))
                .map(str::to_string);
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() >= 5 && w[4] == TRACE_PC {
            if let (Some(s), Ok(off)) = (&section, u64::from_str_radix(w[0], 16)) {
                out.push((s.clone(), off));
            }
        }
    }
    out
}

/// Section name -> address in an ELF file (`llvm-readelf -SW`).
fn section_addresses(elf: &Path) -> Result<BTreeMap<String, u64>> {
    let out = util::output(Command::new(llvm_tool("llvm-readelf")).arg("-SW").arg(elf))?;
    let mut m = BTreeMap::new();
    for line in out.lines() {
        // `  [ 1] .text   PROGBITS   0000000000201000 001000 ...`
        let Some((_, rest)) = line.split_once(']') else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        if w.len() >= 3 {
            if let Ok(a) = u64::from_str_radix(w[2], 16) {
                m.insert(w[0].to_string(), a);
            }
        }
    }
    Ok(m)
}

/// Every coverage point of module `name` with its source lines.
pub fn module_points(syms: &Symbols, name: &str, ko: &Path) -> Result<Vec<Point>> {
    let relocs = util::output(Command::new(llvm_tool("llvm-readelf")).arg("-rW").arg(ko))?;
    let calls = trace_pc_calls(&relocs);
    if calls.is_empty() {
        return Ok(Vec::new());
    }
    let linked = syms.linked_module(name)?;
    let bases = section_addresses(&linked)?;
    let facts = coverage_gaps::module_facts(ko, TRACE_PC)?;
    let mut points = Vec::new();
    let mut addrs = Vec::new();
    for (section, off) in calls {
        let Some(base) = bases.get(&section) else {
            continue;
        };
        // The call instruction starts one byte before its rel32 field.
        addrs.push(base + off - 1);
        points.push(Point {
            assert: facts.asserts.contains(&(section.clone(), off)),
            dead: facts.dead.contains(&(section.clone(), off)),
            section,
            offset: off + 4,
            locations: Vec::new(),
        });
    }
    for (p, locs) in points.iter_mut().zip(decode::symbolize(&linked, &addrs)?) {
        p.locations = locs;
    }
    Ok(points)
}

/// One source line or function's coverage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub hit: usize,
    pub total: usize,
}

/// A module's coverage.
#[derive(Debug, Clone)]
pub struct ModuleCoverage {
    pub module: String,
    /// Distinct coverage points, and how many were hit.
    pub points: Counts,
    /// file -> line -> hit count (0: not hit), for the files of this repository.
    pub lines: BTreeMap<PathBuf, BTreeMap<u32, u64>>,
    /// file -> (function, start line) -> hit count.
    pub functions: BTreeMap<PathBuf, BTreeMap<(String, u32), u64>>,
    /// Each line's function and what its points are ([`coverage_gaps::LineFact`]).
    pub facts: coverage_gaps::LineFacts,
}

impl ModuleCoverage {
    pub fn line_counts(&self) -> Counts {
        count(self.lines.values().flat_map(|l| l.values()))
    }

    pub fn function_counts(&self) -> Counts {
        count(self.functions.values().flat_map(|f| f.values()))
    }

    /// The lines no PC reached, with why.
    pub fn uncovered(&self) -> Vec<coverage_gaps::Uncovered> {
        coverage_gaps::classify(&self.lines, &self.facts)
    }
}

fn count<'a>(hits: impl Iterator<Item = &'a u64>) -> Counts {
    let mut c = Counts::default();
    for h in hits {
        c.total += 1;
        if *h > 0 {
            c.hit += 1;
        }
    }
    c
}

/// Is this source file ours (a module's, not the kernel crate's or `core`'s)?
/// The path without `.` and `..` (a module's `#[path = "../common/params.rs"]`), so that
/// every module's copy of a shared file is one file.
fn ours(file: &str) -> Option<PathBuf> {
    let root = util::repo_root();
    let mut p = PathBuf::new();
    for c in Path::new(file).components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                p.pop();
            }
            c => p.push(c),
        }
    }
    let rel = p.strip_prefix(&root).ok()?;
    let top = rel.components().next()?.as_os_str().to_str()?;
    build::MODULE_DIRS.contains(&top).then_some(p)
}

/// Coverage of every module from its points and the hits.
pub fn coverage_of(module: &str, points: &[Point], hits: &Hits) -> ModuleCoverage {
    let mut m = ModuleCoverage {
        module: module.to_string(),
        points: Counts::default(),
        lines: BTreeMap::new(),
        functions: BTreeMap::new(),
        facts: BTreeMap::new(),
    };
    let mut seen = BTreeSet::new();
    for p in points {
        // The function the point's code is in (its outermost inlined frame).
        let outer = p.locations.last().map_or("", |l| l.function.as_str());
        let n = hits
            .points
            .get(&(module.to_string(), p.section.clone(), p.offset))
            .copied()
            .unwrap_or(0);
        if seen.insert((p.section.clone(), p.offset)) {
            m.points.total += 1;
            if n > 0 {
                m.points.hit += 1;
            }
        }
        for l in &p.locations {
            let Some(file) = ours(&l.file) else {
                continue;
            };
            if l.line == 0 {
                continue;
            }
            let e = m
                .lines
                .entry(file.clone())
                .or_default()
                .entry(l.line)
                .or_default();
            *e = (*e).max(n);
            m.facts
                .entry((file.clone(), l.line))
                .or_insert_with(|| coverage_gaps::LineFact::new(&l.function))
                .add(p.assert, p.dead, outer);
            let f = m
                .functions
                .entry(file)
                .or_default()
                .entry((l.function.clone(), l.start_line))
                .or_default();
            *f = (*f).max(n);
        }
    }
    m
}

/// Map the hits onto every built module.
pub fn measure(syms: &Symbols, art: &Artifacts, hits: &Hits) -> Result<Vec<ModuleCoverage>> {
    let mut out = Vec::new();
    for ko in &art.modules {
        let name = build::module_name(ko);
        let points = module_points(syms, &name, ko)?;
        out.push(coverage_of(&name, &points, hits));
    }
    Ok(out)
}

/// All modules as one: a line of a file that several modules build (`common/params.rs`) is
/// hit when any copy was, and an assertion line when it is one in every copy.
pub fn merged(modules: &[ModuleCoverage]) -> ModuleCoverage {
    let mut all = ModuleCoverage {
        module: "all".into(),
        points: Counts::default(),
        lines: BTreeMap::new(),
        functions: BTreeMap::new(),
        facts: BTreeMap::new(),
    };
    for m in modules {
        for (f, ls) in &m.lines {
            let e = all.lines.entry(f.clone()).or_default();
            for (l, n) in ls {
                let v = e.entry(*l).or_default();
                *v = (*v).max(*n);
            }
        }
        for (f, fs) in &m.functions {
            let e = all.functions.entry(f.clone()).or_default();
            for (k, n) in fs {
                let v = e.entry(k.clone()).or_default();
                *v = (*v).max(*n);
            }
        }
        for (k, fact) in &m.facts {
            all.facts
                .entry(k.clone())
                .or_insert_with(|| fact.clone())
                .merge(fact);
        }
        all.points.hit += m.points.hit;
        all.points.total += m.points.total;
    }
    all
}

/// The lcov tracefile: one record per source file, merged over the modules that contain
/// it (a line is hit when any module's copy was).
pub fn lcov_info(modules: &[ModuleCoverage]) -> String {
    let all = merged(modules);
    let (lines, funcs) = (&all.lines, &all.functions);
    let mut s = String::from("TN:\n");
    for (file, ls) in lines {
        let _ = writeln!(s, "SF:{}", file.display());
        let fs = funcs.get(file).cloned().unwrap_or_default();
        for (name, start) in fs.keys() {
            let _ = writeln!(s, "FN:{},{name}", (*start).max(1));
        }
        for ((name, _), n) in &fs {
            let _ = writeln!(s, "FNDA:{n},{name}");
        }
        let _ = writeln!(s, "FNF:{}", fs.len());
        let _ = writeln!(s, "FNH:{}", fs.values().filter(|n| **n > 0).count());
        for (l, n) in ls {
            let _ = writeln!(s, "DA:{l},{n}");
        }
        let _ = writeln!(s, "LF:{}", ls.len());
        let _ = writeln!(s, "LH:{}", ls.values().filter(|n| **n > 0).count());
        s.push_str("end_of_record\n");
    }
    s
}

/// `genhtml` (Debian's `lcov`) into `out`; the index page.
fn genhtml(lcov: &Path, out: &Path) -> Result<PathBuf> {
    let mut c = Command::new("genhtml");
    c.arg("--quiet")
        .args(["--title", "rust-kernel-modules (KCOV)"])
        .arg("--output-directory")
        .arg(out)
        .arg(lcov);
    let (ok, text) = util::capture(&mut c)?;
    if !ok {
        bail!("genhtml failed: {text}");
    }
    Ok(out.join("index.html"))
}

/// The per-module table; the last column splits the lines not hit by kind
/// ([`coverage_gaps::Gap`]: not reached / not traced / assert / dead copy).
pub fn table(modules: &[ModuleCoverage]) -> String {
    let pct = |c: &Counts| {
        if c.total == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * c.hit as f64 / c.total as f64)
        }
    };
    let row = |name: &str, l: &Counts, f: &Counts, p: &Counts, g: [usize; 4]| {
        format!(
            "{:<16} {:>14} {:>7} {:>16} {:>7} {:>14} {:>24}\n",
            name,
            format!("{}/{}", l.hit, l.total),
            pct(l),
            format!("{}/{}", f.hit, f.total),
            pct(f),
            format!("{}/{}", p.hit, p.total),
            format!("{}/{}/{}/{}", g[0], g[1], g[2], g[3])
        )
    };
    let mut s = format!(
        "{:<16} {:>14} {:>7} {:>16} {:>7} {:>14} {:>24}\n",
        "module", "lines hit", "", "functions hit", "", "points hit", "unhit: reach/trc/as/dead"
    );
    let mut all = (Counts::default(), Counts::default(), Counts::default());
    let mut gaps = [0; 4];
    for m in modules {
        let (l, f) = (m.line_counts(), m.function_counts());
        let g = coverage_gaps::counts(&m.uncovered());
        s += &row(&m.module, &l, &f, &m.points, g);
        all.0.hit += l.hit;
        all.0.total += l.total;
        all.1.hit += f.hit;
        all.1.total += f.total;
        all.2.hit += m.points.hit;
        all.2.total += m.points.total;
        for (a, b) in gaps.iter_mut().zip(g) {
            *a += b;
        }
    }
    s += &row("all", &all.0, &all.1, &all.2, gaps);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_pc_calls_come_from_the_relocations() {
        let r = "\
Relocation section '.rela.text' at offset 0x39c8 contains 3 entries:
    Offset             Info             Type               Symbol's Value  Symbol's Name + Addend
000000000000001d  0000005300000004 R_X86_64_PLT32         0000000000000000 __sanitizer_cov_trace_pc - 4
0000000000000022  0000001200000004 R_X86_64_PLT32         0000000000000000 __kmalloc - 4
Relocation section '.rela.init.text' at offset 0x4000 contains 1 entries:
0000000000000005  0000005300000004 R_X86_64_PLT32         0000000000000000 __sanitizer_cov_trace_pc - 4
";
        assert_eq!(
            trace_pc_calls(r),
            [(".text".to_string(), 0x1d), (".init.text".to_string(), 5)]
        );
    }

    #[test]
    fn hits_parse_from_uniq_c() {
        let h = parse_hits(
            "      3 rfifo .text 0x21\n      1 rfifo .text 0x40\n      2 ? 0xffffffff81000000\n\n",
        );
        assert_eq!(h.points.len(), 2);
        assert_eq!(h.points[&("rfifo".into(), ".text".into(), 0x21)], 3);
        assert_eq!(h.unmatched.values().sum::<u64>(), 2);
    }

    fn loc(file: &Path, line: u32, function: &str) -> Location {
        Location {
            function: function.into(),
            file: file.display().to_string(),
            line,
            column: 1,
            start_line: 10,
        }
    }

    #[test]
    fn lines_and_functions_count_our_files_only() {
        let ours = util::repo_root().join("modules/m/m.rs");
        let kernel = Path::new("/k/rust/kernel/lib.rs");
        let points = vec![
            Point {
                section: ".text".into(),
                offset: 0x21,
                locations: vec![loc(kernel, 5, "k::f"), loc(&ours, 12, "m::g")],
                assert: false,
                dead: false,
            },
            Point {
                section: ".text".into(),
                offset: 0x40,
                locations: vec![loc(&ours, 13, "m::g")],
                assert: true,
                dead: false,
            },
            Point {
                section: ".text".into(),
                offset: 0x60,
                locations: vec![loc(&ours, 20, "m::h")],
                assert: false,
                dead: true,
            },
        ];
        let hits = parse_hits("  2 m .text 0x21\n  1 other .text 0x40\n");
        let c = coverage_of("m", &points, &hits);
        assert_eq!(c.line_counts(), Counts { hit: 1, total: 3 });
        assert_eq!(c.function_counts(), Counts { hit: 1, total: 2 });
        assert_eq!(c.points, Counts { hit: 1, total: 3 });
        let lcov = lcov_info(std::slice::from_ref(&c));
        assert!(lcov.contains(&format!("SF:{}\n", ours.display())), "{lcov}");
        assert!(
            lcov.contains("DA:12,2\nDA:13,0\nDA:20,0\nLF:3\nLH:1\n"),
            "{lcov}"
        );
        assert!(
            lcov.contains("FNDA:2,m::g\n") && lcov.contains("FNH:1\n"),
            "{lcov}"
        );
        assert!(!lcov.contains("/k/rust"), "{lcov}");
        let t = table(&[c]);
        assert!(
            t.contains("1/3") && t.contains("33.3%") && t.contains("1/2") && t.contains("0/0/1/1"),
            "{t}"
        );
    }
}
