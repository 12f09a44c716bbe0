// SPDX-License-Identifier: GPL-2.0

//! `rust_edu`: a PCI driver for QEMU's `edu` device (1234:11e8, QEMU's
//! `docs/specs/edu.rst`), with a C twin (`modules-c/cedu/cedu.c`, module `cedu`) that has the
//! same ABI (`include/uapi/edu.h`) and behaviour; `guest/tests/edu.rs` runs one suite against
//! both. The VM has two `edu` devices (`cargo xtask` adds `-device edu` twice).
//!
//! For every device it binds the driver creates `/dev/eduN` (N = 0.. in probe order, reused
//! after unbind), through which users get:
//!
//! - `EDU_IOC_FACTORIAL`: `n!` modulo 2^32 computed by the device; the caller sleeps
//!   (interruptibly, bounded by its `timeout_ms`) until the completion interrupt;
//! - `EDU_IOC_LIVENESS`: the device's bitwise inverse of a value;
//! - `EDU_IOC_GET_STATS`: interrupts, factorials, DMA transfers and bytes since probe;
//! - `read`/`write`/`pread`/`pwrite`: bytes in and out of the first 4095 bytes of the
//!   device's 4 KiB memory (`EDU_BUF_SIZE`), one DMA transfer per call (about 100 ms each);
//!   offsets and errnos in `include/uapi/edu.h`. The last byte is left out on purpose: QEMU
//!   before 8.2.1 aborts the whole VM on a transfer that ends at the end of the device
//!   memory (`edu_check_range()` in `hw/misc/edu.c` compares the end with `<`; `regs.rs`
//!   rule 6), so offset 4095 gets `ENOSPC` (write) or end of file (read).
//!
//! `/sys/kernel/debug/rust_edu/eduN/regs` dumps the registers and `.../stats` the counters
//! (7.3's `kernel::debugfs`). The parameter `msi` (default `Y`, read-only in
//! `/sys/module/rust_edu/parameters/`) set to `N` makes the driver use INTx instead of MSI.
//!
//! ```text
//! # modprobe rust_edu; dmesg | grep edu0
//! rust_edu 0000:00:01.0: edu0: QEMU edu 1.0, MSI irq 25, 4095-byte DMA buffer at 0x514d000
//! # cat /sys/kernel/debug/rust_edu/edu0/stats
//! ```
//!
//! Probe: enable the device (disabled again at unbind, `pci_gaps.rs`), map BAR0, check the
//! identification register and the liveness register, wait for a transfer a previous driver
//! may have left running and clear stale interrupt bits, set a 28-bit DMA mask, allocate the
//! coherent buffer, one interrupt vector (MSI, else INTx) and a threaded handler,
//! register `/dev/eduN` and the debugfs files, and only then enable the factorial interrupt.
//! Any failure undoes the steps before it.
//!
//! Unbind while in use (`echo <bdf> > /sys/bus/pci/drivers/rust_edu/unbind`, or `rmmod`
//! when no file is open): `unbind()` marks the device gone, which ends every wait with
//! `ENODEV` (callers sleeping in `FACTORIAL` or in a DMA call return at once); it turns off
//! the factorial interrupt, waits (at most 2 s) for a DMA transfer the device may still be
//! doing and frees the DMA buffer. Then the driver core drops the binding's data (debugfs
//! files, `/dev/eduN`, the handler, the vectors) and releases its device resources, which
//! revokes BAR0 (`Devres`): files that are still open keep the `Arc<Edu>` but every call on
//! them fails `ENODEV`, because each register access goes through `Devres::try_access()`
//! and the state says gone. Closing them frees the rest; `bind` probes a fresh binding.
//! The rules of the device this relies on are listed in `regs.rs`.
//!
//! Files (Kbuild builds this file; rustc follows the `mod` declarations):
//!
//! | file | what | `unsafe` |
//! |---|---|---|
//! | `rust_edu.rs` | module, global state, PCI driver: probe, unbind, debugfs | init of the global lock |
//! | `regs.rs` | register map and the device rules the driver relies on | no |
//! | `dev.rs` | per-device engines, waits, interrupt handler (shared with open files) | no |
//! | `file.rs` | `/dev/eduN` file operations and ioctls | no |
//! | `uapi.rs` | ioctl ABI, offset/length rules; KUnit suite `rust_edu_uapi` | no (byte-layout impls) |
//! | `misc.rs` | misc device per PCI device, `container_of` back from it | one block |
//! | `pci_gaps.rs` | ID table entry for vendor 0x1234; enable undone at unbind (both missing in 7.3's `pci`) | two blocks |
//!
//! Two `unsafe` blocks fill gaps of the 7.3 API (`misc.rs`, `pci_gaps.rs`); two come with
//! it by design: the DMA mask setter and the IRQ registration constructors are `unsafe` in
//! `kernel::dma`/`kernel::irq`, and storing the IRQ registration next to the vector
//! allocation it borrows from needs the self-reference nova-core uses too.

