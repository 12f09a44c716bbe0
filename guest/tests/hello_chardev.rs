//! The `hello_chardev` module: `/dev/rust_hello`, a misc device with `read_iter`/`write_iter`.

use guest::kmod::{self, Loaded};
use guest::{mode_of, sh, sys, Errno, Kmsg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

const DEV: &str = "/dev/rust_hello";
const HELLO: &[u8] = b"Hello from Rust!\n";

/// Load a fresh instance (so the byte total starts at 0) and start reading the log after it.
fn fresh() -> (Loaded, Kmsg) {
    let m = Loaded::new("hello_chardev", "").expect("insmod hello_chardev");
    let log = Kmsg::new();
    (m, log)
}

/// The texts of the module's own new log records, prefix stripped.
fn module_lines(log: &mut Kmsg) -> Vec<String> {
    log.module_lines("hello_chardev")
}

fn pread(f: &File, len: usize, off: i64) -> Result<Vec<u8>, Errno> {
    sys::pread(f.as_raw_fd(), len, off)
}

fn write_raw(f: &File, buf: &[u8]) -> Result<usize, Errno> {
    sys::write(f.as_raw_fd(), buf)
}

#[test]
fn load_registers_device_node() {
    kmod::ensure_unloaded("hello_chardev");
    assert!(
        std::fs::metadata(DEV).is_err(),
        "{DEV} exists before the module is loaded"
    );
    let mut log = Kmsg::new();
    let m = Loaded::new("hello_chardev", "").expect("insmod hello_chardev");
    assert_eq!(module_lines(&mut log), ["Registering /dev/rust_hello"]);
    let md = std::fs::metadata(DEV).expect("devtmpfs node for the misc device");
    assert!(
        md.file_type().is_char_device(),
        "{DEV} is a character device"
    );
    assert_eq!(libc::major(md.rdev()), 10, "misc devices use major 10");
    assert_eq!(
        mode_of(DEV).unwrap(),
        0o600,
        "MiscDeviceOptions has no mode: devtmpfs uses 0600"
    );
    let sys = std::fs::read_to_string("/sys/class/misc/rust_hello/dev").expect("sysfs misc entry");
    assert!(sys.trim().starts_with("10:"), "sysfs dev is {sys:?}");
    drop(m);
    assert!(!kmod::is_loaded("hello_chardev"));
    assert!(std::fs::metadata(DEV).is_err(), "{DEV} is gone after rmmod");
}

#[test]
fn open_logs_device_opened_at_info_level() {
    let (_m, mut log) = fresh();
    let f1 = File::open(DEV).expect("open O_RDONLY");
    let f2 = OpenOptions::new()
        .write(true)
        .open(DEV)
        .expect("open O_WRONLY");
    drop((f1, f2));
    let recs: Vec<_> = log
        .read()
        .into_iter()
        .filter(|r| r.text.starts_with("hello_chardev: "))
        .collect();
    let texts: Vec<&str> = recs.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "hello_chardev: Device opened",
            "hello_chardev: Device opened"
        ]
    );
    assert!(
        recs.iter().all(|r| r.level == 6),
        "pr_info! is KERN_INFO: {recs:?}"
    );
}

#[test]
fn read_returns_message_then_eof() {
    let (_m, _log) = fresh();
    let mut f = File::open(DEV).unwrap();
    let mut buf = [0u8; 4096];
    let n = f.read(&mut buf).expect("first read");
    assert_eq!(&buf[..n], HELLO, "one read returns the whole message");
    assert_eq!(f.read(&mut buf).expect("second read"), 0, "then EOF");
    assert_eq!(f.read(&mut buf).expect("third read"), 0, "EOF stays EOF");
    // A new open starts at offset 0 again.
    assert_eq!(std::fs::read(DEV).unwrap(), HELLO);
}

#[test]
fn cat_ends_and_prints_the_message_once() {
    let (_m, _log) = fresh();
    let (rc, out) = sh("cat /dev/rust_hello");
    assert_eq!(rc, 0);
    assert_eq!(out, "Hello from Rust!\n");
    let (rc, out) = sh("cat /dev/rust_hello /dev/rust_hello | wc -c");
    assert_eq!((rc, out.trim()), (0, "34"), "two opens, two messages");
}

#[test]
fn one_byte_reads_reassemble_the_message() {
    let (_m, _log) = fresh();
    let mut f = File::open(DEV).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    let mut reads = 0;
    loop {
        let n = f.read(&mut b).unwrap();
        if n == 0 {
            break;
        }
        assert_eq!(n, 1);
        got.push(b[0]);
        reads += 1;
        assert!(reads <= HELLO.len(), "more bytes than the message: {got:?}");
    }
    assert_eq!(got, HELLO);
    assert_eq!(reads, 17);
    let (rc, out) = sh("(dd if=/dev/rust_hello bs=1 2>/dev/null)");
    assert_eq!((rc, out.as_str()), (0, "Hello from Rust!\n"), "dd bs=1");
    let (rc, out) = sh("(dd if=/dev/rust_hello bs=5 2>&1 >/dev/null) | head -1");
    assert_eq!(
        (rc, out.trim()),
        (0, "3+1 records in"),
        "dd bs=5: 5+5+5+2 bytes"
    );
}

