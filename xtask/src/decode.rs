//! `decode`: kernel report stack traces to source lines, with demangled Rust names.
//!
//! A report's trace names code as `symbol+0xOFF/0xSIZE [module]` (Rust symbols v0-mangled,
//! `_RNv...`). Each such frame is turned into an address of an ELF file with DWARF and
//! handed to `llvm-symbolizer` (JSON output, inlined frames, demangled):
//! - kernel frames: the symbol's address in the build's `vmlinux` (from `llvm-nm`) + OFF;
//! - module frames: a `.ko` is relocatable (every section starts at 0, so `.text` and
//!   `.init.text` offsets collide), so it is first linked with `ld.lld` into a throwaway
//!   executable (undefined kernel symbols resolve to 0; cached under `target/decode/`) in
//!   which every section has its own address, and the symbol is looked up there.
//!
//! Return addresses (every trace entry but the faulting instruction: `RIP:`, the `WARNING:
//! ... at` line, `BUG: KASAN: ... in`) are decoded at `address - 1`, inside the call, as
//! the kernel's `scripts/decode_stacktrace.sh` does. Only the debug profile's kernel and
//! modules carry DWARF; on the default profile the names are still demangled but there are
//! no lines, and the block says so.

use crate::build::{self, Artifacts};
use crate::kernel::Kernel;
use crate::toolchain::llvm_tool;
use crate::util;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The ELF files a trace is decoded against.
#[derive(Debug, Clone)]
pub struct Symbols {
    pub vmlinux: PathBuf,
    /// Module name -> its `.ko`.
    pub modules: BTreeMap<String, PathBuf>,
    /// Where the linked copies of the modules are kept.
    pub work: PathBuf,
    /// Path prefixes shown relative (the repository, the kernel source).
    pub strip: Vec<PathBuf>,
}

impl Symbols {
    /// The kernel `k` and the modules of its build `art`.
    pub fn new(k: &Kernel, art: &Artifacts) -> Symbols {
        Symbols {
            vmlinux: k.build.join("vmlinux"),
            modules: art
                .modules
                .iter()
                .map(|ko| (build::module_name(ko), ko.clone()))
                .collect(),
            work: util::target_dir().join("decode").join(k.profile.name()),
            strip: vec![util::repo_root(), k.src.clone(), k.build.clone()],
        }
    }

    /// Does `vmlinux` carry DWARF line tables (the debug profile)?
    pub fn has_debug_info(&self) -> bool {
        has_debug_line(&self.vmlinux)
    }

    /// The module's `.ko` linked so that each section has its own address (cached by the
    /// `.ko`'s size and modification time).
    pub fn linked_module(&self, name: &str) -> Result<PathBuf> {
        let ko = self
            .modules
            .get(name)
            .with_context(|| format!("no built module {name}"))?;
        let meta = std::fs::metadata(ko).with_context(|| format!("{}", ko.display()))?;
        let stamp = format!(
            "{} {:?}",
            meta.len(),
            meta.modified().ok().map(|t| t
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos())
        );
        std::fs::create_dir_all(&self.work)?;
        let out = self.work.join(format!("{name}.linked"));
        let stamp_file = self.work.join(format!("{name}.linked.stamp"));
        if out.exists() && std::fs::read_to_string(&stamp_file).is_ok_and(|s| s == stamp) {
            return Ok(out);
        }
        let mut c = Command::new(llvm_tool("ld.lld"));
        c.arg("-o")
            .arg(&out)
            .args([
                "--unresolved-symbols=ignore-all",
                "--noinhibit-exec",
                "--no-warnings",
                "-e",
                "0",
            ])
            .arg(ko);
        let (ok, text) = util::capture(&mut c)?;
        if !ok || !out.exists() {
            bail!("linking {} for decoding failed:\n{text}", ko.display());
        }
        std::fs::write(&stamp_file, stamp)?;
        Ok(out)
    }
}

