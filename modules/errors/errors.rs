// SPDX-License-Identifier: GPL-2.0

//! The chapter's "Error Handling": kernel error codes, `Result` and `?`.
//!
//! Kernel functions report failure with an [`Error`] holding a negative errno (`EINVAL` is -22);
//! `Result<T>` is `core::result::Result<T, Error>`, and `?` hands an error to the caller. This
//! module has the chapter's `may_fail()` and `use_result()`: `use_result()` calls `may_fail()?`
//! and returns `Ok(42)` unless `may_fail()` fails. `init` logs the values of a few error codes
//! and `use_result() returned 42`.
//!
//! The `fail_with` parameter makes `may_fail()` fail, so the error travels through `?` out of
//! `use_result()` and out of `init`, and `insmod` fails with exactly that errno (the module is
//! not left loaded). It takes an errno name (`EINVAL`, `ENOMEM`, `ENODEV`, ..., any case) or its
//! number (`19` or `-19`). Names and numbers come from the table [`ERRNOS`]: every error code of
//! `include/uapi/asm-generic/errno-base.h` and `errno.h` (1..=134, without the unused 41 and 58;
//! aliases like `EWOULDBLOCK` not included), i.e. the codes user space can receive. Kernel-internal
//! codes such as `ERESTARTSYS` (512) must never reach user space and are not accepted. Anything
//! else (`EFOO`, `0`, `135`, `19abc`) makes `init` fail with `EINVAL` and log why.
//!
//! One exception is made by the kernel, not by this module: an `init` returning `-EEXIST` is
//! reported to user space as `EBUSY`, because `EEXIST` from `finit_module(2)` means "a module
//! with this name is already loaded".
//!
//! ```text
//! # modprobe errors && dmesg | tail -2 && rmmod errors
//! errors: kernel error codes: EINVAL=-22 ENOMEM=-12 ENODEV=-19
//! errors: use_result() returned 42
//! # insmod /lib/modules/$(uname -r)/extra/errors.ko fail_with=ENODEV
//! insmod: can't insert '.../errors.ko': No such device
//! # dmesg | tail -1
//! errors: use_result() failed: ENODEV (-19)
//! ```
//!
//! `fail_with` is a string parameter: Linux 7.3's `module!` only has integer and `bool`
//! parameters, so it is declared with `params::module_params!` (`modules/common/params.rs`).
//! It is visible read-only in `/sys/module/errors/parameters/fail_with` while loaded (always
//! empty then, since a set value prevents loading). Error names are printed from [`ERRNOS`]
//! because this kernel has no `CONFIG_SYMBOLIC_ERRNAME` (so `{:?}` of an `Error` prints
//! `Error(19)`, not `ENODEV`).

use kernel::{error::code::*, prelude::*};

#[path = "../common/params.rs"]
mod params;

module! {
    type: Errors,
    name: "errors",
    authors: ["Rust kernel modules workbench"],
    description: "Kernel error codes, Result and ? (chapter: Error Handling)",
    license: "GPL",
}

params::module_params! {
    fail_with: params::ParamString<32> {
        default: params::ParamString::new(""),
        permissions: 0o444,
        description: "Make init fail with this errno: a name (EINVAL, ENOMEM, ENODEV, ...) or a number (19)",
    },
}

macro_rules! errno_table {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), $name)),*]
    };
}

