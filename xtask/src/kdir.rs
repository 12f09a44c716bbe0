//! `kdir`: the modules against a kernel build tree other than the workbench's own, the
//! chapter's way (`make -C /lib/modules/$(uname -r)/build M=$PWD`).
//!
//! `doctor --kdir DIR` checks that a tree can build Rust modules at all (a `CONFIG_RUST=y`
//! config, the `rust/*.rmeta` metadata, Rust symbols in `Module.symvers`, the same `rustc`
//! and C compiler the kernel was built with) and says what to do about each gap; distro
//! headers packages usually fail the metadata check. `build --kdir DIR` builds every module
//! dir against such a tree into `target/kmod/kdir-<release>/`, and `install --on-host` loads
//! the result into the running kernel, refusing unless the tree's release is `uname -r`.

use crate::build::{self, MODULE_DIRS};
use crate::doctor::{print_checks, Check};
use crate::toolchain::{Toolchain, LLVM_MAJOR};
use crate::{flags, kernel, util};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Files under `rust/` that every Rust module build links against (`--extern` and `-L`).
pub const RUST_METADATA: &[&str] = &[
    "libcore.rmeta",
    "libcompiler_builtins.rmeta",
    "libffi.rmeta",
    "libpin_init.rmeta",
    "libkernel.rmeta",
    "libmacros.so",
];

/// Release of the running kernel (`uname -r`).
pub fn running_release() -> Result<String> {
    let p = "/proc/sys/kernel/osrelease";
    Ok(std::fs::read_to_string(p)
        .with_context(|| format!("reading {p}"))?
        .trim()
        .to_string())
}

/// `/lib/modules/$(uname -r)/build`, the chapter's `KDIR`.
pub fn default_kdir() -> Result<PathBuf> {
    Ok(PathBuf::from(format!(
        "/lib/modules/{}/build",
        running_release()?
    )))
}

/// The tree's configuration: `.config`, else `include/config/auto.conf` (all a headers
/// package has). Returns the file used and its `CONFIG_*` values.
pub fn tree_config(kdir: &Path) -> Option<(PathBuf, BTreeMap<String, String>)> {
    [".config", "include/config/auto.conf"]
        .iter()
        .map(|f| kdir.join(f))
        .find_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            Some((p, kernel::parse_fragment(&text)))
        })
}

/// A config string value without its quotes.
fn unquote(v: &str) -> &str {
    v.trim_matches('"')
}

/// `make` variables for building modules against `kdir`: the C compiler family the tree was
/// built with (`LLVM=-N` for clang N, nothing for GCC) and the workbench's `rustc`.
pub fn make_vars(tc: &Toolchain, cfg: &BTreeMap<String, String>) -> Vec<String> {
    let llvm = (cfg.get("CONFIG_CC_IS_CLANG").map(String::as_str) == Some("y"))
        .then(|| format!("-{}", clang_major(cfg).unwrap_or(LLVM_MAJOR)));
    tc.make_vars_with(llvm.as_deref())
}

/// `CONFIG_CLANG_VERSION=190107` -> 19.
fn clang_major(cfg: &BTreeMap<String, String>) -> Option<u32> {
    cfg.get("CONFIG_CLANG_VERSION")?
        .parse::<u32>()
        .ok()
        .map(|v| v / 10000)
        .filter(|m| *m > 0)
}

/// Does this `Module.symvers` export Rust symbols (v0-mangled names start with `_R`)?
pub fn symvers_has_rust(text: &str) -> bool {
    text.lines()
        .any(|l| l.split('\t').nth(1).is_some_and(|s| s.starts_with("_R")))
}

