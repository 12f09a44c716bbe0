//! Differential tests of the FIFO devices: every case runs against the kernel's own named
//! FIFO (a `mkfifo` node in /tmp, the reference), `/dev/rfifo0` (Rust, modules/rfifo) and
//! `/dev/cfifo0` (C twin, modules-c/cfifo), and asserts that all three give the expected
//! outcome. The modules are loaded fresh (default parameters: capacity 65536, like a FIFO)
//! for each test.
//!
//! The FIFO keeps data in pages and the devices in a byte ring, so the cases keep reads and
//! writes page-aligned where the difference would show (e.g. a FIFO can have fewer free
//! bytes than `capacity - fill`).

use guest::fifo::*;
use guest::kmod::Loaded;
use guest::sys::errno::*;
use guest::{sys, Errno};
use std::fmt::Debug;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// The three FIFOs under test; modules unloaded and the node removed on drop.
struct Env {
    fifo: String,
    _rfifo: Loaded,
    _cfifo: Loaded,
}

impl Env {
    fn new() -> Env {
        let rfifo = Loaded::new("rfifo", "").expect("load rfifo");
        let cfifo = Loaded::new("cfifo", "").expect("load cfifo");
        let fifo = format!("/tmp/fifo_semantics.{}", std::process::id());
        let _ = std::fs::remove_file(&fifo);
        let c = std::ffi::CString::new(fifo.clone()).unwrap();
        // SAFETY: valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        Env {
            fifo,
            _rfifo: rfifo,
            _cfifo: cfifo,
        }
    }

    fn targets(&self) -> [(&'static str, String); 3] {
        [
            ("fifo", self.fifo.clone()),
            ("rfifo", "/dev/rfifo0".to_string()),
            ("cfifo", "/dev/cfifo0".to_string()),
        ]
    }

    /// Run `case` on each target and assert every outcome equals `expected`.
    fn check<T: Debug + PartialEq>(&self, expected: T, case: impl Fn(&str) -> T) {
        let got: Vec<(&str, T)> = self
            .targets()
            .into_iter()
            .map(|(name, path)| (name, case(&path)))
            .collect();
        if got.iter().any(|(_, g)| *g != expected) {
            let mut msg = format!("expected: {expected:?}\n");
            for (name, g) in &got {
                let mark = if *g == expected { "ok  " } else { "DIFF" };
                msg += &format!("{mark} {name:5}: {g:?}\n");
            }
            panic!("outcomes differ:\n{msg}");
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.fifo);
    }
}

fn raw(fd: &OwnedFd) -> i32 {
    fd.as_raw_fd()
}

#[test]
fn read_open_blocks_until_a_writer_opens() {
    Env::new().check((true, true, true), |path| {
        let p = path.to_string();
        let reader = spawn(move || open(&p, O_RDONLY));
        let blocked = reader.blocked_in(libc::SYS_openat);
        let w = open_bounded(path, O_WRONLY);
        let r = reader.join();
        (blocked, w.is_ok(), r.is_ok())
    });
}

#[test]
fn write_open_blocks_until_a_reader_opens() {
    Env::new().check((true, true, true), |path| {
        let p = path.to_string();
        let writer = spawn(move || open(&p, O_WRONLY));
        let blocked = writer.blocked_in(libc::SYS_openat);
        let r = open_bounded(path, O_RDONLY);
        let w = writer.join();
        (blocked, r.is_ok(), w.is_ok())
    });
}

#[test]
fn rdwr_open_never_blocks_and_talks_to_itself() {
    Env::new().check((Ok(3), Ok(b"abc".to_vec()), Err(EAGAIN)), |path| {
        let fd = open_bounded(path, O_RDWR).expect("O_RDWR open");
        let w = write(raw(&fd), b"abc");
        let r = read(raw(&fd), 100);
        set_nonblock(raw(&fd), true);
        (w, r, read(raw(&fd), 100))
    });
}

/// Access mode 3 (`O_WRONLY | O_RDWR`: both permissions checked, the file neither readable
/// nor writable): the kernel's FIFO refuses it with EINVAL, and so do both twins.
#[test]
fn open_with_access_mode_3_is_einval() {
    Env::new().check(Some(EINVAL), |path| open_bounded(path, 3).err());
}

