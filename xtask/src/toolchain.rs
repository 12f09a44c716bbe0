//! The toolchain: which programs build the kernel and the modules, and `doctor`'s checks.
//!
//! The rustup `rustc` that is usually first in `PATH` has no `rust-src` here, so the kernel
//! is always built with Debian's `rustc-web` (`/usr/bin/rustc`, whose `core` source comes from
//! `rust-web-src`) passed explicitly as `RUSTC`, `HOSTRUSTC` and `RUSTDOC`.

use crate::util::{self, output};
use anyhow::{bail, Result};
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

/// Debian packages the workbench needs, with a description for `doctor`.
pub const APT_PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "rustc/rustdoc 1.96 for the kernel"),
    ("rust-web-src", "the matching `core` source"),
    ("rust-web-clippy", "clippy for `make CLIPPY=1`"),
    ("rustfmt-web", "rustfmt for the modules"),
    ("clang-19", "C compiler for LLVM=-19"),
    ("lld-19", "linker for LLVM=-19"),
    ("llvm-19", "llvm-ar/nm/objcopy for LLVM=-19"),
    ("libclang-19-dev", "libclang for bindgen"),
    ("make", "kernel build"),
    ("gcc", "host C compiler"),
    ("libc6-dev", "static glibc for the guest test binaries"),
    ("flex", "kconfig"),
    ("bison", "kconfig"),
    ("bc", "kernel build"),
    ("libelf-dev", "objtool"),
    ("libssl-dev", "kernel host tools"),
    ("cpio", "initramfs tools"),
    ("xz-utils", "kernel source tarball"),
    ("kmod", "depmod/modinfo on the host"),
    ("python3", "KTAP parsing with kunit.py"),
    ("busybox-static", "the guest's userland"),
    ("gcc-multilib", "32-bit C test programs (guest/c)"),
    ("qemu-system-x86", "the virtual machine"),
];

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

/// `dpkg` says the package is installed.
pub fn apt_installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

/// Packages from [`APT_PACKAGES`] that are missing.
pub fn missing_packages() -> Vec<&'static str> {
    APT_PACKAGES
        .iter()
        .map(|(p, _)| *p)
        .filter(|p| !apt_installed(p))
        .collect()
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

/// One `doctor` finding.
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
    pub fix: String,
}

/// Run every check. `ksrc` is the kernel source if one is configured.
pub fn checks(tc: &Toolchain, ksrc: Option<&Path>) -> Vec<Check> {
    let mut v = Vec::new();
    let missing = missing_packages();
    for (pkg, why) in APT_PACKAGES {
        let ok = !missing.contains(pkg);
        v.push(Check {
            what: format!("package {pkg}"),
            ok,
            detail: why.to_string(),
            fix: format!("apt-get install --no-install-recommends {pkg}   (or: cargo xtask setup)"),
        });
    }

    // rustc with a matching core source.
    let rustc_ver = output(Command::new(&tc.rustc).arg("--version")).ok();
    let sysroot = output(Command::new(&tc.rustc).args(["--print", "sysroot"]))
        .ok()
        .map(|s| PathBuf::from(s.trim()));
    let core = sysroot
        .as_ref()
        .map(|s| s.join("lib/rustlib/src/rust/library/core/src/lib.rs"));
    let core_ok = core.as_ref().is_some_and(|c| c.exists());
    v.push(Check {
        what: format!("rustc for the kernel ({})", tc.rustc.display()),
        ok: rustc_ver.is_some() && core_ok,
        detail: match (&rustc_ver, &core) {
            (Some(ver), Some(c)) if core_ok => {
                format!("{}, core source {}", ver.trim(), c.display())
            }
            (Some(ver), _) => format!("{} but no `core` source in its sysroot", ver.trim()),
            _ => "not found".into(),
        },
        fix: "apt-get install rustc-web rust-web-src   (or set KRUSTC=/path/to/rustc)".into(),
    });
    if let (Some(ver), Some(ksrc)) = (&rustc_ver, ksrc) {
        if let (Some(have), Ok(min)) = (parse_version(ver), kernel_min_version(ksrc, "rustc")) {
            v.push(Check {
                what: "rustc >= kernel minimum".into(),
                ok: have >= min,
                detail: format!("have {have:?}, kernel needs {min:?}"),
                fix: "apt-get install rustc-web rust-web-src".into(),
            });
        }
    }

    // bindgen.
    let bg = output(Command::new(&tc.bindgen).arg("--version")).ok();
    let bg_ver = bg.as_deref().and_then(parse_version);
    let min = ksrc
        .and_then(|k| kernel_min_version(k, "bindgen").ok())
        .unwrap_or((0, 65, 1));
    v.push(Check {
        what: format!("bindgen ({})", tc.bindgen.display()),
        ok: bg_ver.is_some_and(|b| b >= min),
        detail: match bg_ver {
            Some(b) => format!("have {b:?}, kernel needs >= {min:?}, pinned {BINDGEN_VERSION}"),
            None => "not found or not runnable".into(),
        },
        fix: format!(
            "cargo install bindgen-cli --version {BINDGEN_VERSION} --locked   (or unset BINDGEN)"
        ),
    });

    // Kernel source.
    let src_ok = ksrc.is_some_and(|k| k.join("Makefile").exists() && k.join("rust").is_dir());
    v.push(Check {
        what: "kernel source".into(),
        ok: src_ok,
        detail: ksrc
            .map(|k| k.display().to_string())
            .unwrap_or_else(|| "none configured".into()),
        fix: "cargo xtask setup   (or: cargo xtask setup --kernel-src DIR|TARBALL)".into(),
    });
    v
}

/// `make rustavailable` in a scratch build dir.
pub fn rustavailable(tc: &Toolchain, ksrc: &Path) -> Result<String> {
    let scratch = util::cache_dir().join("rustavailable");
    std::fs::create_dir_all(&scratch)?;
    let out = Command::new("make")
        .args(tc.make_vars())
        .arg("-C")
        .arg(ksrc)
        .arg(format!("O={}", scratch.display()))
        .arg("rustavailable")
        .env("LIBCLANG_PATH", "/usr/lib/llvm-19/lib")
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("make rustavailable failed:\n{text}");
    }
    Ok(text)
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
