// SPDX-License-Identifier: GPL-2.0

//! The chapter's "Synchronization Primitives": its `SharedData` in a [`Mutex`] and its counter
//! in a [`SpinLock`], plus an interrupt-context user of a [`SpinLockIrq`].
//!
//! Reading `/dev/rust_locking` runs one experiment and returns its report as one line:
//!
//! - `workers` work items (K) run concurrently on the unbound system workqueue; each one calls
//!   the chapter's `increment_counter` and an `increment_value` (read-modify-write of
//!   `SharedData::value` under the mutex) `iterations` (N) times, and also adds 1 to a total
//!   protected by an IRQ-safe spinlock;
//! - meanwhile an `hrtimer` (interrupt context) fires `irq_ticks` times; each callback adds 1 to
//!   the same IRQ-safe total and counts a tick;
//! - for comparison, the work items also bump a counter `iterations` times without any lock (an
//!   atomic `load` followed by a separate `store`: a racy read-modify-write, but not undefined
//!   behaviour). When work items run at the same time on several CPUs it loses updates
//!   (`unlocked_total` < `expected`); how many depends on timing. The locked totals never do.
//!
//! ```text
//! # modprobe locking && cat /dev/rust_locking
//! workers=4 iterations=10000 mutex_total=40000 spinlock_total=40000 irqlock_total=40100
//! irq_ticks=100 unlocked_total=39391 expected=40000 expected_irqlock=40100 result=ok
//! ```
//!
//! (one line; wrapped here; the real line also carries the evidence fields below). The same
//! line is logged with `pr_info!`. Each `open` gets its own
//! experiment, run by the first `read`; later reads of that file return the rest of the same
//! report, then end of file. Parameters: `workers` (1..=64, default 4), `iterations`
//! (1..=1000000, default 10000), `irq_ticks` (1..=100000, default 100, one every 100 us); others
//! are rejected with `EINVAL` at load time. A parameter given twice (`workers=2 workers=8`, or
//! an `options locking ...` line in `/etc/modprobe.d/` plus `modprobe locking workers=8`) takes
//! the last value, as in C. The device has no `write_iter`, so writes fail with `EINVAL`.
//!
//! The read can be interrupted: the reader sleeps interruptibly (`TASK_INTERRUPTIBLE`, no
//! hung-task warning) until the experiment ends; on a signal it tells the work items to stop,
//! waits until they and the timer are gone (a few hundred updates at most), and the read fails
//! with `ERESTARTSYS` (`EINTR` for a handler without `SA_RESTART`; a killed reader just dies).
//! The next read of the file runs a new experiment. The per-file lock is only held to look at
//! or change the file's state, never across an experiment: a second reader of the same file
//! waits interruptibly for the first one's report.
//!
//! Evidence that the experiment ran in parallel (on an SMP guest), also in the line:
//! `mutex_cpus`, `spinlock_cpus`, `irqlock_cpus` are bitmasks (hex) of the CPUs that held each
//! lock (noted inside the critical section, so written only under that lock);
//! `mutex_contended`, `spinlock_contended`, `irqlock_contended` count the acquisitions that
//! found the lock taken (a failed `try_lock` before the blocking `lock`); `worker_cpus` lists,
//! per work item, the mask of CPUs it ran on (`w0/w1/...`). The guest tests assert that at
//! least two CPUs took each lock in one experiment.
//!
//! Differences from the chapter's code:
//!
//! - Locks cannot be built with a plain struct literal: they must be pinned and get a lockdep
//!   class, so the containing struct is `#[pin_data]`, the fields are `#[pin]`, and they are
//!   initialised in place with `new_mutex!`/`new_spinlock!`/`new_spinlock_irq!` inside
//!   `pin_init!`, then allocated with `Arc::pin_init` (the experiment, shared with the work items
//!   and the timer) or `KBox::pin_init` (the per-open state).
//! - The chapter says "SpinLock for interrupt contexts", but a plain [`SpinLock`] taken both in
//!   process context and in an interrupt handler deadlocks when the interrupt arrives on the CPU
//!   that holds it. Data shared with an interrupt handler goes in a [`SpinLockIrq`], whose
//!   `lock()` disables local interrupts while the guard lives. The chapter's `counter` keeps its
//!   `SpinLock` because only process context (the work items) touches it.
//! - There is no Rust kthread abstraction in 7.3; work items ([`kernel::workqueue`]) provide the
//!   concurrent process-context users. The 7.3 Rust workqueue API cannot flush or cancel work,
//!   so the one `unsafe` block calls the C `flush_work` to make sure no work item still runs
//!   module code when a read returns.
//! - 7.3's `Completion` has no interruptible wait and its `Mutex` no `lock_interruptible`, so
//!   the reader waits on a [`CondVar`] (`wait_interruptible`) over a small [`SpinLockIrq`] that
//!   the last work item and the last timer callback update.
//! - The parameters are declared with `params::module_params!` (`modules/common/params.rs`,
//!   permission 0: not in sysfs) instead of `module!`'s `params`, whose values can be set only
//!   once: a repeated parameter would fail the load with `EEXIST`, which `modprobe` takes for
//!   "already loaded" and exits 0 without loading anything.

