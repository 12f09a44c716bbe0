// SPDX-License-Identifier: GPL-2.0
/*
 * cedu: the C twin of modules/edu (module rust_edu), a driver for QEMU's "edu" PCI device
 * (1234:11e8). Same ABI (include/uapi/edu.h), parameter (msi), debugfs files and messages;
 * /dev/ceduN instead of /dev/eduN. The device rules both rely on are listed in
 * modules/edu/regs.rs, the design in modules/edu/rust_edu.rs; guest/tests/edu.rs runs one
 * suite against both.
 *
 * Lifetime: struct cedu_dev is reference counted (kref). The binding holds one reference,
 * every open file one more, so the structure outlives an unbind while files are open. What
 * must not outlive the binding is guarded by d->gone, set under d->lock by remove(): every
 * register access from a file operation happens under d->lock after checking it (the BAR is
 * a managed mapping, unmapped after remove() returns), every wait ends with -ENODEV. The
 * interrupt handler runs only while requested (freed in remove()), the debugfs files are
 * removed (waiting for readers) before the BAR goes.
 *
 * Waiting: one mutex and one wait queue per device. A caller claims an engine (fact_busy,
 * dma_busy), waits for the engine to be idle, starts its own operation and waits for idle
 * again. Idle means both: the device says so (a computation or transfer whose caller gave up
 * may still run) and the completion interrupt of the last operation started was handled
 * (fact_irq_due, dma_irq_due): the device clears its busy bit before it raises the
 * interrupt, so without the second condition two completions could reach the handler as one
 * IRQ_STATUS bit. The threaded half of the interrupt takes the mutex before waking the
 * waiters, who check and sleep under it: no lost wake-up.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/bitops.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/jiffies.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
#include <linux/wait.h>

#include "edu.h"

/* Registers (BAR0) and bits: see modules/edu/regs.rs for the rules. */
#define EDU_BAR_SIZE		0x100
#define EDU_ID			0x00
#define EDU_LIVENESS		0x04
#define EDU_FACT		0x08
#define EDU_STATUS		0x20
#define EDU_IRQ_STATUS		0x24
#define EDU_IRQ_ACK		0x64
#define EDU_DMA_SRC		0x80
#define EDU_DMA_DST		0x88
#define EDU_DMA_COUNT		0x90
#define EDU_DMA_CMD		0x98

#define EDU_ID_VALUE		0x010000ed
#define EDU_STATUS_COMPUTING	0x01
#define EDU_STATUS_IRQFACT	0x80
#define EDU_IRQ_FACT		0x001
#define EDU_IRQ_DMA		0x100
#define EDU_DMA_RUN		0x1
#define EDU_DMA_TO_RAM		0x2
#define EDU_DMA_IRQ		0x4
#define EDU_BUF_ADDR		0x40000
#define EDU_DMA_BITS		28

#define CEDU_MAX_DEVICES	8

static bool msi = true;
module_param(msi, bool, 0444);
MODULE_PARM_DESC(msi, "Use MSI if the device offers it (N: always INTx)");

static DEFINE_IDA(cedu_ida);
static struct dentry *cedu_debugfs;

struct cedu_dev {
	struct kref ref;
	struct pci_dev *pdev;		/* a reference of ours */
	void __iomem *bar;		/* valid while the device is bound */
	struct mutex lock;		/* everything below, and register access from files */
	wait_queue_head_t events;	/* completions, released engines, unbind */
	bool gone;			/* unbound: every wait and later call: -ENODEV */
	bool fact_busy;			/* a caller owns the factorial engine */
	bool dma_busy;			/* a caller owns the DMA engine */
	bool fact_irq_due;		/* computation started, its interrupt not handled yet */
	bool dma_irq_due;		/* transfer started, its interrupt not handled yet */
	size_t dma_len;			/* bytes of the transfer last started */
	void *buf;			/* EDU_BUF_SIZE coherent bytes; NULL once freed */
	dma_addr_t buf_dma;
	u64 factorials;
	u64 dma_transfers;
	u64 dma_bytes;
	atomic64_t interrupts;		/* IRQ_STATUS bits acked (one per completion) */
	atomic_t pending;		/* IRQ_STATUS bits acked, not yet seen by the thread */
	const char *irq_kind;
	int irq;
	int index;
	char name[16];			/* cedu0, cedu1, ... */
	struct miscdevice misc;
	struct dentry *debugfs;
};

