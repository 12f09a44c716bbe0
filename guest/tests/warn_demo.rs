//! `warn_demo`: a real kernel report from a real Rust module, on purpose.
//!
//! The host decodes every report's stack trace to source lines (`xtask/src/decode.rs`);
//! this test gives it one to decode: loaded with `armed=1`, a write to `/dev/warn_demo` hits
//! `kernel::warn_on!`. The write is bracketed by `xtask: expect report begin WARNING
//! warn_demo` / `xtask: expect report end warn_demo` in the kernel log: the host tolerates
//! exactly one WARNING from warn_demo between them and turns it into the verdict
//! `kernel::provoked_report_decoded::warn_demo` (the decoded trace names
//! `modules/warn_demo/warn_demo.rs` and the line of the `warn_on!`). Any other report,
//! here or anywhere, still fails the run.

use guest::kmod::{self, Loaded};
use guest::Kmsg;
use std::io::Write;
use std::time::{Duration, Instant};

const DEV: &str = "/dev/warn_demo";

/// Write a line to the kernel log.
fn kmsg_write(line: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .expect("open /dev/kmsg");
    f.write_all(line.as_bytes()).expect("write /dev/kmsg");
}

fn write_device(data: &[u8]) -> std::io::Result<usize> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(DEV)?
        .write(data)
}

#[test]
fn unarmed_write_does_not_warn() {
    kmod::ensure_unloaded("warn_demo");
    let mut log = Kmsg::new();
    let _m = Loaded::new("warn_demo", "").expect("insmod warn_demo");
    assert_eq!(write_device(b"hello").expect("write"), 5);
    let lines = log.lines();
    assert!(
        lines.iter().any(|l| l == "warn_demo: loaded, armed=false"),
        "{lines:?}"
    );
    // Outside an expect window a WARNING would also fail kernel::log_has_no_reports.
    assert!(!lines.iter().any(|l| l.contains("WARNING:")), "{lines:?}");
}

#[test]
fn armed_write_warns_with_the_rust_source_line() {
    kmod::ensure_unloaded("warn_demo");
    let mut log = Kmsg::new();
    kmsg_write("xtask: expect report begin WARNING warn_demo");
    let m = Loaded::new("warn_demo", "armed=1").expect("insmod warn_demo armed=1");
    let written = write_device(b"warn");
    // The whole report, up to `---[ end trace ... ]---`, before the end marker.
    let mut records = Vec::new();
    let start = Instant::now();
    while !records
        .iter()
        .any(|r: &String| r.contains("---[ end trace"))
        && start.elapsed() < Duration::from_secs(10)
    {
        records.extend(log.lines());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(m);
    kmsg_write("xtask: expect report end warn_demo");
    assert_eq!(written.expect("write"), 4, "the write still succeeds");
    let warning = records
        .iter()
        .find(|r| r.contains("WARNING:"))
        .unwrap_or_else(|| panic!("a WARNING in the kernel log: {records:#?}"));
    assert!(
        warning.contains("warn_demo/warn_demo.rs:"),
        "the WARNING names the Rust file: {warning:?}"
    );
    assert!(
        records.iter().any(|r| r.contains("---[ end trace")),
        "the report is complete: {records:#?}"
    );
}
