//! `cargo xtask`: the project's host tooling.
//!
//! One module per job: `toolchain` (doctor checks), `setup` (packages, bindgen, kernel
//! source), `kernel` (configure + build, cached), `build` (modules + guest binaries),
//! `initramfs`, `vm` (QEMU), `report` (test verdicts) and its parsers `ktap`, `logscan`.

mod analyzer;
mod bench;
mod build;
mod fuzz;
mod host;
mod initramfs;
mod kernel;
mod ktap;
mod lint;
mod logscan;
mod report;
mod scaffold;
mod setup;
mod toolchain;
mod util;
mod vm;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use kernel::Profile;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Rust kernel modules: toolchain, kernel, QEMU, tests"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check every requirement and print the command that fixes each missing one.
    Doctor {
        /// Instead, check that this kernel build tree can build the Rust modules.
        #[arg(long, value_name = "DIR")]
        kdir: Option<PathBuf>,
    },
    /// Install what `doctor` finds missing and obtain the kernel source.
    Setup {
        /// Use this unpacked kernel tree or tarball instead of Debian's linux-source-7.3.
        #[arg(long, value_name = "DIR|TARBALL")]
        kernel_src: Option<PathBuf>,
    },
    /// Configure and build the test kernel (cached).
    Kernel {
        #[arg(long, value_enum, default_value = "default")]
        profile: Profile,
        /// Run the configuration and build even if the cache has this kernel.
        #[arg(long)]
        rebuild: bool,
    },
    /// Build every module under modules/ and the guest test binaries.
    Build {
        #[arg(long, value_enum, default_value = "default")]
        profile: Profile,
        /// Instead, build only the modules against this Rust-enabled kernel build tree
        /// (e.g. /lib/modules/$(uname -r)/build).
        #[arg(long, value_name = "DIR")]
        kdir: Option<PathBuf>,
    },
    /// Build the modules against the running kernel's tree and load them into it.
    Install {
        /// Really load into the kernel of this machine (not a VM).
        #[arg(long)]
        on_host: bool,
        /// Kernel build tree [default: /lib/modules/$(uname -r)/build].
        #[arg(long, value_name = "DIR")]
        kdir: Option<PathBuf>,
    },
    /// Check formatting and lints: rustfmt + clippy over modules/ (kernel rules), cargo fmt +
    /// clippy over the host crates, checkpatch over modules-c/.
    Lint,
    /// Scaffold modules/NAME/ and guest/tests/NAME.rs that pass `test --filter NAME`.
    New {
        /// Module name: lowercase ASCII letters, digits and `_`, starting with a letter.
        name: String,
        /// Also register a misc device /dev/NAME.
        #[arg(long)]
        chardev: bool,
        /// Repository to scaffold into [default: this one].
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
    /// Write modules/rust-project.json so rust-analyzer resolves `kernel::` in the modules.
    Analyzer {
        #[arg(long, value_enum, default_value = "default")]
        profile: Profile,
        /// Write the project file here instead.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Boot the kernel in QEMU, load the modules and show them working.
    Run {
        #[arg(long, value_enum, default_value = "default")]
        profile: Profile,
        /// Pack this host directory's files into the guest at /host.
        #[arg(long, value_name = "DIR")]
        share: Option<PathBuf>,
        /// Load all modules before CMD.
        #[arg(long)]
        load: bool,
        /// Hard timeout for the guest, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Guest vCPUs (default 2: one per host core here; more only time-share the cores).
        #[arg(long, default_value_t = vm::DEFAULT_SMP, value_parser = clap::value_parser!(u32).range(1..=4))]
        smp: u32,
        /// Run this command in the guest instead of the demo, and exit with its status.
        #[arg(last = true)]
        cmd: Vec<String>,
    },
    /// Benchmark rfifo against its C twin and the kernel's FIFO (figures, not tests).
    Bench {
        #[arg(long, value_enum, default_value = "default")]
        profile: Profile,
        /// Interleaved rounds per case (wall-clock mode; the deterministic mode runs 3).
        #[arg(long, default_value_t = 5)]
        rounds: u32,
        /// Which clock(s): both (default), only wall, only icount.
        #[arg(long, value_enum)]
        clock: Option<vm::Clock>,
        /// Guest vCPUs (default 2: one per host core here; more only time-share the cores).
        #[arg(long, default_value_t = vm::DEFAULT_SMP, value_parser = clap::value_parser!(u32).range(1..=4))]
        smp: u32,
    },
    /// Run the seeded in-guest syscall fuzzer over every device of the modules.
    Fuzz {
        #[arg(long, value_enum, default_value = "default")]
        profile: Profile,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 4)]
        workers: u64,
        /// Guest vCPUs (default 2: one per host core here; more only time-share the cores).
        #[arg(long, default_value_t = vm::DEFAULT_SMP, value_parser = clap::value_parser!(u32).range(1..=4))]
        smp: u32,
    },
    /// Boot the kernel and run every test inside it; prints `N passed, N failed`.
    Test {
        #[arg(long, value_enum, default_value = "default")]
        profile: Profile,
        /// Run only tests whose name contains TEXT.
        #[arg(long, value_name = "TEXT")]
        filter: Option<String>,
        /// Hard timeout for the guest, in seconds.
        #[arg(long, default_value_t = 1200)]
        timeout: u64,
        /// Guest vCPUs (default 2: one per host core here; more only time-share the cores).
        #[arg(long, default_value_t = vm::DEFAULT_SMP, value_parser = clap::value_parser!(u32).range(1..=4))]
        smp: u32,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Doctor { kdir: None } => doctor(),
        Cmd::Doctor { kdir: Some(kdir) } => host::doctor(&kdir),
        Cmd::Setup { kernel_src } => setup::setup(kernel_src.as_deref()),
        Cmd::Kernel { profile, rebuild } => kernel::ensure(profile, rebuild).map(|_| ()),
        Cmd::Build {
            profile,
            kdir: None,
        } => ensure_ready()
            .and_then(|_| kernel::ensure(profile, false))
            .and_then(|k| build::build_all(&k).map(|_| ())),
        Cmd::Build {
            kdir: Some(kdir), ..
        } => host::build(&kdir).map(|_| ()),
        Cmd::Install { on_host, kdir } => host::install(kdir.as_deref(), on_host),
        Cmd::Lint => ensure_ready().and_then(|_| {
            if !lint::lint()? {
                std::process::exit(1);
            }
            Ok(())
        }),
        Cmd::New {
            name,
            chardev,
            root,
        } => scaffold::new(&name, chardev, root.as_deref()),
        Cmd::Analyzer { profile, out } => {
            ensure_ready().and_then(|_| analyzer::analyzer(profile, out.as_deref()))
        }
        Cmd::Run {
            profile,
            share,
            load,
            timeout,
            smp,
            cmd,
        } => ensure_ready().and_then(|_| {
            let m = vm::Machine {
                smp,
                ..Default::default()
            };
            let code = vm::run_command(profile, m, share.as_deref(), load, timeout, &cmd)?;
            std::process::exit(code)
        }),
        Cmd::Bench {
            profile,
            rounds,
            clock,
            smp,
        } => ensure_ready().and_then(|_| bench::bench(profile, rounds, clock, smp)),
        Cmd::Fuzz {
            profile,
            seconds,
            seed,
            workers,
            smp,
        } => ensure_ready().and_then(|_| {
            let m = vm::Machine {
                smp,
                ..Default::default()
            };
            fuzz::fuzz(profile, m, seconds, seed, workers)
        }),
        Cmd::Test {
            profile,
            filter,
            timeout,
            smp,
        } => ensure_ready().and_then(|_| {
            let m = vm::Machine {
                smp,
                ..Default::default()
            };
            let ok = report::test(profile, m, filter.as_deref(), timeout)?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

/// `doctor`: every check, with the fix for each failing one.
fn doctor() -> Result<()> {
    let tc = toolchain::Toolchain::find();
    let ksrc = setup::kernel_src();
    let checks = toolchain::checks(&tc, ksrc.as_deref());
    let mut bad = host::print_checks(&checks);
    if bad == 0 {
        let ksrc = ksrc.expect("checked above");
        match toolchain::rustavailable(&tc, &ksrc) {
            Ok(out) => {
                let line = out
                    .lines()
                    .find(|l| l.contains("Rust is available"))
                    .unwrap_or("Rust is available");
                println!("ok      {:<40} {line}", "make rustavailable");
            }
            Err(e) => {
                bad += 1;
                println!("MISSING make rustavailable: {e:#}");
                println!("        fix: cargo xtask setup, then check KRUSTC/BINDGEN");
            }
        }
    }
    if bad > 0 {
        bail!("{bad} requirement(s) missing; run the fixes above (or `cargo xtask setup`)");
    }
    println!("all requirements met");
    Ok(())
}

/// Run `setup` implicitly when something is missing, so the README's two commands work on
/// a fresh machine.
fn ensure_ready() -> Result<()> {
    let tc = toolchain::Toolchain::find();
    let ksrc = setup::kernel_src();
    let missing: Vec<_> = toolchain::checks(&tc, ksrc.as_deref())
        .into_iter()
        .filter(|c| !c.ok)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "setup needed: {}",
        missing
            .iter()
            .map(|c| c.what.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    setup::setup(None)?;
    let tc = toolchain::Toolchain::find();
    let still: Vec<_> = toolchain::checks(&tc, setup::kernel_src().as_deref())
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{} (fix: {})", c.what, c.fix))
        .collect();
    if !still.is_empty() {
        bail!("still missing after setup:\n  {}", still.join("\n  "));
    }
    Ok(())
}
