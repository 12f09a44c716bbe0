//! The command line: one struct per command. Each command's `run` is in the module that
//! does the work (`impl flags::Test { fn run(self) }` is in `test_cmd.rs`); `main.rs` maps
//! command to module.

use crate::kernel::Profile;
use crate::vm::{self, Clock};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Rust kernel modules: toolchain, kernel, QEMU, tests"
)]
pub struct Xtask {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Check every requirement and print the command that fixes each missing one.
    Doctor(Doctor),
    /// Install what `doctor` finds missing and obtain the kernel source.
    Setup(Setup),
    /// Configure and build the test kernel (cached).
    Kernel(Kernel),
    /// Build every module under modules/ and the guest test binaries.
    Build(Build),
    /// Build the modules against the running kernel's tree and load them into it.
    Install(Install),
    /// Check formatting and lints: rustfmt + clippy over modules/ (kernel rules), cargo fmt +
    /// clippy over the host crates, checkpatch over modules-c/.
    Lint(Lint),
    /// Scaffold modules/NAME/ and guest/tests/NAME.rs that pass `test --filter NAME`.
    New(New),
    /// Write modules/rust-project.json so rust-analyzer resolves `kernel::` in the modules.
    Analyzer(Analyzer),
    /// Boot the kernel in QEMU, load the modules and show them working.
    Run(Run),
    /// Benchmark rfifo against its C twin and the kernel's FIFO (figures, not tests).
    Bench(Bench),
    /// Run the seeded in-guest syscall fuzzer over every device of the modules.
    Fuzz(Fuzz),
    /// Boot the kernel and run every test inside it; prints `N passed, N failed`.
    Test(Test),
    /// Debug the modules with gdb: boot the debug kernel under QEMU's gdb stub, with the
    /// kernel's gdb scripts and the modules' symbols loaded as they are inserted.
    Gdb(Gdb),
    /// Coverage of the modules (KCOV, debug kernel) by the guest tests and/or the fuzzer:
    /// target/coverage/lcov.info, target/coverage/html/, a table per module.
    Coverage(Coverage),
}

#[derive(Args)]
pub struct Doctor {
    /// Instead, check that this kernel build tree can build the Rust modules.
    #[arg(long, value_name = "DIR")]
    pub kdir: Option<PathBuf>,
}

#[derive(Args)]
pub struct Setup {
    /// Use this unpacked kernel tree or tarball instead of Debian's linux-source-7.3.
    #[arg(long, value_name = "DIR|TARBALL")]
    pub kernel_src: Option<PathBuf>,
}

#[derive(Args)]
pub struct Kernel {
    #[arg(long, value_enum, default_value = "default")]
    pub profile: Profile,
    /// Run the configuration and build even if the cache has this kernel.
    #[arg(long)]
    pub rebuild: bool,
}

#[derive(Args)]
pub struct Build {
    #[arg(long, value_enum, default_value = "default")]
    pub profile: Profile,
    /// Instead, build only the modules against this Rust-enabled kernel build tree
    /// (e.g. /lib/modules/$(uname -r)/build).
    #[arg(long, value_name = "DIR")]
    pub kdir: Option<PathBuf>,
}

#[derive(Args)]
pub struct Install {
    /// Really load into the kernel of this machine (not a VM).
    #[arg(long)]
    pub on_host: bool,
    /// Kernel build tree [default: /lib/modules/$(uname -r)/build].
    #[arg(long, value_name = "DIR")]
    pub kdir: Option<PathBuf>,
}

#[derive(Args)]
pub struct Lint {}

