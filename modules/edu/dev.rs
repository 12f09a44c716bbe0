// SPDX-License-Identifier: GPL-2.0

//! One bound `edu` device as its users see it: the factorial and DMA engines, liveness,
//! statistics and the interrupt handler. Shared (`Arc<Edu>`) by the driver's per-binding
//! data, every open file and the interrupt handler, so it outlives an unbind while files
//! are open; what must not outlive the binding is revocable:
//!
//! - BAR0 is a `DevresBar`: after unbind `try_access()` fails and every path that touches
//!   a register returns `ENODEV` (the driver core unmaps the BAR only after revoking it, and
//!   revoking waits for the RCU readers, so no access can hit an unmapped BAR).
//! - The DMA buffer is an `Option` in the state; unbind takes it (after the device has
//!   finished any transfer) and frees it while the device is still bound.
//! - `gone`, set by unbind under the state lock, ends every wait with `ENODEV`.
//!
//! Waiting: one `Mutex<State>` and one `CondVar`. A caller claims an engine (`fact_busy`,
//! `dma_busy`: one caller per engine at a time, the others wait interruptibly), then waits
//! for the engine to be *idle*, starts its own operation and waits for idle again. Idle means
//! both: the device says so (`STATUS_COMPUTING`, `DMA_RUN` clear: a computation or transfer
//! whose caller gave up may still be running, see `regs.rs` rules 3 and 5) **and** the
//! completion interrupt of the last operation started has been handled (`fact_irq_due`,
//! `dma_irq_due`). The device clears its busy bit *before* it raises the interrupt, from
//! another thread; without the second condition a fast factorial's caller could return and
//! the next one start before the first interrupt arrived, and two completions would reach the
//! handler as one `IRQ_STATUS` bit (counted once, or taken for the wrong operation). So each
//! engine has at most one completion in flight, every completion is counted exactly once,
//! and a late interrupt of a given-up operation is handled before the next one starts.
//! The interrupt's hard half acks the device and hands the bits to its thread, which takes
//! the state lock before waking the waiters: a waiter checks the state and the device and
//! goes to sleep under that lock, so a completion between the two cannot be missed.

use crate::{
    regs,
    uapi, //
};
use kernel::{
    dma::{
        Coherent,
        DmaAddress, //
    },
    io::{
        io_project,
        Io, //
    },
    irq::{
        IrqReturn,
        ThreadedHandler,
        ThreadedIrqReturn, //
    },
    new_condvar, new_mutex, pci,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Atomic,
            Full,
            Relaxed, //
        },
        Arc,
        CondVar,
        CondVarTimeoutResult,
        Mutex,
        MutexGuard, //
    },
    time::{
        msecs_to_jiffies,
        Jiffies, //
    },
};

/// BAR0 as the driver keeps it: revoked when the device is unbound.
pub(crate) type DevresBar0 = pci::DevresBar<{ regs::BAR_SIZE }>;

/// What the state lock protects.
pub(crate) struct State {
    /// Set by unbind: every wait ends, every later call fails `ENODEV`.
    gone: bool,
    /// A caller owns the factorial engine.
    fact_busy: bool,
    /// A caller owns the DMA engine.
    dma_busy: bool,
    /// A computation was started and its completion interrupt not yet handled.
    fact_irq_due: bool,
    /// A transfer was started and its completion interrupt not yet handled.
    dma_irq_due: bool,
    /// Bytes of the transfer last started (counted when its interrupt arrives).
    dma_len: usize,
    /// The DMA buffer (`BUF_SIZE` bytes below 2^28); `None` once unbind freed it.
    buf: Option<Coherent<[u8]>>,
    factorials: u64,
    dma_transfers: u64,
    dma_bytes: u64,
}