#[test]
fn nonblocking_write_open_without_reader_is_enxio() {
    Env::new().check(Some(ENXIO), |path| {
        open_bounded(path, O_WRONLY | O_NONBLOCK).err()
    });
}

#[test]
fn nonblocking_read_open_succeeds_and_reads_eof_without_writer() {
    // A reader that never saw a writer reads EOF (Linux) and poll shows no POLLHUP yet;
    // with a writer an empty read is EAGAIN; after the writer left: EOF and POLLHUP.
    Env::new().check(
        (Ok(vec![]), vec![], Err(EAGAIN), Ok(vec![]), vec!["HUP"]),
        |path| {
            let r = open_bounded(path, O_RDONLY | O_NONBLOCK).expect("nonblocking read open");
            let eof = read(raw(&r), 10);
            let before = poll_names(poll(raw(&r), libc::POLLIN, 0).unwrap());
            let w = open_bounded(path, O_WRONLY | O_NONBLOCK).expect("write open");
            let empty = read(raw(&r), 10);
            drop(w);
            let after_eof = read(raw(&r), 10);
            let after = poll_names(poll(raw(&r), libc::POLLIN, 0).unwrap());
            (eof, before, empty, after_eof, after)
        },
    );
}

#[test]
fn read_returns_what_is_there_then_eof_after_last_writer() {
    Env::new().check(
        (Ok(b"hello".to_vec()), Ok(b" world".to_vec()), Ok(vec![])),
        |path| {
            let (r, w) = pair(path, false);
            write(raw(&w), b"hello").unwrap();
            let a = read(raw(&r), 100);
            write(raw(&w), b" world").unwrap();
            drop(w);
            let b = read(raw(&r), 100);
            let fd = raw(&r);
            let eof = bounded(move || read(fd, 100));
            (a, b, eof)
        },
    );
}

#[test]
fn blocked_read_wakes_for_data_and_for_the_last_writer_leaving() {
    Env::new().check((true, Ok(b"x".to_vec()), true, Ok(vec![])), |path| {
        let (r, w) = pair(path, false);
        let fd = raw(&r);
        let t = spawn(move || read(fd, 100));
        let blocked = t.blocked_in(libc::SYS_read);
        write(raw(&w), b"x").unwrap();
        let data = t.join();
        let t = spawn(move || read(fd, 100));
        let blocked2 = t.blocked_in(libc::SYS_read);
        drop(w);
        (blocked, data, blocked2, t.join())
    });
}

#[test]
fn write_without_reader_is_epipe_and_raises_sigpipe() {
    Env::new().check((Err(EPIPE), true, Ok(0)), |path| {
        let (r, w) = pair(path, false);
        drop(r);
        let (res, sigpipe) = catching_sigpipe(|| write(raw(&w), b"data"));
        // A zero-length write succeeds before the reader check (pipe_write()).
        (res, sigpipe, write(raw(&w), b""))
    });
}

#[test]
fn blocked_writer_gets_epipe_when_the_last_reader_leaves() {
    Env::new().check((Ok(CAPACITY), true, (Err(EPIPE), true)), |path| {
        let (r, w) = pair(path, false);
        let filled = fill(&w, CAPACITY);
        let fd = raw(&w);
        let t = spawn(move || catching_sigpipe(|| write(fd, b"0123456789")));
        let blocked = t.blocked_in(libc::SYS_write);
        drop(r);
        (filled, blocked, t.join())
    });
}

#[test]
fn nonblocking_read_of_empty_fifo_with_writer_is_eagain() {
    Env::new().check((Err(EAGAIN), Ok(b"z".to_vec())), |path| {
        let (r, w) = pair(path, true);
        let empty = read(raw(&r), 10);
        write(raw(&w), b"z").unwrap();
        (empty, read(raw(&r), 10))
    });
}

