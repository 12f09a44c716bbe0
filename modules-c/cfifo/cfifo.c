// SPDX-License-Identifier: GPL-2.0
/*
 * cfifo: the C twin of modules/rfifo/rfifo.rs, LDD3's scullpipe with the semantics of
 * the kernel's named FIFOs (fifo(7), pipe(7)). Same ABI (include/uapi/rfifo.h), module
 * parameters and behaviour; see the Rust module's documentation for the rules. The two
 * are compared by guest/tests/fifo_semantics.rs (against a mkfifo node) and benchmarked.
 *
 *   # modprobe cfifo devices=2 capacity=4096
 *   # cat /dev/cfifo0 &          # blocks in open() until a writer comes
 *   # echo hello > /dev/cfifo0
 *
 * A character-device region rather than a misc device: misc_open() calls ->open() with
 * the global misc_mtx held, so a FIFO open that waits for its partner would block every
 * misc-device open, the partner's included. cdev_add() is the last step of the init: an
 * open before it finds no cdev (ENXIO), so no open can sleep in a module whose init fails.
 *
 * The device mutex is held across the user copies (as pipe->mutex is): a slow-faulting
 * buffer delays the device's other readers, writers, opens, closes and ioctls. poll() and
 * fdinfo do not take it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/capability.h>
#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/fs.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/sched/signal.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/uio.h>
#include <linux/wait.h>

#include "rfifo.h"

#define CFIFO_MAX_DEVICES 64
/*
 * Rings are sized by users: charge them to the opener's memory cgroup (as pipes are) and
 * report a failure as -ENOMEM without a warning splat in the log.
 */
#define CFIFO_RING_GFP (GFP_KERNEL_ACCOUNT | __GFP_NOWARN)

static unsigned int devices = 4;
module_param(devices, uint, 0444);
MODULE_PARM_DESC(devices, "Number of /dev/cfifoN devices (1..=64)");

static unsigned int capacity = 65536;
module_param(capacity, uint, 0444);
MODULE_PARM_DESC(capacity, "Buffer size of each device in bytes (1..=16777216)");

struct cfifo_dev {
	struct mutex lock;
	wait_queue_head_t rd_wait;	/* readers: data or no writer; POLLIN/POLLHUP */
	wait_queue_head_t wr_wait;	/* writers: room or no reader; POLLOUT/POLLERR */
	wait_queue_head_t open_wait;	/* blocking opens: the partner */
	u8 *buf;			/* ring of cap bytes; NULL while nobody has it open */
	size_t cap;
	size_t head;			/* oldest byte */
	size_t len;			/* bytes in the ring */
	unsigned int readers, writers;	/* open files with read / write access */
	unsigned int r_counter, w_counter; /* read / write opens ever (partner waits) */
	bool edge_polled;		/* an EPOLLET reader polled: wake readers on every write */
	u64 bytes_in, bytes_out, opens;
};

struct cfifo_file {
	struct cfifo_dev *dev;
	bool readable, writable;
	bool hup_check;			/* non-blocking read open without writers ... */
	unsigned int hup_after;		/* ... no POLLHUP until w_counter moves on */
	atomic64_t bytes_read, bytes_written;
};

static const struct class cfifo_class = {
	.name = "cfifo",
};

static dev_t cfifo_base;
static struct cdev cfifo_cdev;
static struct cfifo_dev *cfifo_devs;

static size_t cfifo_wrap(size_t i, size_t cap)
{
	return i >= cap ? i - cap : i;
}

/* Writes up to this size are atomic: PIPE_BUF, or the whole ring if it is smaller. */
static size_t cfifo_atomic_max(const struct cfifo_dev *d)
{
	return min_t(size_t, PIPE_BUF, d->cap);
}

static bool cfifo_nonblock(struct kiocb *iocb)
{
	return (iocb->ki_filp->f_flags & O_NONBLOCK) || (iocb->ki_flags & IOCB_NOWAIT);
}

