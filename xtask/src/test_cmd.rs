//! `test`: build what is stale, boot the test kernel, run every guest test binary after a
//! KUnit pass over the modules, and print the verdict (`verdict.rs` reads what came back).
//! JUnit XML, the kernel log and the results channel go to `target/test-results/`.

use crate::build::{self, Artifacts};
use crate::kernel::{self, Profile};
use crate::protocol::Job;
use crate::toolchain::llvm_tool;
use crate::verdict::{self, Status};
use crate::vm::{self, JobBoot};
use crate::{flags, setup, util};
use anyhow::{Context, Result};
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
    let job = test_job(machine, &art, &kunit_modules, filter);
    eprintln!(
        "test: booting {} with {} test binaries (filter: {})",
        k.release()?,
        art.tests.len(),
        filter.unwrap_or("none")
    );
    let o = vm::boot_job(&k, &art, &job, &JobBoot::quiet("test", timeout))?;
    let test_names: Vec<String> = art.tests.iter().map(|(n, _)| n.clone()).collect();
    let syms = crate::decode::Symbols::new(&k, &art);
    let results = verdict::verdicts(&k.src, &syms, &test_names, &o, machine.smp, filter)?;
    let dir = util::target_dir().join("test-results");
    std::fs::create_dir_all(&dir)?;
    let junit = dir.join(format!("junit-{}.xml", profile.name()));
    std::fs::write(&junit, verdict::junit_xml(&results))?;
    std::fs::write(dir.join(format!("kernel-{}.log", profile.name())), &o.dmesg)?;
    std::fs::write(
        dir.join(format!("results-{}.log", profile.name())),
        o.results.text(),
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
        .any(|r| r.status != Status::Skip && !r.name.starts_with("kernel::"));
    if !ran_any {
        eprintln!(
            "test: no test matched{}",
            filter.map(|f| format!(" {f:?}")).unwrap_or_default()
        );
        return Ok(false);
    }
    Ok(passed)
}

/// The guest job for a test run: report the CPUs, the KUnit pass over `kunit_modules`, every
/// test binary (with the filter unless the binary's name matches it), the kmemleak scan.
fn test_job(
    machine: vm::Machine,
    art: &Artifacts,
    kunit_modules: &[String],
    filter: Option<&str>,
) -> Job {
    let mut job = Job::new(machine);
    job.report_cpus().kunit_pass(kunit_modules);
    for (name, _) in &art.tests {
        let filters: Vec<&str> = filter.filter(|f| !name.contains(f)).into_iter().collect();
        job.run_test_binary(name, &filters);
    }
    job.kmemleak_scan();
    job
}
