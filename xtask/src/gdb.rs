//! `gdb`: debug the modules with gdb on the debug-profile kernel.
//!
//! QEMU boots the debug kernel (`--profile debug`: DWARF 5, `CONFIG_GDB_SCRIPTS`; the default
//! profile has no debug info) stopped at the reset vector (`-S`), with its gdb stub on a TCP
//! port of 127.0.0.1 and `nokaslr` on the kernel command line. Debian's gdb loads `vmlinux`
//! from the kernel build, which auto-loads the kernel's own `vmlinux-gdb.py` (made here with
//! `make scripts_gdb` the first time; the build dir is added to gdb's auto-load safe path).
//! A driver script ([`driver`]) connects, runs to `start_kernel` (a hardware breakpoint:
//! paging is not on yet at the reset vector), and runs `lx-symbols` on the directories of the
//! built `.ko` files: from then on each module's symbols are added the moment the kernel
//! inserts it (a breakpoint on `do_init_module`), so pending breakpoints on module code
//! resolve before the module runs.
//!
//! Two ways to use it:
//! - interactive (no `--batch`): the gdb prompt in this terminal with the kernel stopped in
//!   `start_kernel`; the guest's console is a Unix socket that `cargo xtask gdb --console`
//!   attaches to from a second terminal (inside tmux a pane is split off for it). The guest
//!   runs the `run` demo (load every module, then a shell) or `-- CMD` with the modules loaded.
//! - `--batch FILE`: the driver sources FILE, then deletes the breakpoints and lets the guest
//!   run to its end; gdb's exit status is 0 when every command of FILE succeeded. CMD's output
//!   is shown after gdb's.

use crate::build::{self, Artifacts};
use crate::kernel::{self, Kernel, Profile};
use crate::protocol::{Job, ProgramOutput};
use crate::toolchain::Toolchain;
use crate::vm::{self, Booted, Console, Extra, JobBoot, Machine};
use crate::{flags, initramfs, logscan, setup, util};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Debian's gdb (13 on bookworm), with Python.
pub const GDB: &str = "/usr/bin/gdb";
/// The boot's directory is `target/vm/debug-gdb`.
const BOOT_NAME: &str = "gdb";
/// The name of the guest command's output on the results channel.
const CMD_NAME: &str = "gdb-cmd";
/// The byte that detaches `--console` (Ctrl-]), as in telnet.
const DETACH: u8 = 0x1d;

impl flags::Gdb {
    /// Returns gdb's exit status.
    pub fn run(self) -> Result<ExitCode> {
        if self.console {
            attach_console(&console_socket())?;
            return Ok(ExitCode::SUCCESS);
        }
        setup::ensure_ready()?;
        let s = Session {
            batch: self.batch.as_deref(),
            cmd: &self.cmd,
            port: self.port,
            timeout: Duration::from_secs(self.timeout),
            machine: self.vcpus.machine(),
        };
        let o = s.run()?;
        if let Some(c) = &o.cmd {
            eprintln!("gdb: the guest command exited {}; its output:", c.status);
            print!("{}", c.output);
        }
        if o.booted.is_none() {
            eprintln!("gdb: the guest did not end normally");
        }
        eprintln!("gdb: exit status {}", o.status);
        Ok(ExitCode::from(u8::try_from(o.status).unwrap_or(1)))
    }
}

/// One gdb session on a fresh boot of the debug kernel.
pub struct Session<'a> {
    /// `None`: interactive.
    pub batch: Option<&'a Path>,
    /// Run in the guest with the modules loaded; empty: the demo and a shell (interactive) or
    /// nothing but loading the modules (batch).
    pub cmd: &'a [String],
    pub port: Option<u16>,
    /// For a batch session: how long the guest may take.
    pub timeout: Duration,
    pub machine: Machine,
}

/// What a session left behind.
pub struct Outcome {
    /// gdb's exit status (-1: killed).
    pub status: i32,
    /// gdb's output (stdout and stderr) in a batch session; empty when interactive. (For
    /// callers that check it: the tests.)
    #[cfg_attr(not(test), allow(dead_code))]
    pub gdb_output: String,
    /// The guest command's output and status, when there was one and the guest got to it.
    pub cmd: Option<ProgramOutput>,
    /// The boot, when QEMU ended normally.
    pub booted: Option<Booted>,
}