/// Every check of a build tree, in `doctor`'s format. Stops at the first check whose
/// failure makes the later ones meaningless (no tree, no config, no Rust).
pub fn checks(kdir: &Path, tc: &Toolchain) -> Vec<Check> {
    let tree = is_tree(kdir);
    if !tree.ok {
        return vec![tree];
    }
    let mut v = vec![tree, release(kdir)];
    let Some((cfg_file, cfg)) = tree_config(kdir) else {
        v.push(no_config(kdir));
        return v;
    };
    let rust = rust_enabled(&cfg_file, &cfg);
    let rust_ok = rust.ok;
    v.push(rust);
    if !rust_ok {
        return v;
    }
    v.push(rust_metadata(kdir));
    v.push(symvers(kdir));
    v.push(rustc_matches(tc, &cfg));
    v.push(c_compiler(&cfg));
    v
}

/// `kdir` is a kernel build tree at all.
fn is_tree(kdir: &Path) -> Check {
    let d = kdir.display();
    let ok = kdir.join("Makefile").exists();
    Check {
        what: "kernel build tree".into(),
        ok,
        detail: if ok {
            format!("{d}")
        } else {
            format!("{d} has no Makefile")
        },
        fix: "install the headers of the kernel you want to build for (Debian: apt-get install \
              linux-headers-$(uname -r)), or pass --kdir with the O= directory that kernel was \
              built in"
            .into(),
    }
}

/// The tree is prepared (has its release), and whether that is the running kernel.
fn release(kdir: &Path) -> Check {
    let release = kernel::release_of(kdir);
    let running = running_release().unwrap_or_default();
    Check {
        what: "kernel release".into(),
        ok: release.is_ok(),
        detail: match &release {
            Ok(r) if *r == running => format!("{r} (the running kernel)"),
            Ok(r) => format!(
                "{r} (running kernel: {running}; modules built here load only on {r}, \
                 e.g. in `cargo xtask run`'s VM when it boots this tree)"
            ),
            Err(e) => format!("{e:#}"),
        },
        fix: format!(
            "prepare the tree: make -C {} modules_prepare",
            kdir.display()
        ),
    }
}

/// The failed check when the tree has no configuration.
fn no_config(kdir: &Path) -> Check {
    Check {
        what: "kernel config".into(),
        ok: false,
        detail: "neither .config nor include/config/auto.conf".into(),
        fix: format!(
            "configure and prepare the tree: make -C {} olddefconfig modules_prepare",
            kdir.display()
        ),
    }
}

/// `CONFIG_RUST=y` in the tree's configuration.
fn rust_enabled(cfg_file: &Path, cfg: &BTreeMap<String, String>) -> Check {
    let rust = cfg.get("CONFIG_RUST").map(String::as_str) == Some("y");
    let available = cfg.get("CONFIG_RUST_IS_AVAILABLE").map(String::as_str) == Some("y");
    Check {
        what: "CONFIG_RUST=y".into(),
        ok: rust,
        detail: if rust {
            format!("in {}", cfg_file.display())
        } else if available {
            format!("CONFIG_RUST is not set in {}", cfg_file.display())
        } else {
            format!(
                "CONFIG_RUST is not set in {} (and CONFIG_RUST_IS_AVAILABLE is not set: no \
                 usable Rust toolchain when it was configured)",
                cfg_file.display()
            )
        },
        fix: "this kernel has no Rust support, so no Rust module can load into it: rebuild it \
              with CONFIG_RUST=y (`make LLVM=1 rustavailable` says what the toolchain lacks), \
              or use the workbench's kernel: `cargo xtask run` / `cargo xtask test`"
            .into(),
    }
}

/// The `rust/` metadata every Rust module build links against.
fn rust_metadata(kdir: &Path) -> Check {
    let rust_dir = kdir.join("rust");
    let missing: Vec<&str> = RUST_METADATA
        .iter()
        .copied()
        .filter(|f| !rust_dir.join(f).exists())
        .collect();
    Check {
        what: "Rust metadata (rust/*.rmeta)".into(),
        ok: missing.is_empty(),
        detail: if missing.is_empty() {
            format!("{} has {}", rust_dir.display(), RUST_METADATA.join(" "))
        } else if !rust_dir.is_dir() {
            format!("no {} directory", rust_dir.display())
        } else {
            format!("{} lacks {}", rust_dir.display(), missing.join(" "))
        },
        fix: "headers packages usually do not ship the Rust metadata (the kernel's \
              scripts/package/install-extmod-build copies no rust/ files): build against the \
              full O= tree the kernel was built in, or copy its rust/*.rmeta rust/*.so into \
              this tree"
            .into(),
    }
}