/// The errno names and codes `fail_with` accepts (the uapi `errno-base.h` and `errno.h` codes).
///
/// `EFSBADCRC` and `EFSCORRUPTED` are kernel aliases of `EBADMSG` and `EUCLEAN`; they come after
/// the names they alias, so [`errno_name`] prints the usual name.
#[rustfmt::skip]
static ERRNOS: &[(&str, Error)] = errno_table![
    EPERM, ENOENT, ESRCH, EINTR, EIO, ENXIO, E2BIG, ENOEXEC, EBADF, ECHILD, EAGAIN, ENOMEM,
    EACCES, EFAULT, ENOTBLK, EBUSY, EEXIST, EXDEV, ENODEV, ENOTDIR, EISDIR, EINVAL, ENFILE,
    EMFILE, ENOTTY, ETXTBSY, EFBIG, ENOSPC, ESPIPE, EROFS, EMLINK, EPIPE, EDOM, ERANGE,
    EDEADLK, ENAMETOOLONG, ENOLCK, ENOSYS, ENOTEMPTY, ELOOP, ENOMSG, EIDRM, ECHRNG, EL2NSYNC,
    EL3HLT, EL3RST, ELNRNG, EUNATCH, ENOCSI, EL2HLT, EBADE, EBADR, EXFULL, ENOANO, EBADRQC,
    EBADSLT, EBFONT, ENOSTR, ENODATA, ETIME, ENOSR, ENONET, ENOPKG, EREMOTE, ENOLINK, EADV,
    ESRMNT, ECOMM, EPROTO, EMULTIHOP, EDOTDOT, EBADMSG, EOVERFLOW, ENOTUNIQ, EBADFD, EREMCHG,
    ELIBACC, ELIBBAD, ELIBSCN, ELIBMAX, ELIBEXEC, EILSEQ, ERESTART, ESTRPIPE, EUSERS, ENOTSOCK,
    EDESTADDRREQ, EMSGSIZE, EPROTOTYPE, ENOPROTOOPT, EPROTONOSUPPORT, ESOCKTNOSUPPORT,
    EOPNOTSUPP, EPFNOSUPPORT, EAFNOSUPPORT, EADDRINUSE, EADDRNOTAVAIL, ENETDOWN, ENETUNREACH,
    ENETRESET, ECONNABORTED, ECONNRESET, ENOBUFS, EISCONN, ENOTCONN, ESHUTDOWN, ETOOMANYREFS,
    ETIMEDOUT, ECONNREFUSED, EHOSTDOWN, EHOSTUNREACH, EALREADY, EINPROGRESS, ESTALE, EUCLEAN,
    ENOTNAM, ENAVAIL, EISNAM, EREMOTEIO, EDQUOT, ENOMEDIUM, EMEDIUMTYPE, ECANCELED, ENOKEY,
    EKEYEXPIRED, EKEYREVOKED, EKEYREJECTED, EOWNERDEAD, ENOTRECOVERABLE, ERFKILL, EHWPOISON,
    EFTYPE,
    // Aliases.
    EFSBADCRC, EFSCORRUPTED,
];

/// The name of `err` (`"ENODEV"`), or `"E?"` for a code that is not in [`ERRNOS`].
fn errno_name(err: Error) -> &'static str {
    ERRNOS
        .iter()
        .find(|(_, e)| *e == err)
        .map_or("E?", |(name, _)| name)
}

/// Parses a `fail_with` value.
///
/// Returns `Ok(None)` for the empty string (the default: do not fail), `Ok(Some(err))` for a name
/// in [`ERRNOS`] (any case) or the decimal number of one (`19` or `-19`), and `Err(EINVAL)` for
/// anything else.
fn parse_fail_with(value: &[u8]) -> Result<Option<Error>> {
    if value.is_empty() {
        return Ok(None);
    }
    if let Some((_, err)) = ERRNOS
        .iter()
        .find(|(name, _)| name.as_bytes().eq_ignore_ascii_case(value))
    {
        return Ok(Some(*err));
    }
    let digits = value.strip_prefix(b"-").unwrap_or(value);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(EINVAL);
    }
    // `?` converts the `Utf8Error` into `EINVAL` (`impl From<Utf8Error> for Error`); it cannot
    // happen here since the bytes are ASCII digits.
    let number: i32 = core::str::from_utf8(digits)?.parse().map_err(|_| EINVAL)?;
    ERRNOS
        .iter()
        .find(|(_, e)| e.to_errno() == -number)
        .map(|(_, e)| Some(*e))
        .ok_or(EINVAL)
}

