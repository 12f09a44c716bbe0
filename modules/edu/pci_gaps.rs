// SPDX-License-Identifier: GPL-2.0

//! Two gaps of 7.3's `kernel::pci`, each filled with one `unsafe` block.
//!
//! **The ID table.** `pci::DeviceId::from_id()` takes a `pci::Vendor`, whose constants are
//! the vendors of `include/linux/pci_ids.h`; QEMU's vendor ID 0x1234 is not among them and
//! `Vendor::from_raw()` is private to the `pci` module, so no table entry for 1234:11e8 can be
//! written with the safe API. [`EDU_ID`] builds the C `struct pci_device_id` and reinterprets
//! it, as `PCI_DEVICE(0x1234, 0x11e8)` does in C.
//!
//! **Enable for exactly as long as the device is bound.** `Device::enable_device_mem()` and `set_master()` have no
//! counterpart (no `pci_disable_device()`/`pci_clear_master()`, no managed `pcim_` variant;
//! `pcim_enable_device()` itself is unusable here because it silently turns the IRQ vectors
//! into managed ones, which `IrqVectorRegistration` frees too). Without it every bind would
//! leave the device enabled and bus-mastering after unbind. [`enable_until_unbind`] pairs
//! them the way `pcim_enable_device()` does, with a devres action: the device is disabled,
//! and its bus mastering turned off, when the driver core releases the binding's resources.

use kernel::{
    bindings,
    device::Core,
    devres,
    pci,
    prelude::*,
    sync::aref::ARef, //
};

/// `PCI_DEVICE(0x1234, 0x11e8)`: QEMU's `edu` device, any subsystem.
pub(crate) const EDU_ID: pci::DeviceId = {
    let raw = bindings::pci_device_id {
        vendor: 0x1234,
        device: 0x11e8,
        subvendor: !0, // PCI_ANY_ID
        subdevice: !0, // PCI_ANY_ID
        class: 0,
        class_mask: 0,
        driver_data: 0,
        override_only: 0,
    };
    // SAFETY: `pci::DeviceId` is `#[repr(transparent)]` over `struct pci_device_id` and adds
    // no invariant (its `RawDeviceId` implementation relies on the same); `from_id()` builds
    // exactly this value for a vendor it knows.
    unsafe { core::mem::transmute::<bindings::pci_device_id, pci::DeviceId>(raw) }
};

/// Disables its device when dropped.
struct Enabled(ARef<pci::Device>);

impl Drop for Enabled {
    fn drop(&mut self) {
        // `pci::Device` is `#[repr(transparent)]` over `Opaque<bindings::pci_dev>`, so a
        // reference to it is a pointer to the C `struct pci_dev`.
        let raw = core::ptr::from_ref::<pci::Device>(&self.0)
            .cast::<bindings::pci_dev>()
            .cast_mut();
        // SAFETY: `raw` is a valid `struct pci_dev` (we hold a reference count), which
        // `enable_until_unbind()` enabled; this runs once, as the devres action of that
        // binding (or when registering the action failed), undoing exactly that enable.
        unsafe {
            bindings::pci_clear_master(raw);
            bindings::pci_disable_device(raw);
        }
    }
}

/// `pci_enable_device_mem()` + `pci_set_master()`, undone when the device is unbound
/// (registered first in `probe()`, so released last: after the BAR is unmapped).
pub(crate) fn enable_until_unbind(pdev: &pci::Device<Core<'_>>) -> Result {
    pdev.enable_device_mem()?;
    // On failure `Enabled` is dropped at once, which disables the device again.
    devres::register(pdev.as_ref(), Enabled(pdev.into()), GFP_KERNEL)?;
    pdev.set_master();
    Ok(())
}
