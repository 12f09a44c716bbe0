//! `verdict`: what a test run's guest sent back, turned into one verdict per test.
//!
//! Sources of results: (1) the libtest binaries from `guest/tests/` (their `test NAME ...
//! ok|FAILED|ignored` lines, each binary's output framed on the results channel, see
//! `protocol`),
//! (2) KUnit suites of the built-in kernel and of our modules (KTAP in the kernel log, parsed
//! by `kunit.py`), (3) the kernel log scan (any BUG/WARNING/Oops/... fails the run).
//! Output: one line per test, then `(N skipped ...)` when some were, and last `N passed, N failed`; JUnit XML under
//! `target/test-results/`.

use crate::decode::{self, Symbols};
use crate::protocol::Results;
use crate::vm::Booted;
use crate::{ktap, logscan, util};
use anyhow::Result;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// One test verdict.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub name: String,
    pub status: Status,
    pub detail: String,
}

/// Parse one libtest binary's output. `bin` prefixes the names; `rc` is its exit status.
pub fn parse_libtest(bin: &str, out: &str, rc: i32) -> Vec<TestResult> {
    let mut results: Vec<TestResult> = Vec::new();
    for line in out.lines() {
        let Some(rest) = line.strip_prefix("test ") else {
            continue;
        };
        let Some((name, verdict)) = rest.rsplit_once(" ... ") else {
            continue;
        };
        let status = match verdict.trim() {
            "ok" => Status::Pass,
            "FAILED" => Status::Fail,
            v if v.starts_with("ignored") => Status::Skip,
            _ => continue,
        };
        results.push(TestResult {
            name: format!("{bin}::{}", name.trim()),
            status,
            detail: String::new(),
        });
    }
    // Failure details: `---- NAME stdout ----` blocks.
    let mut current: Option<String> = None;
    let mut details: BTreeMap<String, String> = BTreeMap::new();
    for line in out.lines() {
        if let Some(n) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            current = Some(format!("{bin}::{n}"));
            continue;
        }
        if line == "failures:" || line == "successes:" || line.starts_with("test result:") {
            current = None;
            continue;
        }
        if let Some(c) = &current {
            let d = details.entry(c.clone()).or_default();
            d.push_str(line);
            d.push('\n');
        }
    }
    for r in &mut results {
        if let Some(d) = details.remove(&r.name) {
            r.detail = d.trim_end().to_string();
        }
    }
    let finished = out.lines().any(|l| l.starts_with("test result:"));
    if !finished || (rc != 0 && !results.iter().any(|r| r.status == Status::Fail)) {
        let tail: Vec<&str> = out.lines().collect();
        let tail = tail[tail.len().saturating_sub(30)..].join("\n");
        results.push(TestResult {
            name: format!("{bin}::(binary)"),
            status: Status::Fail,
            detail: format!("the test binary exited with status {rc} without finishing:\n{tail}"),
        });
    }
    results
}

/// `kernel::all_cpus_online`: the guest runs every vCPU QEMU was given (`-smp`), i.e.
/// `/sys/devices/system/cpu/online` is `0-(smp-1)` and `/proc/cpuinfo` lists `smp` processors.
/// Fails on a uniprocessor guest (a kernel without ACPI reads SeaBIOS's MP table: 1 CPU).
fn cpus_online(results: &Results, smp: u32) -> TestResult {
    let want = if smp == 1 {
        "0".to_string()
    } else {
        format!("0-{}", smp - 1)
    };
    let cpus = results.cpus();
    let ok = cpus
        .as_ref()
        .is_some_and(|c| c.online == want && c.processors == smp);
    let line = match cpus {
        Some(c) => format!("online={} processors={}", c.online, c.processors),
        None => "(no report of its CPUs)".into(),
    };
    TestResult {
        name: "kernel::all_cpus_online".into(),
        status: if ok { Status::Pass } else { Status::Fail },
        detail: format!(
            "QEMU -smp {smp}, expected online={want} processors={smp}; the guest says: {line}"
        ),
    }
}