static void cedu_free(struct kref *ref)
{
	struct cedu_dev *d = container_of(ref, struct cedu_dev, ref);

	pci_dev_put(d->pdev);
	kfree(d);
}

/* Called with d->lock held; returns with it held. */
static int cedu_sleep(struct cedu_dev *d, long *left)
{
	DEFINE_WAIT(wait);
	long r;

	if (*left <= 0)
		return -ETIMEDOUT;
	prepare_to_wait_exclusive(&d->events, &wait, TASK_INTERRUPTIBLE);
	mutex_unlock(&d->lock);
	r = schedule_timeout(*left);
	mutex_lock(&d->lock);
	finish_wait(&d->events, &wait);
	if (signal_pending(current))
		return -ERESTARTSYS;
	if (!r)
		return -ETIMEDOUT;
	*left = r;
	return 0;
}

static bool cedu_computing(struct cedu_dev *d)
{
	return ioread32(d->bar + EDU_STATUS) & EDU_STATUS_COMPUTING;
}

static bool cedu_dma_running(struct cedu_dev *d)
{
	return ioread32(d->bar + EDU_DMA_CMD) & EDU_DMA_RUN;
}

/* Sleeps until the engine is idle: *irq_due and busy(d) false; d->lock held. */
static int cedu_wait_idle(struct cedu_dev *d, long *left, bool *irq_due,
			  bool (*busy)(struct cedu_dev *d))
{
	int ret;

	for (;;) {
		if (d->gone)
			return -ENODEV;
		if (!*irq_due && !busy(d))
			return 0;
		ret = cedu_sleep(d, left);
		if (ret)
			return ret;
	}
}

/* Claims an engine for the caller; d->lock held. */
static int cedu_claim(struct cedu_dev *d, bool *engine, long *left)
{
	int ret;

	for (;;) {
		if (d->gone)
			return -ENODEV;
		if (!*engine)
			break;
		ret = cedu_sleep(d, left);
		if (ret)
			return ret;
	}
	*engine = true;
	return 0;
}

static void cedu_release_engine(struct cedu_dev *d, bool *engine)
{
	*engine = false;
	mutex_unlock(&d->lock);
	wake_up_all(&d->events);
}

static int cedu_factorial(struct cedu_dev *d, u32 n, u32 timeout_ms, u32 *result)
{
	long left = msecs_to_jiffies(timeout_ms);
	int ret;

	mutex_lock(&d->lock);
	ret = cedu_claim(d, &d->fact_busy, &left);
	if (ret) {
		mutex_unlock(&d->lock);
		return ret;
	}
	/*
	 * A computation whose caller gave up may still run (the device would ignore n) or its
	 * interrupt be on the way (it would be taken for ours).
	 */
	ret = cedu_wait_idle(d, &left, &d->fact_irq_due, cedu_computing);
	if (!ret) {
		iowrite32(n, d->bar + EDU_FACT);
		d->fact_irq_due = true;
		ret = cedu_wait_idle(d, &left, &d->fact_irq_due, cedu_computing);
	}
	if (!ret)
		*result = ioread32(d->bar + EDU_FACT);
	cedu_release_engine(d, &d->fact_busy);
	return ret;
}

static int cedu_liveness(struct cedu_dev *d, u32 value, u32 *inverse)
{
	int ret = 0;

	mutex_lock(&d->lock);
	if (d->gone) {
		ret = -ENODEV;
	} else {
		iowrite32(value, d->bar + EDU_LIVENESS);
		*inverse = ioread32(d->bar + EDU_LIVENESS);
	}
	mutex_unlock(&d->lock);
	return ret;
}

/*
 * One DMA transfer of len bytes between device offset off and the start of the buffer:
 * to_ram copies device -> bounce, else bounce -> device.
 */
