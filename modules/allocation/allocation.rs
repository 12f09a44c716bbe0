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
//! (`/sys/kernel/debug/failslab`, `/proc/thread-self/fail-nth`); the test does that.
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

module! {
    type: Allocation,
    name: "allocation",
    authors: ["Rust kernel modules workbench"],
    description: "KBox, KVec and a vmalloc-backed VVec (chapter: Memory Allocation)",
    license: "GPL",
    params: {
        buffer_size: usize {
            default: 4194304,
            description: "Size in bytes of the vmalloc-backed buffer (1..=67108864)",
        },
        fail_alloc_at: u32 {
            default: 0,
            description: "Make allocation N of init fail with ENOMEM (1=KBox, 2=KVec, 3=VVec, 0=none)",
        },
    },
}

/// Largest accepted `buffer_size`.
const MAX_BUFFER: usize = 64 << 20;

/// Byte the large buffer is filled with.
const PATTERN: u8 = 0x5a;

/// Number of allocations `init` makes.
const SITES: u32 = 3;

/// What to allocate and whether to log (KUnit tests run quietly).
#[derive(Clone, Copy)]
struct Config {
    buffer_size: usize,
    fail_at: u32,
    verbose: bool,
}

impl Config {
    fn new(buffer_size: usize, fail_at: u32, verbose: bool) -> Result<Self> {
        if !(1..=MAX_BUFFER).contains(&buffer_size) || fail_at > SITES {
            return Err(EINVAL);
        }
        Ok(Self {
            buffer_size,
            fail_at,
            verbose,
        })
    }
}

/// An allocation that logs when it is freed.
struct Logged<T> {
    inner: T,
    what: &'static str,
    verbose: bool,
}

impl<T> Drop for Logged<T> {
    fn drop(&mut self) {
        if self.verbose {
            pr_info!("freeing {}\n", self.what);
        }
    }
}

/// Everything `init` allocates.
struct Allocations {
    boxed: Logged<KBox<i32>>,
    numbers: Logged<KVec<i32>>,
    buffer: Logged<VVec<u8>>,
}

/// Run allocation number `n` (`what`), or fail it if the configuration says so.
fn site<T>(
    cfg: &Config,
    n: u32,
    what: &str,
    alloc: impl FnOnce() -> Result<T, AllocError>,
) -> Result<T> {
    let res = if cfg.fail_at == n {
        if cfg.verbose {
            pr_info!("fail_alloc_at={}: not calling {}\n", n, what);
        }
        Err(AllocError)
    } else {
        alloc()
    };
    res.map_err(|AllocError| {
        if cfg.verbose {
            pr_err!("allocation {} ({}) failed: ENOMEM\n", n, what);
        }
        ENOMEM
    })
}

fn allocate(cfg: &Config) -> Result<Allocations> {
    let boxed = site(cfg, 1, "KBox::new", || KBox::new(42, GFP_KERNEL))?;
    let boxed = Logged {
        inner: boxed,
        what: "KBox",
        verbose: cfg.verbose,
    };
    if cfg.verbose {
        pr_info!("KBox::new(42): *boxed = {}\n", *boxed.inner);
    }

    let numbers = site(cfg, 2, "KVec::with_capacity", || {
        KVec::with_capacity(10, GFP_KERNEL)
    })?;
    let mut numbers = Logged {
        inner: numbers,
        what: "KVec",
        verbose: cfg.verbose,
    };
    // Within the capacity: these do not allocate, but the API is fallible all the same.
    numbers.inner.push(1, GFP_KERNEL)?;
    numbers.inner.push(2, GFP_KERNEL)?;
    if cfg.verbose {
        pr_info!(
            "KVec::with_capacity(10): pushed 1 and 2: len={} capacity={} {:?}\n",
            numbers.inner.len(),
            numbers.inner.capacity(),
            &numbers.inner[..]
        );
    }

    let size = cfg.buffer_size;
    let buffer = site(cfg, 3, "VVec::with_capacity", || {
        VVec::with_capacity(size, GFP_KERNEL | __GFP_NOWARN)
    })?;
    let mut buffer = Logged {
        inner: buffer,
        what: "VVec",
        verbose: cfg.verbose,
    };
    // Within the capacity: no reallocation.
    buffer.inner.extend_with(size, PATTERN, GFP_KERNEL)?;
    if buffer.inner.len() != size || buffer.inner.iter().any(|&b| b != PATTERN) {
        pr_err!("VVec contents are wrong\n");
        return Err(EIO);
    }
    if cfg.verbose {
        pr_info!(
            "VVec::with_capacity({}): {} bytes (vmalloc), filled with {:#x}\n",
            size,
            buffer.inner.len(),
            PATTERN
        );
    }

    Ok(Allocations {
        boxed,
        numbers,
        buffer,
    })
}

struct Allocation {
    _allocations: Allocations,
}

impl kernel::Module for Allocation {
    fn init(_module: &'static ThisModule) -> Result<Self> {
        let buffer_size = module_parameters::buffer_size.value();
        let fail_at = module_parameters::fail_alloc_at.value();
        let cfg = Config::new(buffer_size, fail_at, true).inspect_err(|_| {
            pr_err!(
                "invalid parameters: buffer_size={} (1..={}) fail_alloc_at={} (0..={})\n",
                buffer_size,
                MAX_BUFFER,
                fail_at,
                SITES
            )
        })?;
        let allocations = allocate(&cfg)?;
        pr_info!("all {} allocations succeeded\n", SITES);
        Ok(Allocation {
            _allocations: allocations,
        })
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        // The fields are dropped (and log "freeing ...") after this.
        pr_info!("unloading\n");
    }
}

#[kunit_tests(rust_allocation)]
mod tests {
    use super::*;

    #[test]
    fn allocations_have_the_chapters_values() -> Result {
        let a = allocate(&Config::new(4096, 0, false)?)?;
        assert_eq!(*a.boxed.inner, 42);
        assert_eq!(&a.numbers.inner[..], &[1, 2]);
        assert!(a.numbers.inner.capacity() >= 10);
        assert_eq!(a.buffer.inner.len(), 4096);
        assert!(a.buffer.inner.iter().all(|&b| b == PATTERN));
        Ok(())
    }

    #[test]
    fn every_site_can_fail_with_enomem() -> Result {
        for n in 1..=SITES {
            assert_eq!(allocate(&Config::new(4096, n, false)?).err(), Some(ENOMEM));
        }
        Ok(())
    }

    #[test]
    fn config_is_validated() {
        assert!(Config::new(1, 0, false).is_ok());
        assert!(Config::new(MAX_BUFFER, SITES, false).is_ok());
        assert_eq!(Config::new(0, 0, false).err(), Some(EINVAL));
        assert_eq!(Config::new(MAX_BUFFER + 1, 0, false).err(), Some(EINVAL));
        assert_eq!(Config::new(1, SITES + 1, false).err(), Some(EINVAL));
    }

    #[test]
    fn a_buffer_too_large_for_vmalloc_is_enomem() -> Result {
        // More than the machine has: vmalloc fails (quietly, thanks to __GFP_NOWARN).
        let cfg = Config {
            buffer_size: usize::MAX / 4,
            fail_at: 0,
            verbose: false,
        };
        assert_eq!(allocate(&cfg).err(), Some(ENOMEM));
        Ok(())
    }
}