use kernel::{
    debugfs::{
        Dir,
        File as DebugFile, //
    },
    device::Core,
    dma::{
        Coherent,
        Device as _,
        DmaMask, //
    },
    driver, fmt,
    io::Io,
    irq::{
        Flags,
        IrqRequest,
        ThreadedRegistration, //
    },
    pci,
    prelude::*,
    sync::{
        global_lock,
        Arc, //
    },
    time::{
        delay::fsleep,
        Delta, //
    },
};

mod dev;
mod file;
mod misc;
#[path = "../common/params.rs"]
mod params;
mod pci_gaps;
mod regs;
mod uapi;

use dev::{
    Edu,
    EduIrq, //
};
use misc::EduMisc;

module! {
    type: EduModule,
    name: "rust_edu",
    authors: ["Rust kernel modules workbench"],
    description: "Driver for QEMU's edu PCI device: factorial, DMA, liveness (C twin: cedu)",
    license: "GPL",
}

params::module_params! {
    msi: bool {
        default: true,
        permissions: 0o444,
        description: "Use MSI if the device offers it (N: always INTx)",
    },
}

/// Devices the driver can bind at the same time (names `edu0`..`edu7`).
const MAX_DEVICES: usize = 8;
const NAMES: [&CStr; MAX_DEVICES] = [
    c"edu0", c"edu1", c"edu2", c"edu3", c"edu4", c"edu5", c"edu6", c"edu7",
];

/// State shared by all devices of the module.
struct Globals {
    /// `/sys/kernel/debug/rust_edu` (set while the module is loaded).
    debugfs: Option<Dir>,
    /// Which of [`NAMES`] are in use.
    used: [bool; MAX_DEVICES],
}

global_lock! {
    // SAFETY: Initialized in module initializer before first use.
    unsafe(uninit) static GLOBALS: Mutex<Globals> = Globals {
        debugfs: None,
        used: [false; MAX_DEVICES],
    };
}

/// A device number (`eduN`) taken from [`Globals::used`], given back on drop.
struct Slot(usize);

impl Slot {
    fn take() -> Result<(Slot, Dir)> {
        let mut g = GLOBALS.lock();
        let i = g.used.iter().position(|used| !used).ok_or(ENOSPC)?;
        g.used[i] = true;
        let dir = match &g.debugfs {
            Some(root) => root.subdir(NAMES[i]),
            None => Dir::new(NAMES[i]),
        };
        Ok((Slot(i), dir))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        GLOBALS.lock().used[self.0] = false;
    }
}

/// Owns `/sys/kernel/debug/rust_edu` for the module's lifetime (the devices' directories
/// keep it alive until they are gone).
struct DebugfsRoot;

impl DebugfsRoot {
    fn new() -> Self {
        GLOBALS.lock().debugfs = Some(Dir::new(c"rust_edu"));
        DebugfsRoot
    }
}

impl Drop for DebugfsRoot {
    fn drop(&mut self) {
        GLOBALS.lock().debugfs = None;
    }
}

#[pin_data]
struct EduModule {
    // Dropped first: unregistering the driver unbinds every device.
    #[pin]
    _driver: driver::Registration<pci::Adapter<EduDriver>>,
    _debugfs: DebugfsRoot,
}

impl kernel::InPlaceModule for EduModule {
    fn init(module: &'static ThisModule) -> impl PinInit<Self, Error> {
        // SAFETY: `init` runs once per load of the module, before anything uses `GLOBALS`
        // (the driver, whose probes use it, is registered below).
        unsafe { GLOBALS.init() };
        try_pin_init!(Self {
            _debugfs: DebugfsRoot::new(),
            _driver <- driver::Registration::new(c"rust_edu", module),
        })
    }
}

struct EduDriver;

kernel::pci_device_table!(
    PCI_TABLE,
    <EduDriver as pci::Driver>::IdInfo,
    [(pci_gaps::EDU_ID, ())]
);