#[test]
fn pread_honours_the_offset() {
    let (_m, _log) = fresh();
    let mut f = File::open(DEV).unwrap();
    assert_eq!(pread(&f, 100, 6).unwrap(), b"from Rust!\n");
    assert_eq!(pread(&f, 4, 6).unwrap(), b"from");
    assert_eq!(pread(&f, 100, 16).unwrap(), b"\n");
    assert_eq!(pread(&f, 100, 17).unwrap(), b"", "at the end: EOF");
    assert_eq!(
        pread(&f, 100, 1 << 40).unwrap(),
        b"",
        "far past the end: EOF"
    );
    assert_eq!(
        pread(&f, 100, -1),
        Err(Errno(libc::EINVAL)),
        "negative offset"
    );
    // pread does not move the file position.
    let mut all = Vec::new();
    f.read_to_end(&mut all).unwrap();
    assert_eq!(all, HELLO);
}

#[test]
fn lseek_is_not_supported() {
    // No `llseek` in the MiscDevice vtable: the VFS clears FMODE_LSEEK, so the position only
    // moves by reading (pread still works, see above).
    let (_m, _log) = fresh();
    let f = File::open(DEV).unwrap();
    assert_eq!(
        sys::lseek(f.as_raw_fd(), 6, libc::SEEK_SET),
        Err(Errno(libc::ESPIPE))
    );
}

#[test]
fn write_returns_and_logs_every_length() {
    let (_m, mut log) = fresh();
    let f = OpenOptions::new().write(true).open(DEV).unwrap();
    let sizes = [0usize, 1, 17, 256, 257, 4096, 1 << 20];
    for &n in &sizes {
        let buf = vec![b'x'; n];
        assert_eq!(write_raw(&f, &buf), Ok(n), "write of {n} bytes");
    }
    drop(f);
    let mut want = vec!["Device opened".to_string()];
    want.extend(sizes.iter().map(|n| format!("Received {n} bytes")));
    assert_eq!(module_lines(&mut log), want);
}

#[test]
fn shell_redirect_writes_are_received() {
    let (_m, mut log) = fresh();
    let (rc, out) = sh("echo hi > /dev/rust_hello");
    assert_eq!((rc, out.as_str()), (0, ""));
    let (rc, _) = sh("head -c 1048576 /dev/zero | dd of=/dev/rust_hello bs=1048576 2>/dev/null");
    assert_eq!(rc, 0);
    let lines = module_lines(&mut log);
    assert_eq!(lines[..2], ["Device opened", "Received 3 bytes"]);
    assert_eq!(lines[2], "Device opened");
    // dd may get the pipe in pieces; the pieces add up to 1 MiB.
    let total: usize = lines[3..]
        .iter()
        .map(|l| {
            l.strip_prefix("Received ")
                .and_then(|s| s.strip_suffix(" bytes"))
                .and_then(|s| s.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("unexpected line {l:?}"))
        })
        .sum();
    assert_eq!(total, 1 << 20);
}

#[test]
fn write_from_bad_pointer_is_efault_and_not_counted() {
    let (m, mut log) = fresh();
    let f = OpenOptions::new().write(true).open(DEV).unwrap();
    // A user address that passes access_ok() but is not mapped.
    assert_eq!(
        sys::write_from_addr(f.as_raw_fd(), 16, 64),
        Err(Errno(libc::EFAULT))
    );
    assert_eq!(write_raw(&f, b"ok"), Ok(2));
    drop(f);
    drop(m);
    assert_eq!(
        module_lines(&mut log),
        [
            "Device opened",
            "Received 2 bytes",
            "Total received: 2 bytes"
        ]
    );
}

#[test]
fn total_received_is_logged_on_unload() {
    let (m, mut log) = fresh();
    let mut a = OpenOptions::new().write(true).open(DEV).unwrap();
    let mut b = OpenOptions::new().read(true).write(true).open(DEV).unwrap();
    a.write_all(b"abc").unwrap();
    b.write_all(&[0u8; 1000]).unwrap();
    assert_eq!(write_raw(&a, b""), Ok(0));
    let mut s = Vec::new();
    b.read_to_end(&mut s).unwrap();
    assert_eq!(s, HELLO, "a read/write open reads the message too");
    drop((a, b));
    drop(m);
    let lines = module_lines(&mut log);
    assert_eq!(
        lines,
        [
            "Device opened",
            "Device opened",
            "Received 3 bytes",
            "Received 1000 bytes",
            "Received 0 bytes",
            "Total received: 1003 bytes"
        ]
    );
    // A fresh load starts from zero again.
    let (m, mut log) = fresh();
    drop(m);
    assert_eq!(module_lines(&mut log), ["Total received: 0 bytes"]);
}

#[test]
fn open_file_pins_the_module() {
    let (_m, _log) = fresh();
    let f = File::open(DEV).unwrap();
    assert_eq!(
        kmod::unload("hello_chardev"),
        Err(Errno(libc::EAGAIN)),
        "fops.owner holds a module reference while the file is open"
    );
    assert!(kmod::is_loaded("hello_chardev"));
    drop(f);
    assert_eq!(kmod::unload("hello_chardev"), Ok(()));
}

#[test]
fn modinfo_shows_metadata() {
    kmod::assert_metadata(
        "hello_chardev",
        "Misc character device /dev/rust_hello (chapter: Character Device)",
    );
}