/// Does this ELF file have a `.debug_line` section?
pub fn has_debug_line(elf: &Path) -> bool {
    util::output(Command::new(llvm_tool("llvm-readelf")).arg("-SW").arg(elf))
        .is_ok_and(|s| s.contains(" .debug_line "))
}

/// A code reference in a report line: `symbol+0xOFF/0xSIZE [module]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRef {
    pub symbol: String,
    pub offset: u64,
    pub module: Option<String>,
    /// The faulting instruction itself, not a return address.
    pub exact: bool,
    /// The trace printed it with `?` (found on the stack, maybe stale).
    pub unreliable: bool,
    /// What precedes it on the report line, e.g. `RIP:` (for the decoded block).
    pub label: String,
}

/// The code reference on one report line, if any (the last `symbol+0x../0x..` token).
pub fn parse_frame(line: &str) -> Option<FrameRef> {
    let msg = crate::logscan::message(line);
    let words: Vec<&str> = msg.split_whitespace().collect();
    let (i, sym_word) = words
        .iter()
        .enumerate()
        .rev()
        .find(|(_, w)| symbol_offset(w).is_some())?;
    // `RIP: 0010:sym+...` carries the segment.
    let (symbol, offset) = symbol_offset(sym_word)?;
    let module = words
        .get(i + 1)
        .and_then(|w| w.strip_prefix('['))
        .map(|m| m.trim_end_matches([']', ')', ',']).to_string());
    let before = &words[..i];
    let exact = ["RIP:", "WARNING:", "BUG: KASAN:", "BUG: KFENCE:"]
        .iter()
        .any(|p| msg.starts_with(p));
    let unreliable = before.first() == Some(&"?");
    let label = if msg.starts_with("RIP:") {
        "RIP:".to_string()
    } else if msg.starts_with("WARNING:") {
        "WARNING:".to_string()
    } else if msg.starts_with("BUG:") {
        "BUG:".to_string()
    } else if let Some((what, _)) = msg.split_once(" at (") {
        // lockdep's `hardirqs last  enabled at (5403): [<...>] sym+0x../0x..`
        format!("{}:", what.split_whitespace().collect::<Vec<_>>().join(" "))
    } else if unreliable {
        "?".to_string()
    } else {
        String::new()
    };
    Some(FrameRef {
        symbol,
        offset,
        module,
        exact,
        unreliable,
        label,
    })
}

/// `[seg:]name+0xOFF/0xSIZE` -> (name, OFF).
fn symbol_offset(word: &str) -> Option<(String, u64)> {
    let word = word.trim_start_matches('(').trim_end_matches([')', ',']);
    let (name, rest) = word.rsplit_once('+')?;
    let (off, size) = rest.split_once('/')?;
    let off = u64::from_str_radix(off.strip_prefix("0x")?, 16).ok()?;
    u64::from_str_radix(size.strip_prefix("0x")?, 16).ok()?;
    // `0010:sym` (RIP's code segment).
    let name = match name.split_once(':') {
        Some((seg, n)) if seg.len() == 4 && seg.chars().all(|c| c.is_ascii_hexdigit()) => n,
        _ => name,
    };
    if name.is_empty() || name.contains(['[', ']', '(', ')', '<', '>']) {
        return None;
    }
    Some((name.to_string(), off))
}

/// One source location of a decoded frame (llvm-symbolizer's frame: innermost first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub function: String,
    /// Shown relative to the repository or the kernel source when under them.
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// The line where the function starts (0: unknown).
    pub start_line: u32,
}

/// A decoded trace entry.
#[derive(Debug, Clone)]
pub struct Decoded {
    pub frame: FrameRef,
    /// Innermost (inlined) first; the last is the function the symbol names. Empty when
    /// the symbol was not found.
    pub locations: Vec<Location>,
}

