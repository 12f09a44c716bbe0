//! `analyzer`: a `rust-project.json` for the modules, so rust-analyzer resolves `kernel::`.
//!
//! Kernel modules are not Cargo crates; rust-analyzer learns about them from a
//! `rust-project.json`. The kernel writes one with its own `make M=<dir> rust-analyzer` target
//! (`scripts/generate_rust_analyzer.py`): the kernel's crates (`core`, `kernel`, `pin_init`,
//! `macros`, `bindings`, ...) with the cfgs of the cached test kernel build, plus one crate
//! per module (each `NAME.rs` whose directory's Kbuild names `NAME.o`) depending on them.
//! It is generated in a scratch `MO=` dir and copied to `modules/rust-project.json`
//! (git-ignored); see the README's "Editor support" for the editor side.

use crate::kernel::{self, Profile};
use crate::toolchain::Toolchain;
use crate::{flags, util};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Where `cargo xtask analyzer` puts the project file.
pub fn default_out() -> PathBuf {
    util::repo_root().join("modules").join("rust-project.json")
}

/// Module crates under `modules`: `(name, root file)` for each `NAME.rs` whose directory's
/// Kbuild builds `NAME.o`.
pub fn module_crates(modules: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(modules)
        .with_context(|| format!("reading {}", modules.display()))?
        .flatten()
    {
        let dir = e.path();
        let Ok(kbuild) = std::fs::read_to_string(dir.join("Kbuild")) else {
            continue;
        };
        for f in std::fs::read_dir(&dir)?.flatten() {
            let p = f.path();
            let (Some(stem), Some("rs")) = (
                p.file_stem().and_then(|s| s.to_str()),
                p.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            if kbuild.contains(&format!("{stem}.o")) {
                v.push((stem.to_string(), p.clone()));
            }
        }
    }
    v.sort();
    Ok(v)
}

/// Run the kernel's `rust-analyzer` target for the module dir `modules` against the kernel
/// build `kbuild` and write the result to `out`. Returns the parsed project.
pub fn generate(kbuild: &Path, modules: &Path, out: &Path) -> Result<serde_json::Value> {
    let scratch = util::target_dir().join("analyzer").join(
        kbuild
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "kernel".into()),
    );
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    std::fs::create_dir_all(&scratch)?;
    let mut c = Toolchain::find().kmake();
    c.arg("-C")
        .arg(kbuild)
        .arg(format!("M={}", modules.display()))
        .arg(format!("MO={}", scratch.display()))
        .arg("rust-analyzer");
    util::output(&mut c).context("the kernel's `make rust-analyzer` target")?;
    let produced = scratch.join("rust-project.json");
    let text = std::fs::read_to_string(&produced)
        .with_context(|| format!("`make rust-analyzer` wrote no {}", produced.display()))?;
    let project: serde_json::Value =
        serde_json::from_str(&text).context("rust-project.json is not valid JSON")?;
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(out, &text).with_context(|| format!("writing {}", out.display()))?;
    Ok(project)
}

/// One crate of a `rust-project.json`.
pub struct ProjectCrate {
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the tests look crates up by name")
    )]
    pub name: String,
    /// Its root module's path.
    pub root: String,
    /// The names of the crates it depends on.
    pub deps: Vec<String>,
}

/// The crates of a project, with the names of their dependencies.
pub fn crates(project: &serde_json::Value) -> Vec<ProjectCrate> {
    let crates = project["crates"].as_array().cloned().unwrap_or_default();
    let name = |i: usize| {
        crates[i]["display_name"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    };
    (0..crates.len())
        .map(|i| {
            let deps = crates[i]["deps"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .filter_map(|d| d["crate"].as_u64())
                        .map(|j| name(j as usize))
                        .collect()
                })
                .unwrap_or_default();
            ProjectCrate {
                name: name(i),
                root: crates[i]["root_module"].as_str().unwrap_or("").to_string(),
                deps,
            }
        })
        .collect()
}

