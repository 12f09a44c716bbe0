//! `lint`: every formatter and linter the project holds its code to, one step each.
//!
//! 1. `rustfmt --check` over `modules/**/*.rs` with Debian's `/usr/bin/rustfmt` (rustup's is
//!    first in `PATH`) and the kernel's `.rustfmt.toml`, edition 2021;
//! 2. `make CLIPPY=1` over `modules/` against the cached test kernel, warnings as errors,
//!    built into a fresh scratch `MO=` dir under `target/lint/` so that clippy sees every
//!    crate and the normal build output stays untouched;
//! 3. `cargo fmt --all --check` over the workspace (xtask and guest);
//! 4. `cargo clippy --workspace --all-targets --keep-going -- -D warnings` (every crate's
//!    findings, not only the first failing one's);
//! 5. `scripts/checkpatch.pl --no-tree -f` over the C files under `modules-c/` (skipped when
//!    there are none).
//!
//! Each step prints `== lint: STEP` and then `ok`, `skipped (why)` or its findings; the last
//! line sums up, and the command fails when any step found something.

use crate::flags;
use crate::kernel::{self, Profile};
use crate::setup;
use crate::toolchain::{self, Toolchain, CLIPPY_DRIVER, RUSTFMT};
use crate::util;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What one step found.
pub enum StepResult {
    Ok(String),
    Skipped(String),
    /// Findings, one per line, and the tool's output to show.
    Findings(Vec<String>, String),
}

/// Files under `dir` (recursively, skipping hidden entries) whose extension is in `exts`.
pub fn files_with(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return v;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            v.extend(files_with(&p, exts));
        } else if p
            .extension()
            .and_then(|x| x.to_str())
            .is_some_and(|x| exts.contains(&x))
        {
            v.push(p);
        }
    }
    v.sort();
    v
}

/// `rustfmt --check` output -> `file:line` of each diff.
pub fn rustfmt_findings(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("Diff in "))
        .map(|l| format!("needs rustfmt: {}", l.trim_end_matches(':')))
        .collect()
}

/// Compiler diagnostics (`error: ...`/`warning: ...` with their ` --> file:line`) of a build
/// log, one line each.
pub fn diagnostics(out: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    for l in out.lines() {
        let t = l.trim_start();
        if t.starts_with("error") || t.starts_with("warning") {
            if let Some(p) = pending.take() {
                v.push(p);
            }
            // Summaries such as `error: aborting due to 2 previous errors` repeat others.
            if t.contains("aborting due to")
                || t.contains("generated ")
                || t.starts_with("error: could not compile")
                || t.starts_with("warning: build failed")
            {
                continue;
            }
            pending = Some(t.to_string());
        } else if let (Some(p), Some(loc)) = (&mut pending, t.strip_prefix("--> ")) {
            p.push_str(&format!(" ({loc})"));
            v.push(pending.take().unwrap());
        }
    }
    v.extend(pending);
    v.dedup();
    v
}

/// The finding of a step that needs `what` from the kernel source when there is none.
fn no_kernel_source(what: &str) -> StepResult {
    StepResult::Findings(
        vec![format!(
            "no kernel source for {what}: run `cargo xtask setup`"
        )],
        String::new(),
    )
}

/// Step 1: the modules' Rust files with the kernel's rustfmt settings.
fn rustfmt_modules(root: &Path) -> Result<StepResult> {
    let files = files_with(&root.join("modules"), &["rs"]);
    if files.is_empty() {
        return Ok(StepResult::Skipped("no .rs files under modules/".into()));
    }
    let Some(ksrc) = setup::kernel_src() else {
        return Ok(no_kernel_source("its .rustfmt.toml"));
    };
    let (ok, out) = util::capture(
        Command::new(RUSTFMT)
            .args(["--check", "--edition", "2021", "--config-path"])
            .arg(ksrc.join(".rustfmt.toml"))
            .args(&files),
    )?;
    if ok {
        return Ok(StepResult::Ok(format!("{} files", files.len())));
    }
    let mut f = rustfmt_findings(&out);
    if f.is_empty() {
        f.push("rustfmt failed (see its output)".into());
    }
    Ok(StepResult::Findings(f, out))
}

