//! Fault injection: every allocation on the way through an operation is made to fail, one
//! at a time, with the kernel's per-task `fail-nth` (failslab for kmalloc; fail_page_alloc
//! too on the debug kernel). For n = 1, 2, ... the n-th fault point of the operation fails
//! until an attempt runs with no fault left to inject. Every attempt must either succeed or
//! fail cleanly with the documented errno (ENOMEM), leave nothing behind (no module half
//! loaded, capacity unchanged), and the device must work normally once injection stops.
//! Driven for: insmod of every module, on rfifo and cfifo: open, write, read, SET_CAPACITY
//! and GET_STATS, and the probe of both `edu` drivers (rust_edu, cedu) through sysfs `bind`:
//! every allocation of the probe, those of the DMA buffer, the MSI vector and the IRQ
//! request (its `irqaction`) among them, fails once; each failed probe must leave nothing
//! (no binding, enable count back, no node, debugfs directory, IRQ or I/O region), and the
//! next clean bind gets the device's old name back and works.
//!
//! insmod of `rust_edu` and `cedu` runs with no device to probe ([`EduAttr::unmatched`]): the walk
//! covers loading and registering the driver, and the probe has its own walk. Their insmod
//! may also fail with `EINVAL`: when the allocation of `/sys/module/M/drivers` fails,
//! `module_add_driver()` (drivers/base/module.c) returns `-EINVAL`, the kernel's choice.
//!
//! The `edu` devices are kept enabled from sysfs (`enable` = 1) while the probe runs
//! under injection ([`EduAttr::enabled`]), so the drivers' `pci_enable_device()` only takes a
//! reference: the first enable evaluates the ACPI `_PRT` method (`acpi_pci_irq_enable()`),
//! and when an allocation fails inside ACPICA's interpreter there, 7.3 oopses (NULL pointer
//! dereference in `acpi_ut_update_object_reference()`, found by this walk): a kernel bug
//! outside the drivers, which this test cannot do anything about.
//!
//! The drivers are loaded with `msi=0` (INTx) under injection. With MSI each probe gets a
//! fresh IRQ descriptor, and `request_irq()` creates its `/proc/irq/N/` files
//! (`register_irq_proc()`), ignoring a failed allocation; freeing the descriptor at unbind
//! then WARNs for the file that was never created (`remove_proc_entry`: "name
//! 'smp_affinity'"), another kernel bug found by this walk. INTx's descriptor and its
//! `/proc` files exist from boot, so the walk covers every allocation of the probe and of the
//! IRQ request (`irqaction`, the handler thread, its `/proc` directory) without hitting it.
//! Excluding those kernel call sites instead would need `CONFIG_FAULT_INJECTION_STACKTRACE_FILTER`.

use guest::fault::{configure, FailAll, FailNth};
use guest::sys::{open, read, write};
use guest::{edu, kmod, Errno};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Walk `op` through its fault points. `op` returns Ok or the errno; `allowed` lists the
/// errnos a failure may have; `check` runs after each attempt (invariants). Returns the
/// number of injected faults.
fn walk(
    what: &str,
    allowed: &[i32],
    mut op: impl FnMut() -> Result<(), Errno>,
    mut check: impl FnMut(bool),
) -> u32 {
    let f = FailNth::new();
    for (injected, n) in (1..=2000).enumerate() {
        f.arm(n);
        let r = op();
        let hit = f.injected();
        if let Err(e) = r {
            assert!(
                allowed.contains(&e.0),
                "{what}: fault point {n} gave {e:?}, expected one of {allowed:?}"
            );
        }
        check(r.is_ok());
        if !hit {
            assert!(
                r.is_ok(),
                "{what}: failed with {r:?} although no fault was injected"
            );
            println!("{what}: {injected} fault points, each failed cleanly; then succeeded");
            return injected as u32;
        }
    }
    panic!("{what}: more than 2000 fault points");
}

fn modules() -> Vec<String> {
    kmod::installed()
}