/// Decode every code reference of a report.
pub fn decode(report: &str, syms: &Symbols) -> Result<Vec<Decoded>> {
    let frames: Vec<FrameRef> = report.lines().filter_map(parse_frame).collect();
    // Group by object file: None = vmlinux.
    let mut by_object: BTreeMap<Option<String>, Vec<usize>> = BTreeMap::new();
    for (i, f) in frames.iter().enumerate() {
        by_object.entry(f.module.clone()).or_default().push(i);
    }
    let mut locations: Vec<Vec<Location>> = vec![Vec::new(); frames.len()];
    for (module, idx) in by_object {
        let object = match &module {
            None => syms.vmlinux.clone(),
            Some(m) if syms.modules.contains_key(m) => syms.linked_module(m)?,
            Some(_) => continue, // not one of ours: a kernel module we did not build
        };
        let addrs = symbol_addresses(&object)?;
        let mut queries: Vec<(usize, u64)> = Vec::new();
        for i in idx {
            let f = &frames[i];
            if let Some(base) = addrs.get(&f.symbol) {
                let back = u64::from(!f.exact && f.offset > 0);
                queries.push((i, base + f.offset - back));
            }
        }
        if queries.is_empty() {
            continue;
        }
        let answers = symbolize(&object, &queries.iter().map(|q| q.1).collect::<Vec<_>>())?;
        for ((i, _), locs) in queries.into_iter().zip(answers) {
            locations[i] = locs
                .into_iter()
                .map(|mut l| {
                    l.file = shorten(&l.file, &syms.strip);
                    l
                })
                .collect();
        }
    }
    Ok(frames
        .into_iter()
        .zip(locations)
        .map(|(frame, locations)| Decoded { frame, locations })
        .collect())
}

