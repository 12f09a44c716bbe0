// SPDX-License-Identifier: GPL-2.0

//! The chapter's "The module! Macro": module metadata and parameters.
//!
//! `module!` gives the module its name, authors, description and license. The chapter's
//! `my_param` (with `permissions: 0o644`) and three more parameters are declared with
//! `params::module_params!` (`modules/common/params.rs`), which registers them with sysfs
//! permissions:
//!
//! | parameter     | type  | default | sysfs mode |
//! |---------------|-------|---------|------------|
//! | `my_param`    | `i32` | 42      | 0644       |
//! | `buffer_size` | `u64` | 4096    | 0444       |
//! | `verbose`     | `bool`| false   | 0644       |
//! | `load_only`   | `u32` | 1       | (none: 0)  |
//!
//! A parameter given twice (`insmod my_module.ko my_param=1 my_param=2`, or `options my_module
//! my_param=1` in `/etc/modprobe.d/` plus `modprobe my_module my_param=2`) takes the last value,
//! as in C.
//!
//! `init` logs the values it was loaded with, and the misc device `/dev/my_module` shows the
//! current `my_param` (`my_param=<value>\n`), so a write through sysfs is visible to the module.
//! Try it in the guest (`cargo xtask run`):
//!
//! ```text
//! # insmod /lib/modules/$(uname -r)/extra/my_module.ko my_param=7 verbose
//! # dmesg | tail -1
//! my_module: loaded: my_param=7 buffer_size=4096 verbose=true load_only=1
//! # ls -l /sys/module/my_module/parameters/
//! -r--r--r-- ... buffer_size
//! -rw-r--r-- ... my_param
//! -rw-r--r-- ... verbose
//! # echo 9 > /sys/module/my_module/parameters/my_param; cat /dev/my_module
//! my_param=9
//! # insmod .../my_module.ko my_param=abc      # -> EINVAL, and in dmesg:
//! my_module: `abc' invalid for parameter `my_param'
//! ```
//!
//! Differences from the chapter's code, which targets an older `module!`:
//!
//! - `author: "..."` is now `authors: ["...", ...]` (a list; one `author=` modinfo line each).
//! - `module!` in Linux 7.3 has no `permissions` key: its parameters are registered with
//!   permission 0 (no file in `/sys/module/<name>/parameters/`), read as
//!   `module_parameters::name.value()`, and can be set only once: `name=1 name=2` fails the
//!   load with `EEXIST`, which `modprobe` takes for "already loaded" (exit 0, nothing loaded).
//!   So no parameter here uses it. `module_params!` accepts the chapter's syntax (`default`,
//!   `permissions`, `description`) and registers real `kernel_param`s with the given mode and
//!   with Rust `set`/`get` callbacks, the way C's `module_param_cb()` does; the values are read
//!   with `my_param.get()`. `load_only` has permission 0: set at load time only, like a
//!   `module!` parameter, but the last value wins.
//! - Invalid values (`my_param=abc`, `my_param=99999999999`) make `insmod` fail with `EINVAL`;
//!   the kernel logs "`<value>' invalid for parameter `my_param'" and nothing of the module
//!   stays behind. A bad write through sysfs fails the same way and keeps the old value.

use kernel::{
    fmt::Write,
    fs::{
        File,
        Kiocb, //
    },
    iov::IovIterDest,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*,
    str::Formatter,
};

#[path = "../common/params.rs"]
mod params;

module! {
    type: MyModule,
    name: "my_module",
    authors: ["Rust kernel modules workbench"],
    description: "Module metadata and parameters (chapter: The module! Macro)",
    license: "GPL",
}

params::module_params! {
    my_param: i32 {
        default: 42,
        permissions: 0o644,
        description: "An example parameter",
    },
    buffer_size: u64 {
        default: 4096,
        permissions: 0o444,
        description: "A read-only parameter (sysfs mode 0444)",
    },
    verbose: bool {
        default: false,
        permissions: 0o644,
        description: "A boolean parameter (a bare `verbose` means true)",
    },
    load_only: u32 {
        default: 1,
        permissions: 0,
        description: "Set at load time only (permission 0: not in sysfs)",
    },
}

#[pin_data(PinnedDrop)]
struct MyModule {
    #[pin]
    _dev: MiscDeviceRegistration<ParamDevice>,
}