impl Session<'_> {
    pub fn run(&self) -> Result<Outcome> {
        let k = kernel::ensure(Profile::Debug, false)?;
        let art = build::build_all(&k)?;
        ensure_gdb_scripts(&k)?;
        let module_dirs = vec![module_copies(&k, &art)?];
        let out_dir = util::target_dir()
            .join("vm")
            .join(format!("{}-{BOOT_NAME}", k.profile.name()));
        std::fs::create_dir_all(&out_dir)?;
        let port = match self.port {
            Some(p) => p,
            None => free_port()?,
        };
        let driver_path = out_dir.join("driver.py");
        let functions = module_functions(&art)?;
        std::fs::write(
            &driver_path,
            driver(port, &module_dirs, &functions, self.batch, self.timeout)?,
        )?;
        let job = self.job(&art);
        let interactive = self.batch.is_none();
        let how = JobBoot {
            name: BOOT_NAME,
            timeout: self.timeout,
            console: if interactive {
                Console::Socket
            } else {
                Console::Quiet
            },
            share: None,
        };
        let extra = Extra {
            qemu_args: vec!["-S".into(), "-gdb".into(), format!("tcp:127.0.0.1:{port}")],
            cmdline: vec!["nokaslr".into()],
        };
        let mut gdb = Command::new(GDB);
        gdb.args(["-q", "-nx"])
            .arg("-iex")
            .arg(format!("add-auto-load-safe-path {}", k.build.display()))
            .args(["-iex", "set pagination off", "-iex", "set confirm off"]);
        if !interactive {
            gdb.arg("-batch");
        }
        gdb.arg("-x")
            .arg(&driver_path)
            .arg(k.build.join("vmlinux"))
            .current_dir(&module_dirs[0]);
        eprintln!(
            "gdb: {} on {} (QEMU gdb stub 127.0.0.1:{port}, nokaslr), modules from {}",
            if interactive {
                "interactive session"
            } else {
                "batch session"
            },
            k.release()?,
            module_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        if interactive {
            eprintln!(
                "gdb: the guest's console: `cargo xtask gdb --console` in another terminal \
                 (socket {}); gdb stops in start_kernel first: set breakpoints, then `continue`",
                out_dir.join("console.sock").display()
            );
        }
        std::thread::scope(|scope| {
            let boot = scope.spawn(|| vm::boot_job_with(&k, &art, &job, &how, &extra));
            if interactive {
                ignore_sigint();
                split_tmux_pane();
            }
            let (status, gdb_output) = run_gdb(&mut gdb, interactive, || boot.is_finished())?;
            let booted = match boot.join() {
                Ok(Ok(b)) => Some(b),
                Ok(Err(e)) => {
                    eprintln!("gdb: the guest: {e:#}");
                    None
                }
                Err(_) => bail!("the boot thread panicked"),
            };
            let cmd = booted.as_ref().and_then(|b| b.results.program(CMD_NAME));
            if let Some(b) = &booted {
                let syms = crate::decode::Symbols::new(&k, &art);
                for r in logscan::scan(&b.dmesg) {
                    eprintln!(
                        "gdb: kernel report [{}]:\n{}",
                        r.kind,
                        crate::decode::annotate(&r.text, &syms)
                    );
                }
            }
            Ok(Outcome {
                status,
                gdb_output,
                cmd,
                booted,
            })
        })
    }

    /// The guest's job: every module loaded, then CMD (output on the results channel), or the
    /// demo with a shell when interactive without CMD.
    fn job(&self, art: &Artifacts) -> Job {
        let modules = initramfs::module_names(art);
        let mut job = Job::new(self.machine);
        if self.cmd.is_empty() && self.batch.is_none() {
            job.demo(&modules, true);
        } else {
            job.load_modules(&modules);
            if !self.cmd.is_empty() {
                let argv: Vec<&str> = self.cmd.iter().map(String::as_str).collect();
                job.run_marked(CMD_NAME, &argv);
            }
        }
        job
    }
}