use kernel::{
    bindings,
    cpu::CpuId,
    fs::{File, Kiocb},
    impl_has_hr_timer,
    iov::IovIterDest,
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    new_condvar, new_mutex, new_spinlock, new_spinlock_irq,
    prelude::*,
    str::CString,
    sync::{
        atomic::{Atomic, Full, Relaxed},
        lock::{Backend, Guard, Lock},
        Arc, ArcBorrow, CondVar, Mutex, SpinLock, SpinLockIrq,
    },
    time::{
        hrtimer::{
            HrTimer, HrTimerCallback, HrTimerCallbackContext, HrTimerPointer, HrTimerRestart,
            RelativeMode,
        },
        Delta, Monotonic,
    },
    workqueue::{self, impl_has_work, new_work, Work, WorkItem},
};

#[path = "../common/params.rs"]
mod params;

module! {
    type: LockingModule,
    name: "locking",
    authors: ["Rust kernel modules workbench"],
    description: "Mutex, SpinLock and SpinLockIrq (chapter: Synchronization Primitives)",
    license: "GPL",
}

/// The module parameters, in a namespace of their own (a `let workers` cannot shadow a
/// `static workers`). Set at load time only; the last of repeated values wins.
mod param {
    crate::params::module_params! {
        pub(crate) workers: u32 {
            default: 4,
            permissions: 0,
            description: "Concurrent work items per experiment (K, 1..=64)",
        },
        pub(crate) iterations: u32 {
            default: 10000,
            permissions: 0,
            description: "Updates per work item (N, 1..=1000000)",
        },
        pub(crate) irq_ticks: u32 {
            default: 100,
            permissions: 0,
            description: "hrtimer callbacks per experiment (1..=100000)",
        },
    }
}

/// Period of the experiment's hrtimer.
const TICK: Delta = Delta::from_micros(100);

/// Work-item iterations between two checks of [`Experiment::abort`].
const ABORT_CHECK: u32 = 256;

/// How far an experiment has come (what the reader waits for).
struct Progress {
    /// The last work item has finished its loops.
    workers_done: bool,
    /// The timer has fired `irq_ticks` times.
    timer_done: bool,
}

/// The sizes of one experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Params {
    workers: u32,
    iterations: u32,
    irq_ticks: u32,
}

impl Params {
    /// The module parameters, validated.
    fn from_module() -> Result<Self> {
        Self::new(
            param::workers.get(),
            param::iterations.get(),
            param::irq_ticks.get(),
        )
    }

    /// Validate the sizes: all totals must fit in a `u32`.
    fn new(workers: u32, iterations: u32, irq_ticks: u32) -> Result<Self> {
        if !(1..=64).contains(&workers)
            || !(1..=1_000_000).contains(&iterations)
            || !(1..=100_000).contains(&irq_ticks)
        {
            return Err(EINVAL);
        }
        Ok(Self {
            workers,
            iterations,
            irq_ticks,
        })
    }

