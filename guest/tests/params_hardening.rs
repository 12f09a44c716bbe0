//! Repeated module parameters: the last value wins, as with C's `module_param()`.
//!
//! `insmod M p=1 p=2` must load and the module must see 2. The same for the way it happens in
//! practice: an `options M p=1` line in `/etc/modprobe.d/*.conf` plus `modprobe M p=2` (the
//! configuration's options come first, the command line's after). A parameter that can be set
//! only once would fail the second assignment with `EEXIST`, which aborts the load, and
//! `modprobe` (libkmod and busybox alike) takes `EEXIST` for "already loaded" and exits 0: the
//! module silently does not load.
//!
//! Covered: every parameter of `my_module`, `locking`, `allocation` and `errors`.

use guest::kmod::{self, is_loaded, Loaded};
use guest::{sh, Errno, Kmsg};
use std::path::Path;

const CONF_DIR: &str = "/etc/modprobe.d";
const CONF: &str = "/etc/modprobe.d/rkm-params-hardening.conf";

/// A modprobe configuration file, removed on drop.
struct Conf;

impl Conf {
    fn new(text: &str) -> Conf {
        std::fs::create_dir_all(CONF_DIR).expect("mkdir /etc/modprobe.d");
        std::fs::write(CONF, text).expect("write modprobe.d conf");
        Conf
    }
}

impl Drop for Conf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(CONF);
    }
}

/// `modprobe name args` with `options name conf_args` in modprobe.d; returns (status, output).
fn modprobe_with_conf(name: &str, conf_args: &str, args: &str) -> (i32, String) {
    kmod::ensure_unloaded(name);
    let _conf = Conf::new(&format!("options {name} {conf_args}\n"));
    sh(&format!("modprobe {name} {args}"))
}