/// Step 2: `make CLIPPY=1` over the modules into a fresh scratch dir, warnings as errors.
fn clippy_modules(root: &Path) -> Result<StepResult> {
    let modules = root.join("modules");
    if !modules.join("Kbuild").exists() {
        return Ok(StepResult::Skipped("no modules/Kbuild".into()));
    }
    let k = kernel::ensure(Profile::Default, false)?;
    let scratch = util::target_dir().join("lint").join("clippy-modules");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)
            .with_context(|| format!("removing {}", scratch.display()))?;
    }
    std::fs::create_dir_all(&scratch)?;
    let mut c = Toolchain::find().kmake();
    c.arg("-C")
        .arg(&k.build)
        .arg(format!("M={}", modules.display()))
        .arg(format!("MO={}", scratch.display()))
        .arg(format!("-j{}", util::jobs()))
        .args([
            "CLIPPY=1",
            &format!("CLIPPY_DRIVER={CLIPPY_DRIVER}"),
            "KRUSTFLAGS=-Dwarnings",
            "modules",
        ]);
    let (ok, out) = util::capture(&mut c)?;
    let checked = out.lines().filter(|l| l.contains("CLIPPY")).count();
    let diags = diagnostics(&out);
    if ok && diags.is_empty() {
        return Ok(StepResult::Ok(format!(
            "{checked} crates checked by clippy"
        )));
    }
    let mut f = diags;
    if f.is_empty() {
        f.push("the clippy build failed (see its output)".into());
    }
    Ok(StepResult::Findings(f, out))
}

fn cargo() -> Command {
    let mut c = toolchain::cargo();
    c.current_dir(util::repo_root());
    c
}

/// Step 3: `cargo fmt --all --check`.
fn cargo_fmt() -> Result<StepResult> {
    let (ok, out) = util::capture(cargo().args(["fmt", "--all", "--check"]))?;
    if ok {
        return Ok(StepResult::Ok("workspace formatted".into()));
    }
    let mut f = rustfmt_findings(&out);
    if f.is_empty() {
        f.push("cargo fmt failed (see its output)".into());
    }
    Ok(StepResult::Findings(f, out))
}

/// Step 4: `cargo clippy --workspace --all-targets -- -D warnings`.
fn cargo_clippy() -> Result<StepResult> {
    let (ok, out) = util::capture(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--keep-going",
        "--quiet",
        "--",
        "-D",
        "warnings",
    ]))?;
    let diags = diagnostics(&out);
    if ok && diags.is_empty() {
        return Ok(StepResult::Ok("no warnings".into()));
    }
    let mut f = diags;
    if f.is_empty() {
        f.push("cargo clippy failed (see its output)".into());
    }
    Ok(StepResult::Findings(f, out))
}

/// Step 5: checkpatch over the C modules.
fn checkpatch(root: &Path) -> Result<StepResult> {
    let dir = root.join("modules-c");
    if !dir.is_dir() {
        return Ok(StepResult::Skipped("no modules-c/".into()));
    }
    let files = files_with(&dir, &["c", "h"]);
    if files.is_empty() {
        return Ok(StepResult::Skipped("no C files under modules-c/".into()));
    }
    let Some(ksrc) = setup::kernel_src() else {
        return Ok(no_kernel_source("scripts/checkpatch.pl"));
    };
    let script = ksrc.join("scripts/checkpatch.pl");
    let mut findings = Vec::new();
    let mut all = String::new();
    for f in &files {
        let (ok, out) = util::capture(
            Command::new("perl")
                .arg(&script)
                .args(["--no-tree", "--no-summary", "--terse", "-f"])
                .arg(f),
        )?;
        if !ok {
            findings.extend(
                out.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(String::from),
            );
            if findings.is_empty() {
                findings.push(format!("{}: checkpatch failed", f.display()));
            }
            all.push_str(&out);
        }
    }
    if findings.is_empty() {
        Ok(StepResult::Ok(format!("{} files", files.len())))
    } else {
        Ok(StepResult::Findings(findings, all))
    }
}