/// What `rustc` writes as the DWARF producer of every compile unit.
const RUSTC_PRODUCER: &[u8] = b"clang LLVM (rustc version";
/// The same bytes with the first letter capitalised.
const RUSTC_PRODUCER_FOR_GDB: &[u8] = b"Clang LLVM (rustc version";

/// Copies of the built `.ko` files for gdb (`lx-symbols` loads them), in one directory
/// `target/gdb/<profile>/`, with the DWARF producer of the Rust compile units changed from
/// `clang LLVM (rustc ...` to `Clang LLVM (rustc ...`. gdb 13.1 takes a producer that starts
/// with `clang ` for LLVM and then skips a function's prologue to the next `prologue_end`
/// mark of the same source file in the line table, which with Rust's inlining is often past
/// the function's end: `break` on hello_chardev's `read_iter`, or on a line in it, landed in
/// another function (`drop`, seen at line 73). With any other producer gdb analyses the
/// prologue itself and the breakpoints land in the function. The code is untouched (the
/// guest loads the original `.ko` files).
pub fn module_copies(k: &Kernel, art: &Artifacts) -> Result<PathBuf> {
    let dir = util::target_dir().join("gdb").join(k.profile.name());
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    for ko in &art.modules {
        let data = std::fs::read(ko).with_context(|| format!("{}", ko.display()))?;
        let to = dir.join(ko.file_name().expect("a .ko file name"));
        std::fs::write(&to, patch_producer(data))?;
    }
    Ok(dir)
}

/// [`RUSTC_PRODUCER`] -> [`RUSTC_PRODUCER_FOR_GDB`] everywhere (same length: no offsets move).
fn patch_producer(mut data: Vec<u8>) -> Vec<u8> {
    let n = RUSTC_PRODUCER.len();
    let mut i = 0;
    while i + n <= data.len() {
        if &data[i..i + n] == RUSTC_PRODUCER {
            data[i..i + n].copy_from_slice(RUSTC_PRODUCER_FOR_GDB);
            i += n;
        } else {
            i += 1;
        }
    }
    data
}

/// `vmlinux-gdb.py` and `scripts/gdb/` in the kernel build: `make scripts_gdb` once (the
/// kernel build makes `bzImage modules`, not `all`, so they are not there at first).
pub fn ensure_gdb_scripts(k: &Kernel) -> Result<PathBuf> {
    let py = k.build.join("vmlinux-gdb.py");
    let constants = k.build.join("scripts/gdb/linux/constants.py");
    if py.exists() && constants.exists() {
        return Ok(py);
    }
    let config = std::fs::read_to_string(k.build.join(".config")).unwrap_or_default();
    if !config.lines().any(|l| l == "CONFIG_GDB_SCRIPTS=y") {
        bail!(
            "{} was built without CONFIG_GDB_SCRIPTS (and debug info): gdb needs the debug \
             profile's kernel (kernel/debug.config)",
            k.build.display()
        );
    }
    let _lock = util::lock("heavy")?;
    let mut c = Toolchain::find().kmake();
    c.arg("-C")
        .arg(&k.src)
        .arg(format!("O={}", k.build.display()))
        .arg("scripts_gdb");
    let logs = k.build.join("xtask-logs");
    std::fs::create_dir_all(&logs)?;
    util::run_logged(&mut c, &logs.join("scripts_gdb.log"), "make scripts_gdb")?;
    if !py.exists() {
        bail!("`make scripts_gdb` did not write {}", py.display());
    }
    Ok(py)
}

/// `(demangled, linkage name)` of every Rust function defined in the modules, for
/// `rust-break` (see [`driver`]).
pub fn module_functions(art: &Artifacts) -> Result<Vec<(String, String)>> {
    let mut linkage = Vec::new();
    for ko in &art.modules {
        let out = util::output(
            Command::new(crate::toolchain::llvm_tool("llvm-nm"))
                .arg("--defined-only")
                .arg(ko),
        )?;
        linkage.extend(out.lines().filter_map(|l| {
            let mut w = l.split_whitespace().skip(1);
            let (t, n) = (w.next()?, w.next()?);
            (matches!(t, "t" | "T") && n.starts_with("_R")).then(|| n.to_string())
        }));
    }
    linkage.sort();
    linkage.dedup();
    let demangled = crate::decode::demangle(&linkage);
    Ok(demangled.into_iter().zip(linkage).collect())
}

