// SPDX-License-Identifier: GPL-2.0

//! The `edu` device's registers (BAR0) and the rules of QEMU's model the driver relies on.
//!
//! Checked against `hw/misc/edu.c` of QEMU 7.2 (the machine's `qemu-system-x86`) and its
//! newest version (`docs/specs/edu.rst` is the summary):
//!
//! 1. BAR0 is 1 MiB of MMIO. Below 0x80 only 4-byte accesses work: other sizes read all-ones
//!    and are dropped on write. From 0x80 on, 4- and 8-byte accesses work. The driver uses
//!    4-byte accesses everywhere: a 4-byte write to a DMA register sets the whole 64-bit
//!    register to the zero-extended value, enough for the 28-bit DMA addresses (rule 6).
//! 2. `ID` reads `0x010000ed` (major 1, minor 0, `0xed`). `LIVENESS` reads the bitwise
//!    inverse of the last value written (one register: concurrent writers must be
//!    serialised to get their own inverse back).
//! 3. A write of `n` to `FACT` starts the computation of `n!` (wrapping modulo 2^32) on a
//!    device thread and sets `STATUS_COMPUTING` *during the write*; the thread clears it and
//!    then, if `STATUS_IRQFACT` is set, raises `IRQ_FACT`: a reader may see the bit clear
//!    before the interrupt is raised (it needs QEMU's big lock), so a driver that starts the
//!    next computation at once gets two completions in one `IRQ_STATUS` bit. **A write to `FACT` while
//!    `STATUS_COMPUTING` is set is silently ignored**, and reading `FACT` during a
//!    computation returns `n`, not a result: a computation may only be started when the
//!    previous one is over, and its result is the value of `FACT` once `STATUS_COMPUTING`
//!    is clear again. There is no way to cancel a computation; `n = 4_000_000_000` keeps
//!    the device busy for seconds.
//! 4. `IRQ_STATUS` holds the raised bits; a write to `IRQ_RAISE` ORs bits in and raises, a
//!    write to `IRQ_ACK` clears bits. With MSI every raise sends one message (edge); with
//!    INTx the line is high while `IRQ_STATUS != 0` (level), so the handler must ack
//!    before returning.
//! 5. DMA: `DMA_SRC`, `DMA_DST`, `DMA_COUNT`, then `DMA_CMD` with `DMA_RUN` (plus
//!    `DMA_TO_RAM` for device -> RAM, plus `DMA_IRQ` for `IRQ_DMA` at the end). The transfer
//!    happens in a timer **100 ms of virtual time** after the command, which then clears
//!    `DMA_RUN`. While `DMA_RUN` is set, writes to all four DMA registers are ignored; a
//!    command write without `DMA_RUN` is ignored too. So: wait for `DMA_RUN` to clear before
//!    programming a transfer, and the buffer of a transfer must stay allocated (and, for
//!    RAM -> device, unchanged) until `DMA_RUN` clears, even if the caller gave up.
//! 6. The device side of a transfer must lie within the device's 4 KiB memory
//!    `[BUF_ADDR, BUF_ADDR + MEM_SIZE)` and count at least one byte: QEMU 7.2 aborts the
//!    whole VM (`hw_error`) otherwise (newer QEMUs log it and copy anyway). **QEMU before
//!    8.2.1 also rejects a transfer that ends exactly at `BUF_ADDR + MEM_SIZE`**:
//!    `edu_check_range()` in `hw/misc/edu.c` tests the end address with
//!    `within(end1, start, end2)`, which is `end1 < end2`, so the last byte (0x40fff) can
//!    never be transferred ("EDU: DMA range 0x40000-0x40fff out of bounds", then abort; fixed
//!    upstream by "edu: fix DMA range upper bound check", QEMU 8.2.1). Debian 12's QEMU is
//!    7.2, so the driver uses only the first [`BUF_SIZE`] = 4095 bytes (`EDU_BUF_SIZE`). The RAM address is masked to 28 bits (`dma_mask`), so
//!    the driver sets a 28-bit DMA mask and its buffer lies below 256 MiB.
//! 7. One MSI vector (64-bit, no per-vector masking) or INTx pin A.
//! 8. Nothing of this is reset when a driver unbinds: a later probe may find a computation
//!    or a transfer still running and stale `IRQ_STATUS` bits.

/// Bytes of BAR0 the driver uses (the BAR is 1 MiB).
pub(crate) const BAR_SIZE: usize = 0x100;

pub(crate) const ID: usize = 0x00;
pub(crate) const LIVENESS: usize = 0x04;
pub(crate) const FACT: usize = 0x08;
pub(crate) const STATUS: usize = 0x20;
pub(crate) const IRQ_STATUS: usize = 0x24;
pub(crate) const IRQ_ACK: usize = 0x64;
pub(crate) const DMA_SRC: usize = 0x80;
pub(crate) const DMA_DST: usize = 0x88;
pub(crate) const DMA_COUNT: usize = 0x90;
pub(crate) const DMA_CMD: usize = 0x98;

/// `ID`: the value of QEMU's device (version 1.0).
pub(crate) const ID_VALUE: u32 = 0x0100_00ed;

pub(crate) const STATUS_COMPUTING: u32 = 0x01;
pub(crate) const STATUS_IRQFACT: u32 = 0x80;

pub(crate) const IRQ_FACT: u32 = 0x001;
pub(crate) const IRQ_DMA: u32 = 0x100;

pub(crate) const DMA_RUN: u32 = 0x1;
pub(crate) const DMA_TO_RAM: u32 = 0x2;
pub(crate) const DMA_IRQ: u32 = 0x4;

/// Device address and size of the device's memory (its DMA buffer).
pub(crate) const BUF_ADDR: u32 = 0x40000;
pub(crate) const MEM_SIZE: usize = 4096;
/// Bytes of it the driver uses: all but the last, which QEMU < 8.2.1 cannot transfer (rule 6).
pub(crate) const BUF_SIZE: usize = MEM_SIZE - 1;

/// Address bits the device drives (its `dma_mask` property, default 28).
pub(crate) const DMA_BITS: u32 = 28;
