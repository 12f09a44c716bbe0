//! `protocol`: the guest protocol, in one place. What the host puts into the guest (`/init`
//! and the job script, built with [`Job`]) and the parsers for what comes back
//! ([`Results`]). No other module knows the markers, the results port or the shell that runs
//! in the guest.
//!
//! One boot:
//! 1. `/init` (PID 1, [`init_script`]) mounts the pseudo file systems, exports
//!    `XTASK_RESULTS`, the results channel (the second serial port, a file on the host),
//!    writes `XTASK-BOOTED <release>` to it and runs the job script ([`JOB_PATH`]).
//! 2. The job writes what the host parses to the results channel: `XTASK-CPUS ...`, each
//!    program run with markers between `XTASK-BEGIN NAME` and `XTASK-END NAME <status>`,
//!    kmemleak's findings between `XTASK-KMEMLEAK-BEGIN/END`; and [`TESTS_BEGIN`] to the
//!    kernel log after the KUnit pass. Everything else it prints goes to the console (the
//!    first serial port), which is for people. It exits with 0 unless a step failed.
//! 3. `/init` writes the whole kernel log between `XTASK-DMESG-BEGIN/END`, then
//!    `XTASK-EXIT <job status>`, and powers the machine off.
//!
//! Every write to the channel appends (`>>`): the same on a serial port, and the job also
//! runs with a plain file as its channel (the round-trip test below).

use crate::vm::Machine;

/// The second serial port: QEMU writes it to `results.log` on the host.
const RESULTS_PORT: &str = "/dev/ttyS1";
/// Where `initramfs` puts the job script and `/init` runs it.
pub const JOB_PATH: &str = "/etc/xtask/job";
/// Where `initramfs` puts the libtest binaries (also in the guest's `PATH`).
pub const TESTS_DIR: &str = "/tests";
/// What the test job writes to the kernel log when its KUnit pass is over: KUnit verdicts
/// come from the KTAP before this line only (`ktap::split_documents`).
pub const TESTS_BEGIN: &str = "xtask: tests begin";
/// What the KUnit pass writes to the kernel log before it loads module `M` (whose suites
/// then print their KTAP): `xtask: KUnit pass for M`.
pub const KUNIT_PASS_FOR: &str = "xtask: KUnit pass for ";
/// What a guest test writes to the kernel log before it provokes a report on purpose:
/// `xtask: expect report begin KIND MODULE` (`guest/tests/warn_demo.rs`; `expected.rs`).
pub const EXPECT_BEGIN: &str = "xtask: expect report begin";
/// ... and after it: `xtask: expect report end MODULE`.
pub const EXPECT_END: &str = "xtask: expect report end";

const BOOTED: &str = "XTASK-BOOTED";
const BEGIN: &str = "XTASK-BEGIN";
const END: &str = "XTASK-END";
const CPUS: &str = "XTASK-CPUS";
const KMEMLEAK_BEGIN: &str = "XTASK-KMEMLEAK-BEGIN";
const KMEMLEAK_END: &str = "XTASK-KMEMLEAK-END";
const DMESG_BEGIN: &str = "XTASK-DMESG-BEGIN";
const DMESG_END: &str = "XTASK-DMESG-END";
const EXIT: &str = "XTASK-EXIT";
const FILE_BEGIN: &str = "XTASK-FILE-BEGIN";
const FILE_END: &str = "XTASK-FILE-END";

/// The guest's PID 1. It mounts the pseudo file systems, runs the job, reports its exit
/// status and the whole kernel log on the results channel, and powers the machine off
/// (QEMU runs with `-no-reboot`).
pub fn init_script() -> String {
    format!(
        r#"#!/bin/sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin /run /root
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts 2>/dev/null
hostname rkm-guest
export PATH=/sbin:/usr/sbin:/bin:/usr/bin:{TESTS_DIR} HOME=/root TERM=vt100
cd /root
export XTASK_RESULTS={RESULTS_PORT}
R=$XTASK_RESULTS
stty -F $R raw -echo 2>/dev/null
echo "{BOOTED} $(uname -r)" >> $R
sh {JOB_PATH}
rc=$?
{{ echo "{DMESG_BEGIN}"; dmesg; echo "{DMESG_END}"; echo "{EXIT} $rc"; }} >> $R
sync
reboot -f
"#
    )
}

