//! KCOV coverage of our modules, collected per thread (`cargo xtask coverage`).
//!
//! The debug kernel has `CONFIG_KCOV` and our modules are built with `KCOV_INSTRUMENT := y`
//! (nothing else is instrumented): every basic block of module code calls
//! `__sanitizer_cov_trace_pc`, which appends the return address to the KCOV buffer of the
//! *current task*, if that task enabled KCOV (`/sys/kernel/debug/kcov`, `KCOV_INIT_TRACE`,
//! `mmap`, `KCOV_ENABLE` with `KCOV_TRACE_PC`). A task only records its own syscalls: kernel
//! threads, workqueue items, timers, softirqs and interrupts are not covered.
//!
//! Two users:
//! - [`Kcov`] directly: `kfuzz` enables it in each worker and reads the PCs of each program
//!   (coverage-guided fuzzing).
//! - The guest test binaries, without changing them: when `RKM_KCOV_DIR` is set, this
//!   library's `pthread_create` (it overrides glibc's weak one in the static test binaries,
//!   see `guest/build.rs`) starts every new thread with its own KCOV buffer, and
//!   [`flush_current_thread`] writes what the thread covered to
//!   `$RKM_KCOV_DIR/<pid>.<tid>` when the thread ends and before each `kmod::unload` (the
//!   module's address must still be known). libtest runs every test in a new thread, so
//!   every test is covered; a test's own threads too. Not covered: the main thread (libtest
//!   only waits there), forked children, commands run from the job's shell.
//!
//! A PC is a runtime address; modules move at every load. So PCs are written relative to
//! the module section they fall in (`/sys/module/<m>/sections/<section>`, read at flush
//! time): one line `MODULE SECTION 0xOFFSET` per distinct PC, `? 0xPC` when no loaded module
//! contains it. The host maps those to source lines with the `.ko`'s DWARF.

use crate::sys;
use std::cell::RefCell;
use std::collections::BTreeSet;
#[cfg(target_feature = "crt-static")]
use std::ffi::c_void;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::OnceLock;

/// `_IOR('c', 1, unsigned long)`
const KCOV_INIT_TRACE: u64 = 0x8008_6301;
/// `_IO('c', 100)`
const KCOV_ENABLE: u64 = 0x6364;
/// `_IO('c', 101)`
const KCOV_DISABLE: u64 = 0x6365;
const KCOV_TRACE_PC: usize = 0;
const KCOV_PATH: &str = "/sys/kernel/debug/kcov";
/// The environment variable that turns collection on in the test binaries.
pub const DIR_ENV: &str = "RKM_KCOV_DIR";
/// PCs per thread buffer (8 bytes each): 4 MiB. A thread that runs more module code than
/// this loses the rest (the buffer stops filling); tests that loop (stress, soak) repeat
/// paths they already covered.
pub const THREAD_WORDS: usize = 1 << 19;

/// One task's KCOV buffer.
pub struct Kcov {
    fd: OwnedFd,
    area: *mut u64,
    words: usize,
}

impl Kcov {
    /// Open and map a buffer of `words` entries (not yet enabled).
    pub fn open(words: usize) -> io::Result<Kcov> {
        let fd = sys::open(KCOV_PATH, libc::O_RDWR)?;
        // SAFETY: KCOV_INIT_TRACE takes the buffer size in entries by value.
        unsafe { sys::ioctl(fd.as_raw_fd(), KCOV_INIT_TRACE, words) }?;
        // SAFETY: mapping the kcov fd with the size it was initialised to.
        let area = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                words * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if area == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Kcov {
            fd,
            area: area.cast(),
            words,
        })
    }

    /// [`Kcov::open`] and [`Kcov::enable`]: collecting this task's PCs from now on.
    pub fn open_enabled(words: usize) -> io::Result<Kcov> {
        let k = Kcov::open(words)?;
        k.enable()?;
        Ok(k)
    }

    /// Start collecting this task's PCs (and forget any collected before).
    pub fn enable(&self) -> io::Result<()> {
        // SAFETY: our own kcov fd; KCOV_ENABLE takes the mode by value.
        unsafe { sys::ioctl(self.fd.as_raw_fd(), KCOV_ENABLE, KCOV_TRACE_PC) }?;
        self.reset();
        Ok(())
    }

    /// Forget the PCs collected so far.
    pub fn reset(&self) {
        // SAFETY: area[0] is the count, inside the mapping; the kernel writes it from this
        // task only, and we are this task.
        unsafe { std::ptr::write_volatile(self.area, 0) };
    }

    /// The PCs collected since the last reset, in order (with repeats).
    pub fn pcs(&self) -> Vec<u64> {
        let n = self.count();
        // SAFETY: area[0..words] is mapped; the count is bounded by the buffer size.
        unsafe {
            (1..=n)
                .map(|i| std::ptr::read_volatile(self.area.add(i)))
                .collect()
        }
    }

    /// How many PCs were recorded since the last reset (the buffer keeps the first ones).
    pub fn count(&self) -> usize {
        // SAFETY: area[0] is mapped and written by the kernel only as a whole word.
        (unsafe { std::ptr::read_volatile(self.area) } as usize).min(self.words - 1)
    }

    /// Stop collecting.
    pub fn disable(&self) {
        // SAFETY: our own kcov fd; KCOV_DISABLE takes no argument.
        let _ = unsafe { sys::ioctl(self.fd.as_raw_fd(), KCOV_DISABLE, 0) };
    }
}

