// SPDX-License-Identifier: GPL-2.0

//! `unsafe` part 2 of 2: a character-device region whose `file_operations` call the safe
//! [`OpenFile`] methods, and the two kernel calls without a safe 7.3 wrapper (`send_sig`,
//! `capable`).
//!
//! 7.3 has no Rust abstraction for `cdev`s, and its `MiscDevice` cannot host a blocking
//! `open` (`misc_open()` calls it with the global `misc_mtx` held) and has no `poll`. This
//! mirrors `kernel::miscdevice`'s trampolines.
//!
//! Invariants this file relies on and keeps (each `unsafe` block names the one it uses):
//!
//! - Between a successful `open` and `release`, a file's `private_data` is the
//!   `KBox<OpenFile>` that `open` made (`into_foreign`); `release` alone takes it back. Every
//!   other trampoline only borrows it, so [`OpenFile`] is used from any thread at once
//!   (it is `Send + Sync`).
//! - A [`Registration`] is pinned; all its fields except the `cdev` are written before the
//!   `cdev` is added and never change after, so `open` reads them without locking.
//! - `cdev_add()` is the last fallible step of the module's init: before it no file of
//!   ours can be opened (an open of a `/dev` node finds no `cdev`: `ENXIO`), after it
//!   nothing can fail, so no open can be in progress in a module whose init fails and is
//!   freed under it.
//! - While a file is open `chrdev_open()` holds a reference on this module (`FOPS.owner`),
//!   so the `Registration` (module data) outlives every open file; `rmmod` fails with
//!   `EWOULDBLOCK` meanwhile. An [`OpenFile`] therefore holds its [`Fifo`] as a
//!   `&'static` reference: it lives from `open` to `release`, within that reference.

use crate::fifo::{
    Devices,
    OpenFile, //
};
use crate::waitq::PollTable;
use kernel::{
    bindings,
    error::{
        from_err_ptr,
        to_result, //
    },
    fs::File,
    iov::{
        IovIterDest,
        IovIterSource, //
    },
    prelude::*,
    task::Task,
    types::{
        ForeignOwnable,
        Opaque, //
    },
    ModuleMetadata,
};

/// `/dev/<name>0`.. backed by one `cdev` over `fifos.len()` minors.
///
/// # Invariants
///
/// After initialisation: `base` is a registered chrdev region of `fifos.len()` minors,
/// `class` is a live class with one device per minor, `cdev` is initialised with [`FOPS`]
/// and added for the region (the last step). All fields other than `cdev` are written
/// before `cdev_add` and never change, so `open` may read them from any thread.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration {
    #[pin]
    cdev: Opaque<bindings::cdev>,
    fifos: Devices,
    base: bindings::dev_t,
    class: *mut bindings::class,
}

// SAFETY: The raw `class` pointer is only passed to the (thread-safe) driver core in
// `drop`; the `cdev` is managed by the kernel's own locking; `fifos` is `Send + Sync`.
unsafe impl Send for Registration {}
// SAFETY: Shared access only reads fields that never change after initialisation (see
// the type invariants).
unsafe impl Sync for Registration {}

const OWNER: *mut bindings::module = <crate::LocalModule as ModuleMetadata>::THIS_MODULE.as_ptr();

// The trampolines hand `&OpenFile` to whichever thread calls into the file, several at
// once, and `release` drops it on yet another: it must be `Send + Sync`.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<OpenFile>();
};

/// A `file_operations` in a `static` (one address for the module's lifetime, as the
/// `cdev` keeps a pointer to it).
#[repr(transparent)]
struct Fops(bindings::file_operations);

// SAFETY: The table is never written after compile time; the kernel only reads it. (Its
// raw pointers, `owner` and the functions, make the bindgen type `!Sync`.)
unsafe impl Sync for Fops {}

