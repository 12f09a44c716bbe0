//! `build`: the out-of-tree modules (Kbuild against the cached kernel build) and the static
//! guest binaries (libtest test binaries and helper programs from the `guest` crate).

use crate::kernel::{self, Kernel};
use crate::toolchain::{self, Toolchain};
use crate::util::{self, run_logged};
use crate::{flags, kdir, setup};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Module source directories built with `make M=...`, relative to the repository root.
pub const MODULE_DIRS: &[&str] = &["modules", "modules-c"];
/// The userspace target: static glibc binaries run in the guest's busybox userland.
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// What `build` produced.
#[derive(Debug, Default)]
pub struct Artifacts {
    /// `.ko` files.
    pub modules: Vec<PathBuf>,
    /// libtest binaries, with the test file's name.
    pub tests: Vec<(String, PathBuf)>,
    /// Helper programs (`guest/src/bin/*`), installed in the guest's `/bin`.
    pub bins: Vec<(String, PathBuf)>,
}

impl flags::Build {
    pub fn run(self) -> Result<()> {
        if let Some(kdir) = &self.kdir {
            return kdir::build(kdir).map(drop);
        }
        setup::ensure_ready()?;
        build_all(&kernel::ensure(self.profile, false)?).map(drop)
    }
}

/// Output directory for the module source dirs (`MO=<this>/<dir>`), so the tree stays clean.
fn module_out(k: &Kernel) -> PathBuf {
    util::target_dir().join("kmod").join(k.profile.name())
}

/// Build everything.
pub fn build_all(k: &Kernel) -> Result<Artifacts> {
    let modules = build_modules(k, None)?;
    let (tests, bins) = build_guest(false)?;
    build_c32()?;
    eprintln!(
        "build: {} modules, {} test binaries, {} helper programs",
        modules.len(),
        tests.len(),
        bins.len()
    );
    Ok(Artifacts {
        modules,
        tests,
        bins,
    })
}

/// `make -C <build> M=<dir> MO=<out> modules` for every module dir of the test kernel `k`.
pub fn build_modules(k: &Kernel, extra: Option<&[&str]>) -> Result<Vec<PathBuf>> {
    let vars = Toolchain::find().make_vars();
    build_modules_in(&k.build, &module_out(k), &vars, extra.unwrap_or(&[]))
}

/// The same against any kernel build tree `kdir` (e.g. a host's
/// `/lib/modules/$(uname -r)/build`) with the `make` variables `vars`, into `out_root/<dir>`.
pub fn build_modules_in(
    kdir: &Path,
    out_root: &Path,
    vars: &[String],
    extra: &[&str],
) -> Result<Vec<PathBuf>> {
    let _lock = util::lock("modules")?;
    let mut kos = Vec::new();
    for dir in MODULE_DIRS {
        let src = util::repo_root().join(dir);
        if !src.join("Kbuild").exists() {
            continue;
        }
        let out = out_root.join(dir);
        std::fs::create_dir_all(&out)?;
        let mut c = toolchain::make(vars);
        c.arg("-C")
            .arg(kdir)
            .arg(format!("M={}", src.display()))
            .arg(format!("MO={}", out.display()))
            .arg(format!("-j{}", util::jobs()))
            .args(extra)
            .arg("modules");
        run_logged(&mut c, &out.join("build.log"), &format!("make M={dir}"))?;
        // Kbuild's modules.order lists the modules of this build only: the stale .ko of a
        // deleted module stays under `out` and must not reach the guest.
        match std::fs::read_to_string(out.join("modules.order")) {
            Ok(order) => kos.extend(
                order
                    .lines()
                    .map(|o| out.join(o.trim()).with_extension("ko"))
                    .filter(|p| p.exists()),
            ),
            Err(_) => collect_kos(&out, &mut kos)?,
        }
    }
    kos.sort();
    // Two modules of the same name would shadow each other in the guest.
    let mut names: Vec<String> = kos.iter().map(|p| module_name(p)).collect();
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!("two modules are named {}", w[0]);
    }
    Ok(kos)
}

