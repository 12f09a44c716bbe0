//! `vm`: boot the test kernel in QEMU with an initramfs and a job script.
//!
//! Serial port 0 is the console (kernel messages and the job's output) and goes to
//! `console.log` (and to the terminal for `run`); serial port 1 is the results channel,
//! `results.log`, which `protocol::Results` reads. TCG is the default; KVM is used only when
//! a short probe boot under it succeeds.

use crate::build::Artifacts;
use crate::initramfs;
use crate::kernel::Kernel;
use crate::protocol::{Job, Results};
use crate::util;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How the console is connected.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// Only to `console.log`.
    Quiet,
    /// Also to our stdout, read-only.
    Show,
    /// The terminal is the guest's console (interactive shell; `Ctrl-a x` quits QEMU).
    Interactive,
    /// A Unix socket `console.sock` in the boot's directory (plus `console.log`), for a
    /// second terminal while this one runs a debugger (`gdb`); QEMU runs in its own process
    /// group so that the debugger's Ctrl-c does not reach it. No timeout, like `Interactive`.
    Socket,
}

impl Console {
    /// A person drives the guest: no timeout, and the guest may be stopped early.
    fn is_interactive(self) -> bool {
        matches!(self, Console::Interactive | Console::Socket)
    }
}

/// What a boot left behind.
#[derive(Debug, Default)]
pub struct Booted {
    pub console: String,
    /// Where the console's copy is.
    pub console_log: PathBuf,
    /// What the guest wrote to the results channel.
    pub results: Results,
    /// The job's exit status, if the guest got that far.
    pub exit: Option<i32>,
    /// The whole kernel log (the console's when the guest died before dumping it).
    pub dmesg: String,
    pub secs: f64,
    pub accel: String,
}

impl Booted {
    /// Last `n` console lines, for error messages.
    pub fn console_tail(&self, n: usize) -> String {
        let lines: Vec<&str> = self.console.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

/// What to boot, and how.
pub struct BootSpec<'a> {
    pub kernel: &'a Kernel,
    pub initramfs: PathBuf,
    pub out_dir: PathBuf,
    pub timeout: Duration,
    pub console: Console,
    pub machine: Machine,
    pub mem_mb: u32,
    /// The kernel command line.
    pub cmdline: String,
    /// More QEMU arguments (`gdb`: the gdb stub).
    pub qemu_args: Vec<String>,
}

/// How guest time runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Clock {
    /// Real time: TCG with one host thread per vCPU (or KVM when the probe allows).
    Wall,
    /// Deterministic: `-icount shift=0,sleep=off`, guest time counts executed instructions
    /// (one host thread for all vCPUs, round-robin; KVM cannot do this). Figures measured in
    /// guest time then do not depend on the host's speed or load.
    Icount,
}

/// The virtual machine's shape, shared by every command that boots.
#[derive(Clone, Copy, Debug)]
pub struct Machine {
    /// vCPUs (`-smp`). The guest brings all of them up through ACPI's MADT; the test
    /// `kernel::all_cpus_online` checks it against `RKM_SMP`, which the job script exports.
    pub smp: u32,
    pub clock: Clock,
}

/// Default vCPUs: 2. More vCPUs than host cores make TCG threads time-share one core, which
/// slows every test and adds nothing (the races we look for need two CPUs, not more); these
/// machines have 2 cores. Pass `--smp N` to try more.
pub const DEFAULT_SMP: u32 = 2;

impl Default for Machine {
    fn default() -> Self {
        Machine {
            smp: DEFAULT_SMP,
            clock: Clock::Wall,
        }
    }
}

/// Guest memory of every job boot, in MiB.
pub const MEM_MB: u32 = 1024;

