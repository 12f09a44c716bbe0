// SPDX-License-Identifier: GPL-2.0

//! The chapter's "The module! Macro": module metadata and parameters.
//!
//! `module!` gives the module its name, authors, description and license, and one stock
//! parameter (`load_only`). The chapter's `my_param` (with `permissions: 0o644`) and two more
//! parameters are declared with `params::module_params!` (`modules/common/params.rs`), which
//! registers them with sysfs permissions:
//!
//! | parameter     | type  | default | sysfs mode | declared with    |
//! |---------------|-------|---------|------------|------------------|
//! | `my_param`    | `i32` | 42      | 0644       | `module_params!` |
//! | `buffer_size` | `u64` | 4096    | 0444       | `module_params!` |
//! | `verbose`     | `bool`| false   | 0644       | `module_params!` |
//! | `load_only`   | `u32` | 1       | (none)     | `module!`        |
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
//!   permission 0 (no file in `/sys/module/<name>/parameters/`) and can only be set at load time
//!   (see `load_only`). Its values are read as `module_parameters::load_only.value()`.
//!   `module_params!` accepts the chapter's syntax (`default`, `permissions`, `description`) and
//!   registers real `kernel_param`s with the given mode and with Rust `set`/`get` callbacks, the
//!   way C's `module_param_cb()` does; the values are read with `my_param.get()`.
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
    params: {
        load_only: u32 {
            default: 1,
            description: "A stock module! parameter: set at load time only, not in sysfs",
        },
    },
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
            module_parameters::load_only.value()
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
        ParamString,
        ParamValue, //
    };
    use kernel::{prelude::*, str::Formatter};

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

    #[test]
    fn permissions_pass_through() {
        assert_eq!(checked_permissions(0o644), 0o644);
        assert_eq!(checked_permissions(0o444), 0o444);
        assert_eq!(checked_permissions(0), 0);
    }
}