impl Drop for Kcov {
    fn drop(&mut self) {
        self.disable();
        // SAFETY: unmapping what `open` mapped (the fd closes after this).
        unsafe { libc::munmap(self.area.cast(), self.words * 8) };
    }
}

/// Is the KCOV device there (the debug kernel with debugfs mounted)?
pub fn available() -> bool {
    std::path::Path::new(KCOV_PATH).exists()
}

/// Start addresses of the loaded modules' text sections: `(address, module, section)`,
/// sorted. Without the `.init.*` sections: once a module's `init` has returned its init
/// memory is freed (sysfs still lists the old address) and the next module loaded may sit
/// there, so a PC there is not that module's init code. See [`after_load`].
pub fn module_sections() -> Vec<(u64, String, String)> {
    sections(None)
}

/// The sections, with the `.init.*` ones of module `init_of` only.
fn sections(init_of: Option<&str>) -> Vec<(u64, String, String)> {
    let mut v = Vec::new();
    let Ok(mods) = std::fs::read_dir("/sys/module") else {
        return v;
    };
    for m in mods.flatten() {
        let Ok(secs) = std::fs::read_dir(m.path().join("sections")) else {
            continue;
        };
        let module = m.file_name().to_string_lossy().into_owned();
        for s in secs.flatten() {
            let section = s.file_name().to_string_lossy().into_owned();
            if !section.contains("text")
                || (section.starts_with(".init") && init_of != Some(module.as_str()))
            {
                continue;
            }
            let addr = std::fs::read_to_string(s.path())
                .ok()
                .and_then(|a| u64::from_str_radix(a.trim().trim_start_matches("0x"), 16).ok());
            if let Some(a) = addr.filter(|a| *a != 0) {
                v.push((a, module.clone(), section));
            }
        }
    }
    v.sort();
    v
}

/// `MODULE SECTION 0xOFFSET` for each distinct PC in a loaded module's text (`? 0xPC`
/// when none holds it), sorted.
pub fn relative_lines(pcs: &[u64], sections: &[(u64, String, String)]) -> BTreeSet<String> {
    /// Module text sections are far smaller than this.
    const MAX_SECTION: u64 = 1 << 24;
    let distinct: BTreeSet<u64> = pcs.iter().copied().collect();
    distinct
        .into_iter()
        .map(|pc| {
            let i = sections.partition_point(|(a, _, _)| *a <= pc);
            match i.checked_sub(1).map(|i| &sections[i]) {
                Some((a, m, s)) if pc - a < MAX_SECTION => format!("{m} {s} 0x{:x}", pc - a),
                _ => format!("? 0x{pc:x}"),
            }
        })
        .collect()
}

thread_local! {
    static THREAD: RefCell<Option<Kcov>> = const { RefCell::new(None) };
    /// The module layout when the thread started: a thread that then drops to another uid
    /// (`as_nobody`) can no longer read `/sys/module/*/sections` (root only) and resolves
    /// its PCs against this one (the modules it uses stay loaded meanwhile).
    static START_LAYOUT: RefCell<Vec<(u64, String, String)>> = const { RefCell::new(Vec::new()) };
}

/// `$RKM_KCOV_DIR`, when collection is on (read once).
pub fn out_dir() -> Option<&'static str> {
    static DIR: OnceLock<Option<String>> = OnceLock::new();
    DIR.get_or_init(|| std::env::var(DIR_ENV).ok().filter(|d| !d.is_empty()))
        .as_deref()
}

/// Enable a KCOV buffer for the calling thread (collection on only).
#[cfg_attr(not(target_feature = "crt-static"), allow(dead_code))]
fn start_thread() {
    if out_dir().is_none() {
        return;
    }
    THREAD.with(|t| {
        if t.borrow().is_some() {
            return;
        }
        match Kcov::open_enabled(THREAD_WORDS) {
            Ok(k) => {
                *t.borrow_mut() = Some(k);
                START_LAYOUT.with(|l| *l.borrow_mut() = module_sections());
            }
            Err(e) => eprintln!("kcov: cannot enable coverage in this thread: {e}"),
        }
    });
}

/// Run `unload` (a `delete_module`) between two flushes: the PCs before it against the
/// current layout, those of the module's exit code against the layout from before (the
/// module is gone afterwards).
pub fn around_unload<T>(unload: impl FnOnce() -> T) -> T {
    if out_dir().is_none() || THREAD.with(|t| t.borrow().is_none()) {
        return unload();
    }
    flush_current_thread();
    let before = module_sections();
    let r = unload();
    flush_with(&before);
    r
}