static int cedu_dma(struct cedu_dev *d, size_t off, void *bounce, size_t len, bool to_ram)
{
	long left = msecs_to_jiffies(EDU_DEFAULT_TIMEOUT_MS);
	u32 dev_addr, cmd;
	int ret;

	/*
	 * Never hand the device a range outside its buffer (QEMU 7.2 aborts the VM). The
	 * buffer is EDU_BUF_SIZE = 4095 bytes, one short of the device's 4096: QEMU < 8.2.1
	 * also aborts on a transfer that ends at 0x41000 (edu_check_range() in hw/misc/edu.c
	 * compares the end with "<"), so offset 4095 is never used (include/uapi/edu.h).
	 */
	if (!len || off >= EDU_BUF_SIZE || len > EDU_BUF_SIZE - off)
		return -EINVAL;
	mutex_lock(&d->lock);
	ret = cedu_claim(d, &d->dma_busy, &left);
	if (ret) {
		mutex_unlock(&d->lock);
		return ret;
	}
	/* A transfer whose caller gave up may still run: it owns the buffer until then. */
	ret = cedu_wait_idle(d, &left, &d->dma_irq_due, cedu_dma_running);
	if (ret)
		goto out;
	if (!to_ram)
		memcpy(d->buf, bounce, len);
	dev_addr = EDU_BUF_ADDR + off;
	cmd = EDU_DMA_RUN | EDU_DMA_IRQ | (to_ram ? EDU_DMA_TO_RAM : 0);
	/* The buffer lies below 2^28 (DMA mask): a 32-bit register write holds it. */
	iowrite32(to_ram ? dev_addr : (u32)d->buf_dma, d->bar + EDU_DMA_SRC);
	iowrite32(to_ram ? (u32)d->buf_dma : dev_addr, d->bar + EDU_DMA_DST);
	iowrite32(len, d->bar + EDU_DMA_COUNT);
	iowrite32(cmd, d->bar + EDU_DMA_CMD);
	d->dma_len = len;
	d->dma_irq_due = true;
	ret = cedu_wait_idle(d, &left, &d->dma_irq_due, cedu_dma_running);
	if (!ret && to_ram)
		memcpy(bounce, d->buf, len);
out:
	cedu_release_engine(d, &d->dma_busy);
	return ret;
}

/*
 * The part of device memory a transfer of len bytes at *pos moves: 0 and *count = 0 for
 * nothing (empty, or a read at/past the end), -ENOSPC for a write at/past the end.
 */
static int cedu_span(loff_t pos, size_t len, bool write, size_t *count)
{
	*count = 0;
	if (pos < 0)
		return -EINVAL;
	if (!len)
		return 0;
	if (pos >= EDU_BUF_SIZE)
		return write ? -ENOSPC : 0;
	*count = min_t(size_t, len, EDU_BUF_SIZE - pos);
	return 0;
}

static int cedu_open(struct inode *inode, struct file *file)
{
	struct cedu_dev *d = container_of(file->private_data, struct cedu_dev, misc);
	int ret = 0;

	/* misc_open() holds misc_mtx: d cannot go away during this call. */
	mutex_lock(&d->lock);
	if (d->gone)
		ret = -ENODEV;
	else
		kref_get(&d->ref);
	mutex_unlock(&d->lock);
	if (!ret)
		file->private_data = d;
	return ret;
}

static int cedu_release(struct inode *inode, struct file *file)
{
	struct cedu_dev *d = file->private_data;

	kref_put(&d->ref, cedu_free);
	return 0;
}

static ssize_t cedu_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct cedu_dev *d = iocb->ki_filp->private_data;
	size_t len;
	void *bounce;
	int ret;

	ret = cedu_span(iocb->ki_pos, iov_iter_count(to), false, &len);
	if (ret || !len)
		return ret;
	/* The user copy happens outside the device lock, from a bounce buffer. */
	bounce = kzalloc(len, GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;
	ret = cedu_dma(d, iocb->ki_pos, bounce, len, true);
	if (!ret && copy_to_iter(bounce, len, to) != len)
		ret = -EFAULT;
	kfree(bounce);
	if (ret)
		return ret;
	iocb->ki_pos += len;
	return len;
}