#[derive(Args)]
pub struct New {
    /// Module name: lowercase ASCII letters, digits and `_`, starting with a letter.
    pub name: String,
    /// Also register a misc device /dev/NAME.
    #[arg(long)]
    pub chardev: bool,
    /// Repository to scaffold into [default: this one].
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

#[derive(Args)]
pub struct Analyzer {
    #[arg(long, value_enum, default_value = "default")]
    pub profile: Profile,
    /// Write the project file here instead.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct Run {
    #[arg(long, value_enum, default_value = "default")]
    pub profile: Profile,
    /// Pack this host directory's files into the guest at /host.
    #[arg(long, value_name = "DIR")]
    pub share: Option<PathBuf>,
    /// Load all modules before CMD.
    #[arg(long)]
    pub load: bool,
    /// Hard timeout for the guest, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    #[command(flatten)]
    pub vcpus: Vcpus,
    /// Run this command in the guest instead of the demo, and exit with its status.
    #[arg(last = true)]
    pub cmd: Vec<String>,
}

#[derive(Args)]
pub struct Bench {
    #[arg(long, value_enum, default_value = "default")]
    pub profile: Profile,
    /// Interleaved rounds per case (wall-clock mode; the deterministic mode runs 7).
    #[arg(long, default_value_t = 5)]
    pub rounds: u32,
    /// Which clock(s): both (default), only wall, only icount.
    #[arg(long, value_enum)]
    pub clock: Option<Clock>,
    #[command(flatten)]
    pub vcpus: Vcpus,
}

#[derive(Args)]
pub struct Fuzz {
    #[arg(long, value_enum, default_value = "default")]
    pub profile: Profile,
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 4)]
    pub workers: u64,
    /// Keep and mutate the programs that reach new KCOV coverage (needs --profile debug).
    #[arg(long)]
    pub coverage_guided: bool,
    /// The corpus of --coverage-guided, grown by each run [default: target/fuzz/corpus].
    #[arg(long, value_name = "DIR", requires = "coverage_guided")]
    pub corpus: Option<PathBuf>,
    /// Run one saved kfuzz program (e.g. a `report-*.prog` of the corpus) once.
    #[arg(long, value_name = "FILE", conflicts_with = "coverage_guided")]
    pub replay: Option<PathBuf>,
    #[command(flatten)]
    pub vcpus: Vcpus,
}

#[derive(Args)]
pub struct Test {
    #[arg(long, value_enum, default_value = "default")]
    pub profile: Profile,
    /// Run only tests whose name contains TEXT.
    #[arg(long, value_name = "TEXT")]
    pub filter: Option<String>,
    /// Hard timeout for the guest, in seconds.
    #[arg(long, default_value_t = 1200)]
    pub timeout: u64,
    #[command(flatten)]
    pub vcpus: Vcpus,
}

#[derive(Args)]
pub struct Gdb {
    /// Run this gdb script without a prompt (the kernel is stopped in `start_kernel`, the
    /// modules' symbols load as they are inserted) while the guest runs CMD; exit with gdb's
    /// status (0 when every command of the script succeeded).
    #[arg(long, value_name = "FILE")]
    pub batch: Option<PathBuf>,
    /// Attach this terminal to the guest console of a running `cargo xtask gdb` session
    /// (`Ctrl-]` detaches).
    #[arg(long, conflicts_with_all = ["batch", "cmd", "port"])]
    pub console: bool,
    /// TCP port of QEMU's gdb stub on 127.0.0.1 [default: a free one].
    #[arg(long)]
    pub port: Option<u16>,
    /// Hard timeout of a `--batch` session, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    #[command(flatten)]
    pub vcpus: Vcpus,
    /// Run this command in the guest (all modules loaded) instead of a shell.
    #[arg(last = true)]
    pub cmd: Vec<String>,
}

#[derive(Args)]
pub struct Coverage {
    /// Run only the test binaries or tests whose name contains TEXT (repeatable: any).
    #[arg(long, value_name = "TEXT")]
    pub filter: Vec<String>,
    /// Do not boot: report the coverage of saved runs together (their `pcs.txt`, copied
    /// from `target/coverage/` after each run; the modules must be unchanged).
    #[arg(long, value_name = "PCS")]
    pub merge: Vec<std::path::PathBuf>,
    /// Do not run the guest tests (fuzz only).
    #[arg(long)]
    pub no_tests: bool,
    /// Also fuzz for this many seconds (kfuzz, coverage-guided unless --random).
    #[arg(long, default_value_t = 0)]
    pub fuzz_seconds: u64,
    /// Fuzz without coverage guidance (kfuzz's seeded random op stream).
    #[arg(long)]
    pub random: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 2)]
    pub workers: u64,
    /// Hard timeout for the guest, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    #[command(flatten)]
    pub vcpus: Vcpus,
}

/// `--smp`, shared by every command that boots.
#[derive(Args, Clone, Copy)]
pub struct Vcpus {
    /// Guest vCPUs (default 2: one per host core here; more only time-share the cores).
    #[arg(long, default_value_t = vm::DEFAULT_SMP, value_parser = clap::value_parser!(u32).range(1..=4))]
    pub smp: u32,
}

impl Vcpus {
    /// The machine of `run`, `fuzz` and `test`: these vCPUs, wall clock.
    pub fn machine(self) -> vm::Machine {
        vm::Machine {
            smp: self.smp,
            ..Default::default()
        }
    }
}
