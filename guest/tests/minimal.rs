//! The `minimal` module: load/unload messages, /proc/modules, modinfo.

use guest::kmod::{self, is_loaded};
use guest::Kmsg;

#[test]
fn load_and_unload_print_in_order() {
    kmod::ensure_unloaded("minimal");
    let mut log = Kmsg::new();
    kmod::load("minimal", "").expect("insmod minimal");
    assert!(
        is_loaded("minimal"),
        "/proc/modules lists minimal while loaded"
    );
    kmod::unload("minimal").expect("rmmod minimal");
    assert!(
        !is_loaded("minimal"),
        "/proc/modules does not list minimal after rmmod"
    );
    let lines: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("minimal: Minimal Rust module"))
        .collect();
    assert_eq!(
        lines,
        [
            "minimal: Minimal Rust module loaded",
            "minimal: Minimal Rust module unloaded"
        ]
    );
}

#[test]
fn messages_are_info_level() {
    kmod::ensure_unloaded("minimal");
    let mut log = Kmsg::new();
    let _m = kmod::Loaded::new("minimal", "").expect("insmod minimal");
    let rec = log
        .read()
        .into_iter()
        .find(|r| r.text == "minimal: Minimal Rust module loaded")
        .expect("load message");
    assert_eq!(rec.level, 6, "pr_info! is KERN_INFO (6)");
}

#[test]
fn modinfo_shows_metadata() {
    kmod::assert_metadata(
        "minimal",
        "Minimal Rust kernel module (chapter: Minimal module)",
    );
}
