//! `bench`: boot the same kernel, load `rfifo` and `cfifo`, run the in-guest `fifobench`
//! (release build) and print MB/s with the ratios Rust/C and Rust/FIFO per write size,
//! ping-pong latency, insmod+rmmod time and `.ko` sizes. JSON in `target/bench/`.
//! Figures, not tests: nothing in `cargo xtask test` depends on them.

use crate::build::{self, Artifacts};
use crate::kernel::{self, Profile};
use crate::{util, vm};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::process::Command;

pub fn bench(profile: Profile, rounds: u32) -> Result<()> {
    let k = kernel::ensure(profile, false)?;
    let modules = build::build_modules(&k, None)?;
    let (tests, bins) = build::build_guest(true)?;
    let art = Artifacts {
        modules,
        tests,
        bins,
    };
    for m in ["rfifo", "cfifo"] {
        if !art.modules.iter().any(|p| build::module_name(p) == m) {
            bail!("module {m} is not built; the benchmark needs rfifo and cfifo");
        }
    }
    let job = format!(
        "modprobe rfifo devices=2 && modprobe cfifo devices=2 || exit 1\n\
         fifobench {rounds} > /dev/ttyS1\n"
    );
    eprintln!("bench: {rounds} interleaved rounds per case (takes a few minutes under TCG)");
    let o = vm::boot_job(&k, &art, &job, "bench", 3600)?;
    let line = o
        .results
        .lines()
        .find_map(|l| l.strip_prefix("BENCH-JSON "))
        .with_context(|| format!("no benchmark output; console:\n{}", o.console_tail(30)))?;
    let mut v: Value = serde_json::from_str(line).context("benchmark JSON")?;
    let mut sizes = serde_json::Map::new();
    for p in &art.modules {
        let name = build::module_name(p);
        if ["rfifo", "cfifo", "minimal"].contains(&name.as_str()) {
            let file = std::fs::metadata(p)?.len();
            let text = util::output(Command::new("llvm-size-19").arg(p)).unwrap_or_default();
            let dec: u64 = text
                .lines()
                .nth(1)
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            sizes.insert(
                name,
                serde_json::json!({"file_bytes": file, "text_data_bss": dec}),
            );
        }
    }
    v["ko_sizes"] = Value::Object(sizes);
    v["conditions"] = serde_json::json!({
        "accel": o.accel, "vcpus": 2, "memory_mb": 1024, "profile": profile.name(),
        "kernel": k.release()?, "host_cores": build::jobs(),
    });
    let dir = util::target_dir().join("bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("bench.json"), serde_json::to_string_pretty(&v)?)?;
    print!("{}", table(&v));
    eprintln!("bench: JSON in {}", dir.join("bench.json").display());
    Ok(())
}

fn med(v: &Value) -> f64 {
    v["median"].as_f64().unwrap_or(f64::NAN)
}

fn spread(v: &Value) -> String {
    format!(
        "{:.0}-{:.0}",
        v["min"].as_f64().unwrap_or(0.0),
        v["max"].as_f64().unwrap_or(0.0)
    )
}

/// The human-readable table.
pub fn table(v: &Value) -> String {
    let mut s = String::new();
    let c = &v["conditions"];
    s.push_str(&format!(
        "fifo benchmark: {} rounds ABC-interleaved, median (min-max); {} {} vCPUs, kernel {}\n\n",
        v["rounds"],
        c["accel"].as_str().unwrap_or("?"),
        c["vcpus"],
        c["kernel"].as_str().unwrap_or("?")
    ));
    s.push_str("| write size | rfifo MB/s | cfifo MB/s | FIFO MB/s | Rust/C | Rust/FIFO |\n");
    s.push_str("|---:|---:|---:|---:|---:|---:|\n");
    if let Some(map) = v["throughput_mbs"].as_object() {
        let mut keys: Vec<(usize, &String)> =
            map.keys().map(|k| (k.parse().unwrap_or(0), k)).collect();
        keys.sort();
        for (n, k) in keys {
            let r = &map[k];
            let (rf, cf, ff) = (med(&r["rfifo"]), med(&r["cfifo"]), med(&r["fifo"]));
            let label = match n {
                n if n >= 1 << 20 => format!("{} MiB", n >> 20),
                n if n >= 1024 => format!("{} KiB", n >> 10),
                n => format!("{n} B"),
            };
            s.push_str(&format!(
                "| {label} | {rf:.0} ({}) | {cf:.0} ({}) | {ff:.0} ({}) | {:.2} | {:.2} |\n",
                spread(&r["rfifo"]),
                spread(&r["cfifo"]),
                spread(&r["fifo"]),
                rf / cf,
                rf / ff
            ));
        }
    }
    let p = &v["pingpong_us"];
    s.push_str(&format!(
        "\n1-byte ping-pong round trip (us): rfifo {:.1}, cfifo {:.1}, FIFO {:.1}; Rust/C time ratio {:.2}\n",
        med(&p["rfifo"]),
        med(&p["cfifo"]),
        med(&p["fifo"]),
        med(&p["rfifo"]) / med(&p["cfifo"])
    ));
    let l = &v["load_unload_ms"];
    s.push_str(&format!(
        "insmod+rmmod (ms): rfifo {:.2}, cfifo {:.2}, minimal {:.2}\n",
        med(&l["rfifo"]),
        med(&l["cfifo"]),
        med(&l["minimal"])
    ));
    if let Some(sz) = v["ko_sizes"].as_object() {
        let mut names: Vec<&String> = sz.keys().collect();
        names.sort();
        let parts: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    "{n} {} B file / {} B text+data+bss",
                    sz[*n]["file_bytes"], sz[*n]["text_data_bss"]
                )
            })
            .collect();
        s.push_str(&format!(".ko sizes: {}\n", parts.join(", ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_ratios() {
        let v: Value = serde_json::from_str(
            r#"{"throughput_mbs":{"64":{"rfifo":{"median":100,"min":90,"max":110},
                "cfifo":{"median":50,"min":40,"max":60},"fifo":{"median":200,"min":1,"max":2}}},
                "pingpong_us":{"rfifo":{"median":10},"cfifo":{"median":20},"fifo":{"median":5}},
                "load_unload_ms":{"rfifo":{"median":1},"cfifo":{"median":1},"minimal":{"median":1}},
                "rounds":5,"conditions":{"accel":"tcg","vcpus":2,"kernel":"7.3.4"}}"#,
        )
        .unwrap();
        let t = table(&v);
        assert!(
            t.contains("| 64 B | 100 (90-110) | 50 (40-60) | 200 (1-2) | 2.00 | 0.50 |"),
            "{t}"
        );
        assert!(t.contains("Rust/C time ratio 0.50"), "{t}");
    }
}
