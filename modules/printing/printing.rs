// SPDX-License-Identifier: GPL-2.0

//! The chapter's "Kernel Printing": the `pr_*!` macros, one per log level.
//!
//! `init` first reports whether `pr_debug!` is compiled in (`debug_assertions=true|false`), then
//! runs the chapter's `example()`: one message at each of the eight log levels, the formatted
//! `Value is 42`, and a line assembled from two calls with `pr_cont!`, which the kernel stores as
//! the single record `printing: Continued: joined`. Every message is prefixed with the module
//! name (`printing: `) and carries its own priority, which `dmesg -r` (or `/dev/kmsg`) shows:
//!
//! ```text
//! # modprobe printing && dmesg -r | grep printing
//! <6>printing: debug_assertions=false
//! <0>printing: Emergency message
//! <1>printing: Alert message
//! <2>printing: Critical message
//! <3>printing: Error message
//! <4>printing: Warning message
//! <5>printing: Notice message
//! <6>printing: Info message
//! <6>printing: Value is 42
//! <6>printing: Continued: joined
//! ```
//!
//! `pr_debug!` differs from C's `pr_debug()`: with `CONFIG_DYNAMIC_DEBUG` the C macro is always
//! compiled in and switched on at run time through `/proc/dynamic_debug/control`
//! (`echo 'module printing +p' > ...`) or the `dyndbg=` parameter. Linux 7.3's Rust `pr_debug!`
//! has no dynamic-debug support: it is compiled in only when the kernel is built with
//! `CONFIG_RUST_DEBUG_ASSERTIONS=y` (Rust's `debug_assertions`), and then always prints at
//! `KERN_DEBUG` (`<7>printing: Debug message`); otherwise it expands to nothing, and the module
//! has no entries in `/proc/dynamic_debug/control`.
//!
//! Messages at levels 0-3 (emergency to error) also go to the console with the default
//! `loglevel`; they are harmless here.

use kernel::{pr_cont, prelude::*};

module! {
    type: Printing,
    name: "printing",
    authors: ["Rust kernel modules workbench"],
    description: "Kernel log levels with the pr_*! macros (chapter: Kernel Printing)",
    license: "GPL",
}

struct Printing;

impl kernel::Module for Printing {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("debug_assertions={}\n", cfg!(debug_assertions));
        example();
        Ok(Printing)
    }
}

/// The chapter's example, plus a continuation line.
fn example() {
    // Different log levels
    pr_emerg!("Emergency message\n");
    pr_alert!("Alert message\n");
    pr_crit!("Critical message\n");
    pr_err!("Error message\n");
    pr_warn!("Warning message\n");
    pr_notice!("Notice message\n");
    pr_info!("Info message\n");
    pr_debug!("Debug message\n");

    // With formatting
    let value = 42;
    pr_info!("Value is {}\n", value);

    // A line built from two calls: `pr_cont!` appends to the previous (unterminated) message.
    pr_info!("Continued: ");
    pr_cont!("joined\n");
}