/// Unloads `name` on drop (after a `modprobe`).
struct Unload(&'static str);

impl Drop for Unload {
    fn drop(&mut self) {
        kmod::ensure_unloaded(self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// insmod with a repeated parameter.

#[test]
fn hardening_insmod_repeated_params_last_wins_my_module() {
    kmod::ensure_unloaded("my_module");
    let mut log = Kmsg::new();
    let _m = Loaded::new(
        "my_module",
        "load_only=1 load_only=2 my_param=1 my_param=2 buffer_size=1 buffer_size=2 \
         verbose=1 verbose=0",
    )
    .expect("insmod my_module with every parameter given twice");
    assert_eq!(
        log.module_lines("my_module"),
        ["loaded: my_param=2 buffer_size=2 verbose=false load_only=2"]
    );
    assert_eq!(
        std::fs::read_to_string("/dev/my_module").unwrap(),
        "my_param=2\n"
    );
    assert_eq!(
        std::fs::read_to_string("/sys/module/my_module/parameters/buffer_size").unwrap(),
        "2\n"
    );
}

#[test]
fn hardening_insmod_repeated_params_last_wins_locking() {
    kmod::ensure_unloaded("locking");
    let mut log = Kmsg::new();
    let _m = Loaded::new(
        "locking",
        "workers=1 workers=2 iterations=1 iterations=3 irq_ticks=1 irq_ticks=2",
    )
    .expect("insmod locking with every parameter given twice");
    assert_eq!(
        log.module_lines("locking"),
        ["workers=2 iterations=3 irq_ticks=2: read /dev/rust_locking to run"]
    );
    let report = std::fs::read_to_string("/dev/rust_locking").unwrap();
    assert!(
        report.starts_with("workers=2 iterations=3 mutex_total=6 spinlock_total=6 "),
        "{report}"
    );
    assert!(report.contains(" result=ok"), "{report}");
}

#[test]
fn hardening_insmod_repeated_params_validated_after_the_last_value() {
    // An invalid value followed by a valid one loads (the module checks what it finally got) ...
    let m = Loaded::new("locking", "workers=0 workers=2").expect("workers=0 workers=2");
    drop(m);
    // ... and a valid one followed by an invalid one does not.
    kmod::ensure_unloaded("locking");
    assert_eq!(
        kmod::load("locking", "workers=2 workers=0"),
        Err(Errno(libc::EINVAL))
    );
    assert!(!is_loaded("locking"));
    // A value that does not parse fails the load even when a good one follows.
    kmod::ensure_unloaded("my_module");
    assert_eq!(
        kmod::load("my_module", "load_only=abc load_only=2"),
        Err(Errno(libc::EINVAL))
    );
    assert!(!is_loaded("my_module"));
}

#[test]
fn hardening_insmod_repeated_params_last_wins_allocation() {
    kmod::ensure_unloaded("allocation");
    let mut log = Kmsg::new();
    let _m = Loaded::new(
        "allocation",
        "buffer_size=1000 buffer_size=2000 fail_alloc_at=1 fail_alloc_at=0",
    )
    .expect("insmod allocation with every parameter given twice");
    let lines = log.module_lines("allocation");
    assert!(
        lines.contains(&"VVec::with_capacity(2000): 2000 bytes (vmalloc), filled with 0x5a".into()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"all 3 allocations succeeded".into()),
        "{lines:?}"
    );
}

#[test]
fn hardening_insmod_repeated_params_last_wins_errors() {
    kmod::ensure_unloaded("errors");
    let mut log = Kmsg::new();
    assert_eq!(
        kmod::load("errors", "fail_with=EINVAL fail_with=ENODEV"),
        Err(Errno(libc::ENODEV))
    );
    assert_eq!(
        log.module_lines("errors").last().map(String::as_str),
        Some("use_result() failed: ENODEV (-19)")
    );
    let _m = Loaded::new("errors", "fail_with=ENODEV fail_with=").expect("last value empty");
}

// ---------------------------------------------------------------------------------------------
// modprobe.d `options` followed by the command line's value.

#[test]
fn hardening_modprobe_conf_then_cmdline_my_module() {
    let mut log = Kmsg::new();
    let (rc, out) = modprobe_with_conf(
        "my_module",
        "load_only=1 my_param=1",
        "load_only=2 my_param=2",
    );
    let _u = Unload("my_module");
    assert_eq!(rc, 0, "modprobe exit status: {out}");
    assert!(is_loaded("my_module"), "modprobe exited 0: loaded? {out}");
    assert_eq!(
        log.module_lines("my_module"),
        ["loaded: my_param=2 buffer_size=4096 verbose=false load_only=2"]
    );
}

#[test]
fn hardening_modprobe_conf_then_cmdline_locking() {
    let mut log = Kmsg::new();
    let (rc, out) = modprobe_with_conf(
        "locking",
        "workers=1 iterations=1 irq_ticks=1",
        "workers=2 iterations=5 irq_ticks=3",
    );
    let _u = Unload("locking");
    assert_eq!(rc, 0, "modprobe exit status: {out}");
    assert!(is_loaded("locking"), "modprobe exited 0: loaded? {out}");
    assert_eq!(
        log.module_lines("locking"),
        ["workers=2 iterations=5 irq_ticks=3: read /dev/rust_locking to run"]
    );
}

#[test]
fn hardening_modprobe_conf_then_cmdline_allocation() {
    let mut log = Kmsg::new();
    let (rc, out) = modprobe_with_conf(
        "allocation",
        "buffer_size=1000 fail_alloc_at=3",
        "buffer_size=2000 fail_alloc_at=0",
    );
    let _u = Unload("allocation");
    assert_eq!(rc, 0, "modprobe exit status: {out}");
    assert!(is_loaded("allocation"), "modprobe exited 0: loaded? {out}");
    let lines = log.module_lines("allocation");
    assert!(
        lines.contains(&"VVec::with_capacity(2000): 2000 bytes (vmalloc), filled with 0x5a".into()),
        "{lines:?}"
    );
}

#[test]
fn hardening_modprobe_conf_then_cmdline_errors() {
    let mut log = Kmsg::new();
    let (rc, out) = modprobe_with_conf("errors", "fail_with=ENOMEM", "fail_with=ENODEV");
    let _u = Unload("errors");
    assert_ne!(rc, 0, "init failed: modprobe must fail: {out}");
    assert!(!is_loaded("errors"));
    assert!(!Path::new("/sys/module/errors").exists());
    assert_eq!(
        log.module_lines("errors").last().map(String::as_str),
        Some("use_result() failed: ENODEV (-19)")
    );
    // And the other way round: the command line's empty value wins over the configuration's.
    let (rc, out) = modprobe_with_conf("errors", "fail_with=ENOMEM", "fail_with=");
    assert_eq!(rc, 0, "modprobe errors fail_with=: {out}");
    assert!(is_loaded("errors"));
}