#[test]
fn insmod_of_every_module_fails_cleanly_at_every_allocation() {
    configure();
    // The edu drivers' insmod would probe the edu devices; here it only loads and registers
    // the driver (their probe is walked on its own, through sysfs `bind`, below).
    let _edu = EduAttr::unmatched();
    let mut total = 0;
    for m in modules() {
        kmod::ensure_unloaded(&m);
        // Open the file before arming, so the faults land in finit_module() itself.
        let file = File::open(kmod::path(&m)).expect("module file");
        let empty = c"";
        // A driver's first registration adds /sys/module/M/drivers; when that allocation
        // fails, 7.3's module_add_driver() (drivers/base/module.c) returns EINVAL.
        let allowed: &[i32] = if edu::is_driver(&m) {
            &[libc::ENOMEM, libc::EINVAL]
        } else {
            &[libc::ENOMEM]
        };
        total += walk(
            &format!("insmod {m}"),
            allowed,
            || kmod::finit(&file, empty),
            |ok| {
                if ok {
                    kmod::unload(&m).unwrap_or_else(|e| panic!("rmmod {m}: {e:?}"));
                }
                assert!(
                    !kmod::is_loaded(&m),
                    "{m} left loaded after a failed insmod"
                );
                assert!(
                    !std::path::Path::new(&format!("/sys/module/{m}")).exists(),
                    "/sys/module/{m} left behind"
                );
            },
        );
        // Injection off: loads and unloads normally.
        kmod::load(&m, "").unwrap_or_else(|e| panic!("{m} after injection: {e:?}"));
        kmod::unload(&m).unwrap();
    }
    println!("insmod: {total} injected faults in all");
    assert!(
        total > 0,
        "no fault was injected at all: is fail-nth working?"
    );
}

fn device_ops(module: &'static str, dev: &str) {
    configure();
    let _m = kmod::Loaded::new(module, "").expect("load");
    let mut total = 0;
    // open (O_RDWR never blocks on a FIFO)
    total += walk(
        &format!("{dev} open"),
        &[libc::ENOMEM],
        || open(dev, libc::O_RDWR | libc::O_NONBLOCK).map(drop),
        |_| {},
    );
    let fd = open(dev, libc::O_RDWR | libc::O_NONBLOCK).unwrap();
    let raw = fd.as_raw_fd();
    // write then read back: a failed write must not have queued anything.
    let mut queued = 0usize;
    total += walk(
        &format!("{dev} write"),
        &[libc::ENOMEM],
        || write(raw, b"0123456789").map(|n| queued += n),
        |_| {},
    );
    let back = read(raw, 4096).unwrap();
    assert_eq!(back.len(), queued, "{dev}: bytes queued vs read back");
    // read: there are always 16 bytes queued; a failed read must not consume them.
    const DATA: &[u8] = b"0123456789abcdef";
    assert_eq!(write(raw, DATA).unwrap(), 16);
    total += walk(
        &format!("{dev} read"),
        &[libc::ENOMEM],
        || {
            let got = read(raw, 16)?;
            assert_eq!(got, DATA, "{dev}: read returned other bytes");
            Ok(())
        },
        |ok| {
            if ok {
                assert_eq!(write(raw, DATA).unwrap(), 16);
            }
        },
    );
    assert_eq!(
        read(raw, 64).unwrap(),
        DATA,
        "{dev}: the queued bytes survived"
    );
    // SET_CAPACITY allocates a new buffer: a failure leaves the old capacity.
    let before = rfifo_uapi::get_capacity(raw).unwrap();
    total += walk(
        &format!("{dev} SET_CAPACITY"),
        &[libc::ENOMEM],
        || rfifo_uapi::set_capacity(raw, 1 << 20).map_err(Errno::from),
        |ok| {
            let now = rfifo_uapi::get_capacity(raw).unwrap();
            if ok {
                assert_eq!(now, 1 << 20);
                rfifo_uapi::set_capacity(raw, before).unwrap();
            } else {
                assert_eq!(
                    now, before,
                    "{dev}: capacity changed by a failed SET_CAPACITY"
                );
            }
        },
    );
    total += walk(
        &format!("{dev} GET_STATS"),
        &[libc::ENOMEM],
        || rfifo_uapi::get_stats(raw).map(drop).map_err(Errno::from),
        |_| {},
    );
    // Injection off: the device works.
    assert_eq!(write(raw, b"still works").unwrap(), 11);
    assert_eq!(read(raw, 64).unwrap(), b"still works");
    println!("{dev}: {total} injected faults over open/write/read/ioctl");
}

#[test]
fn rfifo_operations_fail_cleanly_under_injection() {
    device_ops("rfifo", "/dev/rfifo0");
}

#[test]
fn cfifo_operations_fail_cleanly_under_injection() {
    device_ops("cfifo", "/dev/cfifo0");
}