/// The chapter's `may_fail()`: fails with the error `fail_with` asks for, if any.
fn may_fail() -> Result {
    let requested = fail_with.get();
    let fail = parse_fail_with(requested.as_bytes()).inspect_err(|_| {
        pr_err!(
            "invalid fail_with `{}': use an errno name (EINVAL, ENOMEM, ENODEV, ...) or its number\n",
            requested.as_bstr()
        );
    })?;
    match fail {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The chapter's `use_result()`: `?` returns `may_fail()`'s error, otherwise the result is 42.
fn use_result() -> Result<i32> {
    may_fail()?;
    Ok(42)
}

struct Errors;

impl kernel::Module for Errors {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!(
            "kernel error codes: EINVAL={} ENOMEM={} ENODEV={}\n",
            EINVAL.to_errno(),
            ENOMEM.to_errno(),
            ENODEV.to_errno()
        );
        let value = use_result().inspect_err(|err| {
            pr_err!(
                "use_result() failed: {} ({})\n",
                errno_name(*err),
                err.to_errno()
            );
        })?;
        pr_info!("use_result() returned {}\n", value);
        Ok(Errors)
    }
}

#[kunit_tests(errors_fail_with)]
mod tests {
    use super::*;
    use kernel::{fmt::Write, str::Formatter};

    #[test]
    fn empty_means_do_not_fail() {
        assert_eq!(parse_fail_with(b""), Ok(None));
    }

    #[test]
    fn names_map_to_kernel_codes() {
        assert_eq!(parse_fail_with(b"EINVAL"), Ok(Some(EINVAL)));
        assert_eq!(parse_fail_with(b"ENOMEM"), Ok(Some(ENOMEM)));
        assert_eq!(parse_fail_with(b"ENODEV"), Ok(Some(ENODEV)));
        assert_eq!(parse_fail_with(b"enodev"), Ok(Some(ENODEV)));
        assert_eq!(parse_fail_with(b"EPERM"), Ok(Some(EPERM)));
        assert_eq!(parse_fail_with(b"EFTYPE"), Ok(Some(EFTYPE)));
        assert_eq!(parse_fail_with(b"EFSCORRUPTED"), Ok(Some(EUCLEAN)));
    }

    #[test]
    fn numbers_map_to_codes() {
        assert_eq!(parse_fail_with(b"19"), Ok(Some(ENODEV)));
        assert_eq!(parse_fail_with(b"-12"), Ok(Some(ENOMEM)));
        assert_eq!(parse_fail_with(b"0022"), Ok(Some(EINVAL)));
        assert_eq!(parse_fail_with(b"1"), Ok(Some(EPERM)));
        assert_eq!(parse_fail_with(b"134"), Ok(Some(EFTYPE)));
    }

    #[test]
    fn every_named_errno_round_trips() {
        // 1..=134 except the unused 41 and 58.
        let mut count = 0;
        for n in 1..=134i32 {
            let parsed = parse_fail_with(fmt_num(n, &mut [0u8; 8]));
            if n == 41 || n == 58 {
                assert_eq!(parsed, Err(EINVAL));
                continue;
            }
            assert!(matches!(parsed, Ok(Some(e)) if e.to_errno() == -n));
            if let Ok(Some(e)) = parsed {
                let name = errno_name(e);
                assert_eq!(parse_fail_with(name.as_bytes()), Ok(Some(e)));
            }
            count += 1;
        }
        assert_eq!(count, 132);
        assert_eq!(ERRNOS.len(), 134);
    }

    #[test]
    fn invalid_values_are_einval() {
        for bad in [
            &b"0"[..],
            b"-0",
            b"41",
            b"58",
            b"135",
            b"512",
            b"4095",
            b"99999999999",
            b"-",
            b"+19",
            b" 19",
            b"19abc",
            b"0x13",
            b"EFOO",
            b"E",
            b"ERESTARTSYS",
            b"EINVAL ",
        ] {
            assert_eq!(parse_fail_with(bad), Err(EINVAL));
        }
    }

    #[test]
    fn names_print_from_the_table() {
        assert_eq!(errno_name(ENODEV), "ENODEV");
        assert_eq!(errno_name(EBADMSG), "EBADMSG");
        assert_eq!(errno_name(EUCLEAN), "EUCLEAN");
        assert_eq!(errno_name(ERESTARTSYS), "E?");
    }

    #[test]
    fn use_result_returns_42_by_default() {
        // KUnit runs the suite once `init` succeeded, so `fail_with` asks for no error.
        assert_eq!(use_result(), Ok(42));
    }

    /// `n` in decimal, in `buf`.
    fn fmt_num(n: i32, buf: &mut [u8; 8]) -> &[u8] {
        let mut f = Formatter::new(buf);
        let len = match f.write_fmt(fmt!("{}", n)) {
            Ok(()) => f.bytes_written(),
            Err(_) => 0,
        };
        &buf[..len]
    }
}
