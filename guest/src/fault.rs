//! Fault injection with the kernel's per-task `fail-nth` (`/proc/thread-self/fail-nth`):
//! arm it with n, and the n-th fault point (failslab for kmalloc; fail_page_alloc too on
//! the debug kernel) this thread passes fails. Used by `faults.rs` (every allocation of an
//! operation, one at a time) and `fifo_hardening.rs` (an open racing with a failing init).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Configure the fault attributes so that `fail-nth` reaches GFP_KERNEL allocations (and
/// order-0 and highmem pages) and injections do not print stack dumps (which the log scan
/// would rightly flag). Panics when the kernel has no fault injection.
pub fn configure() {
    let set = |p: &str, v: &str| {
        let path = format!("/sys/kernel/debug/{p}");
        if Path::new(&path).exists() {
            std::fs::write(&path, v).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    };
    for attr in ["failslab", "fail_page_alloc"] {
        set(&format!("{attr}/verbose"), "0");
        set(&format!("{attr}/ignore-gfp-wait"), "N");
        set(&format!("{attr}/probability"), "0");
    }
    set("fail_page_alloc/min-order", "0");
    set("fail_page_alloc/ignore-gfp-highmem", "N");
    assert!(
        Path::new("/sys/kernel/debug/failslab").exists(),
        "failslab debugfs is missing (CONFIG_FAILSLAB + FAULT_INJECTION_DEBUG_FS)"
    );
    assert!(
        Path::new("/proc/thread-self/fail-nth").exists(),
        "no fail-nth (CONFIG_FAULT_INJECTION)"
    );
}

/// This thread's `fail-nth`, kept open so arming and reading it allocate nothing.
pub struct FailNth(File);

impl FailNth {
    pub fn new() -> FailNth {
        FailNth(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/proc/thread-self/fail-nth")
                .expect("open /proc/thread-self/fail-nth"),
        )
    }

    /// Make the `n`-th fault point from now on fail.
    pub fn arm(&self, n: u32) {
        self.0
            .write_at(n.to_string().as_bytes(), 0)
            .expect("arm fail-nth");
    }

    /// Fault points left before the armed one (0: it was injected); disarms.
    pub fn left(&self) -> u32 {
        let mut buf = [0u8; 16];
        let len = self.0.read_at(&mut buf, 0).expect("read fail-nth");
        self.0.write_at(b"0", 0).expect("disarm fail-nth");
        std::str::from_utf8(&buf[..len])
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// True when the armed fault was injected (the counter reached 0); disarms.
    pub fn injected(&self) -> bool {
        self.left() == 0
    }
}

impl Default for FailNth {
    fn default() -> Self {
        Self::new()
    }
}

/// Every allocation of the calling thread fails (failslab and fail_page_alloc at probability
/// 100 with their task filter, and this thread's `make-it-fail`) until this is dropped. What
/// `fail-nth` cannot do: a `kvmalloc()` is two tries (kmalloc, then vmalloc) and fail-nth
/// fails one allocation only. Call [`configure`] first. `None` without `fail_page_alloc`
/// (the default profile): large kmallocs and vmalloc come from the page allocator.
pub struct FailAll(File);

impl FailAll {
    pub fn new() -> Option<FailAll> {
        if !Path::new("/sys/kernel/debug/fail_page_alloc").exists() {
            return None;
        }
        for attr in ["failslab", "fail_page_alloc"] {
            for (knob, v) in [
                ("task-filter", "Y"),
                ("times", "-1"),
                ("interval", "1"),
                ("space", "0"),
                ("probability", "100"),
            ] {
                let path = format!("/sys/kernel/debug/{attr}/{knob}");
                std::fs::write(&path, v).unwrap_or_else(|e| panic!("{path}: {e}"));
            }
        }
        let me = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/thread-self/make-it-fail")
            .expect("open /proc/thread-self/make-it-fail");
        me.write_at(b"1", 0).expect("make-it-fail");
        Some(FailAll(me))
    }
}

impl Drop for FailAll {
    fn drop(&mut self) {
        self.0.write_at(b"0", 0).expect("make-it-fail off");
        for attr in ["failslab", "fail_page_alloc"] {
            for (knob, v) in [("probability", "0"), ("task-filter", "N")] {
                let path = format!("/sys/kernel/debug/{attr}/{knob}");
                let _ = std::fs::write(&path, v);
            }
        }
    }
}