/// A QEMU accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }

    fn parse(s: &str) -> Option<Accel> {
        match s.trim() {
            "tcg" => Some(Accel::Tcg),
            "kvm" => Some(Accel::Kvm),
            _ => None,
        }
    }

    /// `RKM_ACCEL=tcg|kvm` forces the accelerator; any other value is an error.
    pub fn from_env() -> Result<Option<Accel>> {
        match std::env::var_os("RKM_ACCEL") {
            None => Ok(None),
            Some(v) => {
                let v = v.to_string_lossy();
                match Accel::parse(&v) {
                    Some(a) => Ok(Some(a)),
                    None => bail!("RKM_ACCEL={v:?}: expected `tcg` or `kvm` (or unset it)"),
                }
            }
        }
    }

    /// How the guest ran, for reports: `tcg (multi-threaded)`, `kvm` or the icount mode.
    pub fn describe(self, clock: Clock) -> String {
        match (self, clock) {
            (Accel::Tcg, Clock::Wall) => "tcg (multi-threaded)".into(),
            (Accel::Kvm, Clock::Wall) => "kvm".into(),
            (_, Clock::Icount) => "tcg -icount shift=0,sleep=off".into(),
        }
    }
}

fn accel_args(accel: Accel, clock: Clock) -> Vec<String> {
    let mut a: Vec<String> = match (accel, clock) {
        (Accel::Kvm, Clock::Wall) => {
            vec!["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()]
        }
        // Multi-threaded TCG: one host thread per vCPU, so two guest CPUs really run at once.
        (_, Clock::Wall) => vec!["-accel".into(), "tcg,thread=multi".into()],
        (_, Clock::Icount) => vec![
            "-accel".into(),
            "tcg,thread=single".into(),
            "-icount".into(),
            "shift=0,sleep=off".into(),
        ],
    };
    if accel != Accel::Kvm || clock == Clock::Icount {
        a.extend(["-cpu".into(), "max".into()]);
    }
    a
}

/// Decide between KVM and TCG (`RKM_ACCEL` wins); the probe result is cached per kernel
/// build.
pub fn choose_accel(k: &Kernel) -> Result<Accel> {
    if let Some(a) = Accel::from_env()? {
        return Ok(a);
    }
    if !Path::new("/dev/kvm").exists() {
        return Ok(Accel::Tcg);
    }
    let cache = k.build.join("xtask-kvm-probe");
    if let Some(a) = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|s| Accel::parse(&s))
    {
        return Ok(a);
    }
    // Boot with an init that does not exist: the kernel panics right after reaching
    // userspace, and `panic=-1` + `-no-reboot` ends QEMU. Reaching that line proves KVM works.
    let log = k.build.join("xtask-kvm-probe.log");
    let mut c = Command::new("qemu-system-x86_64");
    c.args(accel_args(Accel::Kvm, Clock::Wall))
        .args([
            "-m",
            "256",
            "-smp",
            "1",
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(k.bzimage())
        .args([
            "-append",
            "console=ttyS0 panic=-1 init=/nonexistent rdinit=/nonexistent",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let ok = match c.spawn() {
        Ok(mut child) => {
            let start = Instant::now();
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    _ if start.elapsed() > Duration::from_secs(15) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            }
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("Kernel panic")
        }
        Err(_) => false,
    };
    let accel = if ok { Accel::Kvm } else { Accel::Tcg };
    eprintln!(
        "vm: KVM probe boot {} -> using {}",
        if ok { "succeeded" } else { "failed or hung" },
        accel.name()
    );
    let _ = std::fs::write(&cache, accel.name());
    Ok(accel)
}

/// Boot and wait for the guest to power off (or the timeout).
/// The caller holds the `heavy` lock from before it writes the initramfs until this returns,
/// so a queued run cannot boot another run's image.
pub fn boot(b: &BootSpec) -> Result<Booted> {
    std::fs::create_dir_all(&b.out_dir)?;
    let console_log = b.out_dir.join("console.log");
    let results_log = b.out_dir.join("results.log");
    let _ = std::fs::remove_file(&console_log);
    let _ = std::fs::remove_file(&results_log);
    let accel = match b.machine.clock {
        Clock::Wall => choose_accel(b.kernel)?,
        Clock::Icount => {
            Accel::from_env()?; // checked, but icount is TCG only
            Accel::Tcg
        }
    };
    let mut c = Command::new("qemu-system-x86_64");
    c.args(accel_args(accel, b.machine.clock))
        .args([
            "-m",
            &b.mem_mb.to_string(),
            "-smp",
            &b.machine.smp.to_string(),
        ])
        // q35, not the default i440fx `pc`: the `pc` machine's ACPI `_PRT` (PCI interrupt
        // routing) is an AML loop over 128 entries that the first `pci_enable_device()` of
        // each device evaluates; on the debug kernel it ran past ACPICA's 30 s loop limit
        // (`AE_AML_LOOP_TIMEOUT`: every `edu` bind took 30 s and INTx got no route). q35's
        // `_PRT` is a plain table.
        .args(["-machine", "q35"])
        .args(["-display", "none", "-no-reboot", "-nodefaults"])
        // Two QEMU `edu` PCI devices (1234:11e8) on every boot, one per driver twin
        // (`rust_edu`, `cedu`); cheap when unused: they sit on the bus until a driver binds.
        .args(["-device", "edu", "-device", "edu"]);
    // `RKM_QEMU_ARGS` (environment): more QEMU arguments, for experiments.
    if let Ok(more) = std::env::var("RKM_QEMU_ARGS") {
        c.args(more.split_whitespace());
    }
    c.arg("-kernel")
        .arg(b.kernel.bzimage())
        .arg("-initrd")
        .arg(&b.initramfs)
        .arg("-append")
        .arg(&b.cmdline);
    match b.console {
        Console::Quiet => {
            c.arg("-chardev")
                .arg(format!("file,id=con,path={}", console_log.display()))
                .args(["-serial", "chardev:con", "-monitor", "none"]);
            c.stdin(Stdio::null()).stdout(Stdio::null());
        }
        Console::Show => {
            c.arg("-chardev")
                .arg(format!(
                    "stdio,id=con,signal=off,logfile={}",
                    console_log.display()
                ))
                .args(["-serial", "chardev:con", "-monitor", "none"]);
            c.stdin(Stdio::null());
        }
        Console::Interactive => {
            c.arg("-chardev")
                .arg(format!(
                    "stdio,id=con,mux=on,signal=off,logfile={}",
                    console_log.display()
                ))
                .args([
                    "-serial",
                    "chardev:con",
                    "-mon",
                    "chardev=con,mode=readline",
                ]);
        }
        Console::Socket => {
            use std::os::unix::process::CommandExt;
            let sock = b.out_dir.join("console.sock");
            let _ = std::fs::remove_file(&sock);
            c.arg("-chardev")
                .arg(format!(
                    "socket,id=con,path={},server=on,wait=off,logfile={}",
                    sock.display(),
                    console_log.display()
                ))
                .args(["-serial", "chardev:con", "-monitor", "none"]);
            c.stdin(Stdio::null()).stdout(Stdio::null());
            c.process_group(0);
        }
    }
    c.args(&b.qemu_args);
    c.arg("-serial")
        .arg(format!("file:{}", results_log.display()));
    let start = Instant::now();
    let mut child = c
        .spawn()
        .with_context(|| format!("starting `{}`", util::show(&c)))?;
    let timed_out = loop {
        if child.try_wait()?.is_some() {
            break false;
        }
        // No timeout for an interactive session: the user ends it.
        if !b.console.is_interactive() && start.elapsed() > b.timeout {
            let _ = child.kill();
            let _ = child.wait();
            break true;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let console =
        String::from_utf8_lossy(&std::fs::read(&console_log).unwrap_or_default()).replace('\r', "");
    let results =
        String::from_utf8_lossy(&std::fs::read(&results_log).unwrap_or_default()).replace('\r', "");
    let results = Results::new(results);
    let mut o = Booted {
        console_log: console_log.clone(),
        exit: results.exit(),
        dmesg: results.dmesg().unwrap_or_default(),
        console,
        results,
        secs: start.elapsed().as_secs_f64(),
        accel: accel.describe(b.machine.clock),
    };
    if o.dmesg.is_empty() {
        // The guest died before dumping its log: the console has the kernel's lines.
        o.dmesg = o.console.clone();
    }
    if timed_out {
        bail!(
            "the guest did not finish within {} s (hang?); last console lines ({}):\n{}",
            b.timeout.as_secs(),
            console_log.display(),
            o.console_tail(30)
        );
    }
    if o.console.contains("Kernel panic") {
        bail!(
            "the guest kernel panicked; last console lines ({}):\n{}",
            console_log.display(),
            o.console_tail(40)
        );
    }
    if o.exit.is_none() && !b.console.is_interactive() {
        bail!(
            "the guest stopped without reporting an exit status; last console lines ({}):\n{}",
            console_log.display(),
            o.console_tail(30)
        );
    }
    Ok(o)
}

/// Kernel command line for every boot. `no5lvl`: with `-cpu max` TCG offers LA57 and the
/// kernel runs 5-level paging; on the KASAN kernel an interrupt during early CPUID parsing
/// then hit "BUG: KASAN: wild-memory-access in do_raw_spin_lock" (handle_edge_irq) in about
/// one boot of three (7.3.4, before any module loads). With 4-level paging: 0 of 6 boots.
/// `log_buf_len=32M`: a whole test run's log (boot KTAP, thousands of module loads) fits.
/// `rcupdate.rcu_expedited=1`: with 2 CPUs every `synchronize_rcu()` (several per insmod and
/// rmmod) waits for a normal grace period, a few 4 ms ticks under TCG; expedited grace periods
/// use IPIs instead. Measured, 50 insmod+rmmod cycles of `minimal`: 1 CPU 7.0 ms/cycle,
/// 2 CPUs 21.8 ms, 2 CPUs expedited 7.6 ms; the soak test went from 329 s (three modules
/// stopped at its 60 s cap) to 187 s (all 9 x 1000 cycles).
/// `RKM_CMDLINE` (environment) adds words at the end, for experiments.
pub fn kernel_cmdline() -> String {
    let mut c = String::from(
        "console=ttyS0 panic=-1 quiet no5lvl log_buf_len=32M rcupdate.rcu_expedited=1",
    );
    if let Ok(more) = std::env::var("RKM_CMDLINE") {
        c.push(' ');
        c.push_str(&more);
    }
    c
}

/// How [`boot_job`] boots a job.
pub struct JobBoot<'a> {
    /// The boot's directory is `target/vm/<profile>-<name>`.
    pub name: &'a str,
    pub timeout: Duration,
    pub console: Console,
    /// A host directory whose files the guest sees under `/host`.
    pub share: Option<&'a Path>,
}

impl JobBoot<'_> {
    /// Console to `console.log` only, nothing shared.
    pub fn quiet(name: &str, timeout_secs: u64) -> JobBoot<'_> {
        JobBoot {
            name,
            timeout: Duration::from_secs(timeout_secs),
            console: Console::Quiet,
            share: None,
        }
    }
}

/// More for one boot, beyond the job: QEMU arguments and kernel command-line words (`gdb`:
/// the gdb stub, `nokaslr`).
#[derive(Debug, Default, Clone)]
pub struct Extra {
    pub qemu_args: Vec<String>,
    pub cmdline: Vec<String>,
}

/// Write the initramfs with the artifacts and the job, and boot it on the job's machine.
/// Holds the VM lock from before the initramfs is written until the guest is gone, so that
/// a queued run cannot boot another run's image.
pub fn boot_job(k: &Kernel, art: &Artifacts, job: &Job, how: &JobBoot) -> Result<Booted> {
    boot_job_with(k, art, job, how, &Extra::default())
}

/// [`boot_job`] with [`Extra`] QEMU arguments and kernel command-line words.
pub fn boot_job_with(
    k: &Kernel,
    art: &Artifacts,
    job: &Job,
    how: &JobBoot,
    extra: &Extra,
) -> Result<Booted> {
    let out_dir = util::target_dir()
        .join("vm")
        .join(format!("{}-{}", k.profile.name(), how.name));
    let _lock = util::lock("heavy")?;
    let initramfs = initramfs::create(k, art, &job.finish(), how.share, &out_dir)?;
    boot(&BootSpec {
        kernel: k,
        initramfs,
        out_dir,
        timeout: how.timeout,
        console: how.console,
        machine: job.machine(),
        mem_mb: MEM_MB,
        cmdline: std::iter::once(kernel_cmdline())
            .chain(extra.cmdline.iter().cloned())
            .collect::<Vec<_>>()
            .join(" "),
        qemu_args: extra.qemu_args.clone(),
    })
}
