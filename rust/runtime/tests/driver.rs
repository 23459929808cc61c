//! The driver's contract, on real descriptors, with both backends: each test below is run
//! once with io_uring and once with epoll (`on_both_backends!` at the end).

use std::io::Write as _;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use polyphony_runtime::op::{Accept, PollAdd, Read, Write};
use polyphony_runtime::{Driver, Kind, OpId};

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: pipe2 succeeded, so both descriptors are new and ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn wait_for(driver: &mut Driver, id: OpId) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while driver.completion(id).is_none() {
        assert!(Instant::now() < deadline, "op never completed");
        driver
            .wait(Some(Duration::from_millis(100)), |_| {})
            .unwrap();
    }
}

fn read_and_write_hand_their_buffers_back(kind: Kind) {
    let mut driver = Driver::with_kind(kind, 64).unwrap();
    let (r, w) = pipe();
    let write = driver
        .submit(Write::new(w.as_raw_fd(), b"hello".to_vec(), u64::MAX))
        .unwrap();
    let read = driver
        .submit(Read::new(r.as_raw_fd(), Vec::with_capacity(16), u64::MAX))
        .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        driver
            .wait(Some(Duration::from_secs(1)), |id| seen.push(id))
            .unwrap();
    }
    let (n, buf) = driver.take::<Write>(write).unwrap();
    assert_eq!((n.unwrap(), &buf[..]), (5, &b"hello"[..]));
    let (n, buf) = driver.take::<Read>(read).unwrap();
    assert_eq!((n.unwrap(), &buf[..]), (5, &b"hello"[..]));
    // Taken once: the id is stale now.
    assert!(driver.take::<Read>(read).is_none());
    assert!(driver.is_empty());
}

fn take_refuses_the_wrong_type_and_incomplete_ops(kind: Kind) {
    let mut driver = Driver::with_kind(kind, 8).unwrap();
    let (r, _w) = pipe();
    let read = driver
        .submit(Read::new(r.as_raw_fd(), Vec::with_capacity(4), u64::MAX))
        .unwrap();
    driver.wait(Some(Duration::ZERO), |_| {}).unwrap();
    assert!(
        driver.take::<Read>(read).is_none(),
        "nothing was written yet"
    );
    assert!(driver.take::<Write>(read).is_none());
    driver.cancel(read).unwrap();
}

/// 1. A read is parked on an empty pipe; the kernel holds its buffer (io_uring).
/// 2. The owner cancels it: the buffer must stay alive until the kernel's completion arrives.
/// 3. Only after the driver reaps that completion does the op (and its buffer) go away.
fn cancelled_ops_keep_their_buffers_until_the_kernel_lets_go(kind: Kind) {
    struct Tracked(Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    struct TrackedRead(Read, #[allow(dead_code)] Tracked);
    impl polyphony_runtime::op::Op for TrackedRead {
        type Output = ();
        fn entry(&mut self) -> io_uring::squeue::Entry {
            self.0.entry()
        }
        fn attempt(&mut self) -> polyphony_runtime::op::Attempt {
            self.0.attempt()
        }
        fn complete(self, _: polyphony_runtime::Completion) {}
    }

    let drops = Arc::new(AtomicUsize::new(0));
    let mut driver = Driver::with_kind(kind, 8).unwrap();
    let (r, _w) = pipe();
    let op = TrackedRead(
        Read::new(r.as_raw_fd(), Vec::with_capacity(4096), u64::MAX),
        Tracked(drops.clone()),
    );
    let id = driver.submit(op).unwrap();
    driver.wait(Some(Duration::ZERO), |_| {}).unwrap();
    driver.cancel(id).unwrap();
    if kind == Kind::Epoll {
        // epoll: the kernel never holds an op's buffer, so it is released at once.
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        assert!(driver.is_empty());
        return;
    }
    assert_eq!(
        drops.load(Ordering::SeqCst),
        0,
        "freed before the kernel let go"
    );
    assert_eq!(driver.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !driver.is_empty() {
        assert!(Instant::now() < deadline);
        let mut reported = false;
        driver
            .wait(Some(Duration::from_millis(50)), |_| reported = true)
            .unwrap();
        assert!(
            !reported,
            "a cancelled op must not be reported to its former owner"
        );
    }
    assert_eq!(drops.load(Ordering::SeqCst), 1);
}

fn descriptors_from_cancelled_accepts_are_closed(kind: Kind) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut driver = Driver::with_kind(kind, 8).unwrap();
    let id = driver.submit(Accept::new(listener.as_raw_fd())).unwrap();
    driver.wait(Some(Duration::ZERO), |_| {}).unwrap();
    let mut client = std::net::TcpStream::connect(addr).unwrap();
    // The accept completes in the kernel; its owner gives up before taking the descriptor.
    wait_for(&mut driver, id);
    driver.cancel(id).unwrap();
    // The server side was closed, not leaked: the client reads end-of-file.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(std::io::Read::read(&mut client, &mut buf).unwrap(), 0);
}

fn timeouts_and_wakers_end_a_wait(kind: Kind) {
    let mut driver = Driver::with_kind(kind, 8).unwrap();
    let started = Instant::now();
    driver
        .wait(Some(Duration::from_millis(50)), |_| {})
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(45),
        "returned early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(2));

    let waker = driver.waker();
    let started = Instant::now();
    let thread = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        waker.wake();
    });
    driver.wait(None, |_| {}).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    thread.join().unwrap();
    // The wake-up was consumed: the next wait blocks until its timeout again.
    let started = Instant::now();
    driver
        .wait(Some(Duration::from_millis(30)), |_| {})
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(25));
}

