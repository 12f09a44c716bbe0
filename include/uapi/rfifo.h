/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * rfifo / cfifo: bounded in-kernel FIFO character devices (/dev/rfifoN, /dev/cfifoN).
 *
 * One ABI shared by the Rust module (modules/rfifo/rfifo.rs), its C twin
 * (modules-c/cfifo/cfifo.c) and the userspace crate rfifo-uapi/ (whose host tests check
 * that its numbers and layout match this file).
 *
 * read()/write()/open()/poll() behave like a named FIFO (fifo(7), pipe(7)); the ioctls
 * below are the only additions. All of them work on any open file of the device.
 */
#ifndef _UAPI_RFIFO_H
#define _UAPI_RFIFO_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Unused in Documentation/userspace-api/ioctl/ioctl-number.rst (7.3). */
#define RFIFO_IOC_MAGIC 0xB9

/* Capacity bounds in bytes (the `capacity` module parameter and SET_CAPACITY). */
#define RFIFO_MIN_CAPACITY 1
#define RFIFO_MAX_CAPACITY (16 * 1024 * 1024)

/*
 * Device totals since the module was loaded; fill/readers/writers are current values.
 * The same 40 bytes for 32- and 64-bit programs (no pointers or longs, the __u32s last), so
 * the devices serve 32-bit callers with compat_ptr_ioctl().
 */
struct rfifo_stats {
	__u64 bytes_in;		/* bytes accepted by write() */
	__u64 bytes_out;	/* bytes returned by read() (CLEAR does not count) */
	__u64 fill;		/* bytes in the buffer now */
	__u64 opens;		/* successful open() calls */
	__u32 readers;		/* open files with read access now (O_RDWR counts) */
	__u32 writers;		/* open files with write access now (O_RDWR counts) */
};

/* Buffer size in bytes. */
#define RFIFO_IOC_GET_CAPACITY _IOR(RFIFO_IOC_MAGIC, 1, __u32)
/*
 * Resize the buffer (RFIFO_MIN_CAPACITY..=RFIFO_MAX_CAPACITY, else EINVAL); only while it
 * is empty (else EBUSY); needs CAP_SYS_ADMIN (else EPERM). Lasts until the module is
 * unloaded.
 */
#define RFIFO_IOC_SET_CAPACITY _IOW(RFIFO_IOC_MAGIC, 2, __u32)
/* Discard the buffered bytes; needs CAP_SYS_ADMIN (else EPERM). */
#define RFIFO_IOC_CLEAR _IO(RFIFO_IOC_MAGIC, 3)
#define RFIFO_IOC_GET_STATS _IOR(RFIFO_IOC_MAGIC, 4, struct rfifo_stats)

#endif /* _UAPI_RFIFO_H */
