//! `setup`: install what `doctor` finds missing and obtain the kernel source.
//!
//! The kernel source is Debian's `linux-source-7.3` package from the `trixie-backports`
//! suite. The machine's own apt sources (bookworm) do not carry it, so it is fetched with a
//! private sources list that reuses the mirror URI already configured on this machine; the
//! system's apt state (`/etc/apt`, `/var/lib/apt/lists`, `/var/cache/apt`) is left untouched.
//! That fetch and unpack run beside the package installation and the bindgen build.

use crate::toolchain::{self, llvm, Toolchain, BINDGEN_VERSION};
use crate::util::{self, output};
use crate::{doctor, flags};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

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
    (
        "gdb",
        "cargo xtask gdb (gdb 13 with Python, the kernel's gdb scripts)",
    ),
    ("lcov", "genhtml for cargo xtask coverage"),
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

/// One of setup's steps, which run side by side: its messages and its commands' output go
/// to stderr line by line behind its name (`setup[apt] ...`), so that the interleaved lines
/// stay readable.
#[derive(Clone, Copy)]
struct Step(&'static str);

impl Step {
    fn say(self, msg: impl std::fmt::Display) {
        eprintln!("setup[{}] {msg}", self.0);
    }

    fn run(self, cmd: &mut Command) -> Result<()> {
        util::run_prefixed(cmd, &format!("setup[{}]", self.0))
    }
}

const APT: Step = Step("apt");
const BINDGEN: Step = Step("bindgen");
const SOURCE: Step = Step("kernel-src");

/// Install missing packages, then bindgen (its build needs libclang from the packages),
/// and meanwhile obtain the kernel source: fetching it uses apt-get with private lists and
/// cache, which takes no system apt or dpkg lock. Only unpacking the Debian package needs a
/// package (xz-utils); when that is missing, the unpack waits for the packages.
fn setup(kernel_src_arg: Option<&Path>) -> Result<()> {
    let start = Instant::now();
    let missing = missing_packages();
    if !missing.is_empty() && !util::is_root() {
        let cmd = format!(
            "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {}",
            missing.join(" ")
        );
        bail!("missing packages; run as root:\n  sudo sh -c '{cmd}'\nthen run `cargo xtask setup` again");
    }
    let (packages_done, packages_wait) = mpsc::channel::<bool>();
    let wait_for_xz = missing.contains(&"xz-utils").then_some(packages_wait);
    let (tools, source) = std::thread::scope(|s| {
        let source = s.spawn(move || kernel_source(kernel_src_arg, wait_for_xz));
        let packages = timed(APT, || install_packages(&missing));
        let _ = packages_done.send(packages.is_ok());
        let tools = packages.and_then(|()| timed(BINDGEN, install_bindgen));
        let source = source
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the kernel source step panicked")));
        (tools, source)
    });
    match (tools, source) {
        (Ok(()), Ok(())) => {
            eprintln!("setup: done in {:.1} s", start.elapsed().as_secs_f64());
            Ok(())
        }
        (Err(e), Ok(())) | (Ok(()), Err(e)) => Err(e),
        (Err(tools), Err(source)) => bail!("{tools:#}\nand the kernel source: {source:#}"),
    }
}

/// Run a step and say how long it took (when it did something).
fn timed(step: Step, f: impl FnOnce() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    if f()? {
        step.say(format_args!(
            "done in {:.1} s",
            start.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// `apt-get install` the missing packages; returns whether it installed any.
fn install_packages(missing: &[&str]) -> Result<bool> {
    if missing.is_empty() {
        APT.say(format_args!("all {} packages present", APT_PACKAGES.len()));
        return Ok(false);
    }
    APT.say(format_args!(
        "installing {} packages: {}",
        missing.len(),
        missing.join(" ")
    ));
    APT.run(Command::new("apt-get").args(["update", "-q"]))?;
    APT.run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(missing),
    )?;
    Ok(true)
}

/// `cargo install` the pinned bindgen-cli where `BINDGEN` points (`<root>/bin/bindgen`), unless
/// it is there; returns whether it installed it.
fn install_bindgen() -> Result<bool> {
    let tc = Toolchain::find();
    let have = output(Command::new(&tc.bindgen).arg("--version")).unwrap_or_default();
    if have.contains(BINDGEN_VERSION) {
        BINDGEN.say(have.trim());
        return Ok(false);
    }
    BINDGEN.say(format_args!(
        "installing bindgen-cli {BINDGEN_VERSION} with cargo (about 1.5 minutes)"
    ));
    let mut c = toolchain::cargo();
    c.args([
        "install",
        "bindgen-cli",
        "--version",
        BINDGEN_VERSION,
        "--locked",
    ])
    .env("LIBCLANG_PATH", toolchain::LIBCLANG_DIR);
    if let Some(root) = install_root(&tc.bindgen) {
        c.arg("--root").arg(root);
    }
    BINDGEN.run(&mut c).context("installing bindgen-cli")?;
    Ok(true)
}

/// `<root>` of `<root>/bin/bindgen`, for `cargo install --root`.
fn install_root(bindgen: &Path) -> Option<&Path> {
    let bin = bindgen.parent()?;
    if bin.file_name()? != "bin" {
        return None;
    }
    bin.parent()
}

/// The kernel source: the tree or tarball given, else the one configured, else Debian's
/// package. `wait_for_xz`, when set, says when the packages (xz-utils) are installed.
fn kernel_source(arg: Option<&Path>, wait_for_xz: Option<Receiver<bool>>) -> Result<()> {
    let start = Instant::now();
    let xz = || -> Result<()> {
        if let Some(rx) = wait_for_xz {
            SOURCE.say("waiting for the packages (xz-utils) before unpacking");
            if !rx.recv().unwrap_or(false) {
                bail!("cannot unpack the kernel source without xz-utils (the packages failed)");
            }
        }
        Ok(())
    };
    match arg {
        Some(p) if p.is_dir() => return use_tree(p),
        Some(p) => {
            xz()?;
            unpack_tarball(p)?;
        }
        None => match kernel_src() {
            Some(src) => {
                SOURCE.say(format_args!("kernel source at {}", src.display()));
                return Ok(());
            }
            None => download_source(xz)?,
        },
    }
    SOURCE.say(format_args!(
        "done in {:.1} s",
        start.elapsed().as_secs_f64()
    ));
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
    SOURCE.say(format_args!("using kernel source {}", dir.display()));
    Ok(())
}

/// Unpack a `linux-*.tar.*` (or the `.deb` of linux-source) into the cache.
fn unpack_tarball(path: &Path) -> Result<()> {
    let path = path
        .canonicalize()
        .with_context(|| format!("{} does not exist", path.display()))?;
    let dest = util::cache_dir().join("src").join("user");
    std::fs::create_dir_all(&dest)?;
    SOURCE.say(format_args!(
        "unpacking {} into {}",
        path.display(),
        dest.display()
    ));
    SOURCE.run(
        Command::new("tar")
            .arg("-C")
            .arg(&dest)
            .arg("-xf")
            .arg(&path),
    )?;
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

/// Fetch Debian's kernel source package with private apt lists and cache (the system's apt
/// state is neither changed nor locked) and unpack it, after `before_unpack`.
fn download_source(before_unpack: impl FnOnce() -> Result<()>) -> Result<()> {
    let work = util::cache_dir().join("src");
    let lists = work.join("apt-lists");
    let cache = work.join("apt-cache");
    std::fs::create_dir_all(lists.join("partial"))?;
    std::fs::create_dir_all(cache.join("archives/partial"))?;
    let uri = mirror_uri()?;
    let list = work.join("backports.list");
    std::fs::write(&list, format!("deb {uri} {SUITE} main\n"))?;
    let opts = [
        format!("-o=Dir::Etc::sourcelist={}", list.display()),
        "-o=Dir::Etc::sourceparts=-".to_string(),
        format!("-o=Dir::State::Lists={}", lists.display()),
        format!("-o=Dir::Cache={}", cache.display()),
        "-o=APT::Sandbox::User=root".to_string(),
        "-q".to_string(),
    ];
    SOURCE.say(format_args!(
        "fetching {SOURCE_PACKAGE} from {SUITE} (private apt lists, ~170 MB)"
    ));
    SOURCE.run(Command::new("apt-get").args(&opts).arg("update"))?;
    SOURCE.run(
        Command::new("apt-get")
            .args(&opts)
            .args(["download", SOURCE_PACKAGE])
            .current_dir(&work),
    )?;
    let deb = std::fs::read_dir(&work)?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with(SOURCE_PACKAGE) && n.ends_with(".deb")
        })
        .ok_or_else(|| anyhow!("apt-get download left no .deb in {}", work.display()))?;
    before_unpack()?;
    SOURCE.say(format_args!("unpacking {} (about 30 s)", deb.display()));
    let script = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -xO --wildcards './usr/src/{SOURCE_PACKAGE}.tar.*' | tar -xJ -C '{}'",
        deb.display(),
        work.display()
    );
    SOURCE.run(Command::new("sh").arg("-c").arg(script))?;
    if !default_src_dir().join("Makefile").exists() {
        bail!(
            "unpacked, but {} has no Makefile",
            default_src_dir().display()
        );
    }
    std::fs::remove_file(&deb).ok();
    SOURCE.say(format_args!(
        "kernel source at {}",
        default_src_dir().display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindgen_installs_where_bindgen_points() {
        assert_eq!(
            install_root(Path::new("/root/.cargo/bin/bindgen")),
            Some(Path::new("/root/.cargo"))
        );
        assert_eq!(install_root(Path::new("/opt/bindgen")), None);
    }

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