/// `name -> address` of the defined symbols of an ELF file.
fn symbol_addresses(elf: &Path) -> Result<BTreeMap<String, u64>> {
    let out = util::output(
        Command::new(llvm_tool("llvm-nm"))
            .arg("--defined-only")
            .arg(elf),
    )?;
    let mut m = BTreeMap::new();
    for l in out.lines() {
        let mut w = l.split_whitespace();
        let (Some(a), Some(t), Some(n)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        if !matches!(t, "t" | "T" | "W" | "w") {
            continue;
        }
        if let Ok(a) = u64::from_str_radix(a, 16) {
            m.entry(n.to_string()).or_insert(a);
        }
    }
    Ok(m)
}

/// `llvm-symbolizer --output-style=JSON` on `addrs` of `elf`: the inlined frames of each.
pub fn symbolize(elf: &Path, addrs: &[u64]) -> Result<Vec<Vec<Location>>> {
    let mut c = Command::new(llvm_tool("llvm-symbolizer"));
    c.arg(format!("--obj={}", elf.display())).args([
        "--output-style=JSON",
        "--inlines",
        "--demangle",
    ]);
    // Addresses on stdin: there may be many (coverage).
    let input: String = addrs.iter().map(|a| format!("0x{a:x}\n")).collect();
    let out = output_with_input(&mut c, &input)?;
    let mut result = Vec::with_capacity(addrs.len());
    for line in out.lines().filter(|l| l.starts_with('{')) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("llvm-symbolizer: {line}"))?;
        let locs = v["Symbol"]
            .as_array()
            .map(|frames| {
                frames
                    .iter()
                    .map(|s| Location {
                        function: s["FunctionName"].as_str().unwrap_or("??").to_string(),
                        file: s["FileName"].as_str().unwrap_or("").to_string(),
                        line: s["Line"].as_u64().unwrap_or(0) as u32,
                        column: s["Column"].as_u64().unwrap_or(0) as u32,
                        start_line: s["StartLine"].as_u64().unwrap_or(0) as u32,
                    })
                    .filter(|l| l.function != "??" || !l.file.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        result.push(locs);
    }
    if result.len() != addrs.len() {
        bail!(
            "llvm-symbolizer answered {} of {} addresses",
            result.len(),
            addrs.len()
        );
    }
    Ok(result)
}

/// Run a command with `input` on its stdin; its stdout.
fn output_with_input(c: &mut Command, input: &str) -> Result<String> {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", util::show(c)))?;
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_string();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    let _ = writer.join();
    if !out.status.success() {
        bail!(
            "`{}` failed with {}: {}",
            util::show(c),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A path relative to the first of `prefixes` it is under; Rust's library source as
/// `rustlib/...`.
fn shorten(file: &str, prefixes: &[PathBuf]) -> String {
    for p in prefixes {
        if let Ok(rel) = Path::new(file).strip_prefix(p) {
            return rel.display().to_string();
        }
    }
    if let Some((_, rest)) = file.split_once("/rustlib/src/rust/library/") {
        return format!("rustlib/{rest}");
    }
    file.to_string()
}

/// Demangle Rust (`_R...`) symbols with `llvm-cxxfilt`; others as they are.
pub fn demangle(names: &[String]) -> Vec<String> {
    let input: String = names.iter().map(|n| format!("{n}\n")).collect();
    match output_with_input(&mut Command::new(llvm_tool("llvm-cxxfilt")), &input) {
        Ok(out) if out.lines().count() == names.len() => out.lines().map(str::to_string).collect(),
        _ => names.to_vec(),
    }
}

/// The block shown under a raw report: every frame with its source lines.
pub fn render(decoded: &[Decoded], has_debug_info: bool) -> String {
    let names = demangle(
        &decoded
            .iter()
            .map(|d| d.frame.symbol.clone())
            .collect::<Vec<_>>(),
    );
    let mut s = String::from("decoded (source lines from vmlinux + the built .ko files):\n");
    for (d, name) in decoded.iter().zip(names) {
        let module = d
            .frame
            .module
            .as_ref()
            .map(|m| format!(" [{m}]"))
            .unwrap_or_default();
        let label = if d.frame.label.is_empty() {
            String::new()
        } else {
            format!("{} ", d.frame.label)
        };
        let with_lines: Vec<&Location> = d.locations.iter().filter(|l| l.line > 0).collect();
        if with_lines.is_empty() {
            let _ = writeln!(s, "  {label}{name}+0x{:x}{module}", d.frame.offset);
            continue;
        }
        for (j, l) in with_lines.iter().enumerate() {
            let how = if j == 0 {
                label.clone()
            } else {
                "  inlined into ".into()
            };
            let _ = writeln!(
                s,
                "  {how}{} at {}:{}:{}{module}",
                l.function, l.file, l.line, l.column
            );
        }
    }
    if !has_debug_info {
        s.push_str(
            "  (no source lines: this kernel has no debug info; the debug profile has it: \
             --profile debug)\n",
        );
    }
    s
}

/// The raw report followed by its decoded trace; the raw report alone (and why) when
/// decoding fails.
pub fn annotate(report: &str, syms: &Symbols) -> String {
    match decode(report, syms) {
        Ok(d) if d.is_empty() => report.to_string(),
        Ok(d) => format!("{report}\n{}", render(&d, syms.has_debug_info())),
        Err(e) => format!("{report}\n(decoding the trace failed: {e:#})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUST_SYM: &str = "_RNvXs2_CslhFroGApYE8_13hello_chardevNtB5_11HelloDeviceNtNtCsl7L7n58I0Vr_6kernel10miscdevice10MiscDevice9read_iter";

    #[test]
    fn frames_are_parsed_from_report_lines() {
        let rip = parse_frame(&format!(
            "[   12.5] RIP: 0010:{RUST_SYM}+0x1b/0x60 [warn_demo]"
        ))
        .unwrap();
        assert_eq!(rip.symbol, RUST_SYM);
        assert_eq!((rip.offset, rip.exact), (0x1b, true));
        assert_eq!(rip.module.as_deref(), Some("warn_demo"));
        let warn = parse_frame(&format!(
            "[   12.4] WARNING: CPU: 1 PID: 95 at warn_demo/warn_demo.rs:85 {RUST_SYM}+0x1b/0x60 [warn_demo]"
        ))
        .unwrap();
        assert!(warn.exact);
        // 7.3's layout: the file first, the module followed by a comma.
        let warn = parse_frame(&format!(
            "[ 18.4] WARNING: warn_demo/warn_demo.rs:80 at {RUST_SYM}+0xd3/0x217 [warn_demo], CPU#0: t/73"
        ))
        .unwrap();
        assert!(warn.exact);
        assert_eq!(warn.module.as_deref(), Some("warn_demo"));
        assert_eq!(warn.offset, 0xd3);
        let ret = parse_frame("[   12.6]  vfs_write+0xd4/0x420").unwrap();
        assert_eq!((ret.symbol.as_str(), ret.offset), ("vfs_write", 0xd4));
        assert!(!ret.exact && !ret.unreliable && ret.module.is_none());
        let q = parse_frame("[   12.6]  ? __warn+0x7d/0x140").unwrap();
        assert!(q.unreliable);
        let lockdep =
            parse_frame("[ 1.0]  hardirqs last  enabled at (1234): [<ffffffff81a7>] _raw_spin_unlock_irq+0x1f/0x40")
                .unwrap();
        assert_eq!(lockdep.symbol, "_raw_spin_unlock_irq");
        assert_eq!(lockdep.label, "hardirqs last enabled:");
        let build_id = parse_frame("[ 1.0]  foo+0x1/0x2 [mod 0123abcd]").unwrap();
        assert_eq!(build_id.module.as_deref(), Some("mod"));
        for no in [
            "[ 1.0] Call Trace:",
            "[ 1.0]  <TASK>",
            "[ 1.0] Code: 48 89 e5 <0f> 0b",
            "[ 1.0] RSP: 0018:ffffc900001b7d88 EFLAGS: 00010202",
            "[ 1.0] printing: a+b/c",
        ] {
            assert_eq!(parse_frame(no), None, "{no}");
        }
    }

    #[test]
    fn paths_are_shown_relative() {
        let p = [PathBuf::from("/work/main"), PathBuf::from("/k/src")];
        assert_eq!(shorten("/work/main/modules/a/a.rs", &p), "modules/a/a.rs");
        assert_eq!(shorten("/k/src/fs/read_write.c", &p), "fs/read_write.c");
        assert_eq!(
            shorten("/usr/lib/rustlib/src/rust/library/core/src/ptr/mod.rs", &p),
            "rustlib/core/src/ptr/mod.rs"
        );
    }

    #[test]
    fn render_shows_inlined_frames_and_says_when_there_are_no_lines() {
        let frame = parse_frame(&format!("RIP: 0010:{RUST_SYM}+0x1b/0x60 [warn_demo]")).unwrap();
        let d = Decoded {
            frame: frame.clone(),
            locations: vec![
                Location {
                    function: "inner".into(),
                    file: "modules/warn_demo/warn_demo.rs".into(),
                    line: 85,
                    column: 9,
                    start_line: 70,
                },
                Location {
                    function: "outer".into(),
                    file: "rust/kernel/miscdevice.rs".into(),
                    line: 300,
                    column: 24,
                    start_line: 290,
                },
            ],
        };
        let s = render(&[d], true);
        assert!(
            s.contains("RIP: inner at modules/warn_demo/warn_demo.rs:85:9 [warn_demo]"),
            "{s}"
        );
        assert!(s.contains("inlined into outer at rust/kernel/miscdevice.rs:300:24"));
        let s = render(
            &[Decoded {
                frame,
                locations: vec![],
            }],
            false,
        );
        // Demangled even without lines (llvm-cxxfilt is part of the setup's LLVM).
        assert!(
            s.contains("<hello_chardev::HelloDevice as kernel::miscdevice::MiscDevice>::read_iter+0x1b [warn_demo]"),
            "{s}"
        );
        assert!(s.contains("no debug info"));
    }
}