/* Undo what cfifo_open() counted; the last file discards the data. */
static void cfifo_detach(struct cfifo_file *cf)
{
	struct cfifo_dev *d = cf->dev;
	bool wake_rd = false, wake_wr = false;
	u8 *buf = NULL;

	mutex_lock(&d->lock);
	if (cf->readable && !--d->readers)
		wake_wr = true;
	if (cf->writable && !--d->writers)
		wake_rd = true;
	if (!d->readers && !d->writers) {
		buf = d->buf;
		d->buf = NULL;
		d->head = 0;
		d->len = 0;
		WRITE_ONCE(d->edge_polled, false);
	}
	mutex_unlock(&d->lock);
	kvfree(buf);
	if (wake_rd)
		wake_up_interruptible_all(&d->rd_wait);
	if (wake_wr)
		wake_up_interruptible_all(&d->wr_wait);
}

static int cfifo_wait_for_partner(struct cfifo_dev *d, unsigned int *cnt)
{
	unsigned int cur = *cnt;

	while (cur == *cnt) {
		mutex_unlock(&d->lock);
		wait_event_interruptible(d->open_wait, cur != READ_ONCE(*cnt));
		mutex_lock(&d->lock);
		if (signal_pending(current))
			break;
	}
	return cur == *cnt ? -ERESTARTSYS : 0;
}

/* The rules of fifo_open() in fs/pipe.c. */
static int cfifo_open(struct inode *inode, struct file *filp)
{
	unsigned int idx = iminor(inode) - MINOR(cfifo_base);
	bool nonblock = filp->f_flags & O_NONBLOCK;
	struct cfifo_file *cf;
	struct cfifo_dev *d;
	int ret = 0;

	if (idx >= devices)
		return -ENXIO;
	d = &cfifo_devs[idx];
	stream_open(inode, filp);

	cf = kzalloc_obj(*cf);
	if (!cf)
		return -ENOMEM;
	cf->dev = d;

	mutex_lock(&d->lock);
	switch (filp->f_mode & (FMODE_READ | FMODE_WRITE)) {
	case FMODE_READ:
		cf->readable = true;
		break;
	case FMODE_WRITE:
		if (nonblock && !d->readers)
			ret = -ENXIO;
		cf->writable = true;
		break;
	case FMODE_READ | FMODE_WRITE:
		cf->readable = cf->writable = true;
		break;
	default:
		ret = -EINVAL;
	}
	if (!ret && !d->buf) {
		d->buf = kvzalloc(d->cap, CFIFO_RING_GFP);
		if (!d->buf)
			ret = -ENOMEM;
	}
	if (ret) {
		mutex_unlock(&d->lock);
		kfree(cf);
		return ret;
	}

	if (cf->readable) {
		d->readers++;
		d->r_counter++;
	}
	if (cf->writable) {
		d->writers++;
		d->w_counter++;
	}
	wake_up_interruptible_all(&d->open_wait);

	if (cf->readable && !cf->writable && !d->writers) {
		if (nonblock) {
			cf->hup_check = true;
			cf->hup_after = d->w_counter;
		} else {
			ret = cfifo_wait_for_partner(d, &d->w_counter);
		}
	} else if (cf->writable && !cf->readable && !d->readers) {
		ret = cfifo_wait_for_partner(d, &d->r_counter);
	}
	if (!ret)
		d->opens++;
	mutex_unlock(&d->lock);

	if (ret) {
		cfifo_detach(cf);
		kfree(cf);
		return ret;
	}
	filp->private_data = cf;
	return 0;
}

static int cfifo_release(struct inode *inode, struct file *filp)
{
	struct cfifo_file *cf = filp->private_data;

	cfifo_detach(cf);
	kfree(cf);
	return 0;
}

static bool cfifo_readable(struct cfifo_dev *d)
{
	return READ_ONCE(d->len) || !READ_ONCE(d->writers);
}