fn dropping_a_driver_with_ops_in_flight_is_safe(kind: Kind) {
    let (a, _b) = UnixStream::pair().unwrap();
    let mut driver = Driver::with_kind(kind, 8).unwrap();
    for _ in 0..16 {
        driver
            .submit(Read::new(
                a.as_raw_fd(),
                Vec::with_capacity(1 << 16),
                u64::MAX,
            ))
            .unwrap();
    }
    driver.wait(Some(Duration::ZERO), |_| {}).unwrap();
    drop(driver);
    let mut a = a;
    a.write_all(b"still usable").unwrap();
}

fn submissions_beyond_the_ring_size_are_queued(kind: Kind) {
    let mut driver = Driver::with_kind(kind, 4).unwrap();
    let (r, w) = pipe();
    let mut ids = Vec::new();
    for i in 0..40u8 {
        ids.push(
            driver
                .submit(Write::new(w.as_raw_fd(), vec![i], u64::MAX))
                .unwrap(),
        );
    }
    for id in &ids {
        wait_for(&mut driver, *id);
        assert_eq!(driver.take::<Write>(*id).unwrap().0.unwrap(), 1);
    }
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is a valid writable buffer of its length.
    let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(n, 40);
    assert_eq!(&buf[..40], &(0..40u8).collect::<Vec<_>>()[..]);
}

fn poll_reports_readiness_once_data_arrives(kind: Kind) {
    let mut driver = Driver::with_kind(kind, 8).unwrap();
    let (r, w) = pipe();
    let id = driver
        .submit(PollAdd::new(r.as_raw_fd(), libc::POLLIN as u32))
        .unwrap();
    driver
        .wait(Some(Duration::from_millis(20)), |_| {})
        .unwrap();
    assert!(
        driver.completion(id).is_none(),
        "an empty pipe is not readable"
    );
    // SAFETY: writing one byte from a valid buffer to our pipe.
    let written = unsafe { libc::write(w.as_raw_fd(), b"x".as_ptr().cast(), 1) };
    assert_eq!(written, 1);
    wait_for(&mut driver, id);
    let events = driver.take::<PollAdd>(id).unwrap().unwrap();
    assert_ne!(events & libc::POLLIN as u32, 0);
}

/// A completion that arrives while the thread makes no system call (a fiber busy in Ruby code)
/// is seen by the next non-blocking wait. With io_uring's cooperative task running, the kernel
/// finishes such a read only when the thread enters it (or an interrupt happens to come by,
/// hence several rounds); the wait must notice and enter.
fn a_busy_thread_sees_completions_without_blocking(kind: Kind) {
    const ROUNDS: usize = 20;
    // On one CPU each, if there are two: a writer woken on ours would preempt us, and that
    // trip through the kernel would finish the read before the wait has to.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pin = move |cpu: usize| {
        if cpus >= 2 {
            // SAFETY: a zeroed cpu_set_t is an empty set, CPU_SET writes inside it (cpu < 2),
            // and sched_setaffinity reads that many bytes of it; 0 is the calling thread.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
            }
        }
    };
    pin(0);
    let mut driver = Driver::with_kind(kind, 8).unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    // The writer sleeps in a read until asked (a byte on `ask`), sends, then counts in `sent`.
    let (asked, ask) = pipe();
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = {
        let sent = Arc::clone(&sent);
        std::thread::spawn(move || {
            pin(1);
            let mut asked = std::fs::File::from(asked);
            for round in 1..=ROUNDS {
                std::io::Read::read_exact(&mut asked, &mut [0]).unwrap();
                (&theirs).write_all(b"ping").unwrap();
                sent.store(round, Ordering::Release);
            }
        })
    };
    let mut ask = std::fs::File::from(ask);
    for round in 1..=ROUNDS {
        let read = driver
            .submit(Read::new(ours.as_raw_fd(), Vec::with_capacity(8), u64::MAX))
            .unwrap();
        driver.wait(Some(Duration::ZERO), |_| {}).unwrap();
        assert!(driver.completion(read).is_none(), "nothing was sent yet");
        ask.write_all(b"!").unwrap();
        // Spin, making no system call, until the bytes are in the socket.
        while sent.load(Ordering::Acquire) < round {
            std::hint::spin_loop();
        }
        let mut seen = Vec::new();
        driver
            .wait(Some(Duration::ZERO), |id| seen.push(id))
            .unwrap();
        assert_eq!(seen, [read], "round {round}");
        let (n, buf) = driver.take::<Read>(read).unwrap();
        assert_eq!((n.unwrap(), &buf[..]), (4, &b"ping"[..]));
    }
    writer.join().unwrap();
}

