//! `initramfs`: the guest's root file system, written by the kernel's own
//! `usr/gen_init_cpio` from a spec file.
//!
//! Layout: busybox-static (with its applets as links), `/init` (below), the modules under
//! `/lib/modules/<release>/extra` with `depmod` data (so `modprobe NAME` works), the test
//! binaries under `/tests`, helper programs in `/bin`, the job script and, with `--share`, a
//! host directory's files under `/host`. `/init` and the job come from `protocol`.

use crate::build::{module_name, Artifacts};
use crate::kernel::Kernel;
use crate::protocol;
use crate::util::run;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Write the initramfs for `k` with `art` and the job script; returns the cpio path.
pub fn create(
    k: &Kernel,
    art: &Artifacts,
    job: &str,
    share: Option<&Path>,
    out_dir: &Path,
) -> Result<PathBuf> {
    let release = k.release()?;
    std::fs::create_dir_all(out_dir)?;
    let staging = out_dir.join("staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    let moddir_rel = format!("lib/modules/{release}");
    let extra = staging.join(&moddir_rel).join("extra");
    std::fs::create_dir_all(&extra)?;
    for ko in &art.modules {
        std::fs::copy(ko, extra.join(ko.file_name().unwrap()))?;
    }
    for f in [
        "modules.builtin",
        "modules.builtin.modinfo",
        "modules.order",
    ] {
        let src = k.build.join(f);
        if src.exists() {
            std::fs::copy(&src, staging.join(&moddir_rel).join(f))?;
        }
    }
    run(Command::new("depmod").arg("-b").arg(&staging).arg(&release))
        .context("depmod for the initramfs")?;
    std::fs::write(staging.join("init"), protocol::init_script())?;
    std::fs::write(staging.join("job"), job)?;
    let (job_dir, _) = protocol::JOB_PATH
        .rsplit_once('/')
        .expect("the job's path is absolute");

    let mut spec = String::new();
    for d in [
        "/bin",
        "/sbin",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/proc",
        "/sys",
        "/dev",
        "/tmp",
        "/etc",
        job_dir,
        "/lib",
        "/lib/modules",
        "/root",
        protocol::TESTS_DIR,
        "/host",
        "/run",
    ] {
        writeln!(spec, "dir {d} 0755 0 0")?;
    }
    writeln!(spec, "nod /dev/console 0600 0 0 c 5 1")?;
    writeln!(spec, "file /bin/busybox /bin/busybox 0755 0 0")?;
    writeln!(spec, "slink /bin/sh busybox 0777 0 0")?;
    writeln!(
        spec,
        "file /init {} 0755 0 0",
        staging.join("init").display()
    )?;
    writeln!(
        spec,
        "file {} {} 0755 0 0",
        protocol::JOB_PATH,
        staging.join("job").display()
    )?;
    add_tree(&mut spec, &staging.join("lib/modules"), "/lib/modules")?;
    for (name, exe) in &art.tests {
        writeln!(
            spec,
            "file {}/{name} {} 0755 0 0",
            protocol::TESTS_DIR,
            exe.display()
        )?;
    }
    for (name, exe) in &art.bins {
        writeln!(spec, "file /bin/{name} {} 0755 0 0", exe.display())?;
    }
    add_c32(&mut spec)?;
    if let Some(share) = share {
        let share = share
            .canonicalize()
            .with_context(|| format!("--share {}", share.display()))?;
        add_tree(&mut spec, &share, "/host")?;
    }
    let spec_path = out_dir.join("initramfs.spec");
    std::fs::write(&spec_path, &spec)?;
    let cpio = out_dir.join("initramfs.cpio");
    let data = Command::new(k.gen_init_cpio())
        .arg(&spec_path)
        .output()
        .with_context(|| format!("running {}", k.gen_init_cpio().display()))?;
    if !data.status.success() {
        anyhow::bail!(
            "gen_init_cpio failed: {}",
            String::from_utf8_lossy(&data.stderr)
        );
    }
    std::fs::write(&cpio, &data.stdout)?;
    Ok(cpio)
}

/// The 32-bit C test programs (`build::build_c32`) under `/tests/bin32/`.
fn add_c32(spec: &mut String) -> Result<()> {
    let dir = format!("{}/bin32", protocol::TESTS_DIR);
    writeln!(spec, "dir {dir} 0755 0 0")?;
    for (name, exe) in crate::build::c32_programs() {
        writeln!(spec, "file {dir}/{name} {} 0755 0 0", exe.display())?;
    }
    Ok(())
}

/// Add a host directory tree to the spec under `dest`.
fn add_tree(spec: &mut String, dir: &Path, dest: &str) -> Result<()> {
    for e in std::fs::read_dir(dir)?.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(char::is_whitespace) {
            eprintln!("initramfs: skipping {} (white space in name)", p.display());
            continue;
        }
        let target = format!("{dest}/{name}");
        let meta = std::fs::symlink_metadata(&p)?;
        if meta.is_dir() {
            writeln!(spec, "dir {target} 0755 0 0")?;
            add_tree(spec, &p, &target)?;
        } else if meta.file_type().is_symlink() {
            let to = std::fs::read_link(&p)?;
            writeln!(spec, "slink {target} {} 0777 0 0", to.display())?;
        } else if meta.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            writeln!(spec, "file {target} {} {mode:o} 0 0", p.display())?;
        }
    }
    Ok(())
}

/// Names of the modules, sorted, for job scripts.
pub fn module_names(art: &Artifacts) -> Vec<String> {
    let mut v: Vec<String> = art.modules.iter().map(|p| module_name(p)).collect();
    v.sort();
    v
}
