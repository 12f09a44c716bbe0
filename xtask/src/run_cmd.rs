//! `run`: boot the test kernel and show the modules working (the demo job: load each module
//! with its kernel messages, read each new device, a shell when stdin is a terminal), or run
//! `-- CMD` in the guest and exit with its status.

use crate::kernel::{self, Profile};
use crate::protocol::Job;
use crate::vm::{self, Console, JobBoot, Machine};
use crate::{build, flags, initramfs, logscan, setup};
use anyhow::Result;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

impl flags::Run {
    /// Returns the guest command's exit status (at least 1 when the kernel log has a
    /// report).
    pub fn run(self) -> Result<ExitCode> {
        setup::ensure_ready()?;
        let code = run(
            self.profile,
            self.vcpus.machine(),
            self.share.as_deref(),
            self.load,
            self.timeout,
            &self.cmd,
        )?;
        Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
    }
}

/// `run`: build what is stale, boot, show the modules working or run `cmd`.
fn run(
    profile: Profile,
    machine: Machine,
    share: Option<&Path>,
    load: bool,
    timeout: u64,
    cmd: &[String],
) -> Result<i32> {
    let k = kernel::ensure(profile, false)?;
    let art = build::build_all(&k)?;
    let modules = initramfs::module_names(&art);
    let interactive = cmd.is_empty() && std::io::stdin().is_terminal();
    let mut job = Job::new(machine);
    if cmd.is_empty() {
        job.demo(&modules, interactive);
    } else {
        if load {
            job.load_modules(&modules);
        }
        job.command(cmd);
    }
    let how = JobBoot {
        name: "run",
        timeout: Duration::from_secs(timeout),
        console: if interactive {
            Console::Interactive
        } else {
            Console::Show
        },
        share,
    };
    eprintln!(
        "vm: booting {} ({}), {} vCPUs",
        k.bzimage().display(),
        k.release()?,
        machine.smp
    );
    let o = vm::boot_job(&k, &art, &job, &how)?;
    eprintln!(
        "vm: {} in {:.1} s, {}; console log {}",
        match o.exit {
            Some(c) => format!("guest exited {c}"),
            None => "guest powered off".into(),
        },
        o.secs,
        o.accel,
        o.console_log.display()
    );
    let reports = logscan::scan(&o.dmesg);
    if !reports.is_empty() {
        eprintln!("vm: the kernel log has {} report(s):", reports.len());
        let syms = crate::decode::Symbols::new(&k, &art);
        for r in &reports {
            eprintln!("{}", crate::decode::annotate(&r.text, &syms));
        }
        return Ok(o.exit.unwrap_or(0).max(1));
    }
    Ok(o.exit.unwrap_or(0))
}
