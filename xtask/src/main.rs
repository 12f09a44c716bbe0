//! `cargo xtask`: the project's host tooling. ARCHITECTURE.md has the bird's-eye view.
//!
//! `flags.rs` defines the command line; each command's `run` is in its own module:
//!
//! | command | module | what |
//! |---|---|---|
//! | `doctor` | `doctor` (`--kdir`: `kdir`) | check every requirement, print the fixes |
//! | `setup` | `setup` | packages, bindgen, kernel source |
//! | `kernel` | `kernel` | configure and build the test kernel, cached |
//! | `build` | `build` (`--kdir`: `kdir`) | modules (Kbuild) and guest binaries (cargo) |
//! | `install` | `kdir` | build against the running kernel's tree and load there |
//! | `lint` | `lint` | rustfmt, clippy, checkpatch |
//! | `new` | `scaffold` | a module and its guest test from `xtask/templates/` |
//! | `analyzer` | `analyzer` | `rust-project.json` for the modules |
//! | `run` | `run_cmd` | boot, demo or run a command in the guest |
//! | `test` | `test_cmd` (verdicts: `verdict`) | boot, run every test, one verdict |
//! | `bench` | `bench` | rfifo vs cfifo vs FIFO figures |
//! | `fuzz` | `fuzz` (`--coverage-guided`, `--replay`: `fuzz_guided`) | the syscall fuzzer in the guest |
//! | `gdb` | `gdb` | gdb on the debug kernel and the modules (QEMU's gdb stub) |
//! | `coverage` | `coverage` | KCOV line coverage of the modules: lcov, HTML, table |
//!
//! The pieces they share: `toolchain` (which compilers, `make` with the kernel's variables),
//! `initramfs` (the guest's root file system), `vm` (QEMU), `protocol` (the job script the
//! guest runs and the parsers for what it sends back), `ktap` and `logscan` (the kernel
//! log: KUnit results, reports), `expected` (the one report a test provokes on purpose),
//! `decode` (report traces to source lines), `util` (commands, logs, locks, paths).

mod analyzer;
mod bench;
mod build;
mod coverage;
mod coverage_gaps;
mod decode;
mod doctor;
mod expected;
mod flags;
mod fuzz;
mod fuzz_guided;
mod gdb;
mod initramfs;
mod kdir;
mod kernel;
mod ktap;
mod lint;
mod logscan;
mod protocol;
mod run_cmd;
mod scaffold;
mod setup;
mod test_cmd;
mod toolchain;
mod util;
mod verdict;
mod vm;

use anyhow::Result;
use clap::Parser;
use flags::Cmd;
use std::process::ExitCode;

/// Exit status when a command ran and its verdict is "failed" (a test, a lint finding).
const FAILED: u8 = 1;
/// Exit status when a command could not do its job (the error is printed).
const ERROR: u8 = 2;

fn main() -> ExitCode {
    let flags = flags::Xtask::parse();
    match run(flags.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(ERROR)
        }
    }
}

fn run(cmd: Cmd) -> Result<ExitCode> {
    let ok = |()| ExitCode::SUCCESS;
    let verdict = |passed: bool| {
        if passed {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(FAILED)
        }
    };
    match cmd {
        Cmd::Doctor(c) => c.run().map(ok),
        Cmd::Setup(c) => c.run().map(ok),
        Cmd::Kernel(c) => c.run().map(ok),
        Cmd::Build(c) => c.run().map(ok),
        Cmd::Install(c) => c.run().map(ok),
        Cmd::Lint(c) => c.run().map(verdict),
        Cmd::New(c) => c.run().map(ok),
        Cmd::Analyzer(c) => c.run().map(ok),
        // The guest command's own exit status.
        Cmd::Run(c) => c.run(),
        Cmd::Bench(c) => c.run().map(ok),
        Cmd::Fuzz(c) => c.run().map(ok),
        Cmd::Test(c) => c.run().map(verdict),
        // gdb's exit status.
        Cmd::Gdb(c) => c.run(),
        Cmd::Coverage(c) => c.run().map(verdict),
    }
}
