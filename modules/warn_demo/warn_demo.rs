// SPDX-License-Identifier: GPL-2.0

//! A test-only module: a real `WARN` from real Rust code, for the test that checks that
//! kernel reports are decoded to Rust source lines (`guest/tests/warn_demo.rs`).
//!
//! `/dev/warn_demo` consumes every write. Loaded with `armed=1`, each write also hits
//! `kernel::warn_on!`, which logs `WARNING: ... at warn_demo/warn_demo.rs:LINE` with a stack
//! trace. Loaded without it (as every "load all modules" job does: `run`, `fuzz`, the soak
//! test), a write never warns, so nothing but that test can provoke the report. The test
//! brackets it with `xtask: expect report` markers in the kernel log; any other report
//! still fails the run (`xtask/src/expected.rs`).

use kernel::{
    fs::{File, Kiocb},
    iov::IovIterSource,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
};

module! {
    type: WarnDemo,
    name: "warn_demo",
    authors: ["Rust kernel modules workbench"],
    description: "Test only: /dev/warn_demo warns on a write when loaded with armed=1",
    license: "GPL",
    params: {
        armed: bool {
            default: false,
            description: "Writes hit warn_on! (tests only)",
        },
    },
}

#[pin_data]
struct WarnDemo {
    #[pin]
    _miscdev: MiscDeviceRegistration<WarnDevice>,
}

impl kernel::InPlaceModule for WarnDemo {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pr_info!("loaded, armed={}\n", module_parameters::armed.value());
        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"warn_demo",
            }),
        })
    }
}

/// The per-open state: nothing.
struct WarnDevice;

#[vtable]
impl MiscDevice for WarnDevice {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        // Zero-sized: does not allocate.
        Ok(KBox::pin(WarnDevice, GFP_KERNEL)?)
    }

    fn write_iter(_kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterSource<'_>) -> Result<usize> {
        let mut buf = [0u8; 64];
        let mut total = 0usize;
        while !iov.is_empty() {
            let n = iov.copy_from_iter(&mut buf);
            if n == 0 {
                break;
            }
            total += n;
        }
        if total == 0 && !iov.is_empty() {
            return Err(EFAULT);
        }
        let armed = module_parameters::armed.value();
        kernel::warn_on!(armed);
        Ok(total)
    }
}
