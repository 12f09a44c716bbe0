//! Bad input, table-driven: every row names an action and the errno it must fail with.
//! Invalid module parameters, bad user pointers, unknown ioctls, negative lengths,
//! SET_CAPACITY on a non-empty FIFO, privileged ioctls and device opens as an unprivileged
//! user, rmmod of a module whose device is open (EWOULDBLOCK: see the row).

use guest::sys::{self, open};
use guest::{kmod, Errno};
use std::os::fd::{AsRawFd, OwnedFd};

const KERNEL_PTR: usize = 0xffff_8880_0000_0000;

/// An fd of `path` opened O_RDWR|O_NONBLOCK.
fn rw(path: &str) -> OwnedFd {
    open(path, libc::O_RDWR | libc::O_NONBLOCK).unwrap_or_else(|e| panic!("open {path}: {e:?}"))
}

fn read_to(path: &str, ptr: usize, len: usize) -> Result<(), Errno> {
    let fd = rw(path);
    if path.contains("fifo") {
        // Something to read, so the copy to `ptr` is really attempted.
        let _ = sys::write(fd.as_raw_fd(), b"data");
    }
    // SAFETY: the rows' addresses are unmapped, the kernel's or read-only: nothing of this
    // process is written; a bad address is the point of the row.
    unsafe { sys::read_to_addr(fd.as_raw_fd(), ptr, len) }.map(drop)
}

fn write_from(path: &str, ptr: usize, len: usize) -> Result<(), Errno> {
    sys::write_from_addr(rw(path).as_raw_fd(), ptr, len).map(drop)
}

fn ioctl(path: &str, cmd: u32, arg: usize) -> Result<(), Errno> {
    // SAFETY: the rows' arguments are null or kernel addresses, or commands that write
    // nothing: the kernel validates them, nothing of this process is written.
    unsafe { sys::ioctl(rw(path).as_raw_fd(), cmd.into(), arg) }.map(drop)
}

/// Run `f` in a child process as uid/gid 65534 (nobody); its errno comes back as the exit
/// status (0 = success).
fn as_nobody(f: impl FnOnce() -> Result<(), Errno>) -> Result<(), Errno> {
    // SAFETY: fork; the child only makes syscalls and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: dropping privileges in the child.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
            {
                libc::_exit(255);
            }
        }
        let code = match f() {
            Ok(()) => 0,
            Err(e) => e.0,
        };
        // SAFETY: leaving the child.
        unsafe { libc::_exit(code) };
    }
    let mut st = 0;
    // SAFETY: waiting for our child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    assert!(libc::WIFEXITED(st), "child died: {st:#x}");
    match libc::WEXITSTATUS(st) {
        0 => Ok(()),
        255 => panic!("could not drop privileges"),
        e => Err(Errno(e)),
    }
}

fn load_fails(module: &str, params: &str) -> Result<(), Errno> {
    kmod::ensure_unloaded(module);
    let r = kmod::load(module, params);
    if r.is_ok() {
        let _ = kmod::unload(module);
    }
    assert!(!kmod::is_loaded(module), "{module} left loaded");
    r
}