    /// K * N: the final value of every process-context total.
    fn expected(&self) -> u32 {
        self.workers * self.iterations
    }
}

/// The chapter's `SharedData`.
struct SharedData {
    value: u32,
}

/// Bit of the CPU we run on, for the `*_cpus` masks (CPUs >= 64 fold onto the high bits:
/// the test kernel has at most 4).
fn this_cpu_bit() -> u64 {
    1 << (CpuId::current().as_u32() % 64)
}

/// A locked value plus the CPUs that held its lock. Only touched with the lock held.
struct Tracked<T> {
    value: T,
    cpus: u64,
}

impl<T> Tracked<T> {
    const fn new(value: T) -> Self {
        Self { value, cpus: 0 }
    }

    /// Note the current CPU (call with the lock held) and give the value.
    fn note(&mut self) -> &mut T {
        self.cpus |= this_cpu_bit();
        &mut self.value
    }
}

/// Take `lock`, counting in `contended` the times it was already held by someone else.
fn lock_counted<'a, T, B: Backend>(
    lock: &'a Lock<T, B>,
    contended: &Atomic<u32>,
) -> Guard<'a, T, B> {
    match lock.try_lock() {
        Some(guard) => guard,
        None => {
            contended.add(1, Relaxed);
            lock.lock()
        }
    }
}

/// Data shared between process context and the hrtimer callback (hard-IRQ context).
struct IrqShared {
    /// Incremented by the work items and by the timer callback.
    total: u32,
    /// Incremented by the timer callback only.
    ticks: u32,
}

/// One experiment: the chapter's `MyModule` fields plus what the timer and work items need.
#[pin_data]
struct Experiment {
    /// Mutex for sleeping contexts (chapter).
    #[pin]
    data: Mutex<Tracked<SharedData>>,
    /// Spinlock used from process context only (chapter).
    #[pin]
    counter: SpinLock<Tracked<u32>>,
    /// Spinlock that is also taken in interrupt context: interrupts off while held.
    #[pin]
    irq_shared: SpinLockIrq<Tracked<IrqShared>>,
    /// Contended acquisitions of `data`, `counter`, `irq_shared` (process context).
    contended: [Atomic<u32>; 3],
    #[pin]
    timer: HrTimer<Experiment>,
    /// What the reader waits for; IRQ-safe because the timer callback updates it.
    #[pin]
    progress: SpinLockIrq<Progress>,
    /// Notified (with `progress` held) when `progress` changes.
    #[pin]
    progress_changed: CondVar,
    /// Set when the reader gives up (a signal): the work items stop at their next check.
    abort: Atomic<bool>,
    /// Work items that have not finished their loop yet.
    remaining: Atomic<u32>,
    /// Racy counter: `load` then `store`, no lock.
    unlocked: Atomic<u32>,
    params: Params,
}

impl Experiment {
    fn new(params: Params) -> impl PinInit<Self> {
        pin_init!(Self {
            data <- new_mutex!(Tracked::new(SharedData { value: 0 }), "Experiment::data"),
            counter <- new_spinlock!(Tracked::new(0), "Experiment::counter"),
            irq_shared <- new_spinlock_irq!(
                Tracked::new(IrqShared { total: 0, ticks: 0 }),
                "Experiment::irq"
            ),
            contended: [Atomic::new(0), Atomic::new(0), Atomic::new(0)],
            timer <- HrTimer::new(),
            progress <- new_spinlock_irq!(
                Progress {
                    workers_done: false,
                    timer_done: false,
                },
                "Experiment::progress"
            ),
            progress_changed <- new_condvar!("Experiment::progress_changed"),
            abort: Atomic::new(false),
            remaining: Atomic::new(params.workers),
            unlocked: Atomic::new(0),
            params,
        })
    }

    /// The chapter's `update_value`.
    fn update_value(&self, new_value: u32) {
        let mut guard = self.data.lock();
        guard.value.value = new_value;
    }

    /// Read-modify-write of the shared value under the mutex.
    fn increment_value(&self) {
        let mut guard = lock_counted(&self.data, &self.contended[0]);
        guard.note().value += 1;
    }

