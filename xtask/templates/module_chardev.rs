// SPDX-License-Identifier: GPL-2.0

//! `template_name`: TODO: say what this module does (and which chapter section it realises).
//!
//! A misc character device, `/dev/template_name`. Reading it returns
//! `Hello from template_name!\n` and then end of file (the file offset is honoured,
//! so `cat` ends). Loading logs `template_name: loaded`, unloading
//! `template_name: unloaded`. Try it in the guest (`cargo xtask run`):
//!
//! ```text
//! # modprobe template_name && cat /dev/template_name
//! Hello from template_name!
//! # rmmod template_name && dmesg | tail -1
//! template_name: unloaded
//! ```
//!
//! Tests: the KUnit suite `template_name_tests` below runs in the kernel each time
//! the module loads; the guest test `guest/tests/template_name.rs` loads the module,
//! reads the device and unloads it. Run both with
//! `cargo xtask test --filter template_name`.

use kernel::{
    fs::{File, Kiocb},
    iov::IovIterDest,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
};

module! {
    type: TemplateNameModule,
    name: "template_name",
    authors: ["Rust kernel modules workbench"],
    description: "TODO: one line about template_name (misc device /dev/template_name)",
    license: "GPL",
}

/// What every read of the device returns (the whole "file").
const MESSAGE: &[u8] = b"Hello from template_name!\n";

#[pin_data(PinnedDrop)]
struct TemplateNameModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<TemplateNameDevice>,
}

impl kernel::InPlaceModule for TemplateNameModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pr_info!("loaded\n");
        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"template_name",
            }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for TemplateNameModule {
    fn drop(self: Pin<&mut Self>) {
        pr_info!("unloaded\n");
    }
}

/// The per-open state: nothing yet.
struct TemplateNameDevice;

#[vtable]
impl MiscDevice for TemplateNameDevice {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        // `TemplateNameDevice` is zero-sized: this does not allocate.
        Ok(KBox::pin(TemplateNameDevice, GFP_KERNEL)?)
    }

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        iov.simple_read_from_buffer(kiocb.ki_pos_mut(), MESSAGE)
    }
}

/// KUnit tests: each `#[test]` is a KUnit case, run in the kernel when the module loads;
/// `cargo xtask test` shows them as `kunit::template_name_tests::CASE`. A test may return a
/// `Result` and use `?`. Replace this example with tests of the module's own logic.
#[kunit_tests(template_name_tests)]
mod tests {
    use super::MESSAGE;

    #[test]
    fn message_is_one_line() {
        assert_eq!(MESSAGE.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(MESSAGE.last(), Some(&b'\n'));
    }
}
