//! The toolchain: which programs build the kernel and the modules, and `doctor`'s checks.
//!
//! The rustup `rustc` that is usually first in `PATH` has no `rust-src` here, so the kernel
//! is always built with Debian's `rustc-web` (`/usr/bin/rustc`, whose `core` source comes from
//! `rust-web-src`) passed explicitly as `RUSTC`, `HOSTRUSTC` and `RUSTDOC`.

use crate::util::{self, output};
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::process::Command;

/// bindgen-cli version installed by `setup` (pinned: see README, kernel doctest pitfall).
pub const BINDGEN_VERSION: &str = "0.73.2";
/// LLVM suffix passed as `LLVM=-19`.
pub const LLVM_SUFFIX: &str = "-19";

/// An LLVM tool of the kernel's LLVM, e.g. `llvm_tool("llvm-size")` -> `llvm-size-19`.
pub fn llvm_tool(name: &str) -> String {
    format!("{name}{LLVM_SUFFIX}")
}

/// Paths of the programs used to build the kernel.
#[derive(Debug, Clone)]
pub struct Toolchain {
    pub rustc: PathBuf,
    pub rustdoc: PathBuf,
    pub bindgen: PathBuf,
}

impl Toolchain {
    /// Find the toolchain; `RUSTC`, `RUSTDOC` and `BINDGEN` in the environment win.
    pub fn find() -> Toolchain {
        let env = |k: &str, d: PathBuf| std::env::var_os(k).map(PathBuf::from).unwrap_or(d);
        Toolchain {
            rustc: env("KRUSTC", PathBuf::from("/usr/bin/rustc")),
            rustdoc: env("KRUSTDOC", PathBuf::from("/usr/bin/rustdoc")),
            bindgen: env("BINDGEN", util::home().join(".cargo/bin/bindgen")),
        }
    }

    /// Variables passed to every kernel `make`.
    pub fn make_vars(&self) -> Vec<String> {
        vec![
            format!("LLVM={LLVM_SUFFIX}"),
            format!("RUSTC={}", self.rustc.display()),
            format!("HOSTRUSTC={}", self.rustc.display()),
            format!("RUSTDOC={}", self.rustdoc.display()),
            format!("BINDGEN={}", self.bindgen.display()),
        ]
    }

    /// A `make` command for the kernel with the toolchain variables set.
    pub fn kmake(&self) -> Command {
        let mut c = Command::new("make");
        c.args(self.make_vars());
        c.env("LIBCLANG_PATH", "/usr/lib/llvm-19/lib");
        c
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
        let mut clang = Command::new(format!("clang{LLVM_SUFFIX}"));
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
