//! `doctor --kdir`, `build --kdir` and `install` as a user runs them, on fake kernel trees.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A directory that looks like a prepared kernel build tree with this `.config`.
fn fake_tree(tag: &str, release: &str, config: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("xtask-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("include/config")).unwrap();
    std::fs::write(d.join("Makefile"), "# fake kernel tree\n").unwrap();
    std::fs::write(
        d.join("include/config/kernel.release"),
        format!("{release}\n"),
    )
    .unwrap();
    std::fs::write(d.join(".config"), config).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn doctor_kdir_names_missing_rust_support() {
    let d = fake_tree(
        "norust",
        "6.1.0-fake",
        "CONFIG_MODULES=y\n# CONFIG_RUST is not set\n",
    );
    let o = xtask(&["doctor", "--kdir", s(&d)]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("MISSING CONFIG_RUST=y"), "{t}");
    assert!(t.contains("CONFIG_RUST is not set"), "{t}");
    assert!(t.contains("fix: this kernel has no Rust support"), "{t}");
    // `build --kdir` refuses the same tree before running make.
    let o = xtask(&["build", "--kdir", s(&d)]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("cannot build the Rust modules"), "{t}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn doctor_kdir_names_missing_rust_metadata() {
    let d = fake_tree(
        "nometa",
        "7.3.4-headers",
        "CONFIG_RUST=y\nCONFIG_CC_IS_GCC=y\n",
    );
    let o = xtask(&["doctor", "--kdir", s(&d)]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("ok      CONFIG_RUST=y"), "{t}");
    assert!(t.contains("MISSING Rust metadata (rust/*.rmeta)"), "{t}");
    assert!(
        t.contains("MISSING Module.symvers exports Rust symbols"),
        "{t}"
    );
    assert!(
        t.contains("headers packages usually do not ship the Rust metadata"),
        "{t}"
    );
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn doctor_kdir_without_a_tree() {
    let o = xtask(&["doctor", "--kdir", "/nonexistent/kernel/build"]);
    let t = text(&o);
    assert!(!o.status.success());
    assert!(t.contains("MISSING kernel build tree"), "{t}");
    assert!(t.contains("linux-headers"), "{t}");
}

#[test]
fn install_needs_on_host() {
    let o = xtask(&["install"]);
    let t = text(&o);
    assert!(!o.status.success());
    assert!(t.contains("Pass --on-host"), "{t}");
}

#[test]
fn install_refuses_a_tree_of_another_release() {
    let d = fake_tree("other", "0.0.1-not-running", "CONFIG_RUST=y\n");
    let o = xtask(&["install", "--on-host", "--kdir", s(&d)]);
    let t = text(&o);
    assert!(!o.status.success());
    assert!(t.contains("refusing to load"), "{t}");
    assert!(t.contains("0.0.1-not-running"), "{t}");
    let _ = std::fs::remove_dir_all(&d);
}
