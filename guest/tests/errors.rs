//! The `errors` module: error codes, `?` propagation, `use_result()` and `fail_with`.

use guest::kmod::{self, is_loaded, Loaded};
use guest::{Errno, Kmsg};
use std::path::Path;

const NAME: &str = "errors";

/// The `errors: ` records logged since `log` was created.
fn module_lines(log: &mut Kmsg) -> Vec<String> {
    log.lines()
        .into_iter()
        .filter(|l| l.starts_with("errors: "))
        .collect()
}

/// Load with `params`, expect failure with `errno`, nothing left behind; returns the log lines.
fn expect_load_failure(params: &str, errno: i32) -> Vec<String> {
    kmod::ensure_unloaded(NAME);
    let mut log = Kmsg::new();
    assert_eq!(
        kmod::load(NAME, params),
        Err(Errno(errno)),
        "insmod errors {params}"
    );
    assert!(!is_loaded(NAME), "errors not loaded after insmod {params}");
    assert!(
        !Path::new("/sys/module/errors").exists(),
        "/sys/module/errors gone after insmod {params}"
    );
    module_lines(&mut log)
}

#[test]
fn init_shows_codes_and_use_result() {
    kmod::ensure_unloaded(NAME);
    let mut log = Kmsg::new();
    let _m = Loaded::new(NAME, "").expect("insmod errors");
    assert_eq!(
        module_lines(&mut log),
        [
            "errors: kernel error codes: EINVAL=-22 ENOMEM=-12 ENODEV=-19",
            "errors: use_result() returned 42",
        ]
    );
    assert!(is_loaded(NAME));
}

#[test]
fn fail_with_param_is_visible_read_only_and_empty() {
    let _m = Loaded::new(NAME, "").expect("insmod errors");
    let p = "/sys/module/errors/parameters/fail_with";
    assert_eq!(guest::mode_of(p).unwrap(), 0o444);
    assert_eq!(std::fs::read_to_string(p).unwrap(), "\n");
}

#[test]
fn fail_with_names_fail_insmod_with_that_errno() {
    for (name, errno) in [
        ("EINVAL", libc::EINVAL),
        ("ENOMEM", libc::ENOMEM),
        ("ENODEV", libc::ENODEV),
        ("EPERM", libc::EPERM),
        ("EIO", libc::EIO),
        ("ENOSPC", libc::ENOSPC),
        ("ETIMEDOUT", libc::ETIMEDOUT),
        ("EHWPOISON", libc::EHWPOISON),
        ("enodev", libc::ENODEV),
    ] {
        let lines = expect_load_failure(&format!("fail_with={name}"), errno);
        let upper = name.to_uppercase();
        assert_eq!(
            lines,
            [
                "errors: kernel error codes: EINVAL=-22 ENOMEM=-12 ENODEV=-19".to_string(),
                format!("errors: use_result() failed: {upper} (-{errno})"),
            ],
            "fail_with={name}"
        );
    }
}

#[test]
fn fail_with_numbers_fail_insmod_with_that_errno() {
    for (value, errno, name) in [
        ("19", libc::ENODEV, "ENODEV"),
        ("-12", libc::ENOMEM, "ENOMEM"),
        ("1", libc::EPERM, "EPERM"),
        ("22", libc::EINVAL, "EINVAL"),
        ("134", 134, "EFTYPE"),
    ] {
        let lines = expect_load_failure(&format!("fail_with={value}"), errno);
        assert_eq!(
            lines.last().map(String::as_str),
            Some(format!("errors: use_result() failed: {name} (-{errno})").as_str()),
            "fail_with={value}: {lines:?}"
        );
    }
}

#[test]
fn fail_with_eexist_is_reported_as_ebusy_by_the_kernel() {
    // do_init_module() turns -EEXIST into -EBUSY: EEXIST means "already loaded".
    let lines = expect_load_failure("fail_with=EEXIST", libc::EBUSY);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("errors: use_result() failed: EEXIST (-17)")
    );
}

#[test]
fn invalid_fail_with_values_are_einval_with_a_message() {
    for bad in [
        "EFOO",
        "0",
        "-0",
        "41",
        "135",
        "512",
        "4095",
        "99999999999",
        "19abc",
        "0x13",
        "garbage",
        "ERESTARTSYS",
        "-",
    ] {
        let lines = expect_load_failure(&format!("fail_with={bad}"), libc::EINVAL);
        assert_eq!(
            lines,
            [
                "errors: kernel error codes: EINVAL=-22 ENOMEM=-12 ENODEV=-19".to_string(),
                format!(
                    "errors: invalid fail_with `{bad}': use an errno name (EINVAL, ENOMEM, ENODEV, ...) or its number"
                ),
                "errors: use_result() failed: EINVAL (-22)".to_string(),
            ],
            "fail_with={bad}"
        );
    }
}

#[test]
fn too_long_or_missing_fail_with_is_einval() {
    kmod::ensure_unloaded(NAME);
    let long = "E".repeat(33);
    let mut log = Kmsg::new();
    assert_eq!(
        kmod::load(NAME, &format!("fail_with={long}")),
        Err(Errno(libc::EINVAL))
    );
    let lines = log.lines();
    assert!(
        lines.contains(&format!(
            "errors: `{long}' invalid for parameter `fail_with'"
        )),
        "{lines:?}"
    );
    // `fail_with` without a value.
    expect_load_failure("fail_with", libc::EINVAL);
    assert!(!is_loaded(NAME));
}

#[test]
fn empty_fail_with_loads() {
    let _m = Loaded::new(NAME, "fail_with=").expect("an empty fail_with means: do not fail");
    assert!(is_loaded(NAME));
}

#[test]
fn loads_again_after_failures() {
    expect_load_failure("fail_with=ENOMEM", libc::ENOMEM);
    let _m = Loaded::new(NAME, "").expect("insmod errors after a failed init");
    assert!(is_loaded(NAME));
}

#[test]
fn modinfo_shows_metadata() {
    kmod::assert_metadata(
        NAME,
        "Kernel error codes, Result and ? (chapter: Error Handling)",
    );
    assert_eq!(
        kmod::modinfo(NAME, "parm"),
        ["fail_with:Make init fail with this errno: a name (EINVAL, ENOMEM, ENODEV, ...) or a number (19)"]
    );
    assert_eq!(kmod::modinfo(NAME, "parmtype"), ["fail_with:string"]);
}