/// A job script under construction. It starts with the environment the guest tests
/// compare against (`RKM_SMP`, for `kernel::all_cpus_online`) and, when finished, exits
/// with 0 unless a step recorded a failure.
pub struct Job {
    machine: Machine,
    sh: String,
}

impl Job {
    /// In [`Job::run_marked`]'s words: the device nodes that appeared between
    /// [`Job::remember_devices`] and [`Job::new_devices`], as `/dev/...` paths.
    pub const NEW_DEVICES: &'static str = "$new_devices";

    pub fn new(machine: Machine) -> Job {
        Job {
            machine,
            sh: format!("export RKM_SMP={}\nR=$XTASK_RESULTS\nrc=0\n", machine.smp),
        }
    }

    /// The machine the job was written for (its `RKM_SMP`).
    pub fn machine(&self) -> Machine {
        self.machine
    }

    fn line(&mut self, line: &str) -> &mut Job {
        self.sh.push_str(line);
        self.sh.push('\n');
        self
    }

    /// Report the CPUs the guest brought up ([`Results::cpus`]).
    pub fn report_cpus(&mut self) -> &mut Job {
        self.line(&format!(
            "echo \"{CPUS} online=$(cat /sys/devices/system/cpu/online) \
             processors=$(grep -c ^processor /proc/cpuinfo)\" >> $R"
        ))
    }

    /// `modprobe` each module; a failure is printed and does not stop the job.
    pub fn load_modules(&mut self, modules: &[String]) -> &mut Job {
        for m in modules {
            self.line(&format!(
                "modprobe {m} || echo 'xtask: modprobe {m} failed'"
            ));
        }
        self
    }

    /// `modprobe` each module with its parameters; the job ends with status 1 if one fails.
    pub fn load_modules_or_exit(&mut self, modules: &[(&str, &str)]) -> &mut Job {
        for (m, params) in modules {
            self.line(&format!("modprobe {m} {params} || exit 1"));
        }
        self
    }

    /// Load and unload each module once so that its KUnit suites run (they run at load), then
    /// mark the end of the KUnit pass in the kernel log ([`TESTS_BEGIN`]): later steps load
    /// modules under fault injection, where a suite's own allocations may fail by design.
    pub fn kunit_pass(&mut self, modules: &[String]) -> &mut Job {
        for m in modules {
            self.line(&format!(
                "echo '{KUNIT_PASS_FOR}{m}' > /dev/kmsg; modprobe {m} && rmmod {m} || \
                 echo 'modprobe {m} failed' > /dev/kmsg"
            ));
        }
        self.line(&format!("echo '{TESTS_BEGIN}' > /dev/kmsg"))
    }

    /// Remember the device nodes, for [`Job::new_devices`].
    pub fn remember_devices(&mut self) -> &mut Job {
        self.line("ls /dev > /tmp/dev.before")
    }

    /// Set [`Job::NEW_DEVICES`] to the nodes that appeared since [`Job::remember_devices`].
    pub fn new_devices(&mut self) -> &mut Job {
        self.line(
            "ls /dev > /tmp/dev.after\n\
             new_devices=$(grep -vxF -f /tmp/dev.before /tmp/dev.after | sed 's|^|/dev/|')",
        )
    }

    /// Run a program with its output (stdout and stderr) between markers on the results
    /// channel ([`Results::program`]); a non-zero status makes the job's status 1. `argv` is
    /// quoted for the shell, except the word [`Job::NEW_DEVICES`].
    pub fn run_marked(&mut self, name: &str, argv: &[&str]) -> &mut Job {
        let words: Vec<String> = argv
            .iter()
            .map(|w| match *w {
                Job::NEW_DEVICES => w.to_string(),
                _ => shell_quote(w),
            })
            .collect();
        self.line(&format!(
            "echo '{BEGIN} {name}' >> $R\n\
             {} >> $R 2>&1; r=$?\n\
             echo '{END} {name} '$r >> $R\n\
             [ $r = 0 ] || rc=1",
            words.join(" ")
        ))
    }

