//! Helpers for the tests that run inside the booted test kernel.
//!
//! Each file in `guest/tests/` is a libtest binary that `cargo xtask test` builds statically,
//! packs into the initramfs under `/tests/` and runs in the guest with `--test-threads=1`.
//! Tests load modules with the real syscalls (so they see the exact errno), read new kernel
//! log records from `/dev/kmsg` (with their priority), and use the devices like any program.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub mod edu;
pub mod fault;
pub mod fifo;
pub mod kcov;
pub mod sys;

pub use sys::Errno;

/// Kernel reports (BUG, WARNING, Oops, KASAN, ...): the host's one list of markers
/// (`xtask/src/logscan/markers.rs`), compiled in here too.
#[path = "../../xtask/src/logscan/markers.rs"]
mod report_markers;
pub use report_markers::report_kind;

/// Loading and unloading modules with `finit_module(2)` / `delete_module(2)`.
pub mod kmod {
    use super::*;

    /// The directory the modules are installed in (`/lib/modules/<release>/extra`).
    pub fn module_dir() -> String {
        let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        format!("/lib/modules/{}/extra", rel.trim())
    }

    /// Path of a module's `.ko` file in the guest.
    pub fn path(name: &str) -> String {
        format!("{}/{name}.ko", module_dir())
    }

    /// Load module `name` with `params` (e.g. `"my_param=7 flag=y"`); the exact errno on failure.
    pub fn load(name: &str, params: &str) -> Result<(), Errno> {
        let f = File::open(path(name)).map_err(Errno::from)?;
        let r = finit(&f, &CString::new(params).expect("no NUL in params"));
        // Coverage runs: the module's init ran from memory that is now free; its PCs are
        // written out against the addresses sysfs still lists. Not in `finit`: the tests
        // that inject faults count the allocations after it.
        crate::kcov::after_load(name);
        r
    }

    /// `finit_module(file, params, 0)` of an open module file. Tests that inject faults open
    /// the file and make `params` first: this makes no other syscall and allocates nothing
    /// before the load, so the faults land in the load itself.
    pub fn finit(file: &File, params: &CStr) -> Result<(), Errno> {
        // SAFETY: valid fd and NUL-terminated string for the duration of the call.
        let r =
            unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
        crate::sys::cvt(r).map(drop)
    }

    /// Unload module `name` (non-blocking, like `rmmod`).
    pub fn unload(name: &str) -> Result<(), Errno> {
        let n = CString::new(name).expect("no NUL in name");
        // Coverage runs: PCs are relative to where the module is, so they are written out
        // before it goes, and its exit code's against the layout it had. (errno is read
        // before that writing.)
        crate::kcov::around_unload(|| {
            // SAFETY: valid NUL-terminated string.
            let r = unsafe { libc::syscall(libc::SYS_delete_module, n.as_ptr(), libc::O_NONBLOCK) };
            crate::sys::cvt(r).map(drop)
        })
    }

    /// Is `name` listed in `/proc/modules`?
    pub fn is_loaded(name: &str) -> bool {
        std::fs::read_to_string("/proc/modules")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name))
    }

    /// Unload if loaded (cleanup between tests); ignores errors.
    pub fn ensure_unloaded(name: &str) {
        if is_loaded(name) {
            let _ = unload(name);
        }
    }

    /// Values of `field` in the module file's `.modinfo` section (like `modinfo -F field`;
    /// busybox's modinfo does not print every field, so the ELF section is read directly).
    pub fn modinfo(name: &str, field: &str) -> Vec<String> {
        let data = std::fs::read(path(name)).expect("read module file");
        modinfo_entries(&data)
            .into_iter()
            .filter_map(|(k, v)| (k == field).then_some(v))
            .collect()
    }

    /// All `key=value` entries of an ELF64 little-endian object's `.modinfo` section.
    pub fn modinfo_entries(elf: &[u8]) -> Vec<(String, String)> {
        let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
        let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
        if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
            return Vec::new();
        }
        let (shoff, shentsize, shnum, shstrndx) =
            (u64_at(0x28), u16_at(0x3a), u16_at(0x3c), u16_at(0x3e));
        let sh = |i: usize| shoff + i * shentsize;
        let strtab = u64_at(sh(shstrndx) + 0x18);
        for i in 0..shnum {
            let name_off = u32::from_le_bytes(elf[sh(i)..sh(i) + 4].try_into().unwrap()) as usize;
            let name_end = elf[strtab + name_off..]
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(0);
            if &elf[strtab + name_off..strtab + name_off + name_end] != b".modinfo" {
                continue;
            }
            let (off, size) = (u64_at(sh(i) + 0x18), u64_at(sh(i) + 0x20));
            return elf[off..off + size]
                .split(|&b| b == 0)
                .filter_map(|e| {
                    let e = String::from_utf8_lossy(e);
                    e.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                })
                .collect();
        }
        Vec::new()
    }

    /// Names of the modules installed in the guest (`*.ko` in [`module_dir`]), sorted.
    pub fn installed() -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(module_dir())
            .expect("module dir")
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".ko")
                    .map(str::to_string)
            })
            .collect();
        v.sort();
        v
    }

    /// The metadata every module of this project carries: license GPL, the project as
    /// author, and its own description.
    pub fn assert_metadata(name: &str, description: &str) {
        assert_eq!(modinfo(name, "license"), ["GPL"], "{name}: license");
        assert_eq!(
            modinfo(name, "author"),
            ["Rust kernel modules workbench"],
            "{name}: author"
        );
        assert_eq!(
            modinfo(name, "description"),
            [description],
            "{name}: description"
        );
    }

    /// A loaded module, unloaded on drop (so a failing assertion leaves nothing behind).
    pub struct Loaded(pub &'static str);

    impl Loaded {
        pub fn new(name: &'static str, params: &str) -> Result<Loaded, Errno> {
            ensure_unloaded(name);
            load(name, params)?;
            Ok(Loaded(name))
        }
    }

    impl Drop for Loaded {
        fn drop(&mut self) {
            let _ = unload(self.0);
        }
    }
}

