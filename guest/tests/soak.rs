//! Load/unload soak: every module is inserted and removed many times (1000 on the default
//! kernel, 50 under the debug kernel, 20 there for the edu drivers, each module bounded to
//! 60 s), with its device nodes opened and read in between. At the end no module is left loaded and `MemAvailable` is
//! back within 4 MiB of where it started.

use guest::kmod;
use guest::{is_debug_kernel, Kmsg};
use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

fn modules() -> Vec<String> {
    kmod::installed()
}

fn dev_nodes() -> BTreeSet<String> {
    std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn mem_available_kib() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("MemAvailable")
}

/// Open each node non-blocking and read a little; errors are fine (EAGAIN, EINVAL...),
/// crashes are not (the kernel log scan catches them).
fn poke(nodes: &[String]) -> usize {
    let mut used = 0;
    for n in nodes {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("/dev/{n}"));
        if let Ok(mut f) = f {
            let mut buf = [0u8; 64];
            // A read of an edu device is a DMA transfer, 100 ms of the device's timer: only
            // a zero-length read there.
            let len = if is_edu_node(n) { 0 } else { buf.len() };
            let _ = f.read(&mut buf[..len]);
            used += 1;
        }
    }
    used
}

fn is_edu_node(n: &str) -> bool {
    n.starts_with("edu") || n.starts_with("cedu")
}

/// Load/unload cycles of `module`: 1000 on the default kernel, 50 under the debug kernel,
/// 20 there for the edu drivers, whose every load probes both devices (about 1.7 s a cycle
/// on the debug kernel).
fn cycles(module: &str) -> usize {
    match (is_debug_kernel(), guest::edu::is_driver(module)) {
        (false, _) => 1000,
        (true, true) => 20,
        (true, false) => 50,
    }
}

/// Load parameters for the soak: the smallest real workload, so the cycles measure
/// loading, registering and unloading rather than each module's demo work.
fn soak_params(module: &str) -> &'static str {
    match module {
        "locking" => "workers=2 iterations=10 irq_ticks=1",
        "allocation" => "buffer_size=4096",
        _ => "",
    }
}

#[test]
fn soak_every_module_load_unload() {
    let budget = Duration::from_secs(60);
    let mods = modules();
    assert!(!mods.is_empty(), "no modules installed");
    for m in &mods {
        kmod::ensure_unloaded(m);
    }
    let before = mem_available_kib();
    let mut log = Kmsg::new();
    for m in &mods {
        let cycles = cycles(m);
        let base = dev_nodes();
        let start = Instant::now();
        let mut done = 0;
        let mut opened = 0;
        while done < cycles && start.elapsed() < budget {
            kmod::load(m, soak_params(m))
                .unwrap_or_else(|e| panic!("cycle {done}: insmod {m}: {e:?}"));
            let new: Vec<String> = dev_nodes().difference(&base).cloned().collect();
            opened += poke(&new);
            kmod::unload(m).unwrap_or_else(|e| panic!("cycle {done}: rmmod {m}: {e:?}"));
            assert!(!kmod::is_loaded(m), "{m} still listed after rmmod");
            done += 1;
            let _ = log.read(); // keep the reader from falling behind
        }
        println!(
            "soak {m}: {done} cycles in {:.1} s, {opened} device opens",
            start.elapsed().as_secs_f64()
        );
        assert!(
            done >= cycles.min(100),
            "{m}: only {done} load/unload cycles in {} s",
            budget.as_secs()
        );
    }
    // Let deferred frees (RCU, workqueues) settle before comparing.
    std::thread::sleep(Duration::from_millis(500));
    let after = mem_available_kib();
    println!("MemAvailable: {before} kB before, {after} kB after");
    assert!(
        after >= before - 4096,
        "MemAvailable dropped by {} kB over the soak",
        before - after
    );
}
