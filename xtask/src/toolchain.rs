//! The toolchain, in one place: which programs build the kernel and the modules (the LLVM
//! version, `rustc`, `rustdoc`, `bindgen`, Debian's `rustfmt`/`clippy-driver`), the `make`
//! command with the kernel's variables, and the `cargo` that runs xtask.
//!
//! The rustup `rustc` that is usually first in `PATH` has no `rust-src` here, so the kernel
//! is always built with Debian's `rustc-web` (`/usr/bin/rustc`, whose `core` source comes from
//! `rust-web-src`) passed explicitly as `RUSTC`, `HOSTRUSTC` and `RUSTDOC`; `KRUSTC`,
//! `KRUSTDOC` and `BINDGEN` in the environment override the defaults.

use crate::util::{self, output};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// bindgen-cli version installed by `setup` (pinned: see README, kernel doctest pitfall).
pub const BINDGEN_VERSION: &str = "0.73.2";

/// `llvm!("clang")` is `"clang-19"`: the one place that names the LLVM version the kernel
/// is built with (Debian's versioned packages and programs). A macro so that the names stay
/// constants (`setup::APT_PACKAGES`).
macro_rules! llvm {
    ($name:literal) => {
        concat!($name, "-19")
    };
}
pub(crate) use llvm;

/// `LLVM=` of the kernel's `make`: `-19`.
pub const LLVM_SUFFIX: &str = llvm!("");
/// The major version: 19.
pub const LLVM_MAJOR: u32 = major(LLVM_SUFFIX);
/// libclang for bindgen (`LIBCLANG_PATH`).
pub const LIBCLANG_DIR: &str = concat!("/usr/lib/", llvm!("llvm"), "/lib");
/// Debian's rustfmt, the one matching the kernel's rustc (rustup's is first in `PATH`).
pub const RUSTFMT: &str = "/usr/bin/rustfmt";
/// Debian's clippy-driver, the one matching the kernel's rustc.
pub const CLIPPY_DRIVER: &str = "/usr/bin/clippy-driver";

/// `-19` -> 19.
const fn major(suffix: &str) -> u32 {
    let b = suffix.as_bytes();
    let mut n = 0;
    let mut i = 1;
    while i < b.len() {
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}

/// An LLVM tool of the kernel's LLVM, e.g. `llvm_tool("llvm-size")` -> `llvm-size-19`.
pub fn llvm_tool(name: &str) -> String {
    format!("{name}{LLVM_SUFFIX}")
}

/// The `cargo` that runs us (`CARGO`), for cargo commands on the workspace.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `make` with these variables and the environment bindgen needs.
pub fn make(vars: &[String]) -> Command {
    let mut c = Command::new("make");
    c.args(vars).env("LIBCLANG_PATH", LIBCLANG_DIR);
    c
}

/// Paths of the programs used to build the kernel.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub rustc: PathBuf,
    pub rustdoc: PathBuf,
    pub bindgen: PathBuf,
}

impl Toolchain {
    /// Find the toolchain; `KRUSTC`, `KRUSTDOC` and `BINDGEN` in the environment win.
    pub fn find() -> Toolchain {
        let env = |k: &str, d: PathBuf| std::env::var_os(k).map(PathBuf::from).unwrap_or(d);
        Toolchain {
            rustc: env("KRUSTC", PathBuf::from("/usr/bin/rustc")),
            rustdoc: env("KRUSTDOC", PathBuf::from("/usr/bin/rustdoc")),
            bindgen: env("BINDGEN", util::home().join(".cargo/bin/bindgen")),
        }
    }

    /// Variables passed to every `make` of the test kernel and its modules.
    pub fn make_vars(&self) -> Vec<String> {
        self.make_vars_with(Some(LLVM_SUFFIX))
    }

    /// The same with another `LLVM=` (`None`: a GCC-built kernel).
    pub fn make_vars_with(&self, llvm: Option<&str>) -> Vec<String> {
        let mut v: Vec<String> = llvm.map(|l| format!("LLVM={l}")).into_iter().collect();
        v.extend([
            format!("RUSTC={}", self.rustc.display()),
            format!("HOSTRUSTC={}", self.rustc.display()),
            format!("RUSTDOC={}", self.rustdoc.display()),
            format!("BINDGEN={}", self.bindgen.display()),
        ]);
        v
    }

    /// A `make` command for the test kernel with the toolchain variables set.
    pub fn kmake(&self) -> Command {
        make(&self.make_vars())
    }

    /// One line per tool version: part of the kernel cache key.
    pub fn versions(&self) -> String {
        let first = |mut c: Command| {
            output(&mut c)
                .map(|o| o.lines().next().unwrap_or("").to_string())
                .unwrap_or_else(|_| "missing".into())
        };
        let mut rustc = Command::new(&self.rustc);
        rustc.arg("--version");
        let mut bindgen = Command::new(&self.bindgen);
        bindgen.arg("--version");
        let mut clang = Command::new(llvm!("clang"));
        clang.arg("--version");
        format!("{}\n{}\n{}\n", first(rustc), first(bindgen), first(clang))
    }
}

/// Parse `x.y.z` from a version line such as `bindgen 0.73.2` or `rustc 1.96.0 (...)`.
pub fn parse_version(line: &str) -> Option<(u32, u32, u32)> {
    line.split_whitespace().find_map(|w| {
        let mut it = w.split('.').map(|p| p.parse::<u32>());
        match (it.next(), it.next(), it.next()) {
            (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Some((a, b, c)),
            _ => None,
        }
    })
}

/// The kernel's minimum version of a tool, from `scripts/min-tool-version.sh`.
pub fn kernel_min_version(ksrc: &Path, tool: &str) -> Result<(u32, u32, u32)> {
    let out = output(
        Command::new("sh")
            .arg(ksrc.join("scripts/min-tool-version.sh"))
            .arg(tool),
    )?;
    parse_version(out.trim()).ok_or_else(|| anyhow::anyhow!("cannot parse {out:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_names_agree() {
        assert_eq!(LLVM_SUFFIX, format!("-{LLVM_MAJOR}"));
        assert_eq!(llvm_tool("llvm-size"), llvm!("llvm-size"));
        assert_eq!(LIBCLANG_DIR, format!("/usr/lib/llvm-{LLVM_MAJOR}/lib"));
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("bindgen 0.73.2"), Some((0, 73, 2)));
        assert_eq!(
            parse_version("rustc 1.96.0 (ac68faa20 2026-05-25) (built from a source tarball)"),
            Some((1, 96, 0))
        );
        assert_eq!(parse_version("0.65.1"), Some((0, 65, 1)));
        assert_eq!(parse_version("no version here"), None);
    }
}
