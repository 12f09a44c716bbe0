//! Why a line of our modules was not covered: the part of `coverage` that sorts the lines no
//! PC reached, so that what is left to test is a short list.
//!
//! Three kinds, decided per line from its coverage points (every point on the line unhit):
//! - [`Gap::Assert`]: every point on the line starts a block that ends in a panic, `BUG` or
//!   `WARN` (a call to `core::panicking::*`, an `unwrap`/index failure, or `ud2`): the
//!   checks that fire only when an invariant is broken (Rust's debug assertions add one to
//!   most raw-pointer accesses, arithmetic and slice indexing). Found in the `.ko`'s
//!   disassembly, from each `__sanitizer_cov_trace_pc` call to the end of its block.
//! - [`Gap::NotTraced`]: the function runs outside any task KCOV traces (an interrupt
//!   handler, an IRQ thread, an hrtimer callback, a workqueue item, a KUnit case), known by
//!   its name.
//! - [`Gap::NotReached`]: the rest, which a test could reach (or the docs say why not).

use crate::toolchain::llvm_tool;
use crate::util;
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a line was not covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Gap {
    NotReached,
    NotTraced(&'static str),
    Assert,
}

impl Gap {
    pub fn label(self) -> &'static str {
        match self {
            Gap::NotReached => "not reached",
            Gap::NotTraced(_) => "not traced",
            Gap::Assert => "assert",
        }
    }
}

/// Function names (substrings, demangled Rust paths or C names) that run where KCOV does
/// not trace: not in the task that enabled it.
const NOT_TRACED: &[(&str, &str)] = &[
    ("hard_irq", "interrupt handler"),
    ("ThreadedHandler", "interrupt handler or IRQ thread"),
    ("irq_thread", "IRQ thread"),
    ("HrTimerCallback", "hrtimer callback (softirq)"),
    ("WorkItem", "workqueue item (kworker)"),
    ("work_loop", "workqueue item (kworker)"),
    ("kunit", "KUnit case (KUnit's kthread)"),
    ("::tests::", "KUnit case (KUnit's kthread)"),
    // Called only from `locking`'s workers and its hrtimer callback above.
    ("<locking::Experiment>::increment_", "locking's workers (kworker)"),
    ("locking::lock_counted", "locking's workers and hrtimer"),
    ("locking::this_cpu_bit", "locking's workers and hrtimer"),
    ("<locking::Tracked<", "locking's workers and hrtimer"),
];

/// Is `function` run outside the traced task, and where?
pub fn not_traced(function: &str) -> Option<&'static str> {
    NOT_TRACED
        .iter()
        .find(|(pat, _)| function.contains(pat))
        .map(|(_, why)| *why)
}

/// Does a call to `symbol` (demangled) end in a panic, `BUG` or `WARN`?
fn is_assert_call(symbol: &str) -> bool {
    let s = symbol.split(['-', '+']).next().unwrap_or(symbol);
    s.contains("panic")
        || s.ends_with("_fail")
        || s.ends_with("_failed")
        || s.starts_with("__ubsan_handle")
        || s.contains("build_error")
}

/// `(section, r_offset)` of every coverage call whose block ends in an assertion, from
/// `llvm-objdump -d -r --no-show-raw-insn -C` of a relocatable object. A block runs from
/// its `__sanitizer_cov_trace_pc` call to the next one, a `ret`, or an unconditional `jmp`;
/// conditional jumps inside it are KASAN's checks (whose report calls are not ours).
pub fn assert_points(objdump: &str, trace_pc: &str) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    let mut section = String::new();
    // The open block: its coverage call's relocation offset.
    let mut open: Option<u64> = None;
    for line in objdump.lines() {
        if let Some(rest) = line.strip_prefix("Disassembly of section ") {
            section = rest.trim_end_matches(':').to_string();
            open = None;
            continue;
        }
        let t = line.trim_start();
        // A relocation line: `0000000000000022:  R_X86_64_PLT32	symbol-0x4`.
        if let Some((off, rest)) = t.split_once(":  R_") {
            let Ok(off) = u64::from_str_radix(off, 16) else {
                continue;
            };
            let symbol = rest
                .split_once(char::is_whitespace)
                .map_or("", |(_, s)| s.trim());
            if symbol.starts_with(trace_pc) {
                open = Some(off);
            } else if let Some(o) = open {
                if is_assert_call(symbol) {
                    out.insert((section.clone(), o));
                    open = None;
                }
            }
            continue;
        }
        // An instruction: `      26:      	testq	%rbx, %rbx`.
        let Some((addr, insn)) = t.split_once(':') else {
            open = None;
            continue;
        };
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit()) {
            open = None;
            continue;
        }
        let mnemonic = insn.split_whitespace().next().unwrap_or("");
        match mnemonic {
            "ud2" => {
                if let Some(o) = open.take() {
                    out.insert((section.clone(), o));
                }
            }
            "retq" | "ret" | "jmp" | "jmpq" => open = None,
            _ => {}
        }
    }
    out
}

/// The assertion blocks of a module object.
pub fn module_asserts(ko: &Path, trace_pc: &str) -> Result<BTreeSet<(String, u64)>> {
    let text = util::output(
        Command::new(llvm_tool("llvm-objdump"))
            .args(["-d", "-r", "--no-show-raw-insn", "-C"])
            .arg(ko),
    )?;
    Ok(assert_points(&text, trace_pc))
}

/// One uncovered line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered {
    pub file: PathBuf,
    pub line: u32,
    pub function: String,
    pub gap: Gap,
}

/// Per line: the function it is in, and whether every point on it is an assertion block.
pub type LineFacts = BTreeMap<(PathBuf, u32), (String, bool)>;

