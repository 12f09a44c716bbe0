//! `setup`: install what `doctor` finds missing and obtain the kernel source.
//!
//! The kernel source is Debian's `linux-source-7.3` package from the `trixie-backports`
//! suite. The machine's own apt sources (bookworm) do not carry it, so it is fetched with a
//! private sources list that reuses the mirror URI already configured on this machine; the
//! system's apt state (`/etc/apt`, `/var/lib/apt/lists`) is left untouched.

use crate::toolchain::{self, llvm, Toolchain, BINDGEN_VERSION};
use crate::util::{self, output, run};
use crate::{doctor, flags};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const SOURCE_PACKAGE: &str = "linux-source-7.3";
const SUITE: &str = "trixie-backports";

/// Debian packages the workbench needs, with a description for `doctor`.
pub const APT_PACKAGES: &[(&str, &str)] = &[
    ("rustc-web", "rustc/rustdoc 1.96 for the kernel"),
    ("rust-web-src", "the matching `core` source"),
    ("rust-web-clippy", "clippy for `make CLIPPY=1`"),
    ("rustfmt-web", "rustfmt for the modules"),
    (llvm!("clang"), concat!("C compiler for LLVM=", llvm!(""))),
    (llvm!("lld"), concat!("linker for LLVM=", llvm!(""))),
    (
        llvm!("llvm"),
        concat!("llvm-ar/nm/objcopy for LLVM=", llvm!("")),
    ),
    (concat!(llvm!("libclang"), "-dev"), "libclang for bindgen"),
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

/// Where the configured kernel source lives: `RKM_KERNEL_SRC`, else the path recorded by
/// `setup --kernel-src`, else the unpacked Debian package in the cache.
pub fn kernel_src() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RKM_KERNEL_SRC") {
        return Some(PathBuf::from(p));
    }
    let recorded = util::cache_dir().join("kernel-src");
    if let Ok(s) = std::fs::read_to_string(&recorded) {
        let p = PathBuf::from(s.trim());
        if p.join("Makefile").exists() {
            return Some(p);
        }
    }
    let p = default_src_dir();
    p.join("Makefile").exists().then_some(p)
}

fn default_src_dir() -> PathBuf {
    util::cache_dir().join("src").join(SOURCE_PACKAGE)
}

/// The kernel source, or an error that says how to get one.
pub fn require_kernel_src() -> Result<PathBuf> {
    kernel_src().ok_or_else(|| {
        anyhow::anyhow!("no kernel source: run `cargo xtask setup` (or `setup --kernel-src DIR`)")
    })
}

impl flags::Setup {
    pub fn run(self) -> Result<()> {
        setup(self.kernel_src.as_deref())
    }
}

/// Run `setup` when `doctor`'s checks find something missing, so that the README's two
/// commands work on a fresh machine. Every command that builds or boots calls this first.
pub fn ensure_ready() -> Result<()> {
    let missing: Vec<_> = doctor::checks(&Toolchain::find(), kernel_src().as_deref())
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
    setup(None)?;
    let still: Vec<_> = doctor::checks(&Toolchain::find(), kernel_src().as_deref())
        .into_iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{} (fix: {})", c.what, c.fix))
        .collect();
    if !still.is_empty() {
        bail!("still missing after setup:\n  {}", still.join("\n  "));
    }
    Ok(())
}

/// Install missing packages, bindgen and the kernel source.
fn setup(kernel_src_arg: Option<&Path>) -> Result<()> {
    let missing = missing_packages();
    if !missing.is_empty() {
        let cmd = format!(
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
            missing.join(" ")
        );
        if !util::is_root() {
            bail!("missing packages; run as root:\n  sudo sh -c '{cmd}'\nthen run `cargo xtask setup` again");
        }
        eprintln!(
            "setup: installing {} packages: {}",
            missing.len(),
            missing.join(" ")
        );
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing))?;
    } else {
        eprintln!("setup: all {} packages present", APT_PACKAGES.len());
    }

    let tc = Toolchain::find();
    let have = output(Command::new(&tc.bindgen).arg("--version")).unwrap_or_default();
    if !have.contains(BINDGEN_VERSION) {
        eprintln!("setup: installing bindgen-cli {BINDGEN_VERSION} with cargo (about a minute)");
        run(toolchain::cargo()
            .args([
                "install",
                "bindgen-cli",
                "--version",
                BINDGEN_VERSION,
                "--locked",
            ])
            .env("LIBCLANG_PATH", toolchain::LIBCLANG_DIR))
        .context("installing bindgen-cli")?;
    } else {
        eprintln!("setup: {}", have.trim());
    }

    match kernel_src_arg {
        Some(p) if p.is_dir() => use_tree(p)?,
        Some(p) => unpack_tarball(p)?,
        None if kernel_src().is_some() => {
            eprintln!(
                "setup: kernel source at {}",
                kernel_src().unwrap().display()
            );
        }
        None => download_source()?,
    }
    Ok(())
}

