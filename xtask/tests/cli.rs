//! The `xtask` binary as a user runs it.

use std::process::Command;

fn xtask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

#[test]
fn doctor_names_the_fix_for_a_broken_bindgen() {
    let out = xtask()
        .arg("doctor")
        .env("BINDGEN", "/nonexistent/bindgen")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "doctor must fail when bindgen is missing"
    );
    assert!(
        stdout.contains("MISSING bindgen (/nonexistent/bindgen)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix: cargo install bindgen-cli --version 0.73.2 --locked"),
        "{stdout}"
    );
}

#[test]
fn doctor_names_the_fix_for_a_rustc_without_core_source() {
    // /bin/true "runs" but prints no version and has no sysroot.
    let out = xtask()
        .arg("doctor")
        .env("KRUSTC", "/bin/true")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        stdout.contains("MISSING rustc for the kernel (/bin/true)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("apt-get install rustc-web rust-web-src"),
        "{stdout}"
    );
}

#[test]
fn unknown_subcommand_is_rejected_with_usage() {
    let out = xtask().arg("frobnicate").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}