/// SET_CAPACITY's new ring is a `kvmalloc()`: kmalloc, then vmalloc if that fails, so
/// fail-nth (one failure) never fails it. With every allocation of the thread failing, the
/// ioctl fails with `ENOMEM`, the old ring and its bytes stay, and the device works after.
#[test]
fn set_capacity_fails_cleanly_when_its_kvmalloc_fails() {
    configure();
    for (m, dev) in [("rfifo", "/dev/rfifo0"), ("cfifo", "/dev/cfifo0")] {
        let _m = kmod::Loaded::new(m, "").expect("load");
        let fd = open(dev, libc::O_RDWR | libc::O_NONBLOCK).unwrap();
        let raw = fd.as_raw_fd();
        let before = rfifo_uapi::get_capacity(raw).unwrap();
        let r = {
            let Some(_all) = FailAll::new() else {
                println!("skipped: needs fail_page_alloc (the debug profile)");
                return;
            };
            rfifo_uapi::set_capacity(raw, 1 << 20).map_err(Errno::from)
        };
        assert_eq!(
            r,
            Err(Errno(libc::ENOMEM)),
            "{m}: SET_CAPACITY with kvmalloc failing"
        );
        assert_eq!(
            rfifo_uapi::get_capacity(raw).unwrap(),
            before,
            "{m}: the old ring stays"
        );
        assert_eq!(write(raw, b"after").unwrap(), 5);
        assert_eq!(read(raw, 64).unwrap(), b"after");
        // Empty again: a new capacity now works.
        rfifo_uapi::set_capacity(raw, 1 << 20).unwrap();
        assert_eq!(rfifo_uapi::get_capacity(raw).unwrap(), 1 << 20);
    }
}

/// A `locking` experiment (`read` of `/dev/rust_locking`) allocates its experiment, its work
/// items and the report line in the reading task: each allocation, failed, fails the read
/// with `ENOMEM`, leaves no work item running, and the next read of a new file works.
#[test]
fn locking_experiment_fails_cleanly_under_injection() {
    configure();
    let _m = kmod::Loaded::new("locking", "workers=2 iterations=100 irq_ticks=2").expect("load");
    let f = FailNth::new();
    for (injected, n) in (1..=500).enumerate() {
        // Open before arming: the faults land in the read, where the experiment runs.
        let file = File::open("/dev/rust_locking").expect("open");
        let mut buf = [0u8; 512];
        f.arm(n);
        let r = file.read_at(&mut buf, 0);
        let hit = f.injected();
        match r {
            Ok(len) => {
                let line = std::str::from_utf8(&buf[..len]).unwrap();
                assert!(
                    line.starts_with("workers=2 iterations=100 ") && line.contains(" result=ok "),
                    "fault point {n}: {line:?}"
                );
                if !hit {
                    println!("locking read: {injected} fault points, each ENOMEM; then a report");
                    assert!(injected > 0, "no fault was injected: is fail-nth working?");
                    return;
                }
            }
            Err(e) => {
                assert_eq!(
                    Errno::from(e),
                    Errno(libc::ENOMEM),
                    "fault point {n}: a read of rust_locking"
                );
                assert!(hit, "fault point {n}: failed with no fault injected");
            }
        }
    }
    panic!("locking read: more than 500 fault points");
}

// ---- probe of the edu PCI drivers ----

/// One sysfs attribute of every `edu` device set to a value until dropped, then to
/// `restore`. The drivers are unloaded first: sysfs refuses to enable a bound device (EBUSY).
struct EduAttr {
    bdfs: Vec<String>,
    attr: &'static str,
    restore: &'static str,
}

impl EduAttr {
    fn set(attr: &'static str, value: &str, restore: &'static str) -> EduAttr {
        for m in edu::DRIVERS {
            kmod::ensure_unloaded(m);
        }
        let bdfs = edu::bdfs();
        for b in &bdfs {
            std::fs::write(format!("/sys/bus/pci/devices/{b}/{attr}"), value)
                .unwrap_or_else(|e| panic!("{attr} of {b}: {e}"));
        }
        EduAttr {
            bdfs,
            attr,
            restore,
        }
    }

    /// No driver matches the devices (`driver_override` set to a name no driver has), so
    /// loading `rust_edu` or `cedu` probes nothing. An empty write clears the override.
    fn unmatched() -> EduAttr {
        EduAttr::set("driver_override", "none", "\n")
    }

    /// Every device enabled from sysfs (enable count +1), so that no enable under injection
    /// runs ACPI `_PRT` (see the module documentation).
    fn enabled() -> EduAttr {
        EduAttr::set("enable", "1", "0")
    }
}