    /// The chapter's `increment_counter`.
    fn increment_counter(&self) {
        let mut guard = lock_counted(&self.counter, &self.contended[1]);
        *guard.note() += 1;
    }

    /// Process-context user of the IRQ-safe lock.
    fn increment_irq_total(&self) {
        lock_counted(&self.irq_shared, &self.contended[2])
            .note()
            .total += 1;
    }

    /// The unprotected read-modify-write (may lose updates, but is not a data race in the
    /// Rust sense: both accesses are atomic).
    fn increment_unlocked(&self) {
        let v = self.unlocked.load(Relaxed);
        self.unlocked.store(v.wrapping_add(1), Relaxed);
    }

    /// Body of every work item; returns the mask of CPUs it ran on.
    fn work_loop(&self) -> u64 {
        let mut cpus = this_cpu_bit();
        // First the unprotected counter, in a tight loop so that the work items running on
        // other CPUs at the same time overlap with it as much as possible.
        // The loops run in chunks of `ABORT_CHECK` iterations and stop early when the reader
        // has given up (`abort`).
        let mut left = self.params.iterations;
        while left > 0 && !self.abort.load(Relaxed) {
            let n = left.min(ABORT_CHECK);
            for _ in 0..n {
                self.increment_unlocked();
            }
            left -= n;
        }
        let mut left = self.params.iterations;
        while left > 0 && !self.abort.load(Relaxed) {
            let n = left.min(ABORT_CHECK);
            for _ in 0..n {
                self.increment_value();
                self.increment_counter();
                self.increment_irq_total();
                cpus |= this_cpu_bit();
            }
            left -= n;
        }
        if self.remaining.fetch_sub(1, Full) == 1 {
            self.set_progress(|p| p.workers_done = true);
        }
        cpus
    }

    /// Update `progress` and wake the reader.
    fn set_progress(&self, update: impl FnOnce(&mut Progress)) {
        let mut guard = self.progress.lock();
        update(&mut guard);
        self.progress_changed.notify_all();
    }

    /// Sleep until the work items and the timer are done, or a signal arrives (`ERESTARTSYS`).
    fn wait_done(&self) -> Result {
        let mut guard = self.progress.lock();
        while !(guard.workers_done && guard.timer_done) {
            if self.progress_changed.wait_interruptible(&mut guard) {
                return Err(ERESTARTSYS);
            }
        }
        Ok(())
    }

    /// The final values, each read under its lock (one lock at a time: the mutex may sleep, so
    /// it must not be taken while a spinlock is held).
    fn report(&self, worker_cpus: WorkerCpus) -> Report {
        let (mutex_total, mutex_cpus) = {
            let guard = self.data.lock();
            (guard.value.value, guard.cpus)
        };
        let (spinlock_total, spinlock_cpus) = {
            let guard = self.counter.lock();
            (guard.value, guard.cpus)
        };
        let (irqlock_total, irq_ticks, irqlock_cpus) = {
            let guard = self.irq_shared.lock();
            (guard.value.total, guard.value.ticks, guard.cpus)
        };
        Report {
            params: self.params,
            mutex_total,
            spinlock_total,
            irqlock_total,
            irq_ticks,
            unlocked_total: self.unlocked.load(Relaxed),
            evidence: Evidence {
                lock_cpus: [mutex_cpus, spinlock_cpus, irqlock_cpus],
                contended: [
                    self.contended[0].load(Relaxed),
                    self.contended[1].load(Relaxed),
                    self.contended[2].load(Relaxed),
                ],
                worker_cpus,
            },
        }
    }
}

impl_has_hr_timer! {
    impl HasHrTimer<Self> for Experiment {
        mode: RelativeMode<Monotonic>, field: self.timer
    }
}

impl HrTimerCallback for Experiment {
    type Pointer<'a> = Arc<Self>;