    /// Run the libtest binary `name` from [`TESTS_DIR`] with markers, one test at a time;
    /// `filter` as libtest's name filter.
    pub fn run_test_binary(&mut self, name: &str, filters: &[&str]) -> &mut Job {
        let exe = format!("{TESTS_DIR}/{name}");
        let mut argv = vec![exe.as_str(), "--test-threads=1", "--show-output"];
        argv.extend(filters);
        self.run_marked(name, &argv)
    }

    /// Run a command on the console; the job's status is its status.
    pub fn command(&mut self, argv: &[String]) -> &mut Job {
        let words: Vec<String> = argv.iter().map(|w| shell_quote(w)).collect();
        self.line(&format!("{}\nrc=$?", words.join(" ")))
    }

    /// On a kernel with kmemleak (the debug profile): force a scan now and report what it
    /// found ([`Results::kmemleak`]).
    pub fn kmemleak_scan(&mut self) -> &mut Job {
        self.line(&format!(
            "K=/sys/kernel/debug/kmemleak\n\
             if [ -e $K ]; then\n\
               echo scan > $K; sleep 1; echo scan > $K\n\
               {{ echo {KMEMLEAK_BEGIN}; cat $K; echo {KMEMLEAK_END}; }} >> $R\n\
             fi"
        ))
    }

    /// The first QEMU `edu` PCI device (1234:11e8) to `rust_edu`, the second to `cedu`
    /// (`driver_override`), so that loading both drivers binds one device each (else the
    /// first loaded takes both); `say`: print which goes where.
    pub fn edu_one_device_each(&mut self, say: bool) -> &mut Job {
        let say = if say {
            "echo \"== edu device ${d##*/} (QEMU 1234:11e8) goes to $drv\""
        } else {
            ":"
        };
        self.line(&format!(
            "i=0\n\
             for d in /sys/bus/pci/devices/*; do\n\
               [ \"$(cat $d/vendor)\" = 0x1234 ] && [ \"$(cat $d/device)\" = 0x11e8 ] || continue\n\
               if [ $i = 0 ]; then drv=rust_edu; else drv=cedu; fi\n\
               echo $drv > $d/driver_override; i=$((i+1))\n\
               {say}\n\
             done"
        ))
    }

    /// `cargo xtask run`'s demo: load each module showing its kernel messages (the first
    /// `edu` PCI device goes to `rust_edu`, the second to `cedu`, by `driver_override`), list
    /// the modules, one factorial and one DMA round trip on each `edu` driver's device, read
    /// each new device node; with `shell`, an interactive shell; then unload each module
    /// showing its messages.
    pub fn demo(&mut self, modules: &[String], shell: bool) -> &mut Job {
        self.remember_devices();
        self.line("echo '== kernel:' $(uname -r)");
        self.edu_one_device_each(true);
        let new_messages = "dmesg | tail -n +$((n+1)) | sed 's/^/   dmesg: /'";
        for m in modules {
            self.line(&format!(
                "n=$(dmesg | wc -l)\n\
                 if modprobe {m}; then echo \"== modprobe {m}: ok\"; \
                 else echo \"== modprobe {m}: FAILED ($?)\"; fi\n\
                 {new_messages}"
            ));
        }
        self.line("echo '== lsmod:'; lsmod");
        self.line(
            "for d in /dev/edu0 /dev/cedu0; do\n\
               [ -c $d ] || continue\n\
               echo \"== $d: eductl $d factorial 10 (computed by the device, completion interrupt)\"\n\
               eductl $d factorial 10\n\
               echo \"== $d: DMA round trip: printf 'Hello, edu!' > $d; head -c 11 $d\"\n\
               printf 'Hello, edu!' > $d && head -c 11 $d; echo\n\
               eductl $d stats\n\
             done",
        );
        self.new_devices();
        self.line(
            "for d in $new_devices; do\n\
               echo \"== read $d:\"; timeout 2 head -c 200 $d < /dev/null 2>&1 | od -c | head -4\n\
             done",
        );
        if shell {
            self.line(
                "echo\necho '== Shell in the guest (job control on; the modules stay loaded). \
                 Leave with `exit` or Ctrl-d (unload all, power off), `poweroff -f`, or Ctrl-a x \
                 (kill QEMU).'\n\
                 PS1='\\h:\\w\\$ ' setsid cttyhack sh -l",
            );
        }
        for m in modules.iter().rev() {
            self.line(&format!(
                "n=$(dmesg | wc -l)\n\
                 if rmmod {m} 2>/dev/null; then echo \"== rmmod {m}: ok\"; {new_messages}; fi"
            ));
        }
        self
    }

