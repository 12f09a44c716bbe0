// SPDX-License-Identifier: GPL-2.0

//! The chapter's "Memory Allocation": fallible allocations with explicit GFP flags.
//!
//! `init` makes three allocations and keeps them until the module is unloaded:
//!
//! 1. `KBox::new(42, GFP_KERNEL)`, the chapter's `Box::try_new(42)`;
//! 2. `KVec::with_capacity(10, GFP_KERNEL)` followed by `push(1, ..)` and `push(2, ..)`, the
//!    chapter's `Vec::try_with_capacity(10)` and `try_push`;
//! 3. a large vmalloc-backed buffer, `VVec::<u8>::with_capacity(buffer_size, ..)` (4 MiB by
//!    default), filled with `0x5a` and checked.
//!
//! Every step logs what it got and every allocation logs when it is freed (on unload, or on the
//! error path of `init`, in reverse order). Any failed allocation makes `init` log
//! `allocation N (WHAT) failed: ENOMEM` and return `ENOMEM`; the allocations already made are
//! freed by their destructors, so a failed `insmod` leaks nothing.
//!
//! Parameters: `buffer_size` (bytes, 1..=64 MiB) and `fail_alloc_at` (0 = never, 1..=3: make
//! allocation N fail without calling the allocator, to exercise the error path
//! deterministically). Real allocation failures can be injected with failslab
//! (`/sys/kernel/debug/failslab`, `/proc/thread-self/fail-nth`); the test does that. They are
//! declared with `params::module_params!` (`modules/common/params.rs`, permission 0: not in
//! sysfs), so a parameter given twice (`buffer_size=1 buffer_size=2`, or modprobe.d `options`
//! plus the `modprobe` command line) takes the last value, as in C; 7.3's `module!` parameters
//! fail the load with `EEXIST` on a repeat, which `modprobe` takes for "already loaded".
//!
//! ```text
//! # modprobe allocation && dmesg | tail -4
//! allocation: KBox::new(42): *boxed = 42
//! allocation: KVec::with_capacity(10): pushed 1 and 2: len=2 capacity=10 [1, 2]
//! allocation: VVec::with_capacity(4194304): 4194304 bytes (vmalloc), filled with 0x5a
//! allocation: all 3 allocations succeeded
//! # rmmod allocation; modprobe allocation fail_alloc_at=2
//! modprobe: can't load module allocation (...): Cannot allocate memory
//! ```
//!
//! There are no KUnit tests in this module on purpose: KUnit runs a module's suites in the
//! `insmod` task right after `init` (at `MODULE_STATE_LIVE`), so the failslab test, which fails
//! allocations of that task one by one, would fail KUnit's own allocations too. The userspace
//! tests cover every allocation site through `fail_alloc_at` and failslab instead.
//!
//! Differences from the chapter's code:
//!
//! - `Box::try_new(x)` is now `KBox::new(x, GFP_KERNEL)`: every allocating call takes the GFP
//!   flags, and the allocator is part of the type (`KBox`/`KVec` use kmalloc, `VBox`/`VVec`
//!   vmalloc, `KVBox`/`KVVec` try kmalloc and fall back to vmalloc). The std `Box`/`Vec` with
//!   infallible allocation do not exist in the kernel.
//! - `Vec::try_with_capacity(10)` and `vec.try_push(1)` are `KVec::with_capacity(10,
//!   GFP_KERNEL)` and `vec.push(1, GFP_KERNEL)`; they return `Result<_, AllocError>`, which `?`
//!   converts to `ENOMEM`.
//! - The large buffer uses `VVec` so that it is always vmalloc-backed (a 4 MiB `KVVec` may be
//!   served by kmalloc). It is allocated with `GFP_KERNEL | __GFP_NOWARN`: the module reports a
//!   failure itself, so the allocator's warning and stack dump are not wanted.

use kernel::{alloc::AllocError, prelude::*};

#[path = "../common/params.rs"]
mod params;

module! {
    type: Allocation,
    name: "allocation",
    authors: ["Rust kernel modules workbench"],
    description: "KBox, KVec and a vmalloc-backed VVec (chapter: Memory Allocation)",
    license: "GPL",
}

/// The module parameters, in a namespace of their own (a `let buffer_size` cannot shadow a
/// `static buffer_size`). Set at load time only; the last of repeated values wins.
mod param {
    crate::params::module_params! {
        pub(crate) buffer_size: usize {
            default: 4194304,
            permissions: 0,
            description: "Size in bytes of the vmalloc-backed buffer (1..=67108864)",
        },
        pub(crate) fail_alloc_at: u32 {
            default: 0,
            permissions: 0,
            description: "Fail allocation N of init with ENOMEM (1=KBox, 2=KVec, 3=VVec; 0=none)",
        },
    }
}