/// After this thread loaded `module` (`kmod::load`, even a failed one): write what it
/// covered so far, its init code against the init sections it ran from (still listed by
/// sysfs, and right for this thread's trace). Nothing when collection is off.
pub fn after_load(module: &str) {
    if out_dir().is_some() && THREAD.with(|t| t.borrow().is_some()) {
        flush_with(&sections(Some(module)));
    }
}

/// Write the calling thread's coverage so far to `$RKM_KCOV_DIR/<pid>.<tid>` and start
/// over; nothing when collection is off. Called around a module's unload (its address is
/// needed) and when the thread ends.
pub fn flush_current_thread() {
    if out_dir().is_some() && THREAD.with(|t| t.borrow().is_some()) {
        let mut layout = module_sections();
        if layout.is_empty() {
            layout = START_LAYOUT.with(|l| l.borrow().clone());
        }
        flush_with(&layout);
    }
}

/// [`flush_current_thread`] with this module layout.
fn flush_with(sections: &[(u64, String, String)]) {
    let Some(dir) = out_dir() else {
        return;
    };
    THREAD.with(|t| {
        let t = t.borrow();
        let Some(k) = t.as_ref() else {
            return;
        };
        let pcs = k.pcs();
        k.reset();
        if pcs.is_empty() {
            return;
        }
        let lines = relative_lines(&pcs, sections);
        // SAFETY: getpid/gettid have no preconditions.
        let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
        let path = format!("{dir}/{pid}.{tid}");
        let text: String = lines.into_iter().map(|l| l + "\n").collect();
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            eprintln!("kcov: cannot write {path}: {e}");
        }
    });
}

#[cfg_attr(not(target_feature = "crt-static"), allow(dead_code))]
fn end_thread() {
    flush_current_thread();
    THREAD.with(|t| t.borrow_mut().take());
}

#[cfg(target_feature = "crt-static")]
type StartRoutine = extern "C" fn(*mut c_void) -> *mut c_void;

#[cfg(target_feature = "crt-static")]
extern "C" {
    /// glibc's own `pthread_create` (its `pthread_create` symbol is a weak alias of it).
    fn __pthread_create(
        thread: *mut libc::pthread_t,
        attr: *const libc::pthread_attr_t,
        start: StartRoutine,
        arg: *mut c_void,
    ) -> libc::c_int;
}

#[cfg(target_feature = "crt-static")]
extern "C" fn covered_thread(p: *mut c_void) -> *mut c_void {
    // SAFETY: `p` is the box `pthread_create` below leaked for this thread.
    let (start, arg) = *unsafe { Box::from_raw(p.cast::<(StartRoutine, usize)>()) };
    start_thread();
    let r = start(arg as *mut c_void);
    end_thread();
    r
}

/// Every thread of a program that links this library starts here (see the module's doc):
/// with `RKM_KCOV_DIR` set, it runs with its own KCOV buffer; otherwise this is glibc's
/// `pthread_create`.
///
/// Only in static programs (the guest's): glibc's `libc.a` has `__pthread_create`.
///
/// # Safety
///
/// The contract of `pthread_create(3)`.
#[cfg(target_feature = "crt-static")]
#[no_mangle]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    start: StartRoutine,
    arg: *mut c_void,
) -> libc::c_int {
    if out_dir().is_none() {
        // SAFETY: the caller's arguments, passed on.
        return unsafe { __pthread_create(thread, attr, start, arg) };
    }
    let boxed = Box::into_raw(Box::new((start, arg as usize)));
    // SAFETY: the caller's arguments; the new thread owns `boxed`.
    let r = unsafe { __pthread_create(thread, attr, covered_thread, boxed.cast()) };
    if r != 0 {
        // SAFETY: no thread took it.
        drop(unsafe { Box::from_raw(boxed) });
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcs_are_written_relative_to_their_module_section() {
        let secs = vec![
            (
                0xffff_ffff_a000_0000,
                "rfifo".to_string(),
                ".text".to_string(),
            ),
            (
                0xffff_ffff_a000_4000,
                "rfifo".to_string(),
                ".init.text".to_string(),
            ),
            (
                0xffff_ffff_a001_0000,
                "minimal".to_string(),
                ".text".to_string(),
            ),
        ];
        let pcs = [
            0xffff_ffff_a000_0010,
            0xffff_ffff_a000_0010,
            0xffff_ffff_a000_4001,
            0xffff_ffff_a001_0020,
            0xffff_ffff_8100_0000,
        ];
        let lines: Vec<String> = relative_lines(&pcs, &secs).into_iter().collect();
        assert_eq!(
            lines,
            [
                "? 0xffffffff81000000",
                "minimal .text 0x20",
                "rfifo .init.text 0x1",
                "rfifo .text 0x10",
            ]
        );
    }
}
