//! `new`: scaffold a module and its guest test that pass `cargo xtask test --filter NAME`
//! right away, from the templates in `xtask/templates/`.
//!
//! `cargo xtask new NAME [--chardev]` writes `modules/NAME/Kbuild`, `modules/NAME/NAME.rs`
//! (SPDX line, `//!` docs, `module!`, a KUnit suite `NAME_tests`, and with `--chardev` a misc
//! device `/dev/NAME` that reads `Hello from NAME!\n`, modelled on `modules/hello_chardev`)
//! and `guest/tests/NAME.rs` (load, check the init message with `guest::Kmsg`, unload; with
//! `--chardev` also open and read the device). `modules/Kbuild` picks up the new directory by
//! itself. `--root DIR` scaffolds into another copy of the repository (used by the tests).

use crate::{flags, util};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Longest module name: `MODULE_NAME_LEN` is 64 - sizeof(unsigned long), with the NUL.
pub const MAX_NAME: usize = 55;

/// Crate names a module must not take: Rust keywords and the kernel's own crates (a module
/// crate of that name would shadow them), plus the guest crate (test binary names).
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "core",
    "alloc",
    "std",
    "kernel",
    "macros",
    "bindings",
    "uapi",
    "ffi",
    "pin_init",
    "pin_init_internal",
    "build_error",
    "compiler_builtins",
    "zerocopy",
    "zerocopy_derive",
    "guest",
    "test",
    "proc_macro",
];

/// Why `name` cannot be a module name, if it cannot.
pub fn invalid_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".into());
    }
    if name.len() > MAX_NAME {
        return Some(format!(
            "`{name}` has {} characters; module names have at most {MAX_NAME}",
            name.len()
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Some(format!("`{name}` must start with a lowercase ASCII letter"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
    {
        return Some(format!(
            "`{name}` contains {c:?}; use lowercase ASCII letters, digits and `_` \
             (a valid module and crate name, e.g. `my_driver`)"
        ));
    }
    if RESERVED.contains(&name) {
        return Some(format!(
            "`{name}` is a Rust keyword or the name of a kernel crate"
        ));
    }
    None
}

/// `demo_mod` -> `DemoMod`.
pub fn camel(name: &str) -> String {
    name.split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            let first = c.next().unwrap().to_ascii_uppercase();
            std::iter::once(first).chain(c).collect::<String>()
        })
        .collect()
}

/// Files the scaffold writes, relative to the repository root.
pub fn paths(name: &str) -> [PathBuf; 3] {
    [
        PathBuf::from(format!("modules/{name}/Kbuild")),
        PathBuf::from(format!("modules/{name}/{name}.rs")),
        PathBuf::from(format!("guest/tests/{name}.rs")),
    ]
}

/// Why `name` is taken in the repository at `root`, if it is.
pub fn taken(root: &Path, name: &str) -> Option<String> {
    for dir in ["modules", "modules-c"] {
        let d = root.join(dir).join(name);
        if d.exists() {
            return Some(format!("{} already exists", d.display()));
        }
    }
    let t = root.join("guest/tests").join(format!("{name}.rs"));
    if t.exists() {
        return Some(format!("{} already exists", t.display()));
    }
    // A module of a kernel module's name would not load next to it (built-in ones show up in
    // the test kernel's modules.builtin).
    if let Ok((k, _)) = crate::kernel::locate(crate::kernel::Profile::Default) {
        let builtin = std::fs::read_to_string(k.build.join("modules.builtin")).unwrap_or_default();
        if builtin.lines().any(|l| {
            Path::new(l)
                .file_stem()
                .is_some_and(|s| s.to_string_lossy().replace('-', "_") == name)
        }) {
            return Some(format!("`{name}` is the name of a built-in kernel module"));
        }
    }
    None
}

/// The templates, real files under `xtask/templates/`: a module and its guest test named
/// [`TEMPLATE_NAME`] (`TemplateName` in type names), i.e. exactly what `new template_name`
/// writes. The scaffold test builds what they render to, with clippy, against the kernel.
const KBUILD: &str = include_str!("../templates/Kbuild");
const MODULE_PLAIN: &str = include_str!("../templates/module.rs");
const MODULE_CHARDEV: &str = include_str!("../templates/module_chardev.rs");
const TEST_PLAIN: &str = include_str!("../templates/guest_test.rs");
/// Appended to the guest test with `--chardev`.
const TEST_CHARDEV_EXTRA: &str = include_str!("../templates/guest_test_chardev.rs");

/// The module name the templates are written for.
pub const TEMPLATE_NAME: &str = "template_name";

fn fill(template: &str, name: &str) -> String {
    template
        .replace(TEMPLATE_NAME, name)
        .replace(&camel(TEMPLATE_NAME), &camel(name))
}

/// The files for `name`, as `(relative path, contents)`.
pub fn render(name: &str, chardev: bool) -> Vec<(PathBuf, String)> {
    let [kbuild, module, test] = paths(name);
    let module_text = fill(
        if chardev {
            MODULE_CHARDEV
        } else {
            MODULE_PLAIN
        },
        name,
    );
    let mut test_text = fill(TEST_PLAIN, name);
    if chardev {
        test_text.push('\n');
        test_text.push_str(&fill(TEST_CHARDEV_EXTRA, name));
    }
    vec![
        (kbuild, fill(KBUILD, name)),
        (module, module_text),
        (test, test_text),
    ]
}

/// Scaffold `name` into the repository at `root`; returns the files written.
pub fn create(root: &Path, name: &str, chardev: bool) -> Result<Vec<PathBuf>> {
    if let Some(why) = invalid_name(name) {
        bail!("invalid module name: {why}");
    }
    if let Some(why) = taken(root, name) {
        bail!("cannot create module `{name}`: {why}");
    }
    if !root.join("modules/Kbuild").exists() || !root.join("guest/tests").is_dir() {
        bail!(
            "{} does not look like this repository (no modules/Kbuild or guest/tests/)",
            root.display()
        );
    }
    let mut written = Vec::new();
    for (rel, text) in render(name, chardev) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap())?;
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        written.push(p);
    }
    // Long names can push template lines past 100 columns: format like `lint` checks.
    if let Some(ksrc) = crate::setup::kernel_src() {
        format(
            Command::new(crate::toolchain::RUSTFMT)
                .arg("--config-path")
                .arg(ksrc.join(".rustfmt.toml")),
            &written[1],
        );
    }
    format(&mut Command::new("rustfmt"), &written[2]);
    Ok(written)
}

