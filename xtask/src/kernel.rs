//! `kernel`: configure and build the test kernel out of tree, cached.
//!
//! Config = `make tinyconfig` + the profile's fragments under `kernel/` (merged with the
//! kernel's `scripts/kconfig/merge_config.sh`) + `make olddefconfig`; then every option a
//! fragment asks for is checked in the final `.config`. The build directory lives in
//! `${XDG_CACHE_HOME:-~/.cache}/rust-kernel-modules/build/<profile>-<version>-<key>`, where
//! the key hashes the kernel version, the toolchain versions and the fragments, so a warm
//! run does nothing at all.

use crate::flags;
use crate::toolchain::Toolchain;
use crate::util::{self, run_logged};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the build recipe below changes in a way the key would not see.
const RECIPE: &str = "recipe-1";
const STAMP: &str = ".xtask-built";

/// Which kernel: the fast default, or the debug one with sanitizers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    Default,
    Debug,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Debug => "debug",
        }
    }

    /// Config fragments (relative to the repository root), applied in order.
    pub fn fragments(self) -> Vec<PathBuf> {
        let root = util::repo_root().join("kernel");
        match self {
            Profile::Default => vec![root.join("base.config")],
            Profile::Debug => vec![root.join("base.config"), root.join("debug.config")],
        }
    }
}

/// A configured and built kernel.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub src: PathBuf,
    pub build: PathBuf,
    pub profile: Profile,
}

impl Kernel {
    pub fn bzimage(&self) -> PathBuf {
        self.build.join("arch/x86/boot/bzImage")
    }

    /// `uname -r` of the built kernel.
    pub fn release(&self) -> Result<String> {
        release_of(&self.build)
    }

    pub fn gen_init_cpio(&self) -> PathBuf {
        self.build.join("usr/gen_init_cpio")
    }
}

/// `uname -r` of any prepared kernel build tree: its `include/config/kernel.release`.
pub fn release_of(build: &Path) -> Result<String> {
    let p = build.join("include/config/kernel.release");
    Ok(std::fs::read_to_string(&p)
        .with_context(|| {
            format!(
                "{} is not a prepared kernel build tree (no {})",
                build.display(),
                p.display()
            )
        })?
        .trim()
        .to_string())
}

/// `VERSION.PATCHLEVEL.SUBLEVEL` from the top Makefile.
pub fn source_version(src: &Path) -> Result<String> {
    let mk = std::fs::read_to_string(src.join("Makefile"))?;
    let get = |k: &str| {
        mk.lines()
            .find_map(|l| {
                l.strip_prefix(k)
                    .map(|v| v.trim_start_matches([' ', '=']).trim().to_string())
            })
            .unwrap_or_default()
    };
    Ok(format!(
        "{}.{}.{}{}",
        get("VERSION"),
        get("PATCHLEVEL"),
        get("SUBLEVEL"),
        get("EXTRAVERSION")
    ))
}

/// The cache key: hash of everything that determines the kernel binary.
pub fn cache_key(kversion: &str, tool_versions: &str, fragments: &[(String, String)]) -> String {
    let mut material = format!("{RECIPE}\n{kversion}\n{tool_versions}\n");
    for (name, text) in fragments {
        material.push_str(&format!("--- {name}\n{text}\n"));
    }
    util::sha256_hex(material.as_bytes())[..16].to_string()
}

/// What a fragment asks for: `CONFIG_X` -> `y`/`m`/value, or `n` for `# CONFIG_X is not set`.
pub fn parse_fragment(text: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("# ") {
            if let Some(sym) = rest.strip_suffix(" is not set") {
                if sym.starts_with("CONFIG_") {
                    m.insert(sym.to_string(), "n".to_string());
                }
            }
        } else if line.starts_with("CONFIG_") {
            if let Some((k, v)) = line.split_once('=') {
                m.insert(k.to_string(), v.to_string());
            }
        }
    }
    m
}