/// A free TCP port on 127.0.0.1 (the OS picks; a race with another program is unlikely).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free TCP port")?;
    Ok(l.local_addr()?.port())
}

/// A Python string literal.
fn py_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// The gdb driver (Python, run with `-x`): connect (retrying while the VM waits for the VM
/// lock), run to `start_kernel`, `lx-symbols` on `module_dirs`, define `rust-break`; in a
/// batch session, source the user's script, then let the guest finish and quit with the
/// script's status.
///
/// `rust-break NAME` breaks on a module function by its demangled Rust path (gdb's own
/// names for trait methods are `crate::{impl#4}::f`): NAME is looked up in `functions`
/// (demangled, linkage name) as the path, `<T as Trait>::f` also as `T::f`, or any `::`
/// suffix of it, e.g. `HelloDevice::read_iter`; the breakpoint is a pending `break` on the
/// linkage name.
pub fn driver(
    port: u16,
    module_dirs: &[PathBuf],
    functions: &[(String, String)],
    batch: Option<&Path>,
    timeout: Duration,
) -> Result<String> {
    let dirs: Vec<String> = module_dirs
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let batch = match batch {
        Some(f) => Some(
            f.canonicalize()
                .with_context(|| format!("--batch {}", f.display()))?,
        ),
        None => None,
    };
    let mut py = format!(
        r#"# Written by `cargo xtask gdb` (xtask/src/gdb.rs).
import gdb, json, re, time

def xtask_connect():
    # The VM may wait for the VM lock (another run) before QEMU listens.
    deadline = time.time() + {connect_secs}
    said = False
    while True:
        try:
            gdb.execute("target remote 127.0.0.1:{port}")
            return
        except gdb.error as e:
            if time.time() > deadline:
                raise
            if not said:
                print("xtask-gdb: waiting for QEMU's gdb stub on port {port} ...")
                said = True
            time.sleep(0.2)

xtask_connect()
gdb.execute("set breakpoint pending on")
# Paging is off at the reset vector: a hardware breakpoint on the kernel's virtual address.
gdb.execute("hbreak start_kernel")
gdb.execute("continue")
gdb.execute("delete")
gdb.execute("lx-symbols {dirs}")
print("xtask-gdb: stopped in start_kernel; module symbols load as modules are inserted")

XTASK_FUNCS = json.loads({functions})

def xtask_norm(name):
    # `<T as Trait>::f` -> `T::f`, `<T>::f` -> `T::f`.
    if not name.startswith("<"):
        return name
    depth = 0
    for i, c in enumerate(name):
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
            if depth == 0:
                inner, rest = name[1:i], name[i + 1:]
                d = 0
                for j, ch in enumerate(inner):
                    if ch == "<":
                        d += 1
                    elif ch == ">":
                        d -= 1
                    elif d == 0 and inner.startswith(" as ", j):
                        inner = inner[:j]
                        break
                return inner + rest
    return name

def xtask_linkage(spec):
    return [(d, l) for (d, l) in XTASK_FUNCS
            if spec in (d, xtask_norm(d)) or xtask_norm(d).endswith("::" + spec)]

class RustBreak(gdb.Command):
    """rust-break NAME: break on the module function(s) whose demangled Rust path is NAME,
e.g. hello_chardev::HelloDevice::read_iter, <hello_chardev::HelloDevice as
kernel::miscdevice::MiscDevice>::read_iter, or a suffix such as HelloDevice::read_iter
(gdb itself calls that function hello_chardev::{{impl#4}}::read_iter). The breakpoint is
pending until the module is loaded."""

    def __init__(self):
        super().__init__("rust-break", gdb.COMMAND_BREAKPOINTS)

    def invoke(self, arg, from_tty):
        spec = arg.strip()
        found = xtask_linkage(spec)
        if not found:
            raise gdb.GdbError("rust-break: no module function is named %s" % spec)
        for (d, l) in found:
            print("xtask-gdb: rust-break: %s" % d)
            gdb.execute("break " + l)
RustBreak()
"#,
        connect_secs = timeout.as_secs() + 1800,
        dirs = dirs.join(" "),
        functions = py_str(&serde_json::to_string(functions)?),
    );

    if let Some(f) = batch {
        py.push_str(&format!(
            r#"
xtask_ok = True
try:
    gdb.execute("source " + {script})
except gdb.error as e:
    print("xtask-gdb: the script failed: %s" % e)
    xtask_ok = False
# Let the guest run to its end (it powers off; QEMU closes the connection).
try:
    gdb.execute("delete")
    gdb.execute("continue")
except gdb.error:
    pass
print("xtask-gdb: script %s" % ("succeeded" if xtask_ok else "FAILED"))
gdb.execute("quit %d" % (0 if xtask_ok else 1))
"#,
            script = py_str(&f.display().to_string())
        ));
    }
    Ok(py)
}