/// An interrupted read that is still waiting ends with ECANCELED and is reported; one whose
/// bytes came first keeps them: interrupting loses nothing.
fn interrupted_reads_end_early_and_lose_nothing(kind: Kind) {
    let mut driver = Driver::with_kind(kind, 8).unwrap();
    let (r, w) = pipe();
    let read = driver
        .submit(Read::new(r.as_raw_fd(), Vec::with_capacity(16), u64::MAX))
        .unwrap();
    driver.wait(Some(Duration::ZERO), |_| {}).unwrap();
    driver.interrupt(read).unwrap();
    wait_for(&mut driver, read);
    let (n, _) = driver.take::<Read>(read).unwrap();
    assert_eq!(n.unwrap_err().raw_os_error(), Some(libc::ECANCELED));

    let read = driver
        .submit(Read::new(r.as_raw_fd(), Vec::with_capacity(16), u64::MAX))
        .unwrap();
    (&std::fs::File::from(w.try_clone().unwrap()))
        .write_all(b"kept")
        .unwrap();
    wait_for(&mut driver, read);
    driver.interrupt(read).unwrap(); // (done: left as it is)
    let (n, buf) = driver.take::<Read>(read).unwrap();
    assert_eq!((n.unwrap(), &buf[..]), (4, &b"kept"[..]));

    // Not yet tried (epoll) or just submitted (io_uring): ends the same way.
    let read = driver
        .submit(Read::new(r.as_raw_fd(), Vec::with_capacity(16), u64::MAX))
        .unwrap();
    driver.interrupt(read).unwrap();
    wait_for(&mut driver, read);
    let (n, _) = driver.take::<Read>(read).unwrap();
    assert_eq!(n.unwrap_err().raw_os_error(), Some(libc::ECANCELED));

    // Bytes already there when it is interrupted, not yet tried (epoll) or just submitted
    // (io_uring): the read takes them, as the kernel would have at once. (epoll gave up such a
    // read untried: a parked connection whose request had come was woken, read nothing and
    // parked again, for seconds, under a busy thread.)
    (&std::fs::File::from(w.try_clone().unwrap()))
        .write_all(b"ready")
        .unwrap();
    let read = driver
        .submit(Read::new(r.as_raw_fd(), Vec::with_capacity(16), u64::MAX))
        .unwrap();
    driver.interrupt(read).unwrap();
    wait_for(&mut driver, read);
    let (n, buf) = driver.take::<Read>(read).unwrap();
    assert_eq!((n.unwrap(), &buf[..]), (5, &b"ready"[..]));
    assert!(driver.is_empty());
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod io_uring_backend {
            $(#[test] fn $name() { super::$name(super::Kind::IoUring) })*
        }
        mod epoll_backend {
            $(#[test] fn $name() { super::$name(super::Kind::Epoll) })*
        }
    };
}

on_both_backends!(
    read_and_write_hand_their_buffers_back,
    take_refuses_the_wrong_type_and_incomplete_ops,
    cancelled_ops_keep_their_buffers_until_the_kernel_lets_go,
    descriptors_from_cancelled_accepts_are_closed,
    timeouts_and_wakers_end_a_wait,
    dropping_a_driver_with_ops_in_flight_is_safe,
    submissions_beyond_the_ring_size_are_queued,
    poll_reports_readiness_once_data_arrives,
    splice_and_tee_move_bytes_in_the_kernel,
    connect_reaches_a_listener,
    chains_run_in_order_and_stop_at_a_failure,
    a_busy_thread_sees_completions_without_blocking,
    interrupted_reads_end_early_and_lose_nothing,
);

#[test]
fn new_picks_io_uring_here_and_epoll_is_always_available() {
    assert_eq!(Driver::new(8).unwrap().kind(), Kind::IoUring);
    assert_eq!(
        Driver::with_kind(Kind::Epoll, 8).unwrap().kind(),
        Kind::Epoll
    );
}

fn splice_and_tee_move_bytes_in_the_kernel(kind: Kind) {
    let mut driver = Driver::with_kind(kind, 8).unwrap();
    let (r1, w1) = pipe();
    let (r2, w2) = pipe();
    let (r3, w3) = pipe();
    // SAFETY: writing from a valid buffer to our pipe.
    let written = unsafe { libc::write(w1.as_raw_fd(), b"spliced".as_ptr().cast(), 7) };
    assert_eq!(written, 7);
    let tee = driver
        .submit(polyphony_runtime::op::Splice::tee(
            r1.as_raw_fd(),
            w3.as_raw_fd(),
            64,
        ))
        .unwrap();
    wait_for(&mut driver, tee);
    assert_eq!(
        driver
            .take::<polyphony_runtime::op::Splice>(tee)
            .unwrap()
            .unwrap(),
        7
    );
    let splice = driver
        .submit(polyphony_runtime::op::Splice::new(
            r1.as_raw_fd(),
            w2.as_raw_fd(),
            64,
        ))
        .unwrap();
    wait_for(&mut driver, splice);
    assert_eq!(
        driver
            .take::<polyphony_runtime::op::Splice>(splice)
            .unwrap()
            .unwrap(),
        7
    );
    let mut buf = [0u8; 16];
    for fd in [r2.as_raw_fd(), r3.as_raw_fd()] {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(&buf[..n as usize], b"spliced");
    }
    // Nothing to read yet: a splice waits, and completes once data arrives.
    let waiting = driver
        .submit(polyphony_runtime::op::Splice::new(
            r1.as_raw_fd(),
            w2.as_raw_fd(),
            64,
        ))
        .unwrap();
    driver
        .wait(Some(Duration::from_millis(20)), |_| {})
        .unwrap();
    assert!(driver.completion(waiting).is_none());
    drop(w1); // end of input
    wait_for(&mut driver, waiting);
    assert_eq!(
        driver
            .take::<polyphony_runtime::op::Splice>(waiting)
            .unwrap()
            .unwrap(),
        0
    );
}

fn connect_reaches_a_listener(kind: Kind) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = match listener.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        _ => unreachable!(),
    };
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: a plain socket(2) call; the descriptor becomes ours.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0) };
    // SAFETY: `fd` is a new descriptor we own.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut driver = Driver::with_kind(kind, 8).unwrap();
    // SAFETY: `sin` is a valid sockaddr_in of the given size.
    let op = unsafe {
        polyphony_runtime::op::Connect::new(
            socket.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    let id = driver.submit(op).unwrap();
    wait_for(&mut driver, id);
    driver
        .take::<polyphony_runtime::op::Connect>(id)
        .unwrap()
        .unwrap();
    listener.accept().unwrap();
}

fn chains_run_in_order_and_stop_at_a_failure(kind: Kind) {
    let mut driver = Driver::with_kind(kind, 8).unwrap();
    let (r, w) = pipe();
    let mut chain = polyphony_runtime::Chain::new();
    chain
        .push(Write::new(w.as_raw_fd(), b"first ".to_vec(), u64::MAX))
        .push(Write::new(w.as_raw_fd(), b"second".to_vec(), u64::MAX));
    let ids = driver.submit_chain(chain).unwrap();
    wait_for(&mut driver, ids[1]);
    assert_eq!(driver.take::<Write>(ids[0]).unwrap().0.unwrap(), 6);
    assert_eq!(driver.take::<Write>(ids[1]).unwrap().0.unwrap(), 6);
    let mut buf = [0u8; 32];
    // SAFETY: `buf` is writable for its length.
    let n = unsafe { libc::read(r.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(&buf[..n as usize], b"first second");

    let mut broken = polyphony_runtime::Chain::new();
    broken
        .push(Write::new(-1, b"nowhere".to_vec(), u64::MAX))
        .push(Write::new(w.as_raw_fd(), b"never".to_vec(), u64::MAX));
    let ids = driver.submit_chain(broken).unwrap();
    wait_for(&mut driver, ids[1]);
    let first = driver.take::<Write>(ids[0]).unwrap().0.unwrap_err();
    assert_eq!(first.raw_os_error(), Some(libc::EBADF));
    let second = driver.take::<Write>(ids[1]).unwrap().0.unwrap_err();
    assert_eq!(second.raw_os_error(), Some(libc::ECANCELED));
}
