//! `eductl`: the ioctls of `/dev/eduN` (`rust_edu`) and `/dev/ceduN` (`cedu`) from the guest's
//! shell, where busybox has no way to issue them. `cargo xtask run` uses it in its demo.
//!
//! ```text
//! eductl /dev/edu0 factorial 10      # 10! = 3628800 (the device computes, then interrupts)
//! eductl /dev/edu0 factorial 4000000000 5000   # with a timeout in ms: ETIMEDOUT after 5 s
//! eductl /dev/cedu0 liveness 0x12345678        # the device's bitwise inverse
//! eductl /dev/edu0 stats             # interrupts, factorials, DMA transfers and bytes
//! ```
//!
//! Data goes in and out of the device memory with plain files (one DMA transfer per call):
//! `printf hello > /dev/edu0; head -c 5 /dev/edu0`.

use std::os::fd::AsRawFd;
use std::process::ExitCode;

fn number(s: &str) -> Option<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

const USAGE: &str = "usage: eductl DEVICE factorial N [TIMEOUT_MS] | liveness VALUE | stats";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some((dev, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let f = match std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("eductl: {dev}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fd = f.as_raw_fd();
    let r = match rest {
        ["factorial", n] | ["factorial", n, _] => {
            let timeout = rest.get(2).map_or(Some(0), |t| number(t));
            match (number(n), timeout) {
                (Some(n), Some(t)) => edu_uapi::factorial(fd, n, t).map(|v| {
                    println!("{n}! mod 2^32 = {v}");
                }),
                _ => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            }
        }
        ["liveness", v] => match number(v) {
            Some(v) => edu_uapi::liveness(fd, v).map(|inv| println!("~{v:#010x} = {inv:#010x}")),
            None => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        },
        ["stats"] => edu_uapi::get_stats(fd).map(|s| {
            println!(
                "interrupts {}, factorials {}, DMA transfers {}, DMA bytes {}",
                s.interrupts, s.factorials, s.dma_transfers, s.dma_bytes
            );
        }),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eductl: {dev}: {e}");
            ExitCode::FAILURE
        }
    }
}
