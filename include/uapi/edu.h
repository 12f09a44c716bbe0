/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * rust_edu / cedu: drivers for QEMU's "edu" PCI device (1234:11e8, docs/specs/edu.rst in
 * QEMU), one /dev/eduN (Rust, modules/edu) or /dev/ceduN (C twin, modules-c/cedu) per device.
 *
 * One ABI shared by both drivers and the userspace crate edu-uapi/ (whose host tests check
 * that its numbers and layouts match this file). The structures have one layout on 32- and
 * 64-bit userspace (only __u32/__u64, no padding), so 32-bit programs need no translation.
 *
 * read()/write()/pread()/pwrite() move bytes between the caller and the device's
 * EDU_BUF_SIZE-byte memory by DMA (one transfer per call, about 100 ms each):
 *   - the file offset is the offset in device memory; lseek() is not supported (ESPIPE),
 *     read()/write() use and advance the file position, pread()/pwrite() take the offset;
 *   - a transfer that would cross the end is shortened to end there (short count);
 *     a read at or past the end returns 0 (end of file), a write there fails ENOSPC;
 *   - a zero-length read or write returns 0 without touching the device;
 *   - a bad user buffer fails EFAULT (nothing is transferred to the device for a write).
 * Every call that waits for the device (DMA, FACTORIAL) waits interruptibly: a signal ends
 * the wait with EINTR (or restarts the call, SA_RESTART); after the device was unbound the
 * call fails ENODEV. Callers of one device are served one at a time per engine (one
 * factorial and one DMA transfer may run at the same time).
 */
#ifndef _UAPI_EDU_H
#define _UAPI_EDU_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Unused in Documentation/userspace-api/ioctl/ioctl-number.rst (7.3). */
#define EDU_IOC_MAGIC 0xBB

/*
 * Bytes of device memory reachable through read()/write()/pread()/pwrite(): offsets
 * 0..EDU_BUF_SIZE-1. The device has 4096 bytes (device addresses 0x40000-0x40fff), but its
 * last byte is unreachable: QEMU before 8.2.1 (hw/misc/edu.c, edu_check_range()) checks the
 * end of a transfer with within(end1, start, end2), i.e. "end1 < end2", so a transfer must end
 * strictly below the end of the buffer (addr + size < 0x41000); one that ends exactly there
 * is "out of bounds" and hw_error() aborts the whole VM ("EDU: DMA range 0x40000-0x40fff out
 * of bounds"). Fixed upstream by "edu: fix DMA range upper bound check" (QEMU 8.2.1); Debian
 * 12 ships QEMU 7.2. So both drivers never touch offset 4095: a write there fails ENOSPC, a
 * read there returns 0 (end of file), a transfer across it is shortened to end before it.
 */
#define EDU_BUF_SIZE 4095

/* FACTORIAL timeouts in milliseconds: 0 means the default; above the maximum: EINVAL. */
#define EDU_DEFAULT_TIMEOUT_MS 30000
#define EDU_MAX_TIMEOUT_MS 600000

struct edu_factorial {
	__u32 n;		/* in: the device computes n! modulo 2^32 */
	__u32 timeout_ms;	/* in: 0 = EDU_DEFAULT_TIMEOUT_MS, at most EDU_MAX_TIMEOUT_MS */
	__u32 flags;		/* in: must be 0 (else EINVAL) */
	__u32 result;		/* out */
};

/* Totals since the device was bound to the driver. */
struct edu_stats {
	__u64 interrupts;	/* completion interrupts handled (two in one IRQ count 2) */
	__u64 factorials;	/* factorials the device finished (given-up ones included) */
	__u64 dma_transfers;	/* DMA transfers the device finished (given-up ones included) */
	__u64 dma_bytes;	/* bytes of those transfers */
};

/*
 * Compute n! on the device: waits for an earlier computation the device is still busy with
 * (one whose caller gave up), starts n, sleeps until the completion interrupt and returns
 * the result. The whole call is bounded by timeout_ms: past it, ETIMEDOUT (the device keeps
 * computing; the next caller waits for it). A result is only ever returned to the caller
 * that started the computation.
 */
#define EDU_IOC_FACTORIAL _IOWR(EDU_IOC_MAGIC, 1, struct edu_factorial)
/* Liveness check: the device returns the bitwise inverse of the __u32 passed in. */
#define EDU_IOC_LIVENESS _IOWR(EDU_IOC_MAGIC, 2, __u32)
#define EDU_IOC_GET_STATS _IOR(EDU_IOC_MAGIC, 3, struct edu_stats)

#endif /* _UAPI_EDU_H */