/// `Module.symvers` exports the kernel crate's Rust symbols.
fn symvers(kdir: &Path) -> Check {
    let symvers = kdir.join("Module.symvers");
    let text = std::fs::read_to_string(&symvers).ok();
    let ok = text.as_deref().is_some_and(symvers_has_rust);
    Check {
        what: "Module.symvers exports Rust symbols".into(),
        ok,
        detail: match &text {
            None => format!("no {}", symvers.display()),
            Some(_) if !ok => format!("{} has no `_R...` (Rust) symbols", symvers.display()),
            Some(t) => format!("{} ({} symbols)", symvers.display(), t.lines().count()),
        },
        fix: "use the tree the kernel was fully built in (`make modules_prepare` alone writes \
              no Module.symvers), or the Module.symvers that came with that kernel"
            .into(),
    }
}

/// Our `rustc` is the one the tree was built with (its `.rmeta` files need exactly that).
fn rustc_matches(tc: &Toolchain, cfg: &BTreeMap<String, String>) -> Check {
    let want = cfg
        .get("CONFIG_RUSTC_VERSION_TEXT")
        .map(|s| unquote(s).to_string())
        .unwrap_or_default();
    let have = util::output(Command::new(&tc.rustc).arg("--version"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "not runnable".into());
    Check {
        what: format!("rustc matches the tree ({})", tc.rustc.display()),
        ok: !want.is_empty() && want == have,
        detail: format!("tree built with `{want}`, have `{have}`"),
        fix: "set KRUSTC (and KRUSTDOC) to the rustc the kernel was built with: the .rmeta \
              files only load into that exact compiler version"
            .into(),
    }
}

/// The C compiler family the tree was built with is installed.
fn c_compiler(cfg: &BTreeMap<String, String>) -> Check {
    let (cc, ok, fix) = if cfg.get("CONFIG_CC_IS_CLANG").map(String::as_str) == Some("y") {
        let major = clang_major(cfg).unwrap_or(LLVM_MAJOR);
        (
            format!("clang {major} (LLVM=-{major})"),
            which(&format!("clang-{major}")),
            format!("apt-get install clang-{major} lld-{major} llvm-{major}"),
        )
    } else {
        let ver = cfg.get("CONFIG_GCC_VERSION").cloned().unwrap_or_default();
        (
            "gcc ".to_string() + &ver,
            which("gcc"),
            "apt-get install gcc".into(),
        )
    };
    Check {
        what: "C compiler of the tree".into(),
        ok,
        detail: if ok { cc } else { format!("{cc}: not found") },
        fix,
    }
}

/// Is `prog` in `PATH`?
fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).is_file()))
}

/// `doctor --kdir DIR`.
pub fn doctor(kdir: &Path) -> Result<()> {
    let tc = Toolchain::find();
    let bad = print_checks(&checks(kdir, &tc));
    if bad > 0 {
        bail!(
            "{} cannot build the Rust modules: {bad} problem(s), see the fixes above",
            kdir.display()
        );
    }
    println!(
        "{} can build the Rust modules: cargo xtask build --kdir {}",
        kdir.display(),
        kdir.display()
    );
    Ok(())
}

/// Fail with the failing checks unless `kdir` can build Rust modules.
fn require_usable(kdir: &Path, tc: &Toolchain) -> Result<BTreeMap<String, String>> {
    let failed: Vec<String> = checks(kdir, tc)
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}\n    fix: {}", c.what, c.detail, c.fix))
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} cannot build the Rust modules (see `cargo xtask doctor --kdir {}`):\n  {}",
            kdir.display(),
            kdir.display(),
            failed.join("\n  ")
        );
    }
    Ok(tree_config(kdir).map(|(_, c)| c).unwrap_or_default())
}

