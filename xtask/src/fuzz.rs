//! `fuzz`: boot, load every module, and run the seeded in-guest syscall fuzzer (`kfuzz`,
//! from `guest/src/bin/kfuzz.rs`) over every device node the modules created. Any kernel
//! report fails the run and prints the seed that reproduces the op sequence.

use crate::kernel::{self, Profile};
use crate::{build, flags, initramfs, logscan, vm};
use anyhow::{bail, Result};

impl flags::Fuzz {
    pub fn run(self) -> Result<()> {
        crate::setup::ensure_ready()?;
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
    let mut job = String::from("ls /dev > /tmp/dev.before\n");
    for m in initramfs::module_names(&art) {
        job.push_str(&format!("modprobe {m} || echo 'modprobe {m} failed'\n"));
    }
    job.push_str(&format!(
        "ls /dev > /tmp/dev.after\n\
         devs=$(grep -vxF -f /tmp/dev.before /tmp/dev.after | sed 's|^|/dev/|')\n\
         echo \"fuzzing: $devs\"\n\
         kfuzz --seed {seed} --seconds {seconds} --workers {workers} $devs\n"
    ));
    eprintln!(
        "fuzz: seed {seed}, {seconds} s, {workers} workers, {} vCPUs, profile {}",
        machine.smp,
        profile.name()
    );
    let o = vm::boot_job(&k, &art, &job, "fuzz", seconds + 300, machine)?;
    let ops: u64 = o
        .console
        .lines()
        .filter_map(|l| {
            l.split("ran ")
                .nth(1)?
                .strip_suffix(" ops")?
                .parse::<u64>()
                .ok()
        })
        .sum();
    for l in o
        .console
        .lines()
        .filter(|l| l.starts_with("kfuzz:") || l.starts_with("fuzzing:"))
    {
        println!("{l}");
    }
    let reports = logscan::scan(&o.dmesg);
    for r in &reports {
        println!("[{}]\n{}", r.kind, r.text);
    }
    println!(
        "fuzz: {ops} ops in {:.1} s guest time, {} kernel report(s), exit {:?}",
        o.secs,
        reports.len(),
        o.exit
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
