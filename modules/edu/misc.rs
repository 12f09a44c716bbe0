// SPDX-License-Identifier: GPL-2.0

//! A misc device per `edu` device, and the way from the registration back to the device.
//!
//! Gap in 7.3's `kernel::miscdevice`: `MiscDevice::open` gets only the
//! `&MiscDeviceRegistration<T>`, which carries no data, so a driver with one misc device per
//! bound device cannot tell which device was opened. C drivers embed the `struct miscdevice`
//! in their device structure and use `container_of()`; this file does the same with one
//! `unsafe` block, sound because [`EduMisc`] is the only place a
//! `MiscDeviceRegistration<EduFile>` is ever created.

use crate::{
    dev::Edu,
    file::EduFile, //
};
use kernel::{
    miscdevice::{
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    prelude::*,
    sync::Arc,
};

/// `/dev/<name>` for one device.
///
/// # Invariants
///
/// Every `MiscDeviceRegistration<EduFile>` is the `reg` field of an `EduMisc` (this type is
/// the only one that creates them, in [`EduMisc::new`]; the field is private).
#[pin_data]
pub(crate) struct EduMisc {
    #[pin]
    reg: MiscDeviceRegistration<EduFile>,
    edu: Arc<Edu>,
}

impl EduMisc {
    /// Registers `/dev/<edu.name>`; it can be opened as soon as this returns.
    pub(crate) fn new(edu: Arc<Edu>) -> impl PinInit<Self, Error> {
        let name = edu.name;
        try_pin_init!(Self {
            // `edu` first: an open may come as soon as the registration exists.
            edu,
            reg <- MiscDeviceRegistration::register(MiscDeviceOptions { name }),
        })
    }

    /// The `EduMisc` whose registration `reg` is (called from `open`).
    pub(crate) fn of(reg: &MiscDeviceRegistration<EduFile>) -> &EduMisc {
        let ptr = core::ptr::from_ref(reg).cast_mut();
        // SAFETY: By the type invariant `reg` is the `reg` field of an `EduMisc`, so stepping
        // back by the field's offset yields that `EduMisc`. It stays alive for the returned
        // borrow: `open` runs under `misc_mtx`, which `misc_deregister()` (in the drop of
        // `reg`, hence of the `EduMisc`) takes too, and the borrow does not outlive `reg`'s.
        unsafe { &*kernel::container_of!(ptr, EduMisc, reg) }
    }

    pub(crate) fn edu(&self) -> &Arc<Edu> {
        &self.edu
    }
}
