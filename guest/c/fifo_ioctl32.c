// SPDX-License-Identifier: GPL-2.0
/*
 * fifo_ioctl32: the ioctls of include/uapi/rfifo.h from a 32-bit (i386) process, i.e.
 * through the compat ioctl path of the 64-bit kernel. Built by `cargo xtask build` with
 * `gcc -m32 -static` into the guest's /tests/bin32/ and run by guest/tests/fifo_hardening.rs
 * against /dev/rfifo0 and /dev/cfifo0 of freshly loaded modules.
 *
 * Usage: fifo_ioctl32 DEVICE CAPACITY
 * Prints one line per check; exits 0 if all of them hold, 1 if any does not, 2 on misuse.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "rfifo.h"

_Static_assert(sizeof(void *) == 4, "build with -m32");
_Static_assert(sizeof(struct rfifo_stats) == 40, "one layout on 32 and 64 bits");

static int checks, failures;

static void check(int ok, const char *fmt, ...)
{
	va_list ap;

	checks++;
	if (!ok)
		failures++;
	printf("%s ", ok ? "ok  " : "FAIL");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* An ioctl's result: 0 or -errno. */
static int ioc(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) == 0 ? 0 : -errno;
}

static void stats(int fd, const char *when, __u64 in, __u64 out, __u64 fill)
{
	struct rfifo_stats st;
	int r;

	memset(&st, 0xff, sizeof(st));
	r = ioc(fd, RFIFO_IOC_GET_STATS, &st);
	check(r == 0 && st.bytes_in == in && st.bytes_out == out && st.fill == fill &&
	      st.opens == 1 && st.readers == 1 && st.writers == 1,
	      "GET_STATS %s: ret %d, in/out/fill %llu/%llu/%llu opens %llu r/w %u/%u (want %llu/%llu/%llu 1 1/1)",
	      when, r,
	      (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out,
	      (unsigned long long)st.fill, (unsigned long long)st.opens, st.readers,
	      st.writers, (unsigned long long)in, (unsigned long long)out,
	      (unsigned long long)fill);
}

int main(int argc, char **argv)
{
	__u32 cap = 0, want, v;
	char buf[16];
	int fd, r;

	if (argc != 3) {
		fprintf(stderr, "usage: %s DEVICE CAPACITY\n", argv[0]);
		return 2;
	}
	want = strtoul(argv[2], NULL, 0);
	fd = open(argv[1], O_RDWR | O_NONBLOCK);
	if (fd < 0) {
		printf("FAIL open %s: %s\n", argv[1], strerror(errno));
		return 1;
	}

	r = ioc(fd, RFIFO_IOC_GET_CAPACITY, &cap);
	check(r == 0 && cap == want, "GET_CAPACITY: ret %d, %u (expected 0, %u)", r, cap, want);

	v = 4096;
	r = ioc(fd, RFIFO_IOC_SET_CAPACITY, &v);
	cap = 0;
	ioc(fd, RFIFO_IOC_GET_CAPACITY, &cap);
	check(r == 0 && cap == 4096, "SET_CAPACITY 4096: ret %d, now %u", r, cap);

	check(write(fd, "hello", 5) == 5, "write 5 bytes");
	stats(fd, "after write", 5, 0, 5);
	check(read(fd, buf, 2) == 2 && !memcmp(buf, "he", 2), "read 2 bytes");
	stats(fd, "after read", 5, 2, 3);

	v = 8192;
	r = ioc(fd, RFIFO_IOC_SET_CAPACITY, &v);
	check(r == -EBUSY, "SET_CAPACITY while not empty: ret %d (expected %d)", r, -EBUSY);
	r = ioc(fd, RFIFO_IOC_CLEAR, NULL);
	check(r == 0, "CLEAR: ret %d", r);
	stats(fd, "after CLEAR", 5, 2, 0);

	v = 0;
	r = ioc(fd, RFIFO_IOC_SET_CAPACITY, &v);
	check(r == -EINVAL, "SET_CAPACITY 0: ret %d (expected %d)", r, -EINVAL);
	v = RFIFO_MAX_CAPACITY + 1;
	r = ioc(fd, RFIFO_IOC_SET_CAPACITY, &v);
	check(r == -EINVAL, "SET_CAPACITY max+1: ret %d (expected %d)", r, -EINVAL);

	r = ioc(fd, RFIFO_IOC_GET_STATS, (void *)8);
	check(r == -EFAULT, "GET_STATS to a bad pointer: ret %d (expected %d)", r, -EFAULT);
	r = ioc(fd, RFIFO_IOC_SET_CAPACITY, (void *)8);
	check(r == -EFAULT, "SET_CAPACITY from a bad pointer: ret %d (expected %d)", r, -EFAULT);
	r = ioc(fd, _IO(RFIFO_IOC_MAGIC, 99), NULL);
	check(r == -ENOTTY, "unknown command: ret %d (expected %d)", r, -ENOTTY);

	v = want;
	r = ioc(fd, RFIFO_IOC_SET_CAPACITY, &v);
	check(r == 0, "SET_CAPACITY back to %u: ret %d", want, r);

	close(fd);
	printf("fifo_ioctl32 %s: %d checks, %d failed\n", argv[1], checks, failures);
	return failures ? 1 : 0;
}