/* The rules of pipe_read(). */
static ssize_t cfifo_read_iter(struct kiocb *iocb, struct iov_iter *to)
{
	struct cfifo_file *cf = iocb->ki_filp->private_data;
	struct cfifo_dev *d = cf->dev;
	size_t want = iov_iter_count(to);
	size_t n, first, done;

	if (!want)
		return 0;

	mutex_lock(&d->lock);
	while (!d->len) {
		if (!d->writers) {
			mutex_unlock(&d->lock);
			return 0;
		}
		if (cfifo_nonblock(iocb)) {
			mutex_unlock(&d->lock);
			return -EAGAIN;
		}
		mutex_unlock(&d->lock);
		if (wait_event_interruptible_exclusive(d->rd_wait, cfifo_readable(d)))
			return -ERESTARTSYS;
		mutex_lock(&d->lock);
	}

	n = min(want, d->len);
	first = min(n, d->cap - d->head);
	done = copy_to_iter(d->buf + d->head, first, to);
	if (done == first && n > first)
		done += copy_to_iter(d->buf, n - first, to);
	d->len -= done;
	d->head = d->len ? cfifo_wrap(d->head + done, d->cap) : 0;
	d->bytes_out += done;
	mutex_unlock(&d->lock);

	if (!done)
		return -EFAULT;
	if (wq_has_sleeper(&d->wr_wait))
		wake_up_interruptible_all(&d->wr_wait);
	atomic64_add(done, &cf->bytes_read);
	return done;
}

/* Room for the rest of the write (all of it if atomic), or no reader left. */
static bool cfifo_writable(struct cfifo_dev *d, size_t need)
{
	return READ_ONCE(d->cap) - READ_ONCE(d->len) >= need || !READ_ONCE(d->readers);
}

/* The rules of pipe_write(), with byte (not page) granularity. */
static ssize_t cfifo_write_iter(struct kiocb *iocb, struct iov_iter *from)
{
	struct cfifo_file *cf = iocb->ki_filp->private_data;
	struct cfifo_dev *d = cf->dev;
	size_t total = iov_iter_count(from);
	bool nonblock = cfifo_nonblock(iocb);
	bool wake_readers = false;
	size_t done = 0;
	ssize_t ret;

	if (!total)
		return 0;

	mutex_lock(&d->lock);
	for (;;) {
		size_t remaining = total - done;
		size_t free = d->cap - d->len;
		bool atomic = total <= cfifo_atomic_max(d);
		size_t chunk, tail, first, n;
		bool was_empty;

		if (!d->readers) {
			send_sig(SIGPIPE, current, 0);
			ret = done ? done : -EPIPE;
			break;
		}
		if (atomic)
			chunk = free >= remaining ? remaining : 0;
		else
			chunk = min(free, remaining);
		if (chunk) {
			was_empty = !d->len;
			tail = cfifo_wrap(d->head + d->len, d->cap);
			first = min(chunk, d->cap - tail);
			n = copy_from_iter(d->buf + tail, first, from);
			if (n == first && chunk > first)
				n += copy_from_iter(d->buf, chunk - first, from);
			d->len += n;
			d->bytes_in += n;
			done += n;
			/* pipe_write(): every write wakes the readers for an EPOLLET reader */
			if (n && (was_empty || READ_ONCE(d->edge_polled)))
				wake_readers = true;
			if (n < chunk) {
				ret = done ? done : -EFAULT;
				break;
			}
			if (done == total) {
				ret = done;
				break;
			}
			continue;
		}
		if (nonblock) {
			ret = done ? done : -EAGAIN;
			break;
		}
		if (signal_pending(current)) {
			ret = done ? done : -ERESTARTSYS;
			break;
		}
		mutex_unlock(&d->lock);
		/* The readers must drain what we wrote before we can go on. */
		if (wake_readers && wq_has_sleeper(&d->rd_wait))
			wake_up_interruptible_all(&d->rd_wait);
		wake_readers = false;
		wait_event_interruptible_exclusive(d->wr_wait,
						   cfifo_writable(d, atomic ? remaining : 1));
		mutex_lock(&d->lock);
	}
	mutex_unlock(&d->lock);

	if (wake_readers && wq_has_sleeper(&d->rd_wait))
		wake_up_interruptible_all(&d->rd_wait);
	if (done)
		atomic64_add(done, &cf->bytes_written);
	return ret;
}

