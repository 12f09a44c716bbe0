//! `test`: build what is stale, boot the test kernel, run every guest test binary after a
//! KUnit pass over the modules, and print the verdict (`verdict.rs` reads what came back).
//! JUnit XML, the kernel log and the results channel go to `target/test-results/`.

use crate::build::{self, Artifacts};
use crate::kernel::{self, Profile};
use crate::toolchain::llvm_tool;
use crate::verdict::{self, Status};
use crate::{flags, run_cmd, setup, util, vm};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Does this `.ko` carry KUnit suites?
/// An error when `llvm-readelf` cannot tell (not installed, unreadable file): answering "no"
/// would drop the module's KUnit verdicts without a word.
fn has_kunit(ko: &Path) -> Result<bool> {
    let readelf = llvm_tool("llvm-readelf");
    let sections = util::output(Command::new(&readelf).arg("-S").arg(ko))
        .with_context(|| format!("cannot list the ELF sections of {}", ko.display()))?;
    Ok(sections.contains(".kunit_test_suites"))
}

impl flags::Test {
    /// Returns whether every test passed.
    pub fn run(self) -> Result<bool> {
        setup::ensure_ready()?;
        test(
            self.profile,
            self.vcpus.machine(),
            self.filter.as_deref(),
            self.timeout,
        )
    }
}

/// `test`: build, boot, run everything, print the verdict. Returns whether all passed.
fn test(
    profile: Profile,
    machine: vm::Machine,
    filter: Option<&str>,
    timeout: u64,
) -> Result<bool> {
    let start = std::time::Instant::now();
    let k = kernel::ensure(profile, false)?;
    let art = build::build_all(&k)?;
    let mut kunit_modules = Vec::new();
    for ko in &art.modules {
        let name = build::module_name(ko);
        if filter.is_none_or(|f| name.contains(f)) && has_kunit(ko)? {
            kunit_modules.push(name);
        }
    }
    let job = test_job(&art, &kunit_modules, filter);
    eprintln!(
        "test: booting {} with {} test binaries (filter: {})",
        k.release()?,
        art.tests.len(),
        filter.unwrap_or("none")
    );
    let o = vm::boot_job(&k, &art, &job, "test", timeout, machine)?;
    let test_names: Vec<String> = art.tests.iter().map(|(n, _)| n.clone()).collect();
    let results = verdict::verdicts(&k.src, &test_names, &o, machine.smp, filter)?;
    let dir = util::target_dir().join("test-results");
    std::fs::create_dir_all(&dir)?;
    let junit = dir.join(format!("junit-{}.xml", profile.name()));
    std::fs::write(&junit, verdict::junit_xml(&results))?;
    std::fs::write(dir.join(format!("kernel-{}.log", profile.name())), &o.dmesg)?;
    std::fs::write(
        dir.join(format!("results-{}.log", profile.name())),
        &o.results,
    )?;
    eprintln!(
        "test: guest {:.1} s ({}), total {:.1} s; JUnit {}; kernel log {}",
        o.secs,
        o.accel,
        start.elapsed().as_secs_f64(),
        junit.display(),
        dir.join(format!("kernel-{}.log", profile.name())).display()
    );
    verdict::print(&results);
    let passed = results.iter().all(|r| r.status != Status::Fail);
    let ran_any = results
        .iter()
        .any(|r| r.status == Status::Pass && !r.name.starts_with("kernel::"));
    if !ran_any {
        eprintln!(
            "test: no test matched{}",
            filter.map(|f| format!(" {f:?}")).unwrap_or_default()
        );
        return Ok(false);
    }
    Ok(passed)
}

/// The guest job for a test run.
fn test_job(art: &Artifacts, kunit_modules: &[String], filter: Option<&str>) -> String {
    let mut j = String::from("R=/dev/ttyS1\nrc=0\n");
    // What the guest brought up, for `kernel::all_cpus_online`.
    j.push_str(
        "echo \"XTASK-CPUS online=$(cat /sys/devices/system/cpu/online) processors=$(grep -c ^processor /proc/cpuinfo)\" > $R\n",
    );
    // Load and unload each module that has KUnit suites once, so its suites run even when
    // no other test loads it (suites run at module load).
    for m in kunit_modules {
        let _ = writeln!(
            j,
            "echo 'xtask: KUnit pass for {m}' > /dev/kmsg; modprobe {m} && rmmod {m} || echo 'modprobe {m} failed' > /dev/kmsg"
        );
    }
    // KUnit verdicts come from the pass above only: tests below load modules under fault
    // injection, where a suite's own allocations may fail by design.
    j.push_str("echo 'xtask: tests begin' > /dev/kmsg\n");
    for (name, _) in &art.tests {
        let arg = match filter {
            Some(f) if !name.contains(f) => run_cmd::shell_quote(f),
            _ => String::new(),
        };
        let _ = writeln!(
            j,
            "echo 'XTASK-BEGIN {name}' > $R\n\
             /tests/{name} --test-threads=1 --show-output {arg} > $R 2>&1; r=$?\n\
             echo 'XTASK-END {name} '$r > $R\n\
             [ $r = 0 ] || rc=1"
        );
    }
    // Debug kernel: force a kmemleak scan after everything ran and report what it found.
    j.push_str(
        "K=/sys/kernel/debug/kmemleak\n\
         if [ -e $K ]; then\n\
           echo scan > $K; sleep 1; echo scan > $K\n\
           { echo XTASK-KMEMLEAK-BEGIN; cat $K; echo XTASK-KMEMLEAK-END; } > $R\n\
         fi\n\
         exit $rc\n",
    );
    j
}