/// An option a fragment asks for that the final `.config` does not have.
#[derive(Debug, PartialEq, Eq)]
pub struct DroppedOption {
    pub option: String,
    pub wanted: String,
    /// `n` when the option is absent.
    pub got: String,
}

/// Options the fragments ask for that the final `.config` does not have.
pub fn dropped_options(
    wanted: &BTreeMap<String, String>,
    final_config: &str,
) -> Vec<DroppedOption> {
    let have = parse_fragment(final_config);
    wanted
        .iter()
        .filter_map(|(k, v)| {
            let got = have.get(k).cloned().unwrap_or_else(|| "n".to_string());
            (got != *v).then(|| DroppedOption {
                option: k.clone(),
                wanted: v.clone(),
                got,
            })
        })
        .collect()
}

/// Where the kernel for this profile is (or will be) built.
pub fn locate(profile: Profile) -> Result<(Kernel, String)> {
    let src = crate::setup::require_kernel_src()?;
    let tc = Toolchain::find();
    let kver = source_version(&src)?;
    let mut frags = Vec::new();
    for f in profile.fragments() {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        frags.push((f.file_name().unwrap().to_string_lossy().into_owned(), text));
    }
    let key = cache_key(&format!("{kver} {}", src.display()), &tc.versions(), &frags);
    let build = util::cache_dir()
        .join("build")
        .join(format!("{}-{kver}-{key}", profile.name()));
    Ok((
        Kernel {
            src,
            build,
            profile,
        },
        key,
    ))
}

impl flags::Kernel {
    pub fn run(self) -> Result<()> {
        ensure(self.profile, self.rebuild).map(drop)
    }
}

/// Configure and build the kernel unless the cache already has it.
pub fn ensure(profile: Profile, rebuild: bool) -> Result<Kernel> {
    let (k, key) = locate(profile)?;
    let stamp = k.build.join(STAMP);
    if !rebuild
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == key)
        && k.bzimage().exists()
    {
        eprintln!("kernel: cached {} ({})", k.build.display(), k.release()?);
        return Ok(k);
    }
    let _lock = util::lock("heavy")?;
    std::fs::create_dir_all(&k.build)?;
    let tc = Toolchain::find();
    let o = format!("O={}", k.build.display());
    let kmake = |args: &[&str]| {
        let mut c = tc.kmake();
        c.arg("-C").arg(&k.src).arg(&o).args(args);
        c
    };
    eprintln!(
        "kernel: building {} profile in {} (first time: ~5 min on 2 cores)",
        profile.name(),
        k.build.display()
    );
    let logs = k.build.join("xtask-logs");
    std::fs::create_dir_all(&logs)?;
    run_logged(
        &mut kmake(&["tinyconfig"]),
        &logs.join("tinyconfig.log"),
        "tinyconfig",
    )?;
    let mut merge = Command::new("bash");
    merge
        .arg(k.src.join("scripts/kconfig/merge_config.sh"))
        .arg("-m")
        .arg("-O")
        .arg(&k.build)
        .arg(k.build.join(".config"))
        .args(profile.fragments());
    run_logged(&mut merge, &logs.join("merge_config.log"), "merge_config")?;
    run_logged(
        &mut kmake(&["olddefconfig"]),
        &logs.join("olddefconfig.log"),
        "olddefconfig",
    )?;
    verify_config(&k, profile)?;
    let jobs = format!("-j{}", util::jobs());
    run_logged(
        &mut kmake(&[&jobs, "bzImage", "modules"]),
        &logs.join("build.log"),
        "kernel build",
    )?;
    std::fs::write(&stamp, &key)?;
    eprintln!("kernel: built {} ({})", k.bzimage().display(), k.release()?);
    Ok(k)
}

