//! Why a line of our modules was not covered: the part of `coverage` that sorts the lines no
//! PC reached, so that what is left to test is a short list.
//!
//! Four kinds, decided per line from its coverage points (every point on the line unhit):
//! - [`Gap::Assert`]: every point on the line starts a block that ends in a panic, `BUG` or
//!   `WARN` (a call to `core::panicking::*`, an `unwrap`/index failure, or `ud2`): the
//!   checks that fire only when an invariant is broken (Rust's debug assertions add one to
//!   most raw-pointer accesses, arithmetic and slice indexing). Found in the `.ko`'s
//!   disassembly, from each `__sanitizer_cov_trace_pc` call to the end of its block.
//! - [`Gap::Dead`]: every point on the line is in an out-of-line copy of a function that
//!   nothing calls or points to (no call, jump or relocation names it: every caller inlined
//!   it, so the inlined copy is what runs and is counted on the caller's points; e.g.
//!   `Module::init` inlined into `init_module`).
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
    Dead,
}

impl Gap {
    pub fn label(self) -> &'static str {
        match self {
            Gap::NotReached => "not reached",
            Gap::NotTraced(_) => "not traced",
            Gap::Assert => "assert",
            Gap::Dead => "dead copy",
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
    (
        "<locking::Experiment>::increment_",
        "locking's workers (kworker)",
    ),
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

/// One instruction of the disassembly, as far as blocks are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Insn {
    /// A call to this symbol (from its relocation).
    Call(String),
    /// An unconditional jump within the section.
    Jmp(u64),
    /// A jump to this symbol (from its relocation): the block ends there.
    TailCall(String),
    /// `ret`: the block ends without an assertion.
    Ret,
    /// `ud2`: `BUG`/`WARN`.
    Ud2,
    Other,
}

/// The disassembly of a relocatable object (`llvm-objdump -d -r --no-show-raw-insn -C`),
/// parsed once for [`assert_points`] and [`dead_points`].
#[derive(Debug, Default)]
pub struct Disasm {
    /// Per section: the instructions by address (a call's symbol from the relocation after
    /// it).
    insns: BTreeMap<String, BTreeMap<u64, Insn>>,
    /// `(section, start)` -> function name.
    functions: BTreeMap<(String, u64), String>,
    /// The functions a call or jump shows as its target (`callq 0x30 <name>`, no `+0x..`,
    /// no relocation after it: with one, the shown target is only the placeholder's, the
    /// next instruction's address).
    targets: BTreeSet<String>,
}

/// Parse `llvm-objdump -d -r --no-show-raw-insn -C` output.
pub fn disassemble(objdump: &str) -> Disasm {
    let mut d = Disasm::default();
    let mut section = String::new();
    let mut last: Option<u64> = None;
    let mut pending: Option<String> = None;
    for line in objdump.lines() {
        let t = line.trim_start();
        // A relocation line: `0000000000000022:  R_X86_64_PLT32	symbol-0x4`.
        let Some((_, rest)) = t.split_once(":  R_") else {
            d.targets.extend(pending.take());
            if let Some(rest) = line.strip_prefix("Disassembly of section ") {
                section = rest.trim_end_matches(':').to_string();
                last = None;
                continue;
            }
            // `0000000000000030 <name>:`
            if let Some((addr, rest)) = line.split_once(" <") {
                if let (Ok(a), Some(name)) =
                    (u64::from_str_radix(addr, 16), rest.strip_suffix(">:"))
                {
                    d.functions.insert((section.clone(), a), name.to_string());
                    last = None;
                    continue;
                }
            }
            // An instruction: `      26:      	testq	%rbx, %rbx`.
            let Some((addr, insn)) = t.split_once(':') else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            let mut w = insn.split_whitespace();
            let kind = match w.next().unwrap_or("") {
                "ud2" => Insn::Ud2,
                "retq" | "ret" => Insn::Ret,
                "callq" | "call" => Insn::Call(String::new()),
                "jmp" | "jmpq" => w
                    .next()
                    .and_then(|t| u64::from_str_radix(t.trim_start_matches("0x"), 16).ok())
                    .map_or(Insn::Ret, Insn::Jmp),
                _ => Insn::Other,
            };
            if let (Some(i), true) = (t.find(" <"), t.ends_with('>')) {
                let target = &t[i + 2..t.len() - 1];
                if !target.contains("+0x") {
                    pending = Some(target.to_string());
                }
            }
            d.insns
                .entry(section.clone())
                .or_default()
                .insert(addr, kind);
            last = Some(addr);
            continue;
        };
        pending = None;
        let symbol = rest
            .split_once(char::is_whitespace)
            .map_or("", |(_, s)| s.trim());
        if let Some(insn) = last.and_then(|a| d.insns.get_mut(&section)?.get_mut(&a)) {
            // A call's target, or a jump's: a tail call (its shown target is a placeholder).
            let target = split_addend(symbol).0.to_string();
            if matches!(insn, Insn::Jmp(_)) {
                *insn = Insn::TailCall(target);
            } else if *insn == Insn::Call(String::new()) {
                *insn = Insn::Call(target);
            }
        }
    }
    d.targets.extend(pending);
    d
}

impl Disasm {
    /// `(section, r_offset)` of every coverage call (the relocation sits one byte after the
    /// call's opcode).
    fn coverage_calls<'a>(&'a self, trace_pc: &'a str) -> impl Iterator<Item = (&'a str, u64)> {
        self.insns.iter().flat_map(move |(section, insns)| {
            insns
                .iter()
                .filter(move |(_, i)| matches!(i, Insn::Call(s) if s == trace_pc))
                .map(move |(&a, _)| (section.as_str(), a + 1))
        })
    }
}