static ssize_t cedu_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct cedu_dev *d = iocb->ki_filp->private_data;
	size_t len;
	void *bounce;
	int ret;

	ret = cedu_span(iocb->ki_pos, iov_iter_count(from), true, &len);
	if (ret || !len)
		return ret;
	bounce = kzalloc(len, GFP_KERNEL);
	if (!bounce)
		return -ENOMEM;
	if (copy_from_iter(bounce, len, from) != len)
		ret = -EFAULT;
	else
		ret = cedu_dma(d, iocb->ki_pos, bounce, len, false);
	kfree(bounce);
	if (ret)
		return ret;
	iocb->ki_pos += len;
	return len;
}

static long cedu_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct cedu_dev *d = file->private_data;
	void __user *uarg = (void __user *)arg;
	struct edu_factorial req;
	struct edu_stats stats;
	u32 value, inverse;
	int ret;

	switch (cmd) {
	case EDU_IOC_FACTORIAL:
		if (copy_from_user(&req, uarg, sizeof(req)))
			return -EFAULT;
		if (req.flags || req.timeout_ms > EDU_MAX_TIMEOUT_MS)
			return -EINVAL;
		ret = cedu_factorial(d, req.n, req.timeout_ms ?: EDU_DEFAULT_TIMEOUT_MS,
				     &req.result);
		if (ret)
			return ret;
		return copy_to_user(uarg, &req, sizeof(req)) ? -EFAULT : 0;
	case EDU_IOC_LIVENESS:
		if (get_user(value, (u32 __user *)uarg))
			return -EFAULT;
		ret = cedu_liveness(d, value, &inverse);
		if (ret)
			return ret;
		return put_user(inverse, (u32 __user *)uarg);
	case EDU_IOC_GET_STATS:
		mutex_lock(&d->lock);
		stats.interrupts = atomic64_read(&d->interrupts);
		stats.factorials = d->factorials;
		stats.dma_transfers = d->dma_transfers;
		stats.dma_bytes = d->dma_bytes;
		mutex_unlock(&d->lock);
		return copy_to_user(uarg, &stats, sizeof(stats)) ? -EFAULT : 0;
	default:
		return -ENOTTY;
	}
}

