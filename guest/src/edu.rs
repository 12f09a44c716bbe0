//! The VM's QEMU `edu` PCI devices (vendor 1234, device 11e8), shared by the `edu` tests,
//! the fault-injection walks over the edu probes, and `edubench`.

/// The modules that drive an `edu` device: the Rust driver and its C twin.
pub const DRIVERS: [&str; 2] = ["rust_edu", "cedu"];

/// Is module `m` one of the [`DRIVERS`]?
pub fn is_driver(m: &str) -> bool {
    DRIVERS.contains(&m)
}

/// PCI addresses (BDFs, e.g. `0000:00:02.0`) of the `edu` devices, sorted: the VM has two.
pub fn bdfs() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/bus/pci/devices")
        .unwrap()
        .flatten()
        .filter(|e| {
            let rd = |f: &str| std::fs::read_to_string(e.path().join(f)).unwrap_or_default();
            rd("vendor").trim() == "0x1234" && rd("device").trim() == "0x11e8"
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