/// One `/dev/kmsg` record.
#[derive(Clone, Debug)]
pub struct Record {
    /// Log level 0 (emerg) ..= 7 (debug).
    pub level: u8,
    pub seq: u64,
    /// The message text (continuation lines joined by the kernel already).
    pub text: String,
}

/// Reads the kernel log records that appear after its creation.
pub struct Kmsg {
    file: File,
}

impl Kmsg {
    /// Open `/dev/kmsg` positioned at the end: only new records are returned.
    pub fn new() -> Kmsg {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/kmsg")
            .expect("open /dev/kmsg");
        // SEEK_END on /dev/kmsg moves to the end of the log.
        let _ = sys::lseek(file.as_raw_fd(), 0, libc::SEEK_END);
        Kmsg { file }
    }

    /// All records logged since the last call (or creation).
    pub fn read(&mut self) -> Vec<Record> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(r) = parse_record(&String::from_utf8_lossy(&buf[..n])) {
                        out.push(r);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue, // overwritten
                Err(_) => break,                                             // EAGAIN: no more
            }
        }
        out
    }

    /// Texts of the new records.
    pub fn lines(&mut self) -> Vec<String> {
        self.read().into_iter().map(|r| r.text).collect()
    }

    /// Texts of the new records of `module` (`module: text`), the prefix stripped.
    pub fn module_lines(&mut self, module: &str) -> Vec<String> {
        let prefix = format!("{module}: ");
        self.lines()
            .into_iter()
            .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
            .collect()
    }

    /// Wait up to `timeout` for a new record containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<Record> {
        let start = Instant::now();
        loop {
            if let Some(r) = self.read().into_iter().find(|r| r.text.contains(needle)) {
                return Some(r);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Default for Kmsg {
    fn default() -> Self {
        Self::new()
    }
}

/// Parse a `/dev/kmsg` record: `prio,seq,usec,flags;text\n[ KEY=value\n...]`.
pub fn parse_record(raw: &str) -> Option<Record> {
    let (head, rest) = raw.split_once(';')?;
    let mut f = head.split(',');
    let prio: u32 = f.next()?.parse().ok()?;
    let seq: u64 = f.next()?.parse().ok()?;
    let text = rest.lines().next().unwrap_or("").to_string();
    Some(Record {
        level: (prio & 7) as u8,
        seq,
        text: unescape(&text),
    })
}

fn unescape(s: &str) -> String {
    // /dev/kmsg escapes non-printable bytes as \xNN.
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1] == b'x' {
            if let Ok(v) = u8::from_str_radix(&s[i + 2..i + 4], 16) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// File mode bits (`st_mode & 0o7777`) of a path.
pub fn mode_of(path: &str) -> io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}

/// Is this the debug-profile kernel (KASAN, kmemleak, lockdep)? Tests size their
/// workloads down there.
pub fn is_debug_kernel() -> bool {
    std::path::Path::new("/sys/kernel/debug/kmemleak").exists()
}

/// Run a shell command in the guest, returning (exit code, stdout+stderr).
pub fn sh(cmd: &str) -> (i32, String) {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} 2>&1"))
        .output()
        .expect("sh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kmsg_record_parsing() {
        let r = parse_record("6,339,5140900,-;minimal: Minimal Rust module loaded\n").unwrap();
        assert_eq!(r.level, 6);
        assert_eq!(r.seq, 339);
        assert_eq!(r.text, "minimal: Minimal Rust module loaded");
        let r = parse_record("12,1,0,-;a\\x0ab\n SUBSYSTEM=x\n").unwrap();
        assert_eq!(r.level, 4);
        assert_eq!(r.text, "a\nb");
    }
}
