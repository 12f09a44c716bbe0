// SPDX-License-Identifier: GPL-2.0

//! `template_name`: TODO: say what this module does (and which chapter section it realises).
//!
//! Loading logs `template_name: loaded`, unloading `template_name: unloaded`.
//! Try it in the guest (`cargo xtask run`):
//!
//! ```text
//! # modprobe template_name && dmesg | tail -1
//! template_name: loaded
//! # rmmod template_name && dmesg | tail -1
//! template_name: unloaded
//! ```
//!
//! Tests: the KUnit suite `template_name_tests` below runs in the kernel each time
//! the module loads; the guest test `guest/tests/template_name.rs` loads and
//! unloads it from user space. Run both with
//! `cargo xtask test --filter template_name`.

use kernel::prelude::*;

module! {
    type: TemplateNameModule,
    name: "template_name",
    authors: ["Rust kernel modules workbench"],
    description: "TODO: one line about template_name",
    license: "GPL",
}

struct TemplateNameModule;

impl kernel::Module for TemplateNameModule {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        pr_info!("loaded\n");
        Ok(TemplateNameModule)
    }
}

impl Drop for TemplateNameModule {
    fn drop(&mut self) {
        pr_info!("unloaded\n");
    }
}

/// KUnit tests: each `#[test]` is a KUnit case, run in the kernel when the module loads;
/// `cargo xtask test` shows them as `kunit::template_name_tests::CASE`. A test may return a
/// `Result` and use `?`. Replace this example with tests of the module's own logic.
#[kunit_tests(template_name_tests)]
mod tests {
    use kernel::prelude::*;

    #[test]
    fn kvec_push_and_read_back() -> Result {
        let mut v = KVec::new();
        v.push(7u32, GFP_KERNEL)?;
        assert_eq!(v.len(), 1);
        assert_eq!(v[0], 7);
        Ok(())
    }
}