    /// `export NAME=VALUE` for the steps after this one.
    pub fn export(&mut self, name: &str, value: &str) -> &mut Job {
        self.line(&format!("export {name}={}", shell_quote(value)))
    }

    /// A shell command run as it is (e.g. `mkdir -p /tmp/x`); its status is ignored.
    pub fn shell(&mut self, sh: &str) -> &mut Job {
        self.line(sh)
    }

    /// Send the output of the shell command `sh` back as the text file `name`
    /// ([`Results::file`]).
    pub fn send_output(&mut self, name: &str, sh: &str) -> &mut Job {
        self.line(&format!(
            "{{ echo '{FILE_BEGIN} {name}'; {sh}; echo; echo '{FILE_END}'; }} >> $R"
        ))
    }

    /// Send every regular file of the guest directory `dir` back as a text file
    /// `prefix/NAME` ([`Results::files`]).
    pub fn send_dir(&mut self, prefix: &str, dir: &str) -> &mut Job {
        self.line(&format!(
            "for f in {dir}/*; do [ -f \"$f\" ] || continue; \
             {{ echo \"{FILE_BEGIN} {prefix}/${{f##*/}}\"; cat \"$f\"; echo; echo '{FILE_END}'; }} >> $R; \
             done"
        ))
    }

    /// The script: the steps, then `exit $rc`.
    pub fn finish(&self) -> String {
        format!("{}exit $rc\n", self.sh)
    }
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

/// What the guest wrote to the results channel.
#[derive(Debug, Default)]
pub struct Results {
    text: String,
}

/// The output of a program run with [`Job::run_marked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramOutput {
    pub name: String,
    /// stdout and stderr.
    pub output: String,
    /// Its exit status; -1 when the end marker is missing or garbled.
    pub status: i32,
}

/// The CPUs the guest brought up ([`Job::report_cpus`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cpus {
    /// `/sys/devices/system/cpu/online`, e.g. `0-1`.
    pub online: String,
    /// Processors in `/proc/cpuinfo`.
    pub processors: u32,
}

impl Results {
    /// `text` is the channel's content (carriage returns already removed).
    pub fn new(text: String) -> Results {
        Results { text }
    }

