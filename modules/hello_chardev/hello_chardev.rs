// SPDX-License-Identifier: GPL-2.0

//! The chapter's "Character Device": `/dev/rust_hello`, a misc device.
//!
//! - `open` logs `Device opened`.
//! - `read` returns exactly `Hello from Rust!\n` and then end of file. The file offset is
//!   honoured, so `cat` ends, `dd bs=1` reassembles the same 17 bytes and `pread` at offset 6
//!   returns `from Rust!\n`. Every open starts at offset 0. There is no `llseek` in the
//!   [`MiscDevice`] vtable, so `lseek` fails with `ESPIPE`; `pread` works.
//! - `write` consumes everything it is given, logs `Received N bytes` and returns `N`, for any
//!   `N` including 0; a bad user pointer gives `EFAULT`. A large write (up to 2 GiB, copied
//!   256 bytes at a time) stops early when a signal arrives, as a pipe write does: it returns
//!   (and counts and logs) the bytes consumed so far, or fails with `ERESTARTSYS` (`EINTR` for a
//!   handler without `SA_RESTART`) when it had not consumed any. So `SIGKILL` ends it at once.
//! - The module keeps the total number of bytes received by all writes and logs
//!   `Total received: N bytes` when it is unloaded.
//!
//! Try it in the guest (`cargo xtask run`):
//!
//! ```text
//! # modprobe hello_chardev
//! # cat /dev/rust_hello
//! Hello from Rust!
//! # echo hi > /dev/rust_hello; dmesg | tail -2
//! hello_chardev: Device opened
//! hello_chardev: Received 3 bytes
//! # rmmod hello_chardev; dmesg | tail -1
//! hello_chardev: Total received: 3 bytes
//! ```
//!
//! Differences from the chapter's code, which targets an older Rust-for-Linux API:
//!
//! - `kernel::file::Operations` (with `type Data`/`type OpenData`) is gone; a character device
//!   with a dynamic minor is a [`MiscDevice`] registered through [`MiscDeviceRegistration`]. The
//!   per-open data is the `Ptr` returned by `open` (here a zero-sized `Pin<KBox<_>>`, which does
//!   not allocate).
//! - `read(.., writer: &mut impl IoBufferWriter, offset)` became
//!   `read_iter(kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>)`; the offset lives in the
//!   `kiocb` (`ki_pos_mut()`) and `IovIterDest::simple_read_from_buffer` implements "the file
//!   contains this buffer" semantics. The chapter's `read` ignored the offset and returned the
//!   message forever, so `cat` never ended.
//! - `write(.., reader: &mut impl IoBufferReader, ..)` became `write_iter(.., iov: &mut
//!   IovIterSource<'_>)`; `reader.len()` is `iov.len()`, and the data is consumed with
//!   `copy_from_iter` (the chapter only looked at the length).
//! - `module!` takes `authors: [..]` and plain string literals.

use kernel::{
    current,
    fs::{File, Kiocb},
    iov::{IovIterDest, IovIterSource},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
};

module! {
    type: HelloChardev,
    name: "hello_chardev",
    authors: ["Rust kernel modules workbench"],
    description: "Misc character device /dev/rust_hello (chapter: Character Device)",
    license: "GPL",
}

/// What every read of the device returns (the whole "file").
const MESSAGE: &[u8] = b"Hello from Rust!\n";

/// Bytes received by all writes since the module was loaded.
static TOTAL_RECEIVED: Atomic<u64> = Atomic::new(0);

/// Bytes copied from user space per step of a write (a small buffer on the stack).
const CHUNK: usize = 256;

#[pin_data(PinnedDrop)]
struct HelloChardev {
    #[pin]
    _miscdev: MiscDeviceRegistration<HelloDevice>,
}

impl kernel::InPlaceModule for HelloChardev {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pr_info!("Registering /dev/rust_hello\n");
        try_pin_init!(Self {
            _miscdev <- MiscDeviceRegistration::register(MiscDeviceOptions {
                name: c"rust_hello",
            }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for HelloChardev {
    fn drop(self: Pin<&mut Self>) {
        // Every file holds a reference on the module, so no write can still be running here.
        pr_info!("Total received: {} bytes\n", TOTAL_RECEIVED.load(Relaxed));
    }
}

/// The per-open state: nothing (the chapter's `type Data = ()`).
struct HelloDevice;

/// Consume all of `iov`, returning the number of bytes read from user space.
///
/// Fails with `EFAULT` when the very first copy fails (a bad user pointer); after a partial copy
/// the bytes copied so far are reported, like a short write. A pending signal stops the loop
/// before the next chunk: the bytes copied so far are reported, or `ERESTARTSYS` if there are
/// none (C's `pipe_write()` does the same).
fn consume(iov: &mut IovIterSource<'_>) -> Result<usize> {
    let mut buf = [0u8; CHUNK];
    let mut total = 0usize;
    while !iov.is_empty() {
        if current!().signal_pending() {
            if total == 0 {
                return Err(ERESTARTSYS);
            }
            break;
        }
        let n = iov.copy_from_iter(&mut buf);
        if n == 0 {
            break;
        }
        total += n;
    }
    if total == 0 && !iov.is_empty() {
        return Err(EFAULT);
    }
    Ok(total)
}

#[vtable]
impl MiscDevice for HelloDevice {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        pr_info!("Device opened\n");
        // `HelloDevice` is zero-sized: this does not allocate and cannot fail.
        Ok(KBox::pin(HelloDevice, GFP_KERNEL)?)
    }

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let pos = kiocb.ki_pos_mut();
        let unread = usize::try_from(*pos).map_or(0, |p| MESSAGE.len().saturating_sub(p));
        let wanted = iov.len();
        let n = iov.simple_read_from_buffer(pos, MESSAGE)?;
        // 7.3's Rust `simple_read_from_buffer` returns Ok(0) when nothing could be copied
        // (a bad user pointer), which the reader would take for end of file; C's returns
        // -EFAULT. Keep C's contract.
        if n == 0 && unread > 0 && wanted > 0 {
            return Err(EFAULT);
        }
        Ok(n)
    }

    fn write_iter(_kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterSource<'_>) -> Result<usize> {
        let len = consume(iov)?;
        TOTAL_RECEIVED.add(len as u64, Relaxed);
        pr_info!("Received {} bytes\n", len);
        Ok(len)
    }
}