/// Run gdb until it exits. Batch: its output is shown and returned; it is killed when the
/// guest is gone (`guest_gone`) and gdb has not exited 30 s later.
fn run_gdb(
    gdb: &mut Command,
    interactive: bool,
    guest_gone: impl Fn() -> bool,
) -> Result<(i32, String)> {
    if interactive {
        let status = gdb.status().with_context(|| format!("starting {GDB}"))?;
        return Ok((status.code().unwrap_or(-1), String::new()));
    }
    let mut child = gdb
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{}`", util::show(gdb)))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    for r in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(|l| l.ok()) {
                let _ = tx.send(l);
            }
        });
    }
    drop(tx);
    let mut output = String::new();
    let mut gone_since: Option<Instant> = None;
    let status = loop {
        while let Ok(l) = rx.try_recv() {
            println!("{l}");
            output.push_str(&l);
            output.push('\n');
        }
        if let Some(s) = child.try_wait()? {
            break s.code().unwrap_or(-1);
        }
        if guest_gone() {
            let since = *gone_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(30) {
                eprintln!("gdb: the guest is gone and gdb did not exit: killing it");
                let _ = child.kill();
                let _ = child.wait();
                break -1;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    for l in rx.iter() {
        println!("{l}");
        output.push_str(&l);
        output.push('\n');
    }
    Ok((status, output))
}

/// Where a session's guest console listens (see `vm::Console::Socket`).
fn console_socket() -> PathBuf {
    util::target_dir()
        .join("vm")
        .join(format!("{}-{BOOT_NAME}", Profile::Debug.name()))
        .join("console.sock")
}

/// Our Ctrl-c goes to gdb (it interrupts the guest), not to us: ignore SIGINT.
fn ignore_sigint() {
    extern "C" {
        fn signal(signum: i32, handler: usize) -> usize;
    }
    const SIGINT: i32 = 2;
    const SIG_IGN: usize = 1;
    // SAFETY: installing SIG_IGN for SIGINT has no preconditions; libc is linked by std.
    unsafe { signal(SIGINT, SIG_IGN) };
}

/// Inside tmux, open the guest console in a pane below (`cargo xtask gdb --console`).
fn split_tmux_pane() {
    if std::env::var_os("TMUX").is_none() {
        return;
    }
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let cmd = format!("{} gdb --console", me.display());
    let ok = Command::new("tmux")
        .args(["split-window", "-v", "-d", &cmd])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        eprintln!("gdb: the guest console is in the tmux pane below");
    }
}

/// `--console`: this terminal becomes the guest's serial console (raw mode) until the guest
/// powers off or `Ctrl-]`.
fn attach_console(sock: &Path) -> Result<()> {
    use std::os::unix::net::UnixStream;
    let start = Instant::now();
    let mut said = false;
    let stream = loop {
        match UnixStream::connect(sock) {
            Ok(s) => break s,
            Err(e) => {
                if start.elapsed() > Duration::from_secs(1800) {
                    bail!("no guest console at {}: {e}", sock.display());
                }
                if !said {
                    eprintln!(
                        "console: waiting for a `cargo xtask gdb` guest ({})",
                        sock.display()
                    );
                    said = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    eprintln!("console: attached (Ctrl-] detaches); press Enter for a prompt\r");
    let saved = stty(&["-g"]).ok();
    let _ = stty(&["raw", "-echo"]);
    let mut from_guest = stream.try_clone()?;
    let restore = move || {
        if let Some(s) = &saved {
            let _ = stty(&[s.trim()]);
        }
    };
    let out = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut stdout = std::io::stdout();
        while let Ok(n) = from_guest.read(&mut buf) {
            if n == 0
                || stdout
                    .write_all(&buf[..n])
                    .and_then(|_| stdout.flush())
                    .is_err()
            {
                break;
            }
        }
    });
    let mut to_guest = stream;
    let input = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
            let detach = buf[..n].iter().position(|&b| b == DETACH);
            let upto = detach.unwrap_or(n);
            if to_guest.write_all(&buf[..upto]).is_err() || detach.is_some() {
                break;
            }
        }
    });
    // Whichever ends first: the guest (socket closed) or Ctrl-] / end of input.
    while !out.is_finished() && !input.is_finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    restore();
    eprintln!("\r\nconsole: detached");
    // The stdin thread may still block in read(): leave without joining it.
    std::process::exit(0)
}

/// `stty ARGS` on our terminal; its stdout.
fn stty(args: &[&str]) -> Result<String> {
    let out = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("stty {args:?} failed");
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_connects_stops_in_start_kernel_and_loads_module_symbols() {
        let dirs = [PathBuf::from("/t/kmod/debug/modules")];
        let f = [(
            "<m::D as k::T>::read_iter".to_string(),
            "_RNvXs2_m".to_string(),
        )];
        let py = driver(1234, &dirs, &f, None, Duration::from_secs(60)).unwrap();
        assert!(py.contains("_RNvXs2_m"), "{py}");
        assert!(py.contains("target remote 127.0.0.1:1234"), "{py}");
        assert!(py.contains("hbreak start_kernel"));
        assert!(py.contains("lx-symbols /t/kmod/debug/modules"));
        assert!(!py.contains("quit"), "interactive: gdb keeps its prompt");
        // Batch: the user's script, then the guest runs to its end, then the status.
        let f = std::env::temp_dir().join(format!("xtask-gdb-{}.gdb", std::process::id()));
        std::fs::write(&f, "bt\n").unwrap();
        let py = driver(1, &dirs, &[], Some(&f), Duration::from_secs(60)).unwrap();
        let source = py.find("\"source \" + ").expect("sources the script");
        let quit = py.find("quit %d").expect("quits with a status");
        assert!(source < quit);
        assert!(py.contains(&py_str(&f.canonicalize().unwrap().display().to_string())));
        std::fs::remove_file(&f).ok();
        assert!(driver(
            1,
            &dirs,
            &[],
            Some(Path::new("/nonexistent.gdb")),
            Duration::ZERO
        )
        .is_err());
    }

    #[test]
    fn driver_is_valid_python() {
        let f = std::env::temp_dir().join(format!("xtask-gdb-py-{}.gdb", std::process::id()));
        std::fs::write(&f, "bt\n").unwrap();
        for batch in [None, Some(f.as_path())] {
            let py = driver(1, &[PathBuf::from("/m")], &[], batch, Duration::ZERO).unwrap();
            let out = Command::new("python3")
                .args(["-c", "import ast,sys; ast.parse(sys.stdin.read())"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .and_then(|mut c| {
                    c.stdin.take().unwrap().write_all(py.as_bytes())?;
                    c.wait_with_output()
                })
                .unwrap();
            assert!(out.status.success(), "{py}\n{out:?}");
        }
        std::fs::remove_file(&f).ok();
    }

    /// The line of `needle` in `file` (1-based).
    fn line_of(file: &Path, needle: &str) -> usize {
        let text = std::fs::read_to_string(file).unwrap();
        1 + text
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} in {}", file.display()))
    }

    /// The whole path: boot the debug kernel under gdb, break in a Rust module function by
    /// name and on a line, let the guest run `cat /dev/rust_hello`, read the stack and the
    /// locals. Boots the VM (about a minute when it is free); `.ci/run` runs it.
    #[test]
    #[ignore = "needs the debug kernel (cargo xtask kernel --profile debug); boots the VM"]
    fn vm_gdb_breaks_in_hello_chardev_read_and_shows_rust_frames_and_values() {
        let src = util::repo_root().join("modules/hello_chardev/hello_chardev.rs");
        let check = line_of(&src, "if n == 0 && unread > 0 && wanted > 0");
        let entry = line_of(&src, "fn read_iter(");
        let dir = util::target_dir().join("xtask-tests").join("gdb");
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("hello_chardev.gdb");
        std::fs::write(
            &script,
            format!(
                "rust-break hello_chardev::HelloDevice::read_iter\n\
                 continue\n\
                 bt 3\n\
                 info args\n\
                 p hello_chardev::TOTAL_RECEIVED\n\
                 break hello_chardev.rs:{check}\n\
                 continue\n\
                 bt 1\n\
                 info locals\n\
                 p n\n"
            ),
        )
        .unwrap();
        let cmd = ["cat".to_string(), "/dev/rust_hello".to_string()];
        let o = Session {
            batch: Some(&script),
            cmd: &cmd,
            port: None,
            timeout: Duration::from_secs(900),
            machine: Machine::default(),
        }
        .run()
        .expect("the gdb session ran");
        let out = &o.gdb_output;
        assert_eq!(o.status, 0, "every command of the script succeeded:\n{out}");
        // The breakpoint by name was hit in the Rust function, and the backtrace names it
        // with its file and line.
        let frame0 = out
            .lines()
            .find(|l| l.starts_with("#0 ") && l.contains("read_iter"))
            .unwrap_or_else(|| panic!("a backtrace in read_iter:\n{out}"));
        assert!(
            frame0.contains("hello_chardev::{impl#")
                && frame0.contains(&format!("hello_chardev.rs:{entry}")),
            "frame #0 is hello_chardev's read_iter at its first line: {frame0}"
        );
        assert!(
            out.lines().any(|l| l.starts_with("#1 ")
                && l.contains(
                    "kernel::miscdevice::MiscdeviceVTable<hello_chardev::HelloDevice>::read_iter"
                )
                && l.contains("rust/kernel/miscdevice.rs:")),
            "frame #1 is the kernel crate's adapter, a Rust frame with file:line:\n{out}"
        );
        // Rust values: an argument (a struct of the kernel crate, as Rust writes it), a
        // static, and a local after the read.
        assert!(
            out.contains("kiocb = kernel::fs::kiocb::Kiocb<")
                && out.contains("{inner: core::ptr::non_null::NonNull<"),
            "`info args` prints the Kiocb argument as a Rust value:\n{out}"
        );
        assert!(
            out.contains("kernel::sync::atomic::Atomic<u64>"),
            "`p hello_chardev::TOTAL_RECEIVED` prints the static's Rust type:\n{out}"
        );
        assert!(
            out.contains(&format!("hello_chardev.rs:{check}")),
            "the line breakpoint was hit:\n{out}"
        );
        assert!(
            out.lines().any(|l| l.trim() == "n = 17"),
            "`info locals` shows the bytes read (17, `Hello from Rust!\\n`):\n{out}"
        );
        let cmd = o.cmd.expect("the guest ran cat");
        assert_eq!((cmd.status, cmd.output.as_str()), (0, "Hello from Rust!\n"));
        let booted = o.booted.expect("the guest ran to its end");
        assert!(logscan::scan(&booted.dmesg).is_empty(), "{}", booted.dmesg);
    }

    #[test]
    fn rust_producers_are_hidden_from_gdb_and_nothing_else_changes() {
        let data = b"x\0clang LLVM (rustc version 1.96.0)\0clang version 19\0".to_vec();
        let patched = patch_producer(data.clone());
        assert_eq!(patched.len(), data.len());
        assert_eq!(
            patched,
            b"x\0Clang LLVM (rustc version 1.96.0)\0clang version 19\0".to_vec()
        );
    }
}