    /// Runs from the hrtimer interrupt (`RelativeMode`: in hard-IRQ context on this non-RT
    /// kernel, interrupts disabled). Not `RelativeHardMode`: a HARD timer must only take raw
    /// spinlocks, and `SpinLockIrq` is a `spinlock_t` (lockdep on the debug kernel reports
    /// "BUG: Invalid wait context" for that; on PREEMPT_RT a non-HARD timer runs threaded).
    fn run(this: ArcBorrow<'_, Self>, mut ctx: HrTimerCallbackContext<'_, Self>) -> HrTimerRestart {
        let done = {
            let mut guard = this.irq_shared.lock();
            let shared = guard.note();
            shared.total += 1;
            shared.ticks += 1;
            shared.ticks >= this.params.irq_ticks
        };
        if done {
            this.set_progress(|p| p.timer_done = true);
            HrTimerRestart::NoRestart
        } else {
            ctx.forward_now(TICK);
            HrTimerRestart::Restart
        }
    }
}

/// A work item: one concurrent process-context user of the experiment.
#[pin_data]
struct Worker {
    experiment: Arc<Experiment>,
    /// Mask of the CPUs the work item ran on, stored when its loop ends.
    cpus: Atomic<u64>,
    #[pin]
    work: Work<Worker>,
}

impl_has_work! {
    impl HasWork<Self> for Worker { self.work }
}

impl WorkItem for Worker {
    type Pointer = Arc<Worker>;

    fn run(this: Arc<Worker>) {
        let cpus = this.experiment.work_loop();
        this.cpus.store(cpus, Relaxed);
    }
}

impl Worker {
    /// Wait until this work item is no longer running (its function has returned).
    fn flush(&self) {
        // SAFETY: `self.work` was initialised by `Work::new` (through `new_work!`) and stays
        // valid for the whole call because we hold `&self`. `flush_work` only waits for the
        // work item to become idle; we are in process context, where it may sleep.
        unsafe { bindings::flush_work(Work::raw_get(&self.work)) };
    }
}

/// Per work item: the CPUs it ran on (`count` entries used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct WorkerCpus {
    masks: [u64; 64],
    count: usize,
}

/// Where the experiment ran: not part of `is_ok` (a uniprocessor run is still correct).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Evidence {
    /// CPUs that held the mutex, the spinlock and the IRQ-safe spinlock.
    lock_cpus: [u64; 3],
    /// Contended acquisitions of each, in process context.
    contended: [u32; 3],
    worker_cpus: WorkerCpus,
}

/// The result of one experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Report {
    params: Params,
    mutex_total: u32,
    spinlock_total: u32,
    irqlock_total: u32,
    irq_ticks: u32,
    unlocked_total: u32,
    evidence: Evidence,
}

impl Report {
    fn expected_irqlock(&self) -> u32 {
        self.params.expected() + self.params.irq_ticks
    }

    /// No update of a locked total was lost.
    fn is_ok(&self) -> bool {
        let e = self.params.expected();
        self.mutex_total == e
            && self.spinlock_total == e
            && self.irq_ticks == self.params.irq_ticks
            && self.irqlock_total == self.expected_irqlock()
    }

    fn to_line(self) -> Result<CString> {
        let e = &self.evidence;
        let mut workers = KVec::with_capacity(e.worker_cpus.count * 5, GFP_KERNEL)?;
        for (i, m) in e.worker_cpus.masks[..e.worker_cpus.count]
            .iter()
            .enumerate()
        {
            let s = CString::try_from_fmt(fmt!("{}{:#x}", if i > 0 { "/" } else { "" }, m))?;
            workers.extend_from_slice(s.to_bytes(), GFP_KERNEL)?;
        }
        let workers = core::str::from_utf8(&workers).map_err(|_| EINVAL)?;
        CString::try_from_fmt(fmt!(
            "workers={} iterations={} mutex_total={} spinlock_total={} irqlock_total={} \
             irq_ticks={} unlocked_total={} expected={} expected_irqlock={} result={} \
             mutex_cpus={:#x} spinlock_cpus={:#x} irqlock_cpus={:#x} mutex_contended={} \
             spinlock_contended={} irqlock_contended={} worker_cpus={}\n",
            self.params.workers,
            self.params.iterations,
            self.mutex_total,
            self.spinlock_total,
            self.irqlock_total,
            self.irq_ticks,
            self.unlocked_total,
            self.params.expected(),
            self.expected_irqlock(),
            if self.is_ok() { "ok" } else { "lost_updates" },
            e.lock_cpus[0],
            e.lock_cpus[1],
            e.lock_cpus[2],
            e.contended[0],
            e.contended[1],
            e.contended[2],
            workers,
        ))
    }
}