    /// The raw text, for the log files.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The job's exit status, if the guest got that far.
    pub fn exit(&self) -> Option<i32> {
        self.text
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix(EXIT)?.trim().parse().ok())
    }

    /// The whole kernel log, if `/init` got to dump it.
    pub fn dmesg(&self) -> Option<String> {
        section(&self.text, DMESG_BEGIN, DMESG_END)
    }

    /// kmemleak's findings (empty: none), if the kernel has kmemleak.
    pub fn kmemleak(&self) -> Option<String> {
        section(&self.text, KMEMLEAK_BEGIN, KMEMLEAK_END)
    }

    /// What [`Job::report_cpus`] reported, if the line is there and reads right.
    pub fn cpus(&self) -> Option<Cpus> {
        let line = self
            .text
            .lines()
            .find_map(|l| l.trim().strip_prefix(CPUS)?.strip_prefix(' '))?;
        let mut online = None;
        let mut processors = None;
        for word in line.split_whitespace() {
            match word.split_once('=') {
                Some(("online", v)) => online = Some(v.to_string()),
                Some(("processors", v)) => processors = v.parse().ok(),
                _ => {}
            }
        }
        Some(Cpus {
            online: online?,
            processors: processors?,
        })
    }

    /// Every program run with markers, in order.
    pub fn programs(&self) -> Vec<ProgramOutput> {
        let mut out = Vec::new();
        let mut lines = self.text.lines();
        while let Some(l) = lines.next() {
            let Some(name) = l.strip_prefix(BEGIN).and_then(|n| n.strip_prefix(' ')) else {
                continue;
            };
            let mut body = String::new();
            let mut status = -1;
            for l in lines.by_ref() {
                if let Some(end) = l.strip_prefix(END).and_then(|e| e.strip_prefix(' ')) {
                    status = end
                        .rsplit_once(' ')
                        .and_then(|(_, c)| c.trim().parse().ok())
                        .unwrap_or(-1);
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            out.push(ProgramOutput {
                name: name.trim().to_string(),
                output: body,
                status,
            });
        }
        out
    }

    /// Every text file sent with [`Job::send_output`] / [`Job::send_dir`]: `(name, text)`.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut lines = self.text.lines();
        while let Some(l) = lines.next() {
            let Some(name) = l.strip_prefix(FILE_BEGIN).and_then(|n| n.strip_prefix(' ')) else {
                continue;
            };
            let mut body: Vec<&str> = Vec::new();
            for l in lines.by_ref() {
                if l.trim_end() == FILE_END {
                    break;
                }
                body.push(l);
            }
            // The `echo` before the end marker.
            if body.last() == Some(&"") {
                body.pop();
            }
            let mut text = body.join("\n");
            if !text.is_empty() {
                text.push('\n');
            }
            out.push((name.trim().to_string(), text));
        }
        out
    }

    /// The text file `name`, if it was sent.
    pub fn file(&self, name: &str) -> Option<String> {
        self.files()
            .into_iter()
            .find_map(|(n, t)| (n == name).then_some(t))
    }

    /// The program run with markers as `name`, if it ran.
    pub fn program(&self, name: &str) -> Option<ProgramOutput> {
        self.programs().into_iter().find(|p| p.name == name)
    }
}

/// Text between two marker lines (empty when they are adjacent; `None` without both).
fn section(text: &str, begin: &str, end: &str) -> Option<String> {
    let mut lines = text.lines();
    lines.by_ref().find(|l| l.trim_end() == begin)?;
    let mut body = Vec::new();
    for l in lines {
        if l.trim_end() == end {
            return Some(body.join("\n"));
        }
        body.push(l);
    }
    None
}

/// The JSON object `fifobench` prints (a line `BENCH-JSON {...}`).
pub fn bench_json(output: &str) -> Option<&str> {
    output.lines().find_map(|l| l.strip_prefix("BENCH-JSON "))
}