/// `(section, r_offset)` of every coverage call whose block ends in an assertion. A block
/// runs from its `__sanitizer_cov_trace_pc` call to the next one or a `ret`, following
/// unconditional jumps (blocks share their panic tail); its conditional jumps are KASAN's
/// checks, whose report calls are not ours. A tail call (a jump with a relocation) ends it.
pub fn assert_points(d: &Disasm, trace_pc: &str) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    for (section, r_offset) in d.coverage_calls(trace_pc) {
        let insns = &d.insns[section];
        let start = r_offset - 1;
        let mut at = start;
        let mut first = true;
        for _ in 0..256 {
            let Some((&a, insn)) = insns.range(at..).next() else {
                break;
            };
            let assert = match insn {
                Insn::Call(s) if s == trace_pc && !first => break,
                Insn::Call(s) => is_assert_call(s),
                Insn::TailCall(s) if is_assert_call(s) => true,
                Insn::TailCall(_) => break,
                Insn::Ud2 => true,
                Insn::Ret => break,
                Insn::Jmp(t) if *t > a => {
                    at = *t;
                    first = false;
                    continue;
                }
                // A jump back (a loop) or to itself: no assertion in this block.
                Insn::Jmp(_) => break,
                Insn::Other => false,
            };
            if assert {
                out.insert((section.to_string(), r_offset));
                break;
            }
            first = false;
            at = a + 1;
        }
    }
    out
}

/// Sections whose relocations name code without calling it (debug info, unwind tables,
/// the lists of instrumentation and patch sites).
const NOT_CALLERS: &[&str] = &[
    ".debug",
    ".orc",
    ".ibt",
    "__bug_table",
    "__jump_table",
    ".altinstr",
    ".return_sites",
    ".call_sites",
    ".retpoline_sites",
    "__patchable",
    "__mcount_loc",
    ".static_call",
    "__ex_table",
    ".rela",
];