/// A bound (or formerly bound) `edu` device.
#[pin_data]
pub(crate) struct Edu {
    bar: DevresBar0,
    #[pin]
    state: Mutex<State>,
    /// Completions (from the interrupt thread), released engines, unbind.
    #[pin]
    events: CondVar,
    /// `IRQ_STATUS` bits acked by the hard interrupt handler, not yet seen by its thread.
    pending: Atomic<u32>,
    /// Interrupt status bits acked: one per completion the device signalled, also when two
    /// arrive in one interrupt.
    interrupts: Atomic<u64>,
    /// `edu0`, `edu1`, ...: the device node's name.
    pub(crate) name: &'static CStr,
    pub(crate) pdev: ARef<pci::Device>,
    /// `"MSI"` or `"INTx"`.
    pub(crate) irq_kind: &'static str,
}

/// The deadline of one call, as the jiffies left.
struct Deadline(Jiffies);

/// Which engine a call claims.
#[derive(Clone, Copy)]
enum Engine {
    Fact,
    Dma,
}

impl State {
    fn busy(&mut self, e: Engine) -> &mut bool {
        match e {
            Engine::Fact => &mut self.fact_busy,
            Engine::Dma => &mut self.dma_busy,
        }
    }

    fn irq_due(&mut self, e: Engine) -> &mut bool {
        match e {
            Engine::Fact => &mut self.fact_irq_due,
            Engine::Dma => &mut self.dma_irq_due,
        }
    }
}

impl Engine {
    /// Does the device say this engine is busy?
    fn device_busy(self, bar: &pci::Bar<'_, { regs::BAR_SIZE }>) -> bool {
        match self {
            Engine::Fact => bar.read32(regs::STATUS) & regs::STATUS_COMPUTING != 0,
            Engine::Dma => bar.read32(regs::DMA_CMD) & regs::DMA_RUN != 0,
        }
    }
}