/// Largest accepted `buffer_size`.
const MAX_BUFFER: usize = 64 << 20;

/// Byte the large buffer is filled with.
const PATTERN: u8 = 0x5a;

/// Number of allocations `init` makes.
const SITES: u32 = 3;

/// What to allocate.
#[derive(Clone, Copy)]
struct Config {
    buffer_size: usize,
    fail_at: u32,
}

impl Config {
    fn new(buffer_size: usize, fail_at: u32) -> Result<Self> {
        if !(1..=MAX_BUFFER).contains(&buffer_size) || fail_at > SITES {
            return Err(EINVAL);
        }
        Ok(Self {
            buffer_size,
            fail_at,
        })
    }
}

/// An allocation that logs when it is freed.
struct Logged<T> {
    inner: T,
    what: &'static str,
}

impl<T> Drop for Logged<T> {
    fn drop(&mut self) {
        pr_info!("freeing {}\n", self.what);
    }
}

/// Run allocation number `n` (`what`), or fail it if the configuration says so.
fn site<T>(
    cfg: &Config,
    n: u32,
    what: &'static str,
    alloc: impl FnOnce() -> Result<T, AllocError>,
) -> Result<Logged<T>> {
    let res = if cfg.fail_at == n {
        pr_info!("fail_alloc_at={}: not calling {}\n", n, what);
        Err(AllocError)
    } else {
        alloc()
    };
    match res {
        Ok(inner) => Ok(Logged {
            inner,
            what: what.split("::").next().unwrap_or(what),
        }),
        Err(AllocError) => {
            pr_err!("allocation {} ({}) failed: ENOMEM\n", n, what);
            Err(ENOMEM)
        }
    }
}

/// Everything `init` allocates; the fields are dropped (freed) in declaration order.
struct Allocation {
    _boxed: Logged<KBox<i32>>,
    _numbers: Logged<KVec<i32>>,
    _buffer: Logged<VVec<u8>>,
}

impl Allocation {
    /// Make the three allocations. On failure, those already made are freed (and log it) when
    /// their `Logged` wrappers go out of scope, in reverse order.
    fn allocate(cfg: &Config) -> Result<Self> {
        let boxed = site(cfg, 1, "KBox::new", || KBox::new(42, GFP_KERNEL))?;
        pr_info!("KBox::new(42): *boxed = {}\n", *boxed.inner);

        let mut numbers = site(cfg, 2, "KVec::with_capacity", || {
            KVec::with_capacity(10, GFP_KERNEL)
        })?;
        // Within the capacity: these do not allocate, but the API is fallible all the same.
        numbers.inner.push(1, GFP_KERNEL)?;
        numbers.inner.push(2, GFP_KERNEL)?;
        pr_info!(
            "KVec::with_capacity(10): pushed 1 and 2: len={} capacity={} {:?}\n",
            numbers.inner.len(),
            numbers.inner.capacity(),
            &numbers.inner[..]
        );

        let size = cfg.buffer_size;
        let mut buffer = site(cfg, 3, "VVec::with_capacity", || {
            VVec::with_capacity(size, GFP_KERNEL | __GFP_NOWARN)
        })?;
        // Within the capacity: no reallocation.
        buffer.inner.extend_with(size, PATTERN, GFP_KERNEL)?;
        if buffer.inner.len() != size || buffer.inner.iter().any(|&b| b != PATTERN) {
            pr_err!("VVec contents are wrong\n");
            return Err(EIO);
        }
        pr_info!(
            "VVec::with_capacity({}): {} bytes (vmalloc), filled with {:#x}\n",
            size,
            buffer.inner.len(),
            PATTERN
        );

        Ok(Self {
            _boxed: boxed,
            _numbers: numbers,
            _buffer: buffer,
        })
    }
}

impl kernel::Module for Allocation {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let buffer_size = param::buffer_size.get();
        let fail_at = param::fail_alloc_at.get();
        let cfg = Config::new(buffer_size, fail_at).inspect_err(|_| {
            pr_err!(
                "invalid parameters: buffer_size={} (1..={}) fail_alloc_at={} (0..={})\n",
                buffer_size,
                MAX_BUFFER,
                fail_at,
                SITES
            )
        })?;
        let allocation = Self::allocate(&cfg)?;
        pr_info!("all {} allocations succeeded\n", SITES);
        Ok(allocation)
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        // The fields are dropped (and log "freeing ...") after this.
        pr_info!("unloading\n");
    }
}