/// Best effort: run `rustfmt` (edition 2021) on a generated file; a failure only warns.
fn format(rustfmt: &mut Command, file: &Path) {
    let ok = rustfmt
        .args(["--edition", "2021"])
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("new: warning: could not rustfmt {}", file.display());
    }
}

impl flags::New {
    /// `cargo xtask new NAME [--chardev] [--root DIR]`.
    pub fn run(self) -> Result<()> {
        let root = self.root.unwrap_or_else(util::repo_root);
        new(&root, &self.name, self.chardev)
    }
}

fn new(root: &Path, name: &str, chardev: bool) -> Result<()> {
    for p in create(root, name, chardev)? {
        println!("created {}", p.display());
    }
    println!(
        "next: cargo xtask test --filter {name}   (then edit modules/{name}/{name}.rs and \
         guest/tests/{name}.rs; `cargo xtask analyzer` for editor support)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toolchain::Toolchain;

    /// A scratch copy of the repository without the modules and guest tests (which others
    /// may be editing right now): the cargo workspace with all its members, the kernel
    /// config fragments, `include/` and `modules/Kbuild`.
    fn skeleton(dir: &Path) {
        let src = util::repo_root();
        for e in std::fs::read_dir(&src).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if ["target", ".git", "modules", "modules-c", "guest"].contains(&name.as_str()) {
                continue;
            }
            let (from, to) = (e.path(), dir.join(&name));
            if from.is_dir() {
                copy_tree(&from, &to).unwrap();
            } else {
                std::fs::copy(&from, &to).unwrap();
            }
        }
        std::fs::create_dir_all(dir.join("modules")).unwrap();
        std::fs::copy(src.join("modules/Kbuild"), dir.join("modules/Kbuild")).unwrap();
        copy_tree(&src.join("guest/src"), &dir.join("guest/src")).unwrap();
        std::fs::copy(src.join("guest/Cargo.toml"), dir.join("guest/Cargo.toml")).unwrap();
        std::fs::create_dir_all(dir.join("guest/tests")).unwrap();
    }

    fn copy_tree(from: &Path, to: &Path) -> Result<()> {
        std::fs::create_dir_all(to)?;
        for e in std::fs::read_dir(from)?.flatten() {
            let (p, t) = (e.path(), to.join(e.file_name()));
            if e.file_name() == "target" {
                continue;
            } else if p.is_dir() {
                copy_tree(&p, &t)?;
            } else {
                std::fs::copy(&p, &t)?;
            }
        }
        Ok(())
    }

    fn fresh(tag: &str) -> PathBuf {
        let d = util::target_dir().join("xtask-tests").join(tag);
        if d.exists() {
            std::fs::remove_dir_all(&d).unwrap();
        }
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn names_are_validated() {
        for ok in ["demo", "demo_mod", "a1", "x_2_y", &"a".repeat(55)] {
            assert_eq!(invalid_name(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("Demo", "start with a lowercase"),
            ("1abc", "start with a lowercase"),
            ("_x", "start with a lowercase"),
            ("my-mod", "contains '-'"),
            ("héllo", "contains 'é'"),
            ("a.b", "contains '.'"),
            ("kernel", "kernel crate"),
            ("fn", "keyword"),
        ] {
            let msg = invalid_name(bad).unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(msg.contains(why), "{bad:?}: {msg}");
        }
        assert!(invalid_name(&"a".repeat(56))
            .unwrap()
            .contains("at most 55"));
    }

    #[test]
    fn templates_are_the_module_template_name() {
        let files = render(TEMPLATE_NAME, true);
        assert_eq!(files[1].1, MODULE_CHARDEV);
        assert_eq!(files[2].1, format!("{TEST_PLAIN}\n{TEST_CHARDEV_EXTRA}"));
        for chardev in [false, true] {
            for (path, text) in render("demo_mod", chardev) {
                assert!(!text.contains(TEMPLATE_NAME), "{}: {text}", path.display());
                assert!(!text.contains("TemplateName"), "{}: {text}", path.display());
                assert!(text.contains("demo_mod"), "{}: {text}", path.display());
            }
        }
        let module = &render("demo_mod", false)[1].1;
        assert!(module.contains("struct DemoModModule;"), "{module}");
        assert!(
            module.contains("#[kunit_tests(demo_mod_tests)]"),
            "{module}"
        );
    }

    #[test]
    fn camel_case() {
        assert_eq!(camel("demo_mod"), "DemoMod");
        assert_eq!(camel("a1_b__c"), "A1BC");
    }

    #[test]
    fn existing_names_are_rejected() {
        let d = fresh("scaffold-taken");
        std::fs::create_dir_all(d.join("modules/minimal")).unwrap();
        std::fs::create_dir_all(d.join("guest/tests")).unwrap();
        std::fs::write(d.join("modules/Kbuild"), "").unwrap();
        std::fs::write(d.join("guest/tests/orphan.rs"), "").unwrap();
        let e = create(&d, "minimal", false).unwrap_err().to_string();
        assert!(e.contains("modules/minimal already exists"), "{e}");
        let e = create(&d, "orphan", false).unwrap_err().to_string();
        assert!(e.contains("guest/tests/orphan.rs already exists"), "{e}");
        let e = create(&d, "Bad-Name", false).unwrap_err().to_string();
        assert!(e.starts_with("invalid module name"), "{e}");
        assert!(!d.join("modules/Bad-Name").exists());
        // A second scaffold of the same name is refused and leaves the first intact.
        create(&d, "fresh_one", false).unwrap();
        let e = create(&d, "fresh_one", true).unwrap_err().to_string();
        assert!(e.contains("already exists"), "{e}");
    }

    #[test]
    #[ignore = "needs the built test kernel: run by .ci/run after `cargo xtask kernel`"]
    fn scaffold_builds_clippy_and_rustfmt_clean() {
        let k = crate::kernel::built_test_kernel();
        let ksrc = crate::setup::kernel_src().expect("kernel source");
        let root = fresh("scaffold-build");
        skeleton(&root);
        for (name, chardev) in [("scaf_plain", false), ("scaf_dev", true)] {
            let files = create(&root, name, chardev).unwrap();
            assert_eq!(files.len(), 3);
            let kbuild = std::fs::read_to_string(&files[0]).unwrap();
            assert!(kbuild.starts_with("# SPDX-License-Identifier: GPL-2.0\n"));
            assert!(kbuild.contains(&format!("obj-m := {name}.o")));
            let src = std::fs::read_to_string(&files[1]).unwrap();
            assert!(src.starts_with("// SPDX-License-Identifier: GPL-2.0\n\n//! "));
            assert!(src.contains(&format!("#[kunit_tests({name}_tests)]")));
            assert_eq!(src.contains("MiscDeviceRegistration"), chardev);
            // The kernel's rustfmt settings for the module, the workspace's for the test.
            let (ok, diff) = util::capture(
                Command::new(crate::toolchain::RUSTFMT)
                    .args(["--check", "--edition", "2021", "--config-path"])
                    .arg(ksrc.join(".rustfmt.toml"))
                    .arg(&files[1]),
            )
            .unwrap();
            assert!(ok, "{diff}");
            let (ok, diff) = util::capture(
                Command::new("rustfmt")
                    .args(["--check", "--edition", "2021"])
                    .arg(&files[2]),
            )
            .unwrap();
            assert!(ok, "{diff}");
            // Kbuild against the cached kernel, with clippy and warnings as errors.
            let mo = root.join("mo").join(name);
            std::fs::create_dir_all(&mo).unwrap();
            let (ok, log) = util::capture(
                Toolchain::find()
                    .kmake()
                    .arg("-C")
                    .arg(&k.build)
                    .arg(format!("M={}", root.join("modules").join(name).display()))
                    .arg(format!("MO={}", mo.display()))
                    .args(["CLIPPY=1", "KRUSTFLAGS=-Dwarnings"])
                    .arg(format!("CLIPPY_DRIVER={}", crate::toolchain::CLIPPY_DRIVER))
                    .arg("modules"),
            )
            .unwrap();
            assert!(ok, "{name} does not build:\n{log}");
            assert!(!log.contains("warning"), "{name} has warnings:\n{log}");
            assert!(mo.join(format!("{name}.ko")).exists(), "{log}");
        }
        // The guest tests compile (for the host here; the guest build only adds +crt-static).
        let out = crate::toolchain::cargo()
            .current_dir(&root)
            .args(["test", "--no-run", "--quiet", "-p", "guest"])
            .args(["--test", "scaf_plain", "--test", "scaf_dev"])
            .env(
                "CARGO_TARGET_DIR",
                util::target_dir().join("xtask-tests").join("cargo-target"),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// End to end: `cargo xtask new` then `cargo xtask test --filter NAME` in a copy of the
    /// repository, booting the VM. Its directory under `target/xtask-tests/` is kept between
    /// runs so that cargo's build there stays warm.
    #[test]
    #[ignore = "needs the built test kernel: run by .ci/run after `cargo xtask kernel`"]
    fn scaffolded_module_passes_xtask_test_in_the_vm() {
        crate::kernel::built_test_kernel();
        let root = util::target_dir().join("xtask-tests").join("scaffold-e2e");
        // Keep `target/` (warm cargo cache), replace everything else.
        if root.exists() {
            for e in std::fs::read_dir(&root).unwrap().flatten() {
                if e.file_name() != "target" {
                    let p = e.path();
                    if p.is_dir() {
                        std::fs::remove_dir_all(&p).unwrap();
                    } else {
                        std::fs::remove_file(&p).unwrap();
                    }
                }
            }
        }
        std::fs::create_dir_all(&root).unwrap();
        skeleton(&root);
        let xtask = |args: &[&str]| {
            util::capture(
                crate::toolchain::cargo()
                    .current_dir(&root)
                    .arg("xtask")
                    .args(args)
                    .env_remove("CARGO_TARGET_DIR"),
            )
            .unwrap()
        };
        let (ok, text) = xtask(&["new", "e2e_demo", "--chardev"]);
        assert!(ok, "{text}");
        let (ok, text) = xtask(&["test", "--filter", "e2e_demo", "--timeout", "600"]);
        assert!(ok, "cargo xtask test --filter e2e_demo failed:\n{text}");
        for t in [
            "ok      e2e_demo::load_logs_and_unload_logs",
            "ok      e2e_demo::device_reads_the_greeting",
            "ok      kunit::e2e_demo_tests::message_is_one_line",
            "ok      kernel::log_has_no_reports",
        ] {
            assert!(text.contains(t), "missing `{t}` in:\n{text}");
        }
        assert!(text.contains(" passed, 0 failed"), "{text}");
    }
}