/// Operations `kfuzz` ran: the sum of its workers' `kfuzz: worker N ran M ops` lines.
pub fn kfuzz_ops(output: &str) -> u64 {
    output
        .lines()
        .filter_map(|l| {
            l.split("ran ")
                .nth(1)?
                .strip_suffix(" ops")?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn results(text: &str) -> Results {
        Results::new(text.to_string())
    }

    #[test]
    fn exit_and_sections() {
        let r = "XTASK-BOOTED 7.3.4\nXTASK-DMESG-BEGIN\n[ 0.1] a\n[ 0.2] b\nXTASK-DMESG-END\nXTASK-EXIT 3\n";
        assert_eq!(results(r).exit(), Some(3));
        assert_eq!(results(r).dmesg().as_deref(), Some("[ 0.1] a\n[ 0.2] b"));
        assert_eq!(results("XTASK-BOOTED\n").exit(), None);
        assert_eq!(section("A\nB\n", "A", "B").as_deref(), Some(""));
        assert_eq!(section("A\nx\n", "A", "B"), None);
    }

    #[test]
    fn sections_are_split() {
        let res = "XTASK-BOOTED 7\nXTASK-BEGIN a\ntest t ... ok\nXTASK-END a 0\nXTASK-BEGIN b\nXTASK-END b 101\n";
        let s = results(res).programs();
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            ProgramOutput {
                name: "a".into(),
                output: "test t ... ok\n".into(),
                status: 0
            }
        );
        assert_eq!(s[1].status, 101);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("ls"), "ls");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn cpus_line() {
        let r = results("XTASK-CPUS online=0-1 processors=2\n");
        assert_eq!(
            r.cpus(),
            Some(Cpus {
                online: "0-1".into(),
                processors: 2
            })
        );
        assert_eq!(results("XTASK-CPUS online=0\n").cpus(), None);
        assert_eq!(results("").cpus(), None);
    }

    #[test]
    fn program_outputs() {
        assert_eq!(bench_json("x\nBENCH-JSON {\"a\":1}\n"), Some("{\"a\":1}"));
        assert_eq!(bench_json("fifobench: done\n"), None);
        let kfuzz = "kfuzz: seed 7, 10 s\nkfuzz: worker 0 ran 12 ops\nkfuzz: worker 1 ran 30 ops\n";
        assert_eq!(kfuzz_ops(kfuzz), 42);
    }

    /// The job as the guest runs it (`/init` exports the channel, then `sh JOB`), on the
    /// host's shell with a file as the channel; what it writes parses back.
    #[test]
    fn job_round_trip_through_a_shell() {
        let dir = std::env::temp_dir().join(format!("xtask-protocol-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let channel = dir.join("results");
        let job_file = dir.join("job");
        let run = |job: &Job| {
            std::fs::write(&job_file, job.finish()).unwrap();
            let _ = std::fs::remove_file(&channel);
            let status = Command::new("sh")
                .arg(&job_file)
                .env("XTASK_RESULTS", &channel)
                .status()
                .unwrap();
            let text = std::fs::read_to_string(&channel).unwrap_or_default();
            (status.code(), Results::new(text))
        };
        let mut job = Job::new(Machine::default());
        job.report_cpus()
            .run_marked("hello", &["echo", "it's"])
            .run_marked("env", &["sh", "-c", "echo smp=$RKM_SMP; exit 3"])
            .command(&["true".to_string()]);
        let (status, r) = run(&job);
        assert_eq!(status, Some(0), "the last command's status: {r:?}");
        let hello = r.program("hello").unwrap();
        assert_eq!((hello.output.as_str(), hello.status), ("it's\n", 0));
        let env = r.program("env").unwrap();
        assert_eq!((env.output.as_str(), env.status), ("smp=2\n", 3));
        let cpus = r.cpus().expect("the CPUs line parses");
        assert!(cpus.processors >= 1, "{cpus:?}");
        // Files come back as they were.
        let src = dir.join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("a"), "1\n2\n").unwrap();
        std::fs::write(src.join("b"), "no newline").unwrap();
        let mut job = Job::new(Machine::default());
        job.export("X", "it's")
            .send_output("x", "echo \"$X\"")
            .send_dir("d", &src.display().to_string());
        let (_, r) = run(&job);
        assert_eq!(r.file("x").as_deref(), Some("it's\n"));
        assert_eq!(r.file("d/a").as_deref(), Some("1\n2\n"));
        assert_eq!(r.file("d/b").as_deref(), Some("no newline\n"));
        assert_eq!(r.files().len(), 3);
        // A failed marked program makes the job fail.
        let mut job = Job::new(Machine::default());
        job.run_marked("false", &["false"]);
        assert_eq!(run(&job).0, Some(1));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn init_runs_the_job_and_reports_on_the_channel() {
        let init = init_script();
        assert!(init.contains(&format!("sh {JOB_PATH}\n")), "{init}");
        assert!(init.contains(&format!("export XTASK_RESULTS={RESULTS_PORT}\n")));
        assert!(init.contains(&format!("{TESTS_DIR} HOME=/root")), "{init}");
        let syntax = Command::new("sh")
            .args(["-n", "-c", &init])
            .output()
            .unwrap();
        assert!(syntax.status.success(), "{syntax:?}");
        // What /init writes after the job is what the parsers read.
        let tail = format!("{DMESG_BEGIN}\n[ 0.1] Linux version 7.3.4\n{DMESG_END}\n{EXIT} 0\n");
        assert!(init.contains(&format!("echo \"{EXIT} $rc\"")));
        assert_eq!(results(&tail).exit(), Some(0));
        assert!(results(&tail).dmesg().unwrap().contains("Linux version"));
    }
}
