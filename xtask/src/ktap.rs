//! `ktap`: KUnit results from the kernel log.
//!
//! The log holds one KTAP document for the built-in suites (run at boot) and one more for
//! every module with KUnit suites, printed when it is loaded. The log is cut into those
//! documents here; each is parsed by the kernel's own `tools/testing/kunit/kunit.py parse`,
//! whose JSON is read back.

use crate::logscan::message;
use crate::protocol::{KUNIT_PASS_FOR, TESTS_BEGIN};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::Command;

/// One KTAP document cut from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Printed before `/init` ran: the kernel's built-in suites (e.g. the Rust doctests).
    pub builtin: bool,
    /// The module the KUnit pass was loading when this document was printed.
    pub module: Option<String>,
    pub text: String,
}

/// One KUnit test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    pub suite: String,
    pub name: String,
    pub status: Status,
}

/// A case's status as `kunit.py parse --json` spells it (`tools/testing/kunit/kunit_json.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `PASS`
    Pass,
    /// `SKIP`
    Skip,
    /// `ERROR`: the test crashed.
    Error,
    /// `FAIL`, and anything kunit.py does not write today.
    Fail,
}

impl Status {
    pub fn parse(s: &str) -> Status {
        match s {
            "PASS" => Status::Pass,
            "SKIP" => Status::Skip,
            "ERROR" => Status::Error,
            _ => Status::Fail,
        }
    }

    /// `FAIL` or `ERROR`.
    pub fn failed(self) -> bool {
        matches!(self, Status::Fail | Status::Error)
    }
}

/// Cut the log into KTAP documents at each top-level `KTAP version` line.
pub fn split_documents(log: &str) -> Vec<Document> {
    let mut docs: Vec<Document> = Vec::new();
    let mut in_userspace = false;
    let mut module: Option<String> = None;
    for line in log.lines() {
        let msg = message(line);
        if let Some(m) = msg.strip_prefix(KUNIT_PASS_FOR) {
            module = Some(m.trim().to_string());
        }
        if msg.starts_with("Run /init as init process") || msg.starts_with("Run /sbin/init") {
            in_userspace = true;
        }
        if msg.starts_with(TESTS_BEGIN) {
            // From here on, modules are loaded by tests (some under fault injection): the
            // KUnit verdicts were taken in the dedicated pass before.
            break;
        }
        if msg.starts_with("KTAP version") || msg.starts_with("TAP version") {
            docs.push(Document {
                builtin: !in_userspace,
                module: module.clone().filter(|_| in_userspace),
                text: String::new(),
            });
        }
        if let Some(d) = docs.last_mut() {
            d.text.push_str(line);
            d.text.push('\n');
        }
    }
    docs
}

/// The modules the KUnit pass loaded (`xtask: KUnit pass for M`), in order.
pub fn pass_modules(log: &str) -> Vec<String> {
    log.lines()
        .map(message)
        .take_while(|m| !m.starts_with(TESTS_BEGIN))
        .filter_map(|m| m.strip_prefix(KUNIT_PASS_FOR))
        .map(|m| m.trim().to_string())
        .collect()
}

/// Flatten `kunit.py parse --json` output into cases.
pub fn cases_from_json(json: &str) -> Result<Vec<Case>> {
    let v: serde_json::Value = serde_json::from_str(json).context("kunit.py JSON")?;
    let mut out = Vec::new();
    walk(&v, &mut out);
    Ok(out)
}

fn walk(group: &serde_json::Value, out: &mut Vec<Case>) {
    let suite = group["name"].as_str().unwrap_or("").to_string();
    if let Some(cases) = group["test_cases"].as_array() {
        for c in cases {
            out.push(Case {
                suite: suite.clone(),
                name: c["name"].as_str().unwrap_or("?").to_string(),
                status: Status::parse(c["status"].as_str().unwrap_or("FAIL")),
            });
        }
    }
    if let Some(groups) = group["sub_groups"].as_array() {
        for g in groups {
            walk(g, out);
        }
    }
}

