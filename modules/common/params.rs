// SPDX-License-Identifier: GPL-2.0

//! Module parameters that show up in sysfs: the chapter's `permissions:` key.
//!
//! Linux 7.3's `module!` macro accepts `params: { name: type { default, description } }` but has
//! no `permissions` key: it registers every parameter with permission 0 (no file under
//! `/sys/module/<name>/parameters/`), without a `get` callback, and its values can only be set
//! once, at load time. This file fills that gap the way C's `module_param_cb()` does: for every
//! parameter it places a `struct kernel_param` in the module's `__param` section (next to the
//! ones `module!` emits), with the permission bits you ask for and `set`/`get` callbacks written
//! in Rust, plus the `parm`/`parmtype` strings `modinfo` shows.
//!
//! Use it by including this file as a module called `params` and declaring the parameters next
//! to `module!`; the syntax is the chapter's:
//!
//! ```ignore
//! #[path = "../common/params.rs"]
//! mod params;
//!
//! params::module_params! {
//!     my_param: i32 {
//!         default: 42,
//!         permissions: 0o644,
//!         description: "An example parameter",
//!     },
//! }
//!
//! // Anywhere in the module (init, file operations, ...):
//! let value = my_param.get();
//! ```
//!
//! Semantics (kept close to C's `param_ops_*`):
//!
//! - Supported types: `i32` (`int`), `u32` (`uint`), `i64` (`long`), `u64` (`ullong`),
//!   `bool` (`bool`) and [`ParamString<N>`] (`string`, a copy of at most `N` bytes, like
//!   `module_param_string()`). (`module!`'s own parameters show Rust names: `parmtype=x:u32`.)
//! - Integers accept what `kstrtol()` accepts (decimal, `0x` hex, `0` octal, sign). A value that
//!   does not parse or does not fit the type is rejected with `EINVAL`, so `insmod` fails and the
//!   kernel logs "`<value>' invalid for parameter `<name>'". (C's `param_ops_int` returns `ERANGE`
//!   for out-of-range numbers; the 7.3 `module!` parameters, like these, return `EINVAL`.)
//! - `bool` accepts `kstrtobool()` spellings (`y/n/1/0/on/off`), and a bare `name` (no `=`)
//!   means `true`, as in C. sysfs shows `Y`/`N`.
//! - Strings longer than `N` bytes are rejected with `EINVAL` (C's `param_ops_string` uses
//!   `ENOSPC`).
//! - One trailing newline is ignored, so `echo 7 > /sys/module/.../parameters/x` works.
//! - Permissions are checked at compile time like C's `VERIFY_OCTAL_PERMISSIONS()`: at most
//!   `0o777`, never world-writable, and owner >= group >= other for reading (owner >= group for
//!   writing). Permission 0 means "not in sysfs", as with `module!`.
//!
//! Locking: like C, the value is protected by the module's parameter mutex
//! (`kernel_param_lock()`). The kernel takes it around the `set`/`get` callbacks (at load time
//! and for sysfs reads/writes); [`Param::get`] takes it too, so reading a parameter that root may
//! be rewriting through sysfs is race-free.
//!
//! Limitations: loadable modules only (out-of-tree modules always are); the `mod` must be named
//! `params` because the macro refers to `crate::params`.

#![allow(dead_code)]

use core::cell::UnsafeCell;
use kernel::{
    bindings,
    fmt::{self, Write},
    page::PAGE_SIZE,
    prelude::*,
    str::{
        kstrtobool_bytes,
        parse_int::ParseInt,
        BStr,
        Formatter, //
    },
};

/// A value type that can be a module parameter declared with [`module_params!`].
pub(crate) trait ParamValue: Copy + Send + 'static {
    /// The type name `modinfo` shows (`parmtype`); C's names are used (`int`, `bool`, ...).
    const TYPE_NAME: &'static str;

    /// Whether the parameter may be given without a value (`name` instead of `name=value`).
    const NOARG: bool = false;

    /// Parses a value given at load time or written to sysfs (one trailing newline removed).
    ///
    /// `arg` is `None` only for [`Self::NOARG`] types given without a value.
    fn parse(arg: Option<&[u8]>) -> Result<Self>;

    /// Writes the value as sysfs shows it (the newline is added by the caller).
    fn show(&self, f: &mut Formatter<'_>) -> fmt::Result;
}

