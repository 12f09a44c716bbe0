//! The `template_name` module, from user space in the guest: load, init message, unload.

use guest::kmod::{self, is_loaded};
use guest::Kmsg;

#[test]
fn load_logs_and_unload_logs() {
    kmod::ensure_unloaded("template_name");
    let mut log = Kmsg::new();
    kmod::load("template_name", "").expect("insmod template_name");
    assert!(
        is_loaded("template_name"),
        "/proc/modules lists it while loaded"
    );
    kmod::unload("template_name").expect("rmmod template_name");
    assert!(
        !is_loaded("template_name"),
        "/proc/modules does not list it after rmmod"
    );
    let lines: Vec<String> = log
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("template_name: "))
        .collect();
    assert_eq!(lines, ["template_name: loaded", "template_name: unloaded"]);
}