impl Edu {
    pub(crate) fn new(
        bar: DevresBar0,
        buf: Coherent<[u8]>,
        name: &'static CStr,
        pdev: ARef<pci::Device>,
        irq_kind: &'static str,
    ) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            bar,
            state <- new_mutex!(State {
                gone: false,
                fact_busy: false,
                dma_busy: false,
                fact_irq_due: false,
                dma_irq_due: false,
                dma_len: 0,
                buf: Some(buf),
                factorials: 0,
                dma_transfers: 0,
                dma_bytes: 0,
            }),
            events <- new_condvar!("edu::events"),
            pending: Atomic::new(0),
            interrupts: Atomic::new(0),
            name,
            pdev,
            irq_kind,
        })
    }

    /// Runs `f` on BAR0; `ENODEV` once the device is unbound.
    fn with_bar<R>(&self, f: impl FnOnce(&pci::Bar<'_, { regs::BAR_SIZE }>) -> R) -> Result<R> {
        let bar = self.bar.try_access().ok_or(ENODEV)?;
        Ok(f(&bar))
    }

    /// The BAR for the driver's own callbacks (probe, unbind, debugfs): `None` once revoked.
    pub(crate) fn bar(&self) -> &DevresBar0 {
        &self.bar
    }

    /// Sleeps until engine `e` is idle (see the module documentation: the device says so and
    /// the last completion interrupt was handled), a signal (`ERESTARTSYS`), the deadline
    /// (`ETIMEDOUT`) or unbind (`ENODEV`). Checked and slept on under the state lock.
    fn wait_idle(
        &self,
        st: &mut MutexGuard<'_, State>,
        deadline: &mut Deadline,
        e: Engine,
    ) -> Result {
        loop {
            if st.gone {
                return Err(ENODEV);
            }
            if !*st.irq_due(e) && !self.with_bar(|bar| e.device_busy(bar))? {
                return Ok(());
            }
            self.sleep(st, deadline)?;
        }
    }

    fn sleep(&self, st: &mut MutexGuard<'_, State>, deadline: &mut Deadline) -> Result {
        if deadline.0 == 0 {
            return Err(ETIMEDOUT);
        }
        match self.events.wait_interruptible_timeout(st, deadline.0) {
            CondVarTimeoutResult::Woken { jiffies } => {
                deadline.0 = jiffies;
                Ok(())
            }
            CondVarTimeoutResult::Signal { .. } => Err(ERESTARTSYS),
            CondVarTimeoutResult::Timeout => Err(ETIMEDOUT),
        }
    }

    /// Claims engine `e` for the caller (waiting for the previous owner), runs `f`, releases.
    fn with_engine<R>(
        &self,
        e: Engine,
        deadline: &mut Deadline,
        f: impl FnOnce(&mut MutexGuard<'_, State>, &mut Deadline) -> Result<R>,
    ) -> Result<R> {
        let mut st = self.state.lock();
        loop {
            if st.gone {
                return Err(ENODEV);
            }
            if !*st.busy(e) {
                break;
            }
            self.sleep(&mut st, deadline)?;
        }
        *st.busy(e) = true;
        let r = f(&mut st, deadline);
        *st.busy(e) = false;
        drop(st);
        self.events.notify_all();
        r
    }

    /// `EDU_IOC_FACTORIAL`: `n!` modulo 2^32, within `timeout_ms`.
    pub(crate) fn factorial(&self, n: u32, timeout_ms: u32) -> Result<u32> {
        let mut deadline = Deadline(msecs_to_jiffies(timeout_ms));
        self.with_engine(Engine::Fact, &mut deadline, |st, deadline| {
            // A computation whose caller gave up may still run (the device would ignore `n`)
            // or its interrupt be on the way (it would be taken for ours).
            self.wait_idle(st, deadline, Engine::Fact)?;
            self.with_bar(|bar| bar.write32(n, regs::FACT))?;
            st.fact_irq_due = true;
            self.wait_idle(st, deadline, Engine::Fact)?;
            self.with_bar(|bar| bar.read32(regs::FACT))
        })
    }

    /// `EDU_IOC_LIVENESS`: the device's inverse of `value` (write and read back under the
    /// lock, so concurrent callers each get their own).
    pub(crate) fn liveness(&self, value: u32) -> Result<u32> {
        let st = self.state.lock();
        if st.gone {
            return Err(ENODEV);
        }
        self.with_bar(|bar| {
            bar.write32(value, regs::LIVENESS);
            bar.read32(regs::LIVENESS)
        })
    }

    /// One DMA transfer of `len` bytes between device offset `off` and the start of the
    /// buffer (`to_ram`: device -> buffer). `fill` runs before the transfer and `drain`
    /// after it, both on the buffer's first `len` bytes, under the state lock.
    fn dma(
        &self,
        off: usize,
        len: usize,
        to_ram: bool,
        fill: impl FnOnce(&Coherent<[u8]>) -> Result,
        drain: impl FnOnce(&Coherent<[u8]>) -> Result,
    ) -> Result {
        // Rule 6 of `regs.rs`: never hand the device a range outside its buffer.
        if len == 0 || off.checked_add(len).is_none_or(|end| end > regs::BUF_SIZE) {
            return Err(EINVAL);
        }
        let mut deadline = Deadline(msecs_to_jiffies(uapi::DEFAULT_TIMEOUT_MS));
        self.with_engine(Engine::Dma, &mut deadline, |st, deadline| {
            // A transfer whose caller gave up may still run: it owns the buffer until then.
            self.wait_idle(st, deadline, Engine::Dma)?;
            let buf = st.buf.as_ref().ok_or(ENODEV)?;
            fill(buf)?;
            let ram: DmaAddress = buf.dma_address();
            // The buffer lies below 2^28 (DMA mask): a 32-bit register write holds it.
            let ram = u32::try_from(ram).map_err(|_| EIO)?;
            let dev = regs::BUF_ADDR + off as u32;
            let (src, dst, cmd) = if to_ram {
                (dev, ram, regs::DMA_RUN | regs::DMA_TO_RAM | regs::DMA_IRQ)
            } else {
                (ram, dev, regs::DMA_RUN | regs::DMA_IRQ)
            };
            self.with_bar(|bar| {
                bar.write32(src, regs::DMA_SRC);
                bar.write32(dst, regs::DMA_DST);
                bar.write32(len as u32, regs::DMA_COUNT);
                bar.write32(cmd, regs::DMA_CMD);
            })?;
            st.dma_len = len;
            st.dma_irq_due = true;
            self.wait_idle(st, deadline, Engine::Dma)?;
            drain(st.buf.as_ref().ok_or(ENODEV)?)
        })
    }

    /// Device memory `[off, off + data.len())` := `data`.
    pub(crate) fn dma_write(&self, off: usize, data: &[u8]) -> Result {
        self.dma(
            off,
            data.len(),
            false,
            |buf| {
                io_project!(buf, [try: 0..data.len()]).copy_from_slice(data);
                Ok(())
            },
            |_| Ok(()),
        )
    }

    /// `out` := device memory `[off, off + out.len())`.
    pub(crate) fn dma_read(&self, off: usize, out: &mut [u8]) -> Result {
        let len = out.len();
        self.dma(
            off,
            len,
            true,
            |_| Ok(()),
            |buf| {
                io_project!(buf, [try: 0..len]).copy_to_slice(out);
                Ok(())
            },
        )
    }

    /// `EDU_IOC_GET_STATS`.
    pub(crate) fn stats(&self) -> uapi::Stats {
        let st = self.state.lock();
        uapi::Stats {
            interrupts: self.interrupts.load(Relaxed),
            factorials: st.factorials,
            dma_transfers: st.dma_transfers,
            dma_bytes: st.dma_bytes,
        }
    }

    /// Is the device still bound (for `open`)?
    pub(crate) fn is_gone(&self) -> bool {
        self.state.lock().gone
    }

    /// Unbind, first step: end every wait and refuse every later call. Returns the DMA
    /// buffer for the caller to free once the device has stopped using it.
    pub(crate) fn shut_down(&self) -> Option<Coherent<[u8]>> {
        let buf = {
            let mut st = self.state.lock();
            st.gone = true;
            st.buf.take()
        };
        self.events.notify_all();
        buf
    }

    /// The hard interrupt handler's work: read and ack `IRQ_STATUS` (INTx is level-triggered:
    /// the line stays high until acked), hand the bits to the thread.
    fn hard_irq(&self) -> ThreadedIrqReturn {
        let Some(status) = self.bar.try_access().map(|bar| {
            let status = bar.read32(regs::IRQ_STATUS);
            if status != 0 {
                bar.write32(status, regs::IRQ_ACK);
            }
            status
        }) else {
            return ThreadedIrqReturn::None;
        };
        if status == 0 {
            // Not ours (a shared INTx line) or already acked.
            return ThreadedIrqReturn::None;
        }
        self.interrupts.add(u64::from(status.count_ones()), Relaxed);
        let mut old = self.pending.load(Relaxed);
        while let Err(cur) = self.pending.cmpxchg(old, old | status, Full) {
            old = cur;
        }
        ThreadedIrqReturn::WakeThread
    }

    /// The interrupt thread's work: count what finished and wake the waiters (under the
    /// state lock, see the module documentation).
    fn irq_thread(&self) -> IrqReturn {
        let bits = self.pending.xchg(0, Full);
        let mut st = self.state.lock();
        // Only completions of operations this binding started count (a computation of a
        // previous binding may still finish, `regs.rs` rule 8).
        if bits & regs::IRQ_FACT != 0 && st.fact_irq_due {
            st.fact_irq_due = false;
            st.factorials += 1;
        }
        if bits & regs::IRQ_DMA != 0 && st.dma_irq_due {
            st.dma_irq_due = false;
            st.dma_transfers += 1;
            st.dma_bytes += st.dma_len as u64;
        }
        drop(st);
        self.events.notify_all();
        IrqReturn::Handled
    }
}

/// The interrupt handler registered for the device's vector.
pub(crate) struct EduIrq(pub(crate) Arc<Edu>);

impl ThreadedHandler for EduIrq {
    fn handle(&self) -> ThreadedIrqReturn {
        self.0.hard_irq()
    }

    fn handle_threaded(&self) -> IrqReturn {
        self.0.irq_thread()
    }
}
