//! What `rfifo-uapi` and `edu-uapi` share: the kernel's `_IOC` ioctl-number encoding
//! (asm-generic, also x86), the `-1`/errno convention of their ioctl wrappers, and
//! [`header`], the reading of a `include/uapi/*.h` file that their host tests compare
//! the Rust numbers and layouts with. No dependencies; both crates re-export
//! [`ioc`] and the `IOC_*` directions, so `rfifo_uapi::ioc` and `edu_uapi::ioc` work.

use std::io;

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
/// `_IOC_NONE`, `_IOC_WRITE`, `_IOC_READ` (asm-generic, also x86).
pub const IOC_NONE: u32 = 0;
pub const IOC_WRITE: u32 = 1;
pub const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`.
pub const fn ioc(dir: u32, ty: u32, nr: u32, size: usize) -> u32 {
    assert!(size < 1 << IOC_SIZEBITS);
    (dir << IOC_DIRSHIFT)
        | (ty << IOC_TYPESHIFT)
        | (nr << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}

/// A libc return value (`c_int`): `r`, or the errno of a negative one as an [`io::Error`].
pub fn check(r: i32) -> io::Result<i32> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Reading a uapi header as text, for the host tests that check the Rust side against it:
/// `#define`s, the `_IO`/`_IOR`/`_IOW`/`_IOWR` numbers, and the fields of a struct.
pub mod header {
    use super::*;
    use std::collections::HashMap;

    /// `#define NAME VALUE` lines of `text` (value text trimmed).
    pub fn defines(text: &str) -> HashMap<String, String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("#define "))
            .filter_map(|l| {
                let (name, value) = l.split_once(char::is_whitespace)?;
                Some((name.to_string(), value.trim().to_string()))
            })
            .collect()
    }

    /// A number as a header spells it: decimal, `0x` hex, or a parenthesised product
    /// such as `(16 * 1024 * 1024)`.
    pub fn number(s: &str) -> u32 {
        let s = s.trim();
        if let Some(h) = s.strip_prefix("0x") {
            u32::from_str_radix(h, 16).unwrap()
        } else if let Some(inner) = s.strip_prefix('(').and_then(|s| s.strip_suffix(')')) {
            inner.split('*').map(number).product()
        } else {
            s.parse().unwrap()
        }
    }

    /// Evaluates `_IO(MAGIC, n)`, `_IOR(MAGIC, n, T)`, `_IOW(...)` or `_IOWR(...)` as the
    /// header spells it: `MAGIC` is looked up in `defines`, `size_of` gives the size of `T`.
    pub fn ioctl_number(
        value: &str,
        defines: &HashMap<String, String>,
        size_of: impl Fn(&str) -> usize,
    ) -> u32 {
        let (mac, args) = value.split_once('(').unwrap();
        let args: Vec<&str> = args
            .strip_suffix(')')
            .unwrap()
            .split(',')
            .map(str::trim)
            .collect();
        let ty = number(&defines[args[0]]);
        let nr = number(args[1]);
        match mac {
            "_IO" => ioc(IOC_NONE, ty, nr, 0),
            "_IOR" => ioc(IOC_READ, ty, nr, size_of(args[2])),
            "_IOW" => ioc(IOC_WRITE, ty, nr, size_of(args[2])),
            "_IOWR" => ioc(IOC_READ | IOC_WRITE, ty, nr, size_of(args[2])),
            other => panic!("unknown macro {other}"),
        }
    }

    /// `(type, name)` of each field of `struct NAME` in `text`, in order.
    pub fn struct_fields(text: &str, name: &str) -> Vec<(String, String)> {
        text.split(&format!("struct {name} {{"))
            .nth(1)
            .unwrap_or_else(|| panic!("no struct {name}"))
            .split("};")
            .next()
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().split_once(';').map(|(decl, _)| decl.to_string()))
            .filter(|decl| !decl.is_empty())
            .map(|decl| {
                let (ty, name) = decl.rsplit_once(char::is_whitespace).unwrap();
                (ty.trim().to_string(), name.to_string())
            })
            .collect()
    }

    /// Asserts that `struct NAME` in `text` has the fields `ours` (C type, name, the Rust
    /// field's offset) in this order, of `__u32`/`__u64` only, without padding, and that
    /// the Rust struct's `size` is theirs.
    pub fn assert_layout(text: &str, name: &str, ours: &[(&str, &str, usize)], size: usize) {
        let fields = struct_fields(text, name);
        assert_eq!(fields.len(), ours.len(), "{fields:?}");
        let mut offset = 0;
        for ((cty, cname), (ty, field, off)) in fields.iter().zip(ours) {
            assert_eq!((cty.as_str(), cname.as_str()), (*ty, *field));
            assert_eq!(*off, offset, "{field}");
            offset += match *ty {
                "__u64" => 8,
                "__u32" => 4,
                other => panic!("struct {name}: unexpected type {other}"),
            };
        }
        assert_eq!(size, offset, "struct {name}: no padding");
    }
}

#[cfg(test)]
mod tests {
    use super::header::*;
    use super::*;

    const H: &str = "#define X_MAGIC 0xAB\n\
                     #define X_MAX (4 * 1024)\n\
                     struct x_s {\n\t__u64 a;\n\t__u32 b;\n\t__u32 c;\n};\n\
                     #define X_GET _IOR(X_MAGIC, 1, struct x_s)\n\
                     #define X_SET _IOW(X_MAGIC, 2, __u32)\n\
                     #define X_RW _IOWR(X_MAGIC, 3, __u32)\n\
                     #define X_CLEAR _IO(X_MAGIC, 4)\n";

    #[test]
    fn known_encodings() {
        // The values the kernel's macros produce on x86-64.
        assert_eq!(ioc(IOC_READ, 0xB9, 1, 4), 0x8004_b901);
        assert_eq!(ioc(IOC_WRITE, 0xB9, 2, 4), 0x4004_b902);
        assert_eq!(ioc(IOC_NONE, 0xB9, 3, 0), 0x0000_b903);
        assert_eq!(ioc(IOC_READ | IOC_WRITE, 0xBB, 1, 16), 0xc010_bb01);
    }

    #[test]
    fn a_header_is_read() {
        let d = defines(H);
        assert_eq!(number(&d["X_MAGIC"]), 0xAB);
        assert_eq!(number(&d["X_MAX"]), 4096);
        let size = |t: &str| match t {
            "__u32" => 4,
            "struct x_s" => 16,
            other => panic!("{other}"),
        };
        assert_eq!(ioctl_number(&d["X_GET"], &d, size), 0x8010_ab01);
        assert_eq!(ioctl_number(&d["X_SET"], &d, size), 0x4004_ab02);
        assert_eq!(ioctl_number(&d["X_RW"], &d, size), 0xc004_ab03);
        assert_eq!(ioctl_number(&d["X_CLEAR"], &d, size), 0x0000_ab04);
        assert_layout(
            H,
            "x_s",
            &[("__u64", "a", 0), ("__u32", "b", 8), ("__u32", "c", 12)],
            16,
        );
    }

    #[test]
    fn check_keeps_the_errno() {
        assert_eq!(check(3).unwrap(), 3);
        // SAFETY: close of an fd that is not open: EBADF, nothing else happens.
        let r = unsafe { close(-1) };
        assert_eq!(check(r).unwrap_err().raw_os_error(), Some(9)); // EBADF
    }

    extern "C" {
        fn close(fd: i32) -> i32;
    }
}