impl kernel::InPlaceModule for MyModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pr_info!(
            "loaded: my_param={} buffer_size={} verbose={} load_only={}\n",
            my_param.get(),
            buffer_size.get(),
            verbose.get(),
            load_only.get()
        );
        try_pin_init!(Self {
            _dev <- MiscDeviceRegistration::register(MiscDeviceOptions { name: c"my_module" }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for MyModule {
    fn drop(self: Pin<&mut Self>) {
        pr_info!("unloaded: my_param={}\n", my_param.get());
    }
}

/// `/dev/my_module`: reading it shows the current value of `my_param`.
struct ParamDevice;

#[vtable]
impl MiscDevice for ParamDevice {
    type Ptr = ();

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<()> {
        Ok(())
    }

    fn read_iter(mut kiocb: Kiocb<'_, ()>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let mut buf = [0u8; 32];
        let len = {
            let mut f = Formatter::new(&mut buf);
            f.write_fmt(fmt!("my_param={}\n", my_param.get()))
                .map_err(|_| ENOSPC)?;
            f.bytes_written()
        };
        iov.simple_read_from_buffer(kiocb.ki_pos_mut(), &buf[..len])
    }
}

#[kunit_tests(my_module_params)]
mod tests {
    use super::params::{
        checked_permissions,
        kstrtox,
        Kstrtox,
        ParamString,
        ParamValue, //
    };
    use kernel::{
        bindings,
        ffi::{
            c_char,
            c_int,
            c_uint, //
        },
        prelude::*,
        str::{
            BStr,
            Formatter, //
        },
    };

    /// What sysfs would show for `v` (without the newline), in a fixed buffer.
    fn shown<T: ParamValue>(v: T, buf: &mut [u8; 32]) -> &[u8] {
        let mut f = Formatter::new(buf);
        let ok = v.show(&mut f).is_ok();
        let n = if ok { f.bytes_written() } else { 0 };
        &buf[..n]
    }

    #[test]
    fn int_values_parse_like_kstrtoint() {
        assert_eq!(i32::parse(Some(b"42")), Ok(42));
        assert_eq!(i32::parse(Some(b"-7")), Ok(-7));
        assert_eq!(i32::parse(Some(b"0x2a")), Ok(42));
        assert_eq!(i32::parse(Some(b"2147483647")), Ok(i32::MAX));
        assert_eq!(i32::parse(Some(b"-2147483648")), Ok(i32::MIN));
        assert_eq!(u64::parse(Some(b"18446744073709551615")), Ok(u64::MAX));
    }

    #[test]
    fn bad_int_values_are_einval() {
        assert_eq!(i32::parse(Some(b"abc")), Err(EINVAL));
        assert_eq!(i32::parse(Some(b"99999999999")), Err(EINVAL));
        assert_eq!(i32::parse(Some(b"2147483648")), Err(EINVAL));
        assert_eq!(i32::parse(Some(b"")), Err(EINVAL));
        assert_eq!(i32::parse(Some(b"4 2")), Err(EINVAL));
        assert_eq!(i32::parse(None), Err(EINVAL));
        assert_eq!(u64::parse(Some(b"-1")), Err(EINVAL));
    }

    #[test]
    fn bools_parse_like_kstrtobool() {
        assert_eq!(bool::parse(None), Ok(true));
        assert_eq!(bool::parse(Some(b"y")), Ok(true));
        assert_eq!(bool::parse(Some(b"1")), Ok(true));
        assert_eq!(bool::parse(Some(b"on")), Ok(true));
        assert_eq!(bool::parse(Some(b"N")), Ok(false));
        assert_eq!(bool::parse(Some(b"0")), Ok(false));
        assert_eq!(bool::parse(Some(b"off")), Ok(false));
        assert_eq!(bool::parse(Some(b"")), Err(EINVAL));
        assert_eq!(bool::parse(Some(b"x")), Err(EINVAL));
    }

    #[test]
    fn strings_are_copied_up_to_capacity() {
        let s = ParamString::<4>::parse(Some(b"abcd"));
        assert!(matches!(s, Ok(ref s) if s.as_bytes() == b"abcd"));
        assert!(ParamString::<4>::parse(Some(b"abcde")).is_err());
        assert_eq!(ParamString::<4>::new("").as_bytes(), b"");
    }

    #[test]
    fn values_show_like_c() {
        let mut buf = [0u8; 32];
        assert_eq!(shown(-42i32, &mut buf), b"-42");
        assert_eq!(shown(u64::MAX, &mut buf), b"18446744073709551615");
        assert_eq!(shown(true, &mut buf), b"Y");
        assert_eq!(shown(false, &mut buf), b"N");
        assert_eq!(shown(ParamString::<8>::new("hi"), &mut buf), b"hi");
    }

    /// Inputs for comparing the parameter parser with the C `kstrto*()` functions (base 0):
    /// prefixes, signs, whitespace, newlines, every type's limits and overflow.
    const KSTRTOX_INPUTS: &[&CStr] = &[
        c"0",
        c"1",
        c"42",
        c"-7",
        c"+5",
        c"00",
        c"0777",
        c"017",
        c"08",
        c"09",
        c"0x0",
        c"0x2a",
        c"0X2A",
        c"0xABCDEFabcdef",
        c"+0x1f",
        c"-0x10",
        c"0x",
        c"0X",
        c"0x\n",
        c"-0x",
        c"0xg",
        c"0x-5",
        c"0x+5",
        c"-+5",
        c"+-5",
        c"++5",
        c"--5",
        c"0b101",
        c"0B1",
        c"0o17",
        c"0O17",
        c"-0",
        c"+0",
        c"-00",
        c"",
        c" ",
        c" 5",
        c"5 ",
        c"\t5",
        c"5\t",
        c"+",
        c"-",
        c"\n",
        c"1\n",
        c"-1\n",
        c"0x10\n",
        c"1\n\n",
        c"\n1",
        c"1\r\n",
        c"1\r",
        c"1a",
        c"abc",
        c"-abc",
        c"1_000",
        c"1.0",
        c"1e3",
        c"\u{661}",
        c"2147483647",
        c"2147483648",
        c"-2147483648",
        c"-2147483649",
        c"4294967295",
        c"4294967296",
        c"-4294967295",
        c"0xffffffff",
        c"0x100000000",
        c"0x7fffffff",
        c"0x80000000",
        c"-0x80000000",
        c"9223372036854775807",
        c"9223372036854775808",
        c"-9223372036854775808",
        c"-9223372036854775809",
        c"0x7fffffffffffffff",
        c"0x8000000000000000",
        c"-0x8000000000000000",
        c"-0x8000000000000001",
        c"18446744073709551615",
        c"18446744073709551616",
        c"-18446744073709551615",
        c"-18446744073709551616",
        c"0xffffffffffffffff",
        c"0x10000000000000000",
        c"0xfffffffffffffffff",
        c"01777777777777777777777",
        c"02000000000000000000000",
        c"99999999999999999999999",
        c"000000000000000000000000000000042",
        c"0x00000000000000000000000000000001",
    ];

    /// What a parameter of type `T` gets for `input`: the `set` callback passes the string it
    /// gets (sysfs writes included, newline and all) to `T::parse`.
    fn param_parse<T: ParamValue>(input: &CStr) -> Result<T> {
        T::parse(Some(input.to_bytes()))
    }

    /// The C function `c` (a `kstrto*()` with base 0) on `input`.
    fn c_parse<T: Default>(
        c: unsafe extern "C" fn(*const c_char, c_uint, *mut T) -> c_int,
        input: &CStr,
    ) -> Result<T> {
        let mut value = T::default();
        // SAFETY: `input` is NUL-terminated and `value` is a valid `T` to write the result to;
        // the `kstrto*()` functions only read the string and write `*res`.
        let ret = unsafe { c(input.as_char_ptr(), 0, &mut value) };
        if ret == 0 {
            Ok(value)
        } else {
            Err(Error::from_errno(ret))
        }
    }

    /// Compares `rust` with the C function `c` over [`KSTRTOX_INPUTS`]; returns the number of
    /// inputs on which they disagree (each one logged). `same` decides whether two results
    /// agree.
    fn mismatches<T>(
        name: &str,
        c: unsafe extern "C" fn(*const c_char, c_uint, *mut T) -> c_int,
        rust: fn(&CStr) -> Result<T>,
        same: fn(&Result<T>, &Result<T>) -> bool,
    ) -> usize
    where
        T: Default + core::fmt::Debug,
    {
        let mut bad = 0;
        for input in KSTRTOX_INPUTS {
            let expected = c_parse(c, input);
            let got = rust(input);
            if !same(&got, &expected) {
                pr_err!(
                    "{}({:?}): Rust gives {:?}, C gives {:?}\n",
                    name,
                    BStr::from_bytes(input.to_bytes()),
                    got,
                    expected
                );
                bad += 1;
            }
        }
        bad
    }

    /// The same value, or both errors and the parameter's is `EINVAL` (the params docs: C's
    /// `ERANGE` is `EINVAL` for a parameter).
    fn param_agrees<T: PartialEq>(param: &Result<T>, c: &Result<T>) -> bool {
        match (param, c) {
            (Ok(a), Ok(b)) => a == b,
            (Err(e), Err(_)) => *e == EINVAL,
            _ => false,
        }
    }

    /// Exactly the same result: value, or errno (`EINVAL` or `ERANGE`).
    fn identical<T: PartialEq>(rust: &Result<T>, c: &Result<T>) -> bool {
        rust == c
    }

    #[test]
    fn int_params_parse_exactly_like_kstrtox() {
        assert_eq!(
            mismatches::<i32>("int", bindings::kstrtoint, param_parse, param_agrees),
            0
        );
        assert_eq!(
            mismatches::<u32>("uint", bindings::kstrtouint, param_parse, param_agrees),
            0
        );
        assert_eq!(
            mismatches::<i64>("long", bindings::kstrtoll, param_parse, param_agrees),
            0
        );
        assert_eq!(
            mismatches::<u64>("ullong", bindings::kstrtoull, param_parse, param_agrees),
            0
        );
        assert_eq!(
            mismatches::<usize>("ulong", bindings::_kstrtoul, param_parse, param_agrees),
            0
        );
    }

    /// Rust's `kstrtox` gives the very values and errnos of C, `ERANGE` included.
    fn rust_kstrtox<T: Kstrtox>(input: &CStr) -> Result<T> {
        kstrtox::<T>(input.to_bytes())
    }

    #[test]
    fn kstrtox_matches_c_errnos_too() {
        assert_eq!(
            mismatches::<i32>("kstrtoint", bindings::kstrtoint, rust_kstrtox, identical),
            0
        );
        assert_eq!(
            mismatches::<u32>("kstrtouint", bindings::kstrtouint, rust_kstrtox, identical),
            0
        );
        assert_eq!(
            mismatches::<i64>("kstrtoll", bindings::kstrtoll, rust_kstrtox, identical),
            0
        );
        assert_eq!(
            mismatches::<u64>("kstrtoull", bindings::kstrtoull, rust_kstrtox, identical),
            0
        );
        assert_eq!(
            mismatches::<isize>("kstrtol", bindings::_kstrtol, rust_kstrtox, identical),
            0
        );
        assert_eq!(
            mismatches::<usize>("kstrtoul", bindings::_kstrtoul, rust_kstrtox, identical),
            0
        );
    }

    #[test]
    fn kstrtox_examples_from_the_review() {
        // The inputs the review found accepted, contrary to `kstrtol()`.
        assert_eq!(kstrtox::<i64>(b"0x-5"), Err(EINVAL));
        assert_eq!(kstrtox::<i64>(b"-+5"), Err(EINVAL));
        assert_eq!(kstrtox::<i64>(b"0b101"), Err(EINVAL));
        assert_eq!(kstrtox::<i64>(b"0o17"), Err(EINVAL));
        assert_eq!(kstrtox::<u64>(b"-0"), Err(EINVAL));
        assert_eq!(kstrtox::<i64>(b"-0"), Ok(0));
        assert_eq!(kstrtox::<u32>(b"+0x1f\n"), Ok(31));
        assert_eq!(kstrtox::<u32>(b"4294967296"), Err(ERANGE));
        assert_eq!(kstrtox::<u32>(b"99999999999999999999999x"), Err(ERANGE));
        assert_eq!(u32::parse(Some(b"4294967296")), Err(EINVAL));
        assert_eq!(i32::parse(Some(b"1\n")), Ok(1));
        assert_eq!(i32::parse(Some(b"1\n\n")), Err(EINVAL));
    }

    #[test]
    fn permissions_pass_through() {
        assert_eq!(checked_permissions(0o644), 0o644);
        assert_eq!(checked_permissions(0o444), 0o444);
        assert_eq!(checked_permissions(0), 0);
    }
}
