//! Small helpers shared by the jobs: paths, running commands, locking.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Instant;

/// Name used for the cache directory.
pub const PROJECT: &str = "rust-kernel-modules";

/// The repository root (the workspace that contains `xtask/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// `${XDG_CACHE_HOME:-~/.cache}/rust-kernel-modules`, overridable with `RKM_CACHE_DIR`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("RKM_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home().join(".cache"));
    base.join(PROJECT)
}

pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// `target/` of the workspace.
pub fn target_dir() -> PathBuf {
    repo_root().join("target")
}

/// Parallel jobs for `make -j`: the host's cores.
pub fn jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

pub fn is_root() -> bool {
    // /proc/self/status has the effective uid; no libc binding needed.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Describe a command the way a user would type it.
pub fn show(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.is_empty() {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}

/// Run a command with inherited stdio; fail with the command line on error.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !status.success() {
        bail!("`{}` failed with {status}", show(cmd));
    }
    Ok(())
}

/// Run a command and return its stdout (stderr is captured into the error).
pub fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed with {}:\n{}{}",
            show(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Run a command with stdin from `/dev/null`; returns whether it succeeded and its stdout
/// followed by its stderr.
pub fn capture(cmd: &mut Command) -> Result<(bool, String)> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

/// Start a command with stdin from `/dev/null`; its stdout and stderr lines arrive, merged,
/// on the receiver, which ends when both are closed.
fn spawn_merged(cmd: &mut Command) -> Result<(Child, Receiver<String>)> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", show(cmd)))?;
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    fn forward(r: impl Read + Send + 'static, tx: Sender<String>) {
        std::thread::spawn(move || {
            for l in BufReader::new(r).lines().map_while(|l| l.ok()) {
                let _ = tx.send(l);
            }
        });
    }
    forward(out, tx.clone());
    forward(err, tx);
    Ok((child, rx))
}

/// Run a command, showing each line of its output (stdout and stderr) on stderr behind
/// `prefix`; fail with the command line on error. For steps that run side by side.
pub fn run_prefixed(cmd: &mut Command, prefix: &str) -> Result<()> {
    let (mut child, rx) = spawn_merged(cmd)?;
    for line in rx {
        // Progress redrawn with `\r`: its last state.
        let shown = line.rsplit('\r').next().unwrap_or("");
        eprintln!("{prefix} {shown}");
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("`{}` failed with {status}", show(cmd));
    }
    Ok(())
}

/// Run a command, sending all its output to `log`, and showing a live one-line status
/// (`what`, elapsed time, last line) on a terminal or a line every 15 s elsewhere.
/// On failure the log's tail and its path are printed.
pub fn run_logged(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    use std::io::Write;
    let file = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut logw = std::io::BufWriter::new(file);
    writeln!(logw, "$ {}", show(cmd))?;
    let (mut child, rx) = spawn_merged(cmd)?;
    let tty = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut lines = 0usize;
    for line in rx {
        lines += 1;
        writeln!(logw, "{line}")?;
        let secs = start.elapsed().as_secs();
        if tty {
            let mut shown: String = line.trim().chars().take(70).collect();
            shown = shown.replace('\t', " ");
            eprint!(
                "\r\x1b[2K  {what} [{:02}:{:02}] {shown}",
                secs / 60,
                secs % 60
            );
        } else if last_report.elapsed().as_secs() >= 15 {
            last_report = Instant::now();
            eprintln!(
                "  {what} [{:02}:{:02}] {lines} lines, at: {}",
                secs / 60,
                secs % 60,
                line.trim()
            );
        }
    }
    let status = child.wait()?;
    logw.flush()?;
    if tty {
        eprint!("\r\x1b[2K");
    }
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        eprintln!("---- last lines of {} ----", log.display());
        for l in tail.iter().rev() {
            eprintln!("{l}");
        }
        bail!(
            "{what} failed after {secs:.0} s ({status}); full log: {}",
            log.display()
        );
    }
    eprintln!("  {what} done in {secs:.1} s (log: {})", log.display());
    Ok(())
}

/// An exclusive lock on a file in the cache: one kernel build or VM at a time on this
/// machine (2 cores), even across parallel invocations.
pub struct Lock(#[allow(dead_code)] File);

pub fn lock(name: &str) -> Result<Lock> {
    let dir = cache_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.lock"));
    let f = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    // Try first without blocking so the user learns why we wait.
    if f.try_lock().is_err() {
        eprintln!(
            "  waiting for {} (another build or VM is running)",
            path.display()
        );
        f.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
    }
    Ok(Lock(f))
}

/// sha256 hex digest of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(data);
    d.iter().map(|b| format!("{b:02x}")).collect()
}
