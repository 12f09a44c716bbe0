//! `fuzz --coverage-guided` and `fuzz --replay FILE`: kfuzz's coverage-guided mode with a
//! corpus that lives on the host, and the replay of one saved program.
//!
//! The corpus directory (`target/fuzz/corpus/` unless `--corpus DIR`) is packed into the
//! guest (`/host`), copied to a writable directory there, grown by the kfuzz workers (a
//! program that reaches new KCOV coverage of module code is saved as `<hash>.prog`), and
//! sent back at the end: the new programs are added to the host directory, so the next run
//! starts from them. A kernel report fails the run, like `fuzz`; kfuzz saves the program
//! after which it saw the report as `report-<hash>.prog`, and the command to replay it is
//! printed. Coverage needs KCOV: the debug profile. At the end the per-module coverage
//! the campaign reached is printed (`coverage::table`).

use crate::coverage::{self, GUEST_DIR};
use crate::decode::{self, Symbols};
use crate::kernel::{self, Profile};
use crate::protocol::Job;
use crate::vm::{self, JobBoot, Machine};
use crate::{build, initramfs, logscan, util};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The corpus inside the guest.
const GUEST_CORPUS: &str = "/tmp/kfuzz-corpus";
/// Names of what comes back on the results channel.
const SENT_CORPUS: &str = "corpus";
const SENT_KCOV: &str = "kcov";

/// The default corpus directory.
pub fn default_corpus() -> PathBuf {
    util::target_dir().join("fuzz").join("corpus")
}

/// A coverage-guided campaign.
pub fn guided(
    profile: Profile,
    machine: Machine,
    seconds: u64,
    seed: u64,
    workers: u64,
    corpus: &Path,
) -> Result<()> {
    if profile != Profile::Debug {
        bail!("--coverage-guided needs KCOV, which only the debug kernel has: add --profile debug");
    }
    std::fs::create_dir_all(corpus)?;
    let before = programs(corpus)?;
    let k = kernel::ensure(profile, false)?;
    let art = build::build_all(&k)?;
    let (s, sec, w) = (seed.to_string(), seconds.to_string(), workers.to_string());
    let mut job = Job::new(machine);
    // Both edu drivers get a device (else the first loaded binds both).
    job.remember_devices()
        .edu_one_device_each(false)
        .load_modules(&initramfs::module_names(&art))
        .new_devices()
        .shell(&format!(
            "mkdir -p {GUEST_CORPUS} {GUEST_DIR}; cp /host/*.prog {GUEST_CORPUS}/ 2>/dev/null"
        ))
        .export(coverage::DIR_ENV, GUEST_DIR)
        .run_marked(
            "kfuzz",
            &[
                "kfuzz",
                "--seed",
                &s,
                "--seconds",
                &sec,
                "--workers",
                &w,
                "--guided",
                "--corpus",
                GUEST_CORPUS,
                Job::NEW_DEVICES,
            ],
        )
        .send_dir(SENT_CORPUS, GUEST_CORPUS)
        .send_output(
            SENT_KCOV,
            &format!("cat {GUEST_DIR}/* 2>/dev/null | sort | uniq -c"),
        );
    eprintln!(
        "fuzz: coverage-guided, seed {seed}, {seconds} s, {workers} workers, corpus {} ({} programs)",
        corpus.display(),
        before.len()
    );
    let how = JobBoot {
        name: "fuzz",
        timeout: Duration::from_secs(seconds + 600),
        console: vm::Console::Quiet,
        share: Some(corpus),
    };
    let o = vm::boot_job(&k, &art, &job, &how)?;
    let kfuzz = o.results.program("kfuzz");
    print!("{}", kfuzz.as_ref().map_or("", |p| p.output.as_str()));
    // Bring the corpus back.
    let mut added = 0;
    let mut report_programs = Vec::new();
    for (name, text) in o.results.files() {
        let Some(file) = name.strip_prefix(&format!("{SENT_CORPUS}/")) else {
            continue;
        };
        if file.contains('/') || !file.ends_with(".prog") {
            continue;
        }
        let path = corpus.join(file);
        if file.starts_with("report-") {
            report_programs.push(path.clone());
        }
        if !path.exists() {
            std::fs::write(&path, text)?;
            added += 1;
        }
    }
    let syms = Symbols::new(&k, &art);
    if let Some(sent) = o.results.file(SENT_KCOV) {
        let hits = coverage::parse_hits(&sent);
        let modules = coverage::measure(&syms, &art, &hits)?;
        print!("{}", coverage::table(&modules));
        println!(
            "fuzz: {} distinct PCs of module code reached",
            hits.points.len()
        );
    }
    let reports = logscan::scan(&o.dmesg);
    for r in &reports {
        println!("[{}]\n{}", r.kind, decode::annotate(&r.text, &syms));
    }
    println!(
        "fuzz: corpus {}: {} programs before, {added} new; {} kernel report(s), kfuzz exit {:?}",
        corpus.display(),
        before.len(),
        reports.len(),
        kfuzz.map(|p| p.status)
    );
    if !reports.is_empty() || o.exit != Some(0) {
        for p in &report_programs {
            println!(
                "fuzz: a program after which kfuzz saw a report ({}):\n{}\
                 reproduce with: cargo xtask fuzz --profile debug --replay {}",
                p.display(),
                std::fs::read_to_string(p).unwrap_or_default(),
                p.display()
            );
        }
        bail!(
            "fuzzing found a problem; the campaign: cargo xtask fuzz --profile debug \
             --coverage-guided --seed {seed} --seconds {seconds} --workers {workers} --smp {} \
             (its corpus has grown since)",
            machine.smp
        );
    }
    Ok(())
}

/// The `.prog` files of a corpus directory.
fn programs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "prog"))
        .collect();
    v.sort();
    Ok(v)
}

/// Run one saved program once, with every module loaded; a kernel report fails.
pub fn replay(profile: Profile, machine: Machine, program: &Path) -> Result<()> {
    let text = std::fs::read_to_string(program)
        .with_context(|| format!("--replay {}", program.display()))?;
    let dir = util::target_dir().join("fuzz").join("replay");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("program.prog"), text)?;
    let k = kernel::ensure(profile, false)?;
    let art = build::build_all(&k)?;
    let mut job = Job::new(machine);
    job.load_modules(&initramfs::module_names(&art))
        .run_marked("kfuzz", &["kfuzz", "--replay", "/host/program.prog"]);
    let how = JobBoot {
        name: "fuzz",
        timeout: Duration::from_secs(600),
        console: vm::Console::Quiet,
        share: Some(&dir),
    };
    let o = vm::boot_job(&k, &art, &job, &how)?;
    print!(
        "{}",
        o.results
            .program("kfuzz")
            .map(|p| p.output)
            .unwrap_or_default()
    );
    let syms = Symbols::new(&k, &art);
    let reports = logscan::scan(&o.dmesg);
    for r in &reports {
        println!("[{}]\n{}", r.kind, decode::annotate(&r.text, &syms));
    }
    if !reports.is_empty() {
        bail!(
            "replaying {} gives {} kernel report(s)",
            program.display(),
            reports.len()
        );
    }
    println!("fuzz: replayed {}: no kernel report", program.display());
    Ok(())
}
