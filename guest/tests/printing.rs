//! The `printing` module: one message per log level, formatting, `pr_cont!`, `pr_debug!`.

use guest::kmod::{self, Loaded};
use guest::{Kmsg, Record};

const NAME: &str = "printing";

/// Load `printing` and return its records (text and level) from the kernel log.
fn load_and_collect() -> Vec<Record> {
    kmod::ensure_unloaded(NAME);
    let mut log = Kmsg::new();
    let _m = Loaded::new(NAME, "").expect("insmod printing");
    log.read()
        .into_iter()
        .filter(|r| r.text.starts_with("printing: "))
        .collect()
}

/// Whether the module says `pr_debug!` is compiled in (`debug_assertions=true`).
fn debug_assertions(records: &[Record]) -> bool {
    let line = records
        .iter()
        .find(|r| r.text.starts_with("printing: debug_assertions="))
        .expect("the module reports debug_assertions at init");
    match line.text.as_str() {
        "printing: debug_assertions=true" => true,
        "printing: debug_assertions=false" => false,
        other => panic!("unexpected report {other:?}"),
    }
}

#[test]
fn every_message_has_its_own_level_in_order() {
    let records = load_and_collect();
    let debug = debug_assertions(&records);
    let mut expected: Vec<(&str, u8)> = vec![
        ("printing: debug_assertions=false", 6),
        ("printing: Emergency message", 0),
        ("printing: Alert message", 1),
        ("printing: Critical message", 2),
        ("printing: Error message", 3),
        ("printing: Warning message", 4),
        ("printing: Notice message", 5),
        ("printing: Info message", 6),
    ];
    if debug {
        expected[0].0 = "printing: debug_assertions=true";
        expected.push(("printing: Debug message", 7));
    }
    expected.push(("printing: Value is 42", 6));
    expected.push(("printing: Continued: joined", 6));
    let got: Vec<(&str, u8)> = records.iter().map(|r| (r.text.as_str(), r.level)).collect();
    assert_eq!(got, expected);
}

#[test]
fn pr_debug_matches_debug_assertions() {
    let records = load_and_collect();
    let debug = debug_assertions(&records);
    let debug_lines: Vec<&Record> = records
        .iter()
        .filter(|r| r.text == "printing: Debug message")
        .collect();
    if debug {
        assert_eq!(
            debug_lines.len(),
            1,
            "pr_debug! prints with debug assertions"
        );
        assert_eq!(debug_lines[0].level, 7, "pr_debug! is KERN_DEBUG (7)");
    } else {
        assert!(
            debug_lines.is_empty(),
            "pr_debug! is compiled out without CONFIG_RUST_DEBUG_ASSERTIONS"
        );
    }
    // No other record carries the debug level.
    assert_eq!(
        records.iter().filter(|r| r.level == 7).count(),
        debug_lines.len()
    );
}

#[test]
fn pr_debug_has_no_dynamic_debug_entries() {
    // C's pr_debug() registers a descriptor per call site in dynamic debug; Rust's does not.
    let control = "/proc/dynamic_debug/control";
    if !std::path::Path::new(control).exists() {
        eprintln!("{control} absent (no CONFIG_DYNAMIC_DEBUG): nothing to check");
        return;
    }
    let _m = Loaded::new(NAME, "").expect("insmod printing");
    let text = std::fs::read_to_string(control).expect("read dynamic_debug/control");
    assert!(
        text.lines().any(|l| l.contains(" [")),
        "control lists other modules' call sites"
    );
    assert!(
        !text.lines().any(|l| l.contains(" [printing]")),
        "no dynamic debug call sites for printing"
    );
}

#[test]
fn continuation_joins_into_one_record() {
    let records = load_and_collect();
    let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
    assert!(texts.contains(&"printing: Continued: joined"), "{texts:?}");
    assert!(
        !texts
            .iter()
            .any(|t| *t == "printing: Continued: " || *t == "joined"),
        "the two parts are not separate records: {texts:?}"
    );
}

#[test]
fn formatted_value() {
    let records = load_and_collect();
    let r = records
        .iter()
        .find(|r| r.text == "printing: Value is 42")
        .expect("Value is 42");
    assert_eq!(r.level, 6);
}

#[test]
fn modinfo_shows_metadata() {
    kmod::assert_metadata(
        NAME,
        "Kernel log levels with the pr_*! macros (chapter: Kernel Printing)",
    );
}