#[test]
fn nonblocking_writes_follow_the_pipe_buf_rules() {
    // pipe(7): n <= PIPE_BUF is all or EAGAIN; n > PIPE_BUF writes what fits, EAGAIN if
    // nothing fits.
    Env::new().check(
        vec![
            Ok(CAPACITY), // 100000 into empty: partial, the capacity
            Err(EAGAIN),  // full: 1 byte
            Err(EAGAIN),  // full: 5000 bytes
            Ok(PIPE_BUF), // after reading one page: 10000 -> partial 4096
            Ok(61441),    // emptied, then 61441
            Err(EAGAIN),  // 4095 free: a 4096-byte write is atomic -> EAGAIN
            Ok(4095),     // but 4095 fit
            Ok(CAPACITY), // the content read back in one go
        ],
        |path| {
            let (r, w) = pair(path, true);
            let (r, w) = (raw(&r), raw(&w));
            let mut out = vec![write(w, &pattern(0, 100_000))];
            out.push(write(w, b"1"));
            out.push(write(w, &[0; 5000]));
            read(r, PIPE_BUF).unwrap();
            out.push(write(w, &[0; 10_000]));
            read_exact(r, CAPACITY).unwrap();
            out.push(write(w, &pattern(0, 61441)));
            out.push(write(w, &[0; PIPE_BUF]));
            out.push(write(w, &pattern(61441, 4095)));
            out.push(read(r, 2 * CAPACITY).map(|b| {
                assert_eq!(b, pattern(0, CAPACITY));
                b.len()
            }));
            out
        },
    );
}

#[test]
fn blocking_write_waits_for_room_then_completes() {
    Env::new().check((Ok(CAPACITY), true, Ok(5000), true), |path| {
        let (r, w) = pair(path, false);
        let filled = fill(&w, CAPACITY);
        let fd = raw(&w);
        let t = spawn(move || write(fd, &pattern(CAPACITY, 5000)));
        let blocked = t.blocked_in(libc::SYS_write);
        read_exact(raw(&r), 2 * PIPE_BUF).unwrap();
        let done = t.join();
        let rest = read_exact(raw(&r), CAPACITY - 2 * PIPE_BUF + 5000).unwrap();
        (
            filled,
            blocked,
            done,
            rest == pattern(2 * PIPE_BUF, rest.len()),
        )
    });
}