macro_rules! impl_int_param {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl ParamValue for $ty {
            const TYPE_NAME: &'static str = $name;

            fn parse(arg: Option<&[u8]>) -> Result<Self> {
                <$ty as ParseInt>::from_str(BStr::from_bytes(arg.ok_or(EINVAL)?))
            }

            fn show(&self, f: &mut Formatter<'_>) -> fmt::Result {
                f.write_fmt(fmt!("{}", self))
            }
        }
    )*};
}

impl_int_param!(i32 => "int", u32 => "uint", i64 => "long", u64 => "ullong");

impl ParamValue for bool {
    const TYPE_NAME: &'static str = "bool";
    const NOARG: bool = true;

    fn parse(arg: Option<&[u8]>) -> Result<Self> {
        match arg {
            None => Ok(true),
            // `kstrtobool()` semantics, as C's `param_set_bool()`.
            Some(b) => kstrtobool_bytes(b),
        }
    }

    fn show(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(if *self { "Y" } else { "N" })
    }
}

/// A string parameter: a copy of at most `N` bytes (C's `module_param_string()`).
#[derive(Clone, Copy)]
pub(crate) struct ParamString<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

impl<const N: usize> ParamString<N> {
    /// The string `s`; fails to compile if `s` is longer than `N` bytes.
    pub(crate) const fn new(s: &str) -> Self {
        let src = s.as_bytes();
        assert!(
            src.len() <= N,
            "default value longer than the parameter's capacity"
        );
        let mut bytes = [0u8; N];
        let mut i = 0;
        while i < src.len() {
            bytes[i] = src[i];
            i += 1;
        }
        Self {
            len: src.len(),
            bytes,
        }
    }

    /// The string's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The string as a [`BStr`] (prints non-printable bytes escaped).
    pub(crate) fn as_bstr(&self) -> &BStr {
        BStr::from_bytes(self.as_bytes())
    }
}

impl<const N: usize> ParamValue for ParamString<N> {
    const TYPE_NAME: &'static str = "string";

    fn parse(arg: Option<&[u8]>) -> Result<Self> {
        let src = arg.ok_or(EINVAL)?;
        if src.len() > N {
            return Err(EINVAL);
        }
        let mut bytes = [0u8; N];
        bytes[..src.len()].copy_from_slice(src);
        Ok(Self {
            len: src.len(),
            bytes,
        })
    }

    fn show(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_fmt(fmt!("{}", self.as_bstr()))
    }
}

/// A module parameter's value; declared by [`module_params!`], read with [`Param::get`].
pub(crate) struct Param<T> {
    value: UnsafeCell<T>,
    module: *mut bindings::module,
}

// SAFETY: `value` is only accessed with the owning module's parameter mutex held (by the kernel
// around `set_param`/`get_param`, by `Param::get` otherwise), so shared references may be used
// from any thread. `T: Send` because values written by one thread are read by others. `module`
// is only passed to `kernel_param_lock()`/`kernel_param_unlock()`, which may be called anywhere.
unsafe impl<T: Send> Sync for Param<T> {}

impl<T: ParamValue> Param<T> {
    /// A parameter with value `default`, protected by `module`'s parameter mutex.
    ///
    /// # Safety
    ///
    /// `module` must point to the `struct module` of the module this code is part of
    /// (`__this_module`), as [`module_params!`] passes.
    #[doc(hidden)]
    pub(crate) const unsafe fn new(default: T, module: *mut bindings::module) -> Self {
        Self {
            value: UnsafeCell::new(default),
            module,
        }
    }

    /// The current value (the default, the `insmod` value or the last sysfs write).
    pub(crate) fn get(&self) -> T {
        let _guard = ParamLock::new(self.module);
        // SAFETY: The module's parameter mutex is held (`_guard`), and every access to `value`
        // happens with that mutex held (see the `Sync` impl), so there is no concurrent write.
        unsafe { *self.value.get() }
    }