/*
 * The mask of pipe_poll(), like it without the lock: register first, then read the state
 * racily. The barrier pairs with the one in wq_has_sleeper() of the wakers, which change
 * the state before they look for sleepers: a poller either sees the change or is found.
 */
static __poll_t cfifo_poll(struct file *filp, poll_table *wait)
{
	struct cfifo_file *cf = filp->private_data;
	struct cfifo_dev *d = cf->dev;
	size_t len, cap;
	__poll_t mask = 0;

	if (cf->readable) {
		poll_wait(filp, &d->rd_wait, wait);
		if (wait && (wait->_key & EPOLLET) && !READ_ONCE(d->edge_polled))
			WRITE_ONCE(d->edge_polled, true);
	}
	if (cf->writable)
		poll_wait(filp, &d->wr_wait, wait);
	/* Queued before the state is read; pairs with wq_has_sleeper() in the wakers. */
	smp_mb();

	len = READ_ONCE(d->len);
	cap = READ_ONCE(d->cap);
	if (cf->readable) {
		if (len)
			mask |= EPOLLIN | EPOLLRDNORM;
		if (!READ_ONCE(d->writers) &&
		    !(cf->hup_check && cf->hup_after == READ_ONCE(d->w_counter)))
			mask |= EPOLLHUP;
	}
	if (cf->writable) {
		/* len > cap only in a stale pair of reads around SET_CAPACITY */
		if (len <= cap && cap - len >= min_t(size_t, PIPE_BUF, cap))
			mask |= EPOLLOUT | EPOLLWRNORM;
		if (!READ_ONCE(d->readers))
			mask |= EPOLLERR;
	}
	return mask;
}

static long cfifo_set_capacity(struct cfifo_dev *d, __u32 __user *uarg)
{
	__u32 cap;
	u8 *buf, *old;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;
	if (get_user(cap, uarg))
		return -EFAULT;
	if (cap < RFIFO_MIN_CAPACITY || cap > RFIFO_MAX_CAPACITY)
		return -EINVAL;
	buf = kvzalloc(cap, CFIFO_RING_GFP);
	if (!buf)
		return -ENOMEM;

	mutex_lock(&d->lock);
	if (d->len) {
		mutex_unlock(&d->lock);
		kvfree(buf);
		return -EBUSY;
	}
	old = d->buf;
	d->buf = buf;
	d->cap = cap;
	d->head = 0;
	mutex_unlock(&d->lock);

	kvfree(old);
	wake_up_interruptible_all(&d->wr_wait);
	return 0;
}

static long cfifo_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct cfifo_file *cf = filp->private_data;
	struct cfifo_dev *d = cf->dev;
	void __user *uarg = (void __user *)arg;
	struct rfifo_stats st;
	__u32 cap;

	switch (cmd) {
	case RFIFO_IOC_GET_CAPACITY:
		mutex_lock(&d->lock);
		cap = d->cap;
		mutex_unlock(&d->lock);
		return put_user(cap, (__u32 __user *)uarg);

	case RFIFO_IOC_SET_CAPACITY:
		return cfifo_set_capacity(d, uarg);

	case RFIFO_IOC_CLEAR:
		if (!capable(CAP_SYS_ADMIN))
			return -EPERM;
		mutex_lock(&d->lock);
		d->head = 0;
		d->len = 0;
		mutex_unlock(&d->lock);
		wake_up_interruptible_all(&d->wr_wait);
		return 0;

	case RFIFO_IOC_GET_STATS:
		memset(&st, 0, sizeof(st));
		mutex_lock(&d->lock);
		st.bytes_in = d->bytes_in;
		st.bytes_out = d->bytes_out;
		st.fill = d->len;
		st.opens = d->opens;
		st.readers = d->readers;
		st.writers = d->writers;
		mutex_unlock(&d->lock);
		return copy_to_user(uarg, &st, sizeof(st)) ? -EFAULT : 0;

	default:
		return -ENOTTY;
	}
}