/// `(section, r_offset)` of the coverage calls inside functions that nothing references:
/// no call or jump in the disassembly targets the function's start, and no relocation of a
/// code or data section (`relocs`: `llvm-objdump -r -C`) names it or points into its first
/// bytes.
pub fn dead_points(d: &Disasm, relocs: &str, trace_pc: &str) -> BTreeSet<(String, u64)> {
    let mut named = d.targets.clone();
    // Relocations: a symbol by name, or `section+0xN` (an address inside that section).
    let mut addressed: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut callers = false;
    for line in relocs.lines() {
        if let Some(rest) = line.strip_prefix("RELOCATION RECORDS FOR [") {
            let sec = rest.trim_end_matches("]:");
            callers = !NOT_CALLERS.iter().any(|n| sec.starts_with(n));
            continue;
        }
        if !callers {
            continue;
        }
        let mut w = line
            .splitn(3, char::is_whitespace)
            .filter(|x| !x.is_empty());
        let (Some(off), Some(_ty)) = (w.next(), w.next()) else {
            continue;
        };
        if u64::from_str_radix(off, 16).is_err() {
            continue;
        }
        let value = line
            .split_whitespace()
            .skip(2)
            .collect::<Vec<_>>()
            .join(" ");
        let (base, addend) = split_addend(&value);
        if base.starts_with('.') {
            // PC-relative ones carry -4: the target is a few bytes after the addend.
            addressed.insert((base.to_string(), addend.max(0) as u64));
        } else {
            named.insert(base.to_string());
        }
    }
    let mut dead_fns: Vec<(String, u64, u64)> = Vec::new();
    let starts: Vec<(&(String, u64), &String)> = d.functions.iter().collect();
    for (i, ((sec, start), name)) in starts.iter().enumerate() {
        let end = match starts.get(i + 1) {
            Some(((s2, e), _)) if s2 == sec => *e,
            _ => u64::MAX,
        };
        let pointed = addressed
            .range((sec.clone(), start.saturating_sub(8))..=(sec.clone(), start + 8))
            .next()
            .is_some();
        if !named.contains(*name) && !pointed {
            dead_fns.push((sec.clone(), *start, end));
        }
    }
    d.coverage_calls(trace_pc)
        .filter(|(sec, off)| {
            dead_fns
                .iter()
                .any(|(s, a, e)| s == sec && (*a..*e).contains(off))
        })
        .map(|(sec, off)| (sec.to_string(), off))
        .collect()
}

/// `name+0x10` -> (`name`, 16); `name-0x4` -> (`name`, -4); `name` -> (`name`, 0).
fn split_addend(v: &str) -> (&str, i64) {
    if let Some(i) = v.rfind(['+', '-']) {
        let (base, num) = v.split_at(i);
        if let Some(hex) = num[1..].strip_prefix("0x") {
            if let Ok(n) = i64::from_str_radix(hex, 16) {
                return (base, if num.starts_with('-') { -n } else { n });
            }
        }
    }
    (v, 0)
}

/// What the object's code says about its coverage points, by `(section, r_offset)`.
#[derive(Debug, Default)]
pub struct ObjectFacts {
    pub asserts: BTreeSet<(String, u64)>,
    pub dead: BTreeSet<(String, u64)>,
}

/// [`assert_points`] and [`dead_points`] of a module object.
pub fn module_facts(ko: &Path, trace_pc: &str) -> Result<ObjectFacts> {
    let objdump = llvm_tool("llvm-objdump");
    let text = util::output(
        Command::new(&objdump)
            .args(["-d", "-r", "--no-show-raw-insn", "-C"])
            .arg(ko),
    )?;
    let relocs = util::output(Command::new(&objdump).args(["-r", "-C"]).arg(ko))?;
    let d = disassemble(&text);
    Ok(ObjectFacts {
        asserts: assert_points(&d, trace_pc),
        dead: dead_points(&d, &relocs, trace_pc),
    })
}

/// One uncovered line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uncovered {
    pub file: PathBuf,
    pub line: u32,
    pub function: String,
    pub gap: Gap,
}

/// [`LineFact`] of each `(file, line)`.
pub type LineFacts = BTreeMap<(PathBuf, u32), LineFact>;