/// Output directory of `build --kdir` for a tree of this release.
pub fn out_dir(release: &str) -> PathBuf {
    util::target_dir()
        .join("kmod")
        .join(format!("kdir-{release}"))
}

/// `build --kdir DIR`: every module dir against the tree; returns the `.ko` files.
pub fn build(kdir: &Path) -> Result<Vec<PathBuf>> {
    let kdir = kdir
        .canonicalize()
        .with_context(|| format!("--kdir {}", kdir.display()))?;
    let tc = Toolchain::find();
    let cfg = require_usable(&kdir, &tc)?;
    let release = kernel::release_of(&kdir)?;
    let out = out_dir(&release);
    eprintln!("build: modules against {} ({release})", kdir.display());
    let kos = build::build_modules_in(&kdir, &out, &make_vars(&tc, &cfg), &[])?;
    for ko in &kos {
        println!("{}", ko.display());
    }
    eprintln!(
        "build: {} modules for {release} in {} (dirs: {})",
        kos.len(),
        out.display(),
        MODULE_DIRS.join(", ")
    );
    Ok(kos)
}

impl flags::Install {
    pub fn run(self) -> Result<()> {
        install(self.kdir.as_deref(), self.on_host)
    }
}

/// `install --on-host`: build against the running kernel's tree and `insmod` every module.
pub fn install(kdir: Option<&Path>, on_host: bool) -> Result<()> {
    let running = running_release()?;
    if !on_host {
        bail!(
            "`install` loads the modules into the kernel running on THIS machine ({running}); a \
             bug in a module can crash it or corrupt data. Pass --on-host if you mean it. To try \
             the modules safely, use `cargo xtask run` (a VM)"
        );
    }
    let kdir = match kdir {
        Some(d) => d.to_path_buf(),
        None => default_kdir()?,
    };
    if !kdir.exists() {
        bail!(
            "no kernel build tree at {} for the running kernel {running}: install its headers \
             (Debian: apt-get install linux-headers-{running}) or pass --kdir",
            kdir.display()
        );
    }
    let release = kernel::release_of(&kdir)?;
    if release != running {
        bail!(
            "refusing to load: {} is a build tree for {release}, but this machine runs \
             {running}; a module only loads into the kernel release it was built for. Use \
             --kdir /lib/modules/{running}/build, or boot {release} (the workbench's kernel: \
             `cargo xtask run`)",
            kdir.display()
        );
    }
    if !util::is_root() {
        bail!("loading modules needs root: sudo cargo xtask install --on-host");
    }
    let kos = build(&kdir)?;
    if kos.is_empty() {
        bail!("no modules were built");
    }
    let names: Vec<String> = kos.iter().map(|p| build::module_name(p)).collect();
    if std::io::stdin().is_terminal() {
        print!(
            "Load {} module(s) into the running kernel {running}: {}? [y/N] ",
            kos.len(),
            names.join(" ")
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("not loading anything (answer was not `y`)");
        }
    }
    let loaded = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    for (ko, name) in kos.iter().zip(&names) {
        if loaded
            .lines()
            .any(|l| l.split(' ').next() == Some(name.as_str()))
        {
            println!("skip    {name} (already loaded)");
            continue;
        }
        util::run(Command::new("insmod").arg(ko))?;
        println!("loaded  {name}");
    }
    println!("unload with: rmmod {}", names.join(" "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory that looks like a kernel build tree of `release` (a `Makefile`
    /// and `include/config/kernel.release`), with these other files.
    fn fake_tree(tag: &str, release: &str, files: &[(&str, &str)]) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-kdir-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let release_file = format!("{release}\n");
        let tree = [
            ("Makefile", "# fake\n"),
            ("include/config/kernel.release", release_file.as_str()),
        ];
        for (path, text) in tree.iter().chain(files) {
            let p = d.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        d
    }

    #[test]
    fn symvers_rust_detection() {
        let c = "0x1234\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n";
        let r = "0x0\t_RNvNtCs1_6kernel5print11call_printk\tvmlinux\tEXPORT_SYMBOL_GPL\t\n";
        assert!(!symvers_has_rust(c));
        assert!(symvers_has_rust(&format!("{c}{r}")));
    }

    #[test]
    fn make_vars_follow_the_compiler() {
        let tc = Toolchain::find();
        let clang =
            crate::kernel::parse_fragment("CONFIG_CC_IS_CLANG=y\nCONFIG_CLANG_VERSION=180108\n");
        assert_eq!(make_vars(&tc, &clang)[0], "LLVM=-18");
        let gcc = crate::kernel::parse_fragment("CONFIG_CC_IS_GCC=y\nCONFIG_GCC_VERSION=120200\n");
        assert!(make_vars(&tc, &gcc).iter().all(|v| !v.starts_with("LLVM")));
    }

    #[test]
    fn tree_without_rust_is_reported() {
        let d = fake_tree(
            "norust",
            "6.1.0-fake",
            &[(".config", "CONFIG_MODULES=y\n# CONFIG_RUST is not set\n")],
        );
        let c = checks(&d, &Toolchain::find());
        let rust = c.iter().find(|c| c.what == "CONFIG_RUST=y").unwrap();
        assert!(!rust.ok);
        assert!(
            rust.detail.contains("CONFIG_RUST is not set"),
            "{}",
            rust.detail
        );
        assert!(
            rust.fix.contains("rebuild it with CONFIG_RUST=y"),
            "{}",
            rust.fix
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    #[ignore = "needs the built test kernel: run by .ci/run after `cargo xtask kernel`"]
    fn cached_test_kernel_tree_is_ok() {
        let k = kernel::built_test_kernel();
        let c = checks(&k.build, &Toolchain::find());
        let bad: Vec<String> = c
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.what, c.detail))
            .collect();
        assert!(bad.is_empty(), "{bad:?}");
        assert!(c.len() >= 7, "every check ran");
        doctor(&k.build).unwrap();
    }

    #[test]
    fn install_refuses_without_flag_and_on_release_mismatch() {
        let e = install(None, false).unwrap_err().to_string();
        assert!(e.contains("Pass --on-host"), "{e}");
        let running = running_release().unwrap();
        let d = fake_tree("mismatch", "0.0.1-other", &[]);
        let e = install(Some(&d), true).unwrap_err().to_string();
        assert!(e.contains("refusing to load"), "{e}");
        assert!(e.contains(&format!("this machine runs {running}")), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    #[ignore = "needs the built test kernel: run by .ci/run after `cargo xtask kernel`"]
    fn install_refuses_the_test_kernel_tree() {
        // The workbench's kernel is not the one this host runs.
        let k = kernel::built_test_kernel();
        if k.release().unwrap() != running_release().unwrap() {
            let e = install(Some(&k.build), true).unwrap_err().to_string();
            assert!(e.contains("refusing to load"), "{e}");
        }
    }

    #[test]
    fn headers_without_rust_metadata_are_reported() {
        let d = fake_tree(
            "nometa",
            "7.3.4",
            &[
                ("include/config/auto.conf", "CONFIG_RUST=y\n"),
                ("rust/libcore.rmeta", ""),
                ("Module.symvers", "0x1\tprintk\tvmlinux\tEXPORT_SYMBOL\t\n"),
            ],
        );
        let c = checks(&d, &Toolchain::find());
        let meta = c
            .iter()
            .find(|c| c.what.starts_with("Rust metadata"))
            .unwrap();
        assert!(!meta.ok);
        assert!(meta.detail.contains("libkernel.rmeta"), "{}", meta.detail);
        assert!(!meta.detail.contains("libcore.rmeta"), "{}", meta.detail);
        let sym = c
            .iter()
            .find(|c| c.what.starts_with("Module.symvers"))
            .unwrap();
        assert!(!sym.ok, "{}", sym.detail);
        let _ = std::fs::remove_dir_all(&d);
    }
}