/// Run one experiment and wait until the work items and the timer are done.
///
/// A signal interrupts the wait: the work items are told to stop, and the function returns
/// `ERESTARTSYS` once no work item or timer callback runs any more.
fn run_experiment(params: Params) -> Result<Report> {
    let experiment = Arc::pin_init(Experiment::new(params), GFP_KERNEL)?;
    experiment.update_value(0);

    // Allocate every work item before starting anything, so that an allocation failure cannot
    // leave `remaining` above zero.
    let mut workers = KVec::with_capacity(params.workers as usize, GFP_KERNEL)?;
    for _ in 0..params.workers {
        let shared = experiment.clone();
        let worker = Arc::pin_init(
            pin_init!(Worker {
                experiment: shared,
                cpus: Atomic::new(0),
                work <- new_work!("locking::Worker"),
            }),
            GFP_KERNEL,
        )?;
        workers.push(worker, GFP_KERNEL)?;
    }

    // Dropping the handle cancels the timer and waits for a running callback to return.
    let timer = experiment.clone().start(TICK);
    for worker in &workers {
        // A new work item is never already queued, so this cannot fail.
        let _ = workqueue::system_unbound().enqueue(worker.clone());
    }

    let done = experiment.wait_done();
    if done.is_err() {
        experiment.abort.store(true, Relaxed);
    }
    // After `abort`, each work item stops within `ABORT_CHECK` iterations (one that has not
    // started yet stops at once), so these waits are short.
    for worker in &workers {
        worker.flush();
    }
    drop(timer);
    done?;

    let mut worker_cpus = WorkerCpus {
        masks: [0; 64],
        count: workers.len(),
    };
    for (mask, worker) in worker_cpus.masks.iter_mut().zip(&workers) {
        *mask = worker.cpus.load(Relaxed);
    }
    Ok(experiment.report(worker_cpus))
}

#[pin_data]
struct LockingModule {
    #[pin]
    _miscdev: MiscDeviceRegistration<LockingDevice>,
}

impl kernel::InPlaceModule for LockingModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let params = Params::from_module();
        try_pin_init!(Self {
            _miscdev <- {
                let p = params.inspect_err(|_| {
                    pr_err!(
                        "invalid parameters: workers={} iterations={} irq_ticks={}\n",
                        param::workers.get(),
                        param::iterations.get(),
                        param::irq_ticks.get()
                    )
                })?;
                pr_info!(
                    "workers={} iterations={} irq_ticks={}: read /dev/rust_locking to run\n",
                    p.workers,
                    p.iterations,
                    p.irq_ticks
                );
                MiscDeviceRegistration::register(MiscDeviceOptions {
                    name: c"rust_locking",
                })
            },
        })
    }
}

/// The state of one open file.
enum FileState {
    /// No experiment yet (or the last one was interrupted).
    Idle,
    /// A reader runs the experiment; other readers of the file wait for its report.
    Running,
    /// The report of this file's experiment.
    Done(CString),
}

/// Per-open state: the report of this file's experiment, once it has run.
///
/// The lock is only held to look at or change the state, never while an experiment runs.
#[pin_data]
struct LockingDevice {
    #[pin]
    state: Mutex<FileState>,
    /// Notified when `state` leaves `Running`.
    #[pin]
    state_changed: CondVar,
}