/// One source line: the function it is in, and what its coverage points are (every one an
/// assertion block or dead, every one dead, every one excused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFact {
    pub function: String,
    pub all_assert_or_dead: bool,
    pub all_dead: bool,
    /// Every point is an assertion, dead, or inside a function that is not traced (its
    /// outermost frame: code inlined into a KUnit case runs there); the first such reason.
    pub all_excused: bool,
    pub untraced: Option<&'static str>,
}

impl LineFact {
    pub fn new(function: &str) -> LineFact {
        LineFact {
            function: function.to_string(),
            all_assert_or_dead: true,
            all_dead: true,
            all_excused: true,
            untraced: None,
        }
    }

    /// Add a point on this line; `outer`: the function the point's code is in.
    pub fn add(&mut self, assert: bool, dead: bool, outer: &str) {
        self.all_assert_or_dead &= assert || dead;
        self.all_dead &= dead;
        let untraced = not_traced(outer);
        self.all_excused &= assert || dead || untraced.is_some();
        self.untraced = self.untraced.or(untraced);
    }

    /// Add another module's copy of the line.
    pub fn merge(&mut self, o: &LineFact) {
        self.all_assert_or_dead &= o.all_assert_or_dead;
        self.all_dead &= o.all_dead;
        self.all_excused &= o.all_excused;
        self.untraced = self.untraced.or(o.untraced);
    }
}

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
            let fact = facts
                .get(&(file.clone(), line))
                .cloned()
                .unwrap_or_else(|| LineFact {
                    all_assert_or_dead: false,
                    all_dead: false,
                    all_excused: false,
                    ..LineFact::new("")
                });
            let function = fact.function.clone();
            let gap = if fact.all_dead {
                Gap::Dead
            } else if fact.all_assert_or_dead {
                Gap::Assert
            } else if let (true, Some(why)) = (fact.all_excused, fact.untraced) {
                Gap::NotTraced(why)
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
            Gap::Dead => "out-of-line copies nothing calls (inlined into every caller)".into(),
        };
        let _ = writeln!(s, "\n## {} ({} lines): {why}", gap.label(), lines.len());
        for (file, line, function) in lines {
            let _ = writeln!(s, "{}:{line} {function}", file.display());
        }
    }
    s
}