    #[doc(hidden)]
    pub(crate) const fn as_void_ptr(&'static self) -> *mut c_void {
        core::ptr::from_ref(self).cast_mut().cast()
    }
}

/// Holds a module's parameter mutex (`kernel_param_lock()`); released on drop.
struct ParamLock(*mut bindings::module);

impl ParamLock {
    fn new(module: *mut bindings::module) -> Self {
        // SAFETY: `module` is `&__this_module` of the module this code belongs to (a `Param::new`
        // requirement), which is live while its code runs. The lock is released in `drop`.
        unsafe { bindings::kernel_param_lock(module) };
        Self(module)
    }
}

impl Drop for ParamLock {
    fn drop(&mut self) {
        // SAFETY: `new` locked this module's parameter mutex and we are its owner.
        unsafe { bindings::kernel_param_unlock(self.0) };
    }
}

/// Drops one trailing newline (sysfs writes from `echo` carry one).
fn strip_newline(b: &[u8]) -> &[u8] {
    b.strip_suffix(b"\n").unwrap_or(b)
}

/// `kernel_param_ops.set` for a `Param<T>`.
///
/// # Safety
///
/// `val` is null or a NUL-terminated string valid for the call; `kp` points to a `kernel_param`
/// emitted by [`module_params!`] (so its `arg` is a `&'static Param<T>`), and the caller holds
/// `kernel_param_lock(kp->mod)`. The kernel's `parse_one()` and `param_attr_store()` guarantee
/// all of this.
unsafe extern "C" fn set_param<T: ParamValue>(
    val: *const c_char,
    kp: *const bindings::kernel_param,
) -> c_int {
    let arg = if val.is_null() {
        None
    } else {
        // SAFETY: `val` is non-null, NUL-terminated and valid for the call (function contract).
        let val = unsafe { CStr::from_char_ptr(val) };
        Some(strip_newline(val.to_bytes()))
    };
    match T::parse(arg) {
        Ok(new) => {
            // SAFETY: `kp` is valid and its `arg` points to a `static Param<T>` (contract).
            let param = unsafe { &*(*kp).__bindgen_anon_1.arg.cast::<Param<T>>() };
            // SAFETY: The caller holds the parameter mutex, so nothing else accesses `value`.
            unsafe { *param.value.get() = new };
            0
        }
        Err(e) => e.to_errno(),
    }
}

/// `kernel_param_ops.get` for a `Param<T>`: what reading the sysfs file shows.
///
/// # Safety
///
/// `buffer` is valid for writes of `PAGE_SIZE` bytes; `kp` as for [`set_param`]. The kernel's
/// `param_attr_show()` guarantees this.
unsafe extern "C" fn get_param<T: ParamValue>(
    buffer: *mut c_char,
    kp: *const bindings::kernel_param,
) -> c_int {
    // SAFETY: `buffer` is a PAGE_SIZE sysfs buffer that we may write (function contract).
    let buf = unsafe { core::slice::from_raw_parts_mut(buffer.cast::<u8>(), PAGE_SIZE) };
    // SAFETY: `kp` is valid and its `arg` points to a `static Param<T>` (contract).
    let param = unsafe { &*(*kp).__bindgen_anon_1.arg.cast::<Param<T>>() };
    // SAFETY: The caller holds the parameter mutex, so nothing writes `value` concurrently.
    let value = unsafe { *param.value.get() };
    let mut f = Formatter::new(buf);
    match value.show(&mut f).and_then(|()| f.write_str("\n")) {
        Ok(()) => f.bytes_written() as c_int,
        Err(_) => ENOSPC.to_errno(),
    }
}

/// The `kernel_param_ops` of a `T` parameter (the macro puts it in a `static`).
#[doc(hidden)]
pub(crate) const fn ops<T: ParamValue>() -> bindings::kernel_param_ops {
    bindings::kernel_param_ops {
        flags: if T::NOARG {
            bindings::KERNEL_PARAM_OPS_FL_NOARG
        } else {
            0
        },
        set: Some(set_param::<T>),
        get: Some(get_param::<T>),
        free: None,
    }
}