#[vtable]
impl MiscDevice for LockingDevice {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        KBox::pin_init(
            pin_init!(LockingDevice {
                state <- new_mutex!(FileState::Idle, "LockingDevice::state"),
                state_changed <- new_condvar!("LockingDevice::state_changed"),
            }),
            GFP_KERNEL,
        )
    }

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let me = kiocb.file();
        let mut state = me.state.lock();
        loop {
            match &*state {
                FileState::Done(_) => break,
                FileState::Running => {
                    if me.state_changed.wait_interruptible(&mut state) {
                        return Err(ERESTARTSYS);
                    }
                }
                FileState::Idle => {
                    *state = FileState::Running;
                    drop(state);
                    let result = Params::from_module()
                        .and_then(run_experiment)
                        .and_then(Report::to_line);
                    state = me.state.lock();
                    me.state_changed.notify_all();
                    match result {
                        Ok(line) => {
                            // The line is ASCII (formatted numbers and names).
                            if let Ok(text) = line.to_str() {
                                pr_info!("{}", text);
                            }
                            *state = FileState::Done(line);
                        }
                        Err(e) => {
                            *state = FileState::Idle;
                            return Err(e);
                        }
                    }
                }
            }
        }
        let bytes = match &*state {
            FileState::Done(line) => line.to_bytes(),
            _ => &[],
        };
        iov.simple_read_from_buffer(kiocb.ki_pos_mut(), bytes)
    }
}

#[kunit_tests(rust_locking)]
mod tests {
    use super::*;

    #[test]
    fn params_are_validated() {
        assert!(Params::new(1, 1, 1).is_ok());
        assert!(Params::new(64, 1_000_000, 100_000).is_ok());
        assert_eq!(Params::new(0, 1, 1), Err(EINVAL));
        assert_eq!(Params::new(65, 1, 1), Err(EINVAL));
        assert_eq!(Params::new(1, 0, 1), Err(EINVAL));
        assert_eq!(Params::new(1, 1_000_001, 1), Err(EINVAL));
        assert_eq!(Params::new(1, 1, 0), Err(EINVAL));
        assert_eq!(Params::new(1, 1, 100_001), Err(EINVAL));
    }

    #[test]
    fn report_line_format() -> Result {
        let params = Params::new(2, 3, 4)?;
        let r = Report {
            params,
            mutex_total: 6,
            spinlock_total: 6,
            irqlock_total: 10,
            irq_ticks: 4,
            unlocked_total: 5,
            evidence: Evidence {
                lock_cpus: [3, 1, 2],
                contended: [7, 0, 1],
                worker_cpus: WorkerCpus {
                    masks: {
                        let mut m = [0; 64];
                        m[0] = 1;
                        m[1] = 3;
                        m
                    },
                    count: 2,
                },
            },
        };
        assert!(r.is_ok());
        assert_eq!(
            r.to_line()?.to_bytes(),
            b"workers=2 iterations=3 mutex_total=6 spinlock_total=6 irqlock_total=10 \
              irq_ticks=4 unlocked_total=5 expected=6 expected_irqlock=10 result=ok \
              mutex_cpus=0x3 spinlock_cpus=0x1 irqlock_cpus=0x2 mutex_contended=7 \
              spinlock_contended=0 irqlock_contended=1 worker_cpus=0x1/0x3\n"
        );
        let lost = Report {
            spinlock_total: 5,
            ..r
        };
        assert!(!lost.is_ok());
        let line = lost.to_line()?;
        let line = line.to_bytes();
        assert!(line.windows(20).any(|w| w == b" result=lost_updates"));
        Ok(())
    }

    #[test]
    fn experiment_loses_no_updates() -> Result {
        for (k, n, t) in [(1, 1, 1), (3, 500, 5), (8, 2000, 20)] {
            let params = Params::new(k, n, t)?;
            let r = run_experiment(params)?;
            assert_eq!(r.mutex_total, k * n);
            assert_eq!(r.spinlock_total, k * n);
            assert_eq!(r.irq_ticks, t);
            assert_eq!(r.irqlock_total, k * n + t);
            assert!(r.unlocked_total >= 1 && r.unlocked_total <= k * n);
            assert!(r.is_ok());
            // Every lock was held at least once, on some CPU; every worker ran somewhere.
            assert!(r.evidence.lock_cpus.iter().all(|&m| m != 0));
            assert_eq!(r.evidence.worker_cpus.count, k as usize);
            assert!(r.evidence.worker_cpus.masks[..k as usize]
                .iter()
                .all(|&m| m != 0));
        }
        Ok(())
    }
}