/// Per module: uncovered lines by kind (not reached, not traced, assert, dead), for the
/// table.
pub fn counts(gaps: &[Uncovered]) -> [usize; 4] {
    let n = |f: fn(&Gap) -> bool| gaps.iter().filter(|u| f(&u.gap)).count();
    [
        n(|g| *g == Gap::NotReached),
        n(|g| matches!(g, Gap::NotTraced(_))),
        n(|g| *g == Gap::Assert),
        n(|g| *g == Gap::Dead),
    ]
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
      32:      \tcallq\t0x37 <m::f+0x37>
\t\t0000000000000033:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
      37:      \tjmp\t0x46 <m::f+0x46>
      3c:      \tcallq\t0x41 <m::f+0x41>
\t\t000000000000003d:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
      41:      \tjmp\t0x50 <m::g>
\t\t0000000000000042:  R_X86_64_PLT32\tkernel::print::call_printk-0x4
      46:      \tcallq\t0x4b <m::f+0x4b>
\t\t0000000000000047:  R_X86_64_PLT32\t__asan_handle_no_return-0x4
      4b:      \tcallq\t0x50 <m::g>
\t\t000000000000004c:  R_X86_64_PLT32\tcore::slice::index::slice_index_fail-0x4
      50:      \tcallq\t0x55 <m::g+0x5>
\t\t0000000000000051:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
      55:      \tretq

Disassembly of section .init.text:

0000000000000000 <init_module>:
       0:      \tcallq\t0x5 <init_module+0x5>
\t\t0000000000000001:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
       5:      \tcallq\t0xa <init_module+0xa>
\t\t0000000000000006:  R_X86_64_PLT32\tcore::result::unwrap_failed-0x4
";

    #[test]
    fn blocks_ending_in_a_panic_bug_or_unwrap_are_asserts() {
        let a = assert_points(&disassemble(DUMP), "__sanitizer_cov_trace_pc");
        let want: BTreeSet<(String, u64)> = [
            (".text".to_string(), 0x10),
            (".text".to_string(), 0x2c),
            (".text".to_string(), 0x33),
            (".init.text".to_string(), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(a, want);
    }

    #[test]
    fn functions_nothing_calls_or_points_to_are_dead() {
        let dump = "\
Disassembly of section .text:

0000000000000000 <m::called>:
       0:      \tcallq\t0x5 <m::called+0x5>
\t\t0000000000000001:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
       5:      \tretq

0000000000000010 <m::inlined_everywhere>:
      10:      \tcallq\t0x15 <m::inlined_everywhere+0x5>
\t\t0000000000000011:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
      15:      \tretq

0000000000000020 <m::in_a_table>:
      20:      \tcallq\t0x25 <m::in_a_table+0x5>
\t\t0000000000000021:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
      25:      \tcallq\t0x0 <m::called>
      2a:      \tjmp\t0x30 <m::only_a_placeholder_names_me>
\t\t000000000000002b:  R_X86_64_PLT32\tkernel::print::call_printk-0x4

0000000000000030 <m::only_a_placeholder_names_me>:
      30:      \tcallq\t0x35 <m::only_a_placeholder_names_me+0x5>
\t\t0000000000000031:  R_X86_64_PLT32\t__sanitizer_cov_trace_pc-0x4
      35:      \tretq
";
        let relocs = "\
RELOCATION RECORDS FOR [.text]:
OFFSET           TYPE                     VALUE
0000000000000001 R_X86_64_PLT32           __sanitizer_cov_trace_pc-0x4
RELOCATION RECORDS FOR [.rodata]:
OFFSET           TYPE                     VALUE
0000000000000008 R_X86_64_64              .text+0x20
RELOCATION RECORDS FOR [.orc_unwind_ip]:
OFFSET           TYPE                     VALUE
0000000000000000 R_X86_64_PC32            .text+0x10
";
        let d = dead_points(&disassemble(dump), relocs, "__sanitizer_cov_trace_pc");
        assert_eq!(
            d.into_iter().collect::<Vec<_>>(),
            [(".text".to_string(), 0x11), (".text".to_string(), 0x31)]
        );
        assert_eq!(split_addend("a::b<T>-0x4"), ("a::b<T>", -4));
        assert_eq!(split_addend(".text+0x2d7"), (".text", 0x2d7));
    }

    #[test]
    fn lines_sort_into_asserts_untraced_code_and_the_rest() {
        let f = PathBuf::from("/r/modules/m/m.rs");
        let lines: BTreeMap<PathBuf, BTreeMap<u32, u64>> = [(
            f.clone(),
            [(1, 3), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0)]
                .into_iter()
                .collect(),
        )]
        .into_iter()
        .collect();
        let fact = |function: &str, assert: bool, dead: bool| {
            let mut f = LineFact::new(function);
            f.add(assert, dead, function);
            f
        };
        let facts: LineFacts = [
            ((f.clone(), 1), fact("m::read", false, false)),
            ((f.clone(), 2), fact("m::read", true, false)),
            ((f.clone(), 3), fact("<m::Dev>::hard_irq", false, false)),
            ((f.clone(), 4), fact("m::ioctl", false, false)),
            ((f.clone(), 5), fact("<m::M as Module>::init", false, true)),
            ((f.clone(), 6), {
                // `copy_in` inlined into a KUnit case: runs in KUnit's kthread there.
                let mut f = LineFact::new("m::Ring::copy_in");
                f.add(false, false, "m::tests::kunit_rust_wrapper_ring");
                f
            }),
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
                (4, Gap::NotReached),
                (5, Gap::Dead),
                (6, Gap::NotTraced("KUnit case (KUnit's kthread)"))
            ]
        );
        assert_eq!(counts(&gaps), [1, 2, 1, 1]);
        let r = report(&gaps);
        assert!(r.contains("## not reached (1 lines)"), "{r}");
        assert!(r.contains("m.rs:4 m::ioctl"), "{r}");
    }
}
