//! `expected`: kernel reports that a test provokes on purpose, and nothing else.
//!
//! Every report in the kernel log fails a run (`kernel::log_has_no_reports`), with one
//! exception made for the test that proves reports are decoded to Rust source lines
//! (`guest/tests/warn_demo.rs`). It writes [`EXPECT_BEGIN`]` KIND MODULE` to the kernel log,
//! provokes the report, and writes [`EXPECT_END`]` MODULE`. A report is excused only when all
//! of these hold:
//! - it starts between a begin marker and its matching end marker (an unclosed window
//!   excuses nothing);
//! - its kind is the window's KIND (`WARNING`: a KASAN report or an Oops there still fails);
//! - it names MODULE (`[MODULE]` on a trace line, or `MODULE/` in its file name);
//! - it is the first such report in the window (a second one fails).
//!
//! Each window becomes a verdict of its own, `kernel::provoked_report_decoded::MODULE`: it
//! fails when the window has no such report, and passes only when the report's faulting
//! instruction decodes (`decode`) to a line of `modules/MODULE/*.rs` -- the same
//! `file:line` the report itself names when it names one (a WARN's bug table entry). On a
//! kernel without debug info (default profile) the decoding cannot be checked: skipped.

use crate::decode::{self, Symbols};
use crate::logscan::{self, Report};
use crate::protocol::{EXPECT_BEGIN, EXPECT_END};
use crate::verdict::{Status, TestResult};

/// A window of the log in which a test announced a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub kind: String,
    pub module: String,
    /// Line indexes of the markers.
    pub begin: usize,
    pub end: Option<usize>,
}

/// The reports of a log, sorted into the excused ones and the rest.
#[derive(Debug, Default)]
pub struct Split {
    /// Each window with the report it excuses (if the test provoked one).
    pub provoked: Vec<(Window, Option<Report>)>,
    /// Every other report: these fail the run.
    pub unexpected: Vec<Report>,
}

/// The expect windows of a log, in order.
pub fn windows(log: &str) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for (i, line) in log.lines().enumerate() {
        let msg = logscan::message(line);
        if let Some(rest) = msg.strip_prefix(EXPECT_BEGIN) {
            let mut w = rest.split_whitespace();
            if let (Some(kind), Some(module)) = (w.next(), w.next()) {
                out.push(Window {
                    kind: kind.to_string(),
                    module: module.to_string(),
                    begin: i,
                    end: None,
                });
            }
        } else if let Some(rest) = msg.strip_prefix(EXPECT_END) {
            let module = rest.trim();
            if let Some(w) = out
                .iter_mut()
                .rev()
                .find(|w| w.module == module && w.end.is_none())
            {
                w.end = Some(i);
            }
        }
    }
    out
}

/// Sort `reports` (from `logscan::scan(log)`) by the windows of `log`.
pub fn split(log: &str, reports: Vec<Report>) -> Split {
    let lines: Vec<&str> = log.lines().collect();
    let mut split = Split {
        provoked: windows(log).into_iter().map(|w| (w, None)).collect(),
        unexpected: Vec::new(),
    };
    let mut cursor = 0usize;
    for r in reports {
        // Where the report starts: its first line, searching on from the last report.
        let first = r.text.lines().next().unwrap_or("");
        let at = (cursor..lines.len()).find(|&i| lines[i] == first);
        if let Some(at) = at {
            cursor = at;
        }
        let slot = at.and_then(|at| {
            split.provoked.iter_mut().find(|(w, taken)| {
                taken.is_none()
                    && w.end.is_some_and(|end| w.begin < at && at < end)
                    && r.kind == w.kind
                    && names_module(&r.text, &w.module)
            })
        });
        match slot {
            Some((_, taken)) => *taken = Some(r),
            None => split.unexpected.push(r),
        }
    }
    split
}

fn names_module(text: &str, module: &str) -> bool {
    text.contains(&format!("[{module}]"))
        || text.contains(&format!("[{module} "))
        || text.contains(&format!(" {module}/"))
}

/// `file:line` that a report's first line names itself (a WARN's bug table entry: 7.3 prints
/// `WARNING: FILE:LINE at SYMBOL+...`, older kernels `WARNING: CPU: 0 PID: 1 at FILE:LINE`).
fn named_location(report: &str) -> Option<(String, u32)> {
    let first = logscan::message(report.lines().next()?);
    first.split_whitespace().find_map(|word| {
        let (file, line) = word.trim_end_matches(',').rsplit_once(':')?;
        let source = [".rs", ".c", ".h"].iter().any(|e| file.ends_with(e));
        source.then_some((file.to_string(), line.parse().ok()?))
    })
}