impl flags::Lint {
    /// Returns whether every step passed.
    pub fn run(self) -> Result<bool> {
        crate::setup::ensure_ready()?;
        lint()
    }
}

/// `cargo xtask lint`: run every step; returns whether all passed.
fn lint() -> Result<bool> {
    let root = util::repo_root();
    type Step<'a> = (&'a str, Box<dyn Fn() -> Result<StepResult> + 'a>);
    let steps: Vec<Step> = vec![
        (
            "rustfmt modules/ (kernel .rustfmt.toml)",
            Box::new(|| rustfmt_modules(&root)),
        ),
        (
            "clippy modules/ (make CLIPPY=1, -Dwarnings)",
            Box::new(|| clippy_modules(&root)),
        ),
        ("cargo fmt --all --check", Box::new(cargo_fmt)),
        (
            "cargo clippy --workspace --all-targets -- -D warnings",
            Box::new(cargo_clippy),
        ),
        ("checkpatch.pl modules-c/", Box::new(|| checkpatch(&root))),
    ];
    let mut failed = Vec::new();
    let mut passed = 0;
    for (name, step) in &steps {
        println!("== lint: {name}");
        match step() {
            Ok(StepResult::Ok(what)) => {
                passed += 1;
                println!("ok ({what})");
            }
            Ok(StepResult::Skipped(why)) => {
                passed += 1;
                println!("skipped ({why})");
            }
            Ok(StepResult::Findings(f, out)) => {
                if !out.trim().is_empty() {
                    let lines: Vec<&str> = out.lines().collect();
                    let shown = &lines[lines.len().saturating_sub(200)..];
                    for l in shown {
                        println!("   | {l}");
                    }
                }
                println!("FAILED: {} finding(s):", f.len());
                for l in &f {
                    println!("  - {l}");
                }
                failed.push(format!("{name} ({})", f.len()));
            }
            Err(e) => {
                println!("FAILED: {e:#}");
                failed.push(format!("{name} (error)"));
            }
        }
    }
    if failed.is_empty() {
        println!("lint: {passed} steps ok");
    } else {
        println!(
            "lint: {passed} steps ok, {} failed: {}",
            failed.len(),
            failed.join("; ")
        );
    }
    Ok(failed.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustfmt_diffs_are_listed() {
        let out = "Diff in /w/modules/a/a.rs:12:\n-x\n+y\nDiff in /w/modules/b.rs:3:\n";
        assert_eq!(
            rustfmt_findings(out),
            [
                "needs rustfmt: /w/modules/a/a.rs:12",
                "needs rustfmt: /w/modules/b.rs:3"
            ]
        );
    }

    #[test]
    fn diagnostics_keep_location_and_drop_summaries() {
        let out = "\
  CLIPPY [M]  /w/modules/a/a.rs
error: useless use of `vec!`
   --> /w/modules/a/a.rs:127:24
    |
error: aborting due to 1 previous error
make[3]: *** [Makefile.build:300: a.o] Error 1
warning: unused import: `x`
 --> guest/tests/t.rs:1:5
";
        assert_eq!(
            diagnostics(out),
            [
                "error: useless use of `vec!` (/w/modules/a/a.rs:127:24)",
                "warning: unused import: `x` (guest/tests/t.rs:1:5)"
            ]
        );
    }

    #[test]
    fn files_are_found_recursively() {
        let d = std::env::temp_dir().join(format!("xtask-lint-{}", std::process::id()));
        std::fs::create_dir_all(d.join("x/.hidden")).unwrap();
        std::fs::write(d.join("x/a.c"), "").unwrap();
        std::fs::write(d.join("x/a.h"), "").unwrap();
        std::fs::write(d.join("x/.hidden/b.c"), "").unwrap();
        std::fs::write(d.join("x/Kbuild"), "").unwrap();
        let f = files_with(&d, &["c", "h"]);
        assert_eq!(f, [d.join("x/a.c"), d.join("x/a.h")]);
        let _ = std::fs::remove_dir_all(&d);
    }
}
