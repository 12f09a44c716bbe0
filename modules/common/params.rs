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
//! - Supported types: `i32` (`int`), `u32` (`uint`), `i64` and `isize` (`long`), `u64`
//!   (`ullong`), `usize` (`ulong`), `bool` (`bool`) and [`ParamString<N>`] (`string`, a copy of
//!   at most `N` bytes, like `module_param_string()`). (`module!`'s own parameters show Rust
//!   names: `parmtype=x:u32`.)
//! - A parameter given more than once (`insmod m.ko x=1 x=2`, or `options m x=1` in
//!   `/etc/modprobe.d` plus `modprobe m x=2`) takes the last value, as in C. (7.3's `module!`
//!   parameters can be set only once: a repeat fails the load with `EEXIST`, which `modprobe`
//!   takes for "already loaded" and exits 0 without loading anything.) Permission 0 declares a
//!   parameter that is set at load time only, like `module!`'s, but with C's semantics.
//! - Integers are parsed exactly as the C function of the type parses them with base 0
//!   (`kstrtoint()`, `kstrtouint()`, `kstrtol()`/`kstrtoll()`, `kstrtoul()`, `kstrtoull()`;
//!   [`kstrtox`] reimplements `lib/kstrtox.c`): an optional `+` (or `-` for signed types only),
//!   then `0x`/`0X` and at least one hex digit, or a leading `0` for octal, or decimal; no other
//!   prefix (`0b`, `0o`), no sign after a prefix or a second sign, no whitespace, and one
//!   trailing newline at most. A value that does not parse or does not fit the type is rejected
//!   with `EINVAL` (where C says `ERANGE` for numbers out of range; the 7.3 `module!` parameters,
//!   like these, return `EINVAL`), so `insmod` fails and the kernel logs
//!   "`<value>' invalid for parameter `<name>'".
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
//! Each parameter becomes a `static` named like the parameter, private to the module where the
//! macro is invoked; `pub(crate) name: Type { .. }` makes it visible to the rest of the crate
//! (for example when the macro is invoked in a submodule, so that the statics do not clash with
//! local variables of the same name: a `let` cannot shadow a `static`).
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

    /// Parses a value given at load time or written to sysfs, as the `set` callback receives it
    /// (a sysfs write may end with a newline).
    ///
    /// `arg` is `None` only for [`Self::NOARG`] types given without a value.
    fn parse(arg: Option<&[u8]>) -> Result<Self>;

    /// Writes the value as sysfs shows it (the newline is added by the caller).
    fn show(&self, f: &mut Formatter<'_>) -> fmt::Result;
}

/// C's `_kstrtoull(s, 0, ..)`: the digits of an unsigned number after the optional sign.
///
/// Base detection: `0x`/`0X` followed by a hex digit means hex (the prefix is skipped), any
/// other leading `0` octal (the `0` is a digit), else decimal. At least one digit, then at most
/// one `\n`. Overflow is `ERANGE`, even when garbage follows (C checks it first).
fn kstrtoull_digits(s: &[u8]) -> Result<u64> {
    let (radix, digits) = match s {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16u64, &s[2..]),
        [b'0', ..] => (8, s),
        _ => (10, s),
    };
    let mut value = 0u64;
    let mut overflow = false;
    let mut used = 0;
    for &c in digits {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => break,
        };
        if u64::from(digit) >= radix {
            break;
        }
        match value
            .checked_mul(radix)
            .and_then(|v| v.checked_add(u64::from(digit)))
        {
            Some(v) => value = v,
            None => overflow = true,
        }
        used += 1;
    }
    if overflow {
        return Err(ERANGE);
    }
    if used == 0 {
        return Err(EINVAL);
    }
    match &digits[used..] {
        [] | [b'\n'] => Ok(value),
        _ => Err(EINVAL),
    }
}

/// C's `kstrtoull(s, 0, ..)`: one optional leading `+`.
fn kstrtoull(s: &[u8]) -> Result<u64> {
    kstrtoull_digits(s.strip_prefix(b"+").unwrap_or(s))
}

