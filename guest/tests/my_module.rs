//! The `my_module` module: `module!` metadata and parameters with sysfs permissions.

use guest::kmod::{self, is_loaded, Loaded};
use guest::{mode_of, Errno, Kmsg};
use std::path::Path;

const NAME: &str = "my_module";
const PARAMS: &str = "/sys/module/my_module/parameters";
const DEV: &str = "/dev/my_module";

fn param_path(p: &str) -> String {
    format!("{PARAMS}/{p}")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Write `value` to a sysfs file in one write(2), as `echo value > file` does.
fn write(path: &str, value: &str) -> Result<(), Errno> {
    std::fs::write(path, value).map_err(Errno::from)
}

/// The `my_module: ` records logged since `log` was created (prefix kept).
fn module_lines(log: &mut Kmsg) -> Vec<String> {
    log.lines()
        .into_iter()
        .filter(|l| l.starts_with("my_module: "))
        .collect()
}

#[test]
fn defaults_are_logged_at_init() {
    kmod::ensure_unloaded(NAME);
    let mut log = Kmsg::new();
    let _m = Loaded::new(NAME, "").expect("insmod my_module");
    assert_eq!(
        module_lines(&mut log),
        ["my_module: loaded: my_param=42 buffer_size=4096 verbose=false load_only=1"]
    );
}

#[test]
fn insmod_values_are_logged_at_init() {
    kmod::ensure_unloaded(NAME);
    let mut log = Kmsg::new();
    let _m = Loaded::new(NAME, "my_param=-7 buffer_size=0x10 verbose load_only=3")
        .expect("insmod my_module with params");
    assert_eq!(
        module_lines(&mut log),
        ["my_module: loaded: my_param=-7 buffer_size=16 verbose=true load_only=3"]
    );
    assert_eq!(read(&param_path("my_param")), "-7\n");
    assert_eq!(read(&param_path("buffer_size")), "16\n");
    assert_eq!(read(&param_path("verbose")), "Y\n");
}

#[test]
fn sysfs_files_have_the_declared_modes() {
    let _m = Loaded::new(NAME, "").expect("insmod my_module");
    assert_eq!(mode_of(&param_path("my_param")).unwrap(), 0o644);
    assert_eq!(mode_of(&param_path("buffer_size")).unwrap(), 0o444);
    assert_eq!(mode_of(&param_path("verbose")).unwrap(), 0o644);
    assert_eq!(read(&param_path("my_param")), "42\n");
    assert_eq!(read(&param_path("buffer_size")), "4096\n");
    assert_eq!(read(&param_path("verbose")), "N\n");
    // `load_only` is registered with permission 0: no sysfs file.
    assert!(
        !Path::new(&param_path("load_only")).exists(),
        "permission 0 parameters have no sysfs file"
    );
    let mut names: Vec<String> = std::fs::read_dir(PARAMS)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["buffer_size", "my_param", "verbose"]);
}

#[test]
fn device_reads_default_value() {
    let _m = Loaded::new(NAME, "").expect("insmod my_module");
    assert_eq!(read(DEV), "my_param=42\n");
    // A second read of a fresh open gives the same; EOF after the line.
    assert_eq!(read(DEV), "my_param=42\n");
}

#[test]
fn device_reads_insmod_value() {
    let _m = Loaded::new(NAME, "my_param=123").expect("insmod my_module my_param=123");
    assert_eq!(read(DEV), "my_param=123\n");
}

#[test]
fn runtime_sysfs_write_is_seen_by_the_module() {
    kmod::ensure_unloaded(NAME);
    let mut log = Kmsg::new();
    {
        let _m = Loaded::new(NAME, "").expect("insmod my_module");
        write(&param_path("my_param"), "7\n").expect("echo 7 > my_param");
        assert_eq!(read(&param_path("my_param")), "7\n");
        assert_eq!(read(DEV), "my_param=7\n");
        // Without the newline, and negative, too.
        write(&param_path("my_param"), "-100").expect("write -100");
        assert_eq!(read(DEV), "my_param=-100\n");
        let (rc, out) = guest::sh(&format!("echo 7 > {}", param_path("my_param")));
        assert_eq!(rc, 0, "shell echo into my_param: {out}");
        assert_eq!(read(DEV), "my_param=7\n");
    }
    // Drop (rmmod) logs the value the module sees at exit.
    assert_eq!(
        module_lines(&mut log),
        [
            "my_module: loaded: my_param=42 buffer_size=4096 verbose=false load_only=1",
            "my_module: unloaded: my_param=7",
        ]
    );
}

