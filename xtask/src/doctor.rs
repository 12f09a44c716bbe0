//! `doctor`: is everything the workbench needs here? One function per check, each with the
//! command that fixes it; `doctor --kdir DIR` runs `kdir`'s checks of another kernel tree.
//! `setup::ensure_ready` runs the same checks before the commands that need them.

use crate::toolchain::{self, Toolchain, BINDGEN_VERSION};
use crate::util::{self, output};
use crate::{flags, kdir, setup};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One finding.
pub struct Check {
    pub what: String,
    pub ok: bool,
    pub detail: String,
    pub fix: String,
}

impl flags::Doctor {
    pub fn run(self) -> Result<()> {
        match self.kdir {
            Some(kdir) => kdir::doctor(&kdir),
            None => doctor(),
        }
    }
}

/// `doctor`: every check, with the fix for each failing one, then `make rustavailable`.
fn doctor() -> Result<()> {
    let tc = Toolchain::find();
    let ksrc = setup::kernel_src();
    let mut bad = print_checks(&checks(&tc, ksrc.as_deref()));
    if bad == 0 {
        let ksrc = ksrc.expect("checked above");
        match rustavailable(&tc, &ksrc) {
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

/// Print checks, `ok` or `MISSING` with the fix; returns how many failed.
pub fn print_checks(checks: &[Check]) -> usize {
    let mut bad = 0;
    for c in checks {
        if c.ok {
            println!("ok      {:<40} {}", c.what, c.detail);
        } else {
            bad += 1;
            println!("MISSING {:<40} {}", c.what, c.detail);
            println!("        fix: {}", c.fix);
        }
    }
    bad
}

/// Every check of this machine. `ksrc` is the kernel source if one is configured.
pub fn checks(tc: &Toolchain, ksrc: Option<&Path>) -> Vec<Check> {
    let mut v = packages();
    v.push(rustc(tc));
    v.extend(ksrc.and_then(|k| rustc_minimum(tc, k)));
    v.push(bindgen(tc, ksrc));
    v.push(kernel_source(ksrc));
    v
}

/// The Debian packages of `setup::APT_PACKAGES`, one check each.
fn packages() -> Vec<Check> {
    let missing = setup::missing_packages();
    setup::APT_PACKAGES
        .iter()
        .map(|(pkg, why)| Check {
            what: format!("package {pkg}"),
            ok: !missing.contains(pkg),
            detail: why.to_string(),
            fix: format!("apt-get install --no-install-recommends {pkg}   (or: cargo xtask setup)"),
        })
        .collect()
}

/// The kernel's `rustc` runs and has the `core` source in its sysroot.
fn rustc(tc: &Toolchain) -> Check {
    let version = output(Command::new(&tc.rustc).arg("--version")).ok();
    let core = output(Command::new(&tc.rustc).args(["--print", "sysroot"]))
        .ok()
        .map(|s| PathBuf::from(s.trim()).join("lib/rustlib/src/rust/library/core/src/lib.rs"));
    let core_ok = core.as_ref().is_some_and(|c| c.exists());
    Check {
        what: format!("rustc for the kernel ({})", tc.rustc.display()),
        ok: version.is_some() && core_ok,
        detail: match (&version, &core) {
            (Some(ver), Some(c)) if core_ok => {
                format!("{}, core source {}", ver.trim(), c.display())
            }
            (Some(ver), _) => format!("{} but no `core` source in its sysroot", ver.trim()),
            _ => "not found".into(),
        },
        fix: "apt-get install rustc-web rust-web-src   (or set KRUSTC=/path/to/rustc)".into(),
    }
}

/// `rustc` is at least the kernel's minimum (`scripts/min-tool-version.sh`); `None` when
/// either version cannot be read (the `rustc` check reports a missing compiler).
fn rustc_minimum(tc: &Toolchain, ksrc: &Path) -> Option<Check> {
    let version = output(Command::new(&tc.rustc).arg("--version")).ok()?;
    let have = toolchain::parse_version(&version)?;
    let min = toolchain::kernel_min_version(ksrc, "rustc").ok()?;
    Some(Check {
        what: "rustc >= kernel minimum".into(),
        ok: have >= min,
        detail: format!("have {have:?}, kernel needs {min:?}"),
        fix: "apt-get install rustc-web rust-web-src".into(),
    })
}

/// `bindgen` runs and is at least the kernel's minimum.
fn bindgen(tc: &Toolchain, ksrc: Option<&Path>) -> Check {
    let have = output(Command::new(&tc.bindgen).arg("--version"))
        .ok()
        .as_deref()
        .and_then(toolchain::parse_version);
    let min = ksrc
        .and_then(|k| toolchain::kernel_min_version(k, "bindgen").ok())
        .unwrap_or((0, 65, 1));
    Check {
        what: format!("bindgen ({})", tc.bindgen.display()),
        ok: have.is_some_and(|b| b >= min),
        detail: match have {
            Some(b) => format!("have {b:?}, kernel needs >= {min:?}, pinned {BINDGEN_VERSION}"),
            None => "not found or not runnable".into(),
        },
        fix: format!(
            "cargo install bindgen-cli --version {BINDGEN_VERSION} --locked   (or unset BINDGEN)"
        ),
    }
}

/// A kernel source tree with Rust support is configured.
fn kernel_source(ksrc: Option<&Path>) -> Check {
    Check {
        what: "kernel source".into(),
        ok: ksrc.is_some_and(|k| k.join("Makefile").exists() && k.join("rust").is_dir()),
        detail: ksrc
            .map(|k| k.display().to_string())
            .unwrap_or_else(|| "none configured".into()),
        fix: "cargo xtask setup   (or: cargo xtask setup --kernel-src DIR|TARBALL)".into(),
    }
}

/// `make rustavailable` in a scratch build dir.
fn rustavailable(tc: &Toolchain, ksrc: &Path) -> Result<String> {
    let scratch = util::cache_dir().join("rustavailable");
    std::fs::create_dir_all(&scratch)?;
    let (ok, text) = util::capture(
        tc.kmake()
            .arg("-C")
            .arg(ksrc)
            .arg(format!("O={}", scratch.display()))
            .arg("rustavailable"),
    )?;
    if !ok {
        bail!("make rustavailable failed:\n{text}");
    }
    Ok(text)
}