/// The `file_operations` of every device. `llseek` stays `None` and `open` calls
/// `stream_open()`, so `lseek`/`pread`/`pwrite` fail `ESPIPE` as on a FIFO. `owner`
/// makes `chrdev_open()` pin the module while a file is open, as `cdev.owner` does too
/// (`rmmod` then fails: `delete_module()` returns `EWOULDBLOCK`). `compat_ioctl` is
/// `compat_ptr_ioctl()`, as in C twin and in 7.3's `MiscDevice`: the ABI has one layout
/// for 32- and 64-bit programs (fixed-size fields, no pointers in the structs), so a 32-bit
/// program's ioctl only needs its pointer argument converted.
static FOPS: Fops = Fops(bindings::file_operations {
    owner: OWNER,
    open: Some(open),
    release: Some(release),
    read_iter: Some(read_iter),
    write_iter: Some(write_iter),
    poll: Some(poll),
    unlocked_ioctl: Some(ioctl),
    #[cfg(CONFIG_COMPAT)]
    compat_ioctl: bindings::compat_ptr_ioctl,
    show_fdinfo: Some(show_fdinfo),
    ..pin_init::zeroed()
});

fn mkdev(base: bindings::dev_t, i: usize) -> bindings::dev_t {
    base + i as bindings::dev_t
}

impl Registration {
    pub(crate) fn new(name: &'static CStr, fifos: Devices) -> impl PinInit<Self, Error> {
        let init = move |slot: *mut Self| -> Result {
            let count = fifos.len();
            let mut base: bindings::dev_t = 0;
            // SAFETY: `base` is a valid out-pointer; `name` is a static C string.
            to_result(unsafe {
                bindings::alloc_chrdev_region(&mut base, 0, count as u32, name.as_char_ptr())
            })?;
            // SAFETY: `name` is a static C string (the class keeps the pointer).
            let class = match from_err_ptr(unsafe { bindings::class_create(name.as_char_ptr()) }) {
                Ok(class) => class,
                Err(e) => {
                    // SAFETY: We registered this region just above.
                    unsafe { bindings::unregister_chrdev_region(base, count as u32) };
                    return Err(e);
                }
            };
            // SAFETY: `slot` is valid for writes and pinned (`pin_init_from_closure`); the
            // fields are written before `cdev_add` publishes the device (type invariant).
            unsafe {
                (&raw mut (*slot).fifos).write(fifos);
                (&raw mut (*slot).base).write(base);
                (&raw mut (*slot).class).write(class);
            }
            // The nodes first: opening one finds no `cdev` yet and fails `ENXIO`.
            let mut ret = Ok(());
            let mut created = 0;
            while created < count {
                // SAFETY: `class` is live; the format takes one `unsigned int`.
                let dev = unsafe {
                    bindings::device_create(
                        class,
                        core::ptr::null_mut(),
                        mkdev(base, created),
                        core::ptr::null_mut(),
                        c"%s%u".as_char_ptr(),
                        name.as_char_ptr(),
                        created as c_uint,
                    )
                };
                if let Err(e) = from_err_ptr(dev) {
                    ret = Err(e);
                    break;
                }
                created += 1;
            }
            if ret.is_ok() {
                // SAFETY: `slot` is valid and pinned, so the `cdev` never moves.
                let cdev = unsafe { Opaque::cast_into(&raw const (*slot).cdev) };
                // SAFETY: `cdev` points to writable memory for a `struct cdev`; `FOPS` is a
                // `static`.
                unsafe {
                    bindings::cdev_init(cdev, &FOPS.0);
                    (*cdev).owner = OWNER;
                }
                // The last fallible step (type invariant): the devices become openable only
                // if it succeeds, and then the init succeeds.
                // SAFETY: `cdev` is initialised; `base` is our region of `count` minors.
                ret = to_result(unsafe { bindings::cdev_add(cdev, base, count as u32) });
            }
            if ret.is_err() {
                // SAFETY: Undo the steps above in reverse order: the devices we created,
                // the class, the region; then drop the `fifos` we moved into `slot`,
                // which the caller will treat as uninitialised. No file was opened: the
                // `cdev` was never added.
                unsafe {
                    for i in 0..created {
                        bindings::device_destroy(class, mkdev(base, i));
                    }
                    bindings::class_destroy(class);
                    bindings::unregister_chrdev_region(base, count as u32);
                    core::ptr::drop_in_place(&raw mut (*slot).fifos);
                }
            }
            ret
        };
        // SAFETY: On `Ok` every field of `*slot` was initialised; on `Err` nothing is
        // left registered and the only written field with a destructor was dropped.
        unsafe { pin_init::pin_init_from_closure(init) }
    }