/// Module crates from `module_crates` that the project lacks or that do not depend on
/// `kernel`; empty when the project is complete.
pub fn problems(project: &serde_json::Value, modules: &[(String, PathBuf)]) -> Vec<String> {
    let crates = crates(project);
    let mut bad = Vec::new();
    for (name, root) in modules {
        let root = root.display().to_string();
        match crates.iter().find(|c| c.root == root) {
            None => bad.push(format!("{name}: no crate with root {root}")),
            Some(c) if !c.deps.iter().any(|d| d == "kernel") => bad.push(format!(
                "{name}: does not depend on `kernel` (deps: {:?})",
                c.deps
            )),
            Some(_) => {}
        }
    }
    bad
}

impl flags::Analyzer {
    /// `cargo xtask analyzer`: generate `modules/rust-project.json` against the cached kernel.
    pub fn run(self) -> Result<()> {
        crate::setup::ensure_ready()?;
        analyzer(self.profile, self.out.unwrap_or_else(default_out))
    }
}

fn analyzer(profile: Profile, out: PathBuf) -> Result<()> {
    let k = kernel::ensure(profile, false)?;
    let modules = util::repo_root().join("modules");
    let project = generate(&k.build, &modules, &out)?;
    let expected = module_crates(&modules)?;
    let bad = problems(&project, &expected);
    if !bad.is_empty() {
        bail!("{} is incomplete:\n  {}", out.display(), bad.join("\n  "));
    }
    let n = project["crates"].as_array().map_or(0, Vec::len);
    println!(
        "analyzer: wrote {} ({n} crates; modules: {})",
        out.display(),
        expected
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "analyzer: open modules/ in your editor, or add it to rust-analyzer's linkedProjects \
         (README: Editor support); rerun after adding a module"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[ignore = "needs the built test kernel: run by .ci/run after `cargo xtask kernel`"]
    fn project_lists_every_module_with_the_kernel_crate() {
        let k = kernel::built_test_kernel();
        let modules = util::repo_root().join("modules");
        let out = util::target_dir()
            .join("xtask-tests")
            .join("analyzer")
            .join("rust-project.json");
        let _ = std::fs::remove_file(&out);
        generate(&k.build, &modules, &out).expect("generate");
        // Re-read the file itself: it exists and is valid JSON.
        let text = std::fs::read_to_string(&out).expect("rust-project.json exists");
        let project: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        let expected = module_crates(&modules).unwrap();
        assert!(
            expected.iter().any(|(n, _)| n == "minimal"),
            "modules/minimal is found: {expected:?}"
        );
        assert_eq!(problems(&project, &expected), Vec::<String>::new());
        let names: Vec<String> = crates(&project).into_iter().map(|c| c.name).collect();
        for krate in ["core", "kernel", "macros", "pin_init", "bindings"] {
            assert!(names.iter().any(|n| n == krate), "{krate} in {names:?}");
        }
        assert!(project["sysroot"].is_string());
    }

    #[test]
    fn problems_name_missing_and_unlinked_crates() {
        let project = serde_json::json!({"crates": [
            {"display_name": "kernel", "root_module": "/k/lib.rs", "deps": []},
            {"display_name": "a", "root_module": "/m/a/a.rs", "deps": [{"crate": 0, "name": "kernel"}]},
            {"display_name": "b", "root_module": "/m/b/b.rs", "deps": []},
        ]});
        let mods = vec![
            ("a".to_string(), PathBuf::from("/m/a/a.rs")),
            ("b".to_string(), PathBuf::from("/m/b/b.rs")),
            ("c".to_string(), PathBuf::from("/m/c/c.rs")),
        ];
        let p = problems(&project, &mods);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p[0].starts_with("b: does not depend on `kernel`"));
        assert!(p[1].starts_with("c: no crate"));
    }
}