#[test]
fn bool_param_is_writable_at_runtime() {
    let _m = Loaded::new(NAME, "").expect("insmod my_module");
    let p = param_path("verbose");
    write(&p, "Y\n").expect("write Y");
    assert_eq!(read(&p), "Y\n");
    write(&p, "0").expect("write 0");
    assert_eq!(read(&p), "N\n");
    write(&p, "on").expect("write on");
    assert_eq!(read(&p), "Y\n");
    assert_eq!(write(&p, "maybe"), Err(Errno(libc::EINVAL)));
    assert_eq!(read(&p), "Y\n", "a rejected write keeps the value");
}

#[test]
fn read_only_param_cannot_be_written() {
    let _m = Loaded::new(NAME, "buffer_size=8").expect("insmod my_module");
    let p = param_path("buffer_size");
    // kernfs refuses to open a file without write bits for writing, even for root.
    assert_eq!(write(&p, "9\n"), Err(Errno(libc::EACCES)));
    assert_eq!(read(&p), "8\n");
}

#[test]
fn invalid_runtime_writes_are_einval_and_keep_the_value() {
    let _m = Loaded::new(NAME, "").expect("insmod my_module");
    let p = param_path("my_param");
    for bad in ["abc", "99999999999", "2147483648", "\n", "4 2", "7x"] {
        assert_eq!(write(&p, bad), Err(Errno(libc::EINVAL)), "write {bad:?}");
    }
    assert_eq!(read(&p), "42\n");
    assert_eq!(read(DEV), "my_param=42\n");
}

#[test]
fn invalid_insmod_values_fail_with_einval_and_leave_nothing() {
    for (params, bad_value, param) in [
        ("my_param=abc", "abc", "my_param"),
        ("my_param=99999999999", "99999999999", "my_param"),
        ("my_param=", "", "my_param"),
        ("my_param", "", "my_param"),
        ("buffer_size=-1", "-1", "buffer_size"),
        ("verbose=maybe", "maybe", "verbose"),
        ("load_only=abc", "abc", "load_only"),
    ] {
        kmod::ensure_unloaded(NAME);
        let mut log = Kmsg::new();
        assert_eq!(
            kmod::load(NAME, params),
            Err(Errno(libc::EINVAL)),
            "insmod my_module {params}"
        );
        assert!(!is_loaded(NAME), "not loaded after failed insmod {params}");
        assert!(
            !Path::new("/sys/module/my_module").exists(),
            "/sys/module/my_module gone after failed insmod {params}"
        );
        assert!(!Path::new(DEV).exists(), "{DEV} gone after failed insmod");
        let expected = format!("my_module: `{bad_value}' invalid for parameter `{param}'");
        let lines = log.lines();
        assert!(
            lines.contains(&expected),
            "kernel message {expected:?} for {params}; got {lines:?}"
        );
        assert!(
            !lines.iter().any(|l| l.starts_with("my_module: loaded")),
            "init did not run for {params}"
        );
    }
}

#[test]
fn module_is_usable_after_failed_loads() {
    kmod::ensure_unloaded(NAME);
    assert_eq!(kmod::load(NAME, "my_param=abc"), Err(Errno(libc::EINVAL)));
    let _m = Loaded::new(NAME, "my_param=5").expect("insmod after a failed one");
    assert_eq!(read(DEV), "my_param=5\n");
}

#[test]
fn modinfo_shows_metadata() {
    kmod::assert_metadata(
        NAME,
        "Module metadata and parameters (chapter: The module! Macro)",
    );
    let mut parm = kmod::modinfo(NAME, "parm");
    parm.sort();
    assert_eq!(
        parm,
        [
            "buffer_size:A read-only parameter (sysfs mode 0444)",
            "load_only:Set at load time only (permission 0: not in sysfs)",
            "my_param:An example parameter",
            "verbose:A boolean parameter (a bare `verbose` means true)",
        ]
    );
    let mut parmtype = kmod::modinfo(NAME, "parmtype");
    parmtype.sort();
    assert_eq!(
        parmtype,
        [
            "buffer_size:ullong",
            "load_only:uint",
            "my_param:int",
            "verbose:bool"
        ]
    );
}