/// What one binding owns. Fields drop in declaration order: the debugfs files and
/// `/dev/eduN` go first, then the interrupt handler, then the vectors it was requested from.
#[pin_data]
struct EduData<'bound> {
    #[pin]
    _regs: DebugFile<Arc<Edu>>,
    #[pin]
    _stats: DebugFile<Arc<Edu>>,
    _dir: Dir,
    #[pin]
    _misc: EduMisc,
    #[pin]
    _irq: ThreadedRegistration<'bound, EduIrq>,
    /// Clears interrupt bits raised between the unbind and the handler's removal.
    _quiet: QuietOnDrop,
    _vectors: pci::IrqVectorRegistration<'bound>,
    edu: Arc<Edu>,
    _slot: Slot,
}

/// Acks every interrupt bit of the device when dropped (after the handler is gone, so a
/// late completion leaves no INTx line asserted behind).
struct QuietOnDrop(Arc<Edu>);

impl Drop for QuietOnDrop {
    fn drop(&mut self) {
        if let Some(bar) = self.0.bar().try_access() {
            bar.write32(u32::MAX, regs::IRQ_ACK);
        }
    }
}

/// Waits up to 2 s for the device's DMA engine to be idle (`regs.rs` rule 5).
fn dma_idle(bar: &pci::Bar<'_, { regs::BAR_SIZE }>) -> bool {
    for _ in 0..200 {
        if bar.read32(regs::DMA_CMD) & regs::DMA_RUN == 0 {
            return true;
        }
        fsleep(Delta::from_millis(10));
    }
    false
}

/// Checks that BAR0 is an `edu` device that answers, and leaves it quiet: no transfer
/// running, no factorial interrupt, no stale interrupt bits.
fn check_and_quiesce(
    pdev: &pci::Device<Core<'_>>,
    bar: &pci::Bar<'_, { regs::BAR_SIZE }>,
) -> Result {
    let id = bar.read32(regs::ID);
    if id & 0xff != regs::ID_VALUE & 0xff {
        dev_err!(pdev, "not an edu device: identification {:#010x}\n", id);
        return Err(ENODEV);
    }
    for value in [0x1234_5678u32, 0, u32::MAX, 0xa5a5_0f0f] {
        bar.write32(value, regs::LIVENESS);
        let got = bar.read32(regs::LIVENESS);
        if got != !value {
            dev_err!(
                pdev,
                "liveness check failed: wrote {:#010x}, read {:#010x}\n",
                value,
                got
            );
            return Err(EIO);
        }
    }
    bar.write32(0, regs::STATUS);
    if !dma_idle(bar) {
        dev_err!(pdev, "a DMA transfer is still running\n");
        return Err(EBUSY);
    }
    bar.write32(u32::MAX, regs::IRQ_ACK);
    Ok(())
}

impl pci::Driver for EduDriver {
    type IdInfo = ();
    type Data<'bound> = EduData<'bound>;

    const ID_TABLE: pci::IdTable<Self::IdInfo> = &PCI_TABLE;