/// The verdict for one window (see the module's doc).
pub fn verdict(window: &Window, report: Option<&Report>, syms: &Symbols) -> TestResult {
    let name = format!("kernel::provoked_report_decoded::{}", window.module);
    let fail = |detail: String| TestResult {
        name: name.clone(),
        status: Status::Fail,
        detail,
    };
    let Some(report) = report else {
        return fail(format!(
            "the test announced a {} from {} but the kernel log has none between its markers{}",
            window.kind,
            window.module,
            if window.end.is_none() {
                " (and no end marker)"
            } else {
                ""
            }
        ));
    };
    let annotated = decode::annotate(&report.text, syms);
    if !syms.has_debug_info() {
        return TestResult {
            name,
            status: Status::Skip,
            detail: format!("no debug info in this kernel (default profile)\n{annotated}"),
        };
    }
    let decoded = match decode::decode(&report.text, syms) {
        Ok(d) => d,
        Err(e) => return fail(format!("{e:#}\n{annotated}")),
    };
    let dir = format!("modules/{}/", window.module);
    let exact = decoded
        .iter()
        .find(|d| d.frame.exact && d.frame.module.as_deref() == Some(window.module.as_str()));
    let Some(exact) = exact else {
        return fail(format!(
            "no faulting-instruction frame in {} in the report\n{annotated}",
            window.module
        ));
    };
    let Some(loc) = exact
        .locations
        .iter()
        .find(|l| l.file.starts_with(&dir) && l.file.ends_with(".rs") && l.line > 0)
    else {
        return fail(format!(
            "the faulting instruction does not decode to a line of {dir}*.rs\n{annotated}"
        ));
    };
    if let Some((file, line)) = named_location(&report.text) {
        if !(loc.file.ends_with(&file) && loc.line == line) {
            return fail(format!(
                "the report says {file}:{line}, the decoded trace {}:{}\n{annotated}",
                loc.file, loc.line
            ));
        }
    }
    eprintln!(
        "test: the {} that {} provoked on purpose decodes to {}:{} ({}); its trace:\n{}",
        window.kind,
        window.module,
        loc.file,
        loc.line,
        loc.function,
        decode::render(&decoded, true).trim_end()
    );
    TestResult {
        name,
        status: Status::Pass,
        detail: annotated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WARN: &str =
        "[ 5.0] WARNING: warn_demo/warn_demo.rs:85 at f+0x1/0x2 [warn_demo], CPU#0: t/73\n\
                        [ 5.1] Call Trace:\n\
                        [ 5.2]  vfs_write+0xd4/0x420\n\
                        [ 5.3] ---[ end trace 0000000000000000 ]---\n";

    fn log(body: &str) -> String {
        format!("[ 0.0] Linux version 7.3.4\n{body}[ 9.0] done\n")
    }

    fn begin() -> String {
        format!("[ 4.0] {EXPECT_BEGIN} WARNING warn_demo\n")
    }

    fn end() -> String {
        format!("[ 6.0] {EXPECT_END} warn_demo\n")
    }

    #[test]
    fn the_announced_report_is_excused_once() {
        let l = log(&format!("{}{WARN}{}", begin(), end()));
        let s = split(&l, logscan::scan(&l));
        assert!(s.unexpected.is_empty(), "{:#?}", s.unexpected);
        assert_eq!(s.provoked.len(), 1);
        assert!(s.provoked[0].1.is_some());
        assert_eq!(
            named_location(&s.provoked[0].1.as_ref().unwrap().text),
            Some(("warn_demo/warn_demo.rs".into(), 85))
        );
        // The older layout.
        assert_eq!(
            named_location("[ 1.0] WARNING: CPU: 0 PID: 1 at fs/x.c:12 f+0x1/0x2"),
            Some(("fs/x.c".into(), 12))
        );
    }

    #[test]
    fn reports_outside_or_unannounced_still_fail() {
        // Outside any window.
        let l = log(WARN);
        let s = split(&l, logscan::scan(&l));
        assert_eq!(s.unexpected.len(), 1);
        // A window without its end marker excuses nothing.
        let l = log(&format!("{}{WARN}", begin()));
        let s = split(&l, logscan::scan(&l));
        assert_eq!(s.unexpected.len(), 1);
        assert!(s.provoked[0].1.is_none());
        // Another kind in the window.
        let kasan = "[ 5.5] BUG: KASAN: slab-out-of-bounds in f+0x1/0x2 [warn_demo]\n";
        let l = log(&format!("{}{kasan}{}", begin(), end()));
        let s = split(&l, logscan::scan(&l));
        assert_eq!(s.unexpected.len(), 1);
        // Another module's WARNING in the window.
        let other = WARN.replace("warn_demo", "rfifo");
        let l = log(&format!("{}{other}{}", begin(), end()));
        let s = split(&l, logscan::scan(&l));
        assert_eq!(s.unexpected.len(), 1);
        // A second WARNING in the same window.
        let second = WARN.replace("[ 5.", "[ 5.7");
        let l = log(&format!("{}{WARN}{second}{}", begin(), end()));
        let s = split(&l, logscan::scan(&l));
        assert_eq!(s.unexpected.len(), 1, "{:#?}", s.unexpected);
        assert!(s.provoked[0].1.is_some());
    }

    #[test]
    fn a_window_without_its_report_fails() {
        let l = log(&format!("{}{}", begin(), end()));
        let s = split(&l, logscan::scan(&l));
        let syms = Symbols {
            vmlinux: "/nonexistent".into(),
            modules: Default::default(),
            work: std::env::temp_dir(),
            strip: vec![],
        };
        let v = verdict(&s.provoked[0].0, None, &syms);
        assert_eq!(v.status, Status::Fail);
        assert_eq!(v.name, "kernel::provoked_report_decoded::warn_demo");
    }
}