/// `foo.ko` -> `foo`.
pub fn module_name(p: &Path) -> String {
    p.file_stem().unwrap().to_string_lossy().into_owned()
}

fn collect_kos(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_kos(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "ko") {
            out.push(p);
        }
    }
    Ok(())
}

/// `(name, executable)` pairs.
pub type Named = Vec<(String, PathBuf)>;

/// The guest crate's libtest binaries (`guest/tests/*.rs`) and helper programs
/// (`guest/src/bin/*.rs`), statically linked.
pub fn build_guest(release: bool) -> Result<(Named, Named)> {
    let tests = cargo_artifacts(&["test", "--no-run", "--tests"], release, true)?;
    let bins = cargo_artifacts(&["build", "--bins"], release, false)?;
    Ok((tests, bins))
}

/// Run cargo on the guest crate for the guest target; return `(target name, executable)`
/// of the test (`want_tests`) or bin artifacts.
fn cargo_artifacts(
    args: &[&str],
    release: bool,
    want_tests: bool,
) -> Result<Vec<(String, PathBuf)>> {
    let mut c = toolchain::cargo();
    c.current_dir(util::repo_root())
        .args(args)
        .args(["--package", "guest", "--target", GUEST_TARGET])
        .arg("--message-format=json-render-diagnostics")
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        );
    if release {
        c.arg("--release");
    }
    let out = c
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo for the guest crate")?;
    if !out.status.success() {
        bail!("building the guest binaries failed (see the errors above)");
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let Some(exe) = v["executable"].as_str() else {
            continue;
        };
        if v["reason"] != "compiler-artifact" {
            continue;
        }
        let kinds = v["target"]["kind"].to_string();
        let wanted = if want_tests {
            kinds.contains("\"test\"")
        } else {
            kinds.contains("\"bin\"")
        };
        if wanted {
            let name = v["target"]["name"].as_str().unwrap_or("?").to_string();
            found.push((name, PathBuf::from(exe)));
        }
    }
    found.sort();
    Ok(found)
}

/// 32-bit C test programs: `guest/c/NAME.c` -> `target/guest-c32/NAME`, built with
/// `gcc -m32 -static -O2 -Wall -Werror -I include/uapi` (Debian's `gcc-multilib`) when the
/// source or a header under `include/uapi` is newer than the program. They exercise the
/// kernel's compat (32-bit) syscall paths; `initramfs::create` packs them into `/tests/bin32/`.
pub fn build_c32() -> Result<Named> {
    let root = util::repo_root();
    let out_dir = util::target_dir().join("guest-c32");
    std::fs::create_dir_all(&out_dir)?;
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let headers: Vec<PathBuf> = std::fs::read_dir(root.join("include/uapi"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    let mut built = Vec::new();
    for (name, src) in c32_sources() {
        let exe = out_dir.join(&name);
        let newest = headers.iter().chain([&src]).filter_map(|p| mtime(p)).max();
        if mtime(&exe).is_none_or(|t| newest.is_some_and(|n| n > t)) {
            let mut c = Command::new("gcc");
            c.args(["-m32", "-static", "-O2", "-Wall", "-Werror", "-I"])
                .arg(root.join("include/uapi"))
                .arg(&src)
                .arg("-o")
                .arg(&exe);
            let out = c.output().context("running gcc -m32")?;
            if !out.status.success() {
                bail!(
                    "{} failed:\n{}(32-bit builds need gcc-multilib: `cargo xtask setup`)",
                    util::show(&c),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        built.push((name, exe));
    }
    Ok(built)
}

/// `(NAME, guest/c/NAME.c)` for every C test program, sorted.
fn c32_sources() -> Named {
    let mut v: Named = std::fs::read_dir(util::repo_root().join("guest/c"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "c"))
                .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The 32-bit programs already built by [`build_c32`], for the initramfs.
pub fn c32_programs() -> Named {
    let dir = util::target_dir().join("guest-c32");
    c32_sources()
        .into_iter()
        .map(|(name, _)| (name.clone(), dir.join(name)))
        .filter(|(_, exe)| exe.exists())
        .collect()
}
