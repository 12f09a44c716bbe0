//! `fuzz`: boot, load every module, and run the seeded in-guest syscall fuzzer (`kfuzz`,
//! from `guest/src/bin/kfuzz.rs`) over every device node the modules created. Any kernel
//! report fails the run and prints the seed that reproduces the op sequence.

use crate::kernel::{self, Profile};
use crate::protocol::{self, Job};
use crate::vm::{self, JobBoot};
use crate::{build, flags, initramfs, logscan};
use anyhow::{bail, Result};

impl flags::Fuzz {
    pub fn run(self) -> Result<()> {
        crate::setup::ensure_ready()?;
        if let Some(p) = &self.replay {
            return crate::fuzz_guided::replay(self.profile, self.vcpus.machine(), p);
        }
        if self.coverage_guided {
            let corpus = self
                .corpus
                .clone()
                .unwrap_or_else(crate::fuzz_guided::default_corpus);
            return crate::fuzz_guided::guided(
                self.profile,
                self.vcpus.machine(),
                self.seconds,
                self.seed,
                self.workers,
                &corpus,
            );
        }
        fuzz(
            self.profile,
            self.vcpus.machine(),
            self.seconds,
            self.seed,
            self.workers,
        )
    }
}

fn fuzz(
    profile: Profile,
    machine: vm::Machine,
    seconds: u64,
    seed: u64,
    workers: u64,
) -> Result<()> {
    let k = kernel::ensure(profile, false)?;
    let art = build::build_all(&k)?;
    let mut job = Job::new(machine);
    // Both edu drivers get a device (else the first loaded binds both).
    job.remember_devices()
        .edu_one_device_each(false)
        .load_modules(&initramfs::module_names(&art))
        .new_devices()
        .run_marked(
            "kfuzz",
            &[
                "kfuzz",
                "--seed",
                &seed.to_string(),
                "--seconds",
                &seconds.to_string(),
                "--workers",
                &workers.to_string(),
                Job::NEW_DEVICES,
            ],
        );
    eprintln!(
        "fuzz: seed {seed}, {seconds} s, {workers} workers, {} vCPUs, profile {}",
        machine.smp,
        profile.name()
    );
    let o = vm::boot_job(&k, &art, &job, &JobBoot::quiet("fuzz", seconds + 300))?;
    let kfuzz = o.results.program("kfuzz");
    let output = kfuzz.as_ref().map_or("", |p| p.output.as_str());
    print!("{output}");
    let ops = protocol::kfuzz_ops(output);
    let reports = logscan::scan(&o.dmesg);
    let syms = crate::decode::Symbols::new(&k, &art);
    for r in &reports {
        println!("[{}]\n{}", r.kind, crate::decode::annotate(&r.text, &syms));
    }
    println!(
        "fuzz: {ops} ops in {:.1} s guest time, {} kernel report(s), kfuzz exit {:?}",
        o.secs,
        reports.len(),
        kfuzz.map(|p| p.status)
    );
    if !reports.is_empty() || o.exit != Some(0) {
        bail!(
            "fuzzing found a problem; reproduce with: cargo xtask fuzz --profile {} --seed {seed} --seconds {seconds} --workers {workers} --smp {}",
            profile.name(),
            machine.smp
        );
    }
    Ok(())
}