type Row = (&'static str, Box<dyn Fn() -> Result<(), Errno>>, i32);

#[test]
fn every_bad_input_gets_its_errno() {
    let param_rows: Vec<Row> = vec![
        (
            "my_module my_param=abc",
            Box::new(|| load_fails("my_module", "my_param=abc")),
            libc::EINVAL,
        ),
        (
            "my_module my_param=99999999999",
            Box::new(|| load_fails("my_module", "my_param=99999999999")),
            libc::EINVAL,
        ),
        (
            "errors fail_with=NOPE",
            Box::new(|| load_fails("errors", "fail_with=NOPE")),
            libc::EINVAL,
        ),
        (
            "errors fail_with=ENODEV",
            Box::new(|| load_fails("errors", "fail_with=ENODEV")),
            libc::ENODEV,
        ),
        (
            "rfifo devices=0",
            Box::new(|| load_fails("rfifo", "devices=0")),
            libc::EINVAL,
        ),
        (
            "rfifo devices=65",
            Box::new(|| load_fails("rfifo", "devices=65")),
            libc::EINVAL,
        ),
        (
            "rfifo capacity=0",
            Box::new(|| load_fails("rfifo", "capacity=0")),
            libc::EINVAL,
        ),
        (
            "rfifo capacity=x",
            Box::new(|| load_fails("rfifo", "capacity=x")),
            libc::EINVAL,
        ),
        (
            "cfifo devices=0",
            Box::new(|| load_fails("cfifo", "devices=0")),
            libc::EINVAL,
        ),
        (
            "cfifo devices=65",
            Box::new(|| load_fails("cfifo", "devices=65")),
            libc::EINVAL,
        ),
        (
            "cfifo capacity=0",
            Box::new(|| load_fails("cfifo", "capacity=0")),
            libc::EINVAL,
        ),
        (
            "cfifo capacity=x",
            Box::new(|| load_fails("cfifo", "capacity=x")),
            libc::EINVAL,
        ),
    ];
    let mut failures = Vec::new();
    let run = |rows: Vec<Row>, failures: &mut Vec<String>| {
        for (name, f, want) in rows {
            let got = f();
            let ok = got == Err(Errno(want));
            println!(
                "{} {name}: want {:?}, got {got:?}",
                if ok { "ok  " } else { "FAIL" },
                Errno(want)
            );
            if !ok {
                failures.push(format!("{name}: want {:?}, got {got:?}", Errno(want)));
            }
        }
    };
    run(param_rows, &mut failures);

    let _r = kmod::Loaded::new("rfifo", "").expect("load rfifo");
    let _c = kmod::Loaded::new("cfifo", "").expect("load cfifo");
    let _h = kmod::Loaded::new("hello_chardev", "").expect("load hello_chardev");
    let mut rows: Vec<Row> = Vec::new();
    for dev in ["/dev/rfifo0", "/dev/cfifo0"] {
        rows.push((
            leak(format!("{dev} read to NULL")),
            Box::new(move || read_to(dev, 0, 4)),
            libc::EFAULT,
        ));
        rows.push((
            leak(format!("{dev} read to kernel address")),
            Box::new(move || read_to(dev, KERNEL_PTR, 4)),
            libc::EFAULT,
        ));
        rows.push((
            leak(format!("{dev} write from NULL")),
            Box::new(move || write_from(dev, 0, 4)),
            libc::EFAULT,
        ));
        rows.push((
            leak(format!("{dev} write from kernel address")),
            Box::new(move || write_from(dev, KERNEL_PTR, 4)),
            libc::EFAULT,
        ));
        // A negative (or huge) length: the VFS's access_ok() check on buf+count fails before
        // the driver is reached, so it is EFAULT (the kernel's own FIFO answers the same).
        rows.push((
            leak(format!("{dev} write negative length")),
            Box::new(move || write_from(dev, b"x".as_ptr() as usize, usize::MAX)),
            libc::EFAULT,
        ));
        rows.push((
            leak(format!("{dev} read negative length")),
            Box::new(move || read_to(dev, b"x".as_ptr() as usize, (isize::MAX as usize) + 1)),
            libc::EFAULT,
        ));
        rows.push((
            leak(format!("{dev} write huge length from a small buffer")),
            Box::new(move || write_from(dev, b"x".as_ptr() as usize, 1 << 47)),
            libc::EFAULT,
        ));
        rows.push((
            leak(format!("{dev} unknown ioctl nr")),
            Box::new(move || {
                ioctl(
                    dev,
                    rfifo_uapi::ioc(rfifo_uapi::IOC_NONE, rfifo_uapi::MAGIC, 99, 0),
                    0,
                )
            }),
            libc::ENOTTY,
        ));
        rows.push((
            leak(format!("{dev} foreign ioctl (TCGETS)")),
            Box::new(move || ioctl(dev, libc::TCGETS as u32, 0)),
            libc::ENOTTY,
        ));
        rows.push((
            leak(format!("{dev} GET_STATS to NULL")),
            Box::new(move || ioctl(dev, rfifo_uapi::GET_STATS, 0)),
            libc::EFAULT,
        ));
        rows.push((
            leak(format!("{dev} GET_STATS to kernel address")),
            Box::new(move || ioctl(dev, rfifo_uapi::GET_STATS, KERNEL_PTR)),
            libc::EFAULT,
        ));
        rows.push((
            leak(format!("{dev} SET_CAPACITY from NULL")),
            Box::new(move || ioctl(dev, rfifo_uapi::SET_CAPACITY, 0)),
            libc::EFAULT,
        ));
        rows.push((
            leak(format!("{dev} SET_CAPACITY while non-empty")),
            Box::new(move || {
                let fd = rw(dev);
                sys::write(fd.as_raw_fd(), b"x").unwrap();
                rfifo_uapi::set_capacity(fd.as_raw_fd(), 4096).map_err(Errno::from)
            }),
            libc::EBUSY,
        ));
        rows.push((
            leak(format!("{dev} SET_CAPACITY 0")),
            Box::new(move || rfifo_uapi::set_capacity(rw(dev).as_raw_fd(), 0).map_err(Errno::from)),
            libc::EINVAL,
        ));
        rows.push((
            leak(format!("{dev} open as nobody")),
            Box::new(move || as_nobody(|| open(dev, libc::O_RDWR).map(drop))),
            libc::EACCES,
        ));
        rows.push((
            leak(format!("{dev} SET_CAPACITY as nobody (fd opened by root)")),
            Box::new(move || {
                let fd = rw(dev);
                as_nobody(|| rfifo_uapi::set_capacity(fd.as_raw_fd(), 8192).map_err(Errno::from))
            }),
            libc::EPERM,
        ));
        rows.push((
            leak(format!("{dev} CLEAR as nobody (fd opened by root)")),
            Box::new(move || {
                let fd = rw(dev);
                as_nobody(|| rfifo_uapi::clear(fd.as_raw_fd()).map_err(Errno::from))
            }),
            libc::EPERM,
        ));
    }
    rows.push((
        "/dev/rust_hello read to NULL",
        Box::new(|| read_to("/dev/rust_hello", 0, 17)),
        libc::EFAULT,
    ));
    rows.push((
        "/dev/rust_hello write from kernel address",
        Box::new(|| write_from("/dev/rust_hello", KERNEL_PTR, 17)),
        libc::EFAULT,
    ));
    rows.push((
        "/dev/rust_hello ioctl",
        Box::new(|| ioctl("/dev/rust_hello", 0x1234, 0)),
        libc::ENOTTY,
    ));
    rows.push((
        "/dev/rust_hello open as nobody",
        Box::new(|| as_nobody(|| open("/dev/rust_hello", libc::O_RDONLY).map(drop))),
        libc::EACCES,
    ));
    for (m, dev) in [
        ("rfifo", "/dev/rfifo0"),
        ("cfifo", "/dev/cfifo0"),
        ("hello_chardev", "/dev/rust_hello"),
    ] {
        rows.push((
            leak(format!("rmmod {m} while {dev} is open")),
            Box::new(move || {
                let fd = rw(dev);
                let r = kmod::unload(m);
                drop(fd);
                assert!(kmod::is_loaded(m), "{m} unloaded while open");
                r
            }),
            // 7.3's delete_module() reports a module in use as EWOULDBLOCK (== EAGAIN),
            // with or without O_NONBLOCK (kernel/module/main.c try_stop_module); kmod's
            // rmmod shows it as "Module X is in use". EBUSY is for a module still in init.
            libc::EWOULDBLOCK,
        ));
    }
    run(rows, &mut failures);
    assert!(
        failures.is_empty(),
        "{} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}