/// Every verdict of one test run, from what the guest sent back: the libtest binaries
/// `tests` (each must have run), the KUnit suites, and the kernel-wide checks. Reports are
/// shown with their traces decoded against `syms`.
pub fn verdicts(
    ksrc: &Path,
    syms: &Symbols,
    tests: &[String],
    o: &Booted,
    smp: u32,
    filter: Option<&str>,
) -> Result<Vec<TestResult>> {
    let mut results: Vec<TestResult> = Vec::new();
    let programs = o.results.programs();
    for name in tests {
        match programs.iter().find(|p| p.name == *name) {
            Some(p) => results.extend(parse_libtest(name, &p.output, p.status)),
            None => results.push(TestResult {
                name: format!("{name}::(binary)"),
                status: Status::Fail,
                detail: "the guest never ran this test binary".into(),
            }),
        }
    }
    results.extend(kunit_results(ksrc, &o.dmesg)?);
    // The scan below is only as good as the log: it must reach back to the boot.
    let complete = o.dmesg.lines().take(5).any(|l| l.contains("Linux version"));
    results.push(TestResult {
        name: "kernel::log_is_complete".into(),
        status: if complete { Status::Pass } else { Status::Fail },
        detail: "the kernel log buffer wrapped: early messages are lost (raise log_buf_len)".into(),
    });
    results.push(cpus_online(&o.results, smp));
    // The kernel log must be clean, whatever the filter, but for a report a test announced
    // (`expected`): that one has its own verdict.
    let split = crate::expected::split(&o.dmesg, logscan::scan(&o.dmesg));
    for (w, r) in &split.provoked {
        results.push(crate::expected::verdict(w, r.as_ref(), syms));
    }
    let reports = split.unexpected;
    results.push(TestResult {
        name: "kernel::log_has_no_reports".into(),
        status: if reports.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        },
        detail: reports
            .iter()
            .map(|r| format!("[{}]\n{}", r.kind, decode::annotate(&r.text, syms)))
            .collect::<Vec<_>>()
            .join("\n\n"),
    });
    if let Some(leaks) = o.results.kmemleak() {
        results.push(TestResult {
            name: "kernel::kmemleak_scan_is_empty".into(),
            status: if leaks.trim().is_empty() {
                Status::Pass
            } else {
                Status::Fail
            },
            detail: leaks.lines().take(60).collect::<Vec<_>>().join("\n"),
        });
    }
    if let Some(f) = filter {
        // libtest already filtered inside binaries selected by the filter; filter the rest.
        results.retain(|r| r.name.contains(f) || r.name.starts_with("kernel::"));
    }
    Ok(results)
}

/// KUnit cases from the log. Built-in suites (the kernel's own doctests) count as one
/// test each; our modules' suites count per case. A case that ran several times (a module
/// loaded more than once) counts once and fails if any run failed. Each module of the KUnit
/// pass has one more verdict, `kunit::module::M`: its load printed KTAP with at least one
/// case (a module whose load failed, or whose suites did not run, shows no case at all).
fn kunit_results(ksrc: &Path, dmesg: &str) -> Result<Vec<TestResult>> {
    let work = util::target_dir().join("test-results").join("ktap");
    let mut merged: BTreeMap<String, TestResult> = BTreeMap::new();
    let mut cases_of_module: BTreeMap<String, usize> = BTreeMap::new();
    for (i, doc) in ktap::split_documents(dmesg).iter().enumerate() {
        let cases = ktap::parse_document(ksrc, doc, &work, i)?;
        if let Some(m) = &doc.module {
            *cases_of_module.entry(m.clone()).or_default() += cases.len();
        }
        if doc.builtin {
            let mut by_suite: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
            for c in &cases {
                let e = by_suite.entry(c.suite.clone()).or_default();
                e.0 += 1;
                if c.status.failed() {
                    e.1.push(c.name.clone());
                }
            }
            for (suite, (n, failed)) in by_suite {
                let name = format!("kunit::builtin::{suite} ({n} cases)");
                merged.insert(
                    name.clone(),
                    TestResult {
                        name,
                        status: if failed.is_empty() {
                            Status::Pass
                        } else {
                            Status::Fail
                        },
                        detail: failed.join("\n"),
                    },
                );
            }
        } else {
            for c in cases {
                let name = format!("kunit::{}::{}", c.suite, c.name);
                let status = match c.status {
                    ktap::Status::Pass => Status::Pass,
                    ktap::Status::Skip => Status::Skip,
                    ktap::Status::Fail | ktap::Status::Error => Status::Fail,
                };
                let e = merged.entry(name.clone()).or_insert(TestResult {
                    name,
                    status,
                    detail: String::new(),
                });
                if status == Status::Fail {
                    e.status = Status::Fail;
                    e.detail = "failed in at least one run (see the kernel log)".into();
                }
            }
        }
    }
    for m in ktap::pass_modules(dmesg) {
        let n = cases_of_module.get(&m).copied().unwrap_or(0);
        let name = format!("kunit::module::{m}");
        merged.insert(
            name.clone(),
            TestResult {
                name,
                status: if n > 0 { Status::Pass } else { Status::Fail },
                detail: format!(
                    "loading {m} printed no KUnit case (the load failed or its suites did not \
                     run; see the kernel log after `xtask: KUnit pass for {m}`)"
                ),
            },
        );
    }
    Ok(merged.into_values().collect())
}