/// Parse one document with the kernel's kunit.py; `work` is a scratch directory.
pub fn parse_document(ksrc: &Path, doc: &Document, work: &Path, idx: usize) -> Result<Vec<Case>> {
    std::fs::create_dir_all(work)?;
    let input = work.join(format!("ktap-{idx}.log"));
    let json = work.join(format!("ktap-{idx}.json"));
    std::fs::write(&input, &doc.text)?;
    let _ = std::fs::remove_file(&json);
    // kunit.py exits 1 when a test failed; the JSON is still written and is what counts.
    let out = Command::new("python3")
        .arg(ksrc.join("tools/testing/kunit/kunit.py"))
        .arg("parse")
        .arg(format!("--json={}", json.display()))
        .arg(&input)
        .output()
        .context("running kunit.py parse")?;
    let text = std::fs::read_to_string(&json).with_context(|| {
        format!(
            "kunit.py wrote no JSON for {}:\n{}",
            input.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    cases_from_json(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[    0.50] KTAP version 1
[    0.50] 1..1
[    0.50]     KTAP version 1
[    0.50]     # Subtest: rust_doctests_kernel
[    0.50]     1..1
[    0.51]     ok 1 rust_doctest_kernel_alloc_1
[    0.51] ok 1 rust_doctests_kernel
[    0.90] Run /init as init process
[    0.95] xtask: KUnit pass for my_mod
[    1.00] KTAP version 1
[    1.00] 1..1
[    1.00]     KTAP version 1
[    1.00]     # Subtest: my_suite
[    1.00]     1..2
[    1.01]     ok 1 parses_names
[    1.01]     not ok 2 rejects_zero
[    1.01] not ok 1 my_suite
[    1.05] xtask: KUnit pass for silent_mod
[    1.10] xtask: tests begin
[    1.20] KTAP version 1
[    1.20] 1..1
[    1.20]     KTAP version 1
[    1.20]     # Subtest: loaded_under_fault_injection
";

    #[test]
    fn documents_split_at_top_level_headers() {
        let d = split_documents(LOG);
        assert_eq!(d.len(), 2);
        assert!(d[0].builtin);
        assert!(!d[1].builtin);
        assert!(d[1].text.contains("my_suite"));
        assert!(!d[0].text.contains("my_suite"));
        assert_eq!(d[0].module, None);
        assert_eq!(d[1].module.as_deref(), Some("my_mod"));
        assert_eq!(pass_modules(LOG), ["my_mod", "silent_mod"]);
    }

    #[test]
    fn json_is_flattened() {
        let json = r#"{"name": "KUnit Test Group", "sub_groups": [
            {"name": "my_suite", "sub_groups": [], "test_cases": [
                {"name": "parses_names", "status": "PASS"},
                {"name": "rejects_zero", "status": "FAIL"}]}],
            "test_cases": []}"#;
        let c = cases_from_json(json).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].suite, "my_suite");
        assert_eq!(c[1].status, Status::Fail);
    }

    #[test]
    fn statuses_are_kunit_json_words() {
        assert_eq!(Status::parse("PASS"), Status::Pass);
        assert_eq!(Status::parse("SKIP"), Status::Skip);
        assert!(Status::parse("ERROR").failed());
        assert!(Status::parse("FAIL").failed());
        assert!(Status::parse("something new").failed());
        assert!(!Status::parse("SKIP").failed());
    }

    /// Runs the real kunit.py of the kernel source.
    #[test]
    #[ignore = "needs the kernel source (kunit.py): run by .ci/run after `cargo xtask setup`"]
    fn kunit_py_parses_our_split_documents() {
        let ksrc = crate::setup::require_kernel_src().unwrap();
        let work = std::env::temp_dir().join(format!("ktap-test-{}", std::process::id()));
        let docs = split_documents(LOG);
        let module = parse_document(&ksrc, &docs[1], &work, 1).unwrap();
        assert_eq!(
            module,
            vec![
                Case {
                    suite: "my_suite".into(),
                    name: "parses_names".into(),
                    status: Status::Pass
                },
                Case {
                    suite: "my_suite".into(),
                    name: "rejects_zero".into(),
                    status: Status::Fail
                },
            ]
        );
        let builtin = parse_document(&ksrc, &docs[0], &work, 0).unwrap();
        assert_eq!(builtin.len(), 1);
        assert_eq!(builtin[0].status, Status::Pass);
        std::fs::remove_dir_all(&work).ok();
    }

    /// The real log of a clean boot of the test kernel: the built-in suites parse, all pass.
    #[test]
    #[ignore = "needs the kernel source (kunit.py): run by .ci/run after `cargo xtask setup`"]
    fn real_boot_log_builtin_suites() {
        let ksrc = crate::setup::require_kernel_src().unwrap();
        let log = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clean-boot.log"),
        )
        .unwrap();
        let docs = split_documents(&log);
        assert!(docs[0].builtin);
        let work = std::env::temp_dir().join(format!("ktap-real-{}", std::process::id()));
        let cases = parse_document(&ksrc, &docs[0], &work, 0).unwrap();
        assert!(cases.len() > 300, "{} cases", cases.len());
        assert!(cases.iter().all(|c| c.status == Status::Pass));
        assert!(cases.iter().any(|c| c.suite == "rust_doctests_kernel"));
        std::fs::remove_dir_all(&work).ok();
    }
}
