//! Static builds (the guest's): link every program of this crate with this library's
//! `pthread_create` (`src/kcov.rs`). glibc's is a weak symbol in `libc.a`; `-u` makes the
//! linker take ours from the library archive, whichever of the library's object files the
//! program otherwise uses. It only changes anything when `RKM_KCOV_DIR` is set (KCOV
//! coverage per thread, `cargo xtask coverage`).
fn main() {
    let features = std::env::var("CARGO_CFG_TARGET_FEATURE").unwrap_or_default();
    if features.split(',').any(|f| f == "crt-static") {
        println!("cargo:rustc-link-arg=-Wl,-u,pthread_create");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