/// C's `kstrtoll(s, 0, ..)`: one optional leading `-` or `+`.
#[inline]
fn kstrtoll(s: &[u8]) -> Result<i64> {
    if let Some(digits) = s.strip_prefix(b"-") {
        // Two's complement negation in `u64`, as C's `-tmp`: a magnitude above 2^63 gives a
        // positive result, which is out of range. `-0` is 0.
        let neg = kstrtoull_digits(digits)?.wrapping_neg() as i64;
        if neg > 0 {
            return Err(ERANGE);
        }
        Ok(neg)
    } else {
        i64::try_from(kstrtoull(s)?).map_err(|_| ERANGE)
    }
}

/// Integer types parsed like their C `kstrto*()` function with base 0.
pub(crate) trait Kstrtox: Sized {
    /// Parses `s` (the C string without its NUL) like the type's `kstrto*()`: the same values,
    /// and the same errors (`EINVAL` for a malformed string, `ERANGE` for a number that does not
    /// fit).
    fn kstrtox(s: &[u8]) -> Result<Self>;
}

// The `#[inline]` on the parsers below keeps them out of a module that does not use their
// type: a module is an rlib, which otherwise compiles every non-generic trait method of it
// (and what they call), used or not (1.7 KB of rfifo, which has `u32` parameters only).
macro_rules! impl_kstrtox {
    ($via:ident: $($ty:ty),*) => {$(
        impl Kstrtox for $ty {
            #[inline]
            fn kstrtox(s: &[u8]) -> Result<Self> {
                <$ty>::try_from($via(s)?).map_err(|_| ERANGE)
            }
        }
    )*};
}

// `kstrtoint()`/`kstrtol()` are `kstrtoll()` plus a range check, `kstrtouint()`/`kstrtoul()`
// are `kstrtoull()` plus a range check.
impl_kstrtox!(kstrtoll: i32, i64, isize);
impl_kstrtox!(kstrtoull: u32, u64, usize);

/// Parses `s` as C's `kstrto*()` for `T` (base 0) does; see [`Kstrtox`].
pub(crate) fn kstrtox<T: Kstrtox>(s: &[u8]) -> Result<T> {
    T::kstrtox(s)
}

macro_rules! impl_int_param {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl ParamValue for $ty {
            const TYPE_NAME: &'static str = $name;

            #[inline]
            fn parse(arg: Option<&[u8]>) -> Result<Self> {
                // `kstrto*()` handles the trailing newline itself. Out of range is `EINVAL`
                // here (module docs).
                kstrtox::<$ty>(arg.ok_or(EINVAL)?).map_err(|_| EINVAL)
            }

            #[inline]
            fn show(&self, f: &mut Formatter<'_>) -> fmt::Result {
                f.write_fmt(fmt!("{}", self))
            }
        }
    )*};
}

impl_int_param!(
    i32 => "int",
    u32 => "uint",
    i64 => "long",
    isize => "long",
    u64 => "ullong",
    usize => "ulong",
);

impl ParamValue for bool {
    const TYPE_NAME: &'static str = "bool";
    const NOARG: bool = true;

    #[inline]
    fn parse(arg: Option<&[u8]>) -> Result<Self> {
        match arg {
            None => Ok(true),
            // `kstrtobool()` semantics, as C's `param_set_bool()`.
            Some(b) => kstrtobool_bytes(strip_newline(b)),
        }
    }

    #[inline]
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
        let src = strip_newline(arg.ok_or(EINVAL)?);
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
        Some(val.to_bytes())
    };
    match T::parse(arg) {
        Ok(new) => {
            // SAFETY: `kp` is valid and its `arg` points to a `static Param<T>` (contract).
            let param = unsafe { &*(*kp).__bindgen_anon_1.arg.cast::<Param<T>>() };
            // Every assignment overwrites the value, so of a parameter given several times the
            // last value wins, as with C's `param_set_*()`.
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
/// `static name: Param<Type>` at the invocation site (with the visibility written before the
/// name, if any: `pub(crate) name: Type { .. }`), a `kernel_param` in `__param` and the
/// `parm=`/`parmtype=` `.modinfo` strings.
macro_rules! module_params {
    ($(
        $vis:vis $name:ident: $ty:ty {
            default: $default:expr,
            permissions: $perm:expr,
            description: $desc:literal $(,)?
        }
    ),* $(,)?) => {$(
        #[allow(non_upper_case_globals)]
        $vis static $name: $crate::params::Param<$ty> = {
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