    fn probe<'bound>(
        pdev: &'bound pci::Device<Core<'_>>,
        _info: Option<&'bound Self::IdInfo>,
    ) -> impl PinInit<Self::Data<'bound>, Error> + 'bound {
        pin_init::pin_init_scope(move || {
            pci_gaps::enable_until_unbind(pdev)?;
            let bar = pdev.iomap_region_sized::<{ regs::BAR_SIZE }>(0, c"rust_edu")?;
            check_and_quiesce(pdev, &bar)?;
            let id = bar.read32(regs::ID);

            // SAFETY: Nothing allocates or maps DMA memory for this device concurrently: this
            // is its probe, before the buffer below exists.
            unsafe { pdev.dma_set_mask_and_coherent(DmaMask::new::<{ regs::DMA_BITS }>())? };
            let buf = Coherent::<u8>::zeroed_slice(pdev.as_ref(), regs::BUF_SIZE, GFP_KERNEL)?;
            let buf_addr = buf.dma_address();

            let types = if msi.get() {
                pci::IrqTypes::default()
                    .with(pci::IrqType::Msi)
                    .with(pci::IrqType::Intx)
            } else {
                pci::IrqTypes::default().with(pci::IrqType::Intx)
            };
            let vectors = pdev.alloc_irq_vectors(1, 1, types)?;
            let irq_number = IrqRequest::from(vectors.index(0)?).irq();
            let irq_kind = match vectors.irq_type() {
                pci::IrqType::Msi => "MSI",
                pci::IrqType::MsiX => "MSI-X",
                pci::IrqType::Intx => "INTx",
            };

            let (slot, dir) = Slot::take()?;
            let name = NAMES[slot.0];
            let edu = Arc::pin_init(
                Edu::new(bar.into_devres()?, buf, name, pdev.into(), irq_kind),
                GFP_KERNEL,
            )?;

            Ok(try_pin_init!(EduData {
                _vectors: vectors,
                _irq <- {
                    // SAFETY: `_vectors` is initialized before this field (fields are
                    // initialized in the order written here), lives at a pinned address
                    // inside the driver data and is dropped after `_irq` (declaration order),
                    // also when a later field fails to initialize.
                    let vectors = unsafe { &*core::ptr::from_ref(_vectors) };
                    let request: IrqRequest<'bound> = vectors.index(0)?.into();
                    // SAFETY: The registration is a field of the driver data, which the
                    // driver core drops; it is never forgotten.
                    unsafe {
                        ThreadedRegistration::new(
                            request,
                            Flags::SHARED,
                            c"rust_edu",
                            Ok::<_, Error>(EduIrq(edu.clone())),
                        )
                    }
                },
                _quiet: QuietOnDrop(edu.clone()),
                _misc <- EduMisc::new(edu.clone()),
                _regs <- dir.read_callback_file(c"regs", edu.clone(), &show_regs),
                _stats <- dir.read_callback_file(c"stats", edu.clone(), &show_stats),
                _dir: dir,
                _slot: slot,
                edu,
                // Last: the device may raise factorial interrupts from now on.
                _: {
                    edu.bar()
                        .access(pdev.as_ref())?
                        .write32(regs::STATUS_IRQFACT, regs::STATUS);
                    dev_info!(
                        pdev,
                        "{}: QEMU edu {}.{}, {} irq {}, {}-byte DMA buffer at {:#x}\n",
                        name.to_str().unwrap_or("edu"),
                        id >> 24,
                        (id >> 16) & 0xff,
                        irq_kind,
                        irq_number,
                        regs::BUF_SIZE,
                        buf_addr
                    );
                },
            }))
        })
    }

    fn unbind<'bound>(pdev: &'bound pci::Device<Core<'_>>, this: Pin<&Self::Data<'bound>>) {
        let edu = &this.edu;
        // Every waiter returns `ENODEV` from now on; the buffer is ours to free...
        let buf = edu.shut_down();
        // ... once the device no longer uses it.
        let idle = match edu.bar().access(pdev.as_ref()) {
            Ok(bar) => {
                bar.write32(0, regs::STATUS);
                dma_idle(bar)
            }
            Err(_) => false,
        };
        if let Some(buf) = buf {
            if idle {
                drop(buf);
            } else {
                dev_err!(pdev, "DMA transfer did not finish: leaking its buffer\n");
                core::mem::forget(buf);
            }
        }
        dev_info!(pdev, "{}: unbound\n", edu.name.to_str().unwrap_or("edu"));
    }
}

/// `/sys/kernel/debug/rust_edu/eduN/regs`.
fn show_regs(edu: &Arc<Edu>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let Some(bar) = edu.bar().try_access() else {
        return writeln!(f, "unbound");
    };
    let regs = [
        ("id", bar.read32(regs::ID)),
        ("liveness", bar.read32(regs::LIVENESS)),
        ("factorial", bar.read32(regs::FACT)),
        ("status", bar.read32(regs::STATUS)),
        ("irq_status", bar.read32(regs::IRQ_STATUS)),
        ("dma_src", bar.read32(regs::DMA_SRC)),
        ("dma_dst", bar.read32(regs::DMA_DST)),
        ("dma_count", bar.read32(regs::DMA_COUNT)),
        ("dma_cmd", bar.read32(regs::DMA_CMD)),
    ];
    for (name, value) in regs {
        writeln!(f, "{name:<10} {value:#010x}")?;
    }
    Ok(())
}

/// `/sys/kernel/debug/rust_edu/eduN/stats`.
fn show_stats(edu: &Arc<Edu>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let s = edu.stats();
    writeln!(f, "interrupts {}", s.interrupts)?;
    writeln!(f, "factorials {}", s.factorials)?;
    writeln!(f, "dma_transfers {}", s.dma_transfers)?;
    writeln!(f, "dma_bytes {}", s.dma_bytes)?;
    writeln!(f, "irq {}", edu.irq_kind)
}