static void cfifo_show_fdinfo(struct seq_file *m, struct file *filp)
{
	struct cfifo_file *cf = filp->private_data;

	seq_printf(m, "bytes_read:\t%lld\nbytes_written:\t%lld\n",
		   (long long)atomic64_read(&cf->bytes_read),
		   (long long)atomic64_read(&cf->bytes_written));
}

static const struct file_operations cfifo_fops = {
	.owner		= THIS_MODULE,
	.open		= cfifo_open,
	.release	= cfifo_release,
	.read_iter	= cfifo_read_iter,
	.write_iter	= cfifo_write_iter,
	.poll		= cfifo_poll,
	.unlocked_ioctl	= cfifo_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.show_fdinfo	= cfifo_show_fdinfo,
};

static int __init cfifo_init(void)
{
	unsigned int i, created = 0;
	int ret;

	if (devices < 1 || devices > CFIFO_MAX_DEVICES) {
		pr_err("devices=%u is out of range 1..=%u\n", devices, CFIFO_MAX_DEVICES);
		return -EINVAL;
	}
	if (capacity < RFIFO_MIN_CAPACITY || capacity > RFIFO_MAX_CAPACITY) {
		pr_err("capacity=%u is out of range %u..=%u\n", capacity,
		       RFIFO_MIN_CAPACITY, RFIFO_MAX_CAPACITY);
		return -EINVAL;
	}

	cfifo_devs = kzalloc_objs(*cfifo_devs, devices);
	if (!cfifo_devs)
		return -ENOMEM;
	for (i = 0; i < devices; i++) {
		struct cfifo_dev *d = &cfifo_devs[i];

		mutex_init(&d->lock);
		init_waitqueue_head(&d->rd_wait);
		init_waitqueue_head(&d->wr_wait);
		init_waitqueue_head(&d->open_wait);
		d->cap = capacity;
	}

	ret = alloc_chrdev_region(&cfifo_base, 0, devices, "cfifo");
	if (ret)
		goto err_free;
	ret = class_register(&cfifo_class);
	if (ret)
		goto err_region;
	/* The nodes first: an open of one finds no cdev yet and fails with ENXIO. */
	for (; created < devices; created++) {
		struct device *dev = device_create(&cfifo_class, NULL, cfifo_base + created,
						   NULL, "cfifo%u", created);
		if (IS_ERR(dev)) {
			ret = PTR_ERR(dev);
			goto err_devices;
		}
	}
	/* The last fallible step: the devices become openable only if the init succeeds. */
	cdev_init(&cfifo_cdev, &cfifo_fops);
	cfifo_cdev.owner = THIS_MODULE;
	ret = cdev_add(&cfifo_cdev, cfifo_base, devices);
	if (ret)
		goto err_devices;
	pr_info("%u devices of %u bytes\n", devices, capacity);
	return 0;

err_devices:
	while (created--)
		device_destroy(&cfifo_class, cfifo_base + created);
	class_unregister(&cfifo_class);
err_region:
	unregister_chrdev_region(cfifo_base, devices);
err_free:
	kfree(cfifo_devs);
	return ret;
}

static void __exit cfifo_exit(void)
{
	unsigned int i;

	for (i = 0; i < devices; i++)
		device_destroy(&cfifo_class, cfifo_base + i);
	cdev_del(&cfifo_cdev);
	class_unregister(&cfifo_class);
	unregister_chrdev_region(cfifo_base, devices);
	kfree(cfifo_devs);
}

module_init(cfifo_init);
module_exit(cfifo_exit);

MODULE_AUTHOR("Rust kernel modules workbench");
MODULE_DESCRIPTION("Bounded FIFO devices with named-FIFO semantics (C twin of rfifo)");
MODULE_LICENSE("GPL");