/// C's `VERIFY_OCTAL_PERMISSIONS()`, evaluated at compile time by the macro.
#[doc(hidden)]
pub(crate) const fn checked_permissions(perm: u16) -> u16 {
    let (user, group, other) = ((perm >> 6) & 7, (perm >> 3) & 7, perm & 7);
    assert!(perm <= 0o777, "parameter permissions must be at most 0o777");
    assert!(
        other & 2 == 0,
        "module parameters must not be world-writable"
    );
    assert!(
        (user & 4) >= (group & 4) && (group & 4) >= (other & 4),
        "readable by group/others but not by the owner"
    );
    assert!(
        (user & 2) >= (group & 2),
        "writable by the group but not by the owner"
    );
    perm
}

/// Total length of `parts` (for building `.modinfo` strings at compile time).
#[doc(hidden)]
pub(crate) const fn concat_len(parts: &[&str]) -> usize {
    let mut len = 0;
    let mut i = 0;
    while i < parts.len() {
        len += parts[i].len();
        i += 1;
    }
    len
}

/// `parts` concatenated into an array of exactly `N` bytes (`N == concat_len(parts)`).
#[doc(hidden)]
pub(crate) const fn concat<const N: usize>(parts: &[&str]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut pos = 0;
    let mut i = 0;
    while i < parts.len() {
        let b = parts[i].as_bytes();
        let mut j = 0;
        while j < b.len() {
            out[pos] = b[j];
            pos += 1;
            j += 1;
        }
        i += 1;
    }
    assert!(pos == N);
    out
}

/// Declares module parameters with sysfs permissions; see the [module docs](self).
///
/// Each `name: Type { default: .., permissions: 0o.., description: "..", }` becomes a
/// `static name: Param<Type>` at the invocation site, a `kernel_param` in `__param` and the
/// `parm=`/`parmtype=` `.modinfo` strings.
macro_rules! module_params {
    ($(
        $name:ident: $ty:ty {
            default: $default:expr,
            permissions: $perm:expr,
            description: $desc:literal $(,)?
        }
    ),* $(,)?) => {$(
        #[allow(non_upper_case_globals)]
        static $name: $crate::params::Param<$ty> = {
            const DEFAULT: $ty = $default;
            // SAFETY: `__this_module` is the `struct module` of the module being built.
            unsafe {
                $crate::params::Param::new(
                    DEFAULT,
                    ::core::ptr::addr_of_mut!(::kernel::bindings::__this_module),
                )
            }
        };

        const _: () = {
            static OPS: ::kernel::bindings::kernel_param_ops = $crate::params::ops::<$ty>();

            #[link_section = "__param"]
            #[used(compiler)]
            static PARAM: ::kernel::module_param::KernelParam =
                ::kernel::module_param::KernelParam::new(::kernel::bindings::kernel_param {
                    name: ::core::concat!(::core::stringify!($name), "\0")
                        .as_ptr()
                        .cast::<::kernel::ffi::c_char>(),
                    mod_: ::core::ptr::addr_of_mut!(::kernel::bindings::__this_module),
                    ops: &OPS,
                    perm: $crate::params::checked_permissions($perm),
                    level: -1,
                    flags: 0,
                    __bindgen_anon_1: ::kernel::bindings::kernel_param__bindgen_ty_1 {
                        arg: $name.as_void_ptr(),
                    },
                });

            const PARMTYPE: &[&str] = &[
                "parmtype=",
                ::core::stringify!($name),
                ":",
                <$ty as $crate::params::ParamValue>::TYPE_NAME,
                "\0",
            ];
            const PARMTYPE_LEN: usize = $crate::params::concat_len(PARMTYPE);
            #[link_section = ".modinfo"]
            #[used(compiler)]
            static MODINFO_PARMTYPE: [u8; PARMTYPE_LEN] = $crate::params::concat(PARMTYPE);

            const PARM: &[&str] = &["parm=", ::core::stringify!($name), ":", $desc, "\0"];
            const PARM_LEN: usize = $crate::params::concat_len(PARM);
            #[link_section = ".modinfo"]
            #[used(compiler)]
            static MODINFO_PARM: [u8; PARM_LEN] = $crate::params::concat(PARM);
        };
    )*};
}

pub(crate) use module_params;