    /// The registration whose `cdev` is `cdev`.
    ///
    /// # Safety
    ///
    /// `cdev` must be the `cdev` field of a `Registration` that stays alive for `'a`.
    unsafe fn from_cdev<'a>(cdev: *mut bindings::cdev) -> &'a Registration {
        let field = Opaque::cast_from(cdev).cast_mut();
        // SAFETY: By the caller, `field` is the `cdev` field of a `Registration` alive for
        // `'a`.
        unsafe { &*kernel::container_of!(field, Registration, cdev) }
    }
}

#[pinned_drop]
impl PinnedDrop for Registration {
    fn drop(self: Pin<&mut Self>) {
        let count = self.fifos.len();
        // SAFETY: By the type invariants these were all created by `new`; removing the
        // devices and the cdev first stops new opens. Open files cannot exist here: each
        // holds a reference on this module, which is being unloaded.
        unsafe {
            for i in 0..count {
                bindings::device_destroy(self.class, mkdev(self.base, i));
            }
            bindings::class_destroy(self.class);
            bindings::cdev_del(self.cdev.get());
            bindings::unregister_chrdev_region(self.base, count as u32);
        }
    }
}

/// The open file behind `file`.
///
/// # Safety
///
/// `file` must be a file of ours between a successful `open` and its `release`.
unsafe fn open_file<'a>(file: *mut bindings::file) -> &'a OpenFile {
    // SAFETY: By the caller, `private_data` holds the `KBox<OpenFile>` from `open`, which
    // `release` (not yet run) is the only one to take back.
    unsafe { <KBox<OpenFile> as ForeignOwnable>::borrow((*file).private_data) }
}

