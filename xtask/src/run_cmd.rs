//! `run`: boot the test kernel and show the modules working (the demo job: load each module
//! with its kernel messages, read each new device, a shell when stdin is a terminal), or run
//! `-- CMD` in the guest and exit with its status.

use crate::kernel::{self, Profile};
use crate::vm::{boot, job_env, kernel_cmdline, BootSpec, Console, Machine};
use crate::{build, flags, initramfs, logscan, setup, util};
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
    let mut job = job_env(machine);
    job += &if cmd.is_empty() {
        demo_job(&modules, interactive)
    } else {
        let mut j = String::new();
        if load {
            for m in &modules {
                j.push_str(&format!("modprobe {m} || echo 'modprobe {m} failed'\n"));
            }
        }
        let words: Vec<String> = cmd.iter().map(|w| shell_quote(w)).collect();
        j.push_str(&words.join(" "));
        j.push('\n');
        j
    };
    let out_dir = util::target_dir().join("vm").join(profile.name());
    let _lock = util::lock("heavy")?;
    let initramfs = initramfs::create(&k, &art, &job, share, &out_dir)?;
    let b = BootSpec {
        kernel: &k,
        initramfs,
        out_dir: out_dir.clone(),
        timeout: Duration::from_secs(timeout),
        console: if interactive {
            Console::Interactive
        } else {
            Console::Show
        },
        machine,
        mem_mb: 1024,
        cmdline: kernel_cmdline(),
    };
    eprintln!(
        "vm: booting {} ({}), {} vCPUs",
        k.bzimage().display(),
        k.release()?,
        machine.smp
    );
    let o = boot(&b)?;
    eprintln!(
        "vm: {} in {:.1} s, {}; console log {}",
        match o.exit {
            Some(c) => format!("guest exited {c}"),
            None => "guest powered off".into(),
        },
        o.secs,
        o.accel,
        out_dir.join("console.log").display()
    );
    let reports = logscan::scan(&o.dmesg);
    if !reports.is_empty() {
        eprintln!("vm: the kernel log has {} report(s):", reports.len());
        for r in &reports {
            eprintln!("{}", r.text);
        }
        return Ok(o.exit.unwrap_or(0).max(1));
    }
    Ok(o.exit.unwrap_or(0))
}

/// Quote a word for the guest's shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The demo job: load each module, show its messages, read each new device, unload.
fn demo_job(modules: &[String], interactive: bool) -> String {
    let mut j = String::from(
        "ls /dev > /tmp/dev.before\n\
         echo '== kernel:' $(uname -r)\n",
    );
    for m in modules {
        j.push_str(&format!(
            "n=$(dmesg | wc -l)\n\
             if modprobe {m}; then echo \"== modprobe {m}: ok\"; else echo \"== modprobe {m}: FAILED ($?)\"; fi\n\
             dmesg | tail -n +$((n+1)) | sed 's/^/   dmesg: /'\n"
        ));
    }
    j.push_str(
        "echo '== lsmod:'; lsmod\n\
         ls /dev > /tmp/dev.after\n\
         for d in $(grep -vxF -f /tmp/dev.before /tmp/dev.after); do\n\
           echo \"== read /dev/$d:\"; timeout 2 head -c 200 /dev/$d < /dev/null 2>&1 | od -c | head -4\n\
         done\n",
    );
    if interactive {
        j.push_str(
            "echo\necho '== Shell in the guest (job control on; the modules stay loaded). Leave with \
             `exit` or Ctrl-d (unload all, power off), `poweroff -f`, or Ctrl-a x (kill QEMU).'\n\
             PS1='\\h:\\w\\$ ' setsid cttyhack sh -l\n",
        );
    }
    for m in modules.iter().rev() {
        j.push_str(&format!(
            "n=$(dmesg | wc -l)\n\
             if rmmod {m} 2>/dev/null; then echo \"== rmmod {m}: ok\"; dmesg | tail -n +$((n+1)) | sed 's/^/   dmesg: /'; fi\n"
        ));
    }
    j
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
