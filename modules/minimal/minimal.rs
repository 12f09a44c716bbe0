// SPDX-License-Identifier: GPL-2.0

//! The chapter's "Minimal module": the smallest Rust kernel module.
//!
//! `init` prints `Minimal Rust module loaded` and dropping the module prints
//! `Minimal Rust module unloaded`. Try it in the guest (`cargo xtask run`):
//!
//! ```text
//! # modprobe minimal && dmesg | tail -1
//! minimal: Minimal Rust module loaded
//! # rmmod minimal && dmesg | tail -1
//! minimal: Minimal Rust module unloaded
//! ```
//!
//! Chapter difference: `module!` takes `authors: [..]` (a list) where the chapter had
//! `author: b"..."`, and strings are plain `&str` literals, not byte strings.

use kernel::prelude::*;

module! {
    type: Minimal,
    name: "minimal",
    authors: ["Rust kernel modules workbench"],
    description: "Minimal Rust kernel module (chapter: Minimal module)",
    license: "GPL",
}

struct Minimal;

impl kernel::Module for Minimal {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("Minimal Rust module loaded\n");
        Ok(Minimal)
    }
}

impl Drop for Minimal {
    fn drop(&mut self) {
        pr_info!("Minimal Rust module unloaded\n");
    }
}