/// For the host tests that need it (`#[ignore]`d, run by `.ci/run` with `--include-ignored`):
/// the cached default test kernel, fully built; a test without it fails here.
#[cfg(test)]
pub(crate) fn built_test_kernel() -> Kernel {
    let (k, _) = locate(Profile::Default).expect("a kernel source: run `cargo xtask setup`");
    let ready = k.bzimage().exists()
        && k.build.join("Module.symvers").exists()
        && k.build.join("rust/libkernel.rmeta").exists();
    assert!(
        ready,
        "no built test kernel in {}: run `cargo xtask kernel` first",
        k.build.display()
    );
    k
}

/// Fail listing every option a fragment asked for that did not survive olddefconfig.
fn verify_config(k: &Kernel, profile: Profile) -> Result<()> {
    let mut wanted = BTreeMap::new();
    for f in profile.fragments() {
        wanted.extend(parse_fragment(&std::fs::read_to_string(&f)?));
    }
    let cfg = std::fs::read_to_string(k.build.join(".config"))?;
    let dropped = dropped_options(&wanted, &cfg);
    if !dropped.is_empty() {
        let list: Vec<String> = dropped
            .iter()
            .map(|d| format!("  {}: wanted {}, got {}", d.option, d.wanted, d.got))
            .collect();
        bail!(
            "kernel config: {} option(s) from the fragments did not survive olddefconfig \
             (a dependency is missing; see `make menuconfig` in {}):\n{}",
            dropped.len(),
            k.build.display(),
            list.join("\n")
        );
    }
    eprintln!(
        "kernel: config verified ({} options from fragments)",
        wanted.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dropped(option: &str, wanted: &str, got: &str) -> DroppedOption {
        DroppedOption {
            option: option.into(),
            wanted: wanted.into(),
            got: got.into(),
        }
    }

    #[test]
    fn fragment_parsing() {
        let m = parse_fragment(
            "# comment\nCONFIG_RUST=y\n# CONFIG_SLUB_TINY is not set\nCONFIG_NR_CPUS=4\n\n",
        );
        assert_eq!(m.get("CONFIG_RUST").map(String::as_str), Some("y"));
        assert_eq!(m.get("CONFIG_SLUB_TINY").map(String::as_str), Some("n"));
        assert_eq!(m.get("CONFIG_NR_CPUS").map(String::as_str), Some("4"));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn dropped_rust_is_detected() {
        let wanted = parse_fragment(
            "CONFIG_RUST=y\nCONFIG_MODULES=y\n# CONFIG_SLUB_TINY is not set\nCONFIG_NR_CPUS=4\n",
        );
        let fin =
            "CONFIG_MODULES=y\n# CONFIG_RUST is not set\nCONFIG_SLUB_TINY=y\nCONFIG_NR_CPUS=4\n";
        let d = dropped_options(&wanted, fin);
        assert_eq!(
            d,
            vec![
                dropped("CONFIG_RUST", "y", "n"),
                dropped("CONFIG_SLUB_TINY", "n", "y"),
            ]
        );
    }

    #[test]
    fn absent_option_counts_as_n() {
        let wanted = parse_fragment("# CONFIG_FOO is not set\nCONFIG_BAR=m\n");
        let d = dropped_options(&wanted, "CONFIG_OTHER=y\n");
        assert_eq!(d, vec![dropped("CONFIG_BAR", "m", "n")]);
    }

    #[test]
    fn cache_key_depends_on_every_input() {
        let f = vec![("base.config".to_string(), "CONFIG_RUST=y".to_string())];
        let k = cache_key("7.3.4", "rustc 1.96.0", &f);
        assert_eq!(k.len(), 16);
        assert_eq!(k, cache_key("7.3.4", "rustc 1.96.0", &f));
        assert_ne!(k, cache_key("7.3.5", "rustc 1.96.0", &f));
        assert_ne!(k, cache_key("7.3.4", "rustc 1.97.0", &f));
        let f2 = vec![(
            "base.config".to_string(),
            "CONFIG_RUST=y\nCONFIG_KUNIT=y".to_string(),
        )];
        assert_ne!(k, cache_key("7.3.4", "rustc 1.96.0", &f2));
    }
}