/// `writers` threads each write `records` records of `size` bytes (<= PIPE_BUF, so atomic)
/// while one thread reads everything; every record must come out whole and in per-writer
/// order. Returns the records seen per writer, or the first problem.
fn concurrent_writers(
    path: &str,
    writers: u8,
    records: u32,
    size: usize,
) -> Result<Vec<u32>, String> {
    let r = open(path, O_RDONLY | O_NONBLOCK).expect("read open");
    let ws: Vec<OwnedFd> = (0..writers)
        .map(|_| open_bounded(path, O_WRONLY).expect("write open"))
        .collect();
    set_nonblock(raw(&r), false);
    let fd = raw(&r);
    let reader = spawn(move || read_to_eof(fd, 3 * CAPACITY / 2));
    let threads: Vec<_> = ws
        .into_iter()
        .enumerate()
        .map(|(id, w)| {
            spawn(move || {
                for seq in 0..records {
                    let mut rec = vec![id as u8 + 1; size];
                    rec[1..5].copy_from_slice(&seq.to_le_bytes());
                    match write(raw(&w), &rec) {
                        Ok(n) if n == size => {}
                        other => return Err(format!("writer {id} record {seq}: {other:?}")),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()?;
    }
    let data = reader.join().map_err(|e| format!("reader: {e:?}"))?;
    if data.len() != writers as usize * records as usize * size {
        return Err(format!("read {} bytes", data.len()));
    }
    let mut next = vec![0u32; writers as usize];
    for (i, rec) in data.chunks(size).enumerate() {
        let id = rec[0] as usize;
        if id == 0 || id > writers as usize {
            return Err(format!("record {i}: bad writer id {id}"));
        }
        let seq = u32::from_le_bytes(rec[1..5].try_into().unwrap());
        if seq != next[id - 1] {
            return Err(format!(
                "record {i}: writer {id} seq {seq}, expected {}",
                next[id - 1]
            ));
        }
        if rec[5..].iter().any(|&b| b as usize != id) {
            return Err(format!(
                "record {i} of writer {id} is interleaved with another"
            ));
        }
        next[id - 1] += 1;
    }
    Ok(next)
}

#[test]
fn pipe_buf_writes_are_atomic_with_concurrent_writers() {
    let env = Env::new();
    env.check(Ok(vec![200; 4]), |path| {
        concurrent_writers(path, 4, 200, PIPE_BUF)
    });
    // Records that do not divide the ring: they wrap around its end.
    env.check(Ok(vec![300; 4]), |path| {
        concurrent_writers(path, 4, 300, 1000)
    });
}

#[test]
fn stream_of_odd_sizes_arrives_intact() {
    const TOTAL: usize = 1 << 20;
    Env::new().check(Ok::<usize, Errno>(TOTAL), |path| {
        let (r, w) = pair(path, false);
        let fd = raw(&r);
        let reader = spawn(move || {
            let sizes = [1, 100, 5000, 65536, 100_000, 4095];
            let mut got = Vec::new();
            for i in 0.. {
                let b = read(fd, sizes[i % sizes.len()])?;
                if b.is_empty() {
                    break;
                }
                got.extend_from_slice(&b);
            }
            Ok::<_, Errno>(got)
        });
        let sizes = [1, 4095, 4096, 4097, 10_000, 65536, 70_000, 333];
        let mut off = 0;
        let mut i = 0;
        while off < TOTAL {
            let n = sizes[i % sizes.len()].min(TOTAL - off);
            let done = write(raw(&w), &pattern(off, n)).unwrap();
            assert_eq!(done, n, "blocking write is complete");
            off += n;
            i += 1;
        }
        drop(w);
        let got = reader.join()?;
        assert!(got == pattern(0, TOTAL), "{path}: the stream is corrupted");
        Ok(got.len())
    });
}

#[test]
fn signal_interrupts_a_blocked_read_without_losing_data() {
    Env::new().check((true, Err(EINTR), Ok(b"abc".to_vec())), |path| {
        let (r, w) = pair(path, false);
        let fd = raw(&r);
        let t = spawn(move || read(fd, 100));
        let blocked = t.blocked_in(libc::SYS_read);
        t.interrupt();
        let res = t.join();
        write(raw(&w), b"abc").unwrap();
        (blocked, res, read(raw(&r), 100))
    });
}

#[test]
fn sa_restart_signal_restarts_a_blocked_read() {
    Env::new().check((true, true, true, Ok(b"xyz".to_vec())), |path| {
        let (r, w) = pair(path, false);
        let fd = raw(&r);
        let t = spawn(move || read(fd, 100));
        let blocked = t.blocked_in(libc::SYS_read);
        let before = USR2_COUNT.load(Ordering::SeqCst);
        t.signal(libc::SIGUSR2);
        let start = std::time::Instant::now();
        while USR2_COUNT.load(Ordering::SeqCst) == before && start.elapsed() < BLOCK_TIMEOUT {
            std::thread::sleep(Duration::from_millis(5));
        }
        let handled = USR2_COUNT.load(Ordering::SeqCst) > before;
        let still = t.blocked_in(libc::SYS_read);
        write(raw(&w), b"xyz").unwrap();
        (blocked, handled, still, t.join())
    });
}

#[test]
fn signal_interrupts_a_blocked_write_with_a_partial_count() {
    // A large write blocks when full: the signal returns what was written, nothing else.
    Env::new().check((true, Ok(CAPACITY), true, Err(EAGAIN)), |path| {
        let (r, w) = pair(path, false);
        let fd = raw(&w);
        let t = spawn(move || write(fd, &pattern(0, 100_000)));
        let blocked = t.blocked_in(libc::SYS_write);
        t.interrupt();
        let res = t.join();
        let got = read_exact(raw(&r), CAPACITY).unwrap();
        set_nonblock(raw(&r), true);
        (
            blocked,
            res,
            got == pattern(0, CAPACITY),
            read(raw(&r), 10).map(|b| b.len()),
        )
    });
}

#[test]
fn signal_interrupts_a_blocked_atomic_write_which_writes_nothing() {
    Env::new().check(
        (Ok(CAPACITY), true, Err(EINTR), true, Err(EAGAIN)),
        |path| {
            let (r, w) = pair(path, false);
            let filled = fill(&w, CAPACITY);
            let fd = raw(&w);
            let t = spawn(move || write(fd, &[0xee; 100]));
            let blocked = t.blocked_in(libc::SYS_write);
            t.interrupt();
            let res = t.join();
            let got = read_exact(raw(&r), CAPACITY).unwrap();
            set_nonblock(raw(&r), true);
            (
                filled,
                blocked,
                res,
                got == pattern(0, CAPACITY),
                read(raw(&r), 10).map(|b| b.len()),
            )
        },
    );
}

#[test]
fn signal_interrupts_a_blocked_open_and_undoes_it() {
    // After the interrupted read open there is no reader: a non-blocking write open fails.
    Env::new().check((true, Some(EINTR), Some(ENXIO)), |path| {
        let p = path.to_string();
        let t = spawn(move || open(&p, O_RDONLY));
        let blocked = t.blocked_in(libc::SYS_openat);
        t.interrupt();
        let res = t.join().err();
        (
            blocked,
            res,
            open_bounded(path, O_WRONLY | O_NONBLOCK).err(),
        )
    });
}

#[test]
fn sa_restart_signal_restarts_a_blocked_open() {
    Env::new().check((true, true, true), |path| {
        let p = path.to_string();
        let t = spawn(move || open(&p, O_WRONLY));
        let blocked = t.blocked_in(libc::SYS_openat);
        t.signal(libc::SIGUSR2);
        std::thread::sleep(Duration::from_millis(100));
        let still = t.blocked_in(libc::SYS_openat);
        let _r = open_bounded(path, O_RDONLY).unwrap();
        (blocked, still, t.join().is_ok())
    });
}

#[test]
fn lseek_pread_pwrite_fail_espipe() {
    Env::new().check((ESPIPE, ESPIPE, ESPIPE), |path| {
        let fd = open_bounded(path, O_RDWR).unwrap();
        (
            sys::lseek(raw(&fd), 0, libc::SEEK_CUR).unwrap_err(),
            sys::pread(raw(&fd), 4, 0).unwrap_err(),
            sys::pwrite(raw(&fd), &[0u8; 4], 0).unwrap_err(),
        )
    });
}

#[test]
fn data_lives_while_a_file_is_open_and_dies_with_the_last() {
    Env::new().check((Ok(b"kept".to_vec()), Err(EAGAIN)), |path| {
        let a = open_bounded(path, O_RDWR).unwrap();
        write(raw(&a), b"kept").unwrap();
        let b = open_bounded(path, O_RDWR | O_NONBLOCK).unwrap();
        drop(a);
        let kept = read(raw(&b), 100);
        write(raw(&b), b"lost").unwrap();
        drop(b);
        let c = open_bounded(path, O_RDWR | O_NONBLOCK).unwrap();
        (kept, read(raw(&c), 100))
    });
}

#[test]
fn zero_length_read_and_write_return_zero_at_once() {
    Env::new().check((Ok(vec![]), Ok(0)), |path| {
        let (r, w) = pair(path, false);
        let fd = raw(&r);
        let rd = bounded(move || read(fd, 0));
        (rd, write(raw(&w), b""))
    });
}

#[test]
fn bad_user_buffer_is_efault_and_loses_nothing() {
    Env::new().check((EFAULT, EFAULT, Ok(b"safe".to_vec())), |path| {
        let (r, w) = pair(path, true);
        let we = sys::write_from_addr(raw(&w), 8, 10).unwrap_err();
        write(raw(&w), b"safe").unwrap();
        // SAFETY: address 8 is never mapped: the kernel must reject it.
        let re = unsafe { sys::read_to_addr(raw(&r), 8, 10) }.unwrap_err();
        (we, re, read(raw(&r), 100))
    });
}

#[test]
fn poll_reports_fifo_readiness() {
    use libc::{POLLIN, POLLOUT, POLLRDNORM, POLLWRNORM};
    let ev = POLLIN | POLLOUT | POLLRDNORM | POLLWRNORM;
    Env::new().check(
        vec![
            vec!["OUT", "WRNORM"],       // writer, empty
            vec![],                      // reader, empty
            vec!["IN", "RDNORM"],        // reader after 10 bytes
            vec![],                      // writer, full
            vec!["OUT", "WRNORM"],       // writer, one page free
            vec!["IN", "RDNORM", "HUP"], // reader after the writer left
        ],
        |path| {
            let (rf, wf) = pair(path, true);
            let (r, w) = (raw(&rf), raw(&wf));
            let mut out = vec![poll_names(poll(w, ev, 0).unwrap())];
            out.push(poll_names(poll(r, ev, 0).unwrap()));
            write(w, &[1; 10]).unwrap();
            out.push(poll_names(poll(r, ev, 0).unwrap()));
            write(w, &[2; CAPACITY - 10]).unwrap();
            out.push(poll_names(poll(w, ev, 0).unwrap()));
            read(r, PIPE_BUF).unwrap();
            out.push(poll_names(poll(w, ev, 0).unwrap()));
            drop(wf);
            out.push(poll_names(poll(r, ev, 0).unwrap()));
            out
        },
    );
}

#[test]
fn poll_reports_err_on_a_writer_without_readers() {
    Env::new().check(vec!["OUT", "WRNORM", "ERR"], |path| {
        let (r, w) = pair(path, true);
        drop(r);
        poll_names(poll(raw(&w), libc::POLLOUT | libc::POLLWRNORM, 0).unwrap())
    });
}

#[test]
fn blocking_poll_wakes_on_data_and_on_room() {
    Env::new().check((true, vec!["IN"], true, vec!["OUT"]), |path| {
        let (r, w) = pair(path, true);
        let fd = raw(&r);
        let t = spawn(move || poll(fd, libc::POLLIN, 20_000));
        let b1 = t.blocked_in_any(&[libc::SYS_poll, libc::SYS_ppoll]);
        write(raw(&w), b"!").unwrap();
        let p1 = poll_names(t.join().unwrap());
        read(raw(&r), 10).unwrap();
        fill(&w, CAPACITY).unwrap();
        let fd = raw(&w);
        let t = spawn(move || poll(fd, libc::POLLOUT, 20_000));
        let b2 = t.blocked_in_any(&[libc::SYS_poll, libc::SYS_ppoll]);
        read(raw(&r), PIPE_BUF).unwrap();
        (b1, p1, b2, poll_names(t.join().unwrap()))
    });
}

/// `epoll_wait()` of `ep` for one event, up to `ms` milliseconds: the number of events.
fn epoll_wait_one(ep: &OwnedFd, ms: i32) -> i32 {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: one valid event slot.
    unsafe { libc::epoll_wait(raw(ep), &mut ev, 1, ms) }
}

#[test]
fn epoll_edge_triggered_reader_gets_an_event_per_write() {
    // fs/pipe.c: an EPOLLET reader makes every write wake the readers, so a reader that
    // does not drain still sees one event per write ("pipe: make pipe writes always wake
    // up readers"); without it the second write would give no event.
    Env::new().check((1, 1, 1, Ok(b"abc".to_vec())), |path| {
        let (r, w) = pair(path, true);
        // SAFETY: plain syscalls; the results are checked.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(ep >= 0, "epoll_create1: {:?}", Errno::last());
        // SAFETY: `ep` was just returned by epoll_create1 and is owned by nobody else.
        let ep = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(ep) };
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: valid fds and event.
        let added = unsafe { libc::epoll_ctl(raw(&ep), libc::EPOLL_CTL_ADD, raw(&r), &mut ev) };
        assert_eq!(added, 0, "epoll_ctl: {:?}", Errno::last());
        let mut events = Vec::new();
        for b in [b"a", b"b", b"c"] {
            write(raw(&w), b).unwrap();
            events.push(epoll_wait_one(&ep, 1000));
        }
        (events[0], events[1], events[2], read(raw(&r), 10))
    });
}
