//! The markers of kernel reports (BUG, WARNING, Oops, KASAN, ...): the one list, for the
//! host's log scan (`logscan.rs`, which fails a test run on any report) and for the guest
//! tests that name the step that caused one (`guest/src/lib.rs` includes this file with
//! `#[path]`). Plain data and one function: it compiles in both crates as it is.

/// Markers, matched against the message part of each line (after the `[ time]` stamp).
pub const MARKERS: &[(&str, &str)] = &[
    ("Kernel panic - not syncing", "panic"),
    ("BUG: KASAN:", "KASAN"),
    ("BUG: KFENCE:", "KFENCE"),
    ("BUG:", "BUG"),
    ("kernel BUG at", "BUG"),
    ("WARNING:", "WARNING"),
    ("Oops:", "Oops"),
    ("general protection fault", "Oops"),
    ("UBSAN:", "UBSAN"),
    ("unreferenced object 0x", "kmemleak"),
    ("new suspected memory leak", "kmemleak"),
    // kmemleak turned itself off (e.g. its own metadata allocation failed): leaks after this
    // would go unseen, so the run cannot claim to be leak-free.
    ("Kernel memory leak detector disabled", "kmemleak disabled"),
    ("possible circular locking dependency", "lockdep"),
    ("possible recursive locking detected", "lockdep"),
    ("inconsistent lock state", "lockdep"),
    ("INFO: task ", "hung task"),
    ("rcu: INFO: rcu_", "RCU stall"),
    ("Call Trace:", "Call Trace"),
    ("rust_kernel: panicked", "Rust panic"),
];

/// Lines that contain a marker but are not reports.
pub const BENIGN: &[&str] = &[
    "kmemleak: Kernel memory leak detector initialized",
    "kmemleak: Automatic memory scanning thread started",
    "kmemleak: Automatic memory scanning thread ended",
];

/// The kind of report a log message (without its `[ time]` stamp) starts or belongs to
/// (`"KASAN"`, `"WARNING"`, `"Call Trace"`, ...), or `None` for an ordinary message.
pub fn report_kind(msg: &str) -> Option<&'static str> {
    if BENIGN.iter().any(|b| msg.contains(b)) {
        return None;
    }
    MARKERS
        .iter()
        .find(|(m, _)| msg.contains(m))
        .map(|&(_, kind)| kind)
}