/// Record a user-provided unpacked tree.
fn use_tree(dir: &Path) -> Result<()> {
    let dir = dir.canonicalize()?;
    if !dir.join("Makefile").exists() || !dir.join("rust/kernel").is_dir() {
        bail!(
            "{} is not a kernel source tree with Rust support",
            dir.display()
        );
    }
    std::fs::create_dir_all(util::cache_dir())?;
    std::fs::write(
        util::cache_dir().join("kernel-src"),
        dir.display().to_string(),
    )?;
    eprintln!("setup: using kernel source {}", dir.display());
    Ok(())
}

/// Unpack a `linux-*.tar.*` (or the `.deb` of linux-source) into the cache.
fn unpack_tarball(path: &Path) -> Result<()> {
    let path = path
        .canonicalize()
        .with_context(|| format!("{} does not exist", path.display()))?;
    let dest = util::cache_dir().join("src").join("user");
    std::fs::create_dir_all(&dest)?;
    eprintln!(
        "setup: unpacking {} into {}",
        path.display(),
        dest.display()
    );
    run(Command::new("tar")
        .arg("-C")
        .arg(&dest)
        .arg("-xf")
        .arg(&path))?;
    let top = std::fs::read_dir(&dest)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("Makefile").exists())
        .ok_or_else(|| anyhow::anyhow!("no kernel tree inside {}", path.display()))?;
    use_tree(&top)
}

/// The first Debian mirror URI of this machine's apt configuration.
pub fn mirror_uri() -> Result<String> {
    let mut texts = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "sources" || x == "list") {
                texts.push(std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    texts.push(std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default());
    mirror_from(&texts).ok_or_else(|| {
        anyhow::anyhow!(
            "no Debian mirror found in /etc/apt; use `cargo xtask setup --kernel-src DIR`"
        )
    })
}

/// Pick the main archive URI (not `-security`) out of deb822 or one-line sources.
pub fn mirror_from(texts: &[String]) -> Option<String> {
    let mut cands = Vec::new();
    for t in texts {
        for line in t.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("URIs:") {
                cands.extend(rest.split_whitespace().map(str::to_string));
            } else if let Some(rest) = line.strip_prefix("deb ") {
                let mut w = rest.split_whitespace().filter(|w| !w.starts_with('['));
                if let Some(u) = w.next() {
                    cands.push(u.to_string());
                }
            }
        }
    }
    cands
        .into_iter()
        .find(|u| u.trim_end_matches('/').ends_with("/debian"))
}

fn download_source() -> Result<()> {
    let work = util::cache_dir().join("src");
    let lists = work.join("apt-lists");
    std::fs::create_dir_all(lists.join("partial"))?;
    let uri = mirror_uri()?;
    let list = work.join("backports.list");
    std::fs::write(&list, format!("deb {uri} {SUITE} main\n"))?;
    let opts = [
        format!("-o=Dir::Etc::sourcelist={}", list.display()),
        "-o=Dir::Etc::sourceparts=-".to_string(),
        format!("-o=Dir::State::Lists={}", lists.display()),
        "-o=APT::Sandbox::User=root".to_string(),
        "-q".to_string(),
    ];
    eprintln!("setup: fetching {SOURCE_PACKAGE} from {SUITE} (private apt lists, ~170 MB)");
    run(Command::new("apt-get").args(&opts).arg("update"))?;
    run(Command::new("apt-get")
        .args(&opts)
        .args(["download", SOURCE_PACKAGE])
        .current_dir(&work))?;
    let deb = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(SOURCE_PACKAGE) && n.ends_with(".deb")
        })
        .ok_or_else(|| anyhow::anyhow!("apt-get download left no .deb in {}", work.display()))?;
    eprintln!("setup: unpacking {} (about 30 s)", deb.display());
    let script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -xO --wildcards './usr/src/{SOURCE_PACKAGE}.tar.*' | tar -xJ -C '{}'",
        deb.display(),
        work.display()
    );
    run(Command::new("sh").arg("-c").arg(script))?;
    if !default_src_dir().join("Makefile").exists() {
        bail!(
            "unpacked, but {} has no Makefile",
            default_src_dir().display()
        );
    }
    std::fs::remove_file(&deb).ok();
    eprintln!("setup: kernel source at {}", default_src_dir().display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_from_deb822_skips_security() {
        let t = "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n\
                 Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n"
            .to_string();
        assert_eq!(
            mirror_from(&[t]).as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn mirror_from_one_line_format() {
        let t = "# comment\ndeb [arch=amd64] http://m.example/debian/ bookworm main\n".to_string();
        assert_eq!(
            mirror_from(&[t]).as_deref(),
            Some("http://m.example/debian/")
        );
        assert_eq!(
            mirror_from(&["deb http://x/ubuntu jammy main".into()]),
            None
        );
    }
}