impl Drop for EduAttr {
    fn drop(&mut self) {
        for b in &self.bdfs {
            let path = format!("/sys/bus/pci/devices/{b}/{}", self.attr);
            let _ = std::fs::write(path, self.restore);
        }
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// What a binding of `module` leaves in the system, for one device and in total.
#[derive(Debug, PartialEq)]
struct Footprint {
    driver: Option<String>,
    enabled: String,
    nodes: Vec<String>,
    debugfs: Vec<String>,
    irqs: usize,
    iomem: usize,
}

fn footprint(module: &str, node: &str, bdf: &str) -> Footprint {
    let names = |dir: &str, prefix: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        n.strip_prefix(prefix)
                            .is_some_and(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let lines_with =
        |path: &str, f: &dyn Fn(&str) -> bool| read_trimmed(path).lines().filter(|l| f(l)).count();
    Footprint {
        driver: std::fs::read_link(format!("/sys/bus/pci/devices/{bdf}/driver"))
            .ok()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned()),
        enabled: read_trimmed(&format!("/sys/bus/pci/devices/{bdf}/enable")),
        nodes: names("/dev", node),
        debugfs: names(&format!("/sys/kernel/debug/{module}"), node),
        // Handlers named `module` (an INTx line may list several).
        irqs: read_trimmed("/proc/interrupts")
            .split_whitespace()
            .filter(|w| w.trim_end_matches(',') == module)
            .count(),
        iomem: lines_with("/proc/iomem", &|l| l.ends_with(&format!(": {module}"))),
    }
}

/// Walks the probe of `module` on the first `edu` device through its fault points (sysfs
/// `bind` runs the probe in the writing task, so `fail-nth` reaches it), then checks that
/// a clean bind works.
fn edu_probe(module: &'static str, node: &str) {
    configure();
    for m in edu::DRIVERS {
        kmod::ensure_unloaded(m);
    }
    let bdfs = edu::bdfs();
    assert_eq!(bdfs.len(), 2, "the VM should have two edu devices");
    let bdf = bdfs[0].clone();
    for b in &bdfs {
        // No override left by another test: the driver binds both devices.
        std::fs::write(format!("/sys/bus/pci/devices/{b}/driver_override"), "\n").unwrap();
    }
    // Dropped after the module is unloaded (declared first).
    let _enabled = EduAttr::enabled();
    // INTx: see the module documentation.
    let _m = kmod::Loaded::new(module, "msi=0").expect("load");
    let bound = footprint(module, node, &bdf);
    assert_eq!(bound.driver.as_deref(), Some(module), "{bound:?}");
    let drv = format!("/sys/bus/pci/drivers/{module}");
    // Opened before arming: the faults land in the write, i.e. in the probe.
    let open = |what: &str| {
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("{drv}/{what}"))
            .unwrap_or_else(|e| panic!("{drv}/{what}: {e}"))
    };
    let (bind, unbind) = (open("bind"), open("unbind"));
    let do_unbind = || {
        unbind
            .write_at(bdf.as_bytes(), 0)
            .unwrap_or_else(|e| panic!("unbind {bdf}: {e}"));
    };
    do_unbind();
    let unbound = footprint(module, node, &bdf);
    assert_eq!(unbound.driver, None, "{unbound:?}");
    assert_eq!(
        unbound.enabled, "1",
        "only our sysfs enable left: {unbound:?}"
    );
    assert_eq!(bound.enabled, "2", "{bound:?}");
    let name = bound
        .nodes
        .iter()
        .find(|n| !unbound.nodes.contains(n))
        .cloned()
        .expect("unbind removed a node");
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    let faults = walk(
        &format!("{module} probe of {bdf}"),
        // ENOMEM from allocations; EBUSY when the BAR's resource cannot be allocated
        // (pci_request_region() turns that into "can't reserve", -EBUSY); EINVAL when
        // pcim_iomap_region()'s ioremap fails (its choice of errno, cedu).
        &[libc::ENOMEM, libc::EBUSY, libc::EINVAL],
        || {
            let r = bind
                .write_at(bdf.as_bytes(), 0)
                .map(drop)
                .map_err(Errno::from);
            *outcomes
                .entry(r.map_or_else(|e| e.name().to_string(), |()| "bound".into()))
                .or_default() += 1;
            r
        },
        |ok| {
            let now = footprint(module, node, &bdf);
            if ok {
                assert_eq!(now.driver.as_deref(), Some(module), "{now:?}");
                assert!(now.nodes.contains(&name), "{name} after bind: {now:?}");
                do_unbind();
                assert_eq!(footprint(module, node, &bdf), unbound);
            } else {
                assert_eq!(now, unbound, "a failed probe left something behind");
            }
        },
    );
    println!("{module} probe: {faults} fault points, outcomes {outcomes:?}");
    assert!(faults > 5, "{module} probe: only {faults} fault points");
    // Injection off: a clean bind gives the device its old name back, and it works.
    bind.write_at(bdf.as_bytes(), 0)
        .expect("bind after injection");
    assert_eq!(footprint(module, node, &bdf), bound);
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(format!("/dev/{name}"))
        .unwrap();
    assert_eq!(
        edu_uapi::factorial(dev.as_raw_fd(), 10, 0).unwrap(),
        3_628_800
    );
    assert_eq!(dev.write_at(b"probe", 100).unwrap(), 5);
    let mut back = [0u8; 5];
    assert_eq!(dev.read_at(&mut back, 100).unwrap(), 5);
    assert_eq!(&back, b"probe");
}

#[test]
fn rust_edu_probe_fails_cleanly_under_injection() {
    edu_probe("rust_edu", "edu");
}

#[test]
fn cedu_probe_fails_cleanly_under_injection() {
    edu_probe("cedu", "cedu");
}