/// The uncovered lines of `lines` (file -> line -> hits), with their kind.
pub fn classify(
    lines: &BTreeMap<PathBuf, BTreeMap<u32, u64>>,
    facts: &LineFacts,
) -> Vec<Uncovered> {
    let mut out = Vec::new();
    for (file, ls) in lines {
        for (&line, &n) in ls {
            if n > 0 {
                continue;
            }
            let (function, all_assert) = facts
                .get(&(file.clone(), line))
                .cloned()
                .unwrap_or_default();
            let gap = if all_assert {
                Gap::Assert
            } else if let Some(why) = not_traced(&function) {
                Gap::NotTraced(why)
            } else {
                Gap::NotReached
            };
            out.push(Uncovered {
                file: file.clone(),
                line,
                function,
                gap,
            });
        }
    }
    out
}

/// `target/coverage/uncovered.txt`: the lines by kind, the ones to act on first.
pub fn report(gaps: &[Uncovered]) -> String {
    let root = util::repo_root();
    let mut by_kind: BTreeMap<Gap, BTreeSet<(PathBuf, u32, String)>> = BTreeMap::new();
    for u in gaps {
        by_kind.entry(u.gap).or_default().insert((
            u.file.strip_prefix(&root).unwrap_or(&u.file).to_path_buf(),
            u.line,
            u.function.clone(),
        ));
    }
    let mut s = String::from(
        "# Lines of our modules that no traced PC reached, by kind (see xtask/src/coverage_gaps.rs).\n",
    );
    for (gap, lines) in &by_kind {
        let why = match gap {
            Gap::NotReached => "a test or the fuzzer could reach these".to_string(),
            Gap::NotTraced(w) => format!("runs outside the traced task: {w}"),
            Gap::Assert => "blocks that end in a panic, BUG or WARN (a broken invariant)".into(),
        };
        let _ = writeln!(s, "\n## {} ({} lines): {why}", gap.label(), lines.len());
        for (file, line, function) in lines {
            let _ = writeln!(s, "{}:{line} {function}", file.display());
        }
    }
    s
}

/// Per module: uncovered lines by kind, for the table.
pub fn counts(gaps: &[Uncovered]) -> (usize, usize, usize) {
    let n = |f: fn(&Gap) -> bool| gaps.iter().filter(|u| f(&u.gap)).count();
    (
        n(|g| *g == Gap::NotReached),
        n(|g| matches!(g, Gap::NotTraced(_))),
        n(|g| *g == Gap::Assert),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "\
Disassembly of section .text:

0000000000000000 <m::f>:
       0:      \tendbr64
       5:      \tcallq\t0xa <m::f+0xa>
\t\t0000000000000006:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
       a:      \ttestq\t%rbx, %rbx
       d:      \tje\t0x20 <m::f+0x20>
       f:      \tcallq\t0x14 <m::f+0x14>
\t\t0000000000000010:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
      14:      \tjne\t0x18 <m::f+0x18>
      16:      \tcallq\t0x1b <m::f+0x1b>
\t\t0000000000000017:  R_X86_64_PLT32\tcore::panicking::panic_nounwind_fmt-0x4
      1b:      \tretq
      20:      \tcallq\t0x25 <m::f+0x25>
\t\t0000000000000021:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
      25:      \tcallq\t0x2a <m::f+0x2a>
\t\t0000000000000026:  R_X86_64_PLT32\tkmalloc-0x4
      2a:      \tretq
      2b:      \tcallq\t0x30 <m::f+0x30>
\t\t000000000000002c:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
      30:      \tud2

Disassembly of section .init.text:

0000000000000000 <init_module>:
       0:      \tcallq\t0x5 <init_module+0x5>
\t\t0000000000000001:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
       5:      \tcallq\t0xa <init_module+0xa>
\t\t0000000000000006:  R_X86_64_PLT32\tcore::result::unwrap_failed-0x4
";

    #[test]
    fn blocks_ending_in_a_panic_bug_or_unwrap_are_asserts() {
        let a = assert_points(DUMP, "__sanitizer_cov_trace_pc");
        let want: BTreeSet<(String, u64)> = [
            (".text".to_string(), 0x10),
            (".text".to_string(), 0x2c),
            (".init.text".to_string(), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(a, want);
    }

    #[test]
    fn lines_sort_into_asserts_untraced_code_and_the_rest() {
        let f = PathBuf::from("/r/modules/m/m.rs");
        let lines: BTreeMap<PathBuf, BTreeMap<u32, u64>> = [(
            f.clone(),
            [(1, 3), (2, 0), (3, 0), (4, 0)].into_iter().collect(),
        )]
        .into_iter()
        .collect();
        let facts: LineFacts = [
            ((f.clone(), 1), ("m::read".to_string(), false)),
            ((f.clone(), 2), ("m::read".to_string(), true)),
            ((f.clone(), 3), ("<m::Dev>::hard_irq".to_string(), false)),
            ((f.clone(), 4), ("m::ioctl".to_string(), false)),
        ]
        .into_iter()
        .collect();
        let gaps = classify(&lines, &facts);
        let kinds: Vec<(u32, Gap)> = gaps.iter().map(|u| (u.line, u.gap)).collect();
        assert_eq!(
            kinds,
            [
                (2, Gap::Assert),
                (3, Gap::NotTraced("interrupt handler")),
                (4, Gap::NotReached)
            ]
        );
        assert_eq!(counts(&gaps), (1, 1, 1));
        let r = report(&gaps);
        assert!(r.contains("## not reached (1 lines)"), "{r}");
        assert!(r.contains("m.rs:4 m::ioctl"), "{r}");
    }
}
