//! `logscan`: find kernel reports (BUG, WARNING, Oops, panics, KASAN, UBSAN, kmemleak,
//! lockdep, hung tasks) in a kernel log. Any report fails a test run.

/// One report: the line that starts it and the lines that follow (up to the next blank
/// timestamp gap or 40 lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub kind: &'static str,
    pub text: String,
}

mod markers;
pub use markers::report_kind;

/// An allocation that failed and said so (`warn_alloc`: a message, a stack dump and the
/// memory state). With fault injection this is the expected, clean outcome: the caller got
/// ENOMEM. Its `Call Trace:` is not a bug report.
const ALLOC_FAILURE: &[&str] = &["page allocation failure:", "vmalloc error:"];

/// Strip `[    1.234567] ` from a dmesg line.
pub fn message(line: &str) -> &str {
    let t = line.trim_start();
    if t.starts_with('[') {
        if let Some(i) = t.find("] ") {
            return &t[i + 2..];
        }
    }
    t
}

/// Scan a kernel log. A `Call Trace:` that belongs to a report already found is not
/// reported again.
pub fn scan(log: &str) -> Vec<Report> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out: Vec<Report> = Vec::new();
    let mut covered_until = 0usize;
    for (i, line) in lines.iter().enumerate() {
        let Some(kind) = report_kind(message(line)) else {
            continue;
        };
        if kind == "Call Trace" && i < covered_until {
            continue;
        }
        if kind == "Call Trace"
            && lines[i.saturating_sub(5)..i]
                .iter()
                .any(|l| ALLOC_FAILURE.iter().any(|a| message(l).contains(a)))
        {
            continue;
        }
        let end = (i + 40).min(lines.len());
        let mut stop = end;
        for (j, l) in lines.iter().enumerate().take(end).skip(i + 1) {
            let m = message(l);
            if m.contains("---[ end trace") || m.contains("---[ end Kernel panic") {
                stop = j + 1;
                break;
            }
        }
        covered_until = covered_until.max(stop);
        if i < covered_until && out.last().is_some_and(|r| r.text.contains(line)) {
            continue;
        }
        out.push(Report {
            kind,
            text: lines[i..stop].join("\n"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn clean_boot_has_no_reports() {
        let r = scan(&fixture("clean-boot.log"));
        assert!(r.is_empty(), "{r:#?}");
    }

    #[test]
    fn real_warning_is_found_once() {
        let r = scan(&fixture("warning.log"));
        assert_eq!(r.len(), 1, "{r:#?}");
        assert_eq!(r[0].kind, "WARNING");
        assert!(
            r[0].text.contains("Call Trace:"),
            "trace is part of the report"
        );
    }

    #[test]
    fn real_panic_is_found() {
        let r = scan(&fixture("panic.log"));
        assert!(r.iter().any(|x| x.kind == "panic"), "{r:#?}");
    }

    #[test]
    fn real_oops_is_found() {
        let r = scan(&fixture("oops.log"));
        assert!(
            r.iter().any(|x| x.kind == "BUG" || x.kind == "Oops"),
            "{r:#?}"
        );
    }

    #[test]
    fn injected_allocation_failure_is_not_a_report() {
        // A real warn_alloc from fault injection into finit_module's vmalloc.
        let log = fixture("alloc-failure.log");
        assert!(log.contains("Call Trace:"));
        assert!(scan(&log).is_empty(), "{:#?}", scan(&log));
        // But a WARNING right after it still is.
        let with_warning = format!("{log}[    9.0] WARNING: x at y\n[    9.1] Call Trace:\n");
        assert_eq!(scan(&with_warning).len(), 1);
    }

    #[test]
    fn kmemleak_bookkeeping_is_not_a_leak_but_disabling_is_reported() {
        // Under fault injection kmemleak may fail its own metadata allocation: not a leak.
        let r = scan("[ 13.1] kmemleak: Cannot allocate a scan area, scanning the full object\n");
        assert!(r.is_empty(), "{r:#?}");
        let r = scan("[ 3.0] kmemleak: Kernel memory leak detector disabled\n");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].kind, "kmemleak disabled");
    }

    #[test]
    fn timestamp_is_stripped() {
        assert_eq!(message("[    1.234567] WARNING: x"), "WARNING: x");
        assert_eq!(message("no stamp"), "no stamp");
    }

    #[test]
    fn chapter_warning_text_is_not_a_report() {
        // pr_warn!("Warning message") from the printing module must not fail the run.
        assert!(
            scan("[    1.0] printing: Warning message\n[ 1.1] printing: Error message\n")
                .is_empty()
        );
        assert!(!scan(
            "[ 2.0] kmemleak: 1 new suspected memory leaks (see /sys/kernel/debug/kmemleak)\n"
        )
        .is_empty());
        assert!(scan(
            "[ 2.0] kmemleak: Kernel memory leak detector initialized (mem pool available: 1)\n"
        )
        .is_empty());
    }
}