static const struct file_operations cedu_fops = {
	.owner = THIS_MODULE,
	.open = cedu_open,
	.release = cedu_release,
	.read_iter = cedu_read_iter,
	.write_iter = cedu_write_iter,
	.unlocked_ioctl = cedu_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static irqreturn_t cedu_hard_irq(int irq, void *data)
{
	struct cedu_dev *d = data;
	u32 status = ioread32(d->bar + EDU_IRQ_STATUS);

	if (!status)
		return IRQ_NONE;	/* not ours (a shared INTx line) */
	/* INTx is level-triggered: the line stays high until acked. */
	iowrite32(status, d->bar + EDU_IRQ_ACK);
	atomic64_add(hweight32(status), &d->interrupts);
	atomic_or(status, &d->pending);
	return IRQ_WAKE_THREAD;
}

static irqreturn_t cedu_irq_thread(int irq, void *data)
{
	struct cedu_dev *d = data;
	u32 bits = atomic_xchg(&d->pending, 0);

	mutex_lock(&d->lock);
	/* Only completions of operations this binding started count. */
	if ((bits & EDU_IRQ_FACT) && d->fact_irq_due) {
		d->fact_irq_due = false;
		d->factorials++;
	}
	if ((bits & EDU_IRQ_DMA) && d->dma_irq_due) {
		d->dma_irq_due = false;
		d->dma_transfers++;
		d->dma_bytes += d->dma_len;
	}
	mutex_unlock(&d->lock);
	wake_up_all(&d->events);
	return IRQ_HANDLED;
}

static int cedu_regs_show(struct seq_file *m, void *unused)
{
	struct cedu_dev *d = m->private;
	static const struct {
		const char *name;
		unsigned int off;
	} regs[] = {
		{ "id", EDU_ID },
		{ "liveness", EDU_LIVENESS },
		{ "factorial", EDU_FACT },
		{ "status", EDU_STATUS },
		{ "irq_status", EDU_IRQ_STATUS },
		{ "dma_src", EDU_DMA_SRC },
		{ "dma_dst", EDU_DMA_DST },
		{ "dma_count", EDU_DMA_COUNT },
		{ "dma_cmd", EDU_DMA_CMD },
	};
	int i;

	/* The file is removed (waiting for readers) before the BAR is unmapped. */
	for (i = 0; i < ARRAY_SIZE(regs); i++)
		seq_printf(m, "%-10s 0x%08x\n", regs[i].name, ioread32(d->bar + regs[i].off));
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(cedu_regs);

static int cedu_stats_show(struct seq_file *m, void *unused)
{
	struct cedu_dev *d = m->private;

	mutex_lock(&d->lock);
	seq_printf(m, "interrupts %lld\n", (long long)atomic64_read(&d->interrupts));
	seq_printf(m, "factorials %llu\n", d->factorials);
	seq_printf(m, "dma_transfers %llu\n", d->dma_transfers);
	seq_printf(m, "dma_bytes %llu\n", d->dma_bytes);
	seq_printf(m, "irq %s\n", d->irq_kind);
	mutex_unlock(&d->lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(cedu_stats);

/* Waits up to 2 s for the DMA engine to be idle. */
static bool cedu_dma_idle(void __iomem *bar)
{
	int i;

	for (i = 0; i < 200; i++) {
		if (!(ioread32(bar + EDU_DMA_CMD) & EDU_DMA_RUN))
			return true;
		fsleep(10000);
	}
	return false;
}

/* Checks the identification and liveness registers, and leaves the device quiet. */
static int cedu_check_and_quiesce(struct pci_dev *pdev, void __iomem *bar)
{
	static const u32 values[] = { 0x12345678, 0, 0xffffffff, 0xa5a50f0f };
	u32 id = ioread32(bar + EDU_ID), got;
	int i;

	if ((id & 0xff) != (EDU_ID_VALUE & 0xff)) {
		dev_err(&pdev->dev, "not an edu device: identification %#010x\n", id);
		return -ENODEV;
	}
	for (i = 0; i < ARRAY_SIZE(values); i++) {
		iowrite32(values[i], bar + EDU_LIVENESS);
		got = ioread32(bar + EDU_LIVENESS);
		if (got != ~values[i]) {
			dev_err(&pdev->dev, "liveness check failed: wrote %#010x, read %#010x\n",
				values[i], got);
			return -EIO;
		}
	}
	iowrite32(0, bar + EDU_STATUS);
	if (!cedu_dma_idle(bar)) {
		dev_err(&pdev->dev, "a DMA transfer is still running\n");
		return -EBUSY;
	}
	iowrite32(~0u, bar + EDU_IRQ_ACK);
	return 0;
}

static int cedu_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct cedu_dev *d;
	void __iomem *bar;
	u32 ident;
	int ret;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	bar = pcim_iomap_region(pdev, 0, "cedu");
	if (IS_ERR(bar))
		return PTR_ERR(bar);
	ret = cedu_check_and_quiesce(pdev, bar);
	if (ret)
		return ret;
	ident = ioread32(bar + EDU_ID);
	pci_set_master(pdev);
	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(EDU_DMA_BITS));
	if (ret)
		return ret;

	d = kzalloc_obj(*d);
	if (!d)
		return -ENOMEM;
	kref_init(&d->ref);
	d->pdev = pci_dev_get(pdev);
	d->bar = bar;
	mutex_init(&d->lock);
	init_waitqueue_head(&d->events);
	atomic64_set(&d->interrupts, 0);
	atomic_set(&d->pending, 0);

	d->buf = dma_alloc_coherent(&pdev->dev, EDU_BUF_SIZE, &d->buf_dma, GFP_KERNEL);
	if (!d->buf) {
		ret = -ENOMEM;
		goto err_put;
	}
	/* Managed through pcim_enable_device(): freed when the binding is released. */
	ret = pci_alloc_irq_vectors(pdev, 1, 1,
				    msi ? PCI_IRQ_MSI | PCI_IRQ_INTX : PCI_IRQ_INTX);
	if (ret < 0)
		goto err_buf;
	d->irq_kind = pdev->msix_enabled ? "MSI-X" : pdev->msi_enabled ? "MSI" : "INTx";
	d->irq = pci_irq_vector(pdev, 0);
	if (d->irq < 0) {
		ret = d->irq;
		goto err_buf;
	}

	d->index = ida_alloc_max(&cedu_ida, CEDU_MAX_DEVICES - 1, GFP_KERNEL);
	if (d->index < 0) {
		ret = d->index;
		goto err_buf;
	}
	snprintf(d->name, sizeof(d->name), "cedu%d", d->index);

	ret = request_threaded_irq(d->irq, cedu_hard_irq, cedu_irq_thread, IRQF_SHARED,
				   "cedu", d);
	if (ret)
		goto err_ida;

	d->misc.minor = MISC_DYNAMIC_MINOR;
	d->misc.name = d->name;
	d->misc.fops = &cedu_fops;
	ret = misc_register(&d->misc);
	if (ret)
		goto err_irq;

	d->debugfs = debugfs_create_dir(d->name, cedu_debugfs);
	debugfs_create_file("regs", 0444, d->debugfs, d, &cedu_regs_fops);
	debugfs_create_file("stats", 0444, d->debugfs, d, &cedu_stats_fops);

	pci_set_drvdata(pdev, d);
	/* Last: the device may raise factorial interrupts from now on. */
	iowrite32(EDU_STATUS_IRQFACT, bar + EDU_STATUS);
	dev_info(&pdev->dev, "%s: QEMU edu %u.%u, %s irq %d, %d-byte DMA buffer at %#llx\n",
		 d->name, ident >> 24, (ident >> 16) & 0xff, d->irq_kind, d->irq, EDU_BUF_SIZE,
		 (unsigned long long)d->buf_dma);
	return 0;

err_irq:
	free_irq(d->irq, d);
	iowrite32(~0u, bar + EDU_IRQ_ACK);
err_ida:
	ida_free(&cedu_ida, d->index);
err_buf:
	dma_free_coherent(&pdev->dev, EDU_BUF_SIZE, d->buf, d->buf_dma);
err_put:
	kref_put(&d->ref, cedu_free);
	return ret;
}

static void cedu_remove(struct pci_dev *pdev)
{
	struct cedu_dev *d = pci_get_drvdata(pdev);
	void *buf;

	/* Every waiter returns -ENODEV from now on; the buffer is ours to free... */
	mutex_lock(&d->lock);
	d->gone = true;
	buf = d->buf;
	d->buf = NULL;
	mutex_unlock(&d->lock);
	wake_up_all(&d->events);
	/* ... once the device no longer uses it. */
	iowrite32(0, d->bar + EDU_STATUS);
	if (cedu_dma_idle(d->bar))
		dma_free_coherent(&pdev->dev, EDU_BUF_SIZE, buf, d->buf_dma);
	else
		dev_err(&pdev->dev, "DMA transfer did not finish: leaking its buffer\n");
	dev_info(&pdev->dev, "%s: unbound\n", d->name);

	debugfs_remove_recursive(d->debugfs);
	misc_deregister(&d->misc);
	free_irq(d->irq, d);
	/* Clear bits raised after the unbind, so no INTx line stays asserted. */
	iowrite32(~0u, d->bar + EDU_IRQ_ACK);
	ida_free(&cedu_ida, d->index);
	kref_put(&d->ref, cedu_free);
}

static const struct pci_device_id cedu_ids[] = {
	{ PCI_DEVICE(0x1234, 0x11e8) },
	{ }
};
MODULE_DEVICE_TABLE(pci, cedu_ids);

static struct pci_driver cedu_driver = {
	.name = "cedu",
	.id_table = cedu_ids,
	.probe = cedu_probe,
	.remove = cedu_remove,
};

static int __init cedu_init(void)
{
	int ret;

	cedu_debugfs = debugfs_create_dir("cedu", NULL);
	ret = pci_register_driver(&cedu_driver);
	if (ret)
		debugfs_remove_recursive(cedu_debugfs);
	return ret;
}

static void __exit cedu_exit(void)
{
	pci_unregister_driver(&cedu_driver);
	debugfs_remove_recursive(cedu_debugfs);
}

module_init(cedu_init);
module_exit(cedu_exit);

MODULE_AUTHOR("Rust kernel modules workbench");
MODULE_DESCRIPTION("Driver for QEMU's edu PCI device: factorial, DMA, liveness (C twin of rust_edu)");
MODULE_LICENSE("GPL");