pub fn print(results: &[TestResult]) {
    let (mut p, mut f, mut s) = (0, 0, 0);
    for r in results {
        match r.status {
            Status::Pass => {
                p += 1;
                println!("ok      {}", r.name);
            }
            Status::Skip => {
                s += 1;
                println!("skipped {}", r.name);
            }
            Status::Fail => {
                f += 1;
                println!("FAILED  {}", r.name);
                for l in r.detail.lines() {
                    println!("        | {l}");
                }
            }
        }
    }
    if s > 0 {
        println!("({s} skipped, named above)");
    }
    // The last line is always exactly this (the README's promise).
    println!("{p} passed, {f} failed");
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect()
}

/// JUnit XML for CI systems.
pub fn junit_xml(results: &[TestResult]) -> String {
    let failures = results.iter().filter(|r| r.status == Status::Fail).count();
    let skipped = results.iter().filter(|r| r.status == Status::Skip).count();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuite name=\"rust-kernel-modules\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
        results.len()
    );
    for r in results {
        let (class, name) = r.name.rsplit_once("::").unwrap_or(("", &r.name));
        let _ = write!(
            x,
            "  <testcase classname=\"{}\" name=\"{}\"",
            xml_escape(class),
            xml_escape(name)
        );
        match r.status {
            Status::Pass => x.push_str("/>\n"),
            Status::Skip => x.push_str("><skipped/></testcase>\n"),
            Status::Fail => {
                let _ = writeln!(
                    x,
                    "><failure message=\"failed\">{}</failure></testcase>",
                    xml_escape(&r.detail)
                );
            }
        }
    }
    x.push_str("</testsuite>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_cpus_online_fails_on_a_uniprocessor_guest() {
        let up = &Results::new("XTASK-BOOTED\nXTASK-CPUS online=0 processors=1\n".into());
        let smp = &Results::new("XTASK-CPUS online=0-1 processors=2\n".into());
        assert!(cpus_online(up, 2).status == Status::Fail);
        assert!(cpus_online(smp, 2).status == Status::Pass);
        assert!(cpus_online(up, 1).status == Status::Pass);
        assert!(cpus_online(&Results::default(), 2).status == Status::Fail);
    }

    const OUT: &str = "\
running 3 tests
test load_and_unload ... ok
test bad_param ... FAILED
test slow ... ignored, needs debug kernel

failures:

---- bad_param stdout ----

thread 'bad_param' panicked at guest/tests/x.rs:10:5:
assertion `left == right` failed
  left: Err(EINVAL(22))
 right: Ok(())

failures:
    bad_param

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s
";

    #[test]
    fn libtest_lines_and_failure_details() {
        let r = parse_libtest("x", OUT, 101);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].name, "x::load_and_unload");
        assert_eq!(r[0].status, Status::Pass);
        assert_eq!(r[1].status, Status::Fail);
        assert!(
            r[1].detail.contains("left: Err(EINVAL(22))"),
            "{}",
            r[1].detail
        );
        assert_eq!(r[2].status, Status::Skip);
    }

    #[test]
    fn crashed_binary_is_a_failure() {
        let r = parse_libtest("x", "running 1 test\ntest a ... ", 139);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].name, "x::(binary)");
        assert_eq!(r[0].status, Status::Fail);
        assert!(r[0].detail.contains("139"));
    }

    #[test]
    fn junit_escapes_and_counts() {
        let x = junit_xml(&[
            TestResult {
                name: "a::b".into(),
                status: Status::Pass,
                detail: String::new(),
            },
            TestResult {
                name: "a::c".into(),
                status: Status::Fail,
                detail: "x < y & \"z\"".into(),
            },
        ]);
        assert!(x.contains("tests=\"2\" failures=\"1\""));
        assert!(x.contains("x &lt; y &amp; &quot;z&quot;"));
        assert!(x.contains("classname=\"a\" name=\"c\""));
    }
}