/// # Safety
///
/// Called by `chrdev_open()` for an inode of our region with the file being opened.
unsafe extern "C" fn open(inode: *mut bindings::inode, raw: *mut bindings::file) -> c_int {
    // SAFETY: `chrdev_open()` found our `cdev` by the inode's device number and holds a
    // reference on it and on this module (its owner) for the whole call, so the
    // `Registration` around it is alive. A file opened here keeps the module reference
    // until after its `release` (type invariants), so the `Registration` outlives every use
    // of this reference: the `OpenFile` made here lives from `open` to `release`.
    let reg: &'static Registration =
        unsafe { Registration::from_cdev((*inode).__bindgen_anon_5.i_cdev) };
    // SAFETY: `inode` is valid for the call.
    let minor = unsafe { (*inode).i_rdev } & bindings::MINORMASK;
    let index = minor.wrapping_sub(reg.base & bindings::MINORMASK) as usize;
    let Some(fifo) = reg.fifos.get(index) else {
        return ENXIO.to_errno();
    };
    // SAFETY: `inode` and `raw` are the inode and file being opened. Marks the file as a
    // stream (no file position): `lseek`/`pread`/`pwrite` fail `ESPIPE`.
    unsafe { bindings::stream_open(inode, raw) };
    // SAFETY: The file is valid for the call and nobody holds an `fdget_pos` on it.
    let file = unsafe { File::from_raw_file(raw) };
    match OpenFile::open(fifo, file) {
        Ok(of) => {
            // SAFETY: `open` may set the private data; `release` takes it back.
            unsafe { (*raw).private_data = of.into_foreign() };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// # Safety
///
/// Called once by the VFS when the last reference to a file of ours goes away.
unsafe extern "C" fn release(_inode: *mut bindings::inode, raw: *mut bindings::file) -> c_int {
    // SAFETY: `open` stored a `KBox<OpenFile>` here; release is the last user.
    drop(unsafe { <KBox<OpenFile> as ForeignOwnable>::from_foreign((*raw).private_data) });
    0
}

/// # Safety
///
/// Called by the VFS with a valid kiocb of one of our files and a destination iterator.
unsafe extern "C" fn read_iter(
    kiocb: *mut bindings::kiocb,
    iter: *mut bindings::iov_iter,
) -> isize {
    // SAFETY: The kiocb is valid for the call; its file is ours and open.
    let raw = unsafe { (*kiocb).ki_filp };
    // SAFETY: As above; no `fdget_pos` without `f_pos_lock` on a stream file.
    let file = unsafe { File::from_raw_file(raw) };
    // SAFETY: `iter` is a valid `ITER_DEST` iterator used only through this reference.
    let iov = unsafe { IovIterDest::from_raw(iter) };
    // SAFETY: `raw` is between `open` and `release`.
    match unsafe { open_file(raw) }.read(file, iov) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// # Safety
///
/// Called by the VFS with a valid kiocb of one of our files and a source iterator.
unsafe extern "C" fn write_iter(
    kiocb: *mut bindings::kiocb,
    iter: *mut bindings::iov_iter,
) -> isize {
    // SAFETY: The kiocb is valid for the call; its file is ours and open.
    let raw = unsafe { (*kiocb).ki_filp };
    // SAFETY: As above; no `fdget_pos` without `f_pos_lock` on a stream file.
    let file = unsafe { File::from_raw_file(raw) };
    // SAFETY: `iter` is a valid `ITER_SOURCE` iterator used only through this reference.
    let iov = unsafe { IovIterSource::from_raw(iter) };
    // SAFETY: `raw` is between `open` and `release`.
    match unsafe { open_file(raw) }.write(file, iov) {
        Ok(n) => n as isize,
        Err(e) => e.to_errno() as isize,
    }
}

/// # Safety
///
/// Called by the VFS with one of our open files and a valid (or null) poll table.
unsafe extern "C" fn poll(
    raw: *mut bindings::file,
    table: *mut bindings::poll_table_struct,
) -> bindings::__poll_t {
    // SAFETY: The file is valid for the call; no `fdget_pos` without `f_pos_lock`.
    let file = unsafe { File::from_raw_file(raw) };
    // SAFETY: `table` is null or valid for the call.
    let table = unsafe { PollTable::from_raw(table) };
    // SAFETY: `raw` is between `open` and `release`.
    unsafe { open_file(raw) }.poll(file, &table)
}

/// # Safety
///
/// Called by the VFS with one of our open files.
unsafe extern "C" fn ioctl(raw: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
    // SAFETY: `raw` is between `open` and `release`.
    match unsafe { open_file(raw) }.ioctl(cmd, arg) {
        Ok(v) => v as c_long,
        Err(e) => e.to_errno() as c_long,
    }
}

/// # Safety
///
/// Called by procfs with a seq_file it owns for the call and one of our open files.
unsafe extern "C" fn show_fdinfo(m: *mut bindings::seq_file, raw: *mut bindings::file) {
    // SAFETY: `raw` is between `open` and `release`.
    let (read, written) = unsafe { open_file(raw) }.byte_counts();
    // SAFETY: `m` is valid for the call; the format takes two `unsigned long long`s, as
    // passed. (The C call, not `seq_print!`: 0.1 KB less formatting code for two numbers.)
    unsafe {
        bindings::seq_printf(
            m,
            c"bytes_read:\t%llu\nbytes_written:\t%llu\n".as_char_ptr(),
            read as c_ulonglong,
            written as c_ulonglong,
        )
    };
}

/// `send_sig(SIGPIPE, current, 0)`, as `pipe_write()` does (rfifo calls it after dropping
/// the device lock).
pub(crate) fn send_sigpipe_to_current() {
    // SAFETY: The current task is valid while it runs this code. `send_sig()` takes the
    // task's `siglock` itself (with interrupts off) and does not sleep, so process context
    // is enough, with or without sleeping locks held (`pipe_write()` holds `pipe->mutex`).
    unsafe { bindings::send_sig(bindings::SIGPIPE as c_int, Task::current_raw(), 0) };
}

/// `capable(CAP_SYS_ADMIN)` for the current task. Call it only right before the privileged
/// action: on success it marks the task as having used a privilege (`PF_SUPERPRIV`, which
/// process accounting reports), and the LSM hook may write an audit record either way.
pub(crate) fn capable_sys_admin() -> bool {
    // SAFETY: `capable()` checks the current task's effective capabilities through the LSM
    // hook; besides the answer its effects are on the current task only (`PF_SUPERPRIV`
    // on success, an audit record). Its one requirement, process context with a current
    // task, holds in `ioctl`.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as c_int) }
}
